"""PostgreSQL plumbing shared by every store that lives there: the pool, the versioned
migrations (applied at start, once, under an advisory lock) and a health check.

asyncpg was chosen over psycopg 3 for the job store: it is asyncio-native, speaks the binary
protocol, caches prepared statements per connection and was the faster of the two in every
published comparison we could check; the job store's hot path is many small single-row
statements, which is where that matters.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import asyncpg

from shared.errors import ConfigurationError, DependencyUnavailable
from shared.pg_migrations import MIGRATIONS, Migration

log = logging.getLogger(__name__)
# Any 64-bit constant both sides agree on: only one process applies migrations at a time.
_MIGRATION_LOCK = 0x7265656C_666F7267  # "reelforg"
Pool: TypeAlias = asyncpg.Pool


def redacted(uri: str) -> str:
    """The URI without its password, for error messages and logs."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def encode_json(value: Any) -> str:
    """JSON for json/jsonb parameters. PostgreSQL's JSON has no Infinity or NaN (MongoDB's BSON
    does): such floats are written as the strings "Infinity", "-Infinity" and "NaN", which
    pydantic reads back into float fields."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(
            kind, encoder=encode_json, decoder=json.loads, schema="pg_catalog"
        )


async def connect_pool(
    uri: str,
    *,
    timeout_s: float = 10.0,
    min_size: int = 2,
    max_size: int = 10,
    setting: str = "JOB_STORE_URI",
) -> Pool:
    """A pool on `uri`, checked with one query; one-line ConfigurationError otherwise."""
    if urlsplit(uri).scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(setting, f"not a postgresql:// URI: {redacted(uri)}")
    try:
        pool = await asyncpg.create_pool(
            uri,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            command_timeout=60,
            init=_init_connection,
            server_settings={"application_name": "reelforge"},
        )
    except (OSError, TimeoutError) as exc:
        raise ConfigurationError(
            setting, f"no PostgreSQL server answers at {redacted(uri)} ({type(exc).__name__})"
        ) from exc
    except asyncpg.InvalidCatalogNameError as exc:
        raise ConfigurationError(setting, f"the database does not exist: {exc}") from exc
    except asyncpg.PostgresError as exc:
        raise ConfigurationError(setting, f"the server refused us: {exc}") from exc
    assert pool is not None
    return pool


async def migrate(pool: Pool, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the migrations this database has not seen, in order, each in its own transaction,
    under an advisory lock so that replicas starting together apply each exactly once.
    Returns the versions applied now."""
    applied: list[int] = []
    try:
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {
                    r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
                }
                for migration in migrations:
                    if migration.version in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                            migration.version,
                            migration.name,
                        )
                    log.info("applied migration %d (%s)", migration.version, migration.name)
                    applied.append(migration.version)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DependencyUnavailable("postgresql", f"migrations failed: {exc}") from exc
    return applied


def pool_check(pool: Pool) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        await pool.fetchval("SELECT 1")

    return check
