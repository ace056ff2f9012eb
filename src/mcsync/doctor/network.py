"""The doctor's checks that talk to something live: a LISTEN/NOTIFY round trip on the worker's
kind of connection, the JWKS the web side verifies users' tokens with, and (with --ping) each
connection's Mailchimp account. Each returns the facts mcsync.doctor.checks judges; none of them
returns or logs a token or a key."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from typing import Any

import httpx
import jwt
import psycopg
from psycopg.conninfo import conninfo_to_dict

from mcsync.config import Settings
from mcsync.crypto import EncryptionKeyError, TokenCipher
from mcsync.doctor import probes
from mcsync.doctor.checks import JwksFacts, ListenFacts

# Supabase's transaction-mode pooler listens on this port (the session-mode one on 5432).
SUPABASE_TRANSACTION_POOLER_PORT = "6543"


def listen_round_trip(database_url: str, wait: float = 2.0) -> ListenFacts:
    """LISTEN on a channel of its own, NOTIFY it from the same client connection (a separate
    transaction, as the app's trigger would be), and wait up to `wait` seconds for it to come
    back. Each transaction's server session (pg_backend_pid) is noted: a transaction-mode pooler
    may hand each one a different session, and drops what arrives on the one that LISTENed."""
    channel = f"mcsync_doctor_{secrets.token_hex(6)}"
    pids: set[int] = set()
    port = str(conninfo_to_dict(database_url).get("port") or "")
    with psycopg.connect(database_url, autocommit=True) as conn:
        probes.listen(conn, channel)
        pids.add(probes.backend_pid(conn))
        started = time.monotonic()
        probes.notify(conn, channel)
        pids.add(probes.backend_pid(conn))
        notified = any(n.channel == channel for n in conn.notifies(timeout=wait, stop_after=1))
        elapsed = (time.monotonic() - started) * 1000
        pids.add(probes.backend_pid(conn))
        probes.unlisten(conn, channel)
    return ListenFacts(
        notified,
        wait,
        frozenset(pids),
        pooler_port=port == SUPABASE_TRANSACTION_POOLER_PORT,
        elapsed_ms=elapsed if notified else None,
    )


def fetch_jwks(url: str, timeout: float = 5.0) -> JwksFacts:
    """Fetch and parse the JWKS at `url` as the web side would; the error names only the kind
    of failure."""
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return JwksFacts(url, error=f"unreachable ({type(exc).__name__})")
    if response.status_code != 200:
        return JwksFacts(url, error=f"HTTP {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        return JwksFacts(url, error="the answer is not JSON")
    try:
        keys = jwt.PyJWKSet.from_dict(data).keys
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, AttributeError, TypeError) as exc:
        return JwksFacts(url, error=f"no usable key in it ({type(exc).__name__}: {exc})")
    algorithms = tuple(sorted({str(k.algorithm_name) for k in keys}))
    unnamed = sum(1 for k in keys if not k.key_id)
    if unnamed:
        return JwksFacts(url, error=f"{unnamed} key(s) have no kid", keys=len(keys))
    return JwksFacts(url, keys=len(keys), algorithms=algorithms)


def ping_accounts(settings: Settings, rows: list[tuple[Any, str, str]]) -> Counter[str]:
    """GET /ping for each connection (user_id, dc, stored token), with its own token, as the
    worker would call. Counts outcomes: ok, revoked (401/403), unreachable (network, 5xx, 429),
    refused (any other answer), token_unusable (it does not decrypt: see the tokens check)."""
    return asyncio.run(_ping_all(settings, rows))


async def _ping_all(settings: Settings, rows: list[tuple[Any, str, str]]) -> Counter[str]:
    from mcsync.mailchimp.client import ClientFactory, make_http_client
    from mcsync.mailchimp.errors import ConnectionLevelError, MailchimpError, TransientError

    try:
        cipher: TokenCipher | None = TokenCipher(settings.encryption_keys)
    except EncryptionKeyError:
        cipher = None
    outcomes: Counter[str] = Counter()
    http = make_http_client(settings.mcsync_http_timeout)
    factory = ClientFactory.from_settings(settings, http)
    try:
        for user_id, dc, stored in rows:
            try:
                if cipher is None:
                    raise EncryptionKeyError("no key")
                token = cipher.decrypt(stored, user_id)
            except (EncryptionKeyError, ValueError, KeyError):
                outcomes["token_unusable"] += 1
                continue
            try:
                await factory.client(dc, token).ping()
                outcomes["ok"] += 1
            except ConnectionLevelError:
                outcomes["revoked"] += 1
            except TransientError:
                outcomes["unreachable"] += 1
            except (MailchimpError, ValueError):
                outcomes["refused"] += 1
    finally:
        await http.aclose()
    return outcomes
