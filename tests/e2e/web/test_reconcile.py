"""Sync Now's full reconciliation and `mcsync verify`, end to end: real Postgres and triggers,
the emulator as a real server, the real worker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet

from mcsync.cli import main
from mcsync.crypto import TokenCipher
from mcsync.mailchimp.client import MailchimpClient
from mcsync.mailchimp.errors import TransientError
from mcsync.mailchimp.models import Member, Tag
from mcsync.mirror import Contact, LedgerMember, desired_members, subscriber_hash
from mcsync.reconcile import (
    Snapshot,
    cancel_run,
    compare_member,
    missing_members,
    request_sync_now,
)
from mcsync.web.app import WEB_APPLICATION_NAME
from tests.e2e.web.conftest import (
    WebHarness,
    stale_run_ids,
    sync_now_run,
    verify_audit,
    web_settings,
)
from tests.model.mirror_model import person
from tests.support.app_schemas import ALL_SCHEMAS
from tests.support.harness import ENCRYPTION_KEY, SyncHarness, User


def _cli(sync: SyncHarness, *args: str) -> list[str]:
    return [
        *args,
        "--database-url",
        sync.db_url,
        # "=": a Fernet key may start with "-", which argparse would take for an option.
        f"--encryption-keys={ENCRYPTION_KEY}",
        "--api-url",
        sync.emulator.api_url,
    ]


def _verify(sync: SyncHarness, user: User, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(_cli(sync, "verify", "--user-id", str(user.user_id), "--json"))
    return code, json.loads(capsys.readouterr().out)


def _by_hand(sync: SyncHarness, user: User) -> MailchimpClient:
    """What a marketer does in Mailchimp's own UI, through the API with the user's token."""
    return MailchimpClient(sync.emulator.api_url, user.token)


def _request_sync_now(sync: SyncHarness, user: User) -> None:
    with psycopg.connect(sync.db_url, autocommit=True) as conn:
        assert request_sync_now(conn, user.user_id) == 0


def _lose_pending_events(sync: SyncHarness, user: User) -> None:
    """Changes the worker never hears of (a lost event): the drift Sync Now exists for."""
    sync.execute("DELETE FROM mcsync.mailchimp_sync_queue WHERE user_id = %s", (user.user_id,))


@pytest.mark.parametrize("sync", ALL_SCHEMAS, indirect=True, ids=[a.name for a in ALL_SCHEMAS])
def test_sync_now_repairs_every_kind_of_drift_and_verify_reports_it(
    sync: SyncHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sync.add_user()
    ids = {
        name: sync.add_contact(user, f"{name}@clientmail.io", first_name=name.title(), tags=tags)
        for name, tags in [
            ("ada", ["vip", "lead"]),
            ("bo", []),
            ("cy", []),
            ("di", []),
            ("eve", []),
            ("fay", ["old"]),
            ("gus", []),
        ]
    }
    sync.drain()
    assert _verify(sync, user, capsys)[0] == 0

    async def hand_edits() -> None:
        async with _by_hand(sync, user) as mc:
            await mc.upsert_member(
                user.audience_id,
                "ada@clientmail.io",
                merge_fields={"FNAME": "Edited by hand"},
                status_if_new="subscribed",
            )
            await mc.update_member_tags(user.audience_id, "ada@clientmail.io", inactive=["vip"])

    asyncio.run(hand_edits())
    sync.admin.add_member(user.audience_id, "stranger@othermail.io")  # not mcsync's
    sync.admin.unsubscribe(user.audience_id, "gus@clientmail.io")
    sync.update_contact(ids["eve"], first_name="Evelyn")
    sync.update_contact(ids["fay"], tags=[])
    sync.delete_contact(ids["cy"])
    sync.delete_contact(ids["di"])
    sync.execute("DELETE FROM mcsync.mailchimp_contact_links WHERE contact_id = %s", (ids["di"],))
    hal = sync.add_contact(user, "hal@clientmail.io", first_name="Hal")
    _lose_pending_events(sync, user)

    code, report = _verify(sync, user, capsys)
    assert code == 1 and report["in_sync"] is False
    found = {(d["kind"], d["email"].split("@")[0]) for d in report["differences"]}
    assert found == {
        ("fields", "ada"),
        ("tags", "ada"),
        ("fields", "eve"),
        ("stale_tags", "fay"),
        ("orphan", "cy"),
        ("orphan", "di"),
        ("missing", "hal"),
    }
    # verify is read-only
    assert sync.queue() == []

    capsys.readouterr()
    assert main(_cli(sync, "sync-now", "--user-id", str(user.user_id))) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["differences"] == 7
    queued = {r["contact_id"]: r["op"] for r in sync.queue()}
    # Only what differs is queued; bo and gus are left alone. di's member, whose link was
    # lost, is archived through a placeholder contact id.
    real = {ids["ada"], ids["eve"], ids["fay"], ids["cy"], ids["di"], hal}
    assert real - {ids["di"]} <= set(queued) and ids["bo"] not in queued
    assert ids["gus"] not in queued
    assert queued[ids["cy"]] == "delete"
    assert len(queued) == 6 and [op for cid, op in queued.items() if cid not in real] == ["delete"]

    sync.drain()
    members = sync.members(user)
    assert members["ada@clientmail.io"]["merge_fields"]["FNAME"] == "Ada"
    assert {"vip", "lead"} <= sync.tags(user, "ada@clientmail.io")
    assert members["eve@clientmail.io"]["merge_fields"]["FNAME"] == "Evelyn"
    assert "old" not in sync.tags(user, "fay@clientmail.io")
    assert members["cy@clientmail.io"]["status"] == "archived"
    assert members["di@clientmail.io"]["status"] == "archived"
    assert members["hal@clientmail.io"]["status"] == "subscribed"
    assert members["stranger@othermail.io"]["status"] == "subscribed"
    assert members["gus@clientmail.io"]["status"] == "unsubscribed"
    assert _verify(sync, user, capsys) == (
        0,
        {"user_id": str(user.user_id), "in_sync": True, "differences": []},
    )
    # The placeholder link is gone with the member it archived.
    assert (
        sync.execute(
            "SELECT 1 FROM mcsync.mailchimp_contact_links l WHERE NOT EXISTS "
            "(SELECT 1 FROM mcsync.source_contacts c WHERE c.id = l.contact_id)"
        )
        == []
    )
    last = sync.execute(
        "SELECT last_full_sync_at FROM mcsync.mailchimp_connections WHERE user_id = %s",
        (user.user_id,),
    )
    assert last[0]["last_full_sync_at"] is not None


def test_an_interrupted_run_resumes_at_the_next_page(
    sync: SyncHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = sync.add_user()
    ids = [sync.add_contact(user, f"c{i}@clientmail.io", first_name=f"C{i}") for i in range(5)]
    sync.drain()
    for i, cid in enumerate(ids):
        sync.update_contact(cid, first_name=f"Renamed {i}")
    _lose_pending_events(sync, user)

    real = MailchimpClient.list_members
    calls = {"n": 0}

    async def dies_on_the_second_page(self: MailchimpClient, *a: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise TransientError("Network error", "the process died here")
        return await real(self, *a, **kw)

    monkeypatch.setattr(MailchimpClient, "list_members", dies_on_the_second_page)
    _request_sync_now(sync, user)
    with pytest.raises(TransientError):
        sync_now_run(
                web_settings(sync), sync.cipher, user.user_id, owner="first", page_size=2
            )
    [run] = sync.execute("SELECT * FROM mcsync.mcsync_reconciliations")
    assert run["next_offset"] == 2 and run["finished_at"] is None
    assert len(sync.queue()) == 2  # the first page's work is already queued

    # While the first runner's lease lives, nobody else takes the run.
    assert (
        sync_now_run(
                web_settings(sync), sync.cipher, user.user_id, owner="second", page_size=2
            )
        is None
    )
    sync.execute(
        "UPDATE mcsync.mcsync_reconciliations SET lease_until = now() - interval '1 second'"
    )
    result = sync_now_run(
            web_settings(sync), sync.cipher, user.user_id, owner="second", page_size=2
        )
    assert result is not None and result.resumed_at == 2 and result.listed == 3
    assert {r["contact_id"] for r in sync.queue()} == set(ids)
    sync.drain()
    assert {m["merge_fields"]["FNAME"] for m in sync.members(user).values()} == {
        f"Renamed {i}" for i in range(5)
    }
    assert verify_audit(web_settings(sync), sync.cipher, user.user_id) == []


def _disconnect_during_listing(
    sync: SyncHarness,
    user: User,
    monkeypatch: pytest.MonkeyPatch,
    *,
    when: Callable[[dict[str, Any]], bool],
) -> None:
    """The user disconnects (the run cancelled) while a listing of members whose query `when`
    picks is answered."""
    real = MailchimpClient.list_members

    async def disconnected_meanwhile(self: MailchimpClient, *a: Any, **kw: Any) -> Any:
        page = await real(self, *a, **kw)
        if when(kw):
            with psycopg.connect(sync.db_url, autocommit=True) as conn:
                cancel_run(conn, user.user_id, "disconnected")
        return page

    monkeypatch.setattr(MailchimpClient, "list_members", disconnected_meanwhile)


def test_a_run_cancelled_mid_page_writes_nothing_of_that_page(
    sync: SyncHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's fixes and its progress are one transaction: when the run was cancelled (a
    disconnect) while its page was being listed, the page's commit finds the run finished and
    rolls back, so nothing of that page is queued and the run stays where the disconnect left
    it."""
    user = sync.add_user()
    ids = [sync.add_contact(user, f"p{i}@clientmail.io", first_name=f"P{i}") for i in range(4)]
    sync.drain()
    for i, cid in enumerate(ids):
        sync.update_contact(cid, first_name=f"Changed {i}")
    _lose_pending_events(sync, user)

    calls = {"n": 0}

    def second_page(kw: dict[str, Any]) -> bool:
        calls["n"] += 1
        return calls["n"] == 2

    _disconnect_during_listing(sync, user, monkeypatch, when=second_page)
    _request_sync_now(sync, user)
    assert (
        sync_now_run(web_settings(sync), sync.cipher, user.user_id, owner="w", page_size=2)
        is None
    )
    [run] = sync.execute("SELECT * FROM mcsync.mcsync_reconciliations")
    assert run["error"] == "disconnected" and run["finished_at"] is not None
    assert run["next_offset"] == 2 and run["queued"] == 2  # the first page only
    assert len(sync.queue()) == 2
    seen = sync.execute("SELECT email_hash FROM mcsync.mcsync_reconcile_seen")
    assert len(seen) == 2


