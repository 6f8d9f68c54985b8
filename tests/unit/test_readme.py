"""The README's tables mirror the code: catalog, topic registry, metrics."""

from __future__ import annotations

import yaml

from deploy.docs import README, render
from shared.providers.catalog import BUNDLED


def test_readme_generated_sections_are_current() -> None:
    text = README.read_text()
    assert text == render(text), "run `python -m deploy.docs` and commit README.md"


def test_readme_names_the_two_commands_and_ci_runs_the_second() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (README.parent / ".ci" / "run").read_text()


def test_readme_model_table_lists_every_enabled_model_of_the_data_file_with_its_facts() -> None:
    """Read against the data file itself (not through deploy.docs), so a generator bug shows."""
    raw = yaml.safe_load(BUNDLED.read_text())
    expected = [
        (
            m["provider"],
            m["model"],
            f"{m['price']['usd_per_second']:.3f}",
            str(m["lifecycle"].get("shutdown_on") or ""),
        )
        for m in raw["models"]
        if m.get("enabled", True)
    ]
    section = README.read_text().split("<!-- BEGIN models -->\n")[1].split("<!-- END models")[0]
    rows = [line.split(" | ") for line in section.splitlines()[2:]]
    found = [
        (cells[0].strip("| "), cells[1].strip("`"), cells[7], shutdown_of(cells[-1]))
        for cells in rows
    ]
    assert found == expected


def shutdown_of(cell: str) -> str:
    _, _, rest = cell.partition("shutdown ")
    return rest[:10]
