"""The operator's page in headless Chromium, against real servers on loopback:

`mcsync web` (a subprocess, as deployed, logged in as the mcsync_web role, operators chosen by
an `app_metadata` claim), the worker's outcomes made beforehand by the real worker, and the
Mailchimp emulator (a background thread).

an app user who is no operator opens /admin and is turned away (the API answers 403) -> the
operator signs in, filters the overview to paused users, opens the paused one, reads the
rejected contact's reason from Mailchimp, runs the audit and sees the hand-made drift, resumes
the connection -> the worker then catches up -> Sync Now repairs the drift and the audit finds
none -> the refused contact is retried (and refused again, its reason kept) -> Disconnect asks
for the user id first; text from outside is never run as HTML. Screenshots go to
test-artifacts/ (docs/images/ holds copies of `admin-overview.png` and `admin-user.png`).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.web.admin_support import SYNCED, make_scenario, status_of, token
from tests.support.browser import FLAGS, free_port, require_chromium, web_env, web_process
from tests.support.harness import SyncHarness, wait_until

CHROMIUM = require_chromium()

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(240)

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "admin-browser"
STAFF = {"app_metadata": {"mcsync_role": "operator"}}
XSS = '<img src=x onerror="window.pwned=1">'


@pytest.fixture
def web_server(db_url: str, emulator: Any) -> Iterator[str]:
    """`mcsync web` as a subprocess, configured through the environment as in production."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = web_env(
        db_url,
        emulator,
        port,
        ("coach-app", "coach-app-secret"),
        MCSYNC_OPERATOR_CLAIM="app_metadata.mcsync_role=operator",
    )
    with web_process(env, ARTIFACTS / "mcsync-web.log", port):
        yield url


