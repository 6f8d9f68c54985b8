"""Every create body an adapter sends, checked against the provider's published schema.

For each catalog model, every request routing can send it (`shared.routing.problems` empty,
lifecycle ignored) is submitted through the real adapter over `httpx.MockTransport`, and the
captured body is checked against:

* OpenAI: `openai.types.VideoCreateParams` of the installed openai-python (generated from
  OpenAI's OpenAPI spec), field by field, strict, no unknown keys;
* Runway: the member of runwayml's `TextToVideoCreateParams` / `ImageToVideoCreateParams` union
  whose `model` literal matches, with the SDK's camelCase aliases, strict, no unknown keys;
* Veo (Gemini API and Vertex): the body google-genai itself builds (`_GenerateVideosParameters_
  to_vertex`) from the typed `GenerateVideosParameters` the adapter's body stands for: the
  adapter's body must be exactly what the SDK would send. Gemini's `webhookConfig` has no typed
  counterpart in google-genai and is left out of the comparison.

Kling publishes no machine-readable schema, so it is not covered here.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import typing
from datetime import date
from typing import Any

import httpx
import pydantic
import pytest
import typing_extensions

from shared.jobs import JobRequest
from shared.providers.base import GenerationRequest, ModelSpec, VideoProvider
from shared.providers.catalog import models_of
from shared.providers.errors import ProviderRejected
from shared.providers.openai_videos import OpenAIVideosProvider
from shared.providers.runway import RunwayProvider
from shared.providers.veo import VeoProvider, VertexVeoProvider
from shared.routing import problems

BASE = "https://provider.test"
IMAGE = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake first frame").decode()
TODAY = date(2026, 12, 1)
_ANSWERS = {
    "/videos": {"id": "video_1", "status": "queued"},
    "/v1/text_to_video": {"id": "task-1"},
    "/v1/image_to_video": {"id": "task-1"},
}
_OPERATION = {"name": "models/m/operations/op1"}


def routable_requests(spec: ModelSpec) -> list[GenerationRequest]:
    """Every request routing would send to `spec` (lifecycle ignored)."""
    out = []
    combos = itertools.product(
        spec.durations_s, spec.resolutions, spec.aspect_ratios, (False, True), (None, IMAGE)
    )
    for duration, resolution, ratio, audio, image in combos:
        job = JobRequest(
            prompt="A red kite over green hills",
            duration_s=duration,
            resolution=resolution,
            aspect_ratio=ratio,
            audio=audio,
            image_url=image,
        )
        if not problems(job, spec, TODAY, allow_retired=True):
            out.append(
                GenerationRequest(
                    prompt=job.prompt,
                    duration_s=duration,
                    resolution=resolution,
                    aspect_ratio=ratio,
                    audio=audio,
                    image_url=image,
                    seed=7,
                    negative_prompt="blurry",
                )
            )
    return out


async def sent_bodies(
    build: typing.Callable[[httpx.AsyncClient], VideoProvider], spec: ModelSpec
) -> list[tuple[str, dict[str, Any]]]:
    """(path, JSON body) of every create call; requests the adapter refuses are left out."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        sent.append((path, json.loads(request.content)))
        return httpx.Response(200, json=_ANSWERS.get(path, _OPERATION))

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        adapter = build(client)
        for request in routable_requests(spec):
            try:
                await adapter.submit(request, spec.model)
            except ProviderRejected:
                continue
    assert sent, f"{spec.provider}/{spec.model}: no request was sent"
    return sent


def _unwrap(hint: Any) -> Any:
    while typing_extensions.get_origin(hint) in (
        typing_extensions.Required,
        typing_extensions.NotRequired,
    ):
        hint = typing_extensions.get_args(hint)[0]
    return hint


def check_typed_dict(
    typed_dict: type, wire: dict[str, Any], replace: dict[str, Any] | None = None
) -> None:
    """`wire` (aliases as sent) against a TypedDict: required keys present, no unknown keys,
    each value valid in strict mode. `replace` swaps a field's type (for union branches only
    multipart can send)."""
    hints = typing_extensions.get_type_hints(typed_dict, include_extras=True)
    by_alias: dict[str, str] = {}
    for name, hint in hints.items():
        metadata = getattr(_unwrap(hint), "__metadata__", ())
        alias = next((m.alias for m in metadata if getattr(m, "alias", None)), None)
        by_alias[alias or name] = name
    unknown = set(wire) - set(by_alias)
    assert not unknown, f"keys {sorted(unknown)} are not in {typed_dict.__name__}"
    fields = {by_alias[key]: value for key, value in wire.items()}
    missing = set(typed_dict.__required_keys__) - set(fields)  # type: ignore[attr-defined]
    assert not missing, f"required {sorted(missing)} missing for {typed_dict.__name__}"
    for name, value in fields.items():
        hint = (replace or {}).get(name, _unwrap(hints[name]))
        pydantic.TypeAdapter(hint).validate_python(value, strict=True)


