"""The mirror contract, end to end: real triggers, real NOTIFY, the real worker, the emulator.

Every test runs against each app schema of tests/support/app_schemas.py: the example `contacts`
table (the built-in mapping), renamed columns with soft deletes, and tags in a join table with an
extra merge field; mcsync is installed on each by its mapping (mcsync.toml) alone."""

from __future__ import annotations

import time

import psycopg
import pytest

from mcsync.mirror import subscriber_hash
from tests.support.app_schemas import ALL_SCHEMAS
from tests.support.harness import SyncHarness, wait_until

pytestmark = pytest.mark.parametrize(
    "sync", ALL_SCHEMAS, indirect=True, ids=[app.name for app in ALL_SCHEMAS]
)


def test_1_created_contact_becomes_a_subscribed_member_with_fields_and_tags(
    sync: SyncHarness,
) -> None:
    user = sync.add_user()
    sync.add_contact(
        user,
        "ann@coachmail.io",
        first_name="Ann",
        last_name="Lee",
        phone="404-555-1212",
        tags=["client", "vip"],
    )
    assert len(sync.queue()) == 1
    sync.drain()
    member = sync.members(user)["ann@coachmail.io"]
    assert member["status"] == "subscribed"
    assert member["merge_fields"]["FNAME"] == "Ann"
    assert member["merge_fields"]["LNAME"] == "Lee"
    assert member["merge_fields"]["PHONE"] == "404-555-1212"
    assert {t["name"] for t in member["tags"]} == {"client", "vip"}
    assert sync.queue() == []


def test_1b_double_optin_audience_gets_pending_members(sync: SyncHarness) -> None:
    user = sync.add_user(double_optin=True)
    sync.add_contact(user, "bo@coachmail.io", first_name="Bo")
    sync.drain()
    assert sync.members(user)["bo@coachmail.io"]["status"] == "pending"


def test_2_synced_edit_updates_and_unsynced_edit_makes_no_call(sync: SyncHarness) -> None:
    user, cid = sync.mirrored_contact("cy@coachmail.io", first_name="Cy")
    sync.update_contact(cid, first_name="Cyrus")
    sync.drain()
    assert sync.members(user)["cy@coachmail.io"]["merge_fields"]["FNAME"] == "Cyrus"

    calls_before = len(sync.api_calls())
    sync.update_contact(cid, notes="called on Tuesday", address="1 Main St", stage="won")
    assert sync.queue() == []  # the trigger ignored it
    sync.drain()
    assert len(sync.api_calls()) == calls_before


def test_3_tags_added_removed_and_marketer_tags_kept(sync: SyncHarness) -> None:
    user, cid = sync.mirrored_contact("di@coachmail.io", tags=["lead"])
    sync.admin.tag(user.audience_id, "di@coachmail.io", "Newsletter-2026")  # by hand
    sync.update_contact(cid, tags=["lead", "client"])
    sync.drain()
    assert sync.tags(user, "di@coachmail.io") == {"lead", "client", "Newsletter-2026"}
    sync.update_contact(cid, tags=["client"])
    sync.drain()
    assert sync.tags(user, "di@coachmail.io") == {"client", "Newsletter-2026"}
    # Case-insensitive: a tag spelled differently is the same tag, no call needed.
    calls = len(sync.api_calls())
    sync.update_contact(cid, tags=["CLIENT"])
    sync.drain()
    assert sync.tags(user, "di@coachmail.io") == {"client", "Newsletter-2026"}
    assert len(sync.api_calls()) == calls


def test_3b_marketer_tag_with_the_same_name_as_a_removed_tag_is_kept_when_mcsync_never_set_it(
    sync: SyncHarness,
) -> None:
    user, cid = sync.mirrored_contact("el@coachmail.io", tags=[])
    sync.admin.tag(user.audience_id, "el@coachmail.io", "VIP")
    sync.update_contact(cid, first_name="El")
    sync.drain()
    assert sync.tags(user, "el@coachmail.io") == {"VIP"}


def test_4_email_change_renames_the_member(sync: SyncHarness) -> None:
    user, cid = sync.mirrored_contact("fay@old.io", first_name="Fay", tags=["client"])
    original_calls = len(sync.api_calls("PUT"))
    sync.update_contact(cid, email="fay@new.io")
    sync.drain()
    members = sync.members(user)
    assert "fay@old.io" not in members
    assert members["fay@new.io"]["status"] == "subscribed"
    assert members["fay@new.io"]["id"] == subscriber_hash("fay@new.io")
    assert {t["name"] for t in members["fay@new.io"]["tags"]} == {"client"}
    assert len(sync.api_calls("PATCH")) == 1
    assert len(sync.api_calls("PUT")) == original_calls  # renamed, not re-created


