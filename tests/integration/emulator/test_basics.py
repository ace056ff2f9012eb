"""Auth, discovery endpoints, the error envelope and X-Trigger-Error."""

from __future__ import annotations

import httpx
import pytest

from mcsync.emulator.testing import EmulatorHandle

from .conftest import PLAIN, STRICT, TOKEN, problem, put


def test_ping_with_bearer_and_basic(emu: EmulatorHandle) -> None:
    r = httpx.get(emu.api_url + "/ping", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.json() == {"health_status": "Everything's Chimpy!"}
    assert httpx.get(emu.api_url + "/ping", auth=("anyone", TOKEN)).status_code == 200
    # API-key style "<token>-<dc>" as the Basic password also works
    assert httpx.get(emu.api_url + "/ping", auth=("x", f"{TOKEN}-us7")).status_code == 200


@pytest.mark.parametrize("headers,title", [
    ({}, "API Key Missing"),
    ({"Authorization": "Bearer nope"}, "API Key Invalid"),
    ({"Authorization": "OAuth " + TOKEN}, "API Key Missing"),
])
def test_bad_auth_is_401(emu: EmulatorHandle, headers: dict[str, str], title: str) -> None:
    r = httpx.get(emu.api_url + "/ping", headers=headers)
    assert r.status_code == 401
    assert problem(r)["title"] == title


def test_revoked_token_is_401(emu: EmulatorHandle, api: httpx.Client) -> None:
    assert api.get("/ping").status_code == 200
    emu.admin.revoke(TOKEN)
    r = api.get("/ping")
    assert r.status_code == 401 and problem(r)["title"] == "API Key Invalid"


def test_root_identifies_the_account(api: httpx.Client) -> None:
    body = api.get("/").json()
    assert body["account_name"] == "Acme" and body["account_id"]


def test_lists_show_double_optin_and_subscribed_count(emu: EmulatorHandle,
                                                      api: httpx.Client) -> None:
    put(api, "ann@gmail.com")
    put(api, "bo@gmail.com", status="unsubscribed")
    lists = {x["id"]: x for x in api.get("/lists").json()["lists"]}
    assert lists[STRICT]["double_optin"] is True and lists[PLAIN]["double_optin"] is False
    assert lists[PLAIN]["stats"]["member_count"] == 1  # subscribed only
    assert api.get("/lists", params={"fields": "lists.id,total_items"}).json() == {
        "lists": [{"id": PLAIN}, {"id": STRICT}], "total_items": 2}


def test_another_accounts_audience_is_invisible(emu: EmulatorHandle, api: httpx.Client) -> None:
    emu.admin.create_account(access_token="other", audiences=[{"id": "theirs", "name": "T"}])
    r = api.get("/lists/theirs/members")
    assert r.status_code == 404 and problem(r)["title"] == "Resource Not Found"


def test_unknown_path_404_and_wrong_method_405(api: httpx.Client) -> None:
    assert problem(api.get("/nope"))["status"] == 404
    assert problem(api.delete(f"/lists/{PLAIN}/members"))["status"] == 405


def test_invalid_json_body(api: httpx.Client) -> None:
    r = api.put(f"/lists/{PLAIN}/members/a@b.co", content=b"{not json")
    assert r.status_code == 400 and problem(r)["title"] == "JSON Parse Exception"


@pytest.mark.parametrize("name,status", [
    ("APIKeyInvalid", 401), ("TooManyRequests", 429), ("InternalServerError", 500),
    ("ResourceNotFound", 404), ("Forbidden", 403), ("InvalidResource", 400),
    ("ComplianceRelated", 503),
])
def test_x_trigger_error(api: httpx.Client, name: str, status: int) -> None:
    r = api.get("/ping", headers={"X-Trigger-Error": name})
    assert r.status_code == status
    assert problem(r)["status"] == status


def test_every_response_has_a_request_id(api: httpx.Client) -> None:
    assert api.get("/ping").headers["x-request-id"]
