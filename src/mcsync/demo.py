"""`mcsync demo`: everything on one machine, nothing to configure.

An embedded PostgreSQL, the Mailchimp emulator, the migrations, a coach with sample contacts, the
worker and `mcsync web`, with a page of the demo's own (demo_page.py) that embeds the real widget
for the coach: open it, connect through the emulator's consent screen, choose an audience, and
edit contacts there (or with psql) while the audience follows beside them; the terminal prints
one line per change mirrored (Ctrl-C or SIGTERM stops everything and removes the database).
`--once` runs a script instead: connects the coach directly, syncs, edits, prints the contacts
beside the audience, and exits 0 when Mailchimp matches the contacts.

The demo plays both sides. As the app, it creates the example `contacts` table and writes to
it by its column names (the built-in source mapping describes that table); as mcsync, it reads
contacts only through the mapping's view, like the worker and Sync Now (docs/mapping.md)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from cryptography.fernet import Fernet

from mcsync import demo_store
from mcsync.config import Settings
from mcsync.connections import connect_user
from mcsync.crypto import TokenCipher
from mcsync.embedded import start_embedded_postgres
from mcsync.migrate import SQL_DIR, apply_migrations
from mcsync.mirror import Contact, desired_members
from mcsync.reconcile_store import user_contacts
from mcsync.source import DEFAULT_MAPPING
from mcsync.worker.runner import WorkerService

if TYPE_CHECKING:
    from mcsync.emulator.testing import EmulatorHandle

SAMPLE_CONTACTS: list[dict[str, Any]] = [
    {
        "first_name": "Ana",
        "last_name": "Silva",
        "email": "ana.silva@coachmail.io",
        "phone": "404-555-0101",
        "tags": ["client", "vip"],
        "notes": "prefers mornings",
    },
    {
        "first_name": "Ben",
        "last_name": "Okafor",
        "email": "  Ben.Okafor@CoachMail.io ",
        "phone": None,
        "tags": ["lead"],
        "notes": None,
    },
    {
        "first_name": "Chloé",
        "last_name": "Dubois",
        "email": "chloe@coachmail.io",
        "phone": "404-555-0103",
        "tags": ["client"],
        "notes": "met at the retreat",
    },
    {
        "first_name": "Dev",
        "last_name": "Patel",
        "email": None,
        "phone": "404-555-0104",
        "tags": ["lead"],
        "notes": "no email yet: not synced",
    },
    {
        "first_name": "Eve",
        "last_name": "Adams",
        "email": "not-an-email",
        "phone": None,
        "tags": [],
        "notes": "a typo: recorded as rejected",
    },
]


def _contacts(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> list[Contact]:
    """The coach's contacts as mcsync reads them (through the source mapping's view)."""
    found = user_contacts(conn, user_id)
    return sorted(found, key=lambda c: (c.field("FNAME") or "", str(c.id)))


def _print_side_by_side(
    conn: psycopg.Connection[Any], user_id: uuid.UUID, members: list[dict[str, Any]]
) -> None:
    contacts = _contacts(conn, user_id)
    by_email = {m["email_address"].lower(): m for m in members}
    print(f"\n{'APP CONTACT':<34}{'EMAIL':<30}| {'MAILCHIMP MEMBER':<30}{'STATUS':<12}TAGS")
    print("-" * 120)
    for contact in contacts:
        email = contact.email
        name = f"{contact.field('FNAME') or ''} {contact.field('LNAME') or ''}"
        key = (email or "").strip().lower()
        m = by_email.pop(key, None)
        right = (
            (
                f"{m['email_address']:<30}{m['status']:<12}"
                + ",".join(sorted(t["name"] for t in m["tags"]))
            )
            if m
            else "(not synced)"
        )
        print(f"{name:<34}{(email or '-')[:29]:<30}| {right}")
    for m in by_email.values():
        tags = ",".join(sorted(t["name"] for t in m["tags"]))
        print(f"{'(no contact)':<34}{'':<30}| {m['email_address']:<30}{m['status']:<12}{tags}")
    print()


def _mirror_matches(
    conn: psycopg.Connection[Any], user_id: uuid.UUID, members: list[dict[str, Any]]
) -> list[str]:
    contacts = _contacts(conn, user_id)
    wanted = desired_members(contacts)
    have = {m["id"]: m for m in members if m["status"] != "archived"}
    problems = []
    for h, d in wanted.items():
        m = have.get(h)
        if m is None:
            problems.append(f"missing member {d.email}")
            continue
        for k, v in d.merge_fields.items():
            if (m["merge_fields"].get(k) or "") != v:
                problems.append(f"{d.email}: {k} is {m['merge_fields'].get(k)!r}, want {v!r}")
        tags = {t["name"].casefold() for t in m["tags"]}
        missing = [t for t in d.tags if t.casefold() not in tags]
        if missing:
            problems.append(f"{d.email}: missing tags {missing}")
    for h, m in have.items():
        if h not in wanted:
            problems.append(f"unexpected member {m['email_address']}")
    return problems


DEMO_AUDIENCE = {"id": "demo1234", "name": "Sunrise Newsletter"}
# The live demo's account has a second audience, so the newcomer chooses one in the widget.
SECOND_AUDIENCE = {"id": "demo5678", "name": "Workshop Leads"}
DEMO_ACCOUNT_NAME = "Sunrise Coaching"
WALK_IN = "walkin@coachmail.io"  # a member who signed up elsewhere: mcsync must leave them alone
DEMO_CLIENT_ID, DEMO_CLIENT_SECRET = "mcsync-demo", "mcsync-demo-secret"


def run_demo(*, once: bool = False, port: int = 8000, emulator_port: int = 8765) -> int:
    """Run the demo; with `once`, exit 0 when the audience mirrors the contacts, else 1.

    Live (not `once`), `mcsync web` with the demo page listens on 127.0.0.1:`port` and the
    emulator on `emulator_port` (0 for any free port) until Ctrl-C or SIGTERM."""
    from mcsync.emulator.testing import running_emulator

    print("mcsync demo: starting an embedded PostgreSQL and the Mailchimp emulator...", flush=True)
    with _stopped_by_sigterm(), _embedded_database() as pg_url:
        key = Fernet.generate_key().decode()
        with (
            running_emulator(port=0 if once else emulator_port) as emu,
            psycopg.connect(pg_url, autocommit=True) as conn,
        ):
            _prepare_database(conn, pg_url)
            user_id = uuid.uuid4()
            _add_sample_contacts(conn, user_id)
            if not once:
                _run_live(pg_url, emu, key, user_id, port)
                return 0
            _connect_sample_coach(conn, emu, key, user_id)
            worker = _BackgroundWorker(_demo_settings(pg_url, key, emu))
            try:
                _wait_for_sync(conn)
                _edit_like_a_coach(conn)
                problems = _show_the_mirror(conn, emu, user_id)
            finally:
                worker.stop()
            return 0 if not problems else 1


@contextmanager
def _embedded_database() -> Iterator[str]:
    """A private PostgreSQL for this run; stopped and its directory removed afterwards."""
    pg = start_embedded_postgres()
    try:
        yield pg.url
    finally:
        pg.stop()


@contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM stops the demo like Ctrl-C, so the embedded PostgreSQL is stopped and removed
    on the way out (the default action would end the process and leave the server running)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        before = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (the demo called from a test, say): nothing to do
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _prepare_database(conn: psycopg.Connection[Any], url: str) -> None:
    """The app's example contacts table, then mcsync's migrations with the built-in mapping
    (the example table is the schema it describes)."""
    conn.execute((SQL_DIR / "example_contacts.sql").read_text().encode())
    applied = apply_migrations(url, mapping=DEFAULT_MAPPING)
    print(f"  migrations applied: {', '.join(applied) or 'none'}")


def _add_sample_contacts(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> None:
    """The coach's contacts, written as the app writes them."""
    for c in SAMPLE_CONTACTS:
        demo_store.add_sample_contact(conn, {**c, "user_id": user_id})