def test_4b_email_change_to_an_existing_member_is_recorded_and_not_retried(
    sync: SyncHarness,
) -> None:
    user = sync.add_user()
    sync.admin.add_member(user.audience_id, "gus@taken.io", status="subscribed")
    cid = sync.add_contact(user, "gus@old.io", first_name="Gus")
    sync.drain()
    sync.update_contact(cid, email="gus@taken.io")
    sync.drain()
    members = sync.members(user)
    # Merged into the member that already had the address; the old one is archived.
    assert members["gus@taken.io"]["merge_fields"]["FNAME"] == "Gus"
    assert members["gus@old.io"]["status"] == "archived"
    assert sync.queue() == []
    (note,) = sync.rejections()
    assert note["severity"] == "warning" and "already in the audience" in note["reason"]
    calls = len(sync.api_calls())
    sync.drain()
    assert len(sync.api_calls()) == calls


def test_5_no_email_then_email_then_cleared(sync: SyncHarness) -> None:
    user, cid = sync.mirrored_contact(None, first_name="Hal")
    assert sync.members(user) == {}
    sync.update_contact(cid, email="hal@coachmail.io")
    sync.drain()
    assert sync.members(user)["hal@coachmail.io"]["status"] == "subscribed"
    sync.update_contact(cid, email=None)
    sync.drain()
    assert sync.members(user)["hal@coachmail.io"]["status"] == "archived"


def test_6_delete_archives_unless_another_contact_shares_the_address(sync: SyncHarness) -> None:
    user = sync.add_user()
    solo = sync.add_contact(user, "ida@coachmail.io")
    first = sync.add_contact(user, "joe@coachmail.io", first_name="Joe", tags=["a"])
    second = sync.add_contact(user, "JOE@coachmail.io ", first_name="Joseph", tags=["b"])
    sync.drain()
    assert set(sync.members(user)) == {"ida@coachmail.io", "joe@coachmail.io"}
    sync.delete_contact(solo)
    sync.delete_contact(second)
    sync.drain()
    members = sync.members(user)
    assert members["ida@coachmail.io"]["status"] == "archived"
    assert members["joe@coachmail.io"]["status"] == "subscribed"
    assert members["joe@coachmail.io"]["merge_fields"]["FNAME"] == "Joe"
    assert {t["name"] for t in members["joe@coachmail.io"]["tags"]} == {"a"}
    sync.delete_contact(first)
    sync.drain()
    assert sync.members(user)["joe@coachmail.io"]["status"] == "archived"


def test_7_unsubscribed_member_is_never_resubscribed(sync: SyncHarness) -> None:
    user, cid = sync.mirrored_contact("kim@coachmail.io", first_name="Kim")
    sync.admin.unsubscribe(user.audience_id, "kim@coachmail.io")
    sync.update_contact(cid, first_name="Kimberly", tags=["client"])
    sync.drain()
    assert sync.members(user)["kim@coachmail.io"]["merge_fields"]["FNAME"] == "Kimberly"
    assert sync.members(user)["kim@coachmail.io"]["status"] == "unsubscribed"
    # An import that brings the same address again (a second contact row).
    table, tenant, email = sync.app.table, sync.app.column("user_id"), sync.app.column("email")
    sync.execute(f"INSERT INTO {table} ({tenant}, {email}) SELECT {tenant}, {email} FROM {table}")
    sync.drain()
    member = sync.members(user)["kim@coachmail.io"]
    assert member["status"] == "unsubscribed"
    assert sync.queue() == []


def test_8_two_users_never_see_each_others_contacts(sync: SyncHarness) -> None:
    alice, bob = sync.add_user(), sync.add_user()
    sync.add_contact(alice, "a1@coachmail.io")
    sync.add_contact(bob, "b1@coachmail.io")
    sync.add_contact(bob, "shared@coachmail.io", first_name="Bob's")
    sync.add_contact(alice, "shared@coachmail.io", first_name="Alice's")
    sync.drain()
    assert set(sync.members(alice)) == {"a1@coachmail.io", "shared@coachmail.io"}
    assert set(sync.members(bob)) == {"b1@coachmail.io", "shared@coachmail.io"}
    assert sync.members(alice)["shared@coachmail.io"]["merge_fields"]["FNAME"] == "Alice's"
    assert sync.members(bob)["shared@coachmail.io"]["merge_fields"]["FNAME"] == "Bob's"


