"""W3C trace context (traceparent) created at intake and carried in Kafka headers and HTTP."""

from __future__ import annotations

import secrets


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
