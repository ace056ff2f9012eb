"""The demo's Postgres side: the app's writes as `mcsync demo` plays them, and its reads of
what the worker did. Every statement is a named one of `mcsync.queries.demo`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from mcsync.queries import statements

Conn = psycopg.Connection[Any]


def add_sample_contact(conn: Conn, contact: dict[str, Any]) -> None:
    conn.execute(statements().ADD_SAMPLE_CONTACT, contact)


def add_contact(conn: Conn, values: dict[str, Any]) -> Any:
    """The new contact's row (its `id`)."""
    return conn.execute(statements().ADD_CONTACT, values).fetchone()


def edit_contact(conn: Conn, values: dict[str, Any]) -> bool:
    """Whether the user had such a contact."""
    return conn.execute(statements().EDIT_CONTACT, values).rowcount > 0


def delete_contact(conn: Conn, contact_id: UUID, user_id: UUID) -> bool:
    """Whether the user had such a contact."""
    params = {"id": contact_id, "user_id": user_id}
    return conn.execute(statements().DELETE_CONTACT, params).rowcount > 0


def edit_like_a_coach(conn: Conn) -> None:
    """A tag added, an address changed, a column mcsync does not sync edited."""
    q = statements()
    for statement in (q.TAG_ANA, q.RENAME_CHLOE, q.NOTE_BEN):
        conn.execute(statement)


def contacts_shown(conn: Conn, user_id: UUID) -> list[Any]:
    return conn.execute(statements().CONTACTS_SHOWN, {"user_id": user_id}).fetchall()


def queue_has_work(conn: Conn) -> bool:
    return conn.execute(statements().QUEUE_HAS_WORK).fetchone() is not None


def all_rejections(conn: Conn) -> list[Any]:
    return conn.execute(statements().ALL_REJECTIONS).fetchall()


def user_refusals(conn: Conn, user_id: UUID) -> list[Any]:
    return conn.execute(statements().USER_REFUSALS, {"user_id": user_id}).fetchall()


def demo_connection(conn: Conn, user_id: UUID) -> Any:
    return conn.execute(statements().DEMO_CONNECTION, {"user_id": user_id}).fetchone()
