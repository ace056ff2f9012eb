"""OAuth, status, audiences, Sync Now limits and disconnect, through the real HTTP routes."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from fastapi.testclient import TestClient

from mcsync.crypto import EncryptionKeyError
from mcsync.web import create_app
from mcsync.web.app import ConfigError
from mcsync.web.auth import StateSigner
from mcsync.web.oauth import COOKIE, SECURE_COOKIE
from tests.e2e.web.conftest import (
    APP_ORIGIN,
    CLIENT_ID,
    CLIENT_SECRET,
    WebHarness,
    query_params,
    web_settings,
)
from tests.support.harness import wait_until
from tests.support.tokens import default_issuer, new_key

ROUTES = [
    ("GET", "/api/status"),
    ("GET", "/api/audiences"),
    ("PUT", "/api/audience"),
    ("POST", "/api/sync-now"),
    ("DELETE", "/api/connection"),
    ("POST", "/api/oauth/start"),
]


def _coach_account(web: WebHarness) -> str:
    """A Mailchimp account with one audience (l1, "Clients"); its id."""
    account_id: str = web.account("Coach", [{"id": "l1", "name": "Clients"}])["account_id"]
    return account_id


def _bad_tokens(user: uuid.UUID) -> dict[str, dict[str, str]]:
    """One of each kind (tests/e2e/web/test_tokens.py has the full set of attacks)."""
    issuer = default_issuer()
    sub = str(user)
    now = int(time.time())
    bearer = {
        "expired": issuer.token(user, exp=now - 3600),
        "forged": issuer.token(user, key=new_key(), kid=issuer.current.kid),
        "no exp": issuer.token(user, exp=None),
        "alg none": jwt.encode(issuer.claims(user), None, algorithm="none"),
        "sub not a user id": issuer.token(user, sub="admin"),
        "anon role": issuer.token(user, role="anon"),
        "garbage": "not.a.jwt",
    }
    return {
        "missing": {},
        "not bearer": {"Authorization": f"Basic {issuer.token(sub)}"},
        **{label: {"Authorization": f"Bearer {token}"} for label, token in bearer.items()},
    }


def test_every_route_refuses_a_missing_expired_or_forged_jwt(web: WebHarness) -> None:
    user = uuid.uuid4()
    coach = _coach_account(web)
    web.connect(user, coach)
    for label, headers in _bad_tokens(user).items():
        for method, path in ROUTES:
            r = web.client.request(method, path, headers=headers, json={"audience_id": "l1"})
            assert r.status_code == 401, (label, method, path, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
    # Nothing those calls did touched the connection.
    assert web.status(user)["connected"] is True


def test_oauth_connects_stores_the_token_encrypted_and_auto_selects_the_only_audience(
    web: WebHarness,
) -> None:
    user = uuid.uuid4()
    web.add_contact(user, "ada@clientmail.io", first_name="Ada", tags=["vip"])
    account = web.account("Ada's Coaching", [{"id": "solo", "name": "Clients"}])

    page = web.connect(user, account["account_id"])
    assert page.status_code == 200
    assert "Connected to &quot;Clients&quot;" in page.text
    # The popup tells only the app's origin.
    assert f'origin = "{APP_ORIGIN}"' in page.text
    assert "'*'" not in page.text and '"*"' not in page.text

    status = web.status(user)
    assert status["connected"] and status["audience_name"] == "Clients"
    assert status["account_name"] == "Ada's Coaching" and not status["needs_audience"]
    [row] = web.rows("SELECT * FROM mcsync.mailchimp_connections WHERE user_id = %s", (user,))
    assert row["dc"] == "us7" and row["audience_id"] == "solo"
    assert account["access_token"] not in row["access_token_encrypted"]
    assert web.sync.cipher.decrypt(row["access_token_encrypted"], user) == account["access_token"]

    web.sync.drain()
    member = web.members("solo")["ada@clientmail.io"]
    assert member["merge_fields"]["FNAME"] == "Ada"
    assert {t["name"] for t in member["tags"]} == {"vip"}


def test_a_forged_replayed_or_expired_state_is_refused_and_stores_nothing(
    web: WebHarness,
) -> None:
    user = uuid.uuid4()
    callback = web.consent(user, _coach_account(web))
    code = query_params(callback)["code"]

    forged = StateSigner([b"another-secret-" * 3]).make_state(user)
    expired = StateSigner.from_settings(web.settings).make_state(user, ttl=-120)
    login_token = default_issuer().token(user, nonce="x")
    for state in (forged, expired, login_token, "", "garbage"):
        r = web.client.get("/oauth/callback", params={"code": code, "state": state})
        assert r.status_code == 400, state
        assert "expired or was already used" in r.text
    assert web.rows("SELECT 1 FROM mcsync.mailchimp_connections") == []

    assert web.client.get(callback).status_code == 200
    replay = web.client.get(callback)
    assert replay.status_code == 400 and "already used" in replay.text


def test_the_popup_begins_with_a_browser_bound_cookie_then_goes_to_mailchimp(
    web: WebHarness,
) -> None:
    user = uuid.uuid4()
    coach = _coach_account(web)
    started = web.start(user)
    # Start hands out where the popup goes first and the state it carries, not Mailchimp's URL.
    assert started["begin_url"] == "http://testserver/oauth/begin"
    assert set(started) == {"begin_url", "state"}

    r = web.begin(started)
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith(web.settings.mailchimp_login_url.rstrip("/") + "/oauth2/authorize?")
    assert query_params(location)["state"] == started["state"]
    cookie = r.headers["set-cookie"]
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert cookie.startswith(f"{COOKIE}=") and f"{COOKIE}=;" not in cookie
    assert started["state"] not in cookie  # a binding of the nonce, not the state itself
    assert "httponly" in attrs and attrs["samesite"].lower() == "samesite=lax"
    assert attrs["path"] == "Path=/oauth"
    assert 590 <= int(attrs["max-age"].split("=")[1]) <= 600
    assert "secure" not in attrs  # plain http here; see the https case below

    # The normal flow: this client's cookie jar follows begin -> consent -> callback.
    callback = web.approve(location, coach)
    page = web.client.get(callback)
    assert page.status_code == 200 and "Connected to" in page.text
    assert web.status(user)["connected"] is True
    # The callback clears the cookie.
    cleared = page.headers["set-cookie"]
    assert cleared.startswith(f'{COOKIE}="";') or cleared.startswith(f"{COOKIE}=;")
    assert "Max-Age=0" in cleared and "Path=/oauth" in cleared
    assert COOKIE not in web.client.cookies

    # Over https the cookie is __Host- prefixed: Secure, Path=/, no Domain.
    secure = web.client.post(
        "https://testserver/oauth/begin",
        data={"state": web.start(user)["state"]},
        headers={"Origin": APP_ORIGIN},
        follow_redirects=False,
    )
    assert secure.status_code == 303
    _assert_host_prefixed(secure.headers["set-cookie"])


def _assert_host_prefixed(cookie: str) -> None:
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert cookie.startswith(f"{SECURE_COOKIE}=") and SECURE_COOKIE == f"__Host-{COOKIE}"
    assert "secure" in attrs and attrs["path"] == "Path=/" and "domain" not in attrs
    assert "httponly" in attrs and attrs["samesite"].lower() == "samesite=lax"


def test_over_https_the_whole_flow_uses_the_host_prefixed_cookie(web: WebHarness) -> None:
    redirect = "https://mcsync.example.test/oauth/callback"
    web.admin.register_oauth_client(CLIENT_ID, CLIENT_SECRET, redirect)
    settings = web_settings(web.sync, mailchimp_redirect_uri=redirect)
    account = web.account("Secure", [{"id": "s1", "name": "Secure list"}])
    user = uuid.uuid4()
    with TestClient(
        create_app(settings, sweep_interval=60), base_url="https://mcsync.example.test"
    ) as client:
        secure = WebHarness(web.sync, client, settings)
        started = secure.start(user)
        assert started["begin_url"] == "https://mcsync.example.test/oauth/begin"
        r = secure.begin(started)
        assert r.status_code == 303
        _assert_host_prefixed(r.headers["set-cookie"])
        assert set(client.cookies.keys()) == {SECURE_COOKIE}
        callback = secure.approve(r.headers["location"], account["account_id"])
        assert callback.startswith(redirect)
        # The same value under the plain name (as a sibling subdomain could plant): refused.
        planted = client.cookies[SECURE_COOKIE]
        client.cookies.clear()
        page = client.get(callback, headers={"Cookie": f"{COOKIE}={planted}"})
        assert page.status_code == 400 and "wasn't opened from the app" in page.text
        # A fresh flow with the cookie as the browser keeps it: connected, and the cookie cleared.
        r = secure.begin(secure.start(user))
        page = client.get(secure.approve(r.headers["location"], account["account_id"]))
        assert page.status_code == 200 and "Connected to" in page.text
        cleared = page.headers["set-cookie"]
        assert cleared.startswith(f"{SECURE_COOKIE}=") and "Max-Age=0" in cleared
        assert SECURE_COOKIE not in client.cookies
    [row] = web.rows("SELECT dc, api_endpoint FROM mcsync.mailchimp_connections")
    assert row["dc"] == "us7"


def test_a_state_opened_in_another_browser_is_refused_and_stores_nothing(
    web: WebHarness,
) -> None:
    """Login CSRF: the attacker begins a flow for their own user, then gets the victim to open
    Mailchimp's consent screen with the attacker's state. The victim's browser has no cookie
    for that state, so the victim's token is not filed under the attacker."""
    attacker = uuid.uuid4()
    victims = web.account("Victim", [{"id": "v1", "name": "Victim's clients"}])

    r = web.begin(web.start(attacker))  # in the attacker's browser
    authorize = r.headers["location"]
    web.client.cookies.clear()  # ... and now the victim's browser, which has no cookie
    callback = web.approve(authorize, victims["account_id"])  # the victim consents
    page = web.client.get(callback)
    assert page.status_code == 400
    assert "wasn't opened from the app in this browser" in page.text
    assert "nothing was saved" in page.text
    assert f'origin = "{APP_ORIGIN}"' in page.text  # the same calm page, same reporting
    assert web.rows("SELECT 1 FROM mcsync.mailchimp_connections") == []
    assert web.status(attacker)["connected"] is False
    # The state is spent: it can't be tried again anywhere.
    again = web.client.get(callback)
    assert again.status_code == 400 and "already used" in again.text


