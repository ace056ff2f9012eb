"""LISTEN on a dedicated connection; NOTIFY is only a hint, so wake-ups are also timed.

The listener reconnects with capped backoff and wakes the worker after every reconnect, so a
notification missed while the connection was down never strands an event."""

from __future__ import annotations

import asyncio

import psycopg
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from mcsync.logging import get_logger
from mcsync.worker.store import CHANNEL, Hints

log = get_logger("mcsync.worker")


class Listener:
    def __init__(self, database_url: str, wake: asyncio.Event, *, health_interval: float = 10.0):
        self.database_url = database_url
        self.wake = wake
        self.health_interval = health_interval
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Listen forever (until cancelled), reconnecting with capped backoff."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((psycopg.OperationalError, OSError)),
            wait=wait_exponential_jitter(multiplier=0.2, max=10.0),
            reraise=True,
        ):
            with attempt:
                await self._listen_once()

    async def _listen_once(self) -> None:
        async with Hints.listening(self.database_url) as hints:
            self.connected.set()
            self.wake.set()  # catch up on whatever arrived while we were not listening
            log.info("listening", channel=CHANNEL)
            try:
                while True:
                    if await hints.arrived(self.health_interval):
                        self.wake.set()
                    # A quiet spell (or a hint): make sure the connection is still alive.
                    await hints.ping()
            finally:
                self.connected.clear()
