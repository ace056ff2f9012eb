-- mcsync 004: mcsync moves into a schema of its own (`mcsync`), out of the app's.
--
-- Why: on Supabase (and any database whose `public` is served by PostgREST or granted by default
-- privileges), every table created in `public` is readable and writable by the `anon` and
-- `authenticated` roles. 001-003 created mcsync's tables there. This migration moves every
-- mcsync table (rows, identity sequences, indexes and pending events go with it), function and
-- the migrations bookkeeping table into the `mcsync` schema, then locks that schema down:
-- USAGE and every privilege revoked from PUBLIC and from every role a default privilege granted
-- them to, and row level security on with no policies (defence in depth for an install that
-- exposes the schema anyway). Only the three triggers stay on the app's `contacts` table.
--
-- 001-003 stay as they were (the runner refuses edited files): a fresh install runs 001-004
-- in one transaction (`mcsync migrate` does), so nothing exists in `public` once it commits.
-- The schema name can be changed (MCSYNC_SCHEMA); `mcsync migrate` and `mcsync sql` render this
-- file for it. Names that must follow the schema are written `mcsync.<name>` and `SCHEMA mcsync`.

CREATE SCHEMA IF NOT EXISTS mcsync;
COMMENT ON SCHEMA mcsync IS 'mcsync (Mailchimp mirror): its tables, functions and bookkeeping';

ALTER TABLE mailchimp_connections SET SCHEMA mcsync;
ALTER TABLE mailchimp_sync_queue SET SCHEMA mcsync;
ALTER TABLE mailchimp_sync_bulk SET SCHEMA mcsync;
ALTER TABLE mailchimp_members SET SCHEMA mcsync;
ALTER TABLE mailchimp_contact_links SET SCHEMA mcsync;
ALTER TABLE mailchimp_rejected_contacts SET SCHEMA mcsync;
ALTER TABLE mcsync_oauth_states SET SCHEMA mcsync;
ALTER TABLE mcsync_reconciliations SET SCHEMA mcsync;
ALTER TABLE mcsync_reconcile_seen SET SCHEMA mcsync;

-- `mcsync migrate` keeps its bookkeeping here; a migration tool of its own (Supabase CLI,
-- Flyway...) has none of it.
DO $$
BEGIN
    IF to_regclass('mcsync_schema_migrations') IS NOT NULL
       AND to_regclass('mcsync.mcsync_schema_migrations') IS NULL THEN
        ALTER TABLE mcsync_schema_migrations SET SCHEMA mcsync;
    END IF;
END $$;

-- A function moves without its callers noticing: the index on contacts and the triggers refer
-- to functions by identity, not by name.
ALTER FUNCTION mcsync_email_key(text) SET SCHEMA mcsync;
ALTER FUNCTION mcsync_enqueue_inserted() SET SCHEMA mcsync;
ALTER FUNCTION mcsync_enqueue_updated() SET SCHEMA mcsync;
ALTER FUNCTION mcsync_enqueue_deleted() SET SCHEMA mcsync;

-- A dc is what the API host is built from (https://<dc>.api.mailchimp.com): only Mailchimp's
-- form (us1, us21...) may be stored, so a forged row can never point a token at another host.
-- (A row that does not fit makes this migration fail: such a connection was never usable.)
ALTER TABLE mcsync.mailchimp_connections
    ADD CONSTRAINT mailchimp_connections_dc_form CHECK (dc ~ '^[a-z]+[0-9]+$');

-- The triggers' functions (moved above) get their final bodies from the source mapping:
-- `mcsync migrate` (and `mcsync sql`) generates them in this same transaction, right after the
-- migrations (mcsync.source, docs/mapping.md), naming every table schema-qualified, with a
-- search_path that only holds the system catalog (pg_temp last), still SECURITY DEFINER.

-- Locks the schema down; every later migration that creates an object in it ends by calling
-- this again. Idempotent. The grants `sql/grants.sql` gives mcsync's own roles (mcsync_worker,
-- mcsync_web) are kept, so calling it never stops a running worker.
CREATE PROCEDURE mcsync.lock_down()
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ours CONSTANT regnamespace := 'mcsync'::regnamespace;
    item record;
BEGIN
    REVOKE ALL ON SCHEMA mcsync FROM PUBLIC;
    REVOKE ALL ON ALL TABLES IN SCHEMA mcsync FROM PUBLIC;
    REVOKE ALL ON ALL SEQUENCES IN SCHEMA mcsync FROM PUBLIC;
    REVOKE ALL ON ALL ROUTINES IN SCHEMA mcsync FROM PUBLIC;
    -- Every other grantee but the owner: on Supabase, `ALTER DEFAULT PRIVILEGES IN SCHEMA
    -- public GRANT ALL ... TO anon, authenticated, service_role` gave the tables, their
    -- sequences and the functions to those roles when 001-003 created them in `public`, and
    -- those grants moved here with them. Revoked whoever they name, not a list of known roles.
    FOR item IN
        SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || c.oid::regclass
                   AS target,
               a.grantee
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.relnamespace = ours AND a.grantee NOT IN (0, c.relowner)
        UNION
        SELECT 'ROUTINE ' || p.oid::regprocedure, a.grantee
          FROM pg_proc p, aclexplode(p.proacl) a
         WHERE p.pronamespace = ours AND a.grantee NOT IN (0, p.proowner)
        UNION
        SELECT 'SCHEMA ' || quote_ident(n.nspname), a.grantee
          FROM pg_namespace n, aclexplode(n.nspacl) a
         WHERE n.oid = ours AND a.grantee NOT IN (0, n.nspowner)
    LOOP
        CONTINUE WHEN item.grantee::regrole::text IN ('mcsync_worker', 'mcsync_web');
        EXECUTE format('REVOKE ALL ON %s FROM %s CASCADE', item.target, item.grantee::regrole);
    END LOOP;
    -- Row level security with no policy: a role that somehow gets a grant still sees no row.
    -- (The owner is exempt; mcsync's own roles get their policies from sql/grants.sql.)
    FOR item IN
        SELECT c.oid::regclass AS target FROM pg_class c
         WHERE c.relnamespace = ours AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', item.target);
    END LOOP;
    -- The one exception. The index `contacts_mcsync_email_idx` on the app's table computes
    -- mcsync_email_key(email) whenever the app writes a contact, and Postgres checks EXECUTE on
    -- an index expression's function for the writing role. It stays callable by PUBLIC, but
    -- nobody without USAGE on this schema can name it, and it only lowercases and trims text.
    GRANT EXECUTE ON FUNCTION mcsync.mcsync_email_key(text) TO PUBLIC;
END $$;

CALL mcsync.lock_down();
