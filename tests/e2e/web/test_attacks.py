"""Attacks on what mcsync keeps in the database, by someone who can write its rows: a forged
`dc` must never send a request (and the token with it) to another host, and a token ciphertext
copied into another user's row must decrypt for nobody."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from mcsync.connections import connect_user
from mcsync.crypto import TokenBindingError, TokenCipher
from mcsync.mailchimp.endpoints import InvalidDataCenter, api_base, checked_dc
from mcsync.reconcile import request_sync_now
from mcsync.web import create_app
from tests.e2e.web.conftest import WebHarness, sync_now_run, web_settings
from tests.support.harness import ENCRYPTION_KEY, SyncHarness

FORGED_DC_TEMPLATE = "http://{dc}.invalid/3.0"  # what the real template does: dc is the host


class Listener:
    """The attacker's host: records every request that reaches it."""

    def __init__(self) -> None:
        seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(f"GET {self.path} {self.headers.get('Authorization')}")
                self.send_response(200)
                self.end_headers()

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.seen = seen
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def attacker() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.server.shutdown()


def _forge_dc(sync: SyncHarness, user_id: uuid.UUID, dc: str) -> None:
    """Plant a dc past the CHECK constraint, as an owner or an older row would."""
    sync.execute(
        "ALTER TABLE mcsync.mailchimp_connections DROP CONSTRAINT mailchimp_connections_dc_form"
    )
    sync.execute(
        "UPDATE mcsync.mailchimp_connections SET dc = %s WHERE user_id = %s", (dc, user_id)
    )


def _request_sync_now(sync: SyncHarness, user_id: uuid.UUID) -> None:
    with psycopg.connect(sync.db_url, autocommit=True) as conn:
        request_sync_now(conn, user_id)


def test_only_mailchimps_form_of_dc_is_accepted() -> None:
    for dc in ("us1", "us21", "eu7"):
        assert checked_dc(dc) == dc
        assert api_base("https://{dc}.api.mailchimp.com/3.0", dc).startswith(f"https://{dc}.")
    for forged in ("attacker.example/x?", "us1.evil.test", "us1/", "US1", "us", "1", "", "us1 "):
        with pytest.raises(InvalidDataCenter):
            api_base("https://{dc}.api.mailchimp.com/3.0", forged)


def test_a_forged_dc_cannot_be_stored(sync: SyncHarness) -> None:
    user = sync.add_user()
    with pytest.raises(psycopg.errors.CheckViolation):
        sync.execute(
            "UPDATE mcsync.mailchimp_connections SET dc = 'attacker.example/x?' WHERE user_id = %s",
            (user.user_id,),
        )
    with psycopg.connect(sync.db_url, autocommit=True) as conn, pytest.raises(InvalidDataCenter):
        connect_user(
            conn,
            sync.cipher,
            user_id=uuid.uuid4(),
            access_token="t",
            dc="attacker.example/x?",
            api_endpoint="https://attacker.example",
        )
    assert len(sync.execute("SELECT 1 FROM mcsync.mailchimp_connections")) == 1


def test_a_forged_dc_in_the_database_never_sends_a_request(
    db_url: str, emulator: Any, attacker: Listener
) -> None:
    sync = SyncHarness(db_url, emulator, mailchimp_api_url=FORGED_DC_TEMPLATE)
    user = sync.add_user()
    _forge_dc(sync, user.user_id, f"{attacker.host}/x?")
    sync.add_contact(user, "victim@clientmail.io")

    sync.drain()
    assert attacker.seen == []
    [row] = sync.execute("SELECT sync_status, last_error FROM mcsync.mailchimp_connections")
    assert row["sync_status"] == "error"
    assert "not a Mailchimp data center" in row["last_error"]

    # Sync Now (the web side) and the audience picker refuse it too.
    settings = web_settings(sync, mailchimp_api_url=FORGED_DC_TEMPLATE)
    _request_sync_now(sync, user.user_id)
    with pytest.raises(InvalidDataCenter):
        sync_now_run(settings, sync.cipher, user.user_id, owner="x")
    with TestClient(create_app(settings, sweep_interval=60)) as client:
        web = WebHarness(sync, client, settings)
        r = client.get("/api/audiences", headers=web.headers(user.user_id))
        assert r.status_code == 409 and "connect again" in r.json()["detail"]
    assert attacker.seen == []