# --- OpenAI -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", models_of("openai"), ids=lambda s: s.model)
async def test_openai_create_bodies_match_video_create_params(spec: ModelSpec) -> None:
    video_types = pytest.importorskip("openai.types")
    image_param = pytest.importorskip("openai.types.image_input_reference_param")

    def build(client: httpx.AsyncClient) -> VideoProvider:
        return OpenAIVideosProvider(client, api_key="sk-test", base_url=BASE)

    for path, body in await sent_bodies(build, spec):
        assert path == "/videos"
        check_typed_dict(
            video_types.VideoCreateParams,
            body,
            # The file branch of InputReference is multipart only; JSON sends the reference.
            replace={"input_reference": image_param.ImageInputReferenceParam},
        )


def test_the_schema_check_refuses_the_old_1080p_size() -> None:
    video_types = pytest.importorskip("openai.types")
    with pytest.raises(pydantic.ValidationError):
        check_typed_dict(video_types.VideoCreateParams, {"prompt": "x", "size": "1920x1080"})
    with pytest.raises(AssertionError, match="not in VideoCreateParams"):
        check_typed_dict(video_types.VideoCreateParams, {"prompt": "x", "resolution": "1080p"})


# --- Runway -------------------------------------------------------------------------------


def runway_member(union: Any, model: str) -> type:
    for member in typing_extensions.get_args(union):
        hints = typing_extensions.get_type_hints(member)
        if model in typing_extensions.get_args(_unwrap(hints["model"])):
            return typing.cast(type, member)
    raise AssertionError(f"runwayml has no params for model {model!r}")


@pytest.mark.parametrize("spec", models_of("runway"), ids=lambda s: s.model)
async def test_runway_create_bodies_match_the_sdk_params_of_their_model(spec: ModelSpec) -> None:
    runway_types = pytest.importorskip("runwayml.types")
    unions = {
        "/v1/text_to_video": runway_types.TextToVideoCreateParams,
        "/v1/image_to_video": runway_types.ImageToVideoCreateParams,
    }

    def build(client: httpx.AsyncClient) -> VideoProvider:
        return RunwayProvider(client, api_key="key_test", base_url=BASE)

    for path, body in await sent_bodies(build, spec):
        check_typed_dict(runway_member(unions[path], body["model"]), body)


# --- Veo (Gemini API and Vertex) ----------------------------------------------------------

# Wire key of `parameters` -> google-genai GenerateVideosConfig field.
_VEO_PARAMETERS = {
    "sampleCount": "number_of_videos",
    "durationSeconds": "duration_seconds",
    "aspectRatio": "aspect_ratio",
    "resolution": "resolution",
    "personGeneration": "person_generation",
    "negativePrompt": "negative_prompt",
    "generateAudio": "generate_audio",
    "seed": "seed",
    "fps": "fps",
    "storageUri": "output_gcs_uri",
}


@functools.cache
def _genai_api_client() -> Any:
    genai = pytest.importorskip("google.genai")
    return genai.Client(vertexai=True, api_key="schema-check")._api_client


def sdk_veo_body(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body google-genai builds for the typed parameters `body` stands for."""
    genai = pytest.importorskip("google.genai")
    models = pytest.importorskip("google.genai.models")
    types = genai.types
    instance = body["instances"][0]
    unknown = set(body["parameters"]) - set(_VEO_PARAMETERS)
    assert not unknown, f"parameters {sorted(unknown)} have no GenerateVideosConfig field"
    config = types.GenerateVideosConfig(
        **{_VEO_PARAMETERS[k]: v for k, v in body["parameters"].items()}
    )
    image = None
    if "image" in instance:
        image = types.Image(
            image_bytes=base64.b64decode(instance["image"]["bytesBase64Encoded"]),
            mime_type=instance["image"]["mimeType"],
        )
    source = types.GenerateVideosSource(prompt=instance.get("prompt"), image=image)
    params = types._GenerateVideosParameters(model=model, source=source, config=config)
    built = models._GenerateVideosParameters_to_vertex(_genai_api_client(), params)
    built.pop("_url", None)
    return typing.cast(dict[str, Any], built)


def _veo_cases() -> list[ModelSpec]:
    return [*models_of("gemini"), *models_of("vertex")]


@pytest.mark.parametrize("spec", _veo_cases(), ids=lambda s: f"{s.provider}-{s.model}")
async def test_veo_create_bodies_are_what_google_genai_would_send(spec: ModelSpec) -> None:
    def build(client: httpx.AsyncClient) -> VideoProvider:
        if spec.provider == "gemini":
            return VeoProvider(client, api_key="g-key", base_url=BASE)
        return VertexVeoProvider(
            client,
            project="p1",
            location="us-central1",
            access_token="ya29.test",
            base_url=BASE,
            gcs_base_url=BASE,
            storage_uri="gs://bucket/out",
        )

    for path, body in await sent_bodies(build, spec):
        assert path.endswith(f"/{spec.model}:predictLongRunning")
        body.pop("webhookConfig", None)
        assert body == sdk_veo_body(spec.model, body)