def test_8b_contacts_of_users_without_a_connection_are_not_queued(sync: SyncHarness) -> None:
    user = sync.add_user(connect=False)
    sync.add_contact(user, "nobody@coachmail.io")
    assert sync.queue() == []


def test_9_emails_trimmed_and_lowercased_invalid_rejected_without_a_call(
    sync: SyncHarness,
) -> None:
    user = sync.add_user()
    sync.add_contact(user, "  Liz.Smith@CoachMail.io ")
    bad = sync.add_contact(user, "not-an-email")
    sync.drain()
    members = sync.members(user)
    assert list(members) == ["liz.smith@coachmail.io"]
    assert members["liz.smith@coachmail.io"]["id"] == subscriber_hash("liz.smith@coachmail.io")
    (rejected,) = sync.rejections()
    assert rejected["contact_id"] == bad and rejected["severity"] == "error"
    assert "invalid email" in rejected["reason"]
    assert len(sync.api_calls("PUT")) == 1
    assert sync.queue() == []


def test_9b_fake_email_rejected_with_mailchimps_reason_others_sync(sync: SyncHarness) -> None:
    user = sync.add_user()
    fake = sync.add_contact(user, "test@example.com")
    sync.add_contact(user, "real@coachmail.io")
    sync.drain()
    assert set(sync.members(user)) == {"real@coachmail.io"}
    (rejected,) = sync.rejections()
    assert rejected["contact_id"] == fake and "fake" in rejected["reason"]
    status = sync.execute("SELECT sync_status FROM mcsync.mailchimp_connections")[0]["sync_status"]
    assert status == "active"
    # Not retried until the contact changes.
    calls = len(sync.api_calls())
    sync.drain()
    assert len(sync.api_calls()) == calls


def test_10_bulk_import_of_10000_contacts_goes_through_batch_subscribe(
    sync: SyncHarness,
) -> None:
    user = sync.add_user()
    c = sync.app.column
    # Tags ride along where they are a column (a join table's rows are another statement).
    tag_column = sync.app.tags_table is None
    tags = (f", {c('tags')}", ", ARRAY['import']") if tag_column else ("", "")
    sync.execute(
        f"""INSERT INTO {sync.app.table} ({c("user_id")}, {c("email")}, {c("first_name")}{tags[0]})
            SELECT %s, 'member' || g || '@coachmail.io', 'N' || g{tags[1]}
              FROM generate_series(1, 10000) g""",
        (user.user_id,),
    )
    # One statement, one bulk row: the app's import pays for no per-contact outbox rows.
    (bulk,) = sync.execute("SELECT cardinality(contact_ids) AS n FROM mcsync.mailchimp_sync_bulk")
    assert bulk["n"] == 10000 and sync.queue() == []
    sync.drain()
    members = sync.members(user)
    assert len(members) == 10000
    assert members["member777@coachmail.io"]["merge_fields"]["FNAME"] == "N777"
    if tag_column:
        assert {t["name"] for t in members["member9999@coachmail.io"]["tags"]} == {"import"}
    batch_calls = [
        r for r in sync.api_calls("POST") if r["path"] == f"/3.0/lists/{user.audience_id}"
    ]
    assert len(batch_calls) == 20
    assert len(sync.api_calls("PUT")) == 0
    assert sync.queue() == []
    assert sync.execute("SELECT * FROM mcsync.mailchimp_sync_bulk") == []


def test_11_worker_runs_as_a_role_that_can_only_read_contacts(
    sync: SyncHarness, repo_root: object
) -> None:
    from tests.support.roles import regrant
    from tests.support.roles import worker_url as login_of_worker

    regrant(sync.db_url)
    user = sync.add_user()
    sync.add_contact(user, "mo@coachmail.io", first_name="Mo")

    worker_url = login_of_worker(sync.db_url)
    with psycopg.connect(worker_url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"UPDATE {sync.app.table} SET {sync.app.column('first_name')} = 'x'")
    limited = SyncHarness(sync.db_url, sync.emulator, worker_url=worker_url, app=sync.app)
    limited.drain()
    assert sync.members(user)["mo@coachmail.io"]["merge_fields"]["FNAME"] == "Mo"
    assert sync.queue() == []


