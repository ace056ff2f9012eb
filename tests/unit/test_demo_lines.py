"""The live demo's terminal lines: one per member that changed, saying what changed (pure)."""

from __future__ import annotations

from typing import Any

from mcsync.demo_live import member_changes, snapshot


def member(email: str, *, cid: str = "c1", status: str = "subscribed", fname: str = "Ana",
           tags: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "id": email.lower(),
        "contact_id": cid,
        "email_address": email,
        "status": status,
        "merge_fields": {"FNAME": fname, "LNAME": "Silva"},
        "tags": [{"name": t} for t in tags],
    }


def test_one_line_per_changed_member_saying_what_changed() -> None:
    before = snapshot([member("ana@coachmail.io", tags=("client",)),
                       member("ben@coachmail.io", cid="c2", fname="Ben")])
    after = snapshot([
        member("ana@coachmail.io", fname="Anna", tags=("client", "workshop")),
        member("ben.o@coachmail.io", cid="c2", fname="Ben", status="archived"),
        member("cleo@coachmail.io", cid="c3", fname="Cleo", tags=("lead",)),
    ])
    assert member_changes(before, after) == [
        "updated ana@coachmail.io: FNAME 'Ana' -> 'Anna'; tags +workshop",
        "updated ben.o@coachmail.io: email ben@coachmail.io -> ben.o@coachmail.io;"
        " status subscribed -> archived",
        "added cleo@coachmail.io (subscribed; Cleo Silva; tags lead)",
    ]


def test_nothing_changed_says_nothing_and_a_vanished_member_is_removed() -> None:
    same = snapshot([member("ana@coachmail.io")])
    assert member_changes(same, dict(same)) == []
    assert member_changes(same, {}) == ["removed ana@coachmail.io"]
