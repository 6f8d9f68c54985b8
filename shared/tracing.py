"""W3C trace context (traceparent) created at intake and carried in Kafka headers and HTTP."""

from __future__ import annotations

import secrets


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def child_of(traceparent: str | None) -> str:
    """Same trace, new span id (a hop to another service)."""
    parts = (traceparent or "").split("-")
    if len(parts) != 4:
        return new_traceparent()
    return f"{parts[0]}-{parts[1]}-{secrets.token_hex(8)}-{parts[3]}"
