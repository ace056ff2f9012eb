"""The in-memory database of tests/model/mirror_model.py agrees with the real triggers (those
`mcsync migrate` generates from the built-in source mapping, mcsync.source).

The model-based tests trust `MemoryDatabase` to queue what Postgres queues when the app writes
`contacts`. Here the same scripts of inserts, updates (synced columns or not) and deletes run
against the model and against the real triggers on a real Postgres, and the queues must be the
same: a change to the generated triggers that the model does not follow fails here."""

from __future__ import annotations

import random
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from mcsync.mirror import Contact
from tests.model.mirror_model import CIPHER, ConnectionRow, MemoryDatabase, contact_columns, person
from tests.support.harness import SyncHarness

EMAILS = ["ana@example.com", " Ana@Example.com", "ben@example.com", None, "not an address", ""]
NAMES = ["Ana", "Ben", None, ""]
TAGS: list[tuple[str, ...]] = [(), ("vip",), ("vip", "coach"), ("Coach",)]


def _random_contact(rng: random.Random, contact_id: uuid.UUID) -> Contact:
    return person(
        contact_id,
        rng.choice(EMAILS),
        first=rng.choice(NAMES),
        last=rng.choice(NAMES),
        phone=rng.choice(["+1 555 0100", None]),
        tags=rng.choice(TAGS),
    )


def _columns(c: Contact) -> dict[str, Any]:
    """The contact's synced columns of the default mapping's `contacts`."""
    return contact_columns(c)


class Script:
    """One user's contacts, written to the model and to Postgres side by side."""

    def __init__(self, conn: psycopg.Connection[Any], user_id: uuid.UUID) -> None:
        self.conn = conn
        self.user_id = user_id
        self.model = MemoryDatabase(
            ConnectionRow(
                user_id=user_id,
                access_token_encrypted=CIPHER.encrypt("token", user_id),
                dc="us1",
                api_endpoint="http://mailchimp.test",
                audience_id="list1",
                double_optin=False,
            )
        )

    def insert(self, c: Contact) -> None:
        self.model.insert_contact(c)
        self.conn.execute(
            "INSERT INTO contacts (id, user_id, first_name, last_name, email, phone, tags)"
            " VALUES (%(id)s, %(user_id)s, %(first_name)s, %(last_name)s, %(email)s, %(phone)s,"
            " %(tags)s)",
            {"id": c.id, "user_id": self.user_id, **_columns(c)},
        )

    def update(self, c: Contact) -> None:
        self.model.update_contact(c)
        self.conn.execute(
            "UPDATE contacts SET first_name = %(first_name)s, last_name = %(last_name)s,"
            " email = %(email)s, phone = %(phone)s, tags = %(tags)s WHERE id = %(id)s",
            {"id": c.id, **_columns(c)},
        )

    def touch_unsynced(self, contact_id: uuid.UUID) -> None:
        """A column mcsync does not sync: the model sees the same contact again."""
        self.model.update_contact(self.model.contacts[contact_id])
        self.conn.execute(
            "UPDATE contacts SET notes = md5(random()::text) WHERE id = %s", (contact_id,)
        )

    def delete(self, contact_id: uuid.UUID) -> None:
        self.model.delete_contact(contact_id)
        self.conn.execute("DELETE FROM contacts WHERE id = %s", (contact_id,))

    def queues(self) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
        modelled = {
            (r.contact_id, r.op, r.email, r.version, r.attempts)
            for r in self.model.queue.values()
        }
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT contact_id, op, email, version, attempts FROM mcsync.mailchimp_sync_queue"
                " WHERE user_id = %s",
                (self.user_id,),
            ).fetchall()
        real = {(r["contact_id"], r["op"], r["email"], r["version"], r["attempts"]) for r in rows}
        return modelled, real


def _run_script(script: Script, rng: random.Random, steps: int) -> None:
    ids: list[uuid.UUID] = []
    for _ in range(steps):
        live = [i for i in ids if i in script.model.contacts]
        moves = ["insert", "update", "update", "unsynced", "delete"] if live else ["insert"]
        move = rng.choice(moves)
        if move == "insert":
            ids.append(uuid.UUID(int=rng.getrandbits(128)))
            script.insert(_random_contact(rng, ids[-1]))
        elif move == "update":
            script.update(_random_contact(rng, rng.choice(live)))
        elif move == "unsynced":
            script.touch_unsynced(rng.choice(live))
        else:
            script.delete(rng.choice(live))


def test_the_model_queues_what_the_real_triggers_queue(sync: SyncHarness) -> None:
    with psycopg.connect(sync.db_url, autocommit=True) as conn:
        for seed in range(12):
            user = sync.add_user()
            script = Script(conn, user.user_id)
            rng = random.Random(seed)
            _run_script(script, rng, steps=40)
            modelled, real = script.queues()
            assert real, "the script queued nothing: it proves nothing"
            assert modelled == real, f"seed {seed}: model {modelled - real}, sql {real - modelled}"
