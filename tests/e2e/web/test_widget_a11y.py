"""The widget's first load, and its keyboard and screen-reader behaviour, in headless Chromium.

Against real servers on loopback: `mcsync web` (a subprocess), the emulator, real Postgres, and a
host page on another origin. axe-core (the copy `axe-playwright-python` ships) checks every state
for violations; these tests also check what axe cannot see: where the keyboard focus goes after
each step, Escape on the disconnect confirmation, a live region that exists before it is filled,
the status dot's contrast, and that the panel and the notice agree with the server at once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import (
    ARTIFACTS,
    FLAGS,
    app_user_token,
    axe_violations,
    contrast_ratio,
    focused,
    forged_user_token,
    free_port,
    host_page,
    mcsync_web,
    require_chromium,
    tab_to,
    web_env,
)
from tests.support.harness import SyncHarness, wait_until

CHROMIUM = require_chromium()

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(240)

CLIENT_ID, CLIENT_SECRET = "coach-app", "coach-app-secret"
NOTE = "Contacts sync automatically. You don't need to do anything."
PAUSED = "Heads up\u2014email sync is paused right now. Your contacts are still safe."

# The docs' "Embed the widget" order: the widget's module first, then the app's module that hands
# over the token, later still (as after an async session lookup). The notice below gets its token
# the other way, as a property set before the element is upgraded.
LATE_TOKEN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Coach app</title>
<script type="module" src="{web}/static/mcsync.js"></script></head>
<body><main><h1>Settings</h1>
  <mcsync-settings api-base="{web}" poll-interval="1"></mcsync-settings>
  <mcsync-notice api-base="{web}" poll-interval="1"></mcsync-notice>
</main>
<script>
  window.jwt = "{bad}";
  document.querySelector("mcsync-notice").getToken = async () => window.jwt;
</script>
<script type="module">
  await new Promise((done) => setTimeout(done, 700));
  document.querySelector("mcsync-settings").getToken = async () => window.jwt;
</script>
</body></html>"""

KEYBOARD_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Coach app</title>
<script type="module" src="{web}/static/mcsync.js"></script></head>
<body><main><h1>Settings</h1>
  <mcsync-settings api-base="{web}" poll-interval="1"></mcsync-settings>
  <h2>Coach</h2>
  <mcsync-notice api-base="{web}" poll-interval="600"></mcsync-notice>
  <a href="#sessions">Today's sessions</a>
</main>
<script type="module">
  for (const el of document.querySelectorAll("mcsync-settings, mcsync-notice")) {{
    el.getToken = async () => "{jwt}";
  }}
