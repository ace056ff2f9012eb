"""Poison contacts are recorded with Mailchimp's reason and never block or pause anything; a
catalogue of hostile rows is each synced or rejected with a reason."""

from __future__ import annotations

import uuid

from mcsync.mirror import desired_members, normalize_email, subscriber_hash
from mcsync.rows import contact_from_row
from tests.e2e.failures.conftest import connection, settle
from tests.support.harness import SyncHarness


def _rejection(h: SyncHarness, cid: uuid.UUID) -> dict[str, object]:
    (row,) = h.execute(
        "SELECT * FROM mcsync.mailchimp_rejected_contacts WHERE contact_id = %s", (cid,)
    )
    return row


def test_contact_level_rejections_are_recorded_with_reason_and_field_and_never_pause(
    fast: SyncHarness,
) -> None:
    user = fast.add_user(required_fields=[])
    # forgotten: synced once, then permanently deleted in Mailchimp, then edited here
    forgotten = fast.add_contact(user, "gone@coachmail.io", first_name="Gone")
    # compliance: synced, archived by mcsync (deleted here), then unsubscribed in Mailchimp;
    # re-adding the contact must not even ask to restore the member: it reads the member first.
    unsub = fast.add_contact(user, "unsub@coachmail.io", first_name="Un")
    settle(fast)
    fast.admin.forget(user.audience_id, "gone@coachmail.io")
    fast.update_contact(forgotten, first_name="Gone again")
    fast.delete_contact(unsub)
    settle(fast)
    fast.admin.unsubscribe(user.audience_id, "unsub@coachmail.io")
    readded = fast.add_contact(user, "unsub@coachmail.io", first_name="Back")

    fake = fast.add_contact(user, "test@example.com")
    invalid = fast.add_contact(user, "nobody at all")
    good = [fast.add_contact(user, f"ok{i}@coachmail.io") for i in range(3)]
    for _ in range(3):  # none of this is retried, so repeating changes nothing
        settle(fast)

    f = _rejection(fast, forgotten)
    assert f["severity"] == "error" and f["field"] == "email_address"
    assert "permanently deleted" in str(f["reason"])
    assert fast.execute(
        "SELECT * FROM mcsync.mailchimp_rejected_contacts WHERE contact_id = %s", (readded,)
    ) == []
    unsub_hash = subscriber_hash("unsub@coachmail.io")
    assert not any(  # no write to that member was refused: nothing raised was ever asked
        r["status"] == 400 and unsub_hash in r["path"] for r in fast.api_calls()
    )
    assert _rejection(fast, fake)["field"] == "email_address"
    assert "fake" in str(_rejection(fast, fake)["reason"])
    assert "invalid email" in str(_rejection(fast, invalid)["reason"])
    members = fast.members(user)
    assert all(f"ok{i}@coachmail.io" in members for i in range(3))
    assert members["unsub@coachmail.io"]["status"] in ("archived", "unsubscribed")
    assert fast.queue() == []
    conn = connection(fast)
    assert conn["sync_status"] == "active" and conn["consecutive_failures"] == 0
    assert conn["notice"] is None
    del good

    # Not retried until the contact changes; a change that fixes it clears the rejection.
    calls = len(fast.api_calls())
    settle(fast)
    assert len(fast.api_calls()) == calls
    fast.update_contact(fake, email="fixed@coachmail.io")
    settle(fast)
    assert "fixed@coachmail.io" in fast.members(user)
    assert (
        fast.execute(
            "SELECT 1 FROM mcsync.mailchimp_rejected_contacts WHERE contact_id = %s", (fake,)
        )
        == []
    )


def test_merge_field_error_names_the_field(fast: SyncHarness) -> None:
    user = fast.add_user(required_fields=["LNAME"])
    cid = fast.add_contact(user, "nolast@coachmail.io", first_name="No")
    fast.add_contact(user, "haslast@coachmail.io", first_name="Has", last_name="Last")
    settle(fast)
    r = _rejection(fast, cid)
    assert r["severity"] == "error" and r["field"] == "LNAME"
    assert "LNAME" in str(r["reason"])
    assert set(fast.members(user)) == {"haslast@coachmail.io"}
    assert connection(fast)["sync_status"] == "active"


