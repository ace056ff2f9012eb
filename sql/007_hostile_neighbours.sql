-- mcsync 007: nothing a neighbour plants runs, nothing an exposed install left behind is trusted
-- (issue 17). Every function this file names is `pg_catalog.`-qualified: `mcsync migrate` runs
-- it under `search_path = pg_catalog, pg_temp`, and `mcsync sql` says so first, but a tool that
-- drops that setting must not hand a call to an overload someone created in `public`.

-- A schema named `mcsync` that somebody else created first is not mcsync's: its owner could
-- drop and replace mcsync's tables. 004 created the schema only if it was missing, so refuse
-- here, before anything else, when the one it found belongs to another role.
DO $$
DECLARE
    found record;
BEGIN
    SELECT n.nspname, r.rolname INTO found
      FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
     WHERE n.oid = 'mcsync'::pg_catalog.regnamespace;
    IF found.rolname IS DISTINCT FROM CURRENT_USER THEN
        RAISE EXCEPTION 'schema % is owned by %, not by %, who is installing mcsync',
              found.nspname, found.rolname, CURRENT_USER
            USING HINT = 'install as the schema''s owner; a schema someone else created first '
                         'must be dropped, not adopted (docs/install.md)';
    END IF;
END $$;

-- The index on the app's table computes this for every row any role writes, with the writer's
-- search_path: an unqualified body let a writer's own overload of lower() or btrim() decide
-- its rows' index entries. Fully qualified, and still a plain SQL function (no SET clause), so
-- the planner still inlines it. The entries made by the old body are rebuilt.
CREATE OR REPLACE FUNCTION mcsync.mcsync_email_key(email text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.lower(pg_catalog.btrim(email, E' \t\n\r\f\x0B')) $$;

DO $$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT DISTINCT d.objid::pg_catalog.regclass AS target
          FROM pg_catalog.pg_depend d
         WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.refobjid = 'mcsync.mcsync_email_key(text)'::pg_catalog.regprocedure
    LOOP
        EXECUTE pg_catalog.format('REINDEX INDEX %s', item.target);
    END LOOP;
END $$;

-- This install: an id of its own, and the roles its processes use (sql/grants.sql writes
-- them). Roles are cluster-wide; grants.sql refuses roles another install of the same cluster
-- already uses, so a login of one install cannot read another (docs/install.md).
CREATE TABLE mcsync.install (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    install_id uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO mcsync.install DEFAULT VALUES;

CREATE TABLE mcsync.process_roles (
    process   text PRIMARY KEY CHECK (process IN ('worker', 'web')),
    role_name pg_catalog.name NOT NULL
);
-- An install from before this migration used the fixed names; its grants stay kept by
-- lock_down until grants.sql names the roles again.
INSERT INTO mcsync.process_roles (process, role_name)
SELECT v.process, v.role_name
  FROM (VALUES ('worker', 'mcsync_worker'), ('web', 'mcsync_web')) AS v (process, role_name)
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = v.role_name);

-- Connections an upgrade found unusable (a dc not of Mailchimp's form), kept for the operator
-- instead of failing the upgrade; none of them is ever used.
CREATE TABLE mcsync.quarantined_connections (
    LIKE mcsync.mailchimp_connections,
    reason         text NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Audience changes are limited per user (each one starts a full sync into the new audience):
-- how many were made since when (mcsync.connections.select_audience).
ALTER TABLE mcsync.mailchimp_connections
    ADD COLUMN audience_changes integer NOT NULL DEFAULT 0,
    ADD COLUMN audience_changes_since timestamptz;

-- lock_down, again: the grants it keeps are those of the roles mcsync.process_roles names
-- (not two fixed names), and every call is qualified.
CREATE OR REPLACE PROCEDURE mcsync.lock_down()
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ours CONSTANT pg_catalog.regnamespace := 'mcsync'::pg_catalog.regnamespace;
    item record;
BEGIN
    REVOKE ALL ON SCHEMA mcsync FROM PUBLIC;
    REVOKE ALL ON ALL TABLES IN SCHEMA mcsync FROM PUBLIC;
    REVOKE ALL ON ALL SEQUENCES IN SCHEMA mcsync FROM PUBLIC;
    REVOKE ALL ON ALL ROUTINES IN SCHEMA mcsync FROM PUBLIC;
    -- Every other grantee but the owner and this install's process roles (see 004: default
    -- privileges of the database, or of `public`'s on Supabase, name other roles).
    FOR item IN
        SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END
                   || c.oid::pg_catalog.regclass::pg_catalog.text AS target,
               a.grantee
          FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
         WHERE c.relnamespace = ours AND a.grantee NOT IN (0, c.relowner)
        UNION
        SELECT 'ROUTINE ' || p.oid::pg_catalog.regprocedure::pg_catalog.text, a.grantee
          FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
         WHERE p.pronamespace = ours AND a.grantee NOT IN (0, p.proowner)
        UNION
        SELECT 'TYPE ' || t.oid::pg_catalog.regtype::pg_catalog.text, a.grantee
          FROM pg_catalog.pg_type t, pg_catalog.aclexplode(t.typacl) a
         WHERE t.typnamespace = ours AND a.grantee NOT IN (0, t.typowner)
        UNION
        SELECT 'SCHEMA ' || pg_catalog.quote_ident(n.nspname), a.grantee
          FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
         WHERE n.oid = ours AND a.grantee NOT IN (0, n.nspowner)
    LOOP
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM mcsync.process_roles p JOIN pg_catalog.pg_roles r
                ON r.rolname = p.role_name
             WHERE r.oid = item.grantee);
        EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM %s CASCADE',
                                  item.target, item.grantee::pg_catalog.regrole);
    END LOOP;
    FOR item IN
        SELECT c.oid::pg_catalog.regclass AS target FROM pg_catalog.pg_class c
         WHERE c.relnamespace = ours AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', item.target);
    END LOOP;
    -- The one exception (see 004): the index on the app's table calls it for every writer.
    GRANT EXECUTE ON FUNCTION mcsync.mcsync_email_key(text) TO PUBLIC;
END $$;

-- An install whose tables once lived in `public` (001-003 applied before 004, on Supabase
-- writable by `anon`) may hold rows anyone wrote: forged ledger rows (mcsync would archive a
-- member it never made), queued or bulk work, links, rejections, reconciliations, OAuth states,
-- tokens copied into another user's row. None of it is kept: the work tables are emptied, and an
-- unbound token whose ciphertext two rows hold is nobody's (both connections ask their user to
-- reconnect). `mcsync migrate` calls this on such an upgrade and then queues a full sync of
-- every connection (the reconciliation rebuilds what was dropped); a migration tool of the
-- app's own gets the call from `mcsync sql` (docs/install.md). Returns nothing; idempotent.
CREATE PROCEDURE mcsync.distrust_exposed_rows()
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM mcsync.mailchimp_sync_queue;
    DELETE FROM mcsync.mailchimp_sync_bulk;
    DELETE FROM mcsync.mailchimp_contact_links;
    DELETE FROM mcsync.mailchimp_members;
    DELETE FROM mcsync.mailchimp_rejected_contacts;
    DELETE FROM mcsync.mcsync_oauth_states;
    DELETE FROM mcsync.mcsync_reconcile_seen;
    DELETE FROM mcsync.mcsync_reconciliations;
    UPDATE mcsync.mailchimp_connections c
       SET sync_status = 'error',
           notice = 'Please reconnect Mailchimp to keep your contacts in sync.',
           last_error = 'token held by more than one connection; reconnect required',
           access_token_encrypted = '',  -- none: see ALL_ENCRYPTED_TOKENS
           updated_at = pg_catalog.now()
     WHERE c.access_token_encrypted NOT LIKE 'mcsync2:%'  -- bound: decrypts only for its user
       AND c.access_token_encrypted IN (
               SELECT d.access_token_encrypted FROM mcsync.mailchimp_connections d
                GROUP BY d.access_token_encrypted HAVING pg_catalog.count(*) > 1);
END $$;

CALL mcsync.lock_down();