def test_oauth_metadata_naming_another_host_stores_nothing(web: WebHarness) -> None:
    account = web.admin.create_account(
        dc="attacker.example/x?", account_name="Forged", audiences=[{"id": "f1", "name": "F"}]
    )
    user = uuid.uuid4()
    page = web.client.get(web.consent(user, account["account_id"]))
    assert page.status_code == 502 and "nothing was saved" in page.text
    assert web.rows("SELECT 1 FROM mcsync.mailchimp_connections") == []
    # Only OAuth calls were made: no API call was built from the forged dc.
    assert [r for r in web.admin.requests() if r["path"].startswith("/3.0/")] == []


def test_a_token_ciphertext_copied_to_another_users_row_decrypts_for_nobody(
    sync: SyncHarness,
) -> None:
    attacker_user = sync.add_user()
    victim = sync.add_user()
    sync.add_contact(victim, "victim-client@clientmail.io")
    sync.drain()
    assert set(sync.members(victim)) == {"victim-client@clientmail.io"}
    calls_before = len(sync.api_calls())

    # The attacker copies their own ciphertext into the victim's row and points it at their
    # own audience: were it accepted, the victim's contacts would flow to the attacker.
    [row] = sync.execute(
        "SELECT access_token_encrypted FROM mcsync.mailchimp_connections WHERE user_id = %s",
        (attacker_user.user_id,),
    )
    sync.execute(
        "UPDATE mcsync.mailchimp_connections SET access_token_encrypted = %s, audience_id = %s"
        " WHERE user_id = %s",
        (row["access_token_encrypted"], attacker_user.audience_id, victim.user_id),
    )
    with pytest.raises(TokenBindingError):
        sync.cipher.decrypt(row["access_token_encrypted"], victim.user_id)
    sync.add_contact(victim, "another-client@clientmail.io")
    sync.execute("UPDATE contacts SET first_name = 'Leak' WHERE user_id = %s", (victim.user_id,))
    sync.drain()

    assert sync.members(attacker_user) == {}
    assert len(sync.api_calls()) == calls_before
    [state] = sync.execute(
        "SELECT sync_status, last_error FROM mcsync.mailchimp_connections WHERE user_id = %s",
        (victim.user_id,),
    )
    assert state["sync_status"] == "error" and "another user" in state["last_error"]
    # Sync Now refuses it as well.
    _request_sync_now(sync, victim.user_id)
    with pytest.raises(TokenBindingError):
        sync_now_run(web_settings(sync), sync.cipher, victim.user_id, owner="x")


def test_binding_survives_key_rotation() -> None:
    old, new = (
        TokenCipher([ENCRYPTION_KEY]),
        TokenCipher.from_setting("cw_0x689RpI-jtRR7oE8h_eQsKImvJ_-GxJsHQuTQTA=," + ENCRYPTION_KEY),
    )
    alice, bob = uuid.uuid4(), uuid.uuid4()
    stored = old.encrypt("alice-token", alice)
    rotated = new.rotate(stored, alice)
    assert rotated != stored
    assert (
        TokenCipher(["cw_0x689RpI-jtRR7oE8h_eQsKImvJ_-GxJsHQuTQTA="]).decrypt(rotated, alice)
        == "alice-token"
    )
    for ciphertext in (stored, rotated):
        with pytest.raises(TokenBindingError):
            new.decrypt(ciphertext, bob)
        # Rotating a copy in bob's row is refused too: rotation never launders a binding.
        with pytest.raises(TokenBindingError):
            new.rotate(ciphertext, bob)
