"""The worker's main loop: wake on NOTIFY or the poll timer, lease accounts, serve them.

Stops cleanly on SIGTERM/SIGINT: no new claims, in-flight passes get `drain_seconds` to
finish and record, and leases left behind simply expire."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
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
from mcsync.mailchimp.client import ClientFactory
from mcsync.worker.account import AccountSettings, AccountWorker
from mcsync.worker.backoff import Backoff
from mcsync.worker.lanes import Lanes
from mcsync.worker.listener import Listener
from mcsync.worker.metrics import Metrics, MetricsServer
from mcsync.worker.store import WorkerStore, check_connection, configure_connection

log = get_logger("mcsync.worker")

MAX_ACCOUNTS_AT_ONCE = 16
# Postgres connections per worker, and how many of them an import's passes may never take
# (kept for other accounts' live edits; see mcsync.worker.lanes).
POOL_SIZE = 10
RESERVED_FOR_LIVE = 3


def default_worker_id() -> str:
    """host:pid:random, so two workers never share a lease owner."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**6):06x}"


class Worker:
    """The worker's loop: wake on NOTIFY (`wake`) or the poll timer, lease accounts that have
    due work, serve each on its own task with `accounts`.

    Its parts are injected: `store` (claims, on any pool), `accounts` (serving one account,
    with its Mailchimp clients and backoff). `WorkerService` builds them for production."""

    def __init__(
        self,
        store: WorkerStore,
        accounts: AccountWorker,
        *,
        poll_interval: float = 2.0,
        wake: asyncio.Event | None = None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.poll_interval = poll_interval
        self.wake = wake or asyncio.Event()
        self.stopping = stopping or asyncio.Event()
        self.busy: dict[UUID, asyncio.Task[None]] = {}

    @property
    def worker_id(self) -> str:
        return self.store.owner

    async def run(self, *, once: bool = False, drain_seconds: float = 20.0) -> None:
        """Serve until `stop()` (then give in-flight passes `drain_seconds`); with `once`,
        serve every account until none has anything due, then return."""
        log.info("worker_started", worker_id=self.worker_id, once=once)
        if once:
            await self.drain()
            return
        try:
            await self._loop()
        finally:
            await self._finish_in_flight(drain_seconds)
            log.info("worker_stopped", worker_id=self.worker_id)

    async def serve_due(self) -> int:
        """Lease accounts with due work (as many as there is room for) and start serving
        each; returns how many were started."""
        free = MAX_ACCOUNTS_AT_ONCE - len(self.busy)
        if free <= 0:
            return 0
        claimed = await self.store.claim_accounts(free, self.busy.keys())
        for account in claimed:
            task = asyncio.create_task(self.accounts.serve(account))
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

    async def _loop(self) -> None:
        poll = self.poll_interval
        while not self.stopping.is_set():
            self.wake.clear()  # before claiming, so a NOTIFY during the claim is not lost
            try:
                await self.serve_due()
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

    async def drain(self) -> None:
        """--once: serve every account until no account has anything due."""
        while True:
            started = await self.serve_due()
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
        """Claim nothing more; `run` returns once in-flight passes finish (or time out)."""
        self.stopping.set()


class WorkerService:
    """`mcsync worker`: a `Worker` with its production parts, built from settings (a pooled
    Postgres, one shared HTTP client, LISTEN/NOTIFY, the metrics endpoint)."""

    def __init__(
        self, settings: Settings, *, worker_id: str | None = None, listen: bool = True
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.listen = listen
        self.cipher = TokenCipher(settings.encryption_keys)
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.metrics = Metrics()

    def worker(
        self, pool: AsyncConnectionPool, http: httpx.AsyncClient
    ) -> Worker:
        """The worker on these parts."""
        s = self.settings
        store = WorkerStore(
            pool,
            self.worker_id,
            s.mcsync_lease_seconds,
            lanes=Lanes(POOL_SIZE, RESERVED_FOR_LIVE),
        )
        accounts = AccountWorker(
            store,
            self.cipher,
            ClientFactory.from_settings(s, http),
            AccountSettings.from_settings(s),
            backoff=Backoff(s.mcsync_backoff_scale),
            metrics=self.metrics,
        )
        return Worker(
            store,
            accounts,
            poll_interval=s.mcsync_poll_interval,
            wake=self.wake,
            stopping=self.stopping,
        )

    async def run(self, *, once: bool = False, drain_seconds: float = 20.0) -> None:
        """Open the parts, run the worker on them (see `Worker.run`), close them."""
        s = self.settings
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=50)
        async with (
            AsyncConnectionPool(
                s.database_url,
                min_size=1,
                max_size=POOL_SIZE + 1,  # and one for the metrics endpoint
                # No server-side prepared statements: after five runs psycopg prepares a
                # statement, and Postgres may then settle on a generic plan made while the
                # tables were nearly empty (an import's first passes). For `= ANY($array)` that
                # plan filters the account's whole ledger instead of looking the hashes up in
                # the index: 650 ms instead of 2 ms per pass at 50,000 members, so the cost of
                # an import grew with its square. Planning each statement costs ~0.2 ms.
                kwargs={"autocommit": True, "prepare_threshold": None},
                configure=configure_connection,
                # After a Postgres restart, pooled connections are dead: test before lending.
                check=check_connection,
                open=False,
            ) as pool,
            httpx.AsyncClient(limits=limits, timeout=s.mcsync_http_timeout) as http,
        ):
            worker = self.worker(pool, http)
            if once:
                await worker.run(once=True)
                return
            metrics_server = None
            if s.mcsync_metrics_port is not None:
                metrics_server = MetricsServer(
                    self.metrics, pool, s.mcsync_metrics_port, s.mcsync_metrics_host
                )
                await metrics_server.start()
            listener = None
            if self.listen:
                listener = asyncio.create_task(Listener(s.database_url, self.wake).run())
            try:
                await worker.run(drain_seconds=drain_seconds)
            finally:
                if listener is not None:
                    listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await listener
                if metrics_server is not None:
                    await metrics_server.stop()

    def stop(self) -> None:
        self.stopping.set()


# The young generation's threshold for a worker process (CPython's default is 700): a pass
# allocates a few objects per contact by the thousand, almost none in reference cycles.
# 30,000, not more: at 100,000 the full benchmark measured the worker's peak RSS during an
# import of 1,000,000 at 167.7 MB (108-113 MB with CPython's default 700 and with 30,000): cyclic
# garbage waited for the rarer older collections. 30,000 keeps most of the CPU saved (import of
# 100,000: 0.086 ms/contact against 0.097 at 700 and 0.082 at 100,000).
GC_YOUNG_THRESHOLD = 30_000


def tune_collector() -> None:
    """Set up the garbage collector for a process that runs only the worker (`mcsync worker`;
    not the tests' in-process workers): what is alive once it has started (modules, the
    Mailchimp models' schemas, settings) lives as long as the process, so it is frozen out of
    the collector's scans (`gc.freeze`), and the young generation is collected every
    `GC_YOUNG_THRESHOLD` allocations rather than every 700 (a pass's objects mostly outlive a
    young collection, so each one scanned them again for nothing). Both only change when cyclic
    garbage is looked for, never what is freed (it waits a little longer: the peak RSS measured
    no higher than with CPython's default at 30,000); docs/performance.md (issue 22) has what
    they save."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def run_worker(
    settings: Settings, *, once: bool = False, worker_id: str | None = None, listen: bool = True
) -> None:
    """Run `mcsync worker` until SIGTERM/SIGINT (or, with `once`, until nothing is due)."""
    service = WorkerService(settings, worker_id=worker_id, listen=listen)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, service.stop)
    await service.run(once=once)
