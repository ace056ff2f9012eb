"""The settings widget in headless Chromium, against real servers on loopback:

`mcsync web` (a subprocess, as deployed: configured with only the app's JWKS URL, no shared
secret), the worker (a background thread), the Mailchimp emulator (a background thread), an
auth server publishing its ES256 keys as a JWKS (tests/support/tokens.py) and a tiny host page
on another origin that embeds the widget. The page's tokens live a few seconds, as Supabase's
do (minutes there); its `getToken` fetches a fresh one when the one it holds expires, as
supabase-js refreshes a session, so tokens expire mid-session, and the auth server rotates its
signing key (and revokes the old one) while the page is open.

connect through the emulator's consent popup -> pick one of two audiences -> contacts appear in
the emulator -> Sync Now -> a second Sync Now is refused politely -> the account fails and the
notice appears, then disappears on recovery -> disconnect -> a consent screen opened with
someone else's state in a browser that never began it is refused. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import jwt
import pytest

from tests.support.browser import (
    ARTIFACTS,
    FLAGS,
    free_port,
    require_chromium,
    web_env,
    web_process,
)
from tests.support.harness import SyncHarness, wait_until
from tests.support.tokens import TokenIssuer

CHROMIUM = require_chromium()

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(240)

TOKEN_TTL = 6  # seconds: the page's tokens expire many times during the test
CLIENT_ID, CLIENT_SECRET = "coach-app", "coach-app-secret"


HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Coach app</title>
<script type="module" src="{web}/static/mcsync.js"></script>
<style>body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
main {{ display: flex; gap: 2rem; align-items: flex-start; }} aside {{ width: 22rem; }}</style>
</head><body>
<main>
  <div><h1>Settings</h1>
    <mcsync-settings api-base="{web}" poll-interval="1"></mcsync-settings></div>
  <aside><h2>Coach</h2>
    <mcsync-notice api-base="{web}" poll-interval="1"></mcsync-notice>
    <p>Today's sessions: 3</p></aside>
</main>
<script>
  // The app hands the widgets its user's JWT (a Supabase session's access token), refreshing
  // it when it has expired, as supabase-js's getSession() does.
  let jwt = "{jwt}";
  const expiry = (t) => JSON.parse(atob(t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).exp;
  async function getToken() {{
    if (expiry(jwt) - Date.now() / 1000 < 1) jwt = await (await fetch("/token")).text();
    return jwt;
  }}
  for (const el of document.querySelectorAll("mcsync-settings, mcsync-notice")) {{
    el.getToken = getToken;
  }}
</script>
</body></html>"""


