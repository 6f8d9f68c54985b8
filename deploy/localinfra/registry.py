"""The servers the launcher knows, in start order, and name resolution."""

from __future__ import annotations

from collections.abc import Sequence

from deploy.localinfra import ferretdb, kafka, minio, postgres, prometheus
from deploy.localinfra.errors import InfraError
from deploy.localinfra.spec import ServerSpec

SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (kafka.SPEC, postgres.SPEC, ferretdb.SPEC, minio.SPEC, prometheus.SPEC)
}


def resolve(names: Sequence[str]) -> list[ServerSpec]:
    """The specs for ``names`` (all servers when empty), in registry order, without duplicates."""
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        raise InfraError(f"unknown server(s): {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    wanted = set(names) or set(SERVERS)
    return [spec for name, spec in SERVERS.items() if name in wanted]