def test_a_mismatched_cookie_is_refused_and_stores_nothing(web: WebHarness) -> None:
    attacker, victim = uuid.uuid4(), uuid.uuid4()
    victims = web.account("Victim", [{"id": "v1", "name": "Victim's clients"}])

    r = web.begin(web.start(attacker))
    authorize = r.headers["location"]
    web.client.cookies.clear()
    # The victim's browser holds a cookie of its own (a flow it began itself) ...
    assert web.begin(web.start(victim)).status_code == 303
    assert COOKIE in web.client.cookies
    # ... which is no binding for the attacker's state.
    page = web.client.get(web.approve(authorize, victims["account_id"]))
    assert page.status_code == 400 and "wasn't opened from the app" in page.text
    # The victim's own cookie is left for the victim's own flow.
    assert "set-cookie" not in page.headers and COOKIE in web.client.cookies

    # A made-up cookie value gets nowhere either.
    r = web.begin(web.start(attacker))
    callback = web.approve(r.headers["location"], victims["account_id"])
    web.client.cookies.clear()
    page = web.client.get(callback, headers={"Cookie": f"{COOKIE}=not-the-binding"})
    assert page.status_code == 400 and "wasn't opened from the app" in page.text
    assert web.rows("SELECT 1 FROM mcsync.mailchimp_connections") == []
    assert web.status(attacker)["connected"] is False
    assert web.status(victim)["connected"] is False


