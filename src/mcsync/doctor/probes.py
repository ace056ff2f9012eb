"""The doctor's reads of the database: each returns the facts one judgement of
mcsync.doctor.checks needs. Catalog functions are `pg_catalog.`-qualified and mcsync's objects
named through mcsync.schema.render, so no search_path (the app's, a pooler's) changes what is
read. Read-only; run as the owner (the role operator commands use)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg
from cryptography.fernet import Fernet, InvalidToken

from mcsync.crypto import EncryptionKeyError, TokenBindingError, TokenCipher, UnboundTokenError
from mcsync.doctor.checks import (
    ExposureFacts,
    Grantee,
    GrantFacts,
    MappingFacts,
    MigrationFacts,
    PostgrestSetting,
)
from mcsync.schema import render

Conn = psycopg.Connection[Any]


def _one(conn: Conn, sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def schema_exists(conn: Conn, schema: str) -> bool:
    return bool(_one(conn, "SELECT pg_catalog.to_regnamespace(%s) IS NOT NULL", (schema,)))


def _tables(conn: Conn, schema: str, kinds: str = "rpvmf") -> frozenset[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_class c"
        " WHERE c.relnamespace = pg_catalog.to_regnamespace(%s)"
        " AND c.relkind::text = ANY (pg_catalog.string_to_array(%s, NULL))",
        (schema, kinds),
    ).fetchall()
    return frozenset(r[0] for r in rows)


def migration_facts(conn: Conn, schema: str) -> MigrationFacts:
    if not schema_exists(conn, schema):
        return MigrationFacts(None, False)
    table = render("mcsync.mcsync_schema_migrations", schema)
    recorded = None
    if _one(conn, "SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (table,)):
        rows = conn.execute(f"SELECT version, name, checksum FROM {table}").fetchall()
        recorded = {r[0]: (r[1], r[2]) for r in rows}
    return MigrationFacts(recorded, True, _tables(conn, schema))


def mapping_facts(conn: Conn, schema: str, trigger_names: list[str]) -> MappingFacts:
    mapping_table = render("mcsync.source_mapping", schema)
    fingerprint = None
    if _one(conn, "SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (mapping_table,)):
        fingerprint = _one(conn, f"SELECT fingerprint FROM {mapping_table}")
    view = render("mcsync.source_contacts", schema)
    view_exists = bool(_one(conn, "SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (view,)))
    # mcsync's triggers: those of the mapping's names whose function lives in its schema.
    rows = conn.execute(
        "SELECT t.tgname::text FROM pg_catalog.pg_trigger t"
        " JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid"
        " WHERE NOT t.tgisinternal AND p.pronamespace = pg_catalog.to_regnamespace(%s)"
        " AND t.tgname = ANY (%s)",
        (schema, trigger_names),
    ).fetchall()
    return MappingFacts(fingerprint, view_exists, frozenset(r[0] for r in rows))


# Every privilege on the schema and its objects, one row per (grantee, object, privilege):
# the grantee's name ('PUBLIC' for 0), whether it is the object's owner, and the object.
_ACL = """
SELECT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
       a.grantee = o.owner, o.kind, o.name, a.privilege_type
  FROM (
        SELECT 'schema' AS kind, '' AS name, n.nspowner AS owner, n.nspacl AS acl
          FROM pg_catalog.pg_namespace n WHERE n.oid = pg_catalog.to_regnamespace(%(schema)s)
        UNION ALL
        SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' ELSE 'table' END,
               c.relname::text, c.relowner, c.relacl
          FROM pg_catalog.pg_class c
         WHERE c.relnamespace = pg_catalog.to_regnamespace(%(schema)s)
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        UNION ALL
        SELECT CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END,
               p.oid::pg_catalog.regprocedure::text, p.proowner, p.proacl
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = pg_catalog.to_regnamespace(%(schema)s)
       ) o,
       LATERAL pg_catalog.aclexplode(o.acl) a
