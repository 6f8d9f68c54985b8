"""Committed event schemas and the AsyncAPI document match the code; every topic is covered."""

from __future__ import annotations

from deploy.schemas import OUT, PAYLOADS, schema_files
from shared.topics import TOPICS


def test_committed_schemas_are_current() -> None:
    for name, text in schema_files().items():
        path = OUT / name
        assert path.exists() and path.read_text() == text, f"run `make schemas` ({name} is stale)"


def test_every_topic_has_documented_payloads() -> None:
    assert set(PAYLOADS) == set(TOPICS)
