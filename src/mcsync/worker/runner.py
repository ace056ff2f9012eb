"""The worker's main loop: wake on NOTIFY or the poll timer, lease accounts, serve them.

Stops cleanly on SIGTERM/SIGINT: no new claims, in-flight passes get `drain_seconds` to
finish and record, and leases left behind simply expire."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import signal
import socket
from uuid import UUID

import httpx
from psycopg_pool import AsyncConnectionPool

from mcsync.config import Settings
from mcsync.crypto import TokenCipher
from mcsync.logging import get_logger
from mcsync.worker.account import AccountSettings, AccountWorker
from mcsync.worker.listener import Listener
from mcsync.worker.metrics import Metrics, MetricsServer
from mcsync.worker.store import WorkerStore

log = get_logger("mcsync.worker")

MAX_ACCOUNTS_AT_ONCE = 16


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**6):06x}"


class Worker:
    def __init__(self, settings: Settings, *, worker_id: str | None = None, listen: bool = True):
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.listen = listen
        self.cipher = TokenCipher(settings.encryption_keys)
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.busy: dict[UUID, asyncio.Task[None]] = {}
        self.metrics = Metrics()
        self.metrics_server: MetricsServer | None = None

    async def run(self, *, once: bool = False, drain_seconds: float = 20.0) -> None:
        s = self.settings
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=50)
        async with (
            AsyncConnectionPool(
                s.database_url,
                min_size=1,
                max_size=max(4, MAX_ACCOUNTS_AT_ONCE // 2),
                kwargs={"autocommit": True},
                # After a Postgres restart, pooled connections are dead: test before lending.
                check=AsyncConnectionPool.check_connection,
                open=False,
            ) as pool,
            httpx.AsyncClient(limits=limits, timeout=s.mcsync_http_timeout) as http,
        ):
            store = WorkerStore(pool, self.worker_id, s.mcsync_lease_seconds)
            accounts = AccountWorker(
                store,
                self.cipher,
                http,
                AccountSettings(
                    api_url_template=s.mailchimp_api_url,
                    max_in_flight=s.mcsync_max_in_flight,
                    batch_threshold=s.mcsync_batch_threshold,
                    claim_size=s.mcsync_claim_size,
                    max_passes=s.mcsync_max_passes,
                    http_timeout=s.mcsync_http_timeout,
                    backoff_scale=s.mcsync_backoff_scale,
                ),
                self.metrics,
            )
            log.info("worker_started", worker_id=self.worker_id, once=once)
            if once:
                await self._drain(store, accounts)
                return
            if s.mcsync_metrics_port is not None:
                self.metrics_server = MetricsServer(self.metrics, pool, s.mcsync_metrics_port)
                await self.metrics_server.start()
            listener_task = None
            if self.listen:
                listener_task = asyncio.create_task(Listener(s.database_url, self.wake).run())
            try:
                await self._loop(store, accounts)
            finally:
                if listener_task is not None:
                    listener_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await listener_task
                await self._finish_in_flight(drain_seconds)
                if self.metrics_server is not None:
                    await self.metrics_server.stop()
                log.info("worker_stopped", worker_id=self.worker_id)

    async def _claim_and_start(self, store: WorkerStore, accounts: AccountWorker) -> int:
        free = MAX_ACCOUNTS_AT_ONCE - len(self.busy)
        if free <= 0:
            return 0
        claimed = await store.claim_accounts(free, self.busy.keys())
        for account in claimed:
            task = asyncio.create_task(accounts.serve(account))
            self.busy[account.user_id] = task
            task.add_done_callback(functools.partial(self._done, account.user_id))
        return len(claimed)

    def _done(self, user_id: UUID, task: asyncio.Task[None]) -> None:
        self.busy.pop(user_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "account_pass_failed",
                user_id=str(user_id),
                outcome="error",
                error=repr(task.exception())[:300],
            )
        self.wake.set()  # an account finished: there may be more for it, or room for another

    async def _loop(self, store: WorkerStore, accounts: AccountWorker) -> None:
        poll = self.settings.mcsync_poll_interval
        while not self.stopping.is_set():
            self.wake.clear()  # before claiming, so a NOTIFY during the claim is not lost
            try:
                await self._claim_and_start(store, accounts)
            except Exception as exc:  # the database is away: keep the loop alive and retry
                log.warning("claim_failed", outcome="error", error=repr(exc)[:300])
            timeout = poll * random.uniform(0.8, 1.2)
            waiters = [
                asyncio.create_task(self.wake.wait()),
                asyncio.create_task(self.stopping.wait()),
            ]
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()

    async def _drain(self, store: WorkerStore, accounts: AccountWorker) -> None:
        """--once: serve every account until no account has anything due."""
        while True:
            started = await self._claim_and_start(store, accounts)
            if not started and not self.busy:
                return
            if self.busy:
                await asyncio.wait(list(self.busy.values()), return_when=asyncio.FIRST_COMPLETED)

    async def _finish_in_flight(self, drain_seconds: float) -> None:
        if not self.busy:
            return
        tasks = list(self.busy.values())
        _, pending = await asyncio.wait(tasks, timeout=drain_seconds)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    def stop(self) -> None:
        self.stopping.set()


async def run_worker(
    settings: Settings, *, once: bool = False, worker_id: str | None = None, listen: bool = True
) -> None:
    worker = Worker(settings, worker_id=worker_id, listen=listen)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, worker.stop)
    await worker.run(once=once)
