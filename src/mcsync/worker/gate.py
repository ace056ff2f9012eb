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
    concurrent passes) and the four reasons that stop every pass from starting another call.

    The reasons are read-only; each is set by one named event: the gate itself notes a
    throttle or a lost connection from a call's error, the passes `pause` it (a row spent its
    last attempt) or `lose_lease` (another worker took the account over). None is ever
    cleared: the account is served again from a fresh gate."""

    def __init__(self, max_in_flight: int) -> None:
        self.slots = asyncio.Semaphore(max_in_flight)
        self._throttled: TransientError | None = None
        self._connection_error: ConnectionLevelError | None = None
        self._paused = False
        self._lease_lost = False

    @property
    def throttled(self) -> TransientError | None:
        """The first throttle of this serving (its Retry-After holds the account back)."""
        return self._throttled

    @property
    def connection_error(self) -> ConnectionLevelError | None:
        """The token was refused (401, a 403 with a body): the connection is in error."""
        return self._connection_error

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def lease_lost(self) -> bool:
        return self._lease_lost

    @property
    def stopped(self) -> bool:
        return (
            self._throttled is not None
            or self._connection_error is not None
            or self._paused
            or self._lease_lost
        )

    def pause(self) -> None:
        """The connection is being paused (a row spent its last attempt): no pass starts
        another call, so none slips out while the pause is written."""
        self._paused = True

    def lose_lease(self) -> None:
        """Another worker holds the account now: this one starts no call and records nothing."""
        self._lease_lost = True

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
                if kind == "throttled" and self._throttled is None:
                    assert isinstance(exc, TransientError)
                    self._throttled = exc
                elif kind == "connection":
                    assert isinstance(exc, ConnectionLevelError)
                    self._connection_error = exc
                raise


class Deferred(Exception):
    """The account was throttled or lost its credentials: don't start another call."""
