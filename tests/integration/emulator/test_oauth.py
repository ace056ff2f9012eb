"""The OAuth 2 authorization-code dance, done with plain httpx."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from mcsync.emulator.testing import EmulatorHandle

from .conftest import TOKEN

REDIRECT = "http://127.0.0.1:9999/callback"


def authorize(emu: EmulatorHandle, client_id: str = "app", account: str | None = None,
              decision: str = "allow", redirect_uri: str = REDIRECT) -> httpx.Response:
    """Load the authorize page, submit its form like a browser, return the redirect."""
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "state": "xyz"}
    page = httpx.get(emu.login_url + "/oauth2/authorize", params=params)
    assert page.status_code == 200 and "Allow" in page.text
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.text))
    options = re.findall(r'<option value="([^"]+)"( selected)?>', page.text)
    assert not any(sel for _, sel in options)  # no account is chosen for the user
    form["account"] = account or options[0][0]
    form["decision"] = decision
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action is not None
    return httpx.post(emu.login_url + action.group(1), data=form)


def code_of(redirect: httpx.Response) -> str:
    assert redirect.status_code == 302
    location = redirect.headers["location"]
    assert location.startswith(REDIRECT + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["xyz"]
    return query["code"][0]


def exchange(emu: EmulatorHandle, code: str, client_id: str = "app", secret: str = "s3cret",
             redirect_uri: str = REDIRECT) -> httpx.Response:
    return httpx.post(emu.login_url + "/oauth2/token", data={
        "grant_type": "authorization_code", "client_id": client_id, "client_secret": secret,
        "redirect_uri": redirect_uri, "code": code})


def test_whole_dance(emu: EmulatorHandle) -> None:
    emu.admin.register_oauth_client("app", "s3cret", REDIRECT)
    token = exchange(emu, code_of(authorize(emu)))
    assert token.status_code == 200
    body = token.json()
    assert body == {"access_token": TOKEN, "expires_in": 0, "scope": None}
    meta = httpx.get(emu.login_url + "/oauth2/metadata",
                     headers={"Authorization": f"OAuth {body['access_token']}"}).json()
    assert meta["dc"] == "us7" and meta["accountname"] == "Acme"
    assert meta["api_endpoint"] == emu.url and meta["login_url"] == emu.url
    assert meta["login"]["login_id"] and meta["login"]["email"] and meta["role"] == "owner"
    ping = httpx.get(meta["api_endpoint"] + "/3.0/ping",
                     headers={"Authorization": f"Bearer {body['access_token']}"})
    assert ping.status_code == 200


def test_page_lets_you_pick_the_account(emu: EmulatorHandle) -> None:
    other = emu.admin.create_account(account_name="Other", access_token="tok-other")
    code = code_of(authorize(emu, account=other["account_id"]))
    assert exchange(emu, code).json()["access_token"] == "tok-other"


def test_account_query_param_preselects(emu: EmulatorHandle) -> None:
    emu.admin.create_account(account_name="Other", access_token="tok-other")
    page = httpx.get(emu.login_url + "/oauth2/authorize", params={
        "response_type": "code", "client_id": "a", "redirect_uri": REDIRECT,
        "account": "Other"})
    assert re.search(r'<option value="[^"]+" selected>Other', page.text)


def test_code_is_single_use(emu: EmulatorHandle) -> None:
    code = code_of(authorize(emu))
    assert exchange(emu, code).status_code == 200
    again = exchange(emu, code)
    assert again.status_code == 400 and again.json() == {"error": "invalid_grant"}


@pytest.mark.parametrize("change,error", [
    ({"redirect_uri": REDIRECT + "/other"}, "invalid_grant"),
    ({"client_id": "someone-else"}, "invalid_client"),
    ({"secret": "wrong"}, "invalid_client"),
    ({"code": "made-up"}, "invalid_grant"),
])
def test_registered_client_checks(emu: EmulatorHandle, change: dict[str, str],
                                  error: str) -> None:
    emu.admin.register_oauth_client("app", "s3cret")
    code = code_of(authorize(emu))
    args = {"code": code, **change}
    r = exchange(emu, **args)
    assert r.status_code == 400 and r.json() == {"error": error}


def test_unregistered_client_rejected_when_clients_are_registered(emu: EmulatorHandle) -> None:
    emu.admin.register_oauth_client("app", "s3cret", REDIRECT)
    r = httpx.get(emu.login_url + "/oauth2/authorize", params={
        "response_type": "code", "client_id": "stranger", "redirect_uri": REDIRECT})
    assert r.status_code == 400
    r = httpx.get(emu.login_url + "/oauth2/authorize", params={
        "response_type": "code", "client_id": "app", "redirect_uri": REDIRECT + "x"})
    assert r.status_code == 400


def test_any_client_accepted_when_none_registered(emu: EmulatorHandle) -> None:
    code = code_of(authorize(emu, client_id="whatever"))
    r = exchange(emu, code, client_id="whatever", secret="anything")
    assert r.status_code == 200


def test_deny_redirects_with_access_denied(emu: EmulatorHandle) -> None:
    r = authorize(emu, decision="deny")
    assert r.status_code == 302 and "error=access_denied" in r.headers["location"]


def test_token_endpoint_wants_a_form(emu: EmulatorHandle) -> None:
    code = code_of(authorize(emu))
    r = httpx.post(emu.login_url + "/oauth2/token", json={
        "grant_type": "authorization_code", "client_id": "app", "client_secret": "s",
        "redirect_uri": REDIRECT, "code": code})
    assert r.status_code == 400


def test_metadata_needs_the_oauth_scheme_and_a_live_token(emu: EmulatorHandle) -> None:
    url = emu.login_url + "/oauth2/metadata"
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    emu.admin.revoke(TOKEN)
    assert httpx.get(url, headers={"Authorization": f"OAuth {TOKEN}"}).status_code == 401


def test_reauthorizing_after_revoke_gives_a_new_token(emu: EmulatorHandle) -> None:
    emu.admin.revoke(TOKEN)
    new = exchange(emu, code_of(authorize(emu))).json()["access_token"]
    assert new != TOKEN
    assert httpx.get(emu.api_url + "/ping",
                     headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert httpx.get(emu.api_url + "/ping",
                     headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401


def test_the_consent_screen_chooses_no_account_and_refuses_allow_without_one(
    emu: EmulatorHandle,
) -> None:
    params = {"response_type": "code", "client_id": "app", "redirect_uri": REDIRECT, "state": "s"}
    page = httpx.get(emu.login_url + "/oauth2/authorize", params=params)
    assert page.status_code == 200
    select = re.search(r'<select id="account" name="account" required>(.*?)</select>', page.text)
    assert select is not None and '<label for="account">Account</label>' in page.text
    options = re.findall(r'<option value="([^"]*)"([^>]*)>', select.group(1))
    assert options[0][0] == "" and "selected" in options[0][1]  # the placeholder
    assert not any("selected" in a for v, a in options if v)
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.text))
    refused = httpx.post(emu.login_url + "/oauth2/authorize", data={**form, "decision": "allow"})
    assert refused.status_code == 400 and "choose an account" in refused.text