def test_begin_answers_only_the_apps_own_page(web: WebHarness) -> None:
    """A link or a form on another site can't begin a flow (and plant a cookie) in a browser:
    begin is a POST and wants the app's Origin."""
    user = uuid.uuid4()
    started = web.start(user)
    for origin in (None, "http://evil.test", "null"):
        r = web.begin(started, origin=origin)
        assert r.status_code == 403, origin
        assert "wasn't started from the app" in r.text
        assert "set-cookie" not in r.headers and COOKIE not in web.client.cookies
    assert web.client.get("/oauth/begin", params={"state": started["state"]}).status_code == 405
    stale = StateSigner.from_settings(web.settings).make_state(user, ttl=-120)
    for state in ("", "garbage", stale):
        r = web.begin({**started, "state": state})
        assert r.status_code == 400 and "expired or was already used" in r.text
        assert "set-cookie" not in r.headers
    # mcsync's own origin (a page served next to it) may begin.
    assert web.begin(started, origin="http://testserver").status_code == 303
    assert web.rows("SELECT 1 FROM mcsync.mcsync_oauth_states") == []


def test_a_failed_exchange_or_a_denial_says_so_calmly_and_stores_nothing(
    web: WebHarness,
) -> None:
    user = uuid.uuid4()
    coach = _coach_account(web)
    callback = web.consent(user, coach)
    state = query_params(callback)["state"]
    r = web.client.get("/oauth/callback", params={"code": "not-a-real-code", "state": state})
    assert r.status_code == 502
    assert "nothing was saved" in r.text
    denied = web.consent(user, coach, allow=False)
    r = web.client.get(denied)
    assert r.status_code == 400 and "not granted" in r.text
    assert web.rows("SELECT 1 FROM mcsync.mailchimp_connections") == []
    assert web.status(user) == {"connected": False, "sync_status": None, "notice": None}


