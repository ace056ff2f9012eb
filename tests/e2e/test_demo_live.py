"""`mcsync demo` as a newcomer uses it: one process, one URL, in headless Chromium.

The demo runs as a real process (embedded PostgreSQL, emulator, worker, `mcsync web` and its
demo page). The test opens the page, connects through the emulator's consent screen (no account
chosen beforehand), chooses an audience, edits a contact on the page and with SQL, and sees each
change in the audience beside the contacts and as a line in the demo's terminal. SIGTERM then
stops everything: the embedded PostgreSQL is no longer running and its directory is gone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from benchmarks.processes import stop_process

from tests.support.browser import ARTIFACTS, FLAGS, axe_violations, free_port, require_chromium
from tests.support.harness import wait_until

CHROMIUM = require_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(240)


class DemoProcess:
    """`mcsync demo` with its terminal output collected in a file."""

    def __init__(self, port: int) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / "demo-terminal.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "mcsync.cli", "demo", "--port", str(port),
             "--emulator-port", "0"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the demo exited:\n{self.output}")
            match = re.search(pattern, self.output)
            if match:
                found.append(match)
            return match is not None

        wait_until(seen, timeout=timeout, interval=0.2)
        return found[0]

    def close(self) -> None:
        # SIGTERM first (a failed test still stops the embedded PostgreSQL), then SIGKILL.
        stop_process(self.proc, grace=20)
        self._log.close()


@pytest.fixture
def demo() -> Iterator[tuple[DemoProcess, str]]:
    port = free_port()
    running = DemoProcess(port)
    try:
        running.wait_for(re.escape(f"Open http://127.0.0.1:{port}/"), timeout=120)
        yield running, f"http://127.0.0.1:{port}/"
    finally:
        running.close()


def test_one_url_connect_choose_edit_and_watch_then_sigterm_cleans_up(
    demo: tuple[DemoProcess, str],
) -> None:
    process, url = demo
    database_url = process.wait_for(r"psql '([^']+)'").group(1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        shown = conn.execute("SHOW data_directory").fetchone()
    assert shown is not None
    data_dir = Path(str(shown[0]))
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            settings = page.locator("mcsync-settings")
            members = page.locator("#members")
            contacts = page.locator("#contacts")
            expect(settings.get_by_text("Not connected")).to_be_visible(timeout=15000)
            expect(contacts).to_contain_text("ana.silva@coachmail.io")
            assert axe_violations(page) == []

            # The emulator's consent screen: no account chosen until the newcomer picks one.
            with page.expect_popup() as opened:
                settings.get_by_role("button", name="Connect Mailchimp").click()
            popup = opened.value
            popup.wait_for_load_state()
            account = popup.get_by_label("Account")
            expect(account).to_have_value("")
            account.select_option(label="Sunrise Coaching (us1)")
            with popup.expect_event("close", timeout=15000):
                popup.get_by_role("button", name="Allow").click()

            # Two audiences: choose one in the widget; the first full sync fills it.
            settings.get_by_label("Audience").select_option(label="Sunrise Newsletter")
            settings.get_by_role("button", name="Use this audience").click()
            expect(settings.get_by_text('Connected to "Sunrise Newsletter"')).to_be_visible()
            expect(members).to_contain_text("ana.silva@coachmail.io", timeout=30000)
            expect(members).to_contain_text("walkin@coachmail.io")  # left alone
            process.wait_for(r"mirrored to .Sunrise Newsletter.: added ana\.silva@coachmail\.io")
            # The typo is not synced, and the page and the terminal say why.
            expect(contacts).to_contain_text("not synced: invalid email address", timeout=15000)
            process.wait_for(r"not synced: 'not-an-email': invalid email address")
            page.screenshot(path=str(ARTIFACTS / "demo-connected.png"), full_page=True)

            # Edit on the page: rename and tag Ana; the audience and the terminal follow.
            page.get_by_role("button", name="Edit Ana Silva").click()
            page.get_by_label("First name").fill("Anna")
            page.get_by_label("Tags (comma-separated)").fill("client, vip, workshop")
            page.get_by_role("button", name="Save changes").click()
            ana = members.locator("tr", has_text="ana.silva@coachmail.io")
            expect(ana).to_contain_text("Anna Silva", timeout=30000)
            expect(ana).to_contain_text("workshop")
            process.wait_for(
                r"updated ana\.silva@coachmail\.io: FNAME 'Ana' -> 'Anna'; tags \+workshop"
            )

            # An edit made with SQL, as the printed psql line suggests, shows up the same way.
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    "UPDATE contacts SET last_name = 'Okafor-Reid' WHERE first_name = 'Ben'"
                )
            expect(members).to_contain_text("Ben Okafor-Reid", timeout=30000)
            # (Mailchimp keeps the address as written, case and all.)
            process.wait_for(r"updated Ben\.Okafor@CoachMail\.io: LNAME 'Okafor' -> 'Okafor-Reid'")
            page.screenshot(path=str(ARTIFACTS / "demo-edited.png"), full_page=True)
        finally:
            browser.close()

    # One line per change: the rename and tag came as one line, not several.
    assert len(re.findall(r"updated ana\.silva", process.output)) == 1, process.output

    process.proc.send_signal(signal.SIGTERM)
    assert process.proc.wait(30) == 0, process.output
    deadline = time.monotonic() + 10
    while _alive(postmaster) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(postmaster), "SIGTERM left the embedded PostgreSQL running"
    assert not data_dir.exists(), f"{data_dir} left behind"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
