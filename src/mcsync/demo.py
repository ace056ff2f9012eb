"""`mcsync demo`: everything on one machine, nothing to configure.

An embedded PostgreSQL, the Mailchimp emulator, the migrations, a coach with sample contacts and
the worker. It shows the app's contacts beside the audience, then keeps running so you can edit
contacts with psql and watch them sync (Ctrl-C to stop). `--once` runs the script, checks the
mirror and exits 0 when Mailchimp matches the contacts."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import psycopg
from cryptography.fernet import Fernet

from mcsync.config import Settings
from mcsync.connections import connect_user
from mcsync.crypto import TokenCipher
from mcsync.embedded import start_embedded_postgres
from mcsync.migrate import SQL_DIR, apply_migrations
from mcsync.mirror import Contact, desired_members
from mcsync.worker.runner import WorkerService

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


def _print_side_by_side(
    conn: psycopg.Connection[Any], user_id: uuid.UUID, members: list[dict[str, Any]]
) -> None:
    rows = conn.execute(
        "SELECT first_name, last_name, email, phone, tags FROM contacts WHERE user_id = %s"
        " ORDER BY first_name",
        (user_id,),
    ).fetchall()
    by_email = {m["email_address"].lower(): m for m in members}
    print(f"\n{'APP CONTACT':<34}{'EMAIL':<30}| {'MAILCHIMP MEMBER':<30}{'STATUS':<12}TAGS")
    print("-" * 120)
    for first, last, email, _phone, _tags in rows:
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
        print(f"{(first or '') + ' ' + (last or ''):<34}{(email or '-')[:29]:<30}| {right}")
    for m in by_email.values():
        print(f"{'(no contact)':<34}{'':<30}| {m['email_address']:<30}{m['status']:<12}")
    print()


def _mirror_matches(
    conn: psycopg.Connection[Any], user_id: uuid.UUID, members: list[dict[str, Any]]
) -> list[str]:
    contacts = [
        Contact(
            id=r[0], email=r[1], first_name=r[2], last_name=r[3], phone=r[4], tags=tuple(r[5] or ())
        )
        for r in conn.execute(
            "SELECT id, email, first_name, last_name, phone, tags FROM contacts WHERE user_id = %s",
            (user_id,),
        )
    ]
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


def run_demo(*, once: bool = False) -> int:
    from mcsync.emulator.testing import running_emulator

    print("mcsync demo: starting an embedded PostgreSQL and the Mailchimp emulator...")
    pg = start_embedded_postgres()
    key = Fernet.generate_key().decode()
    try:
        with (
            running_emulator(port=0 if once else 8765) as emu,
            psycopg.connect(pg.url, autocommit=True) as conn,
        ):
            conn.execute((SQL_DIR / "example_contacts.sql").read_text().encode())
            applied = apply_migrations(pg.url)
            print(f"  migrations applied: {', '.join(applied) or 'none'}")
            account = emu.admin.create_account(
                dc="us1",
                account_name="Sunrise Coaching",
                audiences=[{"id": "demo1234", "name": "Sunrise Newsletter"}],
            )
            user_id = uuid.uuid4()
            # A member who signed up elsewhere: mcsync must leave them alone.
            emu.admin.add_member(
                "demo1234", "walkin@coachmail.io", status="subscribed", tags=["website-signup"]
            )
            for c in SAMPLE_CONTACTS:
                conn.execute(
                    "INSERT INTO contacts (user_id, first_name, last_name, email, phone, tags,"
                    " notes) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        user_id,
                        c["first_name"],
                        c["last_name"],
                        c["email"],
                        c["phone"],
                        c["tags"],
                        c["notes"],
                    ),
                )
            queued = connect_user(
                conn,
                TokenCipher([key]),
                user_id=user_id,
                access_token=account["access_token"],
                dc="us1",
                api_endpoint=emu.url,
                account_name="Sunrise Coaching",
                audience_id="demo1234",
                audience_name="Sunrise Newsletter",
            )
            print(f"  connected coach {user_id}: {queued} contacts queued for the first sync")

            settings = Settings(
                database_url=pg.url,
                mcsync_encryption_keys=key,
                mailchimp_api_url=emu.api_url,
                mailchimp_login_url=emu.login_url,
                mcsync_poll_interval=1.0,
            )
            worker = WorkerService(settings)
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_until_complete, args=(worker.run(),), daemon=True
            )
            thread.start()

            def wait_for_sync() -> None:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if not conn.execute("SELECT 1 FROM mailchimp_sync_queue LIMIT 1").fetchone():
                        return
                    time.sleep(0.1)

            wait_for_sync()
            # Edit, tag, rename and delete, as a coach would in the app.
            conn.execute(
                "UPDATE contacts SET tags = array_append(tags, 'workshop') WHERE first_name = 'Ana'"
            )
            conn.execute(
                "UPDATE contacts SET email = 'chloe.dubois@coachmail.io' WHERE first_name = 'Chloé'"
            )
            conn.execute(
                "UPDATE contacts SET notes = 'unsynced column: no API call'"
                " WHERE first_name = 'Ben'"
            )
            time.sleep(0.3)
            wait_for_sync()
            members = emu.admin.members("demo1234")
            _print_side_by_side(conn, user_id, members)
            rejected = conn.execute(
                "SELECT email, severity, reason FROM mailchimp_rejected_contacts"
            ).fetchall()
            for email, severity, reason in rejected:
                print(f"  {severity}: {email!r}: {reason}")
            problems = _mirror_matches(conn, user_id, members)
            problems = [p for p in problems if "walkin@" not in p]
            print(
                "  mirror check: "
                + (
                    "OK, the audience matches the contacts"
                    if not problems
                    else "DIFFERS: " + "; ".join(problems)
                )
            )
            if once:
                loop.call_soon_threadsafe(worker.stop)
                thread.join(20)
                return 0 if not problems else 1
            print(
                f"\nKeep editing: psql '{pg.url}'\n  e.g. UPDATE contacts SET first_name = 'Anna'"
                " WHERE first_name = 'Ana';\n"
                f"Emulator: {emu.url} (GET {emu.url}/_emulator/state)\nCtrl-C to stop."
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("\nstopping...")
                loop.call_soon_threadsafe(worker.stop)
                thread.join(20)
            return 0
    finally:
        pg.stop()
