"""The doctor's reads (run by mcsync.doctor.probes, as the owner; read-only but for its own
LISTEN/NOTIFY round trip). Catalog functions are `pg_catalog.`-qualified and mcsync's objects
named for the default schema, rendered like every statement here (see mcsync.queries), so no
search_path (the app's, a pooler's) changes what is read."""

from __future__ import annotations

SCHEMA_EXISTS = "SELECT pg_catalog.to_regnamespace(%(schema)s) IS NOT NULL"
HAS_RELATION = "SELECT pg_catalog.to_regclass(%(name)s) IS NOT NULL"
SCHEMA_RELATIONS = """
SELECT c.relname FROM pg_catalog.pg_class c
 WHERE c.relnamespace = pg_catalog.to_regnamespace(%(schema)s)
   AND c.relkind::text = ANY (pg_catalog.string_to_array(%(kinds)s, NULL))
"""
RECORDED_MIGRATIONS = "SELECT version, name, checksum FROM mcsync.mcsync_schema_migrations"
MAPPING_FINGERPRINT = "SELECT fingerprint FROM mcsync.source_mapping"
# mcsync's triggers: those of the mapping's names whose function lives in its schema.
MCSYNC_TRIGGERS = """
SELECT t.tgname::text FROM pg_catalog.pg_trigger t
  JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
 WHERE NOT t.tgisinternal AND p.pronamespace = pg_catalog.to_regnamespace(%(schema)s)
   AND t.tgname = ANY (%(names)s)
"""

# Every privilege on the schema and its objects, one row per (grantee, object, privilege):
# the grantee's name ('PUBLIC' for 0), whether it is the object's owner, and the object.
SCHEMA_ACL = """
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
ROLES_NAMED = "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname = ANY (%(roles)s)"
# Tables (not views) without a policy that names every one of mcsync's roles.
TABLES_WITHOUT_POLICY = """
SELECT c.relname FROM pg_catalog.pg_class c
 WHERE c.relnamespace = pg_catalog.to_regnamespace(%(schema)s) AND c.relkind IN ('r', 'p')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid
     AND (SELECT pg_catalog.array_agg(r.rolname::text) FROM pg_catalog.pg_roles r
           WHERE r.oid = ANY (p.polroles)) @> %(roles)s::text[])
"""
TABLES_WITHOUT_RLS = """
SELECT c.relname FROM pg_catalog.pg_class c
 WHERE c.relnamespace = pg_catalog.to_regnamespace(%(schema)s) AND c.relkind IN ('r', 'p')
   AND NOT c.relrowsecurity
"""
# A role that cannot log in but is a member of mcsync's roles borrows their rights.
BORROWED_ROLES = """
SELECT m.rolname::text, r.rolname::text FROM pg_catalog.pg_auth_members a
  JOIN pg_catalog.pg_roles r ON r.oid = a.roleid
  JOIN pg_catalog.pg_roles m ON m.oid = a.member
 WHERE r.rolname = ANY (%(roles)s) AND NOT m.rolcanlogin AND m.rolname <> ALL (%(roles)s)
 ORDER BY 1, 2
"""
# `pgrst.db_schemas` wherever PostgREST's in-database configuration can set it. Run without
# parameters: its LIKE pattern holds a `%`.
POSTGREST_SCHEMAS = """
SELECT d.datname::text, r.rolname::text, c.setting
  FROM pg_catalog.pg_db_role_setting s
  LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole,
  LATERAL pg_catalog.unnest(s.setconfig) AS c(setting)
 WHERE (s.setdatabase = 0 OR d.datname = pg_catalog.current_database())
   AND c.setting LIKE 'pgrst.db\\_schemas=%'
 ORDER BY 1 NULLS FIRST, 2 NULLS FIRST
"""
STORED_TOKENS = "SELECT user_id, access_token_encrypted FROM mcsync.mailchimp_connections"
# Not those whose token an upgrade withdrew (empty: sql/007): nothing to ping with.
CONNECTIONS_TO_PING = """
SELECT user_id, dc, access_token_encrypted FROM mcsync.mailchimp_connections
 WHERE access_token_encrypted <> '' ORDER BY connected_at
"""
# The worker's role as grants.sql last named it for this install (sql/007).
INSTALLED_WORKER_ROLE = "SELECT role_name FROM mcsync.process_roles WHERE process = 'worker'"

# The LISTEN/NOTIFY round trip, on a channel of the doctor's own (`{channel}`, an Identifier).
DOCTOR_LISTEN = "LISTEN {channel}"
DOCTOR_NOTIFY = "SELECT pg_catalog.pg_notify(%(channel)s, 'mcsync doctor')"
DOCTOR_UNLISTEN = "UNLISTEN {channel}"
BACKEND_PID = "SELECT pg_catalog.pg_backend_pid()"
