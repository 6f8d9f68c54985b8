"""One behaviour suite for the `VideoProvider` port, run over every real adapter against the
real emulator process (`python -m services.emulator`, started by conftest.py)."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import av
import httpx
import pytest

from shared.providers.base import GenerationRequest, TaskRef, TaskState, TaskStatus, VideoProvider
from shared.providers.errors import FailureClass, ProviderError, ProviderRejected
from shared.providers.registry import PROVIDER_NAMES, build_provider
from shared.providers.settings import ProviderSettings
from tests.contract.conftest import KLING_ACCESS_KEY, KLING_SECRET_KEY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TERMINAL_WAIT_S = 30.0
POLL_S = 0.2
VERTEX_RESOURCE = "projects/reelforge-local/locations/us-central1/publishers/google/models"


@dataclass(frozen=True)
class Case:
    id: str
    provider: str
    model: str
    duration_s: int
    unknown_task_id: str
    vertex_storage_uri: str | None = None
    extra: tuple[tuple[str, str], ...] = ()


CASES = [
    Case("openai", "openai", "sora-2", 4, "video_" + "0" * 32),
    Case(
        "gemini",
        "gemini",
        "veo-3.1-fast-generate-preview",
        4,
        "models/veo-3.1-fast-generate-preview/operations/zzzzzzzzzzzz",
    ),
    Case(
        "vertex-inline",
        "vertex",
        "veo-3.1-fast-generate-001",
        4,
        f"{VERTEX_RESOURCE}/veo-3.1-fast-generate-001/operations/{uuid.uuid4()}",
    ),
    Case(
        "vertex-gcs",
        "vertex",
        "veo-3.1-fast-generate-001",
        4,
        f"{VERTEX_RESOURCE}/veo-3.1-fast-generate-001/operations/{uuid.uuid4()}",
        vertex_storage_uri="gs://reelforge-contract/veo",
    ),
    Case("runway", "runway", "gen4.5", 2, str(uuid.uuid4())),
    Case("kling", "kling", "kling-v3", 3, "999999999999999999", extra=(("kind", "text2video"),)),
]


def settings_for(url: str, case: Case) -> ProviderSettings:
    return ProviderSettings(
        openai_base_url=f"{url}/openai/v1",
        gemini_base_url=f"{url}/gemini",
        vertex_base_url=f"{url}/vertex",
        vertex_gcs_base_url=f"{url}/vertex/gcs",
        vertex_storage_uri=case.vertex_storage_uri,
        runway_base_url=f"{url}/runway",
        kling_base_url=f"{url}/kling",
        kling_access_key=KLING_ACCESS_KEY,
        kling_secret_key=KLING_SECRET_KEY,
    )


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    param: Case = request.param
    return param


@pytest.fixture
async def adapter(emulator_url: str, case: Case) -> AsyncIterator[VideoProvider]:
    async with httpx.AsyncClient() as client:
        yield build_provider(case.provider, settings_for(emulator_url, case), client)


def request_for(case: Case, prompt: str) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt, duration_s=case.duration_s, external_id=uuid.uuid4().hex
    )


async def until_terminal(adapter: VideoProvider, ref: TaskRef) -> TaskStatus:
    deadline = time.monotonic() + TERMINAL_WAIT_S
    while True:
        status = await adapter.status(ref)
        if status.state.terminal or time.monotonic() > deadline:
            return status
        await asyncio.sleep(POLL_S)


async def test_a_task_renders_and_downloads_as_a_playable_mp4(
    adapter: VideoProvider, case: Case
) -> None:
    ref = await adapter.submit(request_for(case, "A lighthouse at dusk, waves rolling"), case.model)
    status = await until_terminal(adapter, ref)
    assert status.state is TaskState.SUCCEEDED, status
    assert status.raw_status
    with tempfile.NamedTemporaryFile(suffix=".mp4") as handle:
        async for chunk in adapter.download(ref, status.outputs[0]):
            handle.write(chunk)
        handle.flush()
        with av.open(handle.name) as container:
            assert container.streams.video, "no video stream"
            duration_s = (container.duration or 0) / av.time_base
    assert abs(duration_s - case.duration_s) <= max(1.0, 0.25 * case.duration_s)


async def test_an_output_moderation_trigger_ends_failed_as_moderation_output(
    adapter: VideoProvider, case: Case
) -> None:
    ref = await adapter.submit(
        request_for(case, "A city street at night [fail:moderation_output]"), case.model
    )
    status = await until_terminal(adapter, ref)
    assert status.state is TaskState.FAILED, status
    assert status.failure is not None
    assert status.failure.failure_class is FailureClass.MODERATION_OUTPUT


async def test_an_unknown_task_is_not_found(adapter: VideoProvider, case: Case) -> None:
    ref = TaskRef(
        provider=case.provider,
        model=case.model,
        task_id=case.unknown_task_id,
        extra=dict(case.extra),
    )
    with pytest.raises(ProviderRejected) as caught:
        await adapter.status(ref)
    assert caught.value.failure_class is FailureClass.NOT_FOUND


async def test_a_running_task_can_be_cancelled_where_the_provider_supports_it(
    adapter: VideoProvider, case: Case
) -> None:
    if not adapter.capabilities.cancel:
        pytest.skip(f"{case.provider} has no cancel")
    ref = await adapter.submit(request_for(case, "A slow pan over hills [render:20]"), case.model)
    assert await adapter.cancel(ref) is True
    try:
        state: TaskState | None = (await adapter.status(ref)).state
    except ProviderRejected as exc:  # Runway forgets a cancelled (deleted) task
        state = TaskState.CANCELLED if exc.failure_class is FailureClass.NOT_FOUND else None
    assert state is TaskState.CANCELLED


def test_the_suite_covers_every_registered_provider() -> None:
    assert {c.provider for c in CASES} == set(PROVIDER_NAMES)


async def emulated_tasks(emulator_url: str, provider: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{emulator_url}/_emulator/tasks", params={"provider": provider})
    tasks: list[dict[str, object]] = answer.json()["tasks"]
    return tasks


async def test_a_create_whose_answer_is_lost_is_reported_as_an_unknown_outcome(
    adapter: VideoProvider, case: Case, emulator_url: str
) -> None:
    """The emulator's "created, answer lost" fault: the task exists at the provider, the
    caller gets no usable answer. The adapter must say the outcome is unknown, and where the
    provider stores our id (`find_by_external_id`) find exactly that task again."""
    request = request_for(case, "A kite over the dunes [fail:answer_lost]")
    before = {t["id"] for t in await emulated_tasks(emulator_url, case.provider)}
    with pytest.raises(ProviderError) as lost:
        await adapter.submit(request, case.model)
    assert lost.value.outcome_unknown, lost.value
    made = [t for t in await emulated_tasks(emulator_url, case.provider) if t["id"] not in before]
    assert len(made) == 1  # the create did complete
    found = await adapter.find_created(request, case.model)
    if not adapter.capabilities.find_by_external_id:
        assert found is None
        return
    assert found is not None and found.task_id == made[0]["id"]
    with pytest.raises(ProviderError) as again:  # the same id is never paid for twice
        await adapter.submit(request.model_copy(update={"prompt": "A kite"}), case.model)
    assert again.value.outcome_unknown
    assert len(await emulated_tasks(emulator_url, case.provider)) == len(before) + 1
    assert (await adapter.status(found)).state is not TaskState.UNKNOWN


async def test_a_lookup_by_an_id_never_used_finds_nothing(
    adapter: VideoProvider, case: Case
) -> None:
    assert await adapter.find_created(request_for(case, "A quiet pond"), case.model) is None