def test_phone_only_rejection_syncs_without_phone_and_warns_also_in_a_batch(
    fast: SyncHarness,
) -> None:
    user = fast.add_user(phone_format="US")
    fast.execute(
        """INSERT INTO contacts (user_id, email, first_name, phone)
           SELECT %s, 'ph' || g || '@coachmail.io', 'P' || g,
                  CASE WHEN g %% 5 = 0 THEN 'call me' ELSE '404-555-' || (1000 + g) END
             FROM generate_series(1, 40) g""",
        (user.user_id,),
    )
    settle(fast)
    members = fast.members(user)
    assert len(members) == 40
    assert members["ph5@coachmail.io"]["merge_fields"]["PHONE"] == ""
    assert members["ph5@coachmail.io"]["merge_fields"]["FNAME"] == "P5"
    assert members["ph6@coachmail.io"]["merge_fields"]["PHONE"] == "404-555-1006"
    warnings = fast.execute("SELECT * FROM mcsync.mailchimp_rejected_contacts")
    assert len(warnings) == 8
    assert all(w["severity"] == "warning" and w["field"] == "PHONE" for w in warnings)
    assert fast.queue() == []
    assert connection(fast)["sync_status"] == "active"


# --- the hostile-input catalogue ---------------------------------------------------------------

LONG = "Ω" * 5000  # 10 KB of UTF-8

CATALOGUE: list[dict[str, object]] = [
    {"email": "zoë@coachmail.io", "first_name": "Zoë", "last_name": "Ünïcödé"},
    {"email": "rtl1@coachmail.io", "first_name": "مريم", "last_name": "العربية"},
    {"email": "rtl2@coachmail.io", "first_name": "שָׁלוֹם", "last_name": "\u202eevil\u202c"},
    {
        "email": "emoji@coachmail.io",
        "first_name": "🎉🔥",
        "last_name": "👩‍👩‍👧‍👦",
        "tags": ["🔥hot"],
    },
    {"email": "cjk@coachmail.io", "first_name": "山田", "last_name": "太郎"},
    {"email": "long@coachmail.io", "first_name": LONG, "last_name": LONG},
    {"email": "  Spaces@CoachMail.IO  ", "first_name": "Spaces"},
    {"email": "CAPS@COACHMAIL.IO", "first_name": "Caps"},
    {"email": "mixed.Case+tag@CoachMail.io", "first_name": "Mixed"},
    {"email": "space in@coachmail.io"},
    {"email": "no-at-sign.coachmail.io"},
    {"email": "two@@coachmail.io"},
    {"email": "trailingdot@coachmail."},
    {"email": "@coachmail.io"},
    {"email": ""},
    {"email": "   "},
    {"email": None, "first_name": "No email"},
    {"email": "test@example.com"},
    {"email": "asdf@mailinator.com"},
    {"email": "someone@site.test"},
    {"email": "x@" + "a" * 250 + ".io"},
    {"email": "robert'); DROP TABLE contacts;--@coachmail.io"},
    {"email": "sql1@coachmail.io", "first_name": "Robert'); DROP TABLE contacts;--"},
    {"email": "sql2@coachmail.io", "last_name": "' OR '1'='1", "tags": ["'; DELETE FROM x; --"]},
    {"email": "tags1@coachmail.io", "tags": ["a,b,c", "with, comma"]},
    {"email": "tags2@coachmail.io", "tags": ["T" * 200]},
    {"email": "tags3@coachmail.io", "tags": ["Client", "client", "CLIENT", " client "]},
    {"email": "tags4@coachmail.io", "tags": ["", "   ", "ok"]},
    {"email": "tags5@coachmail.io", "tags": ["🎯", "☃️ winter", "naïve"]},
    {"email": "ph1@coachmail.io", "phone": "+1 (404) 555-1212"},
    {"email": "ph2@coachmail.io", "phone": "404.555.1212"},
    {"email": "ph3@coachmail.io", "phone": "+44 20 7946 0958"},
    {"email": "ph4@coachmail.io", "phone": "(404)5551212"},
    {"email": "ph5@coachmail.io", "phone": "ext. 42"},
    {"email": "ph6@coachmail.io", "phone": "+1-404-555-1212 x123"},
    {"email": "ph7@coachmail.io", "phone": "٤٠٤٥٥٥١٢١٢"},
    {"email": "ph8@coachmail.io", "phone": "0" * 300},
    {"email": "shared@coachmail.io", "first_name": "First", "tags": ["one"]},
    {"email": "SHARED@coachmail.io", "first_name": "Second", "tags": ["two"]},
    {"email": " shared@CoachMail.io", "first_name": "Third", "tags": ["ONE", "three"]},
    {"email": "ctrl@coachmail.io", "first_name": "tab\there", "last_name": "new\nline"},
    {"email": "nul@coachmail.io", "first_name": "zero\u200bwidth", "last_name": "\ufeffbom"},
    {"email": "html@coachmail.io", "first_name": "<script>alert(1)</script>", "last_name": "&amp;"},
    {"email": "percent@coachmail.io", "first_name": "%s %(x)s {0} $1"},
]


