"""Throwaway PostgreSQL databases for tests: `throwaway_database(base_uri)` creates an empty
database on the server `base_uri` names and returns its URI and a function that drops it.
Test modules build their own fixtures on it (migrate, open a pool, drop at teardown)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import asyncpg


def with_database(uri: str, database: str) -> str:
    """`uri` with its database replaced (same server, user, password and options)."""
    return urlsplit(uri)._replace(path=f"/{database}").geturl()


async def _admin_execute(base_uri: str, sql: str) -> None:
    conn = await asyncpg.connect(with_database(base_uri, "postgres"), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def throwaway_database(
    base_uri: str, name: str | None = None
) -> tuple[str, Callable[[], Awaitable[None]]]:
    """Create `name` (default `reelforge_test_<random hex>`) on `base_uri`'s server (connecting
    to its `postgres` database); return the new database's URI and an async dropper."""
    name = name or f"reelforge_test_{secrets.token_hex(6)}"
    await _admin_execute(base_uri, f'CREATE DATABASE "{name}"')

    async def drop() -> None:
        await _admin_execute(base_uri, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return with_database(base_uri, name), drop


async def migrated_database(
    base_uri: str, name: str | None = None
) -> tuple[str, Callable[[], Awaitable[None]]]:
    """`throwaway_database` with the project's migrations applied."""
    from shared.pg import connect_pool, migrate

    uri, drop = await throwaway_database(base_uri, name)
    pool = await connect_pool(uri, min_size=1, max_size=1)
    try:
        await migrate(pool)
    finally:
        await pool.close()
    return uri, drop
