"""VeoProvider (Gemini API) and VertexVeoProvider against recorded operations."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from shared.providers.base import GenerationRequest, TaskRef, TaskState, VideoOutput
from shared.providers.errors import (
    FailureClass,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.providers.veo import VeoProvider, VertexVeoProvider
from shared.webhooks import sign_headers
from tests.fixtures.providers.fake_api import FakeProviderApi, fixture

GEMINI = "https://generativelanguage.googleapis.com"
VERTEX = "https://us-central1-aiplatform.googleapis.com"
GCS = "https://storage.googleapis.com"
MODEL = "veo-3.1-generate-preview"
OP = "models/veo-3.1-generate-preview/operations/vz341u0pmdlc"
VMODEL = "veo-3.1-generate-001"
VOP = fixture("vertex/create_operation")["name"]
VRESOURCE = f"projects/reelforge-local/locations/us-central1/publishers/google/models/{VMODEL}"
SECRET = "whsec_dGVzdC1zZWNyZXQ="
NOW = 1_760_000_000.0
REQUEST = GenerationRequest(prompt="A drone shot over a misty forest", duration_s=8)
REF = TaskRef(provider="gemini", model=MODEL, task_id=OP)
VREF = TaskRef(provider="vertex", model=VMODEL, task_id=VOP)


@pytest.fixture
def api() -> FakeProviderApi:
    return FakeProviderApi()


@pytest.fixture
async def client(api: FakeProviderApi) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as c:
        yield c


def gemini(client: httpx.AsyncClient) -> VeoProvider:
    return VeoProvider(
        client, api_key="g-key", base_url=GEMINI, webhook_secret=SECRET, clock=lambda: NOW
    )


def vertex(client: httpx.AsyncClient, storage_uri: str | None = None) -> VertexVeoProvider:
    return VertexVeoProvider(
        client,
        project="reelforge-local",
        location="us-central1",
        access_token="ya29.token",
        base_url=VERTEX,
        gcs_base_url=GCS,
        storage_uri=storage_uri,
    )


async def test_gemini_submit_sends_a_predict_long_running_body_and_returns_the_operation(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    url = f"{GEMINI}/v1beta/models/{MODEL}:predictLongRunning"
    api.on("POST", url, fixture_name="gemini/create_operation")
    request = REQUEST.model_copy(
        update={
            "negative_prompt": "text overlays",
            "callback_url": "https://hooks.example/g?t=s3cret",
            "image_url": "data:image/png;base64,iVBORw0KGgo=",
            "seed": 7,
        }
    )
    ref = await gemini(client).submit(request, MODEL)
    assert ref.task_id == OP
    sent = api.sent_json("POST", url)
    assert sent["instances"] == [
        {
            "prompt": request.prompt,
            "image": {"bytesBase64Encoded": "iVBORw0KGgo=", "mimeType": "image/png"},
        }
    ]
    assert sent["parameters"]["durationSeconds"] == 8
    assert sent["parameters"]["negativePrompt"] == "text overlays"
    assert "seed" not in sent["parameters"]  # the Gemini API rejects seed
    assert sent["webhookConfig"]["uris"] == ["https://hooks.example/g?t=s3cret"]
    assert api.sent_headers("POST", url)["x-goog-api-key"] == "g-key"


async def test_gemini_submit_refuses_a_remote_image_url_as_invalid_input(
    client: httpx.AsyncClient,
) -> None:
    request = REQUEST.model_copy(update={"image_url": "https://img.example/a.png"})
    with pytest.raises(ProviderRejected, match="data: URI") as caught:
        await gemini(client).submit(request, MODEL)
    assert caught.value.failure_class is FailureClass.INVALID_INPUT


@pytest.mark.parametrize(
    ("status", "name", "failure_class", "error_type"),
    [
        (429, "gemini/error_429", FailureClass.RATE_LIMITED, ProviderUnavailable),
        (403, "gemini/error_403", FailureClass.AUTH, ProviderRejected),
        (400, "gemini/error_400", FailureClass.INVALID_INPUT, ProviderRejected),
        (400, "gemini/error_400_safety", FailureClass.MODERATION_INPUT, ProviderRejected),
        (503, "gemini/error_503", FailureClass.PROVIDER_ERROR, ProviderUnavailable),
    ],
)
async def test_gemini_submit_classifies_google_error_envelopes(
    api: FakeProviderApi,
    client: httpx.AsyncClient,
    status: int,
    name: str,
    failure_class: FailureClass,
    error_type: type[ProviderError],
) -> None:
    api.on(
        "POST",
        f"{GEMINI}/v1beta/models/{MODEL}:predictLongRunning",
        status=status,
        fixture_name=name,
    )
    with pytest.raises(error_type) as caught:
        await gemini(client).submit(REQUEST, MODEL)
    assert caught.value.failure_class is failure_class


async def test_gemini_operation_without_done_is_running(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{GEMINI}/v1beta/{OP}", fixture_name="gemini/op_running")
    status = await gemini(client).status(REF)
    assert status.state is TaskState.RUNNING


async def test_gemini_finished_operation_lists_the_generated_files(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{GEMINI}/v1beta/{OP}", fixture_name="gemini/op_done_success")
    status = await gemini(client).status(REF)
    assert status.state is TaskState.SUCCEEDED
    assert [o.url for o in status.outputs] == [f"{GEMINI}/v1beta/files/abc123:download?alt=media"]


async def test_gemini_operation_emptied_by_the_safety_filter_fails_as_output_moderation(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{GEMINI}/v1beta/{OP}", fixture_name="gemini/op_done_rai_filtered")
    status = await gemini(client).status(REF)
    assert status.state is TaskState.FAILED
    assert status.failure is not None
    assert status.failure.failure_class is FailureClass.MODERATION_OUTPUT
    assert "person generation" in status.failure.message


@pytest.mark.parametrize(
    ("name", "failure_class"),
    [
        ("gemini/op_done_error_invalid", FailureClass.INVALID_INPUT),
        ("gemini/op_done_error_exhausted", FailureClass.RATE_LIMITED),
        ("gemini/op_done_error_unavailable", FailureClass.PROVIDER_ERROR),
    ],
)
async def test_gemini_operation_errors_map_grpc_codes(
    api: FakeProviderApi, client: httpx.AsyncClient, name: str, failure_class: FailureClass
) -> None:
    api.on("GET", f"{GEMINI}/v1beta/{OP}", fixture_name=name)
    status = await gemini(client).status(REF)
    assert status.state is TaskState.FAILED
    assert status.failure is not None
    assert status.failure.failure_class is failure_class


async def test_gemini_download_sends_the_key_to_the_api_origin_only(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    url = f"{GEMINI}/v1beta/files/abc123:download?alt=media"
    api.on("GET", url, content=b"mp4-bytes", headers={"content-length": "9"})
    chunks = [c async for c in gemini(client).download(REF, VideoOutput(url=url))]
    assert b"".join(chunks) == b"mp4-bytes"
    assert api.sent_headers("GET", url)["x-goog-api-key"] == "g-key"


async def test_gemini_unknown_operation_is_not_found(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{GEMINI}/v1beta/{OP}", status=404, fixture_name="gemini/error_404")
    with pytest.raises(ProviderRejected) as caught:
        await gemini(client).status(REF)
    assert caught.value.failure_class is FailureClass.NOT_FOUND


def test_gemini_webhook_is_verified_and_names_the_operation(client: httpx.AsyncClient) -> None:
    body = json.dumps(fixture("gemini/webhook_video_generated")).encode()
    hint = gemini(client).parse_webhook(sign_headers(SECRET, body, timestamp=int(NOW)), body)
    assert (hint.task_id, hint.event_type) == (OP, "video.generated")


async def test_vertex_submit_sends_vertex_only_parameters_with_a_bearer_token(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    url = f"{VERTEX}/v1/{VRESOURCE}:predictLongRunning"
    api.on("POST", url, fixture_name="vertex/create_operation")
    request = REQUEST.model_copy(update={"seed": 7, "audio": True})
    ref = await vertex(client, "gs://reelforge-out/veo/").submit(request, VMODEL)
    assert ref.task_id == VOP
    params = api.sent_json("POST", url)["parameters"]
    assert params["seed"] == 7
    assert params["generateAudio"] is True
    assert params["storageUri"] == "gs://reelforge-out/veo/"
    assert api.sent_headers("POST", url)["authorization"] == "Bearer ya29.token"


async def test_vertex_polls_with_fetch_predict_operation_and_downloads_gcs_results(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    fetch = f"{VERTEX}/v1/{VRESOURCE}:fetchPredictOperation"
    media = f"{GCS}/reelforge-out/veo/9d2f/sample_0.mp4"
    api.on("POST", fetch, fixture_name="vertex/op_done_gcs")
    api.on("GET", media, content=b"gcs-bytes", headers={"content-length": "9"})
    adapter = vertex(client)
    status = await adapter.status(VREF)
    assert api.sent_json("POST", fetch) == {"operationName": VOP}
    assert status.state is TaskState.SUCCEEDED
    (output,) = status.outputs
    assert b"".join([c async for c in adapter.download(VREF, output)]) == b"gcs-bytes"


async def test_vertex_inline_results_are_trimmed_from_raw_and_decoded_on_download(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on(
        "POST",
        f"{VERTEX}/v1/{VRESOURCE}:fetchPredictOperation",
        fixture_name="vertex/op_done_inline",
    )
    adapter = vertex(client)
    status = await adapter.status(VREF)
    (output,) = status.outputs
    assert output.url is None
    assert "chars trimmed" in json.dumps(status.raw)
    expected = base64.b64decode(
        fixture("vertex/op_done_inline")["response"]["videos"][0]["bytesBase64Encoded"]
    )
    assert b"".join([c async for c in adapter.download(VREF, output)]) == expected


async def test_vertex_safety_filtered_operation_fails_as_output_moderation(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on(
        "POST",
        f"{VERTEX}/v1/{VRESOURCE}:fetchPredictOperation",
        fixture_name="vertex/op_done_rai_filtered",
    )
    status = await vertex(client).status(VREF)
    assert status.failure is not None
    assert status.failure.failure_class is FailureClass.MODERATION_OUTPUT
