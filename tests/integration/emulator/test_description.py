"""The emulator held to Mailchimp's published API description, operation by operation.

For each /3.0 operation mcsync uses (and the few others the emulator serves): a valid request is
accepted and its answer conforms to the description's response schema (described_schemas.py,
the project's own copy); each kind of invalid request (wrong type, value outside an enum,
missing required field) is refused as Mailchimp refuses it: 400 Invalid Resource, `errors[]`
naming the field, nothing applied. The departures are the ones docs/emulator.md lists.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mcsync.emulator.testing import EmulatorHandle

from .conftest import PLAIN, md5, problem, put
from .described_schemas import (
    BATCH,
    LIST,
    LISTS,
    MEMBER,
    MEMBERS,
    PING,
    PROBLEM,
    ROOT,
    TAGS,
    Schema,
    problems,
)

L = f"/lists/{PLAIN}"
M = f"{L}/members"


def answered(r: httpx.Response, schema: Schema) -> Any:
    assert r.status_code == 200, r.text
    body = r.json()
    assert problems(schema, body) == []
    return body


def refused(r: httpx.Response, field: str) -> dict[str, Any]:
    body = problem(r)
    assert problems(PROBLEM, body) == []
    assert (r.status_code, body["title"]) == (400, "Invalid Resource"), body
    assert field in [e["field"] for e in body["errors"]], body["errors"]
    return body


def states(emu: EmulatorHandle) -> list[dict[str, Any]]:
    return emu.admin.members(PLAIN)


# -- account and audiences -------------------------------------------------------------------


def test_ping_root_and_audiences(api: httpx.Client) -> None:
    answered(api.get("/ping"), PING)
    answered(api.get("/"), ROOT)
    answered(api.get("/lists", params={"count": 1000, "offset": 0}), LISTS)
    answered(api.get(L), LIST)
    refused(api.get("/lists", params={"count": "ten"}), "count")  # wrong type
    refused(api.get("/lists", params={"sort_dir": "UP"}), "sort_dir")  # outside the enum
    # a listed waiver: above the maximum Mailchimp serves 1000 rather than refusing
    answered(api.get("/lists", params={"count": 5000}), LISTS)


def test_member_lists(api: httpx.Client) -> None:
    put(api, "a@gmail.com", merge_fields={"FNAME": "Ann"})
    body = answered(api.get(M, params={"count": 1000, "offset": 0, "status": "subscribed"}),
                    MEMBERS)
    assert [m["email_address"] for m in body["members"]] == ["a@gmail.com"]
    fields = "members.id,members.email_address,members.status,total_items"
    answered(api.get(M, params={"fields": fields}), MEMBERS)
    refused(api.get(M, params={"status": "gone"}), "status")
    refused(api.get(M, params={"offset": "1.5"}), "offset")
    refused(api.get(M, params={"sort_field": "email"}), "sort_field")


# -- one member: PUT, GET, PATCH, POST, DELETE -------------------------------------------------


def test_put_accepts_what_mcsync_sends_and_answers_a_described_member(
    emu: EmulatorHandle, api: httpx.Client
) -> None:
    path = f"{M}/{md5('a@gmail.com')}"
    body = {"email_address": "a@gmail.com", "status_if_new": "subscribed",
            "merge_fields": {"FNAME": "Ann", "LNAME": "Lee", "PHONE": "+44 20 7946 0000"}}
    member = answered(api.put(path, json=body), MEMBER)
    assert member["status"] == "subscribed"
    # both statuses at once (mcsync's restore of a status it archived): the oneOf read as anyOf
    answered(api.put(path, json={**body, "status": "unsubscribed"}), MEMBER)
    answered(api.get(path), MEMBER)
    # a listed waiver: PUT on an existing member needs neither the address nor a status
    answered(api.put(path, json={"merge_fields": {"FNAME": "Bea"}}), MEMBER)
    assert states(emu)[0]["merge_fields"]["FNAME"] == "Bea"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vip": "yes"}, "vip"),
        ({"email_address": 7}, "email_address"),
        ({"merge_fields": ["Ann"]}, "merge_fields"),
        ({"merge_fields": {"FNAME": None}}, "merge_fields.FNAME"),
        ({"interests": {"abc": "yes"}}, "interests.abc"),
        ({"location": {"latitude": "north"}}, "location.latitude"),
        ({"timestamp_opt": "yesterday"}, "timestamp_opt"),
        ({"language": 3}, "language"),
        ({"status": "active"}, "status"),
        ({"status_if_new": "archived"}, "status_if_new"),
        ({"marketing_permissions": [{"enabled": "yes"}]}, "marketing_permissions.item:0.enabled"),
    ],
)
def test_put_refuses_what_the_description_forbids(
    emu: EmulatorHandle, api: httpx.Client, change: dict[str, Any], field: str
) -> None:
    base = {"email_address": "new@gmail.com", "status_if_new": "subscribed"}
    refused(api.put(f"{M}/{md5('new@gmail.com')}", json={**base, **change}), field)
    put(api, "old@gmail.com", merge_fields={"FNAME": "Old"})
    old = {"email_address": "old@gmail.com", "status_if_new": "subscribed"}
    refused(api.put(f"{M}/{md5('old@gmail.com')}", json={**old, **change}), field)
    assert [(m["email_address"], m["merge_fields"]["FNAME"]) for m in states(emu)] == [
        ("old@gmail.com", "Old")
    ]


def test_put_that_creates_needs_the_address_and_a_status(
    emu: EmulatorHandle, api: httpx.Client
) -> None:
    path = f"{M}/{md5('new@gmail.com')}"
    refused(api.put(path, json={"email_address": "new@gmail.com"}), "status")
    refused(api.put(path, json={"status_if_new": "subscribed"}), "email_address")
    refused(api.put(path, json={"email_address": "new@gmail.com", "status": None}), "status")
    assert states(emu) == []


def test_patch(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "a@gmail.com")
    path = f"{M}/{md5('a@gmail.com')}"
    answered(api.patch(path, json={"email_address": "b@gmail.com",
                                   "merge_fields": {"FNAME": "Bo"}}), MEMBER)
    path = f"{M}/{md5('b@gmail.com')}"
    refused(api.patch(path, json={"status": "transactional"}), "status")  # not PATCH's enum
    refused(api.patch(path, json={"email_address": ["x@gmail.com"]}), "email_address")
    refused(api.patch(path, json={"vip": 1}), "vip")
    assert [(m["email_address"], m["status"]) for m in states(emu)] == [
        ("b@gmail.com", "subscribed")
    ]


def test_post_member(emu: EmulatorHandle, api: httpx.Client) -> None:
    answered(api.post(M, json={"email_address": "a@gmail.com", "status": "pending",
                               "tags": ["New"]}), MEMBER)
    refused(api.post(M, json={"email_address": "b@gmail.com"}), "status")
    refused(api.post(M, json={"status": "subscribed"}), "email_address")
    refused(api.post(M, json={"email_address": "b@gmail.com", "status": "subscribed",
                              "tags": ["ok", 1]}), "tags.item:1")
    refused(api.post(M, json={"email_address": "b@gmail.com", "status": "archived"}), "status")
    assert [m["email_address"] for m in states(emu)] == ["a@gmail.com"]


def test_archive_and_delete_permanent(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "a@gmail.com")
    put(api, "b@gmail.com")
    r = api.delete(f"{M}/{md5('a@gmail.com')}")
    assert (r.status_code, r.content) == (204, b"")
    member = answered(api.get(f"{M}/{md5('a@gmail.com')}"), MEMBER)
    assert member["status"] == "archived"  # in the member's own enum
    r = api.post(f"{M}/{md5('b@gmail.com')}/actions/delete-permanent")
    assert (r.status_code, r.content) == (204, b"")
    # error answers conform too, `type` left out only where Mailchimp leaves it out
    r = api.get(f"{M}/{md5('b@gmail.com')}")
    assert r.status_code == 404 and problems(PROBLEM, r.json()) == []
    r = api.post(M, json={"email_address": "b@gmail.com", "status": "subscribed"})
    assert r.status_code == 400 and problems(PROBLEM, r.json()) == []
    assert "type" not in r.json()  # Forgotten Email Not Subscribed: a listed waiver


# -- tags ------------------------------------------------------------------------------------


def test_tags(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "a@gmail.com")
    path = f"{M}/{md5('a@gmail.com')}/tags"
    r = api.post(path, json={"tags": [{"name": "VIP", "status": "active"}], "is_syncing": True})
    assert (r.status_code, r.content) == (204, b"")
    body = answered(api.get(path, params={"count": 10, "offset": 0}), TAGS)
    assert [t["name"] for t in body["tags"]] == ["VIP"]  # date_added is a date-time
    refused(api.get(path, params={"count": "all"}), "count")
    for bad, field in [
        ({"tags": [{"name": "X", "status": "active"}], "is_syncing": "yes"}, "is_syncing"),
        ({"tags": [{"name": "X", "status": "on"}]}, "tags.item:0.status"),
        ({"tags": [{"status": "active"}]}, "tags.item:0.name"),
        ({"tags": [{"name": 5, "status": "active"}]}, "tags.item:0.name"),
        ({"tags": ["X"]}, "tags.item:0"),
        ({"is_syncing": True}, "tags"),
    ]:
        refused(api.post(path, json=bad), field)
    assert [t["name"] for t in states(emu)[0]["tags"]] == ["VIP"]


# -- batch subscribe -------------------------------------------------------------------------


def test_batch_accepts_what_mcsync_sends(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "old@gmail.com")
    members = [
        {"email_address": "new@gmail.com", "status_if_new": "subscribed",
         "merge_fields": {"FNAME": "New"}, "tags": ["T"]},
        {"email_address": "old@gmail.com", "status_if_new": "subscribed",
         "merge_fields": {"FNAME": "Old"}},
        {"email_address": "test@gmail.com", "status_if_new": "subscribed"},  # a data error
    ]
    body = answered(api.post(L, json={"members": members, "update_existing": True}), BATCH)
    assert (body["total_created"], body["total_updated"], body["error_count"]) == (1, 1, 1)
    fields = "new_members.email_address,updated_members.email_address,errors,error_count"
    answered(api.post(L, params={"fields": fields},
                      json={"members": members[:1], "update_existing": None}), BATCH)


def test_batch_never_lists_an_archived_member_as_updated(
    emu: EmulatorHandle, api: httpx.Client
) -> None:
    put(api, "ar@gmail.com")
    api.delete(f"{M}/{md5('ar@gmail.com')}")
    for unarchives in (False, True):
        emu.admin.set_options(batch_status_if_new_unarchives=unarchives)
        body = answered(api.post(L, json={"update_existing": True, "members": [
            {"email_address": "ar@gmail.com", "status_if_new": "subscribed"}]}), BATCH)
        assert all(m["status"] != "archived" for m in body["updated_members"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"update_existing": "yes"}, "update_existing"),
        ({"sync_tags": 1}, "sync_tags"),
        ({"members": {"email_address": "x@gmail.com"}}, "members"),
        ({"members": None}, "members"),
        ({"members": [{"email_address": "x@gmail.com"}]}, "members.item:0.status"),
        ({"members": [{"email_address": "x@gmail.com", "status": "gone"}]},
         "members.item:0.status"),
        ({"members": [{"email_address": "x@gmail.com", "status_if_new": "subscribed",
                       "vip": "yes"}]}, "members.item:0.vip"),
        ({"members": [{"email_address": "x@gmail.com", "status_if_new": "subscribed",
                       "tags": "T"}]}, "members.item:0.tags"),
        ({"members": ["x@gmail.com"]}, "members.item:0"),
    ],
)
def test_batch_refuses_what_the_description_forbids(
    emu: EmulatorHandle, api: httpx.Client, change: dict[str, Any], field: str
) -> None:
    good = {"email_address": "good@gmail.com", "status_if_new": "subscribed"}
    refused(api.post(L, json={"members": [good], **change}), field)
    assert states(emu) == []  # the whole request is refused, the good member too


def test_batch_without_members_is_refused_by_the_description(api: httpx.Client) -> None:
    refused(api.post(L, json={"update_existing": True}), "members")
