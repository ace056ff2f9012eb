"""Who is calling: the app user's JWT, and the OAuth `state`.

**The user's JWT** is the app's own (a Supabase access token in a Supabase deployment).
`TokenVerifier.verify` accepts it when it is signed by one of:

- a key of the app's JWKS (`MCSYNC_JWKS_URL`; jwks.py): the key is chosen by the token's
  `kid`, and the token is checked with that key's own algorithm (ES256, RS256 or EdDSA),
  never the algorithm the token names;
- the legacy shared secret (`MCSYNC_JWT_SECRET`, HS256), alone or beside the JWKS, as Supabase
  lets both coexist while a project migrates. Only an HS256 token is checked against it, and
  only against it: an HS256 token "signed" with a published public key meets the secret, not
  that key, and fails.

Then the claims: `exp` (required), `aud` one of MCSYNC_JWT_AUDIENCE (`authenticated`),
`role` = `authenticated` (so the app's `anon` and `service_role` keys, which are JWTs too, are
refused), `iss` = MCSYNC_JWT_ISSUER when set, `is_anonymous` not true unless
MCSYNC_JWT_ALLOW_ANONYMOUS, and `sub` a uuid (the user id). A refusal is an AuthError whose
`kind` names only the kind of failure (`expired`, `audience`...), never the token or a claim.

**The OAuth `state`** is a short JWT of mcsync's own, signed with a key of mcsync's own: derived
from MCSYNC_STATE_SECRET if set, else from the encryption keys (HKDF, under its own label), and
never from the app's JWT secret. A state can therefore never pass as a login token nor a login
token as a state. It carries the user id and a random nonce; the callback spends the nonce in
Postgres, which makes it single-use. A state is also bound to the browser that opens the popup:
`POST /oauth/begin` (oauth.py) sets a cookie holding `browser_binding(state)`, an HMAC of the
nonce under a second derived key, and the callback refuses a state whose cookie is missing or
different. Every configured secret (newest first) verifies; the newest signs, so rotating
either kind of secret only needs the old one kept until open popups have finished (10 minutes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mcsync.config import Settings
from mcsync.web.jwks import JwksKeys, KeysUnavailable, UnknownKey

T = TypeVar("T")
LEGACY_ALGORITHM = "HS256"
STATE_ALGORITHM = "HS256"
AUTHENTICATED = "authenticated"
STATE_TTL_SECONDS = 600  # the consent screen is quick; a stale popup should start over
_STATE_KEY_LABEL = b"mcsync oauth state v2"
_BINDING_KEY_LABEL = b"mcsync oauth browser binding v2"


class AuthError(Exception):
    """The caller is not who they say (or their proof has expired). `kind` says which check
    failed, in one word fit for a 401 and a log line."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class VerifierUnavailable(AuthError):
    """The app's keys could not be fetched yet: nothing can be verified (not the caller's
    fault; a 503)."""


@dataclass(frozen=True)
class UserClaims:
    """A verified user token: the user id (`sub`) and the claims it carried."""

    user_id: UUID
    role: str
    claims: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class OAuthState:
    user_id: UUID
    nonce: str
    expires_at: datetime
    origin: str = ""  # the app origin the popup reports back to