def _connect_sample_coach(
    conn: psycopg.Connection[Any], emu: EmulatorHandle, key: str, user_id: uuid.UUID
) -> None:
    """A Mailchimp account with one outside member, and the coach's connection to it."""
    queued = connect_emulator_account(
        conn,
        TokenCipher([key]),
        emu,
        user_id=user_id,
        account_name=DEMO_ACCOUNT_NAME,
        audience=DEMO_AUDIENCE,
    )
    # Added before the worker starts, so the first sync finds them already there.
    emu.admin.add_member(DEMO_AUDIENCE["id"], WALK_IN, status="subscribed", tags=["website-signup"])
    print(f"  connected coach {user_id}: {queued} contacts queued for the first sync")


def connect_emulator_account(
    conn: psycopg.Connection[Any],
    cipher: TokenCipher,
    emu: EmulatorHandle,
    *,
    user_id: uuid.UUID,
    account_name: str,
    audience: dict[str, str],
) -> int:
    """Create a Mailchimp account (dc us1) with one `audience` ({"id", "name"}) in the emulator
    and connect `user_id` to it, as the OAuth popup would (the demo's setup; benchmarks and other
    local runs can share it). Returns how many contacts were queued for the first full sync."""
    account = emu.admin.create_account(dc="us1", account_name=account_name, audiences=[audience])
    return connect_user(
        conn,
        cipher,
        user_id=user_id,
        access_token=account["access_token"],
        dc="us1",
        api_endpoint=emu.url,
        account_name=account_name,
        audience_id=audience["id"],
        audience_name=audience["name"],
    )