def test_hostile_catalogue_each_row_synced_or_rejected_with_a_reason(
    fast: SyncHarness,
) -> None:
    assert len(CATALOGUE) >= 40
    user = fast.add_user()
    ids: dict[uuid.UUID, dict[str, object]] = {}
    for row in CATALOGUE:
        cols = {k: v for k, v in row.items() if k != "email"}
        ids[fast.add_contact(user, row["email"], **cols)] = row  # type: ignore[arg-type]
    settle(fast)
    # And again as single edits, not a batch (the other path through the applier).
    for cid in list(ids)[:12]:
        fast.update_contact(cid, first_name="edited")
        ids[cid] = {**ids[cid], "first_name": "edited"}
    settle(fast)

    assert fast.queue() == []
    conn = connection(fast)
    assert conn["sync_status"] == "active" and conn["notice"] is None
    assert conn["consecutive_failures"] == 0

    rejected = {
        r["contact_id"]: r
        for r in fast.execute(
            "SELECT * FROM mcsync.mailchimp_rejected_contacts WHERE severity = 'error'"
        )
    }
    for r in rejected.values():
        assert r["reason"], r
    contacts = [contact_from_row(r) for r in fast.execute("SELECT * FROM mcsync.source_contacts")]
    members = fast.members(user)
    desired = desired_members([c for c in contacts if c.id not in rejected])
    for cid, row in ids.items():
        email = normalize_email(row["email"])  # type: ignore[arg-type]
        if cid in rejected:
            continue
        if email is None:
            # No address at all: nothing to sync and nothing to reject.
            assert not (row["email"] or "").strip(), row  # type: ignore[union-attr]
            continue
        assert email.lower() in members, (row["email"], "neither synced nor rejected")
    for d in desired.values():
        m = members[d.email.lower()]
        assert m["status"] == "subscribed"
        tag_names = {t["name"].casefold() for t in m["tags"]}
        assert {t.casefold() for t in d.tags} <= tag_names, d.email
    # The shared address: one member, fields from the most recent contact, union of tags.
    shared = members["shared@coachmail.io"]
    assert {t["name"].casefold() for t in shared["tags"]} == {"one", "two", "three"}
    assert len([m for m in members if m == "shared@coachmail.io"]) == 1
    # 10 KB names were cut to Mailchimp's 255 bytes, not refused.
    assert len(members["long@coachmail.io"]["merge_fields"]["FNAME"].encode()) <= 255
    print(f"{len(rejected)} rejected:", sorted(str(r["reason"])[:60] for r in rejected.values()))
