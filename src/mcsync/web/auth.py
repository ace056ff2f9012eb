"""Who is calling: the app user's JWT (HS256, MCSYNC_JWT_SECRET), and the OAuth `state`.

The JWT is the app's own (a Supabase access token in a Supabase deployment): `sub` is the user
id and `exp` is required, so a token that never expires is refused too. The audience claim is
not checked because apps set it differently (Supabase uses "authenticated").

The OAuth `state` is a short JWT of our own, signed with a key *derived* from the same secret,
so a state can never pass as a login token nor a login token as a state. It carries the user id
and a random nonce; the callback spends the nonce in Postgres, which makes it single-use.

A state is also bound to the browser that opens the popup: `POST /oauth/begin` (see oauth.py)
sets a cookie holding `browser_binding(state)`, an HMAC of the nonce under a third derived key,
and the callback refuses a state whose cookie is missing or different.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import jwt

ALGORITHM = "HS256"
T = TypeVar("T")
STATE_TTL_SECONDS = 600  # the consent screen is quick; a stale popup should start over
_STATE_KEY_LABEL = b"mcsync oauth state v1"
_BINDING_KEY_LABEL = b"mcsync oauth browser binding v1"


class AuthError(Exception):
    """The caller is not who they say (or their proof has expired)."""


@dataclass(frozen=True)
class OAuthState:
    user_id: UUID
    nonce: str
    expires_at: datetime
    origin: str = ""  # the app origin the popup reports back to


class Signer:
    def __init__(self, secret: str, *, leeway: float = 30.0) -> None:
        if not secret:
            raise ValueError(
                "MCSYNC_JWT_SECRET is not set: use the secret the app signs its users' JWTs "
                "with (Supabase: Project Settings -> API -> JWT secret)"
            )
        self._secret = secret
        self._state_key = hmac.new(secret.encode(), _STATE_KEY_LABEL, hashlib.sha256).digest()
        self._binding_key = hmac.new(secret.encode(), _BINDING_KEY_LABEL, hashlib.sha256).digest()
        self._leeway = leeway

    def user_id(self, token: str) -> UUID:
        """The user a bearer token speaks for, or AuthError."""
        return _verified(
            token,
            self._secret,
            ["exp", "sub"],
            lambda claims: UUID(str(claims["sub"])),
            leeway=self._leeway,
        )

    def make_state(self, user_id: UUID, *, origin: str = "", ttl: float = STATE_TTL_SECONDS) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "origin": origin,
            "nonce": secrets.token_urlsafe(24),
            "iat": now,
            "exp": now + int(ttl),
        }
        return jwt.encode(claims, self._state_key, algorithm=ALGORITHM)

    def read_state(self, state: str) -> OAuthState:
        """A genuine, unexpired state (not yet checked for reuse), or AuthError."""
        return _verified(state, self._state_key, ["exp", "sub", "nonce"], _oauth_state)

    def browser_binding(self, state: OAuthState) -> str:
        """The cookie value that ties `state` to the browser that began the flow with it."""
        mac = hmac.new(self._binding_key, state.nonce.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def bound(self, state: OAuthState, cookie: str | None) -> bool:
        """True when `cookie` is this state's browser binding (constant-time)."""
        return bool(cookie) and hmac.compare_digest(
            (cookie or "").encode(), self.browser_binding(state).encode()
        )


def _verified(
    token: str,
    key: str | bytes,
    required: list[str],
    read: Callable[[dict[str, Any]], T],
    *,
    leeway: float = 0.0,
) -> T:
    """`read(claims)` of a token signed with `key`, unexpired and carrying the `required`
    claims; anything wrong with it (signature, expiry, a claim `read` cannot use) is an
    AuthError that names only the kind of failure."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={"require": required, "verify_aud": False},
            leeway=leeway,
        )
        return read(claims)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise AuthError(type(exc).__name__) from None


def _oauth_state(claims: dict[str, Any]) -> OAuthState:
    return OAuthState(
        user_id=UUID(str(claims["sub"])),
        nonce=str(claims["nonce"]),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        origin=str(claims.get("origin") or ""),
    )


def make_user_token(secret: str, user_id: UUID | str, *, ttl: float = 3600) -> str:
    """An app-style user JWT (tests, the local demo page, operators poking the API)."""
    now = int(time.time())
    return jwt.encode(
        {"sub": str(user_id), "iat": now, "exp": now + int(ttl), "aud": "authenticated"},
        secret,
        algorithm=ALGORITHM,
    )
