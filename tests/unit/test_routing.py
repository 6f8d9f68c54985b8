from __future__ import annotations

from datetime import date

import pytest

from shared.jobs import JobRequest, ModelChoice, Policy
from shared.providers.catalog import MODELS, find_model
from shared.routing import NoRoute, plan, price

TODAY = date(2026, 11, 27)
ALL = ("openai", "gemini", "vertex", "runway", "kling")


def route_of(request: JobRequest, **kw: object) -> list[str]:
    result = plan(request, MODELS, today=TODAY, enabled_providers=kw.pop("enabled", ALL), **kw)  # type: ignore[arg-type]
    return [f"{m.provider}/{m.model}" for m in result.route]


def test_cheapest_policy_orders_by_price() -> None:
    request = JobRequest(prompt="x", duration_s=8)
    result = plan(request, MODELS, today=TODAY, enabled_providers=ALL)
    prices = [price(request, m) for m in result.route]
    assert prices == sorted(prices)


def test_best_quality_puts_the_highest_quality_first() -> None:
    first = route_of(JobRequest(prompt="x", duration_s=8, policy=Policy.BEST_QUALITY))[0]
    spec = find_model(*first.split("/"))
    assert spec is not None and spec.quality == max(
        m.quality for m in MODELS if m.lifecycle.stage != "retired" and 8 in m.durations_s
    )


def test_retired_sora_is_refused_with_the_date_unless_a_gateway_allows_it() -> None:
    request = JobRequest(
        prompt="x", duration_s=8, policy=Policy.EXPLICIT, provider="openai", model="sora-2"
    )
    with pytest.raises(NoRoute) as refused:
        plan(request, MODELS, today=TODAY, enabled_providers=ALL)
    assert "2026-09-24" in refused.value.reasons["openai/sora-2"]
    allowed = plan(
        request,
        MODELS,
        today=TODAY,
        enabled_providers=ALL,
        retired_allowed=lambda m: m.provider == "openai",
    )
    assert allowed.route[0].model == "sora-2"


def test_capabilities_are_checked_with_clear_reasons() -> None:
    request = JobRequest(prompt="x", duration_s=16, resolution="4k")
    with pytest.raises(NoRoute) as refused:
        plan(request, MODELS, today=TODAY, enabled_providers=ALL)
    reasons = refused.value.reasons
    assert "duration 16s not in [3, 4, 5, 6, 7, 8, 9, 10" in reasons["kling/kling-v3"]
    assert "duration 16s not in [4, 6, 8]" in reasons["gemini/veo-3.0-generate-001"]
    assert "4k requires duration 8s" in reasons["gemini/veo-3.1-generate-preview"]
    assert "resolution 4k not in ['720p']" in reasons["runway/gen4.5"]


def test_budget_below_the_quote_is_refused_before_anything_is_spent() -> None:
    request = JobRequest(prompt="x", duration_s=8, candidates=3, budget_usd=0.5)
    with pytest.raises(NoRoute, match=r"exceeds the budget of 0\.50 USD"):
        plan(request, MODELS, today=TODAY, enabled_providers=ALL)


def test_fallback_chain_keeps_the_callers_order() -> None:
    request = JobRequest(
        prompt="x",
        duration_s=10,
        policy=Policy.FALLBACK_CHAIN,
        fallback_chain=(
            ModelChoice(provider="runway", model="gen4.5"),
            ModelChoice(provider="kling", model="kling-v3"),
        ),
    )
    assert route_of(request) == ["runway/gen4.5", "kling/kling-v3"]


def test_no_fallback_keeps_only_the_first_choice() -> None:
    assert len(route_of(JobRequest(prompt="x", duration_s=8, allow_fallback=False))) == 1


def test_disabled_providers_are_not_routed_to() -> None:
    assert all(
        r.startswith("kling/")
        for r in route_of(JobRequest(prompt="x", duration_s=5), enabled=("kling",))
    )
