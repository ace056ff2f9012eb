"""The pools' connection checks: the worker's catches dead connections and costs live ones no query;
the web's replaces a dead connection before lending it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg
import pytest

from mcsync.worker.store import check_connection


def test_a_healthy_connection_passes_without_a_round_trip(db_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute("SELECT 1")
            trace = tmp_path / "libpq.trace"
            with trace.open("wb") as f:
                conn.pgconn.trace(f.fileno())  # libpq writes every message sent or received
                await check_connection(conn)
                conn.pgconn.untrace()
            assert trace.read_bytes() == b""
            await conn.execute("SELECT 1")  # and it still works

    asyncio.run(scenario())


def test_a_connection_postgres_terminated_fails_the_check(db_url: str) -> None:
    async def scenario() -> None:
        async with (
            await psycopg.AsyncConnection.connect(db_url, autocommit=True) as victim,
            await psycopg.AsyncConnection.connect(db_url, autocommit=True) as admin,
        ):
            pid = victim.info.backend_pid
            await admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # the backend is gone once no row names it
                cur = await admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
                if await cur.fetchone() is None:
                    break
                await asyncio.sleep(0.02)
            with pytest.raises(psycopg.OperationalError):
                await check_connection(victim)

    asyncio.run(scenario())


def test_the_web_pool_lends_a_live_connection_after_its_backend_died(db_url: str) -> None:
    from mcsync.database import Database

    def backend_pid(conn: psycopg.Connection) -> int:  # type: ignore[type-arg]
        return int(conn.info.backend_pid)

    database = Database.for_url(db_url, max_size=1, application_name="mcsync-pool-check")
    database.open()
    try:
        first = asyncio.run(database.run(backend_pid))
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [first])
            deadline = time.monotonic() + 5
            while (
                admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [first]).fetchone()
                and time.monotonic() < deadline
            ):
                time.sleep(0.02)
        # The one pooled connection is dead: the check on lending replaces it, no error.
        second = asyncio.run(database.run(backend_pid))
        assert second != first
    finally:
        database.close()