class TokenVerifier:
    """Verifies the app users' JWTs (see the module docstring). `verify` is the entry point."""

    def __init__(
        self,
        *,
        jwks: JwksKeys | None = None,
        secret: str = "",
        audiences: Sequence[str] = (AUTHENTICATED,),
        issuer: str = "",
        allow_anonymous: bool = False,
        leeway: float = 30.0,
    ) -> None:
        if jwks is None and not secret:
            raise ValueError(
                "set MCSYNC_JWKS_URL (Supabase: https://<project-ref>.supabase.co/auth/v1/"
                ".well-known/jwks.json) or, for a project still on the legacy JWT secret, "
                "MCSYNC_JWT_SECRET"
            )
        if not audiences:
            raise ValueError("MCSYNC_JWT_AUDIENCE is empty: name the audience (`authenticated`)")
        self.jwks = jwks
        self._secret = secret
        self._audiences = list(audiences)
        self._issuer = issuer
        self._allow_anonymous = allow_anonymous
        self._leeway = leeway

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """ValueError (saying what to set) when the settings give nothing to verify with."""
        jwks = None
        if settings.mcsync_jwks_url:
            jwks = JwksKeys(
                settings.mcsync_jwks_url,
                lifetime=settings.mcsync_jwks_cache_seconds,
                refetch_interval=settings.mcsync_jwks_refetch_seconds,
            )
        return cls(
            jwks=jwks,
            secret=settings.mcsync_jwt_secret,
            audiences=settings.jwt_audiences,
            issuer=settings.mcsync_jwt_issuer,
            allow_anonymous=settings.mcsync_jwt_allow_anonymous,
        )

    def verify(self, token: str) -> UserClaims:
        """The verified claims of a user's bearer token, or AuthError naming what failed."""
        key, algorithm = self._key_for(token)
        required = ["exp", "sub", "aud", "role", *(["iss"] if self._issuer else [])]
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audiences,
                issuer=self._issuer or None,
                options={"require": required},
                leeway=self._leeway,
            )
        except jwt.PyJWTError as exc:
            raise AuthError(_kind(exc)) from None
        if claims.get("role") != AUTHENTICATED:
            raise AuthError("role")
        if claims.get("is_anonymous") not in (None, False) and not self._allow_anonymous:
            raise AuthError("anonymous")
        return UserClaims(_user_id(claims.get("sub")), AUTHENTICATED, claims)

    def user_id(self, token: str) -> UUID:
        """The user a bearer token speaks for, or AuthError."""
        return self.verify(token).user_id

    def _key_for(self, token: str) -> tuple[Any, str]:
        """The one key (and its one algorithm) this token may be checked with. The token's
        header only picks among mcsync's trusted keys; it never supplies a key or widens an
        algorithm."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed") from None
        if header.get("alg") == LEGACY_ALGORITHM:
            if not self._secret:
                raise AuthError("algorithm")
            return self._secret, LEGACY_ALGORITHM
        if self.jwks is None:
            raise AuthError("algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("unknown_key")
        try:
            found = self.jwks.key(kid)
        except UnknownKey:
            raise AuthError("unknown_key") from None
        except KeysUnavailable:
            raise VerifierUnavailable("keys_unavailable") from None
        return found.key, found.algorithm


def _kind(exc: jwt.PyJWTError) -> str:
    """One word for what PyJWT refused (subclasses before their parents)."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return {"aud": "audience", "iss": "issuer", "role": "role", "exp": "expiry"}.get(
            exc.claim, "missing_claim"
        )
    for error, kind in (
        (jwt.ExpiredSignatureError, "expired"),
        (jwt.ImmatureSignatureError, "not_yet_valid"),
        (jwt.InvalidAudienceError, "audience"),
        (jwt.InvalidIssuerError, "issuer"),
        (jwt.InvalidAlgorithmError, "algorithm"),
        (jwt.InvalidSignatureError, "signature"),
        (jwt.DecodeError, "malformed"),
    ):
        if isinstance(exc, error):
            return kind
    return "invalid"


def _user_id(sub: Any) -> UUID:
    """`sub` as a user id: a uuid in its canonical form, nothing else."""
    try:
        user_id = UUID(str(sub))
    except ValueError:
        raise AuthError("subject") from None
    if not isinstance(sub, str) or str(user_id) != sub.lower():
        raise AuthError("subject")
    return user_id


