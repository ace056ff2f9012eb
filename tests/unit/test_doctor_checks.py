"""The doctor's pure judgements and its reading of grants.sql (the live checks are in
tests/e2e/test_doctor.py)."""

from __future__ import annotations

from collections import Counter

from mcsync.doctor.checks import (
    ExposureFacts,
    Grantee,
    GrantFacts,
    ListenFacts,
    PostgrestSetting,
    exposed_schemas,
    judge_exposure,
    judge_grants,
    judge_listen,
    judge_postgrest,
    judge_tokens,
)
from mcsync.doctor.grants import parse_grants, shipped_grants


def test_grants_sql_is_read_for_roles_and_exactly_what_each_gets() -> None:
    expected = shipped_grants(prefix="mcsync")
    assert expected.roles == ("mcsync_worker", "mcsync_web")
    worker = expected.privileges["mcsync_worker"]
    assert worker[""] == {"USAGE"}
    assert worker["mailchimp_connections"] == {"SELECT", "UPDATE"}
    assert "mcsync_oauth_states" not in worker
    assert expected.privileges["mcsync_web"]["mcsync_oauth_states"] == {
        "SELECT",
        "INSERT",
        "DELETE",
    }
    assert "source_contacts" in expected.objects


def test_commented_grants_and_login_examples_are_not_read() -> None:
    text = """-- CREATE ROLE example_login LOGIN PASSWORD '...' IN ROLE r1;
    CREATE ROLE r1 NOLOGIN;
    -- GRANT DELETE ON mcsync.t TO r1;
    GRANT SELECT,
          UPDATE ON mcsync.t TO r1;
    GRANT USAGE ON SCHEMA mcsync TO r1;"""
    expected = parse_grants(text)
    assert expected.roles == ("r1",)
    assert expected.privileges == {"r1": {"t": {"SELECT", "UPDATE"}, "": {"USAGE"}}}


def test_grants_name_what_is_missing_and_what_is_extra() -> None:
    expected = parse_grants(
        "CREATE ROLE w NOLOGIN; GRANT SELECT, INSERT ON mcsync.q TO w; "
        "GRANT USAGE ON SCHEMA mcsync TO w;"
    )
    facts = GrantFacts(
        frozenset({"w"}), {"w": {"": frozenset({"USAGE"}), "q": frozenset({"SELECT", "TRUNCATE"})}}
    )
    check = judge_grants(expected, facts, "mcsync")
    assert check.status == "problem"
    assert "w lacks INSERT on mcsync.q" in check.detail
    assert "w has TRUNCATE on mcsync.q, which it never uses" in check.detail
    # The fix as docs/install.md gives it: psql stops at the first error (else it exits 0
    # after a refusal), and a second install's prefix is named.
    assert '| psql -v ON_ERROR_STOP=1 "$DATABASE_URL"' in check.fix
    assert "MCSYNC_ROLE_PREFIX" in check.fix


def test_exposure_allows_only_the_email_key_function_to_public() -> None:
    allowed = Grantee("PUBLIC", "EXECUTE", "function mcsync.mcsync_email_key(text)")
    assert judge_exposure(ExposureFacts([allowed]), "mcsync").status == "ok"
    other = Grantee("PUBLIC", "EXECUTE", "function mcsync.mcsync_enqueue_deleted()")
    check = judge_exposure(ExposureFacts([allowed, other]), "mcsync")
    assert check.status == "problem" and "usable by PUBLIC" in check.detail
    assert "mcsync_email_key" not in check.detail


def test_listen_names_the_pooler_from_what_it_saw() -> None:
    changed = judge_listen(ListenFacts(False, 2.0, frozenset({10, 11})))
    assert "the server session changed between two transactions" in changed.detail
    port = judge_listen(ListenFacts(False, 2.0, frozenset({10}), pooler_port=True))
    assert "port 6543" in port.detail
    quiet = judge_listen(ListenFacts(False, 2.0, frozenset({10})))
    assert "transaction-mode pooler" in quiet.detail and quiet.status == "problem"
    assert judge_listen(ListenFacts(True, 2.0, frozenset({10}), elapsed_ms=3)).status == "ok"


def test_postgrest_reads_the_exposed_schemas_list() -> None:
    assert exposed_schemas(' public, "mcsync" ,graphql_public') == [
        "public",
        "mcsync",
        "graphql_public",
    ]
    assert (
        judge_postgrest([PostgrestSetting("role authenticator", "public")], "mcsync").status == "ok"
    )
    assert (
        judge_postgrest([PostgrestSetting("role authenticator", "mcsync_x")], "mcsync").status
        == "ok"
    )
    bad = judge_postgrest([PostgrestSetting("role authenticator", "public,mcsync")], "mcsync")
    assert bad.status == "problem" and "role authenticator" in bad.detail


def test_tokens_are_counted_by_kind() -> None:
    counts = Counter({"newest_key": 3, "undecryptable": 2})
    check = judge_tokens(counts, 5)
    assert check.status == "problem"
    assert check.detail == "3 of 5 token(s) decrypt; 2 not decryptable with any configured key"
    assert "put the key" in check.fix
    assert judge_tokens(Counter({"newest_key": 2}), 2).status == "ok"
    assert judge_tokens(None, 2).status == "problem"


def test_tokens_an_upgrade_withdrew_are_no_key_problem() -> None:
    """sql/007 empties the tokens of an exposed install's copied rows: those users reconnect;
    the keys are fine, and `rotate-keys` is not the fix."""
    from cryptography.fernet import Fernet

    from mcsync.crypto import TokenCipher
    from mcsync.doctor.probes import classify_token

    key = Fernet.generate_key()
    assert classify_token(TokenCipher([key.decode()]), Fernet(key), "u", "") == "withdrawn"
    check = judge_tokens(Counter({"newest_key": 2, "withdrawn": 1}), 3)
    assert check.status == "ok"
    assert "2 stored token(s)" in check.detail and "1 withdrawn" in check.detail
