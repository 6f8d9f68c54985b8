"""The model catalog as data: the bundled file, an operator's override, one-line errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.providers.catalog import BUNDLED, CatalogError, load_catalog
from shared.runtime import run_main
from shared.settings import ServiceSettings


def write(tmp_path: Path, data: dict[str, Any] | str, name: str = "ops.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def bundled_entry(provider: str, model: str) -> dict[str, Any]:
    raw = yaml.safe_load(BUNDLED.read_text())
    entry: dict[str, Any] = next(
        m for m in raw["models"] if (m["provider"], m["model"]) == (provider, model)
    )
    return entry


def test_bundled_catalog_loads_with_a_source_and_date_for_every_price_and_lifecycle() -> None:
    catalog = load_catalog()
    assert catalog.format_version == 1
    assert len({(m.provider, m.model) for m in catalog.models}) == len(catalog.models)
    for m in catalog.models:
        assert m.price_source and m.price_checked_on, m.model
        assert m.lifecycle.source and m.lifecycle.checked_on, m.model


def test_override_changes_only_the_fields_it_names(tmp_path: Path) -> None:
    override = write(
        tmp_path,
        {
            "format_version": 1,
            "sources": {"our-contract": {"title": "Our Kling contract, 2026"}},
            "models": [
                {
                    "provider": "kling",
                    "model": "kling-v3",
                    "price": {"usd_per_second": 0.05, "source": "our-contract"},
                }
            ],
        },
    )
    before = load_catalog().find("kling", "kling-v3")
    after = load_catalog(override).find("kling", "kling-v3")
    assert before is not None and after is not None
    assert after.price_per_second_usd == 0.05
    assert after.price_source == "Our Kling contract, 2026"
    assert after.price_multipliers == before.price_multipliers
    assert after.durations_s == before.durations_s


def test_override_adds_a_new_model_and_removes_a_disabled_one(tmp_path: Path) -> None:
    added = {**bundled_entry("runway", "gen4.5"), "model": "gen5-private"}
    override = write(
        tmp_path,
        {
            "format_version": 1,
            "models": [added, {"provider": "runway", "model": "gen4_turbo", "enabled": False}],
        },
    )
    catalog = load_catalog(override)
    assert catalog.find("runway", "gen5-private") is not None
    assert catalog.find("runway", "gen4_turbo") is None
    assert catalog.find("runway", "gen4.5") is not None


def test_a_bad_field_in_the_override_names_the_file_the_model_and_the_field(
    tmp_path: Path,
) -> None:
    override = write(
        tmp_path,
        {
            "format_version": 1,
            "models": [
                {"provider": "kling", "model": "kling-v3", "price": {"usd_per_second": "cheap"}}
            ],
        },
    )
    with pytest.raises(CatalogError) as caught:
        load_catalog(override)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{override}: models[kling/kling-v3].price.usd_per_second: ")


def test_a_new_model_missing_a_section_is_refused_naming_it(tmp_path: Path) -> None:
    entry = bundled_entry("runway", "gen4.5")
    del entry["limits"]
    override = write(tmp_path, {"format_version": 1, "models": [{**entry, "model": "x1"}]})
    with pytest.raises(CatalogError, match=r"models\[runway/x1\]\.limits: Field required"):
        load_catalog(override)


def test_an_unknown_source_key_is_refused(tmp_path: Path) -> None:
    override = write(
        tmp_path,
        {
            "format_version": 1,
            "models": [{"provider": "kling", "model": "kling-v3", "price": {"source": "nowhere"}}],
        },
    )
    with pytest.raises(CatalogError, match=r"kling-v3\]\.price\.source: 'nowhere' is not a key"):
        load_catalog(override)


def test_another_format_version_is_refused_before_merging(tmp_path: Path) -> None:
    override = write(tmp_path, {"format_version": 2, "models": []})
    with pytest.raises(CatalogError, match="format_version: 2 is not 1"):
        load_catalog(override)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    override = write(tmp_path, "format_version: 1\nmodels: [\n  - {provider: x\n")
    with pytest.raises(CatalogError, match=r"line \d+: not valid YAML"):
        load_catalog(override)


def test_a_missing_override_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot be read"):
        load_catalog(tmp_path / "absent.yaml")


def test_a_retired_entry_needs_its_shutdown_date(tmp_path: Path) -> None:
    override = write(
        tmp_path,
        {
            "format_version": 1,
            "models": [
                {
                    "provider": "kling",
                    "model": "kling-v3",
                    "lifecycle": {"stage": "retired", "shutdown_on": None},
                }
            ],
        },
    )
    with pytest.raises(CatalogError, match=r"kling-v3\]\.lifecycle: .*needs shutdown_on"):
        load_catalog(override)


def test_the_state_moves_with_the_dates_not_with_the_stage(tmp_path: Path) -> None:
    override = write(
        tmp_path,
        {
            "format_version": 1,
            "models": [
                {
                    "provider": "kling",
                    "model": "kling-v3",
                    "lifecycle": {
                        "stage": "ga",
                        "deprecated_on": "2027-01-01",
                        "shutdown_on": "2027-03-01",
                    },
                }
            ],
        },
    )
    spec = load_catalog(override).find("kling", "kling-v3")
    assert spec is not None
    life = spec.lifecycle
    days = [date(2026, 12, 31), date(2027, 1, 1), date(2027, 3, 1)]
    assert [life.state_on(d) for d in days] == ["ga", "deprecated", "retired"]


@pytest.fixture
def root_logging() -> Iterator[None]:
    """run_main configures the root logger; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_a_service_with_a_bad_override_exits_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    override = write(tmp_path, {"format_version": 1, "models": [{"provider": "kling"}]})
    settings = ServiceSettings(service_name="probe", catalog_override_file=str(override))
    started: list[object] = []

    async def create(s: object) -> Any:
        started.append(s)
        raise AssertionError("must not start with a bad catalog")

    assert run_main(settings, create) == 2
    err = capsys.readouterr().err.strip()
    assert started == []
    assert err.count("\n") == 0
    assert err.startswith(f"probe: error: {override}: models[kling/None].")
