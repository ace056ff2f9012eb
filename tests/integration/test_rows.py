"""One subscriber hash and one way a row becomes a planner value, for every reader."""

from __future__ import annotations

import hashlib

import psycopg
from hypothesis import given
from hypothesis import strategies as st
from psycopg.rows import dict_row

from mcsync import mirror, reconcile, reconcile_store
from mcsync.emails import normalize_email, subscriber_hash
from mcsync.emulator.state import subscriber_hash as emulated_hash
from mcsync.mailchimp import client
from mcsync.mirror import LedgerMember
from mcsync.queries import statements
from mcsync.rows import ledger_from_row, ledger_params
from tests.support.harness import SyncHarness


def test_subscriber_hash_is_the_md5_of_the_lowercased_address() -> None:
    expected = hashlib.md5(b"urist.mcvankab@freddiesjokes.com").hexdigest()
    assert subscriber_hash("Urist.McVankab@freddiesjokes.com") == expected
    # Trimmed like every address mcsync reads (sql/002's mcsync_email_key): ASCII spaces only.
    assert subscriber_hash(" \tUrist.McVankab@freddiesjokes.com\r\n") == expected
    assert subscriber_hash("\xa0urist.mcvankab@freddiesjokes.com") != expected


def test_the_planner_the_store_and_the_client_share_one_subscriber_hash() -> None:
    assert mirror.subscriber_hash is subscriber_hash
    assert client.subscriber_hash is subscriber_hash
    assert mirror.normalize_email is normalize_email


_ADDRESS = r"[ \t]{0,2}[A-Za-z0-9._%+-]{1,12}@[A-Za-z0-9-]{1,10}\.[A-Za-z]{2,4}[ \n]{0,2}"


@given(st.from_regex(_ADDRESS, fullmatch=True))
def test_mcsync_names_a_member_as_the_emulated_mailchimp_does(raw: str) -> None:
    email = normalize_email(raw)
    assert email is not None
    # What mcsync sends is the normalised address; Mailchimp hashes what it receives.
    assert subscriber_hash(raw) == emulated_hash(email) == subscriber_hash(email)


def test_the_store_and_the_reconciliation_read_the_same_ledger(sync: SyncHarness) -> None:
    user = sync.add_user()
    member = LedgerMember(
        email_hash=subscriber_hash("ana@example.com"),
        email="ana@example.com",
        fields_hash="f" * 32,
        tags=("vip",),
        status="subscribed",
        archived=True,
        maybe_tags=("maybe",),
        archive_status="subscribed",
        pending_rename_from="0" * 32,
    )
    # Written with its neighbours in one statement (each member's tags are a slice of one
    # array): one with nothing optional, one with tags but none in doubt, one written ahead.
    bare = LedgerMember(
        email_hash=subscriber_hash("bo@example.com"),
        email="bo@example.com",
        fields_hash=None,
        tags=(),
    )
    tagged = LedgerMember(
        email_hash=subscriber_hash("cy@example.com"),
        email="cy@example.com",
        fields_hash="0123456789abcdef" * 2,
        tags=("a", "b,c", 'd"e', "NULL"),
        status="pending",
    )
    ahead = LedgerMember(
        email_hash=subscriber_hash("di@example.com"),
        email="di@example.com",
        fields_hash=None,
        tags=(),
        maybe_tags=("x", "y"),
    )
    written = [bare, member, tagged, ahead]
    params = {"user_id": user.user_id, "audience_id": user.audience_id}
    with psycopg.connect(sync.db_url, autocommit=True) as conn:
        # Alone first: every array empty or all NULL (a pass writing ahead new members only).
        conn.execute(statements().UPSERT_LEDGER, {**params, **ledger_params([bare])})
        conn.execute(statements().UPSERT_LEDGER, {**params, **ledger_params(written)})
        with conn.cursor(row_factory=dict_row) as cur:
            hashes = sorted(m.email_hash for m in written)
            cur.execute(statements().LEDGER_BY_HASH, {**params, "hashes": hashes})
            by_hash = {r["email_hash"]: ledger_from_row(r) for r in cur.fetchall()}
        # Nothing in doubt is stored as NULL, not as an empty array (sql/010).
        stored = conn.execute(
            "SELECT maybe_tags FROM mcsync.mailchimp_members WHERE email_hash = decode(%s, 'hex')",
            (tagged.email_hash,),
        ).fetchone()
    assert by_hash == {m.email_hash: m for m in written}
    assert stored == (None,)

    with psycopg.connect(sync.db_url, autocommit=True) as conn:
        mirror_rows = reconcile_store.read_mirror(conn, user.user_id, user.audience_id)
    # Every field, maybe_tags included (a positional copy once dropped them).
    assert reconcile._snapshot(mirror_rows).ledger == {m.email_hash: m for m in written}
