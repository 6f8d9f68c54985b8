"""Pre-flight validation, routing by policy and price quotes (pure: no I/O).

`plan(request, models, ...)` returns the ordered route of models a job may use, with the
reason every other model was left out, and the quote for the first choice. The dispatcher
walks the route: the first entry is submitted, the next ones are fallbacks after a failure
whose class allows it, as long as the spend stays within the job's budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

from shared.jobs import Job, JobRequest, ModelChoice, Policy
from shared.providers.base import GenerationRequest, ModelSpec


class NoRoute(ValueError):
    """No model can serve the request; `reasons` says why each candidate was refused."""

    def __init__(self, message: str, reasons: dict[str, str]) -> None:
        super().__init__(message)
        self.reasons = reasons


@dataclass(frozen=True)
class Quote:
    provider: str
    model: str
    per_candidate_usd: float
    candidates: int

    @property
    def total_usd(self) -> float:
        return round(self.per_candidate_usd * self.candidates, 4)


@dataclass(frozen=True)
class RoutePlan:
    route: tuple[ModelSpec, ...]
    quote: Quote
    refused: dict[str, str] = field(default_factory=dict)

    def choices(self) -> tuple[ModelChoice, ...]:
        return tuple(ModelChoice(provider=m.provider, model=m.model) for m in self.route)


def price(request: JobRequest, spec: ModelSpec) -> float:
    """Price of one candidate of `request` on `spec`, USD."""
    multiplier = spec.price_multipliers.get(request.resolution, 1.0)
    if request.audio or spec.audio == "always":
        multiplier *= spec.price_multipliers.get("audio", 1.0)
    return round(spec.price_per_second_usd * request.duration_s * multiplier, 4)


def problems(request: JobRequest, spec: ModelSpec, today: date, allow_retired: bool) -> list[str]:
    """Why `spec` cannot serve `request` (empty when it can)."""
    out: list[str] = []
    life = spec.lifecycle
    if life.stage == "retired" and not allow_retired:
        out.append(f"retired on {life.retires_on}" + (f" ({life.note})" if life.note else ""))
    elif life.retires_on and date.fromisoformat(life.retires_on) <= today and not allow_retired:
        out.append(f"retired on {life.retires_on}")
    if request.duration_s not in spec.durations_s:
        out.append(f"duration {request.duration_s}s not in {list(spec.durations_s)}")
    forced = spec.duration_for_resolution.get(request.resolution)
    if forced is not None and request.duration_s != forced:
        out.append(f"{request.resolution} requires duration {forced}s")
    if request.resolution not in spec.resolutions:
        out.append(f"resolution {request.resolution} not in {list(spec.resolutions)}")
    if request.aspect_ratio not in spec.aspect_ratios:
        out.append(f"aspect ratio {request.aspect_ratio} not in {list(spec.aspect_ratios)}")
    if request.image_url and not spec.image_to_video:
        out.append("no image-to-video")
    if not request.image_url and not spec.text_to_video:
        out.append("no text-to-video (needs an image)")
    if request.audio and spec.audio == "never":
        out.append("no audio")
    return out


_SCORES: dict[Policy, Callable[[ModelSpec, JobRequest], tuple[float, ...]]] = {
    Policy.CHEAPEST: lambda m, r: (price(r, m), -m.quality),
    Policy.BEST_QUALITY: lambda m, r: (-m.quality, -m.physics, price(r, m)),
    Policy.BEST_PHYSICS: lambda m, r: (-m.physics, -m.quality, price(r, m)),
    Policy.CHARACTER_CONSISTENCY: lambda m, r: (-m.consistency, -m.quality, price(r, m)),
    Policy.FASTEST: lambda m, r: (m.typical_render_s, price(r, m)),
    Policy.EXPLICIT: lambda m, r: (price(r, m),),
}


def plan(
    request: JobRequest,
    models: Iterable[ModelSpec],
    *,
    today: date,
    enabled_providers: Iterable[str],
    retired_allowed: Callable[[ModelSpec], bool] = lambda _m: False,
) -> RoutePlan:
    """Order the usable models for `request` by its policy, or raise NoRoute."""
    enabled = set(enabled_providers)
    refused: dict[str, str] = {}
    usable: list[ModelSpec] = []
    for spec in _candidates(request, list(models)):
        name = f"{spec.provider}/{spec.model}"
        if spec.provider not in enabled:
            refused[name] = "provider not enabled"
            continue
        issues = problems(request, spec, today, retired_allowed(spec))
        if issues:
            refused[name] = "; ".join(issues)
        else:
            usable.append(spec)
    if request.policy is not Policy.FALLBACK_CHAIN:
        usable.sort(key=lambda m: _SCORES[request.policy](m, request))
    if not request.allow_fallback:
        usable = usable[:1]
    if not usable:
        raise NoRoute("no model can serve this request", refused)
    first = usable[0]
    quote = Quote(first.provider, first.model, price(request, first), request.candidates)
    if request.budget_usd is not None and quote.total_usd > request.budget_usd:
        raise NoRoute(
            f"quote {quote.total_usd:.2f} USD ({first.provider}/{first.model}, "
            f"{request.candidates} candidate(s)) exceeds the budget of "
            f"{request.budget_usd:.2f} USD",
            refused,
        )
    return RoutePlan(tuple(usable), quote, refused)


def _candidates(request: JobRequest, models: list[ModelSpec]) -> list[ModelSpec]:
    if request.policy is Policy.EXPLICIT:
        chosen = [m for m in models if m.provider == request.provider]
        if request.model:
            chosen = [m for m in chosen if m.model == request.model]
        if not chosen:
            raise NoRoute(f"unknown provider/model {request.provider}/{request.model}", {})
        return chosen
    if request.policy is Policy.FALLBACK_CHAIN:
        ordered: list[ModelSpec] = []
        for choice in request.fallback_chain:
            for m in models:
                if (
                    m.provider == choice.provider
                    and choice.model in (None, m.model)
                    and m not in ordered
                ):
                    ordered.append(m)
        if not ordered:
            raise NoRoute("no model of the fallback chain is known", {})
        return ordered
    return models


def generation_request(job: Job, attempt_id: str, callback_url: str | None) -> GenerationRequest:
    """What one attempt asks the provider for. `external_id` is per attempt: providers that
    take one (Kling) require it unique, and find the task by it after a lost answer."""
    r = job.request
    return GenerationRequest(
        prompt=r.prompt,
        negative_prompt=r.negative_prompt,
        duration_s=r.duration_s,
        resolution=r.resolution,
        aspect_ratio=r.aspect_ratio,
        fps=r.fps,
        audio=r.audio,
        image_url=r.image_url,
        seed=r.seed,
        callback_url=callback_url,
        external_id=f"{job.job_id}.{attempt_id}",
    )
