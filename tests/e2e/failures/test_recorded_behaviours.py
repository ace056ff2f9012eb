"""The worker against Mailchimp's recorded behaviours (docs/emulator.md): archives Mailchimp
refuses (405), the temporary "signed up to a lot of lists" refusal, and payloads that would
fail a whole batch. Real worker, real Postgres, the emulator over HTTP."""

from __future__ import annotations

import asyncio

import pytest
from psycopg_pool import AsyncConnectionPool

from mcsync.mailchimp.client import ClientFactory
from mcsync.mirror import MemberPlan, UpsertMember, subscriber_hash
from mcsync.worker.account import AUDIENCE_RECHECK_SECONDS, AccountSettings, AccountWorker
from mcsync.worker.apply import AccountGate, MemberApplier, apply_plans
from mcsync.worker.backoff import CAP_SECONDS, SIGNUP_LIMIT_RETRY_SECONDS
from mcsync.worker.store import Account, WorkerStore
from tests.e2e.failures.conftest import SCALE, connection, settle
from tests.support.harness import SyncHarness


def _deletes(h: SyncHarness, email: str) -> list[dict[str, object]]:
    key = subscriber_hash(email)
    return [c for c in h.api_calls("DELETE") if key in str(c["path"])]


@pytest.mark.parametrize("unarchives", [False, True])
def test_a_pending_member_mailchimp_cannot_archive_is_left_pending_recorded_and_never_retried(
    fast: SyncHarness, unarchives: bool
) -> None:
    fast.admin.set_options(batch_status_if_new_unarchives=unarchives)
    user = fast.add_user(double_optin=True)
    gone = fast.add_contact(user, "never-confirmed@coachmail.io", tags=["coach"])
    fast.add_contact(user, "stays@coachmail.io")
    settle(fast)
    assert fast.members(user)["never-confirmed@coachmail.io"]["status"] == "pending"

    fast.delete_contact(gone)
    settle(fast)
    later = fast.add_contact(user, "later@coachmail.io")  # the user's other contacts go on
    for _ in range(3):
        settle(fast)

    members = fast.members(user)
    assert members["never-confirmed@coachmail.io"]["status"] == "pending"  # left as it is
    assert "later@coachmail.io" in members and "stays@coachmail.io" in members
    assert len(_deletes(fast, "never-confirmed@coachmail.io")) == 1  # asked once, never again
    assert fast.queue() == []
    (warning,) = fast.execute(
        "SELECT * FROM mcsync.mailchimp_rejected_contacts WHERE contact_id = %s", (gone,)
    )
    assert warning["severity"] == "warning" and "cannot archive" in str(warning["reason"])
    (entry,) = fast.execute(
        "SELECT archived, archive_status, tags FROM mcsync.mailchimp_members"
        " WHERE email_hash = decode(%s, 'hex')",
        (subscriber_hash("never-confirmed@coachmail.io"),),
    )
    assert entry["archived"] and entry["archive_status"] is None and entry["tags"] == ["coach"]
    conn = connection(fast)
    assert conn["sync_status"] == "active" and conn["consecutive_failures"] == 0
    del later

    # The person comes back: the member is synced again, without raising its status.
    back = fast.add_contact(user, "never-confirmed@coachmail.io", first_name="Back")
    settle(fast)
    member = fast.members(user)["never-confirmed@coachmail.io"]
    assert member["status"] == "pending" and member["merge_fields"]["FNAME"] == "Back"
    assert fast.tags(user, "never-confirmed@coachmail.io") == set()  # mcsync's tag let go
    del back


def test_signed_up_to_a_lot_of_lists_is_retried_hours_later_never_rejected_never_pausing(
    fast: SyncHarness,
) -> None:
    user = fast.add_user()
    fast.admin.limit_signups("busy@coachmail.io")
    busy = fast.add_contact(user, "busy@coachmail.io", first_name="Busy")
    others = [fast.add_contact(user, f"ok{i}@coachmail.io") for i in range(3)]
    for _ in range(3):  # (not settle: the postponed row stays queued, as it should)
        fast.drain()

    members = fast.members(user)
    assert "busy@coachmail.io" not in members
    assert all(f"ok{i}@coachmail.io" in members for i in range(3))
    assert fast.rejections() == []
    (row,) = fast.queue()
    assert row["contact_id"] == busy and row["attempts"] == 0
    (wait,) = fast.execute(
        "SELECT extract(epoch FROM next_retry_at - now()) AS s FROM mcsync.mailchimp_sync_queue"
    )
    # Hours (scaled down like every delay here), far beyond the retry cap of 5 minutes.
    assert wait["s"] > SIGNUP_LIMIT_RETRY_SECONDS * SCALE / 2 > 10 * CAP_SECONDS * SCALE
    conn = connection(fast)
    assert conn["sync_status"] == "active" and conn["consecutive_failures"] == 0

    # Hours later Mailchimp accepts the person again; the row is due and syncs.
    fast.admin.limit_signups("busy@coachmail.io", limited=False)
    fast.execute("UPDATE mcsync.mailchimp_sync_queue SET next_retry_at = now()")
    settle(fast)
    assert fast.members(user)["busy@coachmail.io"]["merge_fields"]["FNAME"] == "Busy"
    assert fast.queue() == [] and fast.rejections() == []
    del others


