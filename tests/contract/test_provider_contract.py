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

from shared.egress import EgressGuard, guarded_transport, parse_allow
from shared.providers.base import GenerationRequest, TaskRef, TaskState, TaskStatus, VideoProvider
from shared.providers.errors import (
    FailureClass,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.providers.registry import PROVIDER_NAMES, build_provider
from shared.providers.settings import ProviderSettings
from tests.contract.conftest import KLING_ACCESS_KEY, KLING_SECRET_KEY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TERMINAL_WAIT_S = 30.0
LOOPBACK = "127.0.0.1/32"
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
    # Runway says no SAFETY.* failure, output ones included, should be retried.
    output_moderation: FailureClass = FailureClass.MODERATION_OUTPUT
    cancel: bool = True  # False: the provider has cancel, but not for this model's surface


CASES = [
    Case("openai", "openai", "sora-2", 4, "video_" + "0" * 32),
    Case(
        "gemini",
        "gemini",
        "veo-3.1-fast-generate-preview",
        4,
        "models/veo-3.1-fast-generate-preview/operations/zzzzzzzzzzzz",
        cancel=False,  # Veo operations on the Gemini API cannot be cancelled
    ),
    Case(
        "gemini-omni",
        "gemini",
        "gemini-omni-flash-preview",
        4,
        "v1_" + "z" * 24,
        extra=(("surface", "interactions"),),
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
    Case(
        "runway",
        "runway",
        "gen4.5",
        2,
        str(uuid.uuid4()),
        output_moderation=FailureClass.MODERATION_INPUT,
    ),
    Case("kling", "kling", "kling-v3", 3, "999999999999999999", extra=(("kind", "text2video"),)),
    Case(
        "fal",
        "fal",
        "fal-ai/bytedance/seedance/v1/pro",
        5,
        str(uuid.uuid4()),
        extra=(("app", "fal-ai/bytedance"),),
    ),
    Case("replicate", "replicate", "bytedance/seedance-1-pro", 2, "q" * 26),
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
        fal_queue_base_url=f"{url}/fal/queue",
        replicate_base_url=f"{url}/replicate",
    )


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    param: Case = request.param
    return param


def guarded_client(allow: str) -> httpx.AsyncClient:
    """The client storage runs: every connection through the egress guard."""
    return httpx.AsyncClient(transport=guarded_transport(EgressGuard(parse_allow(allow))))


@pytest.fixture
async def adapter(emulator_url: str, case: Case) -> AsyncIterator[VideoProvider]:
    async with guarded_client(LOOPBACK) as client:  # the emulator is on loopback
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


async def test_without_the_allow_list_a_loopback_result_is_refused_before_connecting(
    adapter: VideoProvider, case: Case, emulator_url: str
) -> None:
    ref = await adapter.submit(request_for(case, "A kite over a beach"), case.model)
    status = await until_terminal(adapter, ref)
    assert status.state is TaskState.SUCCEEDED, status
    async with guarded_client("") as client:
        production_like = build_provider(case.provider, settings_for(emulator_url, case), client)
        with pytest.raises(ProviderRejected, match="egress refused") as caught:
            async for _ in production_like.download(ref, status.outputs[0]):
                pass
    assert "127.0.0.1 is loopback" in caught.value.message


async def test_an_output_moderation_trigger_ends_failed_as_the_providers_moderation_class(
    adapter: VideoProvider, case: Case
) -> None:
    ref = await adapter.submit(
        request_for(case, "A city street at night [fail:moderation_output]"), case.model
    )
    status = await until_terminal(adapter, ref)
    assert status.state is TaskState.FAILED, status
    assert status.failure is not None
    assert status.failure.failure_class is case.output_moderation


async def test_a_prompt_refused_by_moderation_is_moderation_input_wherever_it_surfaces(
    adapter: VideoProvider, case: Case
) -> None:
    """At create (OpenAI, Google, Kling) or as a task failing at once (Runway's
    INPUT_PREPROCESSING.SAFETY.TEXT): never a class that retries or falls back."""
    try:
        ref = await adapter.submit(
            request_for(case, "A city street at night [fail:moderation_input]"), case.model
        )
    except ProviderRejected as exc:
        failure_class = exc.failure_class
    else:
        status = await until_terminal(adapter, ref)
        assert status.failure is not None, status
        failure_class = status.failure.failure_class
    assert failure_class is FailureClass.MODERATION_INPUT


async def test_a_rate_limited_create_is_transient_with_the_providers_wait(
    adapter: VideoProvider, case: Case
) -> None:
    """Google puts the wait in the body (RetryInfo.retryDelay), the others in Retry-After;
    the emulator's default wait is 1 s."""
    with pytest.raises(ProviderUnavailable) as caught:
        await adapter.submit(request_for(case, "A quiet lake [fail:429]"), case.model)
    assert caught.value.failure_class is FailureClass.RATE_LIMITED
    assert caught.value.retry_after == 1.0


async def test_sora_2_pro_1080p_is_accepted_by_the_strict_emulator(emulator_url: str) -> None:
    """Main sent size=1920x1080, which the real API (and now the emulator) answers 400."""
    case = CASES[0]
    request = GenerationRequest(
        prompt="A lighthouse at dusk", duration_s=4, resolution="1080p", aspect_ratio="16:9"
    )
    async with httpx.AsyncClient() as client:
        adapter = build_provider("openai", settings_for(emulator_url, case), client)
        ref = await adapter.submit(request, "sora-2-pro")
        status = await adapter.status(ref)
    assert status.raw["size"] == "1792x1024"


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
    if not adapter.capabilities.cancel or not case.cancel:
        pytest.skip(f"{case.provider} has no cancel for {case.model}")
    ref = await adapter.submit(request_for(case, "A slow pan over hills [render:20]"), case.model)
    assert await adapter.cancel(ref) is True
    # Runway answers a deleted task as CANCELLED (runwayml's `Cancelled` task model).
    assert (await adapter.status(ref)).state is TaskState.CANCELLED


def test_the_suite_covers_every_registered_provider() -> None:
    assert {c.provider for c in CASES} == set(PROVIDER_NAMES)


async def emulated_tasks(emulator_url: str, provider: str) -> list[dict[str, object]]:
    """Tasks the emulator holds for `provider` (its Gemini Omni surface keeps its own)."""
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
    store = "gemini-interactions" if case.model.startswith("gemini-omni") else case.provider
    before = {t["id"] for t in await emulated_tasks(emulator_url, store)}
    with pytest.raises(ProviderError) as lost:
        await adapter.submit(request, case.model)
    assert lost.value.outcome_unknown, lost.value
    made = [t for t in await emulated_tasks(emulator_url, store) if t["id"] not in before]
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