class _HostPage(BaseHTTPRequestHandler):
    """The app: its page, and `/token`, a fresh access token for the signed-in user (`mint`)."""

    body = b""
    mint: ClassVar[Callable[[], str] | None] = None
    minted: ClassVar[list[str]] = []  # the tokens `/token` handed out

    def do_GET(self) -> None:
        if self.path == "/token" and type(self).mint is not None:
            token = type(self).mint()  # type: ignore[misc]
            type(self).minted.append(token)
            self._answer(token.encode(), "text/plain")
        else:
            self._answer(self.body, "text/html; charset=utf-8")

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def host_page() -> Iterator[tuple[str, type[_HostPage]]]:
    handler = type("HostPage", (_HostPage,), {"minted": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


@pytest.fixture
def tokens() -> Iterator[TokenIssuer]:
    """The app's auth server: ES256 access tokens and the JWKS that publishes their keys."""
    issuer = TokenIssuer()
    yield issuer
    issuer.close()


@pytest.fixture
def web_server(
    db_url: str, emulator: Any, host_page: tuple[str, Any], tokens: TokenIssuer
) -> Iterator[str]:
    """`mcsync web` as a subprocess, configured through the environment as in production: the
    JWKS URL and issuer, no JWT secret (a short key cache, so a revocation shows quickly)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = web_env(
        db_url,
        emulator,
        port,
        (CLIENT_ID, CLIENT_SECRET),
        tokens=tokens,
        MCSYNC_JWKS_CACHE_SECONDS="2",
        MCSYNC_JWKS_REFETCH_SECONDS="0.5",
        MCSYNC_APP_ORIGIN=host_page[0],
    )
    with web_process(env, ARTIFACTS / "mcsync-web.log", port, cli_args=("--log-level", "DEBUG")):
        yield url


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _status(web_server: str, token: str) -> int:
    """What `GET /api/status` answers this token."""
    return httpx.get(
        f"{web_server}/api/status", headers={"Authorization": f"Bearer {token}"}
    ).status_code


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_connect_choose_sync_pause_recover_disconnect_in_a_real_browser(
    db_url: str, emulator: Any, host_page: tuple[str, Any], web_server: str, tokens: TokenIssuer
) -> None:
    sync = SyncHarness(db_url, emulator, mcsync_backoff_scale=0.01, mcsync_poll_interval=0.2)
    admin = sync.admin
    admin.register_oauth_client(CLIENT_ID, CLIENT_SECRET, f"{web_server}/oauth/callback")
    account = admin.create_account(
        dc="us9",
        account_name="Sam's Coaching",
        audiences=[{"id": "clients", "name": "Clients"}, {"id": "news", "name": "Newsletter"}],
    )
    user = uuid.uuid4()
    for first, email in [
        ("Ana", "ana@clientmail.io"),
        ("Ben", "ben@clientmail.io"),
        ("Cleo", "cleo@clientmail.io"),
    ]:
        sync.execute(
            "INSERT INTO contacts (user_id, first_name, email, tags) VALUES (%s, %s, %s, %s)",
            (user, first, email, ["client"]),
        )
    origin, handler = host_page
    first_token = tokens.token(user, ttl=TOKEN_TTL)
    handler.mint = lambda: tokens.token(user, ttl=TOKEN_TTL)
    handler.body = HOST_PAGE.format(web=web_server, jwt=first_token).encode()
    refused: list[str] = []  # any 401 mcsync gives the page

    def row(sql: str) -> list[dict[str, Any]]:
        return sync.execute(sql, (user,))

    with sync.live_worker(), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 720})
            page.on(
                "response",
                lambda r: (
                    refused.append(r.url) if r.status == 401 and web_server in r.url else None
                ),
            )
            page.goto(origin)
            settings = page.locator("mcsync-settings")
            notice = page.locator("mcsync-notice")
            expect(settings.get_by_text("Not connected")).to_be_visible()
            expect(notice).to_be_hidden()
            _shot(page, "01-not-connected")

            # Connect through the emulator's consent page, in a popup whose first stop is
            # mcsync's /oauth/begin (a form POST from the app's page, which sets the cookie).
            begins: list[dict[str, str]] = []
            page.context.on(
                "request",
                lambda r: (
                    begins.append({"method": r.method, **r.headers})
                    if r.url == f"{web_server}/oauth/begin"
                    else None
                ),
            )
            with page.expect_popup() as opened:
                settings.get_by_role("button", name="Connect Mailchimp").click()
            popup = opened.value
            popup.wait_for_load_state()
            expect(popup.get_by_role("button", name="Allow")).to_be_visible()
            _shot(popup, "02-consent-popup")
            popup.get_by_label("Account").select_option(account["account_id"])
            with popup.expect_event("close", timeout=15000):
                popup.get_by_role("button", name="Allow").click()
            assert [(b["method"], b.get("origin")) for b in begins] == [("POST", origin)]
            assert [c["name"] for c in page.context.cookies(web_server)] == []  # cleared

            # Two audiences: the picker appears; choose the second.
            picker = settings.get_by_label("Audience")
            expect(picker).to_be_visible()
            expect(settings.get_by_text("Connected \u2014 choose an audience")).to_be_visible()
            _shot(page, "03-choose-audience")
            picker.select_option(label="Newsletter")
            settings.get_by_role("button", name="Use this audience").click()
            expect(settings.get_by_text('Connected to "Newsletter"')).to_be_visible()

            # The auth server rotates its signing key while the page is open: the page's next
            # fresh token carries a kid mcsync has not seen, and mcsync fetches it.
            old_key = tokens.current
            new_key = tokens.rotate()
            fetches_before_rotation = tokens.fetches

            wait_until(lambda: len(admin.members("news")) == 3, timeout=30)
            assert {m["merge_fields"]["FNAME"] for m in admin.members("news")} == {
                "Ana",
                "Ben",
                "Cleo",
            }
            assert admin.members("clients") == []
            expect(settings.get_by_text("Last synced: just now")).to_be_visible(timeout=15000)
            expect(
                settings.get_by_text("Contacts sync automatically. You don't need to do anything.")
            ).to_be_visible()
            _shot(page, "04-connected")

            # Sync Now, then a second one refused politely.
            sync_now = settings.get_by_role("button", name="Sync Now")
            sync_now.click()
            message = settings.get_by_role("status")
            expect(message).to_contain_text("Sync started")
            wait_until(
                lambda: row(
                    "SELECT 1 FROM mcsync.mcsync_reconciliations WHERE user_id = %s "
                    "AND finished_at IS NOT NULL AND error IS NULL"
                ),
                timeout=30,
            )
            sync_now.click()
            expect(message).to_contain_text("already ran in the last hour")
            expect(message).to_contain_text("minutes")
            _shot(page, "05-sync-now-refused")

            # The page has moved to the new key; the old one is revoked. Tokens it signed stop
            # working within mcsync's key cache lifetime (2 s here); the page never notices.
            wait_until(lambda: any(_kid(t) == new_key.kid for t in handler.minted), timeout=30)
            wait_until(lambda: tokens.fetches > fetches_before_rotation, timeout=10)
            time.sleep(1)  # the page's call with that token has landed
            tokens.revoke(old_key)
            stale = tokens.token(user, ttl=3600, key=old_key)
            wait_until(lambda: _status(web_server, stale) == 401, timeout=10)
            # The page keeps polling while open: its tokens expire again and again, and each
            # time getToken hands a fresh one (waited for, not assumed from the test's length).
            wait_until(lambda: len(handler.minted) >= 3, timeout=4 * TOKEN_TTL)

            # Mailchimp starts failing: the worker pauses the account, the notice appears.
            admin.add_fault(status=503)
            sync.execute(
                "UPDATE contacts SET first_name = 'Anabel' WHERE email = %s", ("ana@clientmail.io",)
            )
            wait_until(
                lambda: row(
                    "SELECT 1 FROM mcsync.mailchimp_connections WHERE user_id = %s "
                    "AND sync_status = 'paused'"
                ),
                timeout=60,
            )
            expect(
                notice.get_by_text(
                    "Heads up\u2014email sync is paused right now. Your contacts are still safe."
                )
            ).to_be_visible(timeout=10000)
            expect(notice.get_by_role("button", name="Dismiss")).to_be_visible()
            _shot(page, "06-paused-notice")

            # Mailchimp recovers: the probe resumes the account, the notice goes, the edit lands.
            admin.clear_faults()
            expect(notice).to_be_hidden(timeout=30000)
            wait_until(
                lambda: (
                    {m["merge_fields"]["FNAME"] for m in admin.members("news")}
                    == {"Anabel", "Ben", "Cleo"}
                ),
                timeout=30,
            )
            _shot(page, "07-recovered")

            # Disconnect: credentials go, Mailchimp keeps its members.
            settings.get_by_role("button", name="Disconnect").click()
            settings.get_by_role("button", name="Yes, disconnect").click()
            expect(settings.get_by_text("Not connected")).to_be_visible()
            expect(settings.get_by_role("button", name="Connect Mailchimp")).to_be_focused()
            _shot(page, "08-disconnected")
            assert row("SELECT 1 FROM mcsync.mailchimp_connections WHERE user_id = %s") == []
            assert len(admin.members("news")) == 3

            # Login CSRF: an attacker begins a flow for their own user and gets a victim's
            # browser (one that never began it) to consent with the attacker's state. Refused;
            # nothing stored for anyone.
            attacker = uuid.uuid4()
            started = httpx.post(
                f"{web_server}/api/oauth/start",
                headers={**tokens.headers(attacker), "Origin": origin},
            ).json()
            begun = httpx.post(
                started["begin_url"], data={"state": started["state"]}, headers={"Origin": origin}
            )
            assert begun.status_code == 303
            lure = browser.new_page()  # a browser that never began this flow
            lure.goto(begun.headers["location"])
            lure.get_by_label("Account").select_option(account["account_id"])
            lure.get_by_role("button", name="Allow").click()
            expect(lure.get_by_role("heading", name="Not connected")).to_be_visible()
            expect(lure.get_by_role("status")).to_contain_text(
                "wasn't opened from the app in this browser"
            )
            _shot(lure, "09-other-browser-refused")
            assert (
                sync.execute(
                    "SELECT 1 FROM mcsync.mailchimp_connections WHERE user_id IN (%s, %s)",
                    (user, attacker),
                )
                == []
            )
        finally:
            browser.close()

    # Tokens expired mid-session many times; getToken handed fresh ones and mcsync never
    # answered the page 401. An expired token (past the 30 s clock-skew leeway) is refused, and
    # so is the first one, its key revoked.
    assert refused == []
    assert _status(web_server, tokens.token(user, ttl=-60)) == 401
    assert _status(web_server, first_token) == 401
    # Nothing the web process logged carries the token.
    assert account["access_token"] not in (ARTIFACTS / "mcsync-web.log").read_text()