def test_live_worker_syncs_a_change_within_moments_via_notify(sync: SyncHarness) -> None:
    sync.settings.mcsync_poll_interval = 30.0  # so only NOTIFY can explain a quick sync
    user = sync.add_user()
    with sync.live_worker():
        time.sleep(0.5)  # let the listener connect
        started = time.monotonic()
        sync.add_contact(user, "quick@coachmail.io", first_name="Quick")
        wait_until(lambda: "quick@coachmail.io" in sync.members(user), timeout=5)
        assert time.monotonic() - started < 5
    assert sync.queue() == []


def test_coalesced_edits_make_one_call_from_the_current_row(sync: SyncHarness) -> None:
    user = sync.add_user()
    cid = sync.add_contact(user, "ned@coachmail.io", first_name="N1")
    for i in range(2, 6):
        sync.update_contact(cid, first_name=f"N{i}")
    assert len(sync.queue()) == 1
    sync.drain()
    assert sync.members(user)["ned@coachmail.io"]["merge_fields"]["FNAME"] == "N5"
    assert len(sync.api_calls("PUT")) == 1


def test_phone_rejected_alone_syncs_the_rest_with_a_warning(sync: SyncHarness) -> None:
    user = sync.add_user(phone_format="US")
    cid = sync.add_contact(user, "ola@coachmail.io", first_name="Ola", phone="call me maybe")
    sync.drain()
    member = sync.members(user)["ola@coachmail.io"]
    assert member["merge_fields"]["FNAME"] == "Ola"
    (note,) = sync.rejections()
    assert note["contact_id"] == cid and note["severity"] == "warning" and note["field"] == "PHONE"
    assert sync.queue() == []


def test_6b_a_contact_deleted_and_added_again_brings_its_member_back(sync: SyncHarness) -> None:
    user, cid = sync.mirrored_contact("pia@coachmail.io", first_name="Pia")
    sync.delete_contact(cid)
    sync.drain()
    assert sync.members(user)["pia@coachmail.io"]["status"] == "archived"
    sync.add_contact(user, "pia@coachmail.io", first_name="Pia")
    sync.drain()
    assert sync.members(user)["pia@coachmail.io"]["status"] == "subscribed"


def test_7b_an_unsubscribed_member_archived_by_mcsync_is_never_restored(sync: SyncHarness) -> None:
    user, cid = sync.mirrored_contact("quin@coachmail.io", first_name="Quin")
    sync.admin.unsubscribe(user.audience_id, "quin@coachmail.io")
    sync.delete_contact(cid)
    sync.drain()
    sync.add_contact(user, "quin@coachmail.io", first_name="Quin")
    sync.drain()
    assert sync.members(user)["quin@coachmail.io"]["status"] in ("archived", "unsubscribed")
    assert not any(r["status"] == 400 for r in sync.api_calls())  # never even asked


def test_7c_a_member_archived_by_a_marketer_stays_archived(sync: SyncHarness) -> None:
    user, cid = sync.mirrored_contact("rae@coachmail.io", first_name="Rae")
    sync.admin.archive(user.audience_id, "rae@coachmail.io")
    sync.update_contact(cid, first_name="Raelynn")
    sync.drain()
    assert sync.members(user)["rae@coachmail.io"]["status"] == "archived"
    assert sync.queue() == []


def test_addresses_match_whatever_ascii_whitespace_surrounds_them(sync: SyncHarness) -> None:
    user = sync.add_user()
    tabbed = sync.add_contact(user, "\tsam@coachmail.io\n", first_name="Tab", tags=["a"])
    sync.add_contact(user, "Sam@CoachMail.io", first_name="Plain", tags=["b"])
    sync.drain()
    assert list(sync.members(user)) == ["sam@coachmail.io"]
    sync.delete_contact(tabbed)
    sync.drain()
    member = sync.members(user)["sam@coachmail.io"]
    assert member["status"] == "subscribed" and member["merge_fields"]["FNAME"] == "Plain"
    assert {t["name"] for t in member["tags"]} == {"b"}


