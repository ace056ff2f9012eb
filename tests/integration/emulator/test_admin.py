"""The /_emulator admin API contract, and scale."""

from __future__ import annotations

import time

import httpx

from mcsync.emulator.testing import EmulatorHandle

from .conftest import PLAIN, STRICT, TOKEN, md5, put

M = f"/lists/{PLAIN}/members"


def test_create_account_generates_token_and_default_audience(emu: EmulatorHandle) -> None:
    r = httpx.post(emu.url + "/_emulator/accounts", json={"dc": "us3", "account_name": "X"})
    body = r.json()
    assert len(body["access_token"]) == 32 and body["dc"] == "us3"
    assert len(body["audiences"]) == 1
    assert {f["tag"] for f in body["audiences"][0]["merge_fields"]} == {
        "FNAME", "LNAME", "PHONE", "ADDRESS"}
    dup = httpx.post(emu.url + "/_emulator/accounts", json={"access_token": TOKEN})
    assert dup.status_code == 409


def test_state_shape_and_filters(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "s@gmail.com", merge_fields={"FNAME": "S"}, tags=["T"])
    state = emu.admin.state()
    (account,) = state["accounts"]
    assert account["access_token"] == TOKEN and account["dc"] == "us7"
    plain = next(a for a in account["audiences"] if a["id"] == PLAIN)
    (m,) = plain["members"]
    assert m["id"] == md5("s@gmail.com") and m["status"] == "subscribed"
    assert m["merge_fields"]["FNAME"] == "S" and m["tags"] == [{"name": "T"}]
    assert isinstance(m["last_changed_at"], float)
    assert state["requests"][-1]["method"] == "PUT"
    filtered = emu.admin.state(STRICT, requests=False)
    assert "requests" not in filtered
    assert [a["id"] for a in filtered["accounts"][0]["audiences"]] == [STRICT]


def test_request_log(emu: EmulatorHandle, api: httpx.Client) -> None:
    api.get("/ping")
    api.get("/ping", headers={"X-Trigger-Error": "TooManyRequests"})
    emu.admin.state()  # admin calls are not logged
    log = emu.admin.requests()
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("GET", "/3.0/ping", 200), ("GET", "/3.0/ping", 429)]
    assert all(abs(r["at"] - time.time()) < 60 for r in log)


def test_archived_listed_forgotten_not(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "a@gmail.com")
    put(api, "f@gmail.com")
    api.delete(f"{M}/{md5('a@gmail.com')}")
    emu.admin.forget(PLAIN, "f@gmail.com")
    members = emu.admin.members(PLAIN)
    assert [(m["email_address"], m["status"]) for m in members] == [("a@gmail.com", "archived")]
    assert api.get(f"{M}/{md5('f@gmail.com')}").status_code == 404
    assert put(api, "f@gmail.com").json()["title"] == "Forgotten Email Not Subscribed"


def test_marketer_actions(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "m@gmail.com")
    emu.admin.tag(PLAIN, "m@gmail.com", "Hand")
    emu.admin.unsubscribe(PLAIN, "m@gmail.com")
    got = api.get(f"{M}/{md5('m@gmail.com')}").json()
    assert got["status"] == "unsubscribed" and [t["name"] for t in got["tags"]] == ["Hand"]


def test_add_member_from_elsewhere(emu: EmulatorHandle, api: httpx.Client) -> None:
    m = emu.admin.add_member(PLAIN, "form@gmail.com", status="pending",
                             merge_fields={"FNAME": "F"}, tags=["Web"])
    assert m["status"] == "pending" and m["tags"] == [{"name": "Web"}]
    got = api.get(f"{M}/{md5('form@gmail.com')}").json()
    assert got["source"] == "Admin Add" and got["merge_fields"]["FNAME"] == "F"


def test_last_changed_at_moves_on_every_change(emu: EmulatorHandle, api: httpx.Client) -> None:
    def stamp() -> float:
        value: float = emu.admin.members(PLAIN)[0]["last_changed_at"]
        return value

    put(api, "c@gmail.com")
    seen = [stamp()]
    for action in (
        lambda: put(api, "c@gmail.com", merge_fields={"FNAME": "X"}),
        lambda: put(api, "c@gmail.com", status="unsubscribed"),  # pending can't be archived
        lambda: api.post(f"{M}/{md5('c@gmail.com')}/tags",
                         json={"tags": [{"name": "A", "status": "active"}]}),
        lambda: api.delete(f"{M}/{md5('c@gmail.com')}"),
    ):
        time.sleep(0.002)
        action()
        seen.append(stamp())
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_reset(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "r@gmail.com")
    emu.admin.add_fault(status=500)
    emu.admin.reset()
    assert emu.admin.state()["accounts"] == [] and emu.admin.requests() == []
    assert httpx.get(emu.url + "/_emulator/faults").json() == {"faults": []}


def test_hundred_thousand_members(emu: EmulatorHandle, api: httpx.Client) -> None:
    start = time.perf_counter()
    for chunk in range(200):
        members = [{"email_address": f"u{chunk}x{i}@gmail.com", "status_if_new": "subscribed",
                    "merge_fields": {"FNAME": str(i)}} for i in range(500)]
        body = api.post(f"/lists/{PLAIN}", json={"members": members}).json()
        assert body["total_created"] == 500
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    assert len(emu.admin.members(PLAIN)) == 100_000
    page = api.get(M, params={"count": 1000, "offset": 99_000,
                              "fields": "members.email_address,total_items"}).json()
    assert page["total_items"] == 100_000 and len(page["members"]) == 1000
    assert put(api, "u199x499@gmail.com", merge_fields={"FNAME": "Z"}).status_code == 200
    assert api.get("/lists").json()["lists"][0]["stats"]["member_count"] == 100_000
    assert loaded < 60 and time.perf_counter() - start < 15
