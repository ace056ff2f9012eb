"""End-to-end test harness: a real database, the emulator as a real server, the real worker."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from cryptography.fernet import Fernet
from psycopg.rows import dict_row

from mcsync.config import Settings
from mcsync.connections import connect_user
from mcsync.crypto import TokenCipher
from mcsync.worker.runner import WorkerService, run_worker
from tests.support.app_schemas import CONTACTS, AppSchema

ENCRYPTION_KEY = Fernet.generate_key().decode()


@dataclass(frozen=True)
class User:
    user_id: uuid.UUID
    audience_id: str
    token: str


class SyncHarness:
    """`db_url` is the owner's (the app's side and the test's own reads and writes use it); the
    worker runs as the worker login (sql/grants.sql's mcsync_worker), unless `worker_url` says
    otherwise."""

    def __init__(
        self,
        db_url: str,
        emulator: Any,
        *,
        worker_url: str | None = None,
        app: AppSchema = CONTACTS,
        **overrides: Any,
    ) -> None:
        from tests.support.roles import worker_url as login_of_worker

        self.db_url = db_url
        self.app = app
        self.emulator = emulator
        self.admin = emulator.admin
        values: dict[str, Any] = {
            "database_url": worker_url or login_of_worker(db_url),
            "mcsync_encryption_keys": ENCRYPTION_KEY,
            "mailchimp_api_url": emulator.api_url,
            "mailchimp_login_url": emulator.login_url,
            "mcsync_poll_interval": 0.2,
            "mcsync_http_timeout": 5.0,
        }
        values.update(overrides)
        self.settings = Settings(**values)
        self.cipher = TokenCipher([ENCRYPTION_KEY])
        self._n = 0

    # --- setup ----------------------------------------------------------------------------

    def add_user(
        self,
        *,
        double_optin: bool = False,
        required_fields: list[str] | None = None,
        phone_format: str | None = None,
        connect: bool = True,
    ) -> User:
        self._n += 1
        audience_id = f"aud{uuid.uuid4().hex[:8]}"
        audience: dict[str, Any] = {
            "id": audience_id,
            "name": f"Audience {self._n}",
            "double_optin": double_optin,
        }
        if required_fields:
            audience["required_fields"] = required_fields
        if phone_format:
            audience["phone_format"] = phone_format
        merge_fields = self.app.audience_merge_fields()
        if merge_fields:
            audience["merge_fields"] = merge_fields
        account = self.admin.create_account(
            dc="us1", account_name=f"Coach {self._n}", audiences=[audience]
        )
        user = User(uuid.uuid4(), audience_id, account["access_token"])
        if connect:
            self.connect(user, double_optin=double_optin)
        return user

    def connect(self, user: User, *, double_optin: bool = False) -> int:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return connect_user(
                conn,
                self.cipher,
                user_id=user.user_id,
                access_token=user.token,
                dc="us1",
                api_endpoint=self.emulator.url,
                account_name="Coach",
                audience_id=user.audience_id,
                audience_name="Audience",
                double_optin=double_optin,
            )

    # --- the app's side -------------------------------------------------------------------

    def execute(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with (
            psycopg.connect(self.db_url, autocommit=True) as conn,
            conn.cursor(row_factory=dict_row) as cur,
        ):
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    # Columns are named as in the example `contacts` table (user_id, email, first_name, ...,
    # tags); `self.app` translates them to the app's schema, tags to its join table, and a
    # delete to its soft delete.

    def add_contact(self, user: User, email: str | None, **columns: Any) -> uuid.UUID:
        tags = columns.pop("tags", None)
        values = {"user_id": user.user_id, "email": email, **columns}
        if tags is not None and self.app.tags_table is None:
            values["tags"] = tags
        names = ", ".join(
            self.app.column(k) if k != "tags" else self.app.tags_column for k in values
        )
        marks = ", ".join(f"%({k})s" for k in values)
        id_column = self.app.id_column
        rows = self.execute(
            f"INSERT INTO {self.app.table} ({names}) VALUES ({marks}) RETURNING {id_column} AS id",
            values,
        )
        contact_id: uuid.UUID = rows[0]["id"]
        if tags and self.app.tags_table is not None:
            self._write_tags(contact_id, tags, replace=False)
        return contact_id

    def update_contact(self, contact_id: uuid.UUID, **columns: Any) -> None:
        tags = columns.pop("tags", None)
        if tags is not None and self.app.tags_table is None:
            columns["tags"] = tags
        if columns:
            sets = ", ".join(f"{self.app.column(k)} = %({k})s" for k in columns)
            self.execute(
                f"UPDATE {self.app.table} SET {sets} WHERE {self.app.id_column} = %(id)s",
                {**columns, "id": contact_id},
            )
        if tags is not None and self.app.tags_table is not None:
            self._write_tags(contact_id, tags, replace=True)

    def _write_tags(self, contact_id: uuid.UUID, tags: list[str], *, replace: bool) -> None:
        assert self.app.tags_table is not None
        table, key, name, tenant = self.app.tags_table
        # The app writes its tag rows as the contact's own user (the tenant column).
        owner = f"SELECT {self.app.column('user_id')} FROM {self.app.table}"
        owner += f" WHERE {self.app.id_column} = %s"
        with psycopg.connect(self.db_url, autocommit=True) as conn, conn.transaction():
            if replace:
                conn.execute(f"DELETE FROM {table} WHERE {key} = %s", (contact_id,))
            for tag in dict.fromkeys(tags):
                conn.execute(
                    f"INSERT INTO {table} ({key}, {name}, {tenant}) VALUES (%s, %s, ({owner}))",
                    (contact_id, tag, contact_id),
                )

    def delete_contact(self, contact_id: uuid.UUID) -> None:
        if self.app.soft_delete_column:
            self.execute(
                f"UPDATE {self.app.table} SET {self.app.soft_delete_column} = now()"
                f" WHERE {self.app.id_column} = %s",
                (contact_id,),
            )
        else:
            self.execute(
                f"DELETE FROM {self.app.table} WHERE {self.app.id_column} = %s", (contact_id,)
            )

    # --- the worker -----------------------------------------------------------------------

    def drain(self) -> None:
        """`mcsync worker --once`: process everything due, then return."""
        asyncio.run(run_worker(self.settings, once=True, listen=False))

    def mirrored_contact(self, email: str | None, **columns: Any) -> tuple[User, uuid.UUID]:
        """A new connected user with one contact, mirrored: the queue drained."""
        user = self.add_user()
        contact_id = self.add_contact(user, email, **columns)
        self.drain()
        return user, contact_id

    @contextmanager
    def live_worker(self, **kwargs: Any) -> Iterator[WorkerService]:
        """A long-running worker (LISTEN + poll) in a background thread."""
        worker_box: list[WorkerService] = []
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)

            async def main() -> None:
                worker = WorkerService(self.settings, **kwargs)
                worker_box.append(worker)
                ready.set()
                await worker.run()

            loop.run_until_complete(main())

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        ready.wait(10)
        try:
            yield worker_box[0]
        finally:
            loop.call_soon_threadsafe(worker_box[0].stop)
            thread.join(30)

    # --- what happened --------------------------------------------------------------------

    def members(self, user: User) -> dict[str, dict[str, Any]]:
        """The audience in the emulator, keyed by lowercased address (archived included)."""
        return {m["email_address"].lower(): m for m in self.admin.members(user.audience_id)}

    def tags(self, user: User, email: str) -> set[str]:
        return {t["name"] for t in self.members(user)[email.lower()]["tags"]}

    def queue(self) -> list[dict[str, Any]]:
        return self.execute("SELECT * FROM mcsync.mailchimp_sync_queue ORDER BY id")

    def rejections(self) -> list[dict[str, Any]]:
        return self.execute("SELECT * FROM mcsync.mailchimp_rejected_contacts ORDER BY rejected_at")

    def api_calls(self, method: str | None = None) -> list[dict[str, Any]]:
        calls = [r for r in self.admin.requests() if r["path"].startswith("/3.0/")]
        return [r for r in calls if method is None or r["method"] == method]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_while_progressing(
    done: Callable[[], Any], progress: Callable[[], Any], stall: float = 60.0, interval: float = 0.1
) -> Any:
    """Wait until `done()`, for as long as `progress()` keeps changing: fail only when nothing
    moved for `stall` seconds. A slow or shared machine (or another PostgreSQL version) takes
    longer but still progresses; a stuck worker does not."""
    last = progress()
    moved = time.monotonic()
    while True:
        value = done()
        if value:
            return value
        now = progress()
        if now != last:
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved > stall:
            raise AssertionError(f"no progress for {stall}s (last state: {last!r})")
        time.sleep(interval)