"""


def _acl(conn: Conn, schema: str) -> list[tuple[str, bool, str, str, str]]:
    return [tuple(r) for r in conn.execute(_ACL, {"schema": schema}).fetchall()]


def grant_facts(conn: Conn, schema: str, roles: tuple[str, ...]) -> GrantFacts:
    existing = frozenset(
        r[0]
        for r in conn.execute(
            "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname = ANY (%s)", (list(roles),)
        ).fetchall()
    )
    held: dict[str, dict[str, frozenset[str]]] = {role: {} for role in existing}
    for grantee, _owner, kind, name, privilege in _acl(conn, schema):
        if grantee in held:
            # Functions are shown by signature; grants.sql grants none, so any is "extra".
            obj = "" if kind == "schema" else name
            held[grantee][obj] = held[grantee].get(obj, frozenset()) | {privilege}
    # Tables (not views) without a policy that names every one of mcsync's roles.
    no_policy = conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_class c"
        " WHERE c.relnamespace = pg_catalog.to_regnamespace(%(schema)s) AND c.relkind IN ('r', 'p')"
        "   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid"
        "     AND (SELECT pg_catalog.array_agg(r.rolname::text) FROM pg_catalog.pg_roles r"
        "           WHERE r.oid = ANY (p.polroles)) @> %(roles)s::text[])",
        {"schema": schema, "roles": list(existing)},
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
    no_rls = conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_class c"
        " WHERE c.relnamespace = pg_catalog.to_regnamespace(%s) AND c.relkind IN ('r', 'p')"
        " AND NOT c.relrowsecurity",
        (schema,),
    ).fetchall()
    # A role that cannot log in but is a member of mcsync's roles borrows their rights
    # (e.g. `GRANT mcsync_web TO anon`); logins in them are how the processes are meant to run.
    borrowed = conn.execute(
        "SELECT m.rolname::text, r.rolname::text FROM pg_catalog.pg_auth_members a"
        " JOIN pg_catalog.pg_roles r ON r.oid = a.roleid"
        " JOIN pg_catalog.pg_roles m ON m.oid = a.member"
        " WHERE r.rolname = ANY (%s) AND NOT m.rolcanlogin AND m.rolname <> ALL (%s)"
        " ORDER BY 1, 2",
        (list(roles), list(roles)),
    ).fetchall()
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
    rows = conn.execute(
        "SELECT d.datname::text, r.rolname::text, c.setting"
        "  FROM pg_catalog.pg_db_role_setting s"
        "  LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase"
        "  LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole,"
        "  LATERAL pg_catalog.unnest(s.setconfig) AS c(setting)"
        " WHERE (s.setdatabase = 0 OR d.datname = pg_catalog.current_database())"
        "   AND c.setting LIKE 'pgrst.db\\_schemas=%'"
        " ORDER BY 1 NULLS FIRST, 2 NULLS FIRST",
    ).fetchall()
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
    table = render("mcsync.process_roles", schema)
    if _one(conn, "SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (table,)) is not True:
        return None
    worker = _one(conn, f"SELECT role_name FROM {table} WHERE process = 'worker'")
    return str(worker).removesuffix("_worker") if worker and worker.endswith("_worker") else None


def stored_tokens(conn: Conn, schema: str) -> list[tuple[Any, str]]:
    table = render("mcsync.mailchimp_connections", schema)
    return [
        (r[0], r[1]) for r in conn.execute(f"SELECT user_id, access_token_encrypted FROM {table}")
    ]


def connections_to_ping(conn: Conn, schema: str) -> list[tuple[Any, str, str]]:
    table = render("mcsync.mailchimp_connections", schema)
    sql = (
        f"SELECT user_id, dc, access_token_encrypted FROM {table}"
        " WHERE access_token_encrypted <> '' ORDER BY connected_at"
    )
    return [(r[0], r[1], r[2]) for r in conn.execute(sql)]


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
