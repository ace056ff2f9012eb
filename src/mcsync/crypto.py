"""Tokens at rest: Fernet through MultiFernet, keys newest first, so keys can be rotated."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

HOW_TO_MAKE_A_KEY = (
    "set MCSYNC_ENCRYPTION_KEYS to one or more Fernet keys, comma-separated, newest first; "
    'make one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


class EncryptionKeyError(RuntimeError):
    """No usable key: the process must not start."""


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

    def encrypt(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise EncryptionKeyError(
                "a stored token cannot be decrypted with the configured keys "
                "(was a key removed from MCSYNC_ENCRYPTION_KEYS before `mcsync rotate-keys`?)"
            ) from exc

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt with the newest key."""
        return self._fernet.rotate(ciphertext.encode()).decode()
