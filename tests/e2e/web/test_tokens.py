"""`mcsync web` as on a Supabase project on signing keys: only MCSYNC_JWKS_URL (no shared
secret), users' ES256 tokens from a JWKS served over real HTTP. The attacks each get a 401 that
names only their kind; a rotation is followed and a revocation honoured without a restart; a
flood of made-up kids costs the auth server a handful of fetches."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from mcsync.web import create_app
from mcsync.web.auth import StateSigner, make_user_token
from mcsync.web.context import SIGN_IN_AGAIN
from tests.e2e.web.conftest import WebHarness, web_settings
from tests.support.harness import SyncHarness, wait_until
from tests.support.tokens import TokenIssuer, default_issuer, new_key

LEGACY_SECRET = "legacy-jwt-secret-" + "z" * 32


@pytest.fixture
def issuer() -> Iterator[TokenIssuer]:
    served = TokenIssuer()
    yield served
    served.close()


def _hs256_with(key: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    signing_input = part(header) + b"." + part(claims)
    mac = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()


def _status(client: TestClient, token: str) -> Any:
    return client.get("/api/status", headers={"Authorization": f"Bearer {token}"})


def test_every_attack_is_a_401_that_names_only_its_kind(web: WebHarness) -> None:
    issuer = default_issuer()
    user = uuid.uuid4()
    kid = issuer.current.kid
    pem = (
        issuer.current.private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    state = StateSigner.from_settings(web.settings).make_state(user)
    attacks = {
        "forged": ("signature", issuer.token(user, key=new_key(), kid=kid)),
        "alg-confused (HS256 keyed with the public key)": (
            "algorithm",
            _hs256_with(pem, {"alg": "HS256", "kid": kid, "typ": "JWT"}, issuer.claims(user)),
        ),
        "alg none": (
            "algorithm",
            jwt.encode(issuer.claims(user), None, algorithm="none", headers={"kid": kid}),
        ),
        "expired": ("expired", issuer.token(user, ttl=-120)),
        "never expires": ("expiry", issuer.token(user, exp=None)),
        "anon role": ("role", issuer.token(user, role="anon")),
        "service_role": ("role", issuer.token(user, role="service_role")),
        "wrong audience": ("audience", issuer.token(user, aud="storage")),
        "wrong issuer": ("issuer", issuer.token(user, iss="https://evil.supabase.co/auth/v1")),
        "anonymous sign-in": ("anonymous", issuer.token(user, is_anonymous=True)),
        "sub not a uuid": ("subject", issuer.token(user, sub="admin")),
        "unknown kid": ("unknown_key", issuer.token(user, key=new_key())),
        "an OAuth state as a login": ("algorithm", state),
        "legacy HS256 with no secret configured": ("algorithm", make_user_token("s" * 40, user)),
        "garbage": ("malformed", "not.a.jwt"),
    }
    for label, (kind, token) in attacks.items():
        r = _status(web.client, token)
        assert r.status_code == 401, (label, r.text)
        assert r.json() == {"detail": SIGN_IN_AGAIN, "reason": kind}, label
        assert r.headers["www-authenticate"] == (
            f'Bearer error="invalid_token", error_description="{kind}"'
        ), label
        assert str(user) not in r.text and token not in r.text
    missing = web.client.get("/api/status")
    assert missing.status_code == 401 and missing.json()["reason"] == "missing"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert web.status(user) == {"connected": False, "sync_status": None, "notice": None}


def test_only_a_jwks_url_serves_users_follows_a_rotation_and_honours_a_revocation(
    db_url: str, emulator: Any, issuer: TokenIssuer
) -> None:
    sync = SyncHarness(db_url, emulator)
    settings = web_settings(
        sync,
        tokens=issuer,
        mcsync_jwks_cache_seconds=1.0,
        mcsync_jwks_refetch_seconds=0.2,
    )
    user = uuid.uuid4()
    with TestClient(create_app(settings, sweep_interval=60)) as client:
        old_key = issuer.current
        old_token = issuer.token(user, ttl=3600)
        assert _status(client, old_token).status_code == 200

        # Rotate: the new key signs; mcsync fetches it on first sight of its kid.
        time.sleep(0.25)
        issuer.rotate()
        assert _status(client, issuer.token(user)).status_code == 200
        assert _status(client, old_token).status_code == 200  # previously used: still valid

        # Revoke the old key: its tokens stop within the cache's lifetime (1 s here).
        issuer.revoke(old_key)
        revoked_at = time.monotonic()
        wait_until(lambda: _status(client, old_token).status_code == 401, timeout=5)
        assert time.monotonic() - revoked_at <= 1.0 + 0.2 + 0.5
        assert _status(client, old_token).json()["reason"] == "unknown_key"
        assert _status(client, issuer.token(user)).status_code == 200


def test_thirty_made_up_kids_cost_a_handful_of_jwks_fetches(
    db_url: str, emulator: Any, issuer: TokenIssuer
) -> None:
    sync = SyncHarness(db_url, emulator)
    settings = web_settings(sync, tokens=issuer)  # the default cache and interval
    user = uuid.uuid4()
    with TestClient(create_app(settings, sweep_interval=60)) as client:
        assert _status(client, issuer.token(user)).status_code == 200
        before = issuer.fetches
        for _ in range(30):
            r = _status(client, issuer.token(user, key=new_key()))
            assert r.status_code == 401 and r.json()["reason"] == "unknown_key"
        assert issuer.fetches - before <= 1
        assert issuer.fetches <= 3  # the prefetch at start, the first user, at most one refetch
        assert _status(client, issuer.token(user)).status_code == 200


def test_a_jwks_down_at_start_is_a_503_until_it_answers(
    db_url: str, emulator: Any, issuer: TokenIssuer
) -> None:
    sync = SyncHarness(db_url, emulator)
    settings = web_settings(sync, tokens=issuer, mcsync_jwks_refetch_seconds=0.2)
    issuer.down = True
    user = uuid.uuid4()
    with TestClient(create_app(settings, sweep_interval=60)) as client:
        r = _status(client, issuer.token(user))
        assert r.status_code == 503 and "try again" in r.json()["detail"]
        issuer.down = False
        wait_until(lambda: _status(client, issuer.token(user)).status_code == 200, timeout=5)


def test_the_legacy_secret_beside_the_jwks_while_a_project_migrates(
    db_url: str, emulator: Any
) -> None:
    sync = SyncHarness(db_url, emulator)
    issuer = default_issuer()
    settings = web_settings(sync, mcsync_jwt_secret=LEGACY_SECRET)
    user = uuid.uuid4()
    legacy = make_user_token(LEGACY_SECRET, user, issuer=issuer.issuer_url)
    with TestClient(create_app(settings, sweep_interval=60)) as client:
        assert _status(client, legacy).status_code == 200
        assert _status(client, issuer.token(user)).status_code == 200
        other = make_user_token("another-secret-" + "q" * 32, user, issuer=issuer.issuer_url)
        wrong = _status(client, other)
        assert wrong.status_code == 401 and wrong.json()["reason"] == "signature"
    alone = web_settings(sync, mcsync_jwks_url="", mcsync_jwt_secret=LEGACY_SECRET)
    with TestClient(create_app(alone, sweep_interval=60)) as client:
        assert _status(client, legacy).status_code == 200
        es256 = _status(client, issuer.token(user))
        assert es256.status_code == 401 and es256.json()["reason"] == "algorithm"