def test_a_member_whose_payload_mailchimp_would_refuse_never_fails_the_batch(
    fast: SyncHarness,
) -> None:
    user = fast.add_user()

    def plan(email: str, merge_fields: dict[str, object]) -> MemberPlan:
        fields: dict[str, str] = merge_fields  # type: ignore[assignment]  # wrong on purpose
        op = UpsertMember(subscriber_hash(email), email, fields, "subscribed", None)
        return MemberPlan(op.email_hash, (op,), None, ())

    plans = [plan(f"b{i}@coachmail.io", {"FNAME": f"B{i}"}) for i in range(6)]
    plans[2] = plan("bad@coachmail.io", {"FNAME": None})  # null: a schema violation
    plans[4] = plan("bad2@coachmail.io", {"FNAME": True})

    async def run() -> list[str]:
        factory = ClientFactory(fast.emulator.api_url)
        client = factory.client("us1", user.token)
        applier = MemberApplier(client, user.audience_id, AccountGate(4), {})
        try:
            outcomes = await apply_plans(applier, plans, batch_threshold=1)
        finally:
            await client.aclose()
        return [o.status for o in outcomes]

    statuses = asyncio.run(run())
    assert statuses == ["done", "done", "rejected", "done", "rejected", "done"]
    members = fast.members(user)
    assert {f"b{i}@coachmail.io" for i in (0, 1, 3, 5)} <= set(members)
    assert "bad@coachmail.io" not in members
    assert [c for c in fast.api_calls() if c["status"] == 400] == []  # never sent


def test_a_whole_batch_400_is_split_until_the_bad_member_is_alone_and_the_rest_synced(
    fast: SyncHarness,
) -> None:
    """Mailchimp refuses a whole batch subscribe for one member mcsync's pre-check cannot know is
    bad (here the emulator refuses every request whose body names it): the worker splits the
    batch until that member is alone, records it with Mailchimp's answer, syncs all the others,
    and neither retries nor pauses."""
    user = fast.add_user()
    bad = "refused@coachmail.io"
    fast.admin.add_fault(
        status=400, method="POST", path_regex=r"/lists/[^/]+$", body_contains=bad
    )
    emails = [f"m{i}@coachmail.io" for i in range(24)]
    emails.insert(11, bad)
    ids = {email: fast.add_contact(user, email) for email in emails}
    settle(fast)

    batches = [c for c in fast.api_calls("POST") if str(c["path"]).endswith(user.audience_id)]
    assert any(c["status"] == 400 for c in batches)  # it happened for real, as a whole
    members = fast.members(user)
    assert set(members) == set(emails) - {bad}
    assert {m["status"] for m in members.values()} == {"subscribed"}
    (rejection,) = fast.rejections()
    assert rejection["contact_id"] == ids[bad] and rejection["severity"] == "error"
    assert "Bad Request" in str(rejection["reason"])  # what Mailchimp answered, kept
    assert fast.queue() == []
    conn = connection(fast)
    assert conn["sync_status"] == "active" and conn["consecutive_failures"] == 0


def test_truncate_contacts_archives_every_member_mcsync_owns_and_nothing_else(
    fast: SyncHarness,
) -> None:
    coach, other = fast.add_user(), fast.add_user()
    fast.admin.add_member(coach.audience_id, "from-a-form@coachmail.io", status="subscribed")
    for i in range(4):
        fast.add_contact(coach, f"c{i}@coachmail.io")
    fast.add_contact(other, "o@coachmail.io")
    settle(fast)

    fast.execute("TRUNCATE contacts")
    settle(fast)

    mine = fast.members(coach)
    assert {mine[f"c{i}@coachmail.io"]["status"] for i in range(4)} == {"archived"}
    assert mine["from-a-form@coachmail.io"]["status"] == "subscribed"  # not mcsync's: untouched
    assert fast.members(other)["o@coachmail.io"]["status"] == "archived"
    assert fast.queue() == [] and fast.rejections() == []
    assert fast.execute("SELECT * FROM mcsync.mailchimp_contact_links") == []


def test_a_double_opt_in_setting_changed_in_mailchimp_is_noticed_without_reconnecting(
    fast: SyncHarness,
) -> None:
    user = fast.add_user(double_optin=True, connect=False)
    fast.connect(user, double_optin=False)  # stored before the marketer turned it on
    (row,) = fast.execute("SELECT * FROM mcsync.mailchimp_connections")
    now = [0.0]

    async def run() -> tuple[bool, bool]:
        async with AsyncConnectionPool(
            fast.db_url, min_size=1, kwargs={"autocommit": True}
        ) as pool:
            worker = AccountWorker(
                WorkerStore(pool, "test", 30.0),
                fast.cipher,
                ClientFactory(fast.emulator.api_url),
                AccountSettings(),
                clock=lambda: now[0],  # the one injected part: time
            )
            account = Account.from_row(row)
            first = await worker.audience_settings(account)  # just connected: not asked again
            now[0] += AUDIENCE_RECHECK_SECONDS
            later = await worker.audience_settings(first)
        return first.double_optin, later.double_optin

    assert asyncio.run(run()) == (False, True)
    (conn,) = fast.execute("SELECT double_optin FROM mcsync.mailchimp_connections")
    assert conn["double_optin"] is True
    # New members of that audience now start pending.
    fast.add_contact(user, "new@coachmail.io")
    settle(fast)
    assert fast.members(user)["new@coachmail.io"]["status"] == "pending"
