"""The official SDKs, pointed at a real emulator server by base URL alone, get valid MP4s.

Gemini API note: google-genai 3.6.1 raises ValueError for `models.generate_videos` outside
Vertex mode ("only supported in Gemini Enterprise Agent Platform mode"), so the Gemini create
call is made with httpx on the real wire contract; polling (`operations.get`) and the download
(`files.download`) go through the SDK. The gemini-omni-* video models go through the SDK's own
`client.interactions` (create, get, delete); it has no download helper, so a `uri` delivery is
fetched with httpx.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import jwt
import pytest
import uvicorn

from services.emulator.app import create_app
from services.emulator.settings import EmulatorSettings

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

SCALE = 0.25  # 1280x720 requests render at 320x180


@pytest.fixture(scope="module")
def emulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = EmulatorSettings(
        data_dir=tmp_path_factory.mktemp("emulator"),
        render_seconds=0.6,
        queue_seconds=0.1,
        render_scale=SCALE,
        openai_poll_after_ms=100,
        render_workers=2,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "emulator did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def assert_valid_mp4(data: bytes, width: int, height: int, seconds: float) -> None:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert (video.width, video.height) == (width, height)
        assert container.duration is not None
        assert abs(container.duration / 1_000_000 - seconds) < 0.2
        frames = sum(1 for _ in container.decode(video=0))
        assert frames == round(seconds * 24)


def test_openai_sdk_creates_polls_and_downloads_a_video(emulator_url: str) -> None:
    import openai

    client = openai.OpenAI(
        api_key="sk-emulator", base_url=f"{emulator_url}/openai/v1", max_retries=0
    )
    video = client.videos.create(prompt="a red kite over green hills", size="1280x720", seconds="4")
    assert video.status == "queued"
    assert video.id.startswith("video_")
    done = client.videos.poll(video.id)
    assert done.status == "completed"
    assert done.progress == 100
    assert done.expires_at
    content = client.videos.download_content(video.id).read()
    assert_valid_mp4(content, 320, 180, 4.0)
    thumbnail = client.videos.download_content(video.id, variant="thumbnail").read()
    assert thumbnail[:4] == b"RIFF"
    assert client.videos.list(limit=5).data[0].id == video.id


def test_openai_sdk_sees_moderation_failure(emulator_url: str) -> None:
    import openai

    client = openai.OpenAI(
        api_key="sk-emulator", base_url=f"{emulator_url}/openai/v1", max_retries=0
    )
    video = client.videos.create(prompt="[fail:moderation_output] a storm", size="1280x720")
    done = client.videos.poll(video.id)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.code == "moderation_blocked"


def test_gemini_sdk_polls_operation_and_downloads_file(emulator_url: str) -> None:
    from google import genai
    from google.genai import types

    key = "gemini-emulator-key"
    created = httpx.post(
        f"{emulator_url}/gemini/v1beta/models/veo-3.1-generate-preview:predictLongRunning",
        headers={"x-goog-api-key": key},
        json={
            "instances": [{"prompt": "a lighthouse at dusk"}],
            "parameters": {"durationSeconds": 4},
        },
    )
    assert created.status_code == 200, created.text
    client = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=f"{emulator_url}/gemini", api_version="v1beta"),
    )
    operation = types.GenerateVideosOperation(name=created.json()["name"])
    while not operation.done:
        time.sleep(0.2)
        operation = client.operations.get(operation)
    assert operation.result is not None
    assert operation.result.generated_videos
    uri = operation.result.generated_videos[0].video.uri
    file_id = uri.split("/files/")[1].split(":")[0]
    data = client.files.download(file=f"files/{file_id}")
    assert_valid_mp4(data, 320, 180, 4.0)


def test_vertex_express_mode_sdk_generates_inline_video(emulator_url: str) -> None:
    from google import genai
    from google.genai import types

    client = genai.Client(
        vertexai=True,
        api_key="vertex-express-key",
        http_options=types.HttpOptions(base_url=f"{emulator_url}/vertex", api_version="v1beta1"),
    )
    operation = client.models.generate_videos(
        model="veo-3.1-fast-generate-001",
        source=types.GenerateVideosSource(prompt="waves on a pebble beach"),
        config=types.GenerateVideosConfig(
            duration_seconds=4, aspect_ratio="9:16", resolution="720p"
        ),
    )
    while not operation.done:
        time.sleep(0.2)
        operation = client.operations.get(operation)
    assert operation.result is not None
    video = operation.result.generated_videos[0].video
    assert video is not None
    assert video.video_bytes
    assert_valid_mp4(video.video_bytes, 180, 320, 4.0)


def test_vertex_sdk_with_bearer_token_and_gcs_output(emulator_url: str) -> None:
    from google import genai
    from google.genai import types
    from google.oauth2.credentials import Credentials

    client = genai.Client(
        vertexai=True,
        project="reelforge-test",
        location="us-central1",
        credentials=Credentials(token="emulator-access-token"),
        http_options=types.HttpOptions(base_url=f"{emulator_url}/vertex", api_version="v1beta1"),
    )
    operation = client.models.generate_videos(
        model="veo-3.1-generate-001",
        source=types.GenerateVideosSource(prompt="a paper boat in the rain"),
        config=types.GenerateVideosConfig(
            duration_seconds=4, output_gcs_uri="gs://reelforge-out/videos/"
        ),
    )
    assert operation.name.startswith("projects/reelforge-test/locations/us-central1/")
    while not operation.done:
        time.sleep(0.2)
        operation = client.operations.get(operation)
    assert operation.result is not None
    gcs_uri = operation.result.generated_videos[0].video.uri
    assert gcs_uri.startswith("gs://reelforge-out/videos/")
    data = httpx.get(f"{emulator_url}/vertex/gcs/{gcs_uri.removeprefix('gs://')}").content
    assert_valid_mp4(data, 320, 180, 4.0)


def test_runway_sdk_creates_task_and_downloads_output(emulator_url: str) -> None:
    import runwayml

    client = runwayml.RunwayML(
        api_key="key_emulator", base_url=f"{emulator_url}/runway", max_retries=0
    )
    created = client.text_to_video.create(
        model="gen4.5", prompt_text="a fox in snow", ratio="1280:720", duration=2
    )
    task = client.tasks.retrieve(created.id)
    while task.status not in ("SUCCEEDED", "FAILED"):
        time.sleep(0.2)
        task = client.tasks.retrieve(created.id)
    assert task.status == "SUCCEEDED"
    data = httpx.get(task.output[0]).content
    assert_valid_mp4(data, 320, 180, 2.0)


def test_runway_sdk_reads_a_deleted_task_as_cancelled(emulator_url: str) -> None:
    import runwayml

    client = runwayml.RunwayML(
        api_key="key_emulator", base_url=f"{emulator_url}/runway", max_retries=0
    )
    created = client.text_to_video.create(
        model="gen4.5", prompt_text="a heron [render:30]", ratio="720:1280", duration=3
    )
    client.tasks.delete(created.id)
    task = client.tasks.retrieve(created.id)
    assert task.status == "CANCELLED"
    assert task.cost.credits >= 0


def test_runway_sdk_sees_a_retired_model_refused(emulator_url: str) -> None:
    import runwayml

    client = runwayml.RunwayML(
        api_key="key_emulator", base_url=f"{emulator_url}/runway", max_retries=0
    )
    with pytest.raises(runwayml.BadRequestError, match="model"):
        client.image_to_video.create(
            model="gen4_aleph",  # type: ignore[arg-type]
            prompt_image="https://img.example/a.png",
            ratio="1280:720",
        )


def test_openai_sdk_gets_400_for_a_size_outside_video_size(emulator_url: str) -> None:
    import openai

    client = openai.OpenAI(
        api_key="sk-emulator", base_url=f"{emulator_url}/openai/v1", max_retries=0
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(
            prompt="a kite",
            model="sora-2-pro",
            size="1920x1080",  # type: ignore[arg-type]
        )
    assert caught.value.param == "size"
    pro = client.videos.create(prompt="a kite", model="sora-2-pro", size="1792x1024")
    assert pro.size == "1792x1024"


def test_kling_hand_signed_jwt_creates_and_downloads(emulator_url: str, tmp_path: Path) -> None:
    now = int(time.time())
    token = jwt.encode(
        {"iss": "emulator-ak", "exp": now + 1800, "nbf": now - 5},
        "emulator-sk-reelforge-local-hs256-key",
        algorithm="HS256",
    )
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{emulator_url}/kling", headers=headers) as http:
        created = http.post(
            "/v1/videos/text2video",
            json={"prompt": "a kite", "duration": "5", "external_task_id": "it-1"},
        )
        assert created.json()["code"] == 0, created.text
        data = created.json()["data"]
        while data["task_status"] not in ("succeed", "failed"):
            time.sleep(0.2)
            data = http.get("/v1/videos/text2video/it-1").json()["data"]
    assert data["task_status"] == "succeed"
    video = data["task_result"]["videos"][0]
    assert_valid_mp4(httpx.get(video["url"]).content, 320, 180, 5.0)


def test_gemini_sdk_interactions_create_poll_and_download_a_video(emulator_url: str) -> None:
    """gemini-omni-* video through google-genai's own `interactions` client, inline and by URI."""
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key="gemini-emulator-key",
        http_options=types.HttpOptions(base_url=f"{emulator_url}/gemini", api_version="v1beta"),
    )
    for delivery, model in (
        ("inline", "gemini-omni-flash-preview"),
        ("uri", "gemini-omni-1.1-flash"),
    ):
        interaction = client.interactions.create(
            model=model,
            input="a paper boat on a rainy street",
            background=True,
            response_format={
                "type": "video",
                "aspect_ratio": "9:16",
                "duration": "4s",
                "delivery": delivery,
            },
        )
        assert interaction.status in ("queued", "in_progress")
        deadline = time.monotonic() + 30
        while interaction.status in ("queued", "in_progress") and time.monotonic() < deadline:
            time.sleep(0.2)
            interaction = client.interactions.get(interaction.id)
        assert interaction.status == "completed"
        video = interaction.output_video
        assert video is not None
        assert video.mime_type == "video/mp4"
        if delivery == "inline":
            assert isinstance(video.data, str)
            data = base64.b64decode(video.data)
        else:
            assert video.uri
            data = httpx.get(video.uri, headers={"x-goog-api-key": "gemini-emulator-key"}).content
        assert_valid_mp4(data, 180, 320, 4.0)
    client.interactions.delete(interaction.id)
