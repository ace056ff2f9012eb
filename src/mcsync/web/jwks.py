"""The app's public signing keys, read from its JWKS (Supabase:
`https://<project-ref>.supabase.co/auth/v1/.well-known/jwks.json`).

PyJWT's `PyJWKClient` fetches the set and `PyJWKSet` parses it (each key's algorithm comes from
the key: its `alg`, else its type and curve). What a long-running server needs beyond that is
here, in one place:

- the set is cached for `lifetime` seconds, then fetched again, so a key that leaves the set
  (revoked in the dashboard) stops verifying within one lifetime;
- a token naming a `kid` the cached set lacks (a key just rotated in) refetches the set, but at
  most once per `refetch_interval`, so a flood of tokens with made-up kids cannot make mcsync
  hammer the auth server;
- a failed fetch (unreachable, an error page, not a key set) is logged once per outage and the
  keys of the last good fetch keep verifying; the fetch is retried at most once per
  `refetch_interval`;
- only asymmetric signing keys are kept (ES256, RS256, EdDSA). A symmetric (`oct`) key is never
  taken from the network, so the key a token is checked with is always a public key bound to
  its own algorithm.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jwt import PyJWKClient, PyJWKSet
from jwt.exceptions import PyJWKClientError, PyJWKSetError, PyJWTError

from mcsync import __version__
from mcsync.logging import get_logger

log = get_logger("mcsync.web")

ALGORITHMS = frozenset({"ES256", "RS256", "EdDSA"})


class UnknownKey(Exception):
    """No key with this kid is in the app's key set (as last fetched)."""


class KeysUnavailable(Exception):
    """The key set has never been fetched: there is nothing to verify with yet."""


@dataclass(frozen=True)
class VerificationKey:
    """One public key of the set, with the only algorithm it verifies."""

    kid: str
    algorithm: str
    key: Any


def check_jwks_url(url: str) -> str:
    """`url`, if it is https (or plain http to this machine, for tests and local development);
    else ValueError saying why. Keys fetched over plain http could be swapped on the way."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return url
    raise ValueError(
        f"MCSYNC_JWKS_URL must be an https URL (got {url!r}); Supabase's is "
        "https://<project-ref>.supabase.co/auth/v1/.well-known/jwks.json"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JwksKeys:
    """The verification keys of one JWKS URL. Thread-safe. A fetch blocks the request that
    needs it (call `key` off the event loop: FastAPI runs sync dependencies in its thread pool);
    while one is under way, requests whose key is in hand are answered without waiting."""

    def __init__(
        self,
        url: str,
        *,
        lifetime: float = 300.0,
        refetch_interval: float = 10.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = check_jwks_url(url)
        self._client = PyJWKClient(
            url,
            cache_jwk_set=False,  # the caching policy is ours (above)
            timeout=timeout,
            headers={"User-Agent": f"mcsync/{__version__}"},
        )
        self._lifetime = lifetime
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._state_lock = threading.Lock()  # the fields below
        self._fetch_lock = threading.Lock()  # one fetch at a time
        self._keys: dict[str, VerificationKey] = {}
        self._fetched_at: float | None = None  # last good fetch
        self._attempted_at: float | None = None  # last fetch, good or not
        self._failing = False
        self.fetches = 0  # attempts made, for tests and operators' curiosity

    def key(self, kid: str) -> VerificationKey:
        """The key named `kid`; UnknownKey if the set lacks it, KeysUnavailable if no set
        was ever fetched."""
        with self._state_lock:
            known = self._keys.get(kid)
            if known is not None and self._fresh(self._clock()):
                return known
        if known is not None:
            # A stale set: refresh it, unless another request already is (the key in hand then
            # serves this one, seconds past its lifetime at most).
            if not self._fetch_lock.acquire(blocking=False):
                return known
        else:
            self._fetch_lock.acquire()
        try:
            now = self._clock()
            if not self._fresh(now):
                self._refresh(now)
            if kid not in self._keys:
                self._refresh(now)  # a key rotated in since the last fetch, or a made-up kid
        finally:
            self._fetch_lock.release()
        with self._state_lock:
            found = self._keys.get(kid)
            if found is None and self._fetched_at is None:
                raise KeysUnavailable(self.url)
        if found is None:
            raise UnknownKey(kid)
        return found

    def refresh(self) -> bool:
        """Fetch now (unless one was tried within the refetch interval). True when the set in
        hand is from a good fetch younger than one lifetime."""
        with self._fetch_lock:
            self._refresh(self._clock())
        return self._fresh(self._clock())

    @property
    def kids(self) -> list[str]:
        """The kids of the usable keys in hand."""
        with self._state_lock:
            return sorted(self._keys)

    def _fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._lifetime

    def _refresh(self, now: float) -> None:
        """Fetch the set, at most once per refetch interval (call with the fetch lock held)."""
        if self._attempted_at is not None and now - self._attempted_at < self._refetch_interval:
            return
        self._attempted_at = now
        self.fetches += 1
        try:
            keys = self._fetch()
        except (PyJWTError, ValueError, OSError) as exc:
            if not self._failing:
                log.warning(
                    "jwks_unavailable",
                    url=self.url,
                    error=type(exc).__name__,
                    detail=str(exc)[:200],
                    keys_kept=len(self._keys),
                )
            self._failing = True
            return
        if self._failing:
            log.info("jwks_available", url=self.url, keys=len(keys))
        elif set(keys) != set(self._keys):
            log.info("jwks_keys", url=self.url, kids=sorted(keys))
        with self._state_lock:
            self._failing = False
            self._keys = keys
            self._fetched_at = self._clock()

    def _fetch(self) -> dict[str, VerificationKey]:
        data = self._client.fetch_data()
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise PyJWKClientError("the JWKS URL did not answer with a key set")
        if not data["keys"]:
            return {}  # a project still on the legacy secret publishes an empty set
        try:
            parsed = PyJWKSet.from_dict(data)
        except PyJWKSetError:  # (keys is a non-empty list) none this PyJWT can read
            return {}
        return {
            k.key_id: VerificationKey(k.key_id, k.algorithm_name, k.key)
            for k in parsed.keys
            if k.key_id and k.public_key_use in ("sig", None) and k.algorithm_name in ALGORITHMS
        }