def _demo_settings(database_url: str, key: str, emu: EmulatorHandle) -> Settings:
    return Settings(
        database_url=database_url,
        mcsync_encryption_keys=key,
        mailchimp_api_url=emu.api_url,
        mailchimp_login_url=emu.login_url,
        mcsync_poll_interval=1.0,
    )


class _BackgroundWorker:
    """The worker on its own event loop in a daemon thread, so the demo can talk meanwhile."""

    def __init__(self, settings: Settings) -> None:
        self.worker = WorkerService(settings)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.worker.run(),), daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(20)


def _wait_for_sync(conn: psycopg.Connection[Any], timeout: float = 30) -> None:
    """Until the queue is empty (or `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not demo_store.queue_has_work(conn):
            return
        time.sleep(0.1)


def _edit_like_a_coach(conn: psycopg.Connection[Any]) -> None:
    """Tag, rename, and edit a column mcsync does not sync; then wait for the worker."""
    demo_store.edit_like_a_coach(conn)
    time.sleep(0.3)
    _wait_for_sync(conn)


def _show_the_mirror(
    conn: psycopg.Connection[Any], emu: EmulatorHandle, user_id: uuid.UUID
) -> list[str]:
    """Print contacts beside members, the rejections and the mirror check; return its problems."""
    members = emu.admin.members(DEMO_AUDIENCE["id"])
    _print_side_by_side(conn, user_id, members)
    rejected = demo_store.all_rejections(conn)
    for email, severity, reason in rejected:
        print(f"  {severity}: {email!r}: {reason}")
    problems = [p for p in _mirror_matches(conn, user_id, members) if WALK_IN not in p]
    print(
        "  mirror check: "
        + (
            "OK, the audience matches the contacts"
            if not problems
            else "DIFFERS: " + "; ".join(problems)
        )
    )
    return problems


def _run_live(
    database_url: str, emu: EmulatorHandle, key: str, user_id: uuid.UUID, port: int
) -> None:
    """The live demo: the account waits on the emulator's consent screen, `mcsync web` serves
    the demo page, the worker syncs, the watcher tells; until Ctrl-C or SIGTERM."""
    from mcsync.demo_live import BackgroundWeb, MirrorWatcher
    from mcsync.demo_page import DemoSite

    emu.admin.create_account(
        dc="us1", account_name=DEMO_ACCOUNT_NAME, audiences=[DEMO_AUDIENCE, SECOND_AUDIENCE]
    )
    emu.admin.add_member(DEMO_AUDIENCE["id"], WALK_IN, status="subscribed", tags=["website-signup"])
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    emu.admin.register_oauth_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, f"{url}/oauth/callback")
    settings = _demo_settings(database_url, key, emu).model_copy(
        update={
            # The demo signs its coach's token itself (legacy HS256, Supabase's claims): the
            # environment's JWKS, issuer or audience, if any, are not the demo's.
            "mcsync_jwt_secret": secrets.token_urlsafe(32),
            "mcsync_jwks_url": "",
            "mcsync_jwt_issuer": "",
            "mcsync_jwt_audience": "authenticated",
            "mcsync_app_origin": url,
            "mailchimp_client_id": DEMO_CLIENT_ID,
            "mailchimp_client_secret": DEMO_CLIENT_SECRET,
            "mailchimp_redirect_uri": f"{url}/oauth/callback",
        }
    )
    site = DemoSite(
        database_url=database_url,
        user_id=user_id,
        emulator_url=emu.url,
        jwt_secret=settings.mcsync_jwt_secret,
        account_name=DEMO_ACCOUNT_NAME,
    )
    running: list[Any] = []  # what to stop, in reverse, however far the start got
    try:
        running.append(BackgroundWeb(settings, site, port=port))
        running.append(_BackgroundWorker(settings))
        running.append(
            MirrorWatcher(
                database_url,
                emu.url,
                user_id,
                audiences=(DEMO_AUDIENCE["id"], SECOND_AUDIENCE["id"]),
                say=lambda line: print(line, flush=True),
            )
        )
        running[0].wait_until_up()
        print(
            f"""
  Open {url}/ in a browser: the app (the real widget, signed in as the demo's coach, and
  {len(SAMPLE_CONTACTS)} contacts) beside the Mailchimp audience.
  1. Connect Mailchimp: the emulator's consent screen opens; choose "{DEMO_ACCOUNT_NAME}", Allow.
  2. Choose an audience ("{DEMO_AUDIENCE['name']}" already has a member of its own, {WALK_IN}).
  3. Edit, add or delete contacts on the page, or with psql:
       psql '{database_url}'
       UPDATE contacts SET first_name = 'Anna' WHERE first_name = 'Ana';
  Each change mcsync mirrors prints a line here. Emulator: {emu.url}/_emulator/state
  Ctrl-C stops (the demo's database goes with it).
""",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        for part in reversed(running):
            part.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
