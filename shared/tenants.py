"""Tenants: API keys that map to tenants, and each tenant's webhook signing secret.

API keys come from settings (`API_KEYS="key1:tenant-a,key2:tenant-b"`); only their SHA-256
is kept in memory, and lookups compare digests in constant time. Each tenant's Standard
Webhooks secret is derived from one master secret, so every service that signs or verifies
can compute it without a shared table: `whsec_` + base64(HMAC-SHA256(master, tenant id)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from shared.errors import ConfigurationError


class TenantDirectory:
    def __init__(self, api_keys: str) -> None:
        self._by_digest: dict[bytes, str] = {}
        for entry in filter(None, (e.strip() for e in api_keys.split(","))):
            key, sep, tenant = entry.partition(":")
            if not sep or not key or not tenant:
                raise ConfigurationError(
                    "API_KEYS", f"expected 'key:tenant' entries, got {entry!r}"
                )
            self._by_digest[_digest(key)] = tenant

    def tenant_for(self, api_key: str | None) -> str | None:
        if not api_key:
            return None
        wanted = _digest(api_key)
        found = None
        for digest, tenant in self._by_digest.items():
            if hmac.compare_digest(digest, wanted):
                found = tenant
        return found

    def known(self, tenant_id: str) -> bool:
        return tenant_id in self._by_digest.values()

    def __len__(self) -> int:
        return len(self._by_digest)


def webhook_secret_for(tenant_id: str, master_secret: str) -> str:
    raw = hmac.new(master_secret.encode(), tenant_id.encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(raw).decode()


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
