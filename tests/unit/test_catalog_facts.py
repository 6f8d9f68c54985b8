"""Facts of the catalog that change behaviour: shutdowns, deprecations, Kling's ratios and
audio rule, and how intake, routing and `reelforge models` show them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from prometheus_client import CollectorRegistry

from services.cli.__main__ import main as cli_main
from services.cli.__main__ import models_text
from services.intake.api import build_router
from services.intake.handlers import IntakeDeps
from services.intake.live import LiveUpdates
from services.intake.settings import IntakeSettings
from shared.jobs import JobRequest, Policy
from shared.metrics import ServiceMetrics
from shared.providers import catalog
from shared.providers.base import GenerationRequest
from shared.providers.catalog import active, find_model, install, load_catalog, model_view
from shared.providers.kling import create_body as kling_body
from shared.providers.runway import create_body
from shared.routing import NoRoute, plan, price
from shared.tenants import TenantDirectory
from tests.fakes import FakeBlobStore, FakeJobRepository, FakeWebhookIds

TODAY = date(2026, 12, 1)
ALL = ("openai", "gemini", "vertex", "runway", "kling")
A = {"Authorization": "Bearer key-a"}


def explicit(provider: str, model: str, **kw: Any) -> JobRequest:
    return JobRequest(
        prompt="x", duration_s=kw.pop("duration_s", 8), policy=Policy.EXPLICIT,
        provider=provider, model=model, **kw,
    )  # fmt: skip


def route(request: JobRequest, today: date = TODAY) -> list[str]:
    result = plan(request, active().models, today=today, enabled_providers=ALL)
    return [f"{m.provider}/{m.model}" for m in result.route]


@pytest.fixture
def installed() -> Iterator[None]:
    """Tests that install a catalog put the bundled one back."""
    yield
    install(load_catalog())


def deprecate_kling_v3(tmp_path: Path) -> Path:
    path = tmp_path / "ops.yaml"
    life = {"deprecated_on": "2026-11-01", "shutdown_on": "2027-02-01", "replacement": "kling-v4"}
    entry = {"provider": "kling", "model": "kling-v3", "lifecycle": life}
    path.write_text(yaml.safe_dump({"format_version": 1, "models": [entry]}))
    return path


def test_gemini_veo_3_0_is_refused_naming_its_shutdown_date() -> None:
    for model in ("veo-3.0-generate-001", "veo-3.0-fast-generate-001"):
        with pytest.raises(NoRoute) as refused:
            route(explicit("gemini", model))
        assert "shut down on 2026-06-30" in str(refused.value)
        assert "vertex/veo-3.1" in refused.value.reasons[f"gemini/{model}"]


def test_gemini_veo_3_1_previews_are_routable_until_2026_10_22_then_refused() -> None:
    request = explicit("gemini", "veo-3.1-generate-preview")
    assert route(request, today=date(2026, 10, 21)) == ["gemini/veo-3.1-generate-preview"]
    with pytest.raises(NoRoute, match=r"shut down on 2026-10-22.*gemini-omni-1\.1-flash"):
        route(request, today=date(2026, 10, 22))


def test_veo_3_1_ga_stays_routable_on_vertex() -> None:
    assert route(explicit("vertex", "veo-3.1-generate-001")) == ["vertex/veo-3.1-generate-001"]


def test_kling_1080p_costs_the_checked_multiple_of_720p() -> None:
    for model, ratio in (("kling-v2-6", 1.67), ("kling-v3", 1.33)):
        spec = find_model("kling", model)
        assert spec is not None
        at_720 = price(explicit("kling", model, duration_s=5), spec)
        at_1080 = price(explicit("kling", model, duration_s=5, resolution="1080p"), spec)
        assert at_1080 == pytest.approx(at_720 * ratio, abs=1e-4)


def test_kling_v2_6_audio_is_refused_at_720p_and_served_at_1080p() -> None:
    with pytest.raises(NoRoute, match="audio only at 1080p"):
        route(explicit("kling", "kling-v2-6", duration_s=5, audio=True))
    at_1080 = explicit("kling", "kling-v2-6", duration_s=5, audio=True, resolution="1080p")
    assert route(at_1080) == ["kling/kling-v2-6"]
    assert route(explicit("kling", "kling-v3", duration_s=5, audio=True)) == ["kling/kling-v3"]


def test_a_ga_model_is_refused_from_its_shutdown_date_alone(tmp_path: Path) -> None:
    specs = load_catalog(deprecate_kling_v3(tmp_path)).models
    request = explicit("kling", "kling-v3", duration_s=5)
    still = plan(request, specs, today=date(2027, 1, 31), enabled_providers=ALL)
    assert still.warnings == {
        "kling/kling-v3": "deprecated on 2026-11-01, shuts down on 2027-02-01; "
        "the provider names kling-v4 as the replacement"
    }
    with pytest.raises(NoRoute, match="shut down on 2027-02-01"):
        plan(request, specs, today=date(2027, 2, 1), enabled_providers=ALL)


class Intake:
    def __init__(self, day: date) -> None:
        self.broker = KafkaBroker("127.0.0.1:1")
        self.deps = IntakeDeps(
            settings=IntakeSettings(),
            repo=FakeJobRepository(),
            broker=self.broker,
            blobs=FakeBlobStore(),
            metrics=ServiceMetrics(CollectorRegistry(), "intake"),
            tenants=TenantDirectory("key-a:ta"),
            providers={},
            openai_base_url="https://gateway.example/v1",
            clock=lambda: datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
            webhook_ids=FakeWebhookIds(),
        )
        self.app = FastAPI()
        self.app.include_router(build_router(self.deps, LiveUpdates()))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    intake = Intake(TODAY)
    async with TestKafkaBroker(intake.broker):
        transport = httpx.ASGITransport(app=intake.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as c:
            yield c


async def test_intake_refuses_a_shut_down_model_with_422_and_the_date(
    client: httpx.AsyncClient,
) -> None:
    body = {"prompt": "x", "duration_s": 8, "policy": "explicit", "provider": "gemini"}
    body["model"] = "veo-3.0-generate-001"
    response = await client.post("/v1/jobs", json=body, headers=A)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "shut down on 2026-06-30" in detail["message"]
    assert "2026-06-30" in detail["refused"]["gemini/veo-3.0-generate-001"]


@pytest.mark.usefixtures("installed")
async def test_intake_routes_a_deprecated_model_with_a_warning(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    install(load_catalog(deprecate_kling_v3(tmp_path)))
    body = {"prompt": "x", "duration_s": 5, "policy": "explicit", "provider": "kling"}
    body["model"] = "kling-v3"
    quote = await client.post("/v1/quote", json=body, headers=A)
    created = await client.post("/v1/jobs", json=body, headers=A)
    assert (quote.status_code, created.status_code) == (200, 202)
    for answer in (quote.json(), created.json()):
        assert "shuts down on 2027-02-01" in answer["warnings"]["kling/kling-v3"]


async def test_models_endpoint_shows_each_models_state_today(client: httpx.AsyncClient) -> None:
    views = {f"{v['provider']}/{v['model']}": v for v in (await client.get("/v1/models")).json()}
    assert views.keys() == {f"{m.provider}/{m.model}" for m in active().models}
    veo = views["gemini/veo-3.0-generate-001"]
    assert (veo["state"], veo["lifecycle"]["retires_on"]) == ("retired", "2026-06-30")
    assert "2026-06-30" in veo["state_notice"]
    assert views["kling/kling-v3"]["state"] == "ga"
    assert views["kling/kling-v3"]["state_notice"] is None
    assert views["kling/kling-v3"]["price_source"].startswith("Krea API")


def test_models_command_prints_every_model_with_its_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATALOG_OVERRIDE_FILE", str(deprecate_kling_v3(tmp_path)))
    assert cli_main(["models", "--local"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows.keys() == {f"{m.provider}/{m.model}" for m in load_catalog().models}
    assert "retired" in rows["gemini/veo-3.0-generate-001"]
    assert "shut down on 2026-06-30" in rows["gemini/veo-3.0-generate-001"]
    assert "shuts down on 2027-02-01" in rows["kling/kling-v3"]  # the override was read


def test_models_command_reports_a_bad_override_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("format_version: 1\nmodels: [{provider: kling, model: kling-v3, scores: 3}]\n")
    monkeypatch.setenv("CATALOG_OVERRIDE_FILE", str(bad))
    assert cli_main(["models", "--local"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: models[kling/kling-v3].scores: ") and "\n" not in err


def test_models_text_is_built_from_the_views_the_api_serves() -> None:
    views = [model_view(m, TODAY) for m in catalog.load_catalog().models]
    text = models_text(views)
    assert len(text.splitlines()) == len(views) + 1


def test_veo_3_1_is_routable_on_runway_with_its_audio_price() -> None:
    request = explicit("runway", "veo3.1", audio=True)
    assert route(request) == ["runway/veo3.1"]
    spec = find_model("runway", "veo3.1")
    assert spec is not None
    assert price(request, spec) == pytest.approx(0.20 * 8 * 2.0)  # 40 credits/s with audio


def test_runway_bodies_carry_audio_only_for_models_that_take_it() -> None:
    silent = GenerationRequest(prompt="x", duration_s=8)
    _, veo = create_body(silent.model_copy(update={"audio": True}), "veo3.1")
    _, veo_silent = create_body(silent, "veo3.1_fast")
    _, gen = create_body(silent.model_copy(update={"duration_s": 5}), "gen4.5")
    assert (veo["audio"], veo_silent["audio"]) == (True, False)
    assert "audio" not in gen  # the SDK's gen4.5 parameters have no audio field


def test_kling_v3_has_a_4k_mode_with_audio_included_and_v2_6_has_none() -> None:
    spec = find_model("kling", "kling-v3")
    assert spec is not None
    at_720 = price(explicit("kling", "kling-v3", duration_s=5), spec)
    in_4k = explicit("kling", "kling-v3", duration_s=5, resolution="4k")
    assert price(in_4k, spec) == pytest.approx(at_720 * 2.5)
    with_audio = in_4k.model_copy(update={"audio": True})
    assert price(with_audio, spec) == price(in_4k, spec)
    assert route(with_audio) == ["kling/kling-v3"]
    with pytest.raises(NoRoute, match="resolution 4k not in"):
        route(explicit("kling", "kling-v2-6", duration_s=5, resolution="4k"))
    assert (
        kling_body(GenerationRequest(prompt="x", duration_s=5, resolution="4k"), "kling-v3")["mode"]
        == "4k"
    )
