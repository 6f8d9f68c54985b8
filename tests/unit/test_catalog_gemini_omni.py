"""The Gemini API's video models after the Veo previews' shutdown: Gemini Omni is routable, and
the catalog, the adapter's surface choice and the emulator agree on which models those are."""

from __future__ import annotations

from datetime import date

import pytest

from services.emulator.gemini_interactions_request import MODELS as EMULATED
from shared.jobs import JobRequest, Policy
from shared.providers.catalog import models_of
from shared.providers.gemini_interactions import is_interactions_model
from shared.routing import NoRoute, plan

TODAY = date(2026, 12, 1)
OMNI = {m.model: m for m in models_of("gemini") if is_interactions_model(m.model)}


def explicit(model: str, **kw: object) -> JobRequest:
    return JobRequest.model_validate(
        {"prompt": "x", "duration_s": 8, "policy": Policy.EXPLICIT, "provider": "gemini",
         "model": model, **kw}
    )  # fmt: skip


def test_the_named_replacement_of_the_veo_previews_is_routable_today() -> None:
    with pytest.raises(NoRoute) as refused:
        plan(explicit("veo-3.1-generate-preview"), models_of("gemini"), today=TODAY,
             enabled_providers=("gemini",))  # fmt: skip
    assert "gemini-omni-1.1-flash" in str(refused.value)
    result = plan(
        explicit("gemini-omni-1.1-flash", resolution="1080p"),
        models_of("gemini"),
        today=TODAY,
        enabled_providers=("gemini",),
    )
    assert [m.model for m in result.route] == ["gemini-omni-1.1-flash"]


def test_the_catalog_the_adapter_and_the_emulator_know_the_same_omni_models() -> None:
    assert (
        set(OMNI)
        == set(EMULATED)
        == {
            "gemini-omni-flash-preview",
            "gemini-omni-1.1-flash",
            "gemini-omni-1.2-flash",
        }
    )
    for name, spec in OMNI.items():
        assert set(spec.resolutions) <= EMULATED[name], name
    assert not is_interactions_model("veo-3.1-generate-preview")
