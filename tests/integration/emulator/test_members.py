"""Member upserts and Mailchimp's surprising member behaviours."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from mcsync.emulator.testing import EmulatorHandle

from .conftest import PLAIN, md5, problem, put

M = f"/lists/{PLAIN}/members"


def get(api: httpx.Client, email: str) -> httpx.Response:
    return api.get(f"{M}/{md5(email)}")


def test_put_creates_then_updates(api: httpx.Client) -> None:
    r = put(api, "Ann@Gmail.com", merge_fields={"FNAME": "Ann"})
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == md5("ann@gmail.com") and body["email_address"] == "Ann@Gmail.com"
    assert body["status"] == "subscribed" and body["source"] == "API - Generic"
    assert body["merge_fields"] == {"FNAME": "Ann", "LNAME": "", "PHONE": "", "ADDRESS": ""}
    r = put(api, "Ann@Gmail.com", merge_fields={"LNAME": "Lee"})
    assert r.json()["merge_fields"]["FNAME"] == "Ann"  # partial: other fields kept
    assert r.json()["merge_fields"]["LNAME"] == "Lee"
    assert r.json()["full_name"] == "Ann Lee"


def test_path_accepts_the_email_itself(api: httpx.Client) -> None:
    put(api, "ann@gmail.com")
    assert api.get(f"{M}/ann@gmail.com").json()["id"] == md5("ann@gmail.com")
    assert api.get(f"{M}/ANN%40gmail.com").status_code == 200


def test_hash_must_be_md5_of_lowercased_email(api: httpx.Client) -> None:
    email = "Mixed@Gmail.com"
    wrong = hashlib.md5(email.encode()).hexdigest()  # not lower-cased
    r = api.put(f"{M}/{wrong}", json={"email_address": email, "status_if_new": "subscribed"})
    assert r.status_code == 200 and r.json()["id"] == md5(email)  # stored under the right hash
    assert problem(api.get(f"{M}/{wrong}"))["status"] == 404
    # the same wrong hash again: not found, but the address exists -> Member Exists
    r = api.put(f"{M}/{wrong}", json={"email_address": email, "status_if_new": "subscribed"})
    assert r.status_code == 400 and problem(r)["title"] == "Member Exists"


def test_put_needs_a_status(api: httpx.Client) -> None:
    r = api.put(f"{M}/{md5('x@gmail.com')}", json={"email_address": "x@gmail.com"})
    assert r.status_code == 400 and problem(r)["title"] == "Invalid Resource"
    assert r.json()["errors"][0]["field"] == "status"


def test_tags_on_put_and_patch_ignored_for_existing(api: httpx.Client) -> None:
    r = put(api, "t@gmail.com", tags=["first"])
    assert [t["name"] for t in r.json()["tags"]] == ["first"]  # applied on create
    put(api, "t@gmail.com", tags=["second"])
    api.patch(f"{M}/{md5('t@gmail.com')}", json={"tags": ["third"]})
    assert [t["name"] for t in get(api, "t@gmail.com").json()["tags"]] == ["first"]


def test_status_if_new_ignored_for_existing(api: httpx.Client) -> None:
    put(api, "s@gmail.com", status_if_new="pending")
    r = put(api, "s@gmail.com", status_if_new="subscribed")
    assert r.json()["status"] == "pending"
    assert put(api, "s@gmail.com", status="subscribed").json()["status"] == "subscribed"


def test_archived_member_stays_archived_without_status(api: httpx.Client) -> None:
    put(api, "a@gmail.com", merge_fields={"FNAME": "Old"})
    assert api.delete(f"{M}/{md5('a@gmail.com')}").status_code == 204
    assert get(api, "a@gmail.com").json()["status"] == "archived"
    r = put(api, "a@gmail.com", status_if_new="subscribed", merge_fields={"FNAME": "New"})
    assert r.status_code == 200
    assert r.json()["status"] == "archived"
    assert r.json()["merge_fields"]["FNAME"] == "Old"  # our strict choice: nothing applied
    r = api.patch(f"{M}/{md5('a@gmail.com')}", json={"merge_fields": {"FNAME": "New"}})
    assert r.json()["status"] == "archived" and r.json()["merge_fields"]["FNAME"] == "Old"


def test_explicit_status_unarchives(api: httpx.Client) -> None:
    put(api, "a@gmail.com", status="pending")
    api.delete(f"{M}/{md5('a@gmail.com')}")
    r = put(api, "a@gmail.com", status="subscribed", merge_fields={"FNAME": "Back"})
    assert r.json()["status"] == "subscribed" and r.json()["merge_fields"]["FNAME"] == "Back"


@pytest.mark.parametrize("status", ["unsubscribed", "cleaned"])
def test_subscribing_a_compliance_state_member_is_refused(
    emu: EmulatorHandle, api: httpx.Client, status: str
) -> None:
    # Compliance states: the person's own unsubscribe, or a bounce (an API unsubscribe is not
    # one; see test_fidelity.py).
    put(api, "c@gmail.com", status="cleaned" if status == "cleaned" else "subscribed")
    if status == "unsubscribed":
        emu.admin.unsubscribe(PLAIN, "c@gmail.com")
    r = put(api, "c@gmail.com", status="subscribed")
    assert r.status_code == 400
    body = problem(r)
    assert body["title"] == "Member In Compliance State"
    assert body["detail"].startswith("c@gmail.com is in a compliance state")
    r = api.patch(f"{M}/{md5('c@gmail.com')}", json={"status": "subscribed"})
    assert problem(r)["title"] == "Member In Compliance State"
    # pending (re-confirmation) is allowed; status_if_new never trips it
    assert put(api, "c@gmail.com", status_if_new="subscribed").json()["status"] == status
    assert put(api, "c@gmail.com", status="pending").json()["status"] == "pending"


def test_compliance_survives_archive(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "c@gmail.com")
    emu.admin.unsubscribe(PLAIN, "c@gmail.com")
    api.delete(f"{M}/{md5('c@gmail.com')}")
    assert problem(put(api, "c@gmail.com", status="subscribed"))["title"] == (
        "Member In Compliance State")


def test_email_change_by_put_on_old_hash(api: httpx.Client) -> None:
    old = put(api, "old@gmail.com", merge_fields={"FNAME": "O"}).json()
    r = api.put(f"{M}/{md5('old@gmail.com')}",
                json={"email_address": "new@gmail.com", "status_if_new": "subscribed"})
    assert r.status_code == 200
    assert r.json()["id"] == md5("new@gmail.com") and r.json()["email_address"] == "new@gmail.com"
    assert r.json()["contact_id"] == old["contact_id"] and r.json()["merge_fields"]["FNAME"] == "O"
    assert get(api, "old@gmail.com").status_code == 404
    assert get(api, "new@gmail.com").status_code == 200


def test_email_change_by_patch(api: httpx.Client) -> None:
    put(api, "old@gmail.com")
    r = api.patch(f"{M}/{md5('old@gmail.com')}", json={"email_address": "new@gmail.com"})
    assert r.status_code == 200 and r.json()["id"] == md5("new@gmail.com")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("setup,label", [
    ("subscribed", "Subscribed"), ("unsubscribed", "Unsubscribed"), ("archived", "Archived")])
def test_email_change_to_an_existing_address(api: httpx.Client, method: str, setup: str,
                                             label: str) -> None:
    put(api, "old@gmail.com")
    put(api, "taken@gmail.com", status="unsubscribed" if setup == "unsubscribed" else "subscribed")
    if setup == "archived":
        api.delete(f"{M}/{md5('taken@gmail.com')}")
    r = api.request(method, f"{M}/{md5('old@gmail.com')}",
                    json={"email_address": "taken@gmail.com", "status_if_new": "subscribed"})
    assert r.status_code == 400
    body = problem(r)
    assert body["title"] == "Invalid Resource"
    assert body["errors"] == [{"field": "email address", "message":
                               f'"taken@gmail.com" is already in this list with a status of '
                               f'"{label}".'}]
    assert get(api, "old@gmail.com").status_code == 200  # nothing changed


def test_missing_old_hash_and_existing_new_email_is_member_exists(api: httpx.Client) -> None:
    put(api, "exists@gmail.com")
    r = api.put(f"{M}/{md5('gone@gmail.com')}",
                json={"email_address": "exists@gmail.com", "status_if_new": "subscribed"})
    body = problem(r)
    assert body["title"] == "Member Exists"
    assert body["detail"] == ("exists@gmail.com is already a list member. Use PUT to insert or "
                              "update list members.")
    # and a PATCH on a missing hash is simply 404
    assert api.patch(f"{M}/{md5('gone@gmail.com')}", json={}).status_code == 404


def test_missing_old_hash_creates_under_new_email(api: httpx.Client) -> None:
    r = api.put(f"{M}/{md5('gone@gmail.com')}",
                json={"email_address": "fresh@gmail.com", "status_if_new": "subscribed"})
    assert r.status_code == 200 and r.json()["id"] == md5("fresh@gmail.com")


def test_delete_permanent_forgets_forever(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "f@gmail.com")
    r = api.post(f"{M}/{md5('f@gmail.com')}/actions/delete-permanent")
    assert r.status_code == 204 and r.content == b""
    assert problem(get(api, "f@gmail.com"))["status"] == 404
    for r in (put(api, "f@gmail.com"),
              api.post(M, json={"email_address": "f@gmail.com", "status": "subscribed"})):
        body = problem(r)
        assert body["title"] == "Forgotten Email Not Subscribed"
        assert body["detail"].startswith("f@gmail.com was permanently deleted")
    batch = api.post(f"/lists/{PLAIN}", json={"members": [
        {"email_address": "f@gmail.com", "status": "subscribed"}]}).json()
    assert "permanently deleted" in batch["errors"][0]["error"]
    assert emu.admin.members(PLAIN) == []
    assert problem(api.post(f"{M}/{md5('nobody@gmail.com')}/actions/delete-permanent"))[
        "status"] == 404


@pytest.mark.parametrize("email,fake", [
    ("test@gmail.com", True), ("someone@example.com", True), ("asdf@yahoo.com", True),
    ("a@b.test", True), ("not-an-email", False), ("x@nodot", False), ("a b@gmail.com", False),
])
def test_fake_or_invalid_addresses(api: httpx.Client, email: str, fake: bool) -> None:
    r = api.put(f"{M}/{md5(email)}", json={"email_address": email, "status_if_new": "subscribed"})
    body = problem(r)
    assert body["title"] == "Invalid Resource"
    if fake:
        assert body["detail"] == (
            f"{email} looks fake or invalid, please enter a real email address.")
    else:
        assert body["detail"] == "Please provide a valid email address."


def test_post_member_creates_only(api: httpx.Client) -> None:
    body = {"email_address": "p@gmail.com", "status": "subscribed", "tags": ["VIP"]}
    r = api.post(M, json=body)
    assert r.status_code == 200 and [t["name"] for t in r.json()["tags"]] == ["VIP"]
    assert problem(api.post(M, json=body))["title"] == "Member Exists"
    r = api.post(M, json={"email_address": "q@gmail.com", "status_if_new": "subscribed"})
    assert problem(r)["title"] == "Invalid Resource"  # POST needs `status`


def test_list_members_paging_status_and_archived(api: httpx.Client) -> None:
    for i in range(15):
        put(api, f"user{i}@gmail.com")
    api.delete(f"{M}/{md5('user0@gmail.com')}")
    page = api.get(M).json()
    assert len(page["members"]) == 10 and page["total_items"] == 14  # archived left out
    page = api.get(M, params={"offset": 10, "count": 10}).json()
    assert len(page["members"]) == 4
    archived = api.get(M, params={"status": "archived"}).json()
    assert [m["email_address"] for m in archived["members"]] == ["user0@gmail.com"]
    assert len(api.get(M, params={"count": 1001}).json()["members"]) == 14  # served, not refused
    assert api.get(M, params={"count": 0}).json()["total_items"] == 14


def test_list_members_fields_projection(api: httpx.Client) -> None:
    put(api, "a1@gmail.com", merge_fields={"FNAME": "A"})
    r = api.get(M, params={"fields": "members.email_address,members.merge_fields.FNAME,"
                                     "total_items"})
    assert r.json() == {"members": [{"email_address": "a1@gmail.com",
                                     "merge_fields": {"FNAME": "A"}}], "total_items": 1}
    r = api.get(M, params={"exclude_fields": "members._links,_links,members.stats"})
    assert "stats" not in r.json()["members"][0] and "_links" not in r.json()
    assert problem(api.get(M, params={"fields": "m,e,m,b,e,r,s"}))["status"] == 422
    r = api.get(f"{M}/{md5('a1@gmail.com')}", params={"fields": "id,status"})
    assert r.json() == {"id": md5("a1@gmail.com"), "status": "subscribed"}


def test_list_members_since_last_changed(api: httpx.Client) -> None:
    put(api, "a1@gmail.com")
    r = api.get(M, params={"since_last_changed": "2999-01-01T00:00:00+00:00"})
    assert r.json()["total_items"] == 0
    r = api.get(M, params={"since_last_changed": "2000-01-01T00:00:00Z"})
    assert r.json()["total_items"] == 1


def test_status_filters_follow_every_change_of_status(api: httpx.Client) -> None:
    """A status filter is answered from the audience's index of members by status (not a scan
    of the audience): archives, restores, unsubscribes, renames and permanent deletes keep it
    exact, and paging counts from it."""
    for i in range(6):
        put(api, f"s{i}@gmail.com")
    api.delete(f"{M}/{md5('s0@gmail.com')}")
    api.delete(f"{M}/{md5('s1@gmail.com')}")
    put(api, "s1@gmail.com", status="subscribed")  # restored
    put(api, "s2@gmail.com", status="unsubscribed")
    api.delete(f"{M}/{md5('s3@gmail.com')}")
    r = api.patch(f"{M}/{md5('s3@gmail.com')}", json={"email_address": "t3@gmail.com"})
    assert r.status_code in (200, 400)  # whatever the rule, the index follows the member
    api.post(f"{M}/{md5('s4@gmail.com')}/actions/delete-permanent")

    def listed(status: str | None, **params: object) -> tuple[set[str], int]:
        query = {"status": status, **params} if status else dict(params)
        body = api.get(M, params=query).json()
        return {m["email_address"] for m in body["members"]}, body["total_items"]

    by_member: dict[str, set[str]] = {}
    for email in ("s0", "s1", "s2", "s3", "t3", "s4", "s5"):
        r = get(api, f"{email}@gmail.com")
        if r.status_code == 200:
            by_member.setdefault(r.json()["status"], set()).add(f"{email}@gmail.com")
    for status in ("subscribed", "unsubscribed", "archived", "cleaned", "pending"):
        assert listed(status) == (by_member.get(status, set()), len(by_member.get(status, ())))
    live = set().union(*(v for k, v in by_member.items() if k != "archived"))
    assert listed(None) == (live, len(live))
    first, total = listed("subscribed", count=1)
    second, _ = listed("subscribed", count=1, offset=1)
    assert (
        total == 2 and len(first) == len(second) == 1 and first | second == by_member["subscribed"]
    )
