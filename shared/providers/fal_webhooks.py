"""fal webhook signatures (docs.fal.ai "Webhooks", "Verifying Your Webhook").

fal signs each delivery with an ED25519 key; the public keys are a JWKS published by fal
(`https://rest.alpha.fal.ai/.well-known/jwks.json`, OKP/Ed25519 keys, `x` base64url). Headers:
`X-Fal-Webhook-Request-Id`, `X-Fal-Webhook-User-Id`, `X-Fal-Webhook-Timestamp` (unix seconds,
accepted within 5 minutes) and `X-Fal-Webhook-Signature` (hex). The signed message is
`"{request_id}\\n{user_id}\\n{timestamp}\\n{sha256_hex(body)}"`; any key of the set may match.

`parse_webhook` is synchronous, so the key set is configuration (`FAL_WEBHOOK_JWKS`, the JWKS
document's text), not a fetch per delivery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.providers.errors import FailureClass, ProviderRejected
from shared.providers.http import Clock

TOLERANCE_S = 300
HEADERS = (
    "x-fal-webhook-request-id",
    "x-fal-webhook-user-id",
    "x-fal-webhook-timestamp",
    "x-fal-webhook-signature",
)


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def public_keys(jwks_text: str | None) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS document (other key types are skipped)."""
    if not jwks_text:
        return []
    document = json.loads(jwks_text)
    keys = []
    for jwk in document.get("keys", []) if isinstance(document, dict) else []:
        if isinstance(jwk, dict) and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            keys.append(Ed25519PublicKey.from_public_bytes(_b64url(str(jwk["x"]))))
    return keys


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{request_id}\n{user_id}\n{timestamp}\n{digest}".encode()


def sign(
    private_key: Ed25519PrivateKey, request_id: str, user_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The headers fal sends with `body` (used by the emulator and tests)."""
    message = signed_message(request_id, user_id, str(timestamp), body)
    return {
        "x-fal-webhook-request-id": request_id,
        "x-fal-webhook-user-id": user_id,
        "x-fal-webhook-timestamp": str(timestamp),
        "x-fal-webhook-signature": private_key.sign(message).hex(),
        "content-type": "application/json",
    }


def jwks_of(private_key: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    raw = private_key.public_key().public_bytes_raw()
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig"}]}


class FalWebhookVerifier:
    def __init__(self, jwks_text: str | None, clock: Clock) -> None:
        self._keys = public_keys(jwks_text)
        self._clock = clock

    def verify(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """The delivery's JSON object, once its signature and timestamp check out."""
        lowered = {k.lower(): v for k, v in headers.items()}
        missing = [h for h in HEADERS if not lowered.get(h)]
        if missing:
            raise _rejected(f"missing header {missing[0]}")
        if not self._keys:
            raise _rejected("no webhook public keys configured (FAL_WEBHOOK_JWKS)")
        request_id, user_id, timestamp, signature = (lowered[h] for h in HEADERS)
        try:
            sent = int(timestamp)
            raw_signature = bytes.fromhex(signature)
        except ValueError as exc:
            raise _rejected("malformed timestamp or signature") from exc
        if abs(self._clock() - sent) > TOLERANCE_S:
            raise _rejected("timestamp outside the 5 minute tolerance")
        message = signed_message(request_id, user_id, timestamp, body)
        if not any(_valid(key, raw_signature, message) for key in self._keys):
            raise _rejected("signature does not verify with any published key")
        try:
            event = json.loads(body)
        except (ValueError, binascii.Error) as exc:
            raise ProviderRejected(FailureClass.INVALID_INPUT, "fal: webhook is not JSON") from exc
        if not isinstance(event, dict):
            raise ProviderRejected(FailureClass.INVALID_INPUT, "fal: webhook is not an object")
        if event.get("request_id") != request_id:
            raise _rejected("body request_id differs from the signed header")
        return event


def _valid(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _rejected(reason: str) -> ProviderRejected:
    return ProviderRejected(FailureClass.AUTH, f"fal: webhook rejected: {reason}")
