"""Regenerate the README sections that mirror the code (`python -m deploy.docs`); a test fails
when they are stale. Sections sit between `<!-- BEGIN name -->` and `<!-- END name -->`."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from deploy.stack import ROOT
from shared.metrics import ServiceMetrics
from shared.providers.base import ModelSpec
from shared.providers.catalog import load_catalog
from shared.topics import TOPICS

README = ROOT / "README.md"
# Written by `make fault-matrix` (tests/e2e/test_fault_matrix.py with FAULT_MATRIX_OUT set).
FAULT_MATRIX = ROOT / "deploy" / "fault_matrix.json"


def models_table() -> str:
    """The bundled catalog file, one row per model (an operator's override is not shown)."""
    rows = [
        "| provider | model | durations (s) | resolutions | ratios | i2v | audio | USD/s (720p) | "
        "multipliers | price checked | lifecycle |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in load_catalog().models:
        durations = (
            f"{m.durations_s[0]}-{m.durations_s[-1]}"
            if len(m.durations_s) > 4
            else ", ".join(map(str, m.durations_s))
        )
        audio = m.audio + (f" ({', '.join(m.audio_resolutions)})" if m.audio_resolutions else "")
        multipliers = ", ".join(f"{k} x{v:g}" for k, v in m.price_multipliers.items()) or "-"
        rows.append(
            f"| {m.provider} | `{m.model}` | {durations} | {', '.join(m.resolutions)} | "
            f"{', '.join(m.aspect_ratios)} | {'yes' if m.image_to_video else 'no'} | {audio} | "
            f"{m.price_per_second_usd:.3f} | {multipliers} | "
            f"{m.price_confidence.replace('_', '-')}, {m.price_checked_on} | {_lifecycle(m)} |"
        )
    return "\n".join(rows)


def _lifecycle(m: ModelSpec) -> str:
    life = m.lifecycle
    dates = [f"deprecated {life.deprecated_on}"] if life.deprecated_on else []
    dates += [f"shutdown {life.retires_on}"] if life.retires_on else []
    text = life.stage + (f" ({', '.join(dates)})" if dates else "")
    return text + (f"; use `{life.replacement}`" if life.replacement else "")


def topics_table() -> str:
    rows = [
        "| topic | partitions | producers | consumers (group) | DLQ | public | what |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in TOPICS.values():
        rows.append(
            f"| `{spec.topic.value}` | {spec.partitions} | {', '.join(spec.producers)} | "
            f"{', '.join(spec.consumers)} | {'`' + spec.dlq + '`' if spec.dlq else '-'} | "
            f"{'yes' if spec.public else ''} | {spec.description} |"
        )
    return "\n".join(rows)


def metrics_table() -> str:
    metrics = ServiceMetrics(CollectorRegistry(), "docs")
    found = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for m in sorted(found, key=lambda m: m._name):
        kind = m._type
        name = m._name + ("_total" if kind == "counter" else "")
        rows.append(
            f"| `{name}` | {kind} | {', '.join(m._labelnames) or '-'} | {m._documentation} |"
        )
    return "\n".join(rows)


def fault_matrix_table() -> str:
    """The last recorded fault-matrix run: one line per row, the counts that must be 0 first."""
    if not FAULT_MATRIX.exists():
        return "_No recorded run: `make fault-matrix` writes it._"
    run = json.loads(FAULT_MATRIX.read_text())
    rows = [
        f"{run['jobs_per_row']} jobs per row. Must be 0: lost, conflicting outcome ids, unrecorded"
        " paid tasks, budget overruns, DLQ records, missing webhooks.",
        "",
        "| row | lost | conflicting outcome ids | unrecorded paid tasks | budget overruns | "
        "DLQ records | missing webhooks | completed | repeated outcome events (same id) | "
        "restarts | failed attempts | Kling calls create/status/download |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in run["rows"]:
        rows.append(
            f"| {r['row']} | {r['jobs_lost']} | {r['conflicting_outcomes']} | "
            f"{r['unrecorded_paid_tasks']} | {r['budget_overruns']} | {r['dead_letters']} | "
            f"{r['webhooks_missing']} | {r['completed']}/{r['jobs']} | "
            f"{r['repeated_outcome_events']} | {r['restarts']} | {r.get('failed_attempts', '')} | "
            f"{r.get('provider_calls', '')} |"
        )
    return "\n".join(rows)


SECTIONS: dict[str, Callable[[], str]] = {
    "models": models_table,
    "topics": topics_table,
    "metrics": metrics_table,
    "fault-matrix": fault_matrix_table,
}


def render(text: str) -> str:
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n)(?:.*?\n)?(<!-- END {name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README has no section markers for {name!r}")
        body = make()
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)  # noqa: B023
    return text


def main() -> int:
    README.write_text(render(README.read_text()))
    print("README sections regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
