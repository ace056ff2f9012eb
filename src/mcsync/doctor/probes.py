"""The doctor's store: its reads of the database, each returning the facts one judgement of
mcsync.doctor.checks needs, and its LISTEN/NOTIFY round trip. Every statement is a named one of
`mcsync.queries.doctor`, rendered for the install's schema, so no search_path (the app's, a
pooler's) changes what is read. Read-only; run as the owner (the role operator commands use)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg
from cryptography.fernet import Fernet, InvalidToken
from psycopg import sql

from mcsync.crypto import EncryptionKeyError, TokenBindingError, TokenCipher, UnboundTokenError
from mcsync.doctor.checks import (
    ExposureFacts,
    Grantee,
    GrantFacts,
    MappingFacts,
    MigrationFacts,
    PostgrestSetting,
)
from mcsync.queries import Statements, statements
from mcsync.schema import DEFAULT_SCHEMA

Conn = psycopg.Connection[Any]


def _q(schema: str = DEFAULT_SCHEMA) -> Statements:
    """The statements for `schema`; the default's for those that name no object of mcsync's."""
    return statements(schema)


def _one(conn: Conn, statement: str, params: Any = None) -> Any:
    row = conn.execute(statement, params).fetchone()
    return row[0] if row else None


def schema_exists(conn: Conn, schema: str) -> bool:
    return bool(_one(conn, _q(schema).SCHEMA_EXISTS, {"schema": schema}))


def _tables(conn: Conn, schema: str, kinds: str = "rpvmf") -> frozenset[str]:
    params = {"schema": schema, "kinds": kinds}
    rows = conn.execute(_q(schema).SCHEMA_RELATIONS, params).fetchall()
    return frozenset(r[0] for r in rows)


def _has_relation(conn: Conn, schema: str, name: str) -> bool:
    return bool(_one(conn, _q(schema).HAS_RELATION, {"name": f"{schema}.{name}"}))


def migration_facts(conn: Conn, schema: str) -> MigrationFacts:
    if not schema_exists(conn, schema):
        return MigrationFacts(None, False)
    recorded = None
    if _has_relation(conn, schema, "mcsync_schema_migrations"):
        rows = conn.execute(_q(schema).RECORDED_MIGRATIONS).fetchall()
        recorded = {r[0]: (r[1], r[2]) for r in rows}
    return MigrationFacts(recorded, True, _tables(conn, schema))


def mapping_facts(conn: Conn, schema: str, trigger_names: list[str]) -> MappingFacts:
    q = _q(schema)
    fingerprint = None
    if _has_relation(conn, schema, "source_mapping"):
        fingerprint = _one(conn, q.MAPPING_FINGERPRINT)
    view_exists = _has_relation(conn, schema, "source_contacts")
    params = {"schema": schema, "names": trigger_names}
    rows = conn.execute(q.MCSYNC_TRIGGERS, params).fetchall()
    return MappingFacts(fingerprint, view_exists, frozenset(r[0] for r in rows))


def _acl(conn: Conn, schema: str) -> list[tuple[str, bool, str, str, str]]:
    return [tuple(r) for r in conn.execute(_q(schema).SCHEMA_ACL, {"schema": schema}).fetchall()]


def grant_facts(conn: Conn, schema: str, roles: tuple[str, ...]) -> GrantFacts:
    q = _q(schema)
    existing = frozenset(
        r[0] for r in conn.execute(q.ROLES_NAMED, {"roles": list(roles)}).fetchall()
    )
    held: dict[str, dict[str, frozenset[str]]] = {role: {} for role in existing}
    for grantee, _owner, kind, name, privilege in _acl(conn, schema):
        if grantee in held:
            # Functions are shown by signature; grants.sql grants none, so any is "extra".
            obj = "" if kind == "schema" else name
            held[grantee][obj] = held[grantee].get(obj, frozenset()) | {privilege}
    # Tables (not views) without a policy that names every one of mcsync's roles.
    no_policy = conn.execute(
        q.TABLES_WITHOUT_POLICY, {"schema": schema, "roles": list(existing)}
    ).fetchall()
    return GrantFacts(existing, held, frozenset(r[0] for r in no_policy))


def exposure_facts(conn: Conn, schema: str, roles: tuple[str, ...]) -> ExposureFacts:
    grantees = [
        Grantee(
            grantee,
            privilege,
            f"{kind} {schema}" if kind == "schema" else _target(kind, schema, name),
        )
        for grantee, is_owner, kind, name, privilege in _acl(conn, schema)
        if not is_owner and grantee not in roles
    ]
    q = _q(schema)
    no_rls = conn.execute(q.TABLES_WITHOUT_RLS, {"schema": schema}).fetchall()
    # A role that cannot log in but is a member of mcsync's roles borrows their rights
    # (e.g. `GRANT mcsync_web TO anon`); logins in them are how the processes are meant to run.
    borrowed = conn.execute(q.BORROWED_ROLES, {"roles": list(roles)}).fetchall()
    return ExposureFacts(
        grantees, frozenset(r[0] for r in no_rls), [(r[0], r[1]) for r in borrowed]
    )


def _target(kind: str, schema: str, name: str) -> str:
    # A routine's regprocedure text is already qualified when its schema is not on the path.
    qualified = name if name.startswith(f"{schema}.") else f"{schema}.{name}"
    return f"{kind} {qualified}"


def postgrest_settings(conn: Conn) -> list[PostgrestSetting]:
    """`pgrst.db_schemas` wherever PostgREST's in-database configuration can set it: on this
    database, on a role (its authenticator), or on a role in this database."""
    rows = conn.execute(_q().POSTGREST_SCHEMAS).fetchall()
    out = []
    for database, role, setting in rows:
        where = " in ".join(
            part
            for part in (f"role {role}" if role else "", f"database {database}" if database else "")
            if part
        )
        out.append(PostgrestSetting(where, setting.split("=", 1)[1]))
    return out


def installed_role_prefix(conn: Conn, schema: str) -> str | None:
    """The role prefix grants.sql last named for this install (mcsync.process_roles, sql/007),
    or None when it has not been applied (or the install predates 007)."""
    if not _has_relation(conn, schema, "process_roles"):
        return None
    worker = _one(conn, _q(schema).INSTALLED_WORKER_ROLE)
    return str(worker).removesuffix("_worker") if worker and worker.endswith("_worker") else None


def stored_tokens(conn: Conn, schema: str) -> list[tuple[Any, str]]:
    return [(r[0], r[1]) for r in conn.execute(_q(schema).STORED_TOKENS)]


def connections_to_ping(conn: Conn, schema: str) -> list[tuple[Any, str, str]]:
    return [(r[0], r[1], r[2]) for r in conn.execute(_q(schema).CONNECTIONS_TO_PING)]


# --- the LISTEN/NOTIFY round trip (mcsync.doctor.network times it) --------------------------


def listen(conn: Conn, channel: str) -> None:
    query = sql.SQL(_q().DOCTOR_LISTEN).format(channel=sql.Identifier(channel))
    conn.execute(query)


def notify(conn: Conn, channel: str) -> None:
    conn.execute(_q().DOCTOR_NOTIFY, {"channel": channel})


def unlisten(conn: Conn, channel: str) -> None:
    query = sql.SQL(_q().DOCTOR_UNLISTEN).format(channel=sql.Identifier(channel))
    conn.execute(query)


def backend_pid(conn: Conn) -> int:
    """The server session this transaction ran on."""
    row = conn.execute(_q().BACKEND_PID).fetchone()
    return int(row[0]) if row else 0


def classify_token(cipher: TokenCipher, newest: Fernet, user_id: Any, stored: str) -> str:
    """What happens when the processes decrypt this stored token (one of checks.TokenOutcome).
    The token itself never leaves this function."""
    if stored == "":  # withdrawn by an upgrade (sql/007): the connection waits for its user
        return "withdrawn"
    try:
        cipher.decrypt(stored, user_id)
    except UnboundTokenError:
        return "unbound"
    except TokenBindingError:
        return "other_user"
    except EncryptionKeyError:
        return "undecryptable"
    except (ValueError, KeyError, TypeError):
        return "malformed"
    try:
        newest.decrypt(stored.split(":", 1)[1].encode())
    except InvalidToken:
        return "older_key"
    return "newest_key"


def token_outcomes(rows: list[tuple[Any, str]], keys: list[str]) -> Counter[str]:
    cipher = TokenCipher(keys)
    newest = Fernet(keys[0].encode())
    return Counter(classify_token(cipher, newest, user_id, stored) for user_id, stored in rows)
