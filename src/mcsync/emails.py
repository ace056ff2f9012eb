"""Email addresses as mcsync compares them: one normalisation, one subscriber hash.

Shared by the planner (`mcsync.mirror`), the worker's store and the Mailchimp client, so an
address is trimmed and hashed the same way everywhere. Pure; no I/O.

Mailchimp names a member by its *subscriber hash*: "we identify your subscribers by the MD5
hash of the lowercase version of their email address" (Mailchimp's guide "Manage subscribers
with the Mailchimp API", quoted in mnbbrown/mailchimp util.go). mcsync first trims the ASCII
spaces it trims everywhere else (sql/002's ``mcsync_email_key`` trims the same set), so the
hash of an address as stored in `contacts` is the hash of the address as sent.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

# Trimmed around an address (sql/002's mcsync_email_key trims the same set); any other
# whitespace makes the address invalid.
ASCII_SPACES = " \t\n\r\f\v"
# Deliberately simple: Mailchimp is the judge of deliverability ("looks fake"); this only keeps
# strings that cannot be an address from costing an API call.
_EMAIL = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@.]{2,}$")


# Both are pure and called several times per contact in a pass (planning, facts, outcomes):
# memoised, they stop being a visible cost of a 100,000-contact import.
@lru_cache(maxsize=1 << 13)
def normalize_email(raw: str | None) -> str | None:
    """The address as sent (trimmed), or None when missing or not an address."""
    if raw is None:
        return None
    email = raw.strip(ASCII_SPACES)
    if not email or not _EMAIL.match(email) or len(email) > 254:
        return None
    return email


@lru_cache(maxsize=1 << 13)
def subscriber_hash(email: str) -> str:
    """Mailchimp's member id for `email`: MD5 hex of the address, ASCII-trimmed and lowercased."""
    return hashlib.md5(
        email.strip(ASCII_SPACES).lower().encode("utf-8"), usedforsecurity=False
    ).hexdigest()
