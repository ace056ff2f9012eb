"""Behaviours recorded from real Mailchimp traffic (issue 13's table), one test group per row.

The evidence for each rule is cited next to it in src/mcsync/emulator/ (rules.py, refusals.py,
batch.py, api.py).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mcsync.emulator.testing import EmulatorHandle

from .conftest import PLAIN, md5, problem, put

M = f"/lists/{PLAIN}/members"
B = f"/lists/{PLAIN}"
CANNOT_ARCHIVE = (
    "This list member cannot be removed. Can not archive a contact that is bounced, pending or "
    "archived"
)
SIGNUPS_REFUSED = (
    "has signed up to a lot of lists very recently; we're not allowing more signups for now"
)


def state_of(emu: EmulatorHandle, email: str) -> dict[str, Any]:
    found = [m for m in emu.admin.members(PLAIN) if m["email_address"] == email]
    assert len(found) == 1
    return found[0]


# -- DELETE of a pending, cleaned or archived member: 405 ------------------------------------


@pytest.mark.parametrize("status", ["pending", "cleaned"])
def test_archiving_a_pending_or_cleaned_member_is_405(
    emu: EmulatorHandle, api: httpx.Client, status: str
) -> None:
    put(api, "p@gmail.com", status=status)
    r = api.delete(f"{M}/{md5('p@gmail.com')}")
    body = problem(r)
    assert (r.status_code, body["title"], body["detail"]) == (
        405,
        "Method Not Allowed",
        CANNOT_ARCHIVE,
    )
    assert "type" in body and "errors" not in body
    assert r.headers["allow"] == "GET, PUT"
    assert state_of(emu, "p@gmail.com")["status"] == status  # left as it was


def test_archiving_an_archived_member_is_405_not_404(
    emu: EmulatorHandle, api: httpx.Client
) -> None:
    put(api, "a@gmail.com")
    assert api.delete(f"{M}/{md5('a@gmail.com')}").status_code == 204
    r = api.delete(f"{M}/{md5('a@gmail.com')}")
    assert r.status_code == 405 and problem(r)["detail"] == CANNOT_ARCHIVE
    assert state_of(emu, "a@gmail.com")["status"] == "archived"


@pytest.mark.parametrize("status", ["subscribed", "unsubscribed", "transactional"])
def test_other_statuses_archive(emu: EmulatorHandle, api: httpx.Client, status: str) -> None:
    put(api, "s@gmail.com", status=status)
    r = api.delete(f"{M}/{md5('s@gmail.com')}")
    assert r.status_code == 204 and r.content == b""
    assert state_of(emu, "s@gmail.com")["status"] == "archived"
    assert problem(api.delete(f"{M}/{md5('nobody@gmail.com')}"))["status"] == 404


# -- batch with one schema-invalid member: the whole request fails ---------------------------


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        ({"status": ""}, "members.item:1.status", "Data presented is not one of the accepted"),
        ({"status_if_new": "active"}, "members.item:1.status_if_new", "Data presented is not one"),
        ({"merge_fields": {"FNAME": None}}, "members.item:1.merge_fields.FNAME", "Data did not"),
        ({"merge_fields": {"FNAME": True}}, "members.item:1.merge_fields.FNAME", "Data did not"),
        ({"tags": ["ok", 7]}, "members.item:1.tags.item:1", "Schema describes string"),
        ({"email_address": 7}, "members.item:1.email_address", "Schema describes string"),
        ({"vip": "yes"}, "members.item:1.vip", "Schema describes boolean, string found"),
        ({"status_if_new": None}, "members.item:1.status", "Schema describes enum, NULL"),
    ],
)
def test_one_schema_invalid_member_fails_the_whole_batch(
    emu: EmulatorHandle, api: httpx.Client, bad: dict[str, Any], field: str, message: str
) -> None:
    put(api, "old@gmail.com", merge_fields={"FNAME": "Old"})
    members = [
        {"email_address": "good@gmail.com", "status_if_new": "subscribed"},
        {"email_address": "bad@gmail.com", "status_if_new": "subscribed", **bad},
        {"email_address": "old@gmail.com", "status_if_new": "subscribed",
         "merge_fields": {"FNAME": "New"}},
    ]
    r = api.post(B, json={"update_existing": True, "members": members})
    body = problem(r)
    assert (r.status_code, body["title"]) == (400, "Invalid Resource")
    assert "errors' array" in body["detail"]
    assert [e["field"] for e in body["errors"]] == [field]
    assert body["errors"][0]["message"].startswith(message)
    # nothing was applied, not even to the good members
    assert [m["email_address"] for m in emu.admin.members(PLAIN)] == ["old@gmail.com"]
    assert state_of(emu, "old@gmail.com")["merge_fields"]["FNAME"] == "Old"


def test_data_problems_stay_per_member_errors(emu: EmulatorHandle, api: httpx.Client) -> None:
    r = api.post(B, json={"members": [
        {"email_address": "test@gmail.com", "status_if_new": "subscribed"},  # looks fake
        {"email_address": None, "status_if_new": "subscribed"},  # null is allowed: not blank
        {"email_address": "fine@gmail.com", "status_if_new": "subscribed"},
    ]})
    body = r.json()
    assert r.status_code == 200 and body["error_count"] == 2 and body["total_created"] == 1
    assert body["errors"][1]["field"] == "email_address"
    assert [m["email_address"] for m in emu.admin.members(PLAIN)] == ["fine@gmail.com"]


# -- an API unsubscribe is not a compliance state ---------------------------------------------


def test_subscribing_after_an_api_unsubscribe_is_200(
    emu: EmulatorHandle, api: httpx.Client
) -> None:
    put(api, "u@gmail.com")
    r = put(api, "u@gmail.com", status="unsubscribed")
    assert r.json()["unsubscribe_reason"] == "N/A (Unsubscribed by admin)"
    r = put(api, "u@gmail.com", status="subscribed")
    assert r.status_code == 200 and r.json()["status"] == "subscribed"
    assert "unsubscribe_reason" not in r.json()  # only unsubscribed members carry one
    assert state_of(emu, "u@gmail.com")["status"] == "subscribed"
    # the same by PATCH and by batch
    put(api, "u@gmail.com", status="unsubscribed")
    assert api.patch(f"{M}/{md5('u@gmail.com')}", json={"status": "subscribed"}).status_code == 200
    put(api, "u@gmail.com", status="unsubscribed")
    body = api.post(B, json={"update_existing": True, "members": [
        {"email_address": "u@gmail.com", "status": "subscribed"}]}).json()
    assert body["errors"] == [] and body["updated_members"][0]["status"] == "subscribed"


def test_the_persons_own_unsubscribe_is_a_compliance_state(
    emu: EmulatorHandle, api: httpx.Client
) -> None:
    put(api, "own@gmail.com")
    emu.admin.unsubscribe(PLAIN, "own@gmail.com")
    r = put(api, "own@gmail.com", status="subscribed")
    body = problem(r)
    assert (r.status_code, body["title"]) == (400, "Member In Compliance State")
    assert "type" not in body and "errors" not in body
    assert state_of(emu, "own@gmail.com")["status"] == "unsubscribed"


# -- PUT on an existing member needs neither a status nor the address --------------------------


def test_put_on_an_existing_member_without_status_or_address(
    emu: EmulatorHandle, api: httpx.Client
) -> None:
    put(api, "e@gmail.com", merge_fields={"FNAME": "Ann"})
    path = f"{M}/{md5('e@gmail.com')}"
    r = api.put(path, json={"merge_fields": {"FNAME": "Bea"}})
    assert r.status_code == 200 and r.json()["merge_fields"]["FNAME"] == "Bea"
    r = api.put(path, json={"email_address": "e@gmail.com", "merge_fields": {"LNAME": "Lee"}})
    assert r.status_code == 200
    member = state_of(emu, "e@gmail.com")
    assert member["merge_fields"]["FNAME"] == "Bea" and member["merge_fields"]["LNAME"] == "Lee"
    assert member["status"] == "subscribed"
    # creating still needs both
    r = api.put(f"{M}/{md5('new@gmail.com')}", json={"email_address": "new@gmail.com"})
    assert problem(r)["errors"][0]["field"] == "status"
    r = api.put(f"{M}/{md5('new@gmail.com')}", json={"status_if_new": "subscribed"})
    assert problem(r)["title"] == "Invalid Resource"
    assert len(emu.admin.members(PLAIN)) == 1


# -- POST /members for an archived address unarchives it -------------------------------------


def test_post_unarchives_an_archived_address(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "z@gmail.com", merge_fields={"FNAME": "Old", "LNAME": "Keep"}, tags=["Kept"])
    before = state_of(emu, "z@gmail.com")
    api.delete(f"{M}/{md5('z@gmail.com')}")
    r = api.post(M, json={"email_address": "z@gmail.com", "status": "subscribed",
                          "merge_fields": {"FNAME": "New"}})
    assert r.status_code == 200 and r.json()["status"] == "subscribed"
    after = state_of(emu, "z@gmail.com")
    assert after["status"] == "subscribed"
    assert after["merge_fields"]["FNAME"] == "New" and after["merge_fields"]["LNAME"] == "Keep"
    assert after["contact_id"] == before["contact_id"]
    assert [t["name"] for t in after["tags"]] == ["Kept"]
    # a live member is still "Member Exists" (no `type`)
    body = problem(api.post(M, json={"email_address": "z@gmail.com", "status": "subscribed"}))
    assert body["title"] == "Member Exists"


def test_post_does_not_unarchive_out_of_a_compliance_state(
    emu: EmulatorHandle, api: httpx.Client
) -> None:
    put(api, "h@gmail.com")
    emu.admin.unsubscribe(PLAIN, "h@gmail.com")
    api.delete(f"{M}/{md5('h@gmail.com')}")
    r = api.post(M, json={"email_address": "h@gmail.com", "status": "subscribed"})
    assert problem(r)["title"] == "Member In Compliance State"
    assert state_of(emu, "h@gmail.com")["status"] == "archived"


# -- count above 1000 is capped ----------------------------------------------------------------


def test_count_above_1000_is_capped(api: httpx.Client) -> None:
    for chunk in range(3):
        members = [{"email_address": f"c{chunk}-{i}@gmail.com", "status_if_new": "subscribed"}
                   for i in range(400)]
        assert api.post(B, json={"members": members}).json()["total_created"] == 400
    r = api.get(M, params={"count": 5000, "fields": "members.id,total_items"})
    assert r.status_code == 200
    assert len(r.json()["members"]) == 1000 and r.json()["total_items"] == 1200
    assert problem(api.get(M, params={"count": -1}))["status"] == 400


# -- `type` is missing on some error bodies ----------------------------------------------------


def test_which_errors_lack_type(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "x@gmail.com")
    exists = api.post(M, json={"email_address": "x@gmail.com", "status": "subscribed"}).json()
    api.post(f"{M}/{md5('x@gmail.com')}/actions/delete-permanent")
    forgotten = api.post(M, json={"email_address": "x@gmail.com", "status": "subscribed"}).json()
    put(api, "y@gmail.com")
    emu.admin.unsubscribe(PLAIN, "y@gmail.com")
    held = put(api, "y@gmail.com", status="subscribed").json()
    for body, title in ((exists, "Member Exists"), (forgotten, "Forgotten Email Not Subscribed"),
                        (held, "Member In Compliance State")):
        assert body["title"] == title
        assert set(body) == {"title", "status", "detail", "instance"}
    # others keep it
    assert "type" in api.get(f"{M}/{md5('nobody@gmail.com')}").json()
    assert "type" in api.post(M, json={"email_address": "bad"}).json()


# -- "signed up to a lot of lists very recently" ------------------------------------------------


def test_refused_signups(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "live@gmail.com")
    put(api, "gone@gmail.com")
    api.delete(f"{M}/{md5('gone@gmail.com')}")
    for email in ("Spree@gmail.com", "live@gmail.com", "gone@gmail.com"):
        emu.admin.limit_signups(email)

    r = api.post(M, json={"email_address": "spree@gmail.com", "status": "pending"})
    body = problem(r)
    assert (r.status_code, body["title"]) == (400, "Invalid Resource")
    assert body["detail"] == f"spree@gmail.com {SIGNUPS_REFUSED}"
    assert "type" in body and "errors" not in body
    assert problem(put(api, "spree@gmail.com"))["detail"].endswith(SIGNUPS_REFUSED)
    # unarchiving is a signup too; an update of a live member is not
    assert problem(put(api, "gone@gmail.com", status="subscribed"))["detail"].endswith(
        SIGNUPS_REFUSED)
    assert put(api, "live@gmail.com", merge_fields={"FNAME": "Still"}).status_code == 200
    # in a batch it is that member's error; the others go through
    body = api.post(B, json={"members": [
        {"email_address": "spree@gmail.com", "status_if_new": "subscribed"},
        {"email_address": "other@gmail.com", "status_if_new": "subscribed"}]}).json()
    assert body["total_created"] == 1 and body["error_count"] == 1
    assert body["errors"][0]["email_address"] == "spree@gmail.com"
    assert body["errors"][0]["error"].endswith(SIGNUPS_REFUSED)
    statuses = {m["email_address"]: m["status"] for m in emu.admin.members(PLAIN)}
    assert statuses == {"live@gmail.com": "subscribed", "gone@gmail.com": "archived",
                        "other@gmail.com": "subscribed"}
    # temporary: once lifted, the same request succeeds
    emu.admin.limit_signups("spree@gmail.com", limited=False)
    assert api.post(M, json={"email_address": "spree@gmail.com", "status": "pending"}).json()[
        "status"] == "pending"


# -- batch status_if_new on an ARCHIVED member: a switch, both settings ------------------------


def _archived(emu: EmulatorHandle, api: httpx.Client) -> dict[str, Any]:
    put(api, "ar@gmail.com", merge_fields={"FNAME": "Old"}, tags=["Kept"])
    api.delete(f"{M}/{md5('ar@gmail.com')}")
    return state_of(emu, "ar@gmail.com")


def _batch_archived(api: httpx.Client) -> dict[str, Any]:
    r = api.post(B, json={"update_existing": True, "members": [
        {"email_address": "ar@gmail.com", "status_if_new": "subscribed",
         "merge_fields": {"FNAME": "New"}, "tags": ["Added"]}]})
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    assert body["errors"] == []
    return body


def test_batch_leaves_an_archived_member_archived_by_default(
    emu: EmulatorHandle, api: httpx.Client
) -> None:
    assert emu.admin.options() == {"batch_status_if_new_unarchives": False}
    before = _archived(emu, api)
    body = _batch_archived(api)
    # not updated, so not in `updated_members` (whose statuses never include "archived")
    assert body["updated_members"] == [] and body["total_updated"] == 0
    assert body["new_members"] == [] and body["error_count"] == 0
    after = state_of(emu, "ar@gmail.com")
    assert after["status"] == "archived" and after["merge_fields"] == before["merge_fields"]
    assert [t["name"] for t in after["tags"]] == ["Kept"]


def test_batch_unarchives_an_archived_member_when_switched(
    emu: EmulatorHandle, api: httpx.Client
) -> None:
    assert emu.admin.set_options(batch_status_if_new_unarchives=True) == {
        "batch_status_if_new_unarchives": True}
    before = _archived(emu, api)
    body = _batch_archived(api)
    assert body["total_updated"] == 1 and body["updated_members"][0]["status"] == "subscribed"
    after = state_of(emu, "ar@gmail.com")
    assert after["status"] == "subscribed" and after["merge_fields"]["FNAME"] == "New"
    assert after["contact_id"] == before["contact_id"]
    assert sorted(t["name"] for t in after["tags"]) == ["Added", "Kept"]
    # a compliance hold still wins
    put(api, "held@gmail.com")
    emu.admin.unsubscribe(PLAIN, "held@gmail.com")
    api.delete(f"{M}/{md5('held@gmail.com')}")
    body = api.post(B, json={"update_existing": True, "members": [
        {"email_address": "held@gmail.com", "status_if_new": "subscribed"}]}).json()
    assert "compliance state" in body["errors"][0]["error"]
    assert state_of(emu, "held@gmail.com")["status"] == "archived"
    # reset brings back the default
    emu.admin.reset()
    assert emu.admin.options() == {"batch_status_if_new_unarchives": False}


def test_options_refuse_unknown_names_and_non_booleans(emu: EmulatorHandle) -> None:
    for body in ({"no_such_option": True}, {"batch_status_if_new_unarchives": "yes"}):
        r = httpx.post(emu.url + "/_emulator/options", json=body)
        assert r.status_code == 400 and "error" in r.json()
    assert emu.admin.options() == {"batch_status_if_new_unarchives": False}