def test_choose_then_change_the_audience_the_old_one_is_left_alone(web: WebHarness) -> None:
    user = uuid.uuid4()
    web.add_contact(user, "bo@clientmail.io", first_name="Bo")
    account = web.account(
        "Coach", [{"id": "first", "name": "Clients"}, {"id": "second", "name": "Newsletter"}]
    )
    page = web.connect(user, account["account_id"])
    assert "Choose an audience" in page.text
    assert web.status(user)["needs_audience"] is True
    h = web.headers(user)

    listed = web.client.get("/api/audiences", headers=h).json()["audiences"]
    assert [(a["id"], a["name"], a["selected"]) for a in listed] == [
        ("first", "Clients", False),
        ("second", "Newsletter", False),
    ]
    r = web.client.put("/api/audience", headers=h, json={"audience_id": "first"})
    assert r.status_code == 200 and r.json()["audience_name"] == "Clients"
    web.sync.drain()
    assert set(web.members("first")) == {"bo@clientmail.io"}

    r = web.client.put("/api/audience", headers=h, json={"audience_id": "second"})
    assert r.json()["audience_name"] == "Newsletter"
    web.sync.drain()
    assert set(web.members("second")) == {"bo@clientmail.io"}
    assert web.members("first")["bo@clientmail.io"]["status"] == "subscribed"

    r = web.client.put("/api/audience", headers=h, json={"audience_id": "not-mine"})
    assert r.status_code == 404


def test_one_user_cannot_read_or_change_another_users_connection(web: WebHarness) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    acc_a = web.account("Alice", [{"id": "alice-list", "name": "Alice's"}])
    acc_b = web.account("Bob", [{"id": "bob-a", "name": "Bob A"}, {"id": "bob-b", "name": "B"}])
    web.connect(alice, acc_a["account_id"])
    web.connect(bob, acc_b["account_id"])
    hb = web.headers(bob)

    assert web.status(bob)["account_name"] == "Bob"
    ids = {a["id"] for a in web.client.get("/api/audiences", headers=hb).json()["audiences"]}
    assert ids == {"bob-a", "bob-b"}
    # Bob naming Alice's audience gets nowhere: it isn't in his account.
    r = web.client.put("/api/audience", headers=hb, json={"audience_id": "alice-list"})
    assert r.status_code == 404
    # No route takes a user id: extra parameters are ignored, Bob only ever acts on Bob.
    r = web.client.request("DELETE", "/api/connection", headers=hb, params={"user_id": str(alice)})
    assert r.status_code == 200
    assert web.status(alice)["connected"] is True
    assert web.status(alice)["audience_id"] == "alice-list"
    assert web.status(bob)["connected"] is False


