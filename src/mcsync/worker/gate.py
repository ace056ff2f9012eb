"""The account's gate: the in-flight cap its concurrent passes share, and the flags that stop
every pass from starting another call (throttled, connection lost, paused, lease lost)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcsync.mailchimp.errors import (
    ConnectionLevelError,
    MailchimpError,
    TransientError,
    disposition,
)

P = ParamSpec("P")
R = TypeVar("R")


class AccountGate:
    """The account's shared state while it is served: the in-flight cap (shared by all its
    concurrent passes) and the flags that stop every pass from starting another call."""

    def __init__(self, max_in_flight: int) -> None:
        self.slots = asyncio.Semaphore(max_in_flight)
        self.throttled: TransientError | None = None
        self.connection_error: ConnectionLevelError | None = None
        self.paused = False
        self.lease_lost = False

    @property
    def stopped(self) -> bool:
        return (
            self.throttled is not None
            or self.connection_error is not None
            or self.paused
            or self.lease_lost
        )

    async def call(self, fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run one Mailchimp call within the account's in-flight cap. A throttle or a lost
        connection (as `disposition` tells) stops every pass from starting another call;
        once stopped, raises `Deferred` instead of calling."""
        if self.stopped:
            raise Deferred
        async with self.slots:
            if self.stopped:
                raise Deferred
            try:
                return await fn(*args, **kwargs)
            except MailchimpError as exc:
                kind = disposition(exc)
                if kind == "throttled" and self.throttled is None:
                    assert isinstance(exc, TransientError)
                    self.throttled = exc
                elif kind == "connection":
                    assert isinstance(exc, ConnectionLevelError)
                    self.connection_error = exc
                raise


class Deferred(Exception):
    """The account was throttled or lost its credentials: don't start another call."""
