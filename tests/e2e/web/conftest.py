"""The web side against real Postgres, the emulator as a real server and the real worker.

`mcsync web` is configured as on a Supabase project created today: users' ES256 access tokens,
verified against a JWKS (tests/support/tokens.py serves one over real HTTP), no shared secret."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from mcsync.config import Settings
from mcsync.crypto import TokenCipher
from mcsync.database import Database
from mcsync.reconcile import Difference, RunResult, audit, run_reconciliation, stale_runs
from mcsync.web import create_app
from tests.support.harness import SyncHarness, wait_until
from tests.support.roles import web_url
from tests.support.tokens import TokenIssuer, default_issuer

CLIENT_ID = "mcsync-test-client"
CLIENT_SECRET = "mcsync-test-client-secret"
APP_ORIGIN = "http://app.example.test"
REDIRECT_URI = "http://testserver/oauth/callback"


def query_params(url: str) -> dict[str, str]:
    """The query string of `url`, one value per name."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class WebHarness:
    """The sync harness plus `mcsync web` in a TestClient, and an OAuth helper."""

    def __init__(self, sync: SyncHarness, client: TestClient, settings: Settings) -> None:
        self.sync = sync
        self.client = client
        self.settings = settings
        self.admin = sync.admin

    def headers(self, user_id: uuid.UUID | str) -> dict[str, str]:
        return default_issuer().headers(user_id)

    def account(self, name: str, audiences: list[dict[str, Any]]) -> dict[str, Any]:
        return self.admin.create_account(dc="us7", account_name=name, audiences=audiences)

    def start(self, user_id: uuid.UUID) -> dict[str, str]:
        """Press Connect: the widget's `POST /api/oauth/start` from the app's page."""
        r = self.client.post(
            "/api/oauth/start", headers={**self.headers(user_id), "Origin": APP_ORIGIN}
        )
        assert r.status_code == 200, r.text
        started: dict[str, str] = r.json()
        return started

    def begin(self, started: dict[str, str], *, origin: str | None = APP_ORIGIN) -> httpx.Response:
        """The popup's first stop, as the widget's form POST sends it (this client's cookie jar
        is the browser's)."""
        headers = {"Origin": origin} if origin is not None else {}
        return self.client.post(
            started["begin_url"],
            data={"state": started["state"]},
            headers=headers,
            follow_redirects=False,
        )

    def approve(self, authorize: str, account_id: str, *, allow: bool = True) -> str:
        """Allow (or Deny) on the emulator's consent page for `authorize`. Returns the callback
        URL Mailchimp sends the popup to (not yet visited)."""
        answer = httpx.post(
            authorize.split("?")[0],
            data={
                **query_params(authorize),
                "account": account_id,
                "decision": "allow" if allow else "deny",
            },
            follow_redirects=False,
        )
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        assert location.startswith(self.settings.mailchimp_redirect_uri)
        return location.replace("http://testserver", "")

    def consent(self, user_id: uuid.UUID, account_id: str, *, allow: bool = True) -> str:
        """Press Connect, let the popup begin (the binding cookie lands in this client's jar),
        then Allow on the emulator's consent page. Returns the callback URL (not yet visited)."""
        r = self.begin(self.start(user_id))
        assert r.status_code == 303, r.text
        return self.approve(r.headers["location"], account_id, allow=allow)

    def connect(self, user_id: uuid.UUID, account_id: str) -> httpx.Response:
        return self.client.get(self.consent(user_id, account_id))

    def wait_for_runs(self, user_id: uuid.UUID) -> None:
        """Until the user's reconciliation (a reconnect's check, run by the web side's sweeper)
        has finished: while it holds the connection row, a worker's claim passes the account
        by (the worker would serve it next time; a test's one drain would not)."""
        wait_until(
            lambda: not self.rows(
                "SELECT 1 FROM mcsync.mcsync_reconciliations"
                " WHERE user_id = %s AND finished_at IS NULL",
                (user_id,),
            ),
            timeout=30,
        )

    def status(self, user_id: uuid.UUID) -> dict[str, Any]:
        r = self.client.get("/api/status", headers=self.headers(user_id))
        assert r.status_code == 200, r.text
        return r.json()

    def rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with (
            psycopg.connect(self.sync.db_url, autocommit=True) as conn,
            conn.cursor(row_factory=dict_row) as cur,
        ):
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def add_contact(self, user_id: uuid.UUID, email: str | None, **columns: Any) -> uuid.UUID:
        values = {"user_id": user_id, "email": email, **columns}
        names = ", ".join(values)
        marks = ", ".join(f"%({k})s" for k in values)
        return self.rows(f"INSERT INTO contacts ({names}) VALUES ({marks}) RETURNING id", values)[
            0
        ]["id"]

    def members(self, audience_id: str) -> dict[str, dict[str, Any]]:
        return {m["email_address"].lower(): m for m in self.admin.members(audience_id)}


def web_settings(
    sync: SyncHarness, *, tokens: TokenIssuer | None = None, **overrides: Any
) -> Settings:
    """`mcsync web`'s settings, connecting as the web login (sql/grants.sql's mcsync_web), and
    verifying users against the JWKS of `tokens` (the shared test issuer by default) with no
    JWT secret."""
    issuer = tokens or default_issuer()
    values = {
        **sync.settings.model_dump(),
        "database_url": web_url(sync.db_url),
        "mcsync_jwks_url": issuer.jwks_url,
        "mcsync_jwt_issuer": issuer.issuer_url,
        "mcsync_jwt_secret": "",
        "mailchimp_client_id": CLIENT_ID,
        "mailchimp_client_secret": CLIENT_SECRET,
        "mailchimp_redirect_uri": REDIRECT_URI,
        "mcsync_app_origin": APP_ORIGIN,
        **overrides,
    }
    return Settings(**values)


def sync_now_run(
    settings: Settings, cipher: TokenCipher, user_id: uuid.UUID, **options: Any
) -> RunResult | None:
    """Run (or resume) the user's requested reconciliation as a process does: on a Database of
    its own (settings' login), borrowed a step at a time."""
    with Database.session(settings.database_url) as db:
        return asyncio.run(run_reconciliation(db, settings, cipher, user_id, **options))


def verify_audit(settings: Settings, cipher: TokenCipher, user_id: uuid.UUID) -> list[Difference]:
    """`mcsync verify`'s audit, on a Database of settings' login."""
    with Database.session(settings.database_url) as db:
        return asyncio.run(audit(db, settings, cipher, user_id))


def stale_run_ids(database_url: str) -> list[uuid.UUID]:
    """The runs the web's sweeper would take over now."""
    with Database.session(database_url) as db:
        return asyncio.run(stale_runs(db))


@pytest.fixture
def web(db_url: str, emulator: Any) -> Iterator[WebHarness]:
    sync = SyncHarness(db_url, emulator)
    settings = web_settings(sync)
    sync.admin.register_oauth_client(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI)
    with TestClient(create_app(settings, sweep_interval=0.2)) as client:
        yield WebHarness(sync, client, settings)


TOKEN_LIKE = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`mcsync.cli.main` points logging at the stream of the moment (pytest's capture, closed
    after the test); put things back so later tests don't log into a closed file."""
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
