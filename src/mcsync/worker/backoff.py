"""Retry timing: 1 s, 2 s, 4 s... capped at 5 minutes, with a little jitter."""

from __future__ import annotations

import random

MAX_ATTEMPTS = 5
CAP_SECONDS = 300.0


def backoff_delay(attempt: int, *, cap: float = CAP_SECONDS, jitter: float = 0.1) -> float:
    """Delay before retry number `attempt` (1-based: the first retry waits about 1 s).

    Jitter spreads the retries of a burst that failed together, so they don't return together."""
    base = min(cap, 2.0 ** max(0, attempt - 1))
    return min(cap, base * (1 + random.uniform(-jitter, jitter)))


def throttle_delay(retry_after: float | None) -> float:
    """How long an account waits after a 429: what Mailchimp asked for, else a short pause."""
    if retry_after is not None and retry_after > 0:
        return min(CAP_SECONDS, retry_after)
    return random.uniform(1.0, 3.0)
