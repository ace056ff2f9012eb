"""sql/schema.sql is the schema the migrations build: a database built from it has the same
catalog, object for object, as one built by every migration file (procrastinate checks its
schema.sql the same way). When this fails after a new migration, run `make schema-sql`."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from mcsync.embedded import database_url
from tests.conftest import _drop_database, _new_database
from tests.support.schema_sql import CONTACTS_DDL, SCHEMA_SQL, build_from_migrations

# One query per kind of object in a schema; each row is one object, as the catalog says it.
# ACLs are read through aclexplode (no ACL is the default one: the owner's), with the owner
# and PUBLIC named as such.
_ACL = """(SELECT coalesce(array_agg(g ORDER BY g), '{{}}') FROM (
            SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                        WHEN a.grantee = {owner} THEN 'OWNER'
                        ELSE a.grantee::regrole::text END
                   || ':' || a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END
              FROM aclexplode(coalesce({acl}, acldefault('{kind}', {owner}))) a) AS acl(g))"""
SCHEMA_ACL = _ACL.format(owner="n.nspowner", acl="n.nspacl", kind="n")
TABLE_ACL = _ACL.format(owner="c.relowner", acl="c.relacl", kind="r").replace(
    "'r'", "(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::\"char\""
)
ROUTINE_ACL = _ACL.format(owner="p.proowner", acl="p.proacl", kind="f")

CATALOG: dict[str, str] = {
    "schema": f"""
        SELECT n.nspname, obj_description(n.oid, 'pg_namespace'),
               {SCHEMA_ACL}
          FROM pg_namespace n WHERE n.oid = %(schema)s::regnamespace""",
    "relations": f"""
        SELECT c.relname, c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity,
               c.reloptions, obj_description(c.oid, 'pg_class'),
               {TABLE_ACL}
          FROM pg_class c WHERE c.relnamespace = %(schema)s::regnamespace""",
    "columns": """
        SELECT c.relname,
               array_agg(concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod),
                                   CASE WHEN a.attnotnull THEN 'NOT NULL' END,
                                   'DEFAULT ' || pg_get_expr(d.adbin, d.adrelid),
                                   'IDENTITY ' || nullif(a.attidentity::text, ''),
                                   'GENERATED ' || nullif(a.attgenerated::text, ''),
                                   'COLLATE ' || nullif(a.attcollation, 0)::regcollation::text,
                                   col_description(c.oid, a.attnum))
                         ORDER BY a.attnum)
          FROM pg_class c
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
         WHERE c.relnamespace = %(schema)s::regnamespace
         GROUP BY c.relname""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, condeferrable, condeferred,
               convalidated, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = %(schema)s::regnamespace""",
    "indexes": """
        SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid)
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE c.relnamespace = %(schema)s::regnamespace""",
    "sequences": """
        SELECT seqrelid::regclass::text, format_type(seqtypid, NULL), seqstart, seqincrement,
               seqmax, seqmin, seqcache, seqcycle
          FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
         WHERE c.relnamespace = %(schema)s::regnamespace""",
    "routines": f"""
        SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid),
               obj_description(p.oid, 'pg_proc'),
               {ROUTINE_ACL}
          FROM pg_proc p WHERE p.pronamespace = %(schema)s::regnamespace""",
    "views": """
        SELECT c.oid::regclass::text, pg_get_viewdef(c.oid)
          FROM pg_class c
         WHERE c.relnamespace = %(schema)s::regnamespace AND c.relkind IN ('v', 'm')""",
    "triggers": """
        SELECT t.tgname, pg_get_triggerdef(t.oid)
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE c.relnamespace = %(schema)s::regnamespace AND NOT t.tgisinternal""",
    "policies": """
        SELECT tablename, policyname, permissive, roles, cmd, qual, with_check
          FROM pg_policies WHERE schemaname = %(schema)s""",
    "types": """
        SELECT t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod), t.typnotnull,
               (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder)
                  FROM pg_enum e WHERE e.enumtypid = t.oid)
          FROM pg_type t
         WHERE t.typnamespace = %(schema)s::regnamespace AND t.typtype IN ('e', 'd')""",
    "default privileges": """
        SELECT defaclrole::regrole::text, defaclobjtype, defaclacl::text
          FROM pg_default_acl WHERE defaclnamespace = %(schema)s::regnamespace""",
}

# The runner's bookkeeping is not part of the schema (see the header of sql/schema.sql).
_LEFT_OUT = ("mcsync_schema_migrations",)


def catalog(url: str, schema: str = "mcsync") -> dict[str, list[tuple[Any, ...]]]:
    """Every object of `schema`, by kind, as comparable rows."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(url) as conn:
        for kind, query in CATALOG.items():
            rows = conn.execute(query, {"schema": schema}).fetchall()  # type: ignore[arg-type]
            kept = [r for r in rows if not any(name in str(r[0]) for name in _LEFT_OUT)]
            out[kind] = sorted(kept, key=repr)
    return out


@pytest.fixture
def two_databases(pg_admin_url: str) -> Any:
    names = [_new_database(pg_admin_url, None) for _ in range(2)]
    yield [database_url(pg_admin_url, n) for n in names]
    for name in names:
        _drop_database(pg_admin_url, name)


def test_schema_sql_is_what_the_migrations_build(two_databases: list[str]) -> None:
    from_migrations, from_schema_sql = two_databases
    build_from_migrations(from_migrations)
    with psycopg.connect(from_schema_sql, autocommit=True) as conn:
        conn.execute(CONTACTS_DDL.encode())
        conn.execute(SCHEMA_SQL.read_text().encode())
    expected = catalog(from_migrations)
    assert expected["relations"] and expected["routines"] and expected["constraints"]
    got = catalog(from_schema_sql)
    for kind in CATALOG:
        assert got[kind] == expected[kind], (
            f"sql/schema.sql differs from the migrations in its {kind}: run `make schema-sql`"
        )


def test_the_comparison_sees_a_difference(two_databases: list[str]) -> None:
    """The check is not blind: one column default changed is a difference."""
    first, second = two_databases
    for url in two_databases:
        build_from_migrations(url)
    with psycopg.connect(second, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE mcsync.mailchimp_sync_queue ALTER COLUMN attempts SET DEFAULT 1"
        )
        conn.execute("GRANT SELECT ON mcsync.mailchimp_members TO PUBLIC")
    a, b = catalog(first), catalog(second)
    assert a["columns"] != b["columns"]
    assert a["relations"] != b["relations"]
    assert a["constraints"] == b["constraints"]
