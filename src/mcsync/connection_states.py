"""What a connection's state means to its user, and why a connection cannot be used: one home
for the worker (which records the state) and the web side (which answers the widget).

Pure: no I/O."""

from __future__ import annotations

from mcsync.crypto import EncryptionKeyError, TokenBindingError, UnboundTokenError
from mcsync.mailchimp.endpoints import InvalidDataCenter

# What the user sees (the widget's notice) while their connection is paused or in error.
PAUSED_NOTICE = "Heads up—email sync is paused right now. Your contacts are still safe."

# The reason a connection Mailchimp refused is in error (`status_reason`, sql/009).
REVOKED = "token_revoked"


def unusable_state(exc: InvalidDataCenter | EncryptionKeyError) -> tuple[str, str]:
    """The connection state and its reason for an account no call may be made for.

    Paused (probed with backoff, resumes by itself) when the operator can fix it without the
    user: a token stored before tokens were bound (`mcsync rotate-keys`), a token no configured
    key opens (a key removed from MCSYNC_ENCRYPTION_KEYS too early: put it back). Error (until
    the user reconnects) when the stored row itself is wrong: a token bound to another user, a
    forged data center."""
    if isinstance(exc, UnboundTokenError):
        return "paused", "token_unbound"
    if isinstance(exc, TokenBindingError):
        return "error", "token_not_this_users"
    if isinstance(exc, EncryptionKeyError):
        return "paused", "token_undecryptable"
    return "error", "invalid_dc"
