"""Users' access tokens as a Supabase project on signing keys issues them: ES256 JWTs (RS256 and
EdDSA on request) whose public keys a real local HTTP server publishes as a JWKS, at the path
Supabase uses (`/auth/v1/.well-known/jwks.json`). The one place tests mint user tokens:

    issuer = default_issuer()                 # shared by the process; never rotated
    settings: mcsync_jwks_url=issuer.jwks_url
    client.get("/api/status", headers=issuer.headers(user_id))

A test that rotates or revokes keys, counts fetches or takes the JWKS down makes its own
`TokenIssuer()` (and closes it).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

JWKS_PATH = "/auth/v1/.well-known/jwks.json"
_DROP = object()  # a claim value meaning "leave this claim out"


@dataclass(frozen=True)
class SigningKey:
    """A private key, its kid and the algorithm it signs with."""

    kid: str
    algorithm: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        codec = {"ES256": ECAlgorithm, "RS256": RSAAlgorithm, "EdDSA": OKPAlgorithm}[self.algorithm]
        jwk: dict[str, Any] = codec.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig", "key_ops": ["verify"]}

    def sign(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        return jwt.encode(
            claims,
            self.private,
            algorithm=self.algorithm,
            headers={"kid": kid or self.kid, "typ": "JWT"},
        )


def new_key(algorithm: str = "ES256") -> SigningKey:
    """A fresh key pair; its kid is a uuid, as Supabase's are."""
    private: Any
    if algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(algorithm)
    return SigningKey(str(uuid.uuid4()), algorithm, private)


class TokenIssuer:
    """The auth server: signs tokens with its current key and serves the published keys."""

    def __init__(self, algorithm: str = "ES256") -> None:
        self.current = new_key(algorithm)
        self.published: list[SigningKey] = [self.current]
        self.fetches = 0
        self.down = False  # while True, the JWKS answers 503 (an outage)
        self.stall: threading.Event | None = None  # when given, answers wait for the event
        self.stalled = 0  # requests that have waited (or are waiting) for `stall`
        self._lock = threading.Lock()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if issuer.stall is not None:
                    issuer.stalled += 1
                    issuer.stall.wait(timeout=30)
                with issuer._lock:
                    if self.path != JWKS_PATH:
                        self.send_error(404)
                        return
                    issuer.fetches += 1
                    if issuer.down:
                        self.send_error(503)
                        return
                    body = json.dumps(issuer.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.jwks_url = base + JWKS_PATH
        self.issuer_url = base + "/auth/v1"  # what Supabase puts in `iss`

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.published]}

    def claims(self, user_id: uuid.UUID | str, *, ttl: float = 300, **overrides: Any) -> dict:
        """A Supabase access token's claims (5-minute default lifetime); `overrides` replace
        claims, and a claim given as `None` is left out."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer_url,
            "sub": str(user_id),
            "aud": "authenticated",
            "exp": now + int(ttl),
            "iat": now,
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": str(uuid.uuid4()),
            "is_anonymous": False,
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {},
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        user_id: uuid.UUID | str,
        *,
        ttl: float = 300,
        key: SigningKey | None = None,
        kid: str | None = None,
        **overrides: Any,
    ) -> str:
        """A signed access token for `user_id` (by the current key unless `key` is given;
        `kid` puts another kid in the header)."""
        return (key or self.current).sign(self.claims(user_id, ttl=ttl, **overrides), kid=kid)

    def headers(self, user_id: uuid.UUID | str, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, **kwargs)}"}

    def rotate(self, algorithm: str = "ES256") -> SigningKey:
        """Publish a new key and sign with it from now on; the old one stays published
        ("previously used") until `revoke`."""
        with self._lock:
            fresh = new_key(algorithm)
            self.published.append(fresh)
            self.current = fresh
            return fresh

    def revoke(self, key: SigningKey) -> None:
        """Take a key out of the JWKS (Supabase: revoke a previously used key)."""
        with self._lock:
            self.published = [k for k in self.published if k.kid != key.kid]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_default: TokenIssuer | None = None
_default_lock = threading.Lock()


def default_issuer() -> TokenIssuer:
    """The process's shared issuer (started on first use, one ES256 key, never rotated)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TokenIssuer()
        return _default
