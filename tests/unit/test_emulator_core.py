"""Emulator internals: derived lifecycle, scheduling, triggers, seeded faults, renderer, admin."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from fastapi.testclient import TestClient

from services.emulator.app import create_app
from services.emulator.faults import FaultInjector, Triggers
from services.emulator.render import RenderSpec, render_to_files
from services.emulator.settings import EmulatorSettings, Tunables
from services.emulator.tasks import FakeClock, Outcome, Phase, Task, TaskStore

SPEC = RenderSpec(prompt="a person on a bridge", width=96, height=64, seconds=0.5, fps=12)


_IDS = itertools.count(1)


def task(clock: FakeClock, owner: str = "k", **kw: object) -> Task:
    values: dict = {"queue_seconds": 1.0, "render_seconds": 4.0, **kw}
    return Task(
        id=f"t{next(_IDS)}",  # unique: id() of a freed dict can repeat
        provider="runway",
        model="m",
        prompt="p",
        spec=SPEC,
        owner=owner,
        created_at=clock.now(),
        **values,
    )


def test_phase_and_progress_follow_the_clock() -> None:
    clock = FakeClock()
    t = task(clock, outcome=Outcome.INTERNAL)
    assert (t.phase(clock.now()), t.progress(clock.now())) == (Phase.QUEUED, 0.0)
    clock.advance(2)
    assert t.phase(clock.now()) is Phase.RUNNING
    assert t.progress(clock.now()) == pytest.approx(0.25)
    clock.advance(3)
    assert t.phase(clock.now()) is Phase.FAILED
    assert t.completed_at(clock.now()) == t.created_at + 5


def test_store_throttles_per_owner_and_starts_the_next_when_a_slot_frees() -> None:
    clock = FakeClock()
    store = TaskStore(clock, concurrency={"runway": 1})
    first, second = store.add(task(clock)), store.add(task(clock))
    other = store.add(task(clock, owner="other"))
    assert second.phase(clock.now()) is Phase.THROTTLED
    assert other.phase(clock.now()) is Phase.QUEUED
    assert second.start_at == first.natural_end
    clock.advance(1)
    store.remove("runway", first.id)
    assert second.start_at == clock.now()


def test_store_finds_a_task_by_an_extra_value_until_it_is_removed() -> None:
    clock = FakeClock()
    store = TaskStore(clock)
    for n in range(50):
        store.add(task(clock, extra={"external_task_id": f"ext-{n}"}))
    wanted = store.find("runway", "external_task_id", "ext-42")
    assert wanted is not None and wanted.extra["external_task_id"] == "ext-42"
    assert store.find("runway", "external_task_id", "ext-404") is None
    assert store.find("kling", "external_task_id", "ext-42") is None  # per provider
    store.remove("runway", wanted.id)
    assert store.find("runway", "external_task_id", "ext-42") is None
    again = store.add(task(clock, extra={"external_task_id": "ext-42"}))
    assert store.find("runway", "external_task_id", "ext-42") is again


def test_triggers_parse_failures_timings_and_face() -> None:
    trig = Triggers.parse("[fail:moderation_output] [render:2.5] [queue:0] [noface] a man")
    assert trig.failures == {"moderation_output"}
    assert (trig.render_seconds, trig.queue_seconds, trig.wants_face("a man")) == (2.5, 0.0, False)
    assert Triggers.parse("a woman walking").wants_face("a woman walking")


def test_fault_rolls_are_deterministic_for_a_seed() -> None:
    tunables = Tunables(rate_5xx=0.5)
    injectors = [FaultInjector(tunables, seed=7), FaultInjector(tunables, seed=7)]
    rolls = [[injector.roll("5xx") for _ in range(20)] for injector in injectors]
    assert rolls[0] == rolls[1]
    assert any(rolls[0])
    assert not all(rolls[0])


def test_renderer_writes_h264_yuv420p_with_audio_deterministically(tmp_path: Path) -> None:
    spec = RenderSpec(
        prompt="x", width=96, height=64, seconds=0.5, fps=12, audio=True, face=True, seed=3
    )
    a = render_to_files(spec, tmp_path / "a.mp4", tmp_path / "a.webp")
    b = render_to_files(spec, tmp_path / "b.mp4", tmp_path / "b.webp")
    assert a.video_path.read_bytes() == b.video_path.read_bytes()
    with av.open(io.BytesIO(a.video_path.read_bytes())) as container:
        video = container.streams.video[0]
        assert (video.codec_context.name, video.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (video.width, video.height, video.frames) == (96, 64, 6)
        assert container.streams.audio[0].codec_context.name == "aac"
    frames = [f.to_ndarray(format="rgb24") for f in av.open(str(a.video_path)).decode(video=0)]
    assert (frames[0] != frames[-1]).mean() > 0.01, "content moves"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = EmulatorSettings(
        data_dir=tmp_path, render_seconds=0, queue_seconds=0, render_scale=0.1
    )
    with TestClient(create_app(settings, clock=FakeClock())) as test_client:
        yield test_client


def test_admin_config_changes_tunables_and_rejects_unknown_fields(client: TestClient) -> None:
    assert client.get("/_emulator/health").json() == {"status": "ok"}
    changed = client.post("/_emulator/config", json={"render_seconds": 9, "rate_5xx": 0.2}).json()
    assert (changed["render_seconds"], changed["rate_5xx"]) == (9, 0.2)
    assert client.post("/_emulator/config", json={"nope": 1}).status_code == 400
    assert client.post("/_emulator/config", json={"rate_5xx": 2}).status_code == 400
    assert client.post("/_emulator/config", json={"reset": True}).json()["render_seconds"] == 0


def test_stats_count_calls_per_provider_and_kind(client: TestClient) -> None:
    auth = {"Authorization": "Bearer sk"}
    video = client.post("/openai/v1/videos", headers=auth, json={"prompt": "x"}).json()
    for _ in range(3):
        client.get(f"/openai/v1/videos/{video['id']}", headers=auth)
    client.get(f"/openai/v1/videos/{video['id']}/content", headers=auth)
    assert client.get("/_emulator/stats").json()["calls"]["openai"] == {
        "create": 1,
        "status": 3,
        "download": 1,
    }
    assert client.get("/_emulator/tasks?provider=openai").json()["tasks"][0]["id"] == video["id"]


def test_truncated_download_promises_more_bytes_than_it_sends(client: TestClient) -> None:
    auth = {"Authorization": "Bearer sk"}
    video = client.post(
        "/openai/v1/videos", headers=auth, json={"prompt": "[fail:truncated] x"}
    ).json()
    with client.stream("GET", f"/openai/v1/videos/{video['id']}/content", headers=auth) as resp:
        declared = int(resp.headers["content-length"])
        body = b"".join(resp.iter_raw())
    assert len(body) < declared


def test_a_trigger_scoped_to_a_provider_applies_only_there() -> None:
    from services.emulator.faults import Triggers

    prompt = "a cat [fail:internal@runway] [render:1.5]"
    assert Triggers.parse(prompt, "runway").failures == {"internal"}
    assert Triggers.parse(prompt, "kling").failures == frozenset()
    assert Triggers.parse(prompt, "kling").render_seconds == 1.5
