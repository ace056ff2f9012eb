"""The operator's view in Postgres: the overview page, one user's detail, the health history.

Thin: every statement is in `mcsync.queries.admin`. What leaves here is safe to show on a
staff page: never a token or ciphertext, and every free text (Mailchimp's errors, reasons)
passes `shown`, which cuts credentials out (mcsync.logging's patterns) and masks addresses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from mcsync.logging import redact_credentials
from mcsync.queries import statements
from mcsync.queries.admin import HEALTH_EVENTS_KEPT

# Sort orders the overview offers, as SQL (chosen by key: never text from the request).
SORTS = {
    "backlog": "backlog DESC",
    "oldest": "oldest_pending_at ASC NULLS LAST",
    "last_error": "(last_error IS NULL), updated_at DESC",
    "user": "user_id",
}
STATES = ("active", "paused", "error")
PAGE_SIZE_MAX = 200
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")


def mask_email(address: str | None) -> str | None:
    """`ana@clientmail.io` -> `a***@clientmail.io`: enough to recognise, not to harvest."""
    if not address:
        return address
    local, at, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if at else "***"


def shown(text: str | None, limit: int = 500) -> str | None:
    """Free text fit for the operator's page: credentials redacted, addresses masked."""
    if text is None:
        return None
    return _EMAIL.sub(r"\1***@\2", redact_credentials(str(text)))[:limit]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- health history ------------------------------------------------------------------------


def health_event_params(
    user_id: UUID, kind: str, *, actor: str | None = None, detail: str | None = None
) -> dict[str, Any]:
    """RECORD_HEALTH_EVENT's parameters (the worker runs it on its own pool)."""
    return {
        "user_id": user_id,
        "kind": kind,
        "actor": actor,
        "detail": shown(detail),
        "keep": HEALTH_EVENTS_KEPT,
    }


def record_health_event(
    conn: psycopg.Connection[Any],
    user_id: UUID,
    kind: str,
    *,
    actor: str | None = None,
    detail: str | None = None,
) -> None:
    """Add `kind` to the connection's health history (a repeat bumps the latest event)."""
    conn.execute(
        statements().RECORD_HEALTH_EVENT,
        health_event_params(user_id, kind, actor=actor, detail=detail),
    )


# --- the overview --------------------------------------------------------------------------


@dataclass(frozen=True)
class OverviewQuery:
    """What the operator asked for: a state filter, a search, a sort and a page (from 1)."""

    state: str | None = None
    search: str = ""
    sort: str = "backlog"
    page: int = 1
    page_size: int = 50

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        if self.sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}")
        if self.page < 1 or not 1 <= self.page_size <= PAGE_SIZE_MAX:
            raise ValueError(f"page starts at 1; page_size is 1..{PAGE_SIZE_MAX}")
        if len(self.search) > 200:
            raise ValueError("search is at most 200 characters")


def overview(conn: psycopg.Connection[Any], query: OverviewQuery) -> dict[str, Any]:
    """Totals, how many connections match, and the page's rows: one statement."""
    statement = statements().OVERVIEW.replace("/*ORDER*/", SORTS[query.sort])
    search = query.search.strip()
    params = {
        "state": query.state,
        "search": search,
        # LIKE's wildcards in a search are meant literally.
        "pattern": search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),
        "offset": (query.page - 1) * query.page_size,
        "limit": query.page_size,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(statement, params).fetchone()
    assert row is not None  # an aggregate always answers
    totals = dict(row["totals"])
    oldest = totals.get("oldest_pending_seconds")
    totals["oldest_pending_seconds"] = round(float(oldest), 1) if oldest is not None else None
    rows = []
    for r in row["rows"]:
        age = r.get("oldest_pending_seconds")
        r["oldest_pending_seconds"] = round(float(age), 1) if age is not None else None
        r["last_error"] = shown(r.get("last_error"), 200)
        rows.append(r)
    matched = int(row["matched"])
    return {
        "totals": totals,
        "matched": matched,
        "page": query.page,
        "page_size": query.page_size,
        "pages": max(1, -(-matched // query.page_size)),
        "rows": rows,
    }


# --- one user ------------------------------------------------------------------------------


def user_detail(conn: psycopg.Connection[Any], user_id: UUID) -> dict[str, Any] | None:
    """One connection as the operator sees it; None when the user has none."""
    uid = {"user_id": user_id}
    with conn.cursor(row_factory=dict_row) as cur:
        c = cur.execute(statements().GET_CONNECTION, uid).fetchone()
        if c is None:
            return None
        events = cur.execute(statements().HEALTH_EVENTS, {**uid, "limit": 50}).fetchall()
        rejected = cur.execute(statements().REJECTED_CONTACTS, {**uid, "limit": 200}).fetchall()
        pending = cur.execute(statements().PENDING_BY_KIND, uid).fetchall()
        run = cur.execute(statements().GET_RECONCILIATION, uid).fetchone()
    return {
        "user_id": str(user_id),
        "account_name": c["account_name"],
        "audience_id": c["audience_id"],
        "audience_name": c["audience_name"],
        "double_optin": c["double_optin"],
        "sync_status": c["sync_status"],
        "status_reason": c["status_reason"],  # why it is paused or in error (sql/009)
        "notice": c["notice"],
        "consecutive_failures": c["consecutive_failures"],
        "throttled_count": c["throttled_count"],
        "last_error": shown(c["last_error"]),
        "next_probe_at": _iso(c["next_probe_at"]),
        "connected_at": _iso(c["connected_at"]),
        "last_sync_at": _iso(c["last_sync_at"]),
        "last_full_sync_at": _iso(c["last_full_sync_at"]),
        "health": [
            {
                "kind": e["kind"],
                "by": e["actor"] or "worker",
                "detail": shown(e["detail"]),
                "at": _iso(e["at"]),
                "last_at": _iso(e["last_at"]),
                "repeats": e["repeats"],
            }
            for e in events
        ],
        "rejected": [
            {
                "contact_id": str(r["contact_id"]),
                "email": mask_email(r["email"]),
                "severity": r["severity"],
                "reason": shown(r["reason"]),
                "field": r["field"],
                "detail": shown(r["detail"]),
                "rejected_at": _iso(r["rejected_at"]),
            }
            for r in rejected
        ],
        "pending": [
            {
                "kind": p["kind"],
                "contacts": int(p["contacts"] or 0),
                "retrying": int(p["retrying"] or 0),
                "waiting": int(p["waiting"] or 0),
                "oldest_seconds": round(float(p["oldest_seconds"] or 0), 1),
            }
            for p in pending
        ],
        "sync_now": None
        if run is None
        else {
            "running": run["finished_at"] is None,
            "requested_at": _iso(run["requested_at"]),
            "finished_at": _iso(run["finished_at"]),
            "queued": run["queued"],
            "error": shown(run["error"]),
        },
    }


def retry_rejected(conn: psycopg.Connection[Any], user_id: UUID) -> int:
    """Queue every refused contact of the user again. Returns how many."""
    with conn.transaction():
        n = conn.execute(statements().RETRY_REJECTED, {"user_id": user_id}).rowcount
        if n:
            conn.execute(statements().NOTIFY)
    return n


def resume(conn: psycopg.Connection[Any], user_id: UUID) -> None:
    """The connection answered a probe: active again, every waiting row due now."""
    uid = {"user_id": user_id}
    with conn.transaction():
        conn.execute(statements().RESUME_CONNECTION, uid)
        conn.execute(statements().MAKE_USER_EVENTS_DUE, uid)
        conn.execute(statements().NOTIFY)
