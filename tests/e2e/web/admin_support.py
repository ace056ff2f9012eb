"""What the operator's page is tested on: made on purpose through the real worker and emulator.

`paused`: one contact synced then re-made by hand under another name (drift), one contact
Mailchimp refuses as fake (a rejection with Mailchimp's reason), then an outage of its account
until the worker pauses it (five failed attempts), the outage then over. `busy` and `quiet`:
healthy users with a backlog (3 and 1 contacts not yet synced)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from tests.support.harness import SyncHarness, User
from tests.support.tokens import default_issuer, new_key

OPERATOR = uuid.UUID("0be7a70e-0000-4000-8000-00000000000a")
OPERATOR_CLAIM = "app_metadata.mcsync_role=operator"
SYNCED = "rosa.real@coachmail.io"
FAKE = "test@example.com"  # the emulator refuses it as Mailchimp does: "looks fake or invalid"


def token(user_id: uuid.UUID | str, **claims: Any) -> str:
    """A Supabase-style ES256 access token from the tests' JWKS, with extra claims (Supabase
    puts roles in `app_metadata`)."""
    return default_issuer().token(user_id, ttl=3600, **claims)


def forged_token(user_id: uuid.UUID | str, **claims: Any) -> str:
    """The same claims signed by a key the JWKS does not publish, under a published kid."""
    issuer = default_issuer()
    return new_key().sign(issuer.claims(user_id, ttl=3600, **claims), kid=issuer.current.kid)


@dataclass
class Scenario:
    paused: User
    busy: User
    quiet: User
    fake_contact: uuid.UUID


def status_of(sync: SyncHarness, user: User) -> str:
    (row,) = sync.execute(
        "SELECT sync_status FROM mcsync.mailchimp_connections WHERE user_id = %s", (user.user_id,)
    )
    return str(row["sync_status"])


def make_scenario(sync: SyncHarness) -> Scenario:
    """Needs a harness with a scaled-down backoff (mcsync_backoff_scale=0.01)."""
    paused = sync.add_user()
    sync.add_contact(paused, SYNCED, first_name="Rosa")
    fake = sync.add_contact(paused, FAKE, first_name="Test")
    sync.drain()
    assert SYNCED in sync.members(paused)
    # Drift: the member deleted and re-added by hand under another first name.
    sync.admin.forget(paused.audience_id, SYNCED)
    sync.admin.add_member(paused.audience_id, SYNCED, merge_fields={"FNAME": "Rosie"})
    sync.admin.add_fault(status=500, access_token=paused.token)
    sync.add_contact(paused, "late.lou@coachmail.io", first_name="Lou")
    deadline = time.monotonic() + 20
    while status_of(sync, paused) != "paused":
        assert time.monotonic() < deadline, "the worker never paused the failing account"
        sync.drain()
        time.sleep(0.03)
    sync.admin.clear_faults()
    busy = sync.add_user()
    for i in range(3):
        sync.add_contact(busy, f"busy{i}@coachmail.io")
    quiet = sync.add_user()
    sync.add_contact(quiet, "quiet@coachmail.io")
    return Scenario(paused, busy, quiet, fake)