</script>
</body></html>"""


@pytest.fixture
def stack(db_url: str, emulator: Any) -> Iterator[tuple[SyncHarness, str, Any, str]]:
    """(harness, app origin, host page handler, mcsync web URL)."""
    sync = SyncHarness(db_url, emulator)
    with host_page() as (origin, handler):
        port = free_port()
        web = f"http://127.0.0.1:{port}"
        sync.admin.register_oauth_client(CLIENT_ID, CLIENT_SECRET, f"{web}/oauth/callback")
        env = web_env(
            db_url,
            emulator,
            port,
            (CLIENT_ID, CLIENT_SECRET),
            MCSYNC_WEB_PORT=str(port),
            MCSYNC_APP_ORIGIN=origin,
        )
        with mcsync_web(env, "a11y-mcsync-web.log") as url:
            yield sync, origin, handler, url


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _shadow_text(page: Page, tag: str, selector: str) -> str:
    return str(
        page.evaluate(
            "([tag, sel]) => document.querySelector(tag).shadowRoot.querySelector(sel).textContent",
            [tag, selector],
        )
    )


def test_first_load_waits_for_the_token_and_takes_back_sign_in_again(
    stack: tuple[SyncHarness, str, Any, str], browser: Any
) -> None:
    sync, origin, handler, web = stack
    user = sync.add_user()
    bad = forged_user_token(user.user_id)
    handler.body = LATE_TOKEN_PAGE.format(web=web, bad=bad).encode()
    page = browser.new_page()
    answers: list[tuple[str | None, int]] = []
    page.on(
        "response",
        lambda r: (
            answers.append((r.request.headers.get("authorization"), r.status))
            if r.url.endswith("/api/status")
            else None
        ),
    )
    page.goto(origin)
    settings = page.locator("mcsync-settings")
    message = settings.get_by_role("status")

    # A token that does not verify: "Sign in again", from calls that did carry a token.
    expect(message).to_have_text("Sign in again to manage email sync.", timeout=10000)
    assert answers and all(auth for auth, _ in answers), answers  # never asked anonymously
    expect(settings.get_by_text("Not available right now")).to_be_visible()

    # The app's session refreshes: the next poll succeeds and the message goes away.
    page.evaluate(f"window.jwt = {app_user_token(user.user_id)!r}")
    expect(settings.get_by_text('Connected to "Audience"')).to_be_visible(timeout=10000)
    expect(message).to_have_text("")
    expect(settings.get_by_text(NOTE)).to_be_visible()
    assert all(auth for auth, _ in answers), answers

    # Paused: the notice, and not "you don't need to do anything" beside it.
    sync.execute(
        "UPDATE mcsync.mailchimp_connections SET sync_status = 'paused' WHERE user_id = %s",
        (user.user_id,),
    )
    expect(settings.get_by_text(PAUSED)).to_be_visible(timeout=10000)
    expect(settings.get_by_text(NOTE)).to_be_hidden()
    expect(page.locator("mcsync-notice").get_by_text(PAUSED)).to_be_visible(timeout=10000)


def test_a_widget_upgraded_before_its_token_never_calls_without_one(
    stack: tuple[SyncHarness, str, Any, str], browser: Any
) -> None:
    sync, origin, handler, web = stack
    user = sync.add_user()
    good = app_user_token(user.user_id)
    handler.body = LATE_TOKEN_PAGE.format(web=web, bad=good).encode()
    page = browser.new_page()
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if "/api/" in r.url else None)
    page.goto(origin)
    settings = page.locator("mcsync-settings")
    # Shown as soon as the token arrives (the 1 s poll is not what fills it: the first answer
    # is there well before the second poll could be).
    expect(settings.get_by_text('Connected to "Audience"')).to_be_visible(timeout=5000)
    expect(settings.get_by_role("button", name="Sync Now")).to_be_visible()
    expect(settings.get_by_role("status")).to_have_text("")
    page.wait_for_timeout(1500)
    assert statuses and 401 not in statuses, statuses


def _dot_contrast(page: Page) -> float:
    rgb = page.evaluate(
        """() => getComputedStyle(document.querySelector("mcsync-settings").shadowRoot
                 .querySelector(".dot")).backgroundColor"""
    )
    r, g, b = (int(n) for n in re.findall(r"\d+", rgb)[:3])
    return contrast_ratio((r, g, b), (255, 255, 255))


def _no_axe_violations(page: Page, state: str) -> None:
    found = axe_violations(page)
    assert found == [], f"axe-core, {state}: {found}"


def _select_agrees_with_status(page: Page) -> bool:
    value, state = page.evaluate(
        """() => { const r = document.querySelector("mcsync-settings").shadowRoot;
                   return [r.querySelector("select").value,
                           r.querySelector(".state").textContent]; }"""
    )
    names = {"clients": "Clients", "news": "Newsletter"}
    if value:
        return bool(state == f'Connected to "{names[value]}"')
    return bool(state == "Connected \u2014 choose an audience")


def _connect_with_keyboard(page: Page, account_id: str) -> None:
    """Tab to Connect, press Enter, and allow on the emulator's consent screen (which starts
    with no account chosen)."""
    tab_to(page, "Connect Mailchimp")
    with page.expect_popup() as opened:
        page.keyboard.press("Enter")
    popup = opened.value
    popup.wait_for_load_state()
    account = popup.get_by_label("Account")
    expect(account).to_have_value("")
    account.select_option(account_id)
    with popup.expect_event("close", timeout=15000):
        popup.get_by_role("button", name="Allow").press("Enter")


def test_keyboard_only_connect_choose_sync_pause_dismiss_disconnect_reconnect(
    stack: tuple[SyncHarness, str, Any, str], browser: Any
) -> None:
    sync, origin, handler, web = stack
    account = sync.admin.create_account(
        dc="us9",
        account_name="Sam's Coaching",
        audiences=[{"id": "clients", "name": "Clients"}, {"id": "news", "name": "Newsletter"}],
    )
    user = uuid.uuid4()
    handler.body = KEYBOARD_PAGE.format(web=web, jwt=app_user_token(user)).encode()
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(origin)
    settings = page.locator("mcsync-settings")
    notice = page.locator("mcsync-notice")
    message = settings.get_by_role("status")
    expect(settings.get_by_text("Not connected")).to_be_visible()
    assert _dot_contrast(page) >= 3.0, _dot_contrast(page)  # non-text contrast, the grey dot
    # The notice's live region is in the accessibility tree from the start, empty.
    assert page.evaluate(
        """() => { const t = document.querySelector("mcsync-notice").shadowRoot
                     .querySelector("[role=status]");
                   window.noticeRegion = t;
                   return t.textContent === "" && t.getClientRects().length > 0; }"""
    )
    _no_axe_violations(page, "not connected")

    # Connect: the focus lands on the audience picker (the Connect button is gone).
    _connect_with_keyboard(page, account["account_id"])
    expect(settings.get_by_text("Connected \u2014 choose an audience")).to_be_visible()
    wait_until(lambda: focused(page).startswith("select#mcsync-audience"), timeout=10)
    assert _select_agrees_with_status(page)
    _no_axe_violations(page, "choose an audience")

    # Choose with the arrow key, Tab to "Use this audience", Enter: focus stays on the button.
    page.keyboard.press("ArrowDown")
    expect(settings.get_by_label("Audience")).to_have_value("clients")
    page.keyboard.press("Tab")
    assert "Use this audience" in focused(page)
    page.keyboard.press("Enter")
    expect(settings.get_by_text('Connected to "Clients"')).to_be_visible()
    expect(message).to_contain_text("Contacts will sync to")
    assert "Use this audience" in focused(page), focused(page)
    wait_until(lambda: _select_agrees_with_status(page), timeout=10)

    # Sync Now from the keyboard: the focus stays on it.
    tab_to(page, "Sync Now")
    page.keyboard.press("Enter")
    expect(message).to_contain_text("Sync started")
    assert "Sync Now" in focused(page), focused(page)
    _no_axe_violations(page, "connected")

    # Paused while the page is open: the region that was there all along gets the words.
    sync.execute(
        "UPDATE mcsync.mailchimp_connections SET sync_status = 'paused' WHERE user_id = %s",
        (user,),
    )
    expect(notice.get_by_text(PAUSED)).to_be_visible(timeout=10000)
    assert page.evaluate("() => window.noticeRegion.isConnected && window.noticeRegion.textContent")
    expect(settings.get_by_text(NOTE)).to_be_hidden()
    _no_axe_violations(page, "paused")
    # Dismiss from the keyboard: the focus moves on to the next thing in the page.
    tab_to(page, "Dismiss")
    page.keyboard.press("Enter")
    expect(notice.get_by_text(PAUSED)).to_be_hidden()
    assert "Today's sessions" in focused(page), focused(page)

    # Escape closes the disconnect confirmation and gives the focus back to Disconnect.
    tab_to(page, "Disconnect")
    page.keyboard.press("Enter")
    assert "Yes, disconnect" in focused(page)
    _no_axe_violations(page, "confirming disconnect")
    page.keyboard.press("Escape")
    expect(settings.get_by_role("button", name="Yes, disconnect")).to_be_hidden()
    assert "Disconnect" in focused(page) and "Yes" not in focused(page), focused(page)

    # Paused again and not dismissed; Disconnect clears the notice at once (its own poll is
    # 10 minutes away: the panel's news is what clears it).
    sync.execute(
        "UPDATE mcsync.mailchimp_connections SET sync_status = 'active' WHERE user_id = %s",
        (user,),
    )
    # The panel's next poll tells the notice: not paused, so the dismissal is over.
    wait_until(lambda: notice.evaluate("el => el.dismissed === false"), timeout=15)
    sync.execute(
        "UPDATE mcsync.mailchimp_connections SET sync_status = 'paused' WHERE user_id = %s",
        (user,),
    )
    expect(notice.get_by_text(PAUSED)).to_be_visible(timeout=10000)
    page.keyboard.press("Enter")  # focus is on Disconnect
    page.keyboard.press("Enter")  # "Yes, disconnect"
    expect(settings.get_by_text("Not connected")).to_be_visible()
    expect(notice.get_by_text(PAUSED)).to_be_hidden(timeout=2000)
    assert "Connect Mailchimp" in focused(page), focused(page)
    page.screenshot(path=str(ARTIFACTS / "a11y-disconnected.png"), full_page=True)

    # Reconnect in the same page: the picker and the status agree.
    page.keyboard.press("Shift+Tab")
    _connect_with_keyboard(page, account["account_id"])
    expect(settings.locator(".state")).to_have_text(re.compile("^Connected"))
    wait_until(lambda: focused(page) != "BODY" and "Connect Mailchimp" not in focused(page))
    wait_until(lambda: _select_agrees_with_status(page), timeout=10)
    _no_axe_violations(page, "reconnected")
