"""Standard Webhooks signing and verification (the Standard Webhooks specification).

Contract (byte-compatible with openai-python's `client.webhooks.verify_signature`):
- headers `webhook-id`, `webhook-timestamp` (unix seconds), `webhook-signature`;
- signature = base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")), sent as `v1,<sig>`;
  the header may carry several space-separated entries and any one may match;
- key = base64-decoded remainder when the secret starts with `whsec_`, else its raw UTF-8 bytes;
- the timestamp must be within `tolerance` seconds (default 300) of now, either way.

Verification failures raise `WebhookVerificationError` (a `ValueError`) with a reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping

DEFAULT_TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"


class WebhookVerificationError(ValueError):
    """The payload, its headers or its timestamp do not verify."""


def secret_key(secret: str) -> bytes:
    """The HMAC key for a secret: `whsec_<base64>` decoded, otherwise the raw UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX) :])
    return secret.encode("utf-8")


def generate_secret(num_bytes: int = 24) -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(num_bytes)).decode("ascii")


def new_webhook_id() -> str:
    return "msg_" + secrets.token_hex(12)


def compute_signature(secret: str, webhook_id: str, timestamp: int | str, body: bytes | str) -> str:
    """The base64 signature (without the `v1,` prefix) of one delivery."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    signed = webhook_id.encode("utf-8") + b"." + str(timestamp).encode("utf-8") + b"." + raw
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_headers(
    secret: str,
    body: bytes | str,
    *,
    webhook_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Headers for one delivery of `body` (send `body` byte for byte as signed)."""
    wid = webhook_id or new_webhook_id()
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": wid,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + compute_signature(secret, wid, ts, body),
        "content-type": "application/json",
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing required header {name!r}")


def _check_timestamp(raw: str, now: int, tolerance: int) -> None:
    try:
        ts = int(raw)
    except ValueError:
        raise WebhookVerificationError("invalid webhook timestamp format") from None
    if now - ts > tolerance:
        raise WebhookVerificationError("webhook timestamp is too old")
    if ts > now + tolerance:
        raise WebhookVerificationError("webhook timestamp is too new")


def _candidate_signatures(header: str) -> list[str]:
    return [part[3:] for part in header.split() if part.startswith("v1,")]


def verify(
    secret: str,
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: Callable[[], float] = time.time,
) -> None:
    """Raise `WebhookVerificationError` unless one `v1` signature matches within tolerance."""
    signature_header = _header(headers, "webhook-signature")
    timestamp = _header(headers, "webhook-timestamp")
    webhook_id = _header(headers, "webhook-id")
    _check_timestamp(timestamp, int(now()), tolerance)
    candidates = _candidate_signatures(signature_header)
    if not candidates:
        raise WebhookVerificationError("no v1 signature in webhook-signature header")
    expected = compute_signature(secret, webhook_id, timestamp, body).encode("ascii")
    if not any(hmac.compare_digest(expected, sig.encode("ascii", "replace")) for sig in candidates):
        raise WebhookVerificationError("no webhook signature matches")