def _derive(root: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(root)


class StateSigner:
    """Signs and reads OAuth states, and makes their browser-binding cookies."""

    def __init__(self, roots: Sequence[bytes]) -> None:
        """`roots`: mcsync's secrets, newest first (the newest signs; all verify)."""
        if not roots:
            raise ValueError("no secret for OAuth states: set MCSYNC_ENCRYPTION_KEYS")
        self._state_keys = [_derive(r, _STATE_KEY_LABEL) for r in roots]
        self._binding_keys = [_derive(r, _BINDING_KEY_LABEL) for r in roots]

    @classmethod
    def from_settings(cls, settings: Settings) -> StateSigner:
        """From MCSYNC_STATE_SECRET if set, else from the encryption keys (each Fernet key's
        32 bytes; the label keeps these keys apart from what the Fernet key encrypts)."""
        if settings.state_secrets:
            short = [s for s in settings.state_secrets if len(s) < 32]
            if short:
                raise ValueError("MCSYNC_STATE_SECRET: each secret needs at least 32 characters")
            return cls([s.encode() for s in settings.state_secrets])
        try:
            roots = [base64.urlsafe_b64decode(k.encode()) for k in settings.encryption_keys]
        except (binascii.Error, ValueError):
            raise ValueError("an encryption key is not a valid Fernet key") from None
        return cls(roots)

    def make_state(self, user_id: UUID, *, origin: str = "", ttl: float = STATE_TTL_SECONDS) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "origin": origin,
            "nonce": secrets.token_urlsafe(24),
            "iat": now,
            "exp": now + int(ttl),
        }
        return jwt.encode(claims, self._state_keys[0], algorithm=STATE_ALGORITHM)

    def read_state(self, state: str) -> OAuthState:
        """A genuine, unexpired state (not yet checked for reuse), or AuthError."""
        for key in self._state_keys:
            try:
                return _verified(state, key, ["exp", "sub", "nonce"], _oauth_state)
            except AuthError as exc:
                if exc.kind != "signature":
                    raise
        raise AuthError("signature")

    def browser_binding(self, state: OAuthState) -> str:
        """The cookie value that ties `state` to the browser that began the flow with it."""
        return _binding(self._binding_keys[0], state)

    def bound(self, state: OAuthState, cookie: str | None) -> bool:
        """True when `cookie` is this state's browser binding (constant-time)."""
        if not cookie:
            return False
        matches = [
            hmac.compare_digest(cookie.encode(), _binding(key, state).encode())
            for key in self._binding_keys
        ]
        return any(matches)


def _binding(key: bytes, state: OAuthState) -> str:
    mac = hmac.new(key, state.nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _verified(
    token: str,
    key: bytes,
    required: list[str],
    read: Callable[[dict[str, Any]], T],
) -> T:
    """`read(claims)` of a state signed with `key`, unexpired and carrying the `required`
    claims; anything wrong with it is an AuthError naming only the kind of failure."""
    try:
        claims = jwt.decode(token, key, algorithms=[STATE_ALGORITHM], options={"require": required})
        return read(claims)
    except jwt.PyJWTError as exc:
        raise AuthError(_kind(exc)) from None
    except (ValueError, TypeError, KeyError):
        raise AuthError("malformed") from None


def _oauth_state(claims: dict[str, Any]) -> OAuthState:
    return OAuthState(
        user_id=UUID(str(claims["sub"])),
        nonce=str(claims["nonce"]),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        origin=str(claims.get("origin") or ""),
    )


def make_user_token(
    secret: str, user_id: UUID | str, *, ttl: float = 3600, issuer: str = ""
) -> str:
    """An app-style user JWT signed with a legacy HS256 secret, carrying the claims a Supabase
    access token has (the local demo page, operators poking the API by hand). Tests mint
    ES256 tokens from a JWKS of their own: tests/support/tokens.py."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + int(ttl),
        "aud": AUTHENTICATED,
        "role": AUTHENTICATED,
        "is_anonymous": False,
        **({"iss": issuer} if issuer else {}),
    }
    return jwt.encode(claims, secret, algorithm=LEGACY_ALGORITHM)
