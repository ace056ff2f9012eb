"""One process's Postgres: one connection pool, made once and passed in (issue 18).

The web process makes one `Database` at start (`mcsync.web.app`): its routes, Sync Now's runs,
the sweeper that resumes them and the operator's audit all borrow from it. A CLI command that
reconciles or audits (`mcsync sync-now`, `verify`, `connect`) opens one for the command
(`Database.session`). The stores' functions are synchronous and take a connection
(`fn(conn, ...)`); async code runs them with `await database.run(fn, ...)`, on a pooled
connection in one of the pool's own threads, so the event loop never waits on Postgres and a
connection is held only for that one call, never across a Mailchimp request.

(The worker has its own async pool, `mcsync.worker.runner`, and its LISTEN session; `mcsync
migrate`, `doctor` and `demo` are one-shot commands with one connection of their own.)"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

T = TypeVar("T")
P = ParamSpec("P")

WEB_POOL_SIZE = 8
CLI_POOL_SIZE = 2


class Database:
    """A pool of autocommit connections and the threads that use them (one per connection:
    a call never waits for a connection while another thread holds one idle)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self._threads = ThreadPoolExecutor(
            max_workers=pool.max_size, thread_name_prefix=f"{pool.name}-db"
        )

    @classmethod
    def for_url(
        cls, url: str, *, max_size: int = WEB_POOL_SIZE, application_name: str = "mcsync"
    ) -> Database:
        """A Database on `url`, not yet open (`open()`); at most `max_size` connections, each
        named `application_name` in pg_stat_activity."""
        pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            name=application_name,
            kwargs={"autocommit": True, "application_name": application_name},
            # A connection is checked (one round trip) before it is lent: after a restart of
            # Postgres the next request or sweep gets a fresh one instead of an error.
            check=ConnectionPool.check_connection,
        )
        return cls(pool)

    @classmethod
    @contextmanager
    def session(
        cls, url: str, *, max_size: int = CLI_POOL_SIZE, application_name: str = "mcsync-cli"
    ) -> Iterator[Database]:
        """One command's Database: open for the `with` block, closed after it. A database that
        does not answer raises psycopg.OperationalError with the server's reason at once (one
        plain connect first), not the pool's timeout 30 seconds later."""
        psycopg.connect(url, autocommit=True, application_name=application_name).close()
        database = cls.for_url(url, max_size=max_size, application_name=application_name)
        try:
            database.open()
            yield database
        finally:
            database.close()

    @property
    def max_size(self) -> int:
        return self.pool.max_size

    def open(self, timeout: float = 30.0) -> None:
        self.pool.open(wait=True, timeout=timeout)

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection for synchronous callers, returned after the block."""
        with self.pool.connection() as conn:
            yield conn

    async def run(
        self,
        fn: Callable[Concatenate[psycopg.Connection[Any], P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`fn(conn, *args, **kwargs)` on a pooled connection, in one of the pool's threads."""

        def call() -> T:
            with self.pool.connection() as conn:
                return fn(conn, *args, **kwargs)

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, functools.partial(call))