def test_6c_a_contact_whose_fields_another_pass_sent_moves_away(sync: SyncHarness) -> None:
    """Two contacts at one address: Ann's pass sends Bea's fields and tag (Bea changed last)
    while Bea's own row still waits; Bea then moves away before her row is handled. Her pass
    must come back to the member (the maybe-link Ann's pass wrote ahead), or it keeps her phone
    and tag. Bea's row waiting is made explicit (as a row waits between two passes)."""
    user, ann = sync.mirrored_contact("uma@coachmail.io", first_name="Uma")
    sync.update_contact(ann, last_name="Lee")
    bea = sync.add_contact(
        user, "Uma@coachmail.io", first_name="Bea", phone="555-0100", tags=["lead"]
    )
    later = "UPDATE mcsync.mailchimp_sync_queue SET next_retry_at = {} WHERE contact_id = %s"
    sync.execute(later.format("now() + interval '1 hour'"), (bea,))
    sync.drain()  # Ann's row alone
    member = sync.members(user)["uma@coachmail.io"]
    assert member["merge_fields"]["FNAME"] == "Bea" and member["merge_fields"]["PHONE"]
    (link,) = sync.execute(
        "SELECT maybe_hashes FROM mcsync.mailchimp_contact_links WHERE contact_id = %s", (bea,)
    )
    # Stored as 16 bytes (sql/010).
    assert link["maybe_hashes"] == [bytes.fromhex(subscriber_hash("uma@coachmail.io"))]
    sync.update_contact(bea, email="bea@coachmail.io")
    sync.execute(later.format("now()"), (bea,))
    sync.drain()
    members = sync.members(user)
    uma = members["uma@coachmail.io"]
    assert (uma["merge_fields"]["FNAME"], uma["merge_fields"]["LNAME"]) == ("Uma", "Lee")
    assert uma["merge_fields"]["PHONE"] == ""
    assert {t["name"] for t in uma["tags"]} == set()
    assert members["bea@coachmail.io"]["merge_fields"]["PHONE"]
    assert {t["name"] for t in members["bea@coachmail.io"]["tags"]} == {"lead"}
    assert sync.queue() == []


def test_6d_a_contact_inside_an_import_whose_tags_another_pass_sent_moves_away(
    sync: SyncHarness,
) -> None:
    """The same with Bea inside an import not yet turned into queue rows (a large import's
    later slice): Ann's pass sends Bea's tag to their address, Bea moves away, and her pass
    must still come back to the member. The slice's waiting is made explicit by holding its
    bulk row back while Ann's pass runs."""
    user, ann = sync.mirrored_contact("vic@coachmail.io", first_name="Vic")
    c = sync.app.column
    tag_column = sync.app.tags_table is None
    lead = ", CASE WHEN g = 1 THEN ARRAY['lead'] ELSE '{}' END"
    tags = (f", {c('tags')}", lead) if tag_column else ("", "")
    sync.execute(
        f"""INSERT INTO {sync.app.table} ({c("user_id")}, {c("email")}, {c("first_name")}{tags[0]})
            SELECT %s, CASE WHEN g = 1 THEN 'Vic@coachmail.io' ELSE 'imp' || g || '@coachmail.io'
                       END, 'Bea'{tags[1]}
              FROM generate_series(1, 1000) g""",
        (user.user_id,),
    )
    (bea,) = [
        r["id"]
        for r in sync.execute(
            "SELECT id FROM mcsync.source_contacts WHERE lower(email) = 'vic@coachmail.io'"
            " AND id <> %s",
            (ann,),
        )
    ]
    if not tag_column:
        sync.update_contact(bea, tags=["lead"])  # its own queue row: dropped below
        sync.execute("DELETE FROM mcsync.mailchimp_sync_queue WHERE contact_id = %s", (bea,))
    held = sync.execute("DELETE FROM mcsync.mailchimp_sync_bulk RETURNING *")
    assert len(held) == 1 and bea in held[0]["contact_ids"]
    sync.update_contact(ann, last_name="Lee")
    sync.drain()  # Ann's row alone: vic@ gets Bea's tag
    assert sync.tags(user, "vic@coachmail.io") == {"lead"}
    sync.update_contact(bea, email="bea@coachmail.io")
    sync.execute(
        "INSERT INTO mcsync.mailchimp_sync_bulk (user_id, contact_ids, enqueued_at)"
        " VALUES (%s, %s, %s)",
        (user.user_id, held[0]["contact_ids"], held[0]["enqueued_at"]),
    )
    sync.drain()
    members = sync.members(user)
    vic = members["vic@coachmail.io"]
    assert (vic["merge_fields"]["FNAME"], vic["merge_fields"]["LNAME"]) == ("Vic", "Lee")
    assert {t["name"] for t in vic["tags"]} == set()
    assert {t["name"] for t in members["bea@coachmail.io"]["tags"]} == {"lead"}
    assert len(members) == 1001 and sync.queue() == []
