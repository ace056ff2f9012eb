"""The Mailchimp token never shows: not in a response, not in a log line, not in Postgres."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator

import pytest
import structlog

from mcsync.logging import configure_logging
from tests.e2e.web.conftest import WebHarness
from tests.support.harness import wait_until


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("DEBUG", stream=buffer)
    handler = logging.StreamHandler(buffer)  # stdlib loggers (uvicorn, httpx) too
    logging.getLogger().addHandler(handler)
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    yield buffer
    logging.getLogger().removeHandler(handler)
    logging.getLogger().setLevel(previous)
    structlog.reset_defaults()


def test_the_token_never_appears_in_responses_logs_or_the_database(
    web: WebHarness, log_lines: io.StringIO
) -> None:
    user = uuid.uuid4()
    web.add_contact(user, "eve@clientmail.io", first_name="Eve")
    account = web.account(
        "Coach", [{"id": "one", "name": "Clients"}, {"id": "two", "name": "Newsletter"}]
    )
    token = account["access_token"]
    h = web.headers(user)
    bodies: list[str] = []

    callback = web.consent(user, account["account_id"])
    assert token not in callback
    for response in (
        web.client.get(callback),
        web.client.get("/api/status", headers=h),
        web.client.get("/api/audiences", headers=h),
        web.client.put("/api/audience", headers=h, json={"audience_id": "one"}),
        web.client.post("/api/sync-now", headers=h),
        web.client.post("/api/sync-now", headers=h),
    ):
        bodies.append(response.text + str(dict(response.headers)))
    wait_until(
        lambda: web.rows(
            "SELECT 1 FROM mcsync.mcsync_reconciliations"
            " WHERE finished_at IS NOT NULL AND user_id = %s",
            (user,),
        )
    )
    web.sync.drain()
    assert "eve@clientmail.io" in web.members("one")

    dump: list[str] = []
    tables = web.rows(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_schema IN ('public', 'mcsync')"
    )
    for t in tables:
        dump += [
            str(r) for r in web.rows(f'SELECT * FROM "{t["table_schema"]}"."{t["table_name"]}"')
        ]
    assert any("mcsync2:gAAAA" in row for row in dump)  # the encrypted token is there; we did look

    logged = log_lines.getvalue()
    assert "oauth_connected" in logged and "reconcile_finished" in logged  # we did log
    assert token not in logged
    assert all(token not in b for b in bodies)
    assert all(token not in row for row in dump)
