"""Connect, choose an audience, disconnect: the connection's lifecycle in Postgres, and what
is read about connections (their status, their pending changes).

The connections' store: every statement is a named one of `mcsync.queries`. Only credentials
and queue state change here; Mailchimp is never called and `contacts` is never written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from mcsync.crypto import BOUND_PREFIX, TokenCipher, is_bound
from mcsync.mailchimp.endpoints import checked_dc
from mcsync.queries import statements


@dataclass(frozen=True)
class Connection:
    user_id: UUID
    dc: str
    api_endpoint: str
    account_name: str | None
    audience_id: str | None
    audience_name: str | None
    double_optin: bool
    sync_status: str
    notice: str | None
    last_error: str | None
    connected_at: datetime
    last_sync_at: datetime | None
    last_full_sync_at: datetime | None
    access_token_encrypted: str

    def access_token(self, cipher: TokenCipher) -> str:
        return cipher.decrypt(self.access_token_encrypted, self.user_id)


def _row_to_connection(row: dict[str, Any]) -> Connection:
    fields = Connection.__dataclass_fields__
    return Connection(**{k: v for k, v in row.items() if k in fields})


def get_connection(conn: psycopg.Connection[Any], user_id: UUID) -> Connection | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(statements().GET_CONNECTION, {"user_id": user_id}).fetchone()
    return _row_to_connection(row) if row else None


def connect_user(
    conn: psycopg.Connection[Any],
    cipher: TokenCipher,
    *,
    user_id: UUID,
    access_token: str,
    dc: str,
    api_endpoint: str,
    account_name: str | None = None,
    audience_id: str | None = None,
    audience_name: str | None = None,
    double_optin: bool = False,
) -> int:
    """Store (or replace) the user's connection; with an audience, queue a full sync.

    Returns how many contacts were queued. A dc not of Mailchimp's form is refused
    (InvalidDataCenter) before anything is written."""
    checked_dc(dc)
    with conn.transaction():
        previous = get_connection(conn, user_id)
        conn.execute(
            statements().UPSERT_CONNECTION,
            {
                "user_id": user_id,
                "token": cipher.encrypt(access_token, user_id),
                "dc": dc,
                "api_endpoint": api_endpoint,
                "account_name": account_name,
                "audience_id": audience_id,
                "audience_name": audience_name,
                "double_optin": double_optin,
            },
        )
        if previous is not None and previous.audience_id != audience_id:
            conn.execute(statements().FORGET_CONTACT_LINKS, {"user_id": user_id})
        if audience_id is None:
            return 0
        check_against_audience(conn, user_id, audience_id)
        return queue_full_sync(conn, user_id)


# Each audience change starts a full sync: a few per hour are plenty for a user who picked
# the wrong one, and flipping back and forth cannot queue the user's contacts over and over.
AUDIENCE_CHANGES_PER_WINDOW = 5
AUDIENCE_CHANGE_WINDOW = 3600  # seconds


class AudienceChangeLimited(RuntimeError):
    """Too many audience changes lately; `wait` seconds until the next is allowed."""

    def __init__(self, wait: int) -> None:
        super().__init__(f"too many audience changes; try again in {wait} s")
        self.wait = wait


def select_audience(
    conn: psycopg.Connection[Any],
    *,
    user_id: UUID,
    audience_id: str,
    audience_name: str | None,
    double_optin: bool,
) -> int:
    """Pick (or change) the audience. A change leaves the old audience untouched and starts a
    full sync into the new one. Returns how many contacts were queued for it (0 when unchanged;
    rows already queued are bumped, never added twice). A change beyond
    AUDIENCE_CHANGES_PER_WINDOW an hour raises AudienceChangeLimited and changes nothing."""
    with conn.transaction():
        current = get_connection(conn, user_id)
        if current is None:
            raise LookupError("no Mailchimp connection for this user")
        if current.audience_id is not None and current.audience_id != audience_id:
            limits = {
                "user_id": user_id,
                "limit": AUDIENCE_CHANGES_PER_WINDOW,
                "window": AUDIENCE_CHANGE_WINDOW,
            }
            if conn.execute(statements().COUNT_AUDIENCE_CHANGE, limits).fetchone() is None:
                row = conn.execute(statements().AUDIENCE_CHANGE_WAIT, limits).fetchone()
                raise AudienceChangeLimited(max(1, int(row[0])) if row and row[0] else 1)
        conn.execute(
            statements().SET_AUDIENCE,
            {
                "user_id": user_id,
                "audience_id": audience_id,
                "audience_name": audience_name,
                "double_optin": double_optin,
            },
        )
        if current.audience_id == audience_id:
            return 0
        conn.execute(statements().FORGET_CONTACT_LINKS, {"user_id": user_id})
        # The old audience's own events go; every contact is (re)queued for the new one. Rows
        # already queued (a full sync still pending, a retried rejection) are kept and bumped,
        # not deleted and added again: flipping audiences requeues nothing new, and a row a
        # worker holds for the old audience is sent again, to this one.
        conn.execute(statements().DELETE_USER_EVENTS, {"user_id": user_id})
        check_against_audience(conn, user_id, audience_id)
        return queue_full_sync(conn, user_id)


def check_against_audience(conn: psycopg.Connection[Any], user_id: UUID, audience_id: str) -> bool:
    """Start a full reconciliation (Sync Now's run, not counted against the user's hourly
    limit) when the ledger already knows members of this audience: a reconnect, or a return to
    an audience used before. The full sync alone trusts the ledger ("Mailchimp was told this"),
    so members removed or changed outside mcsync meanwhile would stay so; the run lists the
    audience itself, corrects the ledger and queues what differs. `mcsync web` runs it (at once
    when the user connects there, else its sweeper); `mcsync connect` runs it itself. With no
    ledger for the audience there is nothing to distrust: the full sync sends every contact.
    Returns whether a run was started."""
    from mcsync.reconcile import request_sync_now

    params = {"user_id": user_id, "audience_id": audience_id}
    row = conn.execute(statements().AUDIENCE_HAS_LEDGER, params).fetchone()
    if not (row and row[0]):
        return False
    return request_sync_now(conn, user_id, min_interval=0, by_user=False) == 0


def queue_full_sync(conn: psycopg.Connection[Any], user_id: UUID) -> int:
    """Queue every contact of the user, and every contact mcsync synced that is gone since."""
    n = conn.execute(statements().QUEUE_ALL_CONTACTS, {"user_id": user_id}).rowcount
    n += conn.execute(statements().QUEUE_VANISHED_CONTACTS, {"user_id": user_id}).rowcount
    conn.execute(statements().NOTIFY)
    return n


def queue_full_sync_all(conn: psycopg.Connection[Any]) -> int:
    """`queue_full_sync` for every connection with an audience (after the source mapping
    changed, so every audience follows the new mapping). Returns how many were queued."""
    users = conn.execute(statements().CONNECTED_USERS).fetchall()
    return sum(queue_full_sync(conn, row[0]) for row in users)


def disconnect_user(conn: psycopg.Connection[Any], user_id: UUID) -> bool:
    """Remove the credentials and pending events. Mailchimp and `contacts` stay untouched; the
    ledger stays, so a later reconnect still knows which members and tags mcsync owns."""
    with conn.transaction():
        conn.execute(statements().DELETE_USER_QUEUE, {"user_id": user_id})
        conn.execute(statements().DELETE_USER_REJECTIONS, {"user_id": user_id})
        return conn.execute(statements().DELETE_CONNECTION, {"user_id": user_id}).rowcount > 0


def rotate_tokens(conn: psycopg.Connection[Any], cipher: TokenCipher) -> int:
    """Re-encrypt every stored token with the newest key, bound to its row's user (a token
    still in the old unbound form gets bound here; see mcsync.crypto)."""
    with conn.transaction():
        rows = conn.execute(statements().ALL_ENCRYPTED_TOKENS).fetchall()
        for user_id, token in rows:
            conn.execute(
                statements().SET_ENCRYPTED_TOKEN,
                {"user_id": user_id, "token": cipher.rotate(token, user_id)},
            )
    return len(rows)


def bind_tokens(conn: psycopg.Connection[Any], cipher: TokenCipher) -> int:
    """Re-encrypt the tokens still in the old, unbound form, each bound to its row's user.
    Returns how many were bound."""
    bound = 0
    with conn.transaction():
        for user_id, token in conn.execute(statements().ALL_ENCRYPTED_TOKENS).fetchall():
            if not is_bound(token):
                conn.execute(
                    statements().SET_ENCRYPTED_TOKEN,
                    {"user_id": user_id, "token": cipher.rotate(token, user_id)},
                )
                bound += 1
    return bound


def count_unbound_tokens(conn: psycopg.Connection[Any]) -> int:
    """How many stored tokens are still in the old form, not bound to their user."""
    row = conn.execute(statements().COUNT_UNBOUND_TOKENS, {"prefix": BOUND_PREFIX + "%"}).fetchone()
    return int(row[0]) if row else 0


def spend_oauth_state(
    conn: psycopg.Connection[Any], nonce: str, user_id: UUID, expires_at: datetime
) -> bool:
    """True the first time an OAuth state is presented, False on every replay."""
    with conn.transaction():
        conn.execute(statements().PRUNE_OAUTH_STATES)
        cur = conn.execute(
            statements().CONSUME_OAUTH_STATE,
            {"nonce": nonce, "user_id": user_id, "expires_at": expires_at},
        )
        return cur.rowcount == 1


def pending_count(conn: psycopg.Connection[Any], user_id: UUID) -> int:
    """How many of the user's contacts wait in the queue."""
    with conn.cursor(row_factory=dict_row) as cur:
        pending = cur.execute(statements().PENDING_COUNT, {"user_id": user_id}).fetchone()
    return int(pending["count"]) if pending else 0


def connection_status(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """`mcsync status`: one row per connection (`STATUS_ROWS`)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(statements().STATUS_ROWS).fetchall()
    for row in rows:
        row["user_id"] = str(row["user_id"])
        age = row.pop("oldest_pending_seconds")
        row["oldest_pending_seconds"] = round(float(age), 1) if age is not None else None
    return rows