def test_disconnect_removes_credentials_and_pending_work_only(web: WebHarness) -> None:
    user = uuid.uuid4()
    coach = _coach_account(web)
    web.add_contact(user, "cy@clientmail.io", first_name="Cy")
    web.connect(user, coach)
    web.sync.drain()
    web.add_contact(user, "di@clientmail.io", first_name="Di")  # pending, never sent
    assert web.rows("SELECT 1 FROM mcsync.mailchimp_sync_queue WHERE user_id = %s", (user,))

    r = web.client.delete("/api/connection", headers=web.headers(user))
    assert r.json() == {"connected": False, "disconnected": True}
    assert web.rows("SELECT 1 FROM mcsync.mailchimp_connections WHERE user_id = %s", (user,)) == []
    assert web.rows("SELECT 1 FROM mcsync.mailchimp_sync_queue WHERE user_id = %s", (user,)) == []
    assert len(web.rows("SELECT 1 FROM contacts WHERE user_id = %s", (user,))) == 2
    assert set(web.members("l1")) == {"cy@clientmail.io"}  # Mailchimp untouched

    # Reconnecting starts with a full reconciliation: every contact is queued again.
    web.connect(user, coach)
    assert (
        len(web.rows("SELECT 1 FROM mcsync.mailchimp_sync_queue WHERE user_id = %s", (user,))) == 2
    )
    web.wait_for_runs(user)
    web.sync.drain()
    assert set(web.members("l1")) == {"cy@clientmail.io", "di@clientmail.io"}


def test_sync_now_runs_once_an_hour_and_says_when_to_come_back(web: WebHarness) -> None:
    user = uuid.uuid4()
    coach = _coach_account(web)
    h = web.headers(user)
    assert web.client.post("/api/sync-now", headers=h).status_code == 409  # not connected
    web.connect(user, coach)

    first = web.client.post("/api/sync-now", headers=h)
    assert first.status_code == 202
    wait_until(
        lambda: web.rows(
            "SELECT 1 FROM mcsync.mcsync_reconciliations"
            " WHERE user_id = %s AND finished_at IS NOT NULL",
            (user,),
        )
    )
    second = web.client.post("/api/sync-now", headers=h)
    assert second.status_code == 429
    retry = int(second.headers["retry-after"])
    assert 3500 < retry <= 3600
    assert "about 60 minutes" in second.json()["detail"]
    assert web.status(user)["sync_now"]["available_in"] > 3500
    # A disconnect and reconnect does not reset the clock.
    web.client.delete("/api/connection", headers=h)
    web.connect(user, coach)
    assert web.client.post("/api/sync-now", headers=h).status_code == 429


def test_cors_allows_only_the_app_origin(web: WebHarness) -> None:
    pre = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    ok = web.client.options("/api/sync-now", headers={"Origin": APP_ORIGIN, **pre})
    assert ok.headers.get("access-control-allow-origin") == APP_ORIGIN
    evil = web.client.options("/api/sync-now", headers={"Origin": "http://evil.test", **pre})
    assert "access-control-allow-origin" not in evil.headers


def test_the_widget_is_served(web: WebHarness) -> None:
    r = web.client.get("/static/mcsync.js")
    assert r.status_code == 200
    assert "customElements.define" in r.text
    assert "mcsync-settings" in r.text and "mcsync-notice" in r.text


def test_the_app_refuses_to_start_without_a_key_or_a_way_to_verify_users(web: WebHarness) -> None:
    with pytest.raises(EncryptionKeyError, match=r"Fernet\.generate_key"):
        create_app(web_settings(web.sync, mcsync_encryption_keys=""))
    with pytest.raises(ConfigError, match=r"MCSYNC_JWKS_URL .*MCSYNC_JWT_SECRET"):
        create_app(web_settings(web.sync, mcsync_jwks_url="", mcsync_jwt_secret=""))
    with pytest.raises(ConfigError, match="https"):
        create_app(web_settings(web.sync, mcsync_jwks_url="http://auth.example.com/jwks.json"))
    with pytest.raises(ConfigError, match="32 characters"):
        create_app(web_settings(web.sync, mcsync_state_secret="short"))
