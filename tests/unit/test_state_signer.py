"""The OAuth state and browser-binding keys are mcsync's own: derived from the encryption keys
(or MCSYNC_STATE_SECRET), never from the app's JWT secret, and they rotate with their source."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import jwt
import pytest
from cryptography.fernet import Fernet

from mcsync.config import Settings
from mcsync.web.auth import AuthError, StateSigner

OLD_KEY, NEW_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()
JWT_SECRET = "the-apps-jwt-secret-" + "j" * 32


def signer(**settings: str) -> StateSigner:
    return StateSigner.from_settings(Settings(**settings))  # type: ignore[arg-type]


def test_the_apps_jwt_secret_plays_no_part() -> None:
    user = uuid.uuid4()
    with_secret = signer(mcsync_encryption_keys=OLD_KEY, mcsync_jwt_secret=JWT_SECRET)
    without = signer(mcsync_encryption_keys=OLD_KEY)
    state = with_secret.make_state(user)
    read = without.read_state(state)
    assert read.user_id == user
    assert without.bound(read, with_secret.browser_binding(read))

    # A state signed the way older versions did (a key derived from the JWT secret) is refused.
    legacy_key = hmac.new(JWT_SECRET.encode(), b"mcsync oauth state v1", hashlib.sha256).digest()
    now = int(time.time())
    claims = {"sub": str(user), "nonce": "n", "iat": now, "exp": now + 600, "origin": ""}
    with pytest.raises(AuthError):
        with_secret.read_state(jwt.encode(claims, legacy_key, algorithm="HS256"))
    # Nor is a state under the JWT secret itself.
    with pytest.raises(AuthError):
        with_secret.read_state(jwt.encode(claims, JWT_SECRET, algorithm="HS256"))


def test_rotating_the_encryption_keys_keeps_open_popups_working() -> None:
    user = uuid.uuid4()
    before = signer(mcsync_encryption_keys=OLD_KEY)
    during = signer(mcsync_encryption_keys=f"{NEW_KEY},{OLD_KEY}")
    after = signer(mcsync_encryption_keys=NEW_KEY)

    begun = before.read_state(before.make_state(user))
    cookie = before.browser_binding(begun)
    assert during.read_state(before.make_state(user)).user_id == user
    assert during.bound(begun, cookie)
    # The newest key signs, so a state begun during the rotation outlives the old key.
    assert after.read_state(during.make_state(user)).user_id == user
    with pytest.raises(AuthError):
        after.read_state(before.make_state(user))
    assert not after.bound(begun, cookie)


def test_a_dedicated_state_secret_replaces_the_derived_keys_and_rotates_the_same_way() -> None:
    user = uuid.uuid4()
    old, new = "o" * 40, "n" * 40
    derived = signer(mcsync_encryption_keys=OLD_KEY)
    dedicated = signer(mcsync_encryption_keys=OLD_KEY, mcsync_state_secret=old)
    rotating = signer(mcsync_encryption_keys=OLD_KEY, mcsync_state_secret=f"{new},{old}")
    with pytest.raises(AuthError):
        dedicated.read_state(derived.make_state(user))
    assert rotating.read_state(dedicated.make_state(user)).user_id == user
    with pytest.raises(AuthError):  # the newest secret signs
        dedicated.read_state(rotating.make_state(user))
    with pytest.raises(ValueError, match="32 characters"):
        signer(mcsync_encryption_keys=OLD_KEY, mcsync_state_secret="short")


def test_an_expired_or_tampered_state_names_its_kind() -> None:
    user = uuid.uuid4()
    states = signer(mcsync_encryption_keys=OLD_KEY)
    with pytest.raises(AuthError) as expired:
        states.read_state(states.make_state(user, ttl=-60))
    assert expired.value.kind == "expired"
    token = states.make_state(user)
    with pytest.raises(AuthError) as tampered:
        states.read_state(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    assert tampered.value.kind == "signature"
