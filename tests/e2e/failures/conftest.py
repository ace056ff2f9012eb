"""Fixtures for the failure-handling tests: fast backoff, a worker as a real OS process, and a
dedicated PostgreSQL server that a test may stop and start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from benchmarks.processes import stop_process

from mcsync.connection_states import PAUSED_NOTICE
from mcsync.embedded import database_url
from mcsync.migrate import apply_migrations
from tests.conftest import CONTACTS_DDL, create_process_logins
from tests.support.harness import ENCRYPTION_KEY, SyncHarness

SCALE = 0.01  # every retry/probe/throttle delay shrunk a hundredfold
NOTICE = "Heads up—email sync is paused right now. Your contacts are still safe."
assert NOTICE == PAUSED_NOTICE


@pytest.fixture
def fast(db_url: str, emulator: Any) -> SyncHarness:
    """The end-to-end harness with the backoff scaled down and short leases."""
    return SyncHarness(
        db_url,
        emulator,
        mcsync_backoff_scale=SCALE,
        mcsync_lease_seconds=2.0,
        mcsync_poll_interval=0.1,
    )


def settle(h: SyncHarness, timeout: float = 15.0) -> None:
    """Drain (worker --once) again and again until the queue is empty or nothing is left to do
    but wait for a paused/errored connection: retries are due a few ms apart with SCALE."""
    deadline = time.monotonic() + timeout
    while True:
        h.drain()
        pending = h.execute(
            "SELECT count(*) AS n FROM mcsync.mailchimp_sync_queue q"
            " JOIN mcsync.mailchimp_connections c USING (user_id) WHERE c.sync_status = 'active'"
        )[0]["n"]
        if pending == 0 or time.monotonic() > deadline:
            return
        time.sleep(0.03)


def connection(h: SyncHarness) -> dict[str, Any]:
    (row,) = h.execute("SELECT * FROM mcsync.mailchimp_connections")
    return row


def connection_of(h: SyncHarness, user: Any) -> dict[str, Any]:
    (row,) = h.execute(
        "SELECT * FROM mcsync.mailchimp_connections WHERE user_id = %s", (user.user_id,)
    )
    return row


class WorkerProcess:
    """`mcsync worker` as a real subprocess (so it can be killed with SIGKILL)."""

    def __init__(self, h: SyncHarness, **env: str) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": h.settings.database_url,
            "MCSYNC_ENCRYPTION_KEYS": ENCRYPTION_KEY,
            "MAILCHIMP_API_URL": h.settings.mailchimp_api_url,
            "MCSYNC_POLL_INTERVAL": "0.2",
            "MCSYNC_LEASE_SECONDS": "2",
            "MCSYNC_BACKOFF_SCALE": str(SCALE),
            "MCSYNC_HTTP_TIMEOUT": "5",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="mcsync-worker-", suffix=".log", delete=False)

    def start(self, *args: str) -> WorkerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcsync.cli", "--log-level", "INFO", "worker", *args],
            env=self.env,
            stdout=self.log,
            stderr=self.log,
        )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        return stop_process(self.proc, grace=30)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")


@pytest.fixture
def worker_process() -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def make(h: SyncHarness, **env: str) -> WorkerProcess:
        w = WorkerProcess(h, **env)
        started.append(w)
        return w

    yield make
    for w in started:
        if w.proc is not None and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(10)
        Path(w.log.name).unlink(missing_ok=True)


class RestartablePostgres:
    """A private embedded server (pgserver) that a test may stop and start again."""

    def __init__(self) -> None:
        from mcsync.embedded import start_embedded_postgres

        self.server = start_embedded_postgres()
        self.admin_url = self.server.url
        self.url = database_url(self.admin_url, "mcsync_restart")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "mcsync_restart"')
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(CONTACTS_DDL.encode())
        apply_migrations(self.url)
        create_process_logins(self.url)

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[import-untyped]

        pg = self.server._server
        pg_ctl(list(args), pgdata=pg.pgdata, user=pg.system_user, timeout=30)

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        pg = self.server._server
        with pg._lock:
            pg.ensure_postgres_running()

    def restart(self, down_seconds: float = 0.5) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def restartable_pg() -> Iterator[RestartablePostgres]:
    pg = RestartablePostgres()
    try:
        yield pg
    finally:
        pg.close()
