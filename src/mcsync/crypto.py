"""Tokens at rest: Fernet through MultiFernet, keys newest first, so keys can be rotated.

A stored token is bound to its user: the encrypted payload holds the user id next to the token,
and decrypting checks it. A ciphertext copied into another user's row (by anyone who can write
the table) decrypts for nobody. Stored form: `mcsync2:` + a Fernet token of
`{"user_id": "<uuid>", "token": "<access token>"}`. The prefix only says which form a value is
in (so `mcsync migrate` can count the rows still in the old, unbound form without a key); the
binding itself is inside the encryption.

Values in the old form (a Fernet token of the bare access token, before this binding existed)
are never accepted by `decrypt`; `rotate` (`mcsync rotate-keys`, and `mcsync migrate` when keys
are configured) re-encrypts them bound to the row's user."""

from __future__ import annotations

import json
from uuid import UUID

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

HOW_TO_MAKE_A_KEY = (
    "set MCSYNC_ENCRYPTION_KEYS to one or more Fernet keys, comma-separated, newest first; "
    'make one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)
BOUND_PREFIX = "mcsync2:"


class EncryptionKeyError(RuntimeError):
    """No usable key: the process must not start."""


class TokenBindingError(EncryptionKeyError):
    """A stored token is not this user's (copied from another row), or is still in the unbound
    form `mcsync rotate-keys` converts."""


class UnboundTokenError(TokenBindingError):
    """A token stored by an older mcsync, before tokens were bound: the operator's
    `mcsync rotate-keys` (or `mcsync migrate` with keys) binds it; the user need do nothing."""


class TokenCipher:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise EncryptionKeyError(f"no encryption key: {HOW_TO_MAKE_A_KEY}")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except ValueError as exc:
            raise EncryptionKeyError(
                f"an encryption key is not a valid Fernet key: {HOW_TO_MAKE_A_KEY}"
            ) from exc

    @classmethod
    def from_setting(cls, value: str) -> TokenCipher:
        return cls([k.strip() for k in value.split(",") if k.strip()])

    def encrypt(self, token: str, user_id: UUID | str) -> str:
        """The stored form of `token`, bound to `user_id`."""
        payload = json.dumps({"user_id": str(UUID(str(user_id))), "token": token})
        return BOUND_PREFIX + self._fernet.encrypt(payload.encode()).decode()

    def decrypt(self, stored: str, user_id: UUID | str) -> str:
        """The token stored for `user_id`; TokenBindingError if it was stored for anyone else."""
        if not is_bound(stored):
            raise UnboundTokenError(
                "a stored token is in the old form, not bound to its user: "
                "run `mcsync rotate-keys` (or `mcsync migrate` with MCSYNC_ENCRYPTION_KEYS set)"
            )
        payload = json.loads(self._open(stored[len(BOUND_PREFIX) :]))
        if payload.get("user_id") != str(UUID(str(user_id))):
            raise TokenBindingError("a stored token belongs to another user; refusing to use it")
        token: str = payload["token"]
        return token

    def rotate(self, stored: str, user_id: UUID | str) -> str:
        """Re-encrypt with the newest key, bound to `user_id` (an old unbound value is bound to
        it now: the operator runs this, on the rows as they are)."""
        if is_bound(stored):
            return self.encrypt(self.decrypt(stored, user_id), user_id)
        return self.encrypt(self._open(stored), user_id)

    def _open(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise EncryptionKeyError(
                "a stored token cannot be decrypted with the configured keys "
                "(was a key removed from MCSYNC_ENCRYPTION_KEYS before `mcsync rotate-keys`?)"
            ) from exc


def is_bound(stored: str) -> bool:
    """Whether a stored value is in the user-bound form (says nothing about whose it is)."""
    return stored.startswith(BOUND_PREFIX)
