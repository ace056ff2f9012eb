"""Retry timing: 1 s, 2 s, 4 s... capped at 5 minutes, with a little jitter.

`scale` multiplies every delay (cap included); production runs at 1.0, tests shrink time.
`Backoff` carries the scale, so the parts that decide a delay are handed one object."""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_ATTEMPTS = 5
CAP_SECONDS = 300.0
# Mailchimp's "<email> has signed up to a lot of lists very recently" refusal lasts hours for
# that person (ibericode/mailchimp-for-wordpress#771, #506): asking sooner only repeats it.
SIGNUP_LIMIT_RETRY_SECONDS = 6 * 3600.0


def backoff_delay(
    attempt: int, *, scale: float = 1.0, cap: float = CAP_SECONDS, jitter: float = 0.1
) -> float:
    """Delay before retry number `attempt` (1-based: the first retry waits about 1 s).

    Jitter spreads the retries of a burst that failed together, so they don't return together."""
    base = min(cap, 2.0 ** min(max(0, attempt - 1), 32))
    return min(cap, base * (1 + random.uniform(-jitter, jitter))) * scale


def throttle_delay(retry_after: float | None, *, scale: float = 1.0) -> float:
    """How long an account waits after a 429: what Mailchimp asked for, else a short pause."""
    if retry_after is not None and retry_after > 0:
        return min(CAP_SECONDS, retry_after) * scale
    return random.uniform(1.0, 3.0) * scale


@dataclass(frozen=True)
class Backoff:
    """The worker's retry timing, injected where a delay is decided (outcomes, health).

    `scale` multiplies every delay, the cap included: production runs at 1.0; tests shrink
    time with `MCSYNC_BACKOFF_SCALE`."""

    scale: float = 1.0

    def retry(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based), with jitter; see `backoff_delay`."""
        return backoff_delay(attempt, scale=self.scale)

    def postponed(self) -> float:
        """How long a contact waits after a temporary refusal about that person (hours)."""
        return SIGNUP_LIMIT_RETRY_SECONDS * self.scale

    def throttled(self, retry_after: float | None) -> float:
        """How long an account waits after throttling; see `throttle_delay`."""
        return throttle_delay(retry_after, scale=self.scale)