def test_a_run_cancelled_while_archived_members_are_listed_commits_nothing_more(
    sync: SyncHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end of a run (the missing members' fixes, the run finished and closed) is one
    transaction that checks the run is still this owner's: cancelled (a disconnect) while the
    archived members were listed, it writes nothing, and the seen hashes stay the run's."""
    user = sync.add_user()
    sync.add_contact(user, "kept@clientmail.io", first_name="Kept")
    sync.drain()
    sync.add_contact(user, "never@clientmail.io", first_name="Never")  # its member never made
    _lose_pending_events(sync, user)

    _disconnect_during_listing(
        sync, user, monkeypatch, when=lambda kw: kw.get("status") == "archived"
    )
    _request_sync_now(sync, user)
    assert sync_now_run(web_settings(sync), sync.cipher, user.user_id, owner="w") is None
    [run] = sync.execute("SELECT * FROM mcsync.mcsync_reconciliations")
    assert run["error"] == "disconnected" and run["finished_at"] is not None
    assert run["queued"] == 0 and sync.queue() == []  # the missing member's fix not queued
    assert len(sync.execute("SELECT email_hash FROM mcsync.mcsync_reconcile_seen")) == 1


def test_rotate_keys_reencrypts_every_token_with_the_newest_key(
    sync: SyncHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sync.add_user()
    new_key = Fernet.generate_key().decode()
    args = _cli(sync, "rotate-keys")
    args[args.index(f"--encryption-keys={ENCRYPTION_KEY}")] = (
        f"--encryption-keys={new_key},{ENCRYPTION_KEY}"
    )
    assert main(args) == 0
    assert "re-encrypted 1 token" in capsys.readouterr().out
    [row] = sync.execute("SELECT access_token_encrypted FROM mcsync.mailchimp_connections")
    assert TokenCipher([new_key]).decrypt(row["access_token_encrypted"], user.user_id) == user.token


def test_rotate_keys_binds_a_token_stored_before_tokens_were_bound(
    sync: SyncHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row written by an older mcsync (a Fernet token of the bare access token) is refused
    by the worker until `mcsync rotate-keys` binds it to its row's user."""
    user = sync.add_user()
    contact = sync.add_contact(user, "old@clientmail.io")
    legacy = Fernet(ENCRYPTION_KEY.encode()).encrypt(user.token.encode()).decode()
    sync.execute("UPDATE mcsync.mailchimp_connections SET access_token_encrypted = %s", (legacy,))
    sync.drain()
    [row] = sync.execute("SELECT sync_status, last_error FROM mcsync.mailchimp_connections")
    # Paused (the operator's to fix, not the user's), probing to resume by itself.
    assert row["sync_status"] == "paused" and "rotate-keys" in row["last_error"]
    assert sync.api_calls() == [] and sync.members(user) == {}
    assert len(sync.queue()) == 1

    assert main(_cli(sync, "rotate-keys")) == 0
    assert "re-encrypted 1 token" in capsys.readouterr().out
    [row] = sync.execute("SELECT access_token_encrypted FROM mcsync.mailchimp_connections")
    assert sync.cipher.decrypt(row["access_token_encrypted"], user.user_id) == user.token
    sync.execute("UPDATE mcsync.mailchimp_connections SET next_probe_at = now()")  # time passes
    sync.drain()  # the probe succeeds: it carries on by itself
    assert set(sync.members(user)) == {"old@clientmail.io"} and contact


# --- the comparison itself (pure) -----------------------------------------------------------


def _snapshot(contacts: list[Contact], ledger: list[LedgerMember] = ()) -> Snapshot:  # type: ignore[assignment]
    return Snapshot(
        desired_members(contacts), {m.email_hash: m for m in ledger}, {}, {c.id for c in contacts}
    )


def _member(
    email: str, status: str = "subscribed", tags: tuple[str, ...] = (), **fields: str
) -> Member:
    return Member(
        id=subscriber_hash(email),
        email_address=email,
        status=status,
        merge_fields={"FNAME": "", "LNAME": "", "PHONE": "", **fields},
        tags=[Tag(name=t) for t in tags],
    )


def test_status_is_never_drift_and_tag_case_does_not_matter() -> None:
    c = person(uuid.uuid4(), "Zoe@clientmail.io", "Zoe", tags=("VIP",))
    snap = _snapshot([c])
    assert (
        compare_member(_member("zoe@clientmail.io", "unsubscribed", ("vip",), FNAME="Zoe"), snap)
        == []
    )
    # Archived by someone else: mcsync never raises a status.
    assert compare_member(_member("zoe@clientmail.io", "archived"), snap) == []
    # Members mcsync never touched are never its business.
    assert compare_member(_member("other@clientmail.io"), snap) == []


def test_refused_contacts_and_partly_accepted_fields_are_not_drift() -> None:
    c = person(uuid.uuid4(), "yan@clientmail.io", "Yan", phone="not a phone")
    snap = _snapshot([c])
    snap.ignored_fields[c.id] = {"PHONE"}
    assert compare_member(_member("yan@clientmail.io", FNAME="Yan"), snap) == []
    snap.rejected.add(c.id)
    assert missing_members(snap, set()) == []


def test_a_revoked_token_ends_the_run_instead_of_retrying_forever(sync: SyncHarness) -> None:
    user = sync.add_user()
    sync.admin.revoke(user.token)
    _request_sync_now(sync, user)
    assert (
        sync_now_run(web_settings(sync), sync.cipher, user.user_id, owner="w")
        is None
    )
    [run] = sync.execute("SELECT * FROM mcsync.mcsync_reconciliations")
    assert run["finished_at"] is not None and "401" in run["error"]
    assert stale_run_ids(sync.db_url) == []


def test_worker_and_verify_agree_on_the_most_recent_contact_of_a_shared_address(
    sync: SyncHarness,
) -> None:
    """One definition of "most recent contact" (mirror.contact_recency): a sharing contact's
    pending change counts for the worker as it does for verify, so verify never reports drift
    the worker would not repair."""
    user = sync.add_user()
    ann = sync.add_contact(user, "shared@coachmail.io", first_name="Ann")
    bea = sync.add_contact(user, "shared@coachmail.io", first_name="Bea")
    sync.drain()
    sync.update_contact(ann, first_name="Ann 2")
    sync.update_contact(bea, first_name="Bea 2")  # the most recent change of the address
    # Bea's change is queued but not due (say, postponed): the pass serves Ann's alone.
    sync.execute(
        "UPDATE mcsync.mailchimp_sync_queue SET next_retry_at = now() + interval '1 hour'"
        " WHERE contact_id = %s",
        (bea,),
    )
    sync.drain()
    assert [r["contact_id"] for r in sync.queue()] == [bea]
    assert sync.members(user)["shared@coachmail.io"]["merge_fields"]["FNAME"] == "Bea 2"
    assert verify_audit(web_settings(sync), sync.cipher, user.user_id) == []


def test_a_member_archived_by_hand_is_never_drift_and_sync_now_leaves_it_alone(
    sync: SyncHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    """The member listing leaves archived members out: a member a marketer archived was
    reported "missing" on every verify, and Sync Now requeued it on every run."""
    user = sync.add_user()
    sync.add_contact(user, "kept@coachmail.io", first_name="Kept")
    sync.add_contact(user, "shelved@coachmail.io", first_name="Shelved")
    sync.drain()
    sync.admin.archive(user.audience_id, "shelved@coachmail.io")

    code, report = _verify(sync, user, capsys)
    assert (code, report["in_sync"], report["differences"]) == (0, True, [])
    for _ in range(2):
        sync.execute(
            "UPDATE mcsync.mcsync_reconciliations SET requested_at = now() - interval '2 hours'"
        )
        _request_sync_now(sync, user)
        result = sync_now_run(web_settings(sync), sync.cipher, user.user_id, owner="w")
        assert result is not None and result.queued == 0 and result.differences == 0
        assert sync.queue() == []
    sync.drain()
    assert sync.members(user)["shelved@coachmail.io"]["status"] == "archived"


def _restart_emulator(sync: SyncHarness, user: User) -> None:
    """The emulator restarted (its state is in memory): the same account, token and audience
    id, and an empty audience; mcsync's ledger still says every member is there."""
    sync.admin.reset()
    sync.admin.create_account(
        dc="us1",
        access_token=user.token,
        audiences=[{"id": user.audience_id, "name": "Audience"}],
    )


def test_reconnecting_compares_with_the_audience_itself_and_restores_what_was_removed_outside(
    sync: SyncHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    """An audience emptied outside mcsync (an emulator restart showed it): connecting again ran
    a "first full sync" that trusted the ledger and reported done with 3 of 34 members there."""
    user = sync.add_user()
    emails = [f"back{i}@coachmail.io" for i in range(6)]
    for email in emails:
        sync.add_contact(user, email, first_name="Back", tags=["client"])
    sync.drain()
    _restart_emulator(sync, user)
    assert sync.members(user) == {}

    capsys.readouterr()
    assert main(
        _cli(
            sync,
            "connect",
            "--user-id",
            str(user.user_id),
            "--access-token",
            user.token,
            "--dc",
            "us1",
            "--audience-id",
            user.audience_id,
        )
    ) == 0
    assert "compared with the audience itself" in capsys.readouterr().out
    sync.drain()
    members = sync.members(user)
    assert set(members) == set(emails)
    assert all({t["name"] for t in members[e]["tags"]} == {"client"} for e in emails)
    # Not counted as the user's own Sync Now: their button is not held back an hour.
    with psycopg.connect(sync.db_url, autocommit=True) as conn:
        assert request_sync_now(conn, user.user_id) == 0


def test_a_reconnect_in_the_web_leaves_a_run_for_the_web_and_a_first_connect_none(
    sync: SyncHarness,
) -> None:
    """`mcsync web` runs the check at once after its OAuth callback, and its sweeper picks up
    any run nobody holds; a first connect (no ledger for the audience) needs none."""
    user = sync.add_user()
    assert stale_run_ids(sync.db_url) == []
    sync.add_contact(user, "first@coachmail.io")
    sync.drain()
    _restart_emulator(sync, user)
    sync.connect(user)  # what the OAuth callback stores
    assert stale_run_ids(sync.db_url) == [user.user_id]
    result = sync_now_run(web_settings(sync), sync.cipher, user.user_id, owner="sweeper")
    assert result is not None and result.queued == 1
    sync.drain()
    assert set(sync.members(user)) == {"first@coachmail.io"}


def test_the_operators_sync_now_does_not_start_the_users_hourly_limit(
    sync: SyncHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sync.add_user()
    assert main(_cli(sync, "sync-now", "--user-id", str(user.user_id))) == 0
    with psycopg.connect(sync.db_url, autocommit=True) as conn:
        assert request_sync_now(conn, user.user_id) == 0  # the user's own button still works
        assert request_sync_now(conn, user.user_id) > 3000  # and then its hour counts


def test_the_web_process_reconciles_on_its_one_pool_and_holds_no_connection_across_mailchimp(
    web: WebHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18: Sync Now's runs, the sweeper that takes them over and the routes share the web
    process's one pool. More runs than the pool has connections are stopped together inside
    their Mailchimp call; at that moment Postgres shows the web login's backends, and each is
    one of the pool's (its application_name), no more of them than the pool's size. (Each
    run used to open a connection of its own and hold it through the audience's pages.)"""
    sync = web.sync
    ctx = web.client.app.state.mcsync  # type: ignore[attr-defined]
    runs = ctx.database.max_size + 4
    users = [sync.add_user() for _ in range(runs)]
    for user in users:
        sync.add_contact(user, f"one-{user.audience_id}@clientmail.io", first_name="One")
    sync.drain()
    for user in users:  # a change the worker never hears of: each run queues one contact
        sync.execute(
            "UPDATE contacts SET first_name = 'Renamed' WHERE user_id = %s", (user.user_id,)
        )
        _lose_pending_events(sync, user)
    web_login = psycopg.conninfo.conninfo_to_dict(web.settings.database_url)["user"]

    real = MailchimpClient.list_members
    arrived: list[int] = []
    seen: dict[str, Any] = {}
    all_in = asyncio.Event()

    async def held_until_every_run_is_in_mailchimp(
        self: MailchimpClient, *a: Any, **kw: Any
    ) -> Any:
        if not all_in.is_set():
            arrived.append(1)
            if len(arrived) == runs:
                seen["backends"] = sync.execute(
                    "SELECT application_name FROM pg_catalog.pg_stat_activity"
                    " WHERE usename = %s AND datname = pg_catalog.current_database()",
                    (web_login,),
                )
                all_in.set()
            await asyncio.wait_for(all_in.wait(), timeout=60)
        return await real(self, *a, **kw)

    monkeypatch.setattr(MailchimpClient, "list_members", held_until_every_run_is_in_mailchimp)
    for user in users:  # an operator's runs: nobody holds them, so the sweeper takes them
        with psycopg.connect(sync.db_url, autocommit=True) as conn:
            assert request_sync_now(conn, user.user_id, min_interval=0, by_user=False) == 0
    for user in users:
        web.wait_for_runs(user.user_id)

    backends = [r["application_name"] for r in seen["backends"]]
    assert 1 <= len(backends) <= ctx.database.max_size, backends
    assert set(backends) == {WEB_APPLICATION_NAME}
    finished = sync.execute(
        "SELECT error, queued FROM mcsync.mcsync_reconciliations WHERE finished_at IS NOT NULL"
    )
    assert finished == [{"error": None, "queued": 1}] * runs
    sync.drain()
    for user in users:
        [member] = sync.members(user).values()
        assert member["merge_fields"]["FNAME"] == "Renamed"
