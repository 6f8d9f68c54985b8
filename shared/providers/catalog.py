"""Every model Reelforge can route to, loaded from the data file `catalog.yaml` beside this one.

The file (schema: `catalog_file.CatalogFile`) holds per model its capabilities, limits,
routing scores, price and lifecycle, each fact with the source it was checked against and the
date. An
operator's file of the same shape (`CATALOG_OVERRIDE_FILE`) is merged onto it by
(provider, model): a known entry takes the fields given, a new entry is added whole, and
`enabled: false` removes one. A bad file raises `CatalogError`, one line naming the file and
the field.

Each process installs its catalog once at start (`shared.runtime.run_main` calls
`install(load_catalog(...))`); `active()` returns it, and the bundled file until then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shared.errors import ConfigurationError
from shared.providers.base import Lifecycle, ModelSpec
from shared.providers.catalog_file import CatalogFile, ModelEntry, Source

BUNDLED = Path(__file__).with_name("catalog.yaml")
FORMAT_VERSION = 1


class CatalogError(ConfigurationError):
    """The catalog file (or the operator's override) is not valid: file, field, problem."""

    def __init__(self, file: str | Path, problem: str) -> None:
        super().__init__(str(file), problem)


@dataclass(frozen=True)
class Catalog:
    """The validated models of one process, in file order (enabled ones only)."""

    models: tuple[ModelSpec, ...]
    format_version: int = FORMAT_VERSION

    def find(self, provider: str, model: str) -> ModelSpec | None:
        return next((m for m in self.models if m.provider == provider and m.model == model), None)

    def of(self, provider: str) -> tuple[ModelSpec, ...]:
        return tuple(m for m in self.models if m.provider == provider)


def load_catalog(override: str | Path | None = None, *, bundled: Path = BUNDLED) -> Catalog:
    """The bundled catalog with the operator's `override` file merged onto it, validated."""
    raw = _read(bundled)
    origin = {_key(m): bundled for m in raw.get("models") or [] if isinstance(m, dict)}
    if override:
        extra = _read(Path(override))
        if extra.get("format_version") != raw.get("format_version"):
            raise CatalogError(
                override,
                f"format_version: {extra.get('format_version')!r} is not "
                f"{raw.get('format_version')!r}, the version this Reelforge reads",
            )
        raw = _merge(raw, extra)
        origin.update({_key(m): Path(override) for m in extra.get("models") or []})
    try:
        parsed = CatalogFile.model_validate(raw)
    except ValidationError as exc:
        raise _one_line(exc, raw, origin, bundled) from None
    except ValueError as exc:
        raise CatalogError(override or bundled, str(exc)) from None
    return Catalog(tuple(_spec(m, parsed.sources) for m in parsed.models if m.enabled))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CatalogError(path, f"cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise CatalogError(path, f"{where}not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise CatalogError(path, "the top level must be a mapping with format_version and models")
    return data


def _key(entry: Any) -> tuple[str, str]:
    if not isinstance(entry, dict):
        return ("?", "?")
    return (str(entry.get("provider")), str(entry.get("model")))


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    models = [dict(m) if isinstance(m, dict) else m for m in base.get("models") or []]
    index = {_key(m): i for i, m in enumerate(models)}
    for entry in extra.get("models") or []:
        at = index.get(_key(entry))
        if at is None or not isinstance(entry, dict):
            index[_key(entry)] = len(models)
            models.append(entry)
        else:
            models[at] = _deep_merge(models[at], entry)
    sources = {**(base.get("sources") or {}), **(extra.get("sources") or {})}
    return {**base, "sources": sources, "models": models}


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        merged = isinstance(old, dict) and isinstance(value, dict)
        out[key] = _deep_merge(old, value) if merged else value  # type: ignore[arg-type]
    return out


def _one_line(
    exc: ValidationError, raw: dict[str, Any], origin: dict[tuple[str, str], Path], bundled: Path
) -> CatalogError:
    error = exc.errors()[0]
    loc = list(error["loc"])
    file: Path = bundled
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        key = _key(raw["models"][loc[1]])
        file = origin.get(key, bundled)
        loc[1] = f"{key[0]}/{key[1]}"
    field = "".join(
        f"[{part}]" if i and loc[i - 1] == "models" else f".{part}" for i, part in enumerate(loc)
    )
    return CatalogError(file, f"{field.lstrip('.') or 'catalog'}: {error['msg']}")


def _cite(sources: Mapping[str, Source], key: str) -> str:
    src = sources[key]
    return f"{src.title} ({src.url})" if src.url else src.title


def _spec(entry: ModelEntry, sources: Mapping[str, Source]) -> ModelSpec:
    caps, life, price = entry.capabilities, entry.lifecycle, entry.price
    return ModelSpec(
        provider=entry.provider,
        model=entry.model,
        **caps.model_dump(exclude={"source", "checked_on"}),
        **entry.limits.model_dump(),
        **entry.scores.model_dump(),
        price_per_second_usd=price.usd_per_second,
        price_multipliers=price.multipliers,
        price_source=_cite(sources, price.source),
        price_checked_on=price.checked_on.isoformat(),
        price_confidence=price.confidence,
        lifecycle=Lifecycle(
            stage=life.stage,
            deprecated_on=life.deprecated_on.isoformat() if life.deprecated_on else None,
            retires_on=life.shutdown_on.isoformat() if life.shutdown_on else None,
            replacement=life.replacement,
            note=life.note,
            source=_cite(sources, life.source),
            checked_on=life.checked_on.isoformat(),
            confidence=life.confidence,
        ),
    )


_active: Catalog | None = None


def install(catalog: Catalog) -> None:
    """Make `catalog` the one this process routes with (once, at start)."""
    global _active
    _active = catalog


def active() -> Catalog:
    global _active
    if _active is None:
        _active = load_catalog()
    return _active


def model_view(spec: ModelSpec, day: date) -> dict[str, Any]:
    """One model as `GET /v1/models` and `reelforge models` show it: its facts and its state on
    `day` (with the dates and replacement when it is deprecated or retired)."""
    state = spec.lifecycle.state_on(day)
    notice = spec.lifecycle.notice(day) if state in ("deprecated", "retired") else None
    return {**spec.model_dump(mode="json"), "state": state, "state_notice": notice}


def find_model(provider: str, model: str) -> ModelSpec | None:
    return active().find(provider, model)


def models_of(provider: str) -> tuple[ModelSpec, ...]:
    return active().of(provider)


def all_models() -> tuple[ModelSpec, ...]:
    return active().models


def __getattr__(name: str) -> Any:
    # `MODELS` is the active catalog's models, read when it is asked for (not at import).
    if name == "MODELS":
        return active().models
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
