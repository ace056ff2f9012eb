"""Batch subscribe: POST /lists/{id}."""

from __future__ import annotations

import time

import httpx

from mcsync.emulator.testing import EmulatorHandle

from .conftest import PLAIN, STRICT, md5, problem, put

B = f"/lists/{PLAIN}"


def member(email: str, **extra: object) -> dict[str, object]:
    return {"email_address": email, "status_if_new": "subscribed", **extra}


def test_creates_and_reports_totals(api: httpx.Client) -> None:
    r = api.post(B, json={"members": [member("a@gmail.com"), member("b@gmail.com")]})
    body = r.json()
    assert body["total_created"] == 2 and body["total_updated"] == 0 and body["error_count"] == 0
    assert {m["email_address"] for m in body["new_members"]} == {"a@gmail.com", "b@gmail.com"}


def test_more_than_500_is_rejected(api: httpx.Client) -> None:
    members = [member(f"u{i}@gmail.com") for i in range(501)]
    assert problem(api.post(B, json={"members": members}))["status"] == 400
    body = api.post(B, json={"members": members[:500]}).json()
    assert body["total_created"] == 500


def test_existing_without_update_existing_is_contact_exists(api: httpx.Client) -> None:
    put(api, "a@gmail.com")
    body = api.post(B, json={"members": [member("a@gmail.com")]}).json()
    assert body["error_count"] == 1 and body["total_updated"] == 0
    (err,) = body["errors"]
    assert err["error_code"] == "ERROR_CONTACT_EXISTS"
    assert err["error"] == ("a@gmail.com is already a list member, do you want to update? please "
                            "provide update_existing:true in the request body")


def test_update_existing_ignores_status_if_new(api: httpx.Client) -> None:
    put(api, "a@gmail.com", status="unsubscribed")
    body = api.post(B, json={"update_existing": True, "members": [
        member("a@gmail.com", merge_fields={"FNAME": "A"})]}).json()
    assert body["total_updated"] == 1
    got = api.get(f"{B}/members/{md5('a@gmail.com')}").json()
    assert got["status"] == "unsubscribed" and got["merge_fields"]["FNAME"] == "A"


def test_explicit_status_on_compliance_member_is_a_member_error(
    emu: EmulatorHandle, api: httpx.Client
) -> None:
    put(api, "a@gmail.com")
    emu.admin.unsubscribe(PLAIN, "a@gmail.com")  # the person's own unsubscribe
    body = api.post(B, json={"update_existing": True, "members": [
        {"email_address": "a@gmail.com", "status": "subscribed"}]}).json()
    assert "compliance state" in body["errors"][0]["error"]


def test_tags_are_added_to_existing_and_replaced_with_sync_tags(emu: EmulatorHandle,
                                                                api: httpx.Client) -> None:
    put(api, "a@gmail.com")
    emu.admin.tag(PLAIN, "a@gmail.com", "ByHand")
    api.post(B, json={"update_existing": True, "members": [member("a@gmail.com", tags=["Sync"])]})
    tags = [t["name"] for t in api.get(f"{B}/members/{md5('a@gmail.com')}").json()["tags"]]
    assert sorted(tags) == ["ByHand", "Sync"]
    api.post(B, json={"update_existing": True, "sync_tags": True,
                      "members": [member("a@gmail.com", tags=["Only"])]})
    tags = [t["name"] for t in api.get(f"{B}/members/{md5('a@gmail.com')}").json()["tags"]]
    assert tags == ["Only"]


def test_per_member_errors(api: httpx.Client) -> None:
    body = api.post(f"/lists/{STRICT}", json={"members": [
        member("ok@gmail.com", merge_fields={"LNAME": "Ok"}),
        member("nolname@gmail.com"),
        member("badphone@gmail.com", merge_fields={"LNAME": "X", "PHONE": "12"}),
        member("test@gmail.com", merge_fields={"LNAME": "X"}),
        member("nope", merge_fields={"LNAME": "X"}),
    ]}).json()
    assert body["total_created"] == 1 and body["error_count"] == 4
    errs = {e["email_address"]: e for e in body["errors"]}
    assert errs["nolname@gmail.com"]["field"] == "LNAME"
    assert errs["nolname@gmail.com"]["field_message"] == "Please enter a value"
    assert errs["nolname@gmail.com"]["error"] == "Your merge fields were invalid."
    assert errs["badphone@gmail.com"]["field"] == "PHONE"
    assert errs["test@gmail.com"]["error"] == (
        "test@gmail.com looks fake or invalid, please enter a real email address.")
    assert errs["nope"]["error"] == "Please provide a valid email address."
    assert all(e["error_code"] == "ERROR_GENERIC" for e in body["errors"])


def test_duplicates_in_one_request(api: httpx.Client) -> None:
    dup = [member("d@gmail.com"), member("D@gmail.com")]
    body = api.post(B, json={"members": dup}).json()
    assert body["total_created"] == 1 and body["error_count"] == 1
    body = api.post(f"/lists/{STRICT}", params={"skip_duplicate_check": "true"}, json={
        "members": [member("e@gmail.com", merge_fields={"LNAME": "E"})] * 2}).json()
    assert body["total_created"] == 1 and body["error_count"] == 0


def test_archived_member_needs_status_in_batch(api: httpx.Client) -> None:
    put(api, "a@gmail.com")
    api.delete(f"{B}/members/{md5('a@gmail.com')}")
    api.post(B, json={"update_existing": True, "members": [member("a@gmail.com")]})
    assert api.get(f"{B}/members/{md5('a@gmail.com')}").json()["status"] == "archived"
    api.post(B, json={"update_existing": True, "members": [
        {"email_address": "a@gmail.com", "status": "subscribed"}]})
    assert api.get(f"{B}/members/{md5('a@gmail.com')}").json()["status"] == "subscribed"


def test_batch_of_500_is_fast(api: httpx.Client) -> None:
    members = [member(f"fast{i}@gmail.com", merge_fields={"FNAME": f"F{i}"}) for i in range(500)]
    start = time.perf_counter()
    assert api.post(B, json={"members": members}).json()["total_created"] == 500
    assert time.perf_counter() - start < 2.0


def test_fields_project_the_answer_through_its_member_lists(api: httpx.Client) -> None:
    put(api, "old@gmail.com")
    fields = "new_members.id,new_members.status,updated_members.email_address,errors,error_count"
    body = api.post(
        B,
        params={"fields": fields},
        json={
            "update_existing": True,
            "members": [member("new@gmail.com"), member("old@gmail.com"), member("nope")],
        },
    ).json()
    assert body == {
        "new_members": [{"id": md5("new@gmail.com"), "status": "subscribed"}],
        "updated_members": [{"email_address": "old@gmail.com"}],
        "errors": body["errors"],
        "error_count": 1,
    }
    assert body["errors"][0]["email_address"] == "nope"
    trimmed = api.post(
        B, params={"exclude_fields": "new_members,updated_members"}, json={"members": []}
    ).json()
    assert "new_members" not in trimmed and trimmed["total_created"] == 0
    # The members were written all the same; and an unknown field is refused, as elsewhere.
    assert api.get(f"{B}/members/{md5('new@gmail.com')}").status_code == 200
    bad = api.post(B, params={"fields": "new_members.nonsense"}, json={"members": []})
    assert bad.status_code == 422
