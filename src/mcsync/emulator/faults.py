"""Injected failures for /3.0 requests: a status, or a hang, for the next N or a fraction.

A seeded RNG decides rate-based faults, so soak tests are reproducible.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_SEED = 1234


@dataclass
class Fault:
    id: int
    status: int | None = None
    timeout: float | None = None
    access_token: str | None = None
    method: str | None = None
    path_regex: str | None = None
    count: int | None = None  # fire for the next N matching requests, then disappear
    rate: float | None = None  # fire with this probability for each matching request
    bodiless: bool = False  # answer with an empty body (as Mailchimp's throttling 429/403 may)
    # Only requests whose body contains this text (e.g. one member's address in a batch).
    body_contains: str | None = None
    fired: int = 0
    _pattern: re.Pattern[str] | None = field(default=None, repr=False)

    def matches(self, method: str, path: str, token: str | None, body: str = "") -> bool:
        if self.access_token is not None and token != self.access_token:
            return False
        if self.method is not None and method.upper() != self.method.upper():
            return False
        if self.body_contains is not None and self.body_contains not in body:
            return False
        return self._pattern is None or self._pattern.search(path) is not None

    def to_json(self) -> dict[str, Any]:
        """The fault as the admin API shows it (the compiled pattern is internal)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_pattern"}


class FaultError(ValueError):
    """The fault spec is malformed."""


class Faults:
    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        self.items: list[Fault] = []
        self.rng = random.Random(seed)
        self._ids = itertools.count(1)

    def seed(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def add(self, spec: dict[str, Any]) -> Fault:
        status, timeout = spec.get("status"), spec.get("timeout")
        if (status is None) == (timeout is None):
            raise FaultError("give exactly one of status or timeout")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise FaultError("status must be an HTTP error status (400-599)")
        if timeout is not None and not (isinstance(timeout, int | float) and timeout >= 0):
            raise FaultError("timeout must be a number of seconds")
        count, rate = spec.get("count"), spec.get("rate")
        if count is not None and not (isinstance(count, int) and count > 0):
            raise FaultError("count must be a positive integer")
        if rate is not None and not (isinstance(rate, int | float) and 0 <= rate <= 1):
            raise FaultError("rate must be between 0 and 1")
        regex = spec.get("path_regex")
        try:
            pattern = re.compile(regex) if regex else None
        except re.error as exc:
            raise FaultError(f"bad path_regex: {exc}") from None
        body_contains = spec.get("body_contains")
        if body_contains is not None and not (isinstance(body_contains, str) and body_contains):
            raise FaultError("body_contains must be a non-empty string")
        if spec.get("seed") is not None:
            self.seed(int(spec["seed"]))
        fault = Fault(
            id=next(self._ids),
            status=status,
            timeout=float(timeout) if timeout is not None else None,
            access_token=spec.get("access_token"),
            method=spec.get("method"),
            path_regex=regex,
            count=count,
            rate=float(rate) if rate is not None else None,
            bodiless=bool(spec.get("bodiless", False)),
            body_contains=body_contains,
            _pattern=pattern,
        )
        self.items.append(fault)
        return fault

    def clear(self) -> None:
        self.items.clear()

    def pick(self, method: str, path: str, token: str | None, body: str = "") -> Fault | None:
        """The first fault that fires for this request (consuming one of its count); `body`
        is the request's raw body, for `body_contains`."""
        for fault in list(self.items):
            if not fault.matches(method, path, token, body):
                continue
            if fault.rate is not None and self.rng.random() >= fault.rate:
                continue
            fault.fired += 1
            if fault.count is not None and fault.fired >= fault.count:
                self.items.remove(fault)
            return fault
        return None
