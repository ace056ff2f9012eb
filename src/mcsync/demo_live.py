"""The running parts of the interactive `mcsync demo`: `mcsync web` (with the demo's page) on a
background thread, and the watcher that prints one terminal line per change mirrored.

The watcher reads what actually reached the audience (the emulator's members) and the coach's
connection row, so a line is printed only once mcsync has done the work, whoever made the edit
(the demo page, psql, anything else writing to `contacts`)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import uvicorn

from mcsync import demo_store
from mcsync.config import Settings
from mcsync.demo_page import DemoSite, demo_router
from mcsync.emulator.admin_client import EmulatorAdmin


class DemoStartError(RuntimeError):
    """A part of the demo could not start; the message says what to do."""


class BackgroundWeb:
    """`mcsync web`'s app plus the demo page, served by uvicorn on a daemon thread."""

    def __init__(self, settings: Settings, site: DemoSite, *, port: int) -> None:
        from mcsync.web.app import create_app

        app = create_app(settings)
        app.include_router(demo_router(site))
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            access_log=False,  # the OAuth callback's query string holds a one-time code
            log_config=None,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="mcsync-web")
        self.thread.start()

    def wait_until_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise DemoStartError(
                    f"mcsync web could not listen on 127.0.0.1:{self.server.config.port}"
                    " (in use? choose another with --port)"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


Snapshot = dict[str, dict[str, Any]]  # Mailchimp's contact_id (kept across renames) -> member


def snapshot(members: list[dict[str, Any]]) -> Snapshot:
    return {m.get("contact_id") or m["id"]: m for m in members}


def member_changes(before: Snapshot, after: Snapshot) -> list[str]:
    """One line per member that differs between two listings of an audience (pure)."""
    lines = []
    for key, m in after.items():
        old = before.get(key)
        email = m["email_address"]
        if old is None:
            lines.append(f"added {email}" + _describe(m))
            continue
        parts = []
        if old["email_address"] != email:
            parts.append(f"email {old['email_address']} -> {email}")
        if old["status"] != m["status"]:
            parts.append(f"status {old['status']} -> {m['status']}")
        old_fields, new_fields = old.get("merge_fields") or {}, m.get("merge_fields") or {}
        for field in sorted(set(old_fields) | set(new_fields)):
            was, now = old_fields.get(field) or "", new_fields.get(field) or ""
            if was != now:
                parts.append(f"{field} {was!r} -> {now!r}")
        old_tags, new_tags = _tags(old), _tags(m)
        if old_tags != new_tags:
            change = [f"+{t}" for t in sorted(new_tags - old_tags)]
            change += [f"-{t}" for t in sorted(old_tags - new_tags)]
            parts.append("tags " + " ".join(change))
        if parts:
            lines.append(f"updated {email}: " + "; ".join(parts))
    for key, m in before.items():
        if key not in after:
            lines.append(f"removed {m['email_address']}")
    return lines


def _tags(m: dict[str, Any]) -> set[str]:
    return {t["name"] for t in m.get("tags") or []}


def _describe(m: dict[str, Any]) -> str:
    fields = m.get("merge_fields") or {}
    name = " ".join(p for p in (fields.get("FNAME"), fields.get("LNAME")) if p)
    bits = [m["status"]] + ([name] if name else []) + (
        ["tags " + ",".join(sorted(_tags(m)))] if _tags(m) else []
    )
    return " (" + "; ".join(bits) + ")"


class MirrorWatcher:
    """Prints what reached the coach's audience, and the coach's connection changes, as lines."""

    def __init__(
        self,
        database_url: str,
        emulator_url: str,
        user_id: uuid.UUID,
        *,
        audiences: tuple[str, ...] = (),
        say: Callable[[str], None] = print,
        interval: float = 0.5,
    ) -> None:
        """`audiences`: listed once now, so that everything mcsync adds to them later (the
        first full sync too) is told, and what was there before is not."""
        self.database_url = database_url
        self.admin = EmulatorAdmin(emulator_url)
        self.user_id = user_id
        self.say = say
        self.interval = interval
        self._stop = threading.Event()
        self.snapshots: dict[str, Snapshot] = {
            a: snapshot(self.admin.members(a)) for a in audiences
        }
        self.thread = threading.Thread(target=self._run, daemon=True, name="mirror-watcher")
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.admin.close()

    def _run(self) -> None:
        connection: tuple[Any, ...] | None = None
        snapshots = self.snapshots
        told: set[tuple[Any, ...]] = set()  # rejections already said
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                try:
                    rejected = demo_store.user_refusals(conn, self.user_id)
                    for contact_id, email, reason in rejected:
                        if (contact_id, email, reason) not in told:
                            self.say(f"  not synced: {email!r}: {reason}")
                    told = set(rejected)
                    row = demo_store.demo_connection(conn, self.user_id)
                    if row != connection:
                        self._connection_changed(connection, row)
                        connection = row
                    audience_id = row[1] if row else None
                    if not audience_id:
                        continue
                    members = snapshot(self.admin.members(audience_id))
                    if audience_id in snapshots:
                        for line in member_changes(snapshots[audience_id], members):
                            self.say(f"  mirrored to \u201c{row[2]}\u201d: {line}")
                    snapshots[audience_id] = members
                except Exception as exc:  # the demo is stopping, or a blip: say it, go on
                    if not self._stop.is_set():
                        self.say(f"  (watcher: {type(exc).__name__}: {exc})")

    def _connection_changed(
        self, before: tuple[Any, ...] | None, now: tuple[Any, ...] | None
    ) -> None:
        if now is None:
            if before is not None:
                self.say("  the coach disconnected Mailchimp (the audience is left as it is)")
            return
        account, audience_id, audience_name, status = now
        if before is None:
            self.say(f"  the coach connected Mailchimp account \u201c{account}\u201d")
        if audience_id and (before is None or before[1] != audience_id):
            self.say(
                f"  audience \u201c{audience_name}\u201d chosen: the first full sync starts"
            )
        if before is not None and before[3] != status:
            self.say(f"  sync status: {before[3]} -> {status}")
