"""The README's tables mirror the code: catalog, topic registry, metrics."""

from __future__ import annotations

from deploy.docs import README, render


def test_readme_generated_sections_are_current() -> None:
    text = README.read_text()
    assert text == render(text), "run `python -m deploy.docs` and commit README.md"


def test_readme_names_the_two_commands_and_ci_runs_the_second() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (README.parent / ".ci" / "run").read_text()