def _drain(sync: SyncHarness) -> None:
    """`worker --once` in a thread of its own: playwright holds this thread's event loop."""
    drain = threading.Thread(target=sync.drain)
    drain.start()
    drain.join(30)


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_operator_finds_the_paused_user_reads_the_reason_audits_and_resumes(
    db_url: str, emulator: Any, web_server: str
) -> None:
    sync = SyncHarness(db_url, emulator, mcsync_backoff_scale=0.01)
    scenario = make_scenario(sync)
    paused_id = str(scenario.paused.user_id)
    coach = token(scenario.busy.user_id)  # an app user, not staff
    operator = token(uuid.uuid4(), **STAFF)

    denied = httpx.get(
        f"{web_server}/admin/api/overview", headers={"Authorization": f"Bearer {coach}"}
    )
    assert denied.status_code == 403

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            # An app user who is no operator: turned away, nothing shown.
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{web_server}/admin#token={coach}")
            expect(page.get_by_role("status")).to_contain_text("for the app's operators")
            expect(page.get_by_role("heading", name="Overview")).to_be_hidden()
            assert coach not in page.url  # the handed-over token is wiped from the address
            page.close()

            # The operator signs in with their token.
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{web_server}/admin")
            page.get_by_label("Operator access token").fill(operator)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Overview")).to_be_visible()
            totals = page.locator("#totals")
            expect(totals).to_contain_text("Connected users3")
            expect(totals).to_contain_text("Paused1")
            expect(totals).to_contain_text("Rejected contacts1")
            _shot(page, "admin-overview")

            # Only the paused ones.
            page.get_by_label("State").select_option(label="Paused")
            page.get_by_role("button", name="Apply").click()
            expect(page.get_by_text("Page 1 of 1 (1 matching)")).to_be_visible()
            table = page.get_by_role("table", name="Connections")
            expect(table.get_by_role("cell", name="paused (failures)", exact=True)).to_be_visible()

            # Open it: the health history, the rejected contact with Mailchimp's reason.
            page.get_by_role("link", name=f"Open user {paused_id}").click()
            expect(page.get_by_role("heading", name=f"User {paused_id}")).to_be_visible()
            rejected = page.locator("#rejected")
            expect(rejected).to_contain_text(str(scenario.fake_contact))
            expect(rejected).to_contain_text("looks fake or invalid")
            expect(rejected).to_contain_text("t***@example.com")
            expect(page.locator("#health")).to_contain_text("paused")
            expect(page.locator("#pending")).to_contain_text("upsert")

            # The audit, on request: the member changed by hand.
            page.get_by_role("button", name="Run audit").click()
            expect(page.get_by_role("status")).to_contain_text("differences found")
            expect(page.locator("#audit")).to_contain_text("FNAME: 'Rosie' -> 'Rosa'")
            _shot(page, "admin-user")

            # Resume: the probe answers, the connection is active again.
            page.get_by_role("button", name="Probe now / resume").click()
            expect(page.get_by_role("status")).to_contain_text("syncing resumed")
            expect(page.locator("#user-facts")).to_contain_text("Stateactive")
            expect(page.locator("#health")).to_contain_text("resumed")
            assert status_of(sync, scenario.paused) == "active"
            _drain(sync)
            wait_until(lambda: "late.lou@coachmail.io" in sync.members(scenario.paused), 10)

            # Sync Now (no hourly limit) repairs the drift; the audit then finds none.
            page.get_by_role("button", name="Sync Now").click()
            expect(page.get_by_role("status")).to_contain_text("Sync Now")
            wait_until(
                lambda: sync.execute(
                    "SELECT finished_at FROM mcsync.mcsync_reconciliations WHERE user_id = %s",
                    (scenario.paused.user_id,),
                )[0]["finished_at"],
                15,
            )
            _drain(sync)
            assert sync.members(scenario.paused)[SYNCED]["merge_fields"]["FNAME"] == "Rosa"
            page.get_by_role("button", name="Run audit").click()
            expect(page.get_by_role("status")).to_contain_text("Audit done: in sync.")
            expect(page.get_by_text("In sync: the audience mirrors the contacts.")).to_be_visible()

            # Retry the refused contact: queued again, refused again with the reason kept.
            page.get_by_role("button", name="Retry rejected contacts").click()
            expect(page.get_by_role("status")).to_contain_text("1 contact(s) queued again")
            expect(page.locator("#pending")).to_contain_text("resync")
            _drain(sync)
            page.reload()
            expect(page.locator("#rejected")).to_contain_text("looks fake or invalid")
            expect(page.locator("#health")).to_contain_text("retry_rejected")

            # Attack: text that reaches the page from outside (a reason, an audience name) is
            # shown as text, never run or parsed as HTML.
            sync.execute(
                "INSERT INTO mcsync.mailchimp_rejected_contacts"
                " (user_id, contact_id, severity, reason)"
                " VALUES (%s, gen_random_uuid(), 'warning', %s)",
                (scenario.paused.user_id, XSS),
            )
            sync.execute(
                "UPDATE mcsync.mailchimp_connections SET audience_name = %s WHERE user_id = %s",
                (XSS, scenario.quiet.user_id),
            )
            page.reload()
            expect(page.locator("#rejected")).to_contain_text(XSS)
            assert page.locator("#rejected img").count() == 0
            page.get_by_role("button", name="← All users").click()
            expect(page.locator("#connections")).to_contain_text(XSS)
            assert page.locator("#connections img").count() == 0
            assert page.evaluate("window.pwned") is None
            page.get_by_role("link", name=f"Open user {paused_id}").click()
            expect(page.get_by_role("heading", name=f"User {paused_id}")).to_be_visible()

            # Disconnect asks first; a wrong confirmation changes nothing.
            page.get_by_role("button", name="Disconnect…").click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_be_visible()
            dialog.get_by_label("Type the user id to confirm").fill("not-this-one")
            dialog.get_by_role("button", name="Disconnect").click()
            expect(page.get_by_role("status")).to_contain_text("nothing was changed")
            assert status_of(sync, scenario.paused) == "active"
        finally:
            browser.close()
