"""A seeded fault soak: thousands of random changes across several users while Mailchimp fails
~20% of calls (5xx, 429, timeouts), marketers unsubscribe members and add tags, worker
processes are killed with SIGKILL and restarted, and Postgres is restarted once. After it drains,
every audience is the mirror of its user's contacts.

MCSYNC_SOAK_SCALE (default 1, the CI size) multiplies the rounds and the operations per round;
MCSYNC_SOAK_SEED picks another reproducible run."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from mcsync.mirror import desired_members, normalize_email
from mcsync.rows import contact_from_row
from tests.e2e.failures.conftest import RestartablePostgres, WorkerProcess
from tests.support.harness import SyncHarness, User, wait_until

SCALE = max(1, int(os.environ.get("MCSYNC_SOAK_SCALE", "1")))
SEED = int(os.environ.get("MCSYNC_SOAK_SEED", "20260415"))
ROUNDS = 8 * SCALE
OPS_PER_ROUND = 300 * SCALE
APP_TAGS = ["lead", "client", "VIP", "vip", "Alpha", "beta", "2026", "été", "🔥"]


class Driver:
    """The app: random writes to `contacts` over one connection (reopened after a restart)."""

    def __init__(self, url: str, users: list[User], rng: random.Random) -> None:
        self.url = url
        self.users = users
        self.rng = rng
        self.conn: psycopg.Connection[Any] | None = None
        self.ops: Counter[str] = Counter()

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        for _ in range(100):
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = psycopg.connect(self.url, autocommit=True)
                cur = self.conn.execute(query, params)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                self.conn = None
                time.sleep(0.1)
        raise RuntimeError("the database did not come back")

    def email(self, user: User) -> str:
        n = self.rng.randrange(120 * SCALE)
        local = self.rng.choice([f"p{n}", f"P{n}", f" p{n} "])
        return f"{local}@soak{str(user.user_id)[:4]}.io"

    def tags(self) -> list[str]:
        return self.rng.sample(APP_TAGS, self.rng.randrange(0, 4))

    def some_contact(self, user: User) -> uuid.UUID | None:
        rows = self.sql(
            "SELECT id FROM contacts WHERE user_id = %s ORDER BY random() LIMIT 1", (user.user_id,)
        )
        return rows[0][0] if rows else None

    def step(self) -> None:
        user = self.rng.choice(self.users)
        kind = self.rng.choices(
            ["create", "edit", "tags", "email", "delete", "import", "bulk_tags"],
            weights=[30, 25, 20, 10, 10, 2, 3],
        )[0]
        self.ops[kind] += 1
        if kind == "create":
            self.sql(
                "INSERT INTO contacts (user_id, email, first_name, last_name, phone, tags) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    user.user_id,
                    self.email(user),
                    f"F{self.rng.randrange(999)}",
                    self.rng.choice([None, "Lee", "Ng", "Ørsted"]),
                    None,
                    self.tags(),
                ),
            )
        elif kind == "import":
            n = self.rng.randrange(20, 120)
            base = self.rng.randrange(10**6)
            self.sql(
                """INSERT INTO contacts (user_id, email, first_name, tags)
                   SELECT %s, 'imp' || (%s + g) || '@soakimport.io', 'I' || g, %s
                     FROM generate_series(1, %s) g""",
                (user.user_id, base, self.tags(), n),
            )
        elif kind == "bulk_tags":
            self.sql(
                "UPDATE contacts SET tags = %s WHERE user_id = %s AND random() < 0.3",
                (self.tags(), user.user_id),
            )
        else:
            cid = self.some_contact(user)
            if cid is None:
                return
            if kind == "edit":
                self.sql(
                    "UPDATE contacts SET first_name = %s WHERE id = %s",
                    (f"E{self.rng.randrange(999)}", cid),
                )
            elif kind == "tags":
                self.sql("UPDATE contacts SET tags = %s WHERE id = %s", (self.tags(), cid))
            elif kind == "email":
                self.sql("UPDATE contacts SET email = %s WHERE id = %s", (self.email(user), cid))
            else:
                self.sql("DELETE FROM contacts WHERE id = %s", (cid,))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _marketer(
    h: SyncHarness, users: list[User], rng: random.Random, added: set[str], n: int
) -> None:
    """Marketers in Mailchimp: tag members by hand, and unsubscribe some (marked with a tag)."""
    for _ in range(n):
        user = rng.choice(users)
        members = [m for m in h.admin.members(user.audience_id) if m["status"] == "subscribed"]
        if not members:
            continue
        member = rng.choice(members)
        name = f"mkt-{len(added)}"
        if rng.random() < 0.4:
            h.admin.unsubscribe(user.audience_id, member["email_address"])
            name = f"mkt-unsub-{len(added)}"
        h.admin.tag(user.audience_id, member["email_address"], name)
        added.add(name)


@pytest.mark.timeout(300 * SCALE)
def test_fault_soak_every_audience_ends_as_the_mirror(
    restartable_pg: RestartablePostgres,
    emulator: Any,
    worker_process: Callable[..., WorkerProcess],
) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    h = SyncHarness(restartable_pg.url, emulator, mcsync_backoff_scale=0.01)
    users = [h.add_user() for _ in range(3)] + [h.add_user(double_optin=True)]
    driver = Driver(restartable_pg.url, users, rng)
    env = {"MCSYNC_HTTP_TIMEOUT": "0.5"}
    h.admin.add_fault(status=503, rate=0.08, seed=SEED)
    h.admin.add_fault(status=429, rate=0.05)
    h.admin.add_fault(status=429, rate=0.02, bodiless=True)
    h.admin.add_fault(timeout=0.8, rate=0.05)
    h.admin.set_latency(per_call_ms=2)

    workers = [worker_process(h, **env).start(), worker_process(h, **env).start()]
    marketer_tags: set[str] = set()
    kills = restarts = 0
    for round_no in range(ROUNDS):
        for _ in range(OPS_PER_ROUND):
            driver.step()
        time.sleep(0.3)
        _marketer(h, users, rng, marketer_tags, 6)
        if round_no in (1, 4, 6):
            victim = rng.randrange(len(workers))
            workers[victim].kill()
            kills += 1
            workers[victim] = worker_process(h, **env).start()
        if round_no == 3:
            restartable_pg.restart(down_seconds=0.5)
            restarts += 1
    driver.close()

    h.admin.clear_faults()
    h.admin.set_latency(per_call_ms=0)

    def drained() -> bool:
        try:
            pending = h.execute("SELECT count(*) AS n FROM mcsync.mailchimp_sync_queue")[0]["n"]
            states = {
                r["sync_status"]
                for r in h.execute("SELECT sync_status FROM mcsync.mailchimp_connections")
            }
        except psycopg.OperationalError:
            return False
        return pending == 0 and states == {"active"}

    try:
        wait_until(drained, timeout=120 * SCALE, interval=0.25)
    except AssertionError:
        state = h.execute(
            "SELECT c.user_id, c.sync_status, c.last_error, c.next_probe_at, c.lease_owner,"
            " c.lease_until, (SELECT count(*) FROM mcsync.mailchimp_sync_queue q"
            " WHERE q.user_id = c.user_id) AS pending, (SELECT min(next_retry_at)"
            " FROM mcsync.mailchimp_sync_queue q WHERE q.user_id = c.user_id) AS next_due,"
            " (SELECT count(*) FROM mcsync.mailchimp_sync_bulk b"
            " WHERE b.user_id = c.user_id) AS bulk,"
            " now() FROM mcsync.mailchimp_connections c"
        )
        logs = "\n".join(w.output()[-2000:] for w in workers)
        raise AssertionError(f"not drained: {state}\n{logs}") from None
    for w in workers:
        assert w.stop() == 0, w.output()[-3000:]
    elapsed = time.monotonic() - started

    total_ops = sum(driver.ops.values())
    assert total_ops >= ROUNDS * OPS_PER_ROUND
    assert kills == 3 and restarts == 1
    requests = h.admin.requests()
    failed = [r for r in requests if r["path"].startswith("/3.0/") and r["status"] >= 429]
    assert failed, "the emulator was supposed to fail calls"

    rejected_errors = {
        r["contact_id"]
        for r in h.execute(
            "SELECT contact_id FROM mcsync.mailchimp_rejected_contacts WHERE severity = 'error'"
        )
    }
    found_marketer_tags: set[str] = set()
    for user in users:
        rows = h.execute(
            "SELECT * FROM mcsync.source_contacts WHERE user_id = %s", (user.user_id,)
        )
        contacts = [contact_from_row(r) for r in rows]
        recency = {
            r["contact_id"]: r["changed_at"]
            for r in h.execute(
                "SELECT contact_id, changed_at FROM mcsync.mailchimp_contact_links"
                " WHERE user_id = %s",
                (user.user_id,),
            )
        }
        desired = desired_members(contacts, recency)
        raw = h.admin.members(user.audience_id)
        counts = Counter(m["email_address"].lower() for m in raw)
        assert max(counts.values(), default=1) == 1, "a member is duplicated"
        by_email = {m["email_address"].lower(): m for m in raw}
        present = {e for e, m in by_email.items() if m["status"] != "archived"}
        excused = {
            d.email.lower() for d in desired.values() if set(d.contact_ids) & rejected_errors
        }
        # Someone who unsubscribed is never brought back: once mcsync archived their member
        # (its contact was deleted), re-adding the contact leaves it archived.
        excused |= {
            e
            for e, m in by_email.items()
            if m["status"] == "archived"
            and any(t["name"].startswith("mkt-unsub-") for t in m["tags"])
        }
        wanted = {d.email.lower() for d in desired.values()}
        # Members Mailchimp refused to archive (405: pending on the double opt-in audience,
        # cleaned) are left as they are, retired in the ledger (docs/design.md, the mirror).
        retired = {
            r["email"].lower()
            for r in h.execute(
                "SELECT email FROM mcsync.mailchimp_members WHERE user_id = %s"
                " AND archived AND archive_status IS NULL",
                (user.user_id,),
            )
        }
        left_as_is = {
            e
            for e in retired
            if by_email.get(e, {}).get("status") in ("pending", "cleaned", "unsubscribed")
        }
        extra = present - wanted - left_as_is
        assert extra == set(), _explain(h, user, set(sorted(extra)[:3]))
        missing = wanted - present - excused
        assert missing == set(), _explain(h, user, missing)
        new_status = "pending" if user is users[-1] else "subscribed"
        for d in desired.values():
            m = by_email.get(d.email.lower())
            if m is None or m["status"] == "archived":
                continue
            assert m["merge_fields"]["FNAME"] == d.merge_fields["FNAME"], d.email
            assert m["merge_fields"]["LNAME"] == d.merge_fields["LNAME"], d.email
            names = {t["name"] for t in m["tags"]}
            app_tags = {t.casefold() for t in names if not t.startswith("mkt-")}
            assert app_tags == {t.casefold() for t in d.tags}, _explain(h, user, {d.email.lower()})
            if any(t.startswith("mkt-unsub-") for t in names):
                assert m["status"] == "unsubscribed", d.email  # never re-subscribed
            else:
                assert m["status"] in (new_status, "unsubscribed"), d.email
        for m in raw:
            found_marketer_tags |= {t["name"] for t in m["tags"] if t["name"].startswith("mkt-")}
            if any(t["name"].startswith("mkt-unsub-") for t in m["tags"]):
                assert m["status"] in ("unsubscribed", "archived")
        assert {normalize_email(c.email) is not None for c in contacts}  # sanity
    # Tags marketers added in Mailchimp are never removed by mcsync.
    assert found_marketer_tags == marketer_tags
    assert h.execute("SELECT count(*) AS n FROM mcsync.mailchimp_sync_queue")[0]["n"] == 0
    print(
        f"soak scale={SCALE} seed={SEED}: {total_ops} ops {dict(driver.ops)}, "
        f"{len(requests)} API calls ({len(failed)} failed), {kills} kills, {restarts} pg restart, "
        f"{len(marketer_tags)} marketer actions, {elapsed:.1f}s"
    )


def _explain(h: SyncHarness, user: User, emails: set[str]) -> str:
    """What mcsync knows about the addresses a check failed on (for the failure message)."""
    from mcsync.mirror import subscriber_hash

    out = []
    for e in sorted(emails):
        hsh = subscriber_hash(e)
        members = [m for m in h.admin.members(user.audience_id) if m["email_address"].lower() == e]
        contacts = h.execute(
            "SELECT id, email, first_name FROM contacts "
            "WHERE user_id = %s AND lower(btrim(email)) = %s",
            (user.user_id, e),
        )
        # Hashes are stored as bytes (sql/010).
        ledger = h.execute(
            "SELECT * FROM mcsync.mailchimp_members WHERE email_hash = decode(%s, 'hex')", (hsh,)
        )
        links = h.execute(
            "SELECT * FROM mcsync.mailchimp_contact_links WHERE email_hash = decode(%s, 'hex')",
            (hsh,),
        )
        out.append(f"{e}: member={members}\n  contacts={contacts}\n  ledger={ledger}")
        out.append(f"  links={links}")
        calls = [
            (
                r["method"],
                r["path"].rsplit("/", 1)[-1] if r["path"].endswith("tags") else "",
                r["status"],
            )
            for r in h.admin.requests()
            if hsh in r["path"]
        ]
        out.append(f"  calls={calls}")
    return "\n".join(out)
