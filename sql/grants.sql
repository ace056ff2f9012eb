-- mcsync's least-privilege roles: `mcsync_worker` (the sync worker) and `mcsync_web` (`mcsync
-- web`: OAuth connect, audience choice, disconnect, Sync Now). Each gets exactly what its
-- statements (src/mcsync/queries.py) use, and nothing of the app's: they read contacts only
-- through the view `mcsync.source_contacts` that `mcsync migrate` generates from the source
-- mapping (docs/mapping.md), i.e. only the synced columns of the rows inside its filter.
-- Apply after `mcsync migrate` (and again after any later migration), as the owner of
-- mcsync's schema and of the app's contacts table. Idempotent. `mcsync sql --grants` prints it
-- rendered for MCSYNC_SCHEMA and MCSYNC_ROLE_PREFIX. Both roles are NOLOGIN: give them to the
-- logins the processes use, e.g.
--   CREATE ROLE mcsync_worker_login LOGIN PASSWORD '...' IN ROLE mcsync_worker;
--   CREATE ROLE mcsync_web_login LOGIN PASSWORD '...' IN ROLE mcsync_web;
-- Everything else (migrate, connect, disconnect, status, rotate-keys from the CLI) runs as the
-- owner.
--
-- Roles are cluster-wide and CONNECT is granted to PUBLIC: a login of an install that shared its
-- roles with another install of the same cluster could read the other's contacts, tokens and
-- queue. So the roles belong to ONE install: this script writes the install's id on them and
-- refuses roles another install (in a database that still exists) holds. A second install in
-- the same cluster takes roles of its own: MCSYNC_ROLE_PREFIX=<name> (docs/install.md).
-- Every catalog function is `pg_catalog.`-qualified: this runs with the installer's rights, and
-- with whatever search_path the session has.

DO $$
DECLARE
    ours CONSTANT uuid := (SELECT i.install_id FROM mcsync.install i);
    item record;
    claim jsonb;
    new_claim text;
    elsewhere pg_catalog.name;
BEGIN
    FOR item IN
        SELECT r.oid, r.rolname, pg_catalog.shobj_description(r.oid, 'pg_authid') AS said
          FROM pg_catalog.pg_roles r WHERE r.rolname IN ('mcsync_worker', 'mcsync_web')
    LOOP
        BEGIN
            claim := item.said::jsonb;
        EXCEPTION WHEN others THEN
            claim := NULL;
        END;
        IF claim ->> 'mcsync_install' IS NOT NULL THEN
            -- Claimed: by this install (a copy of its database included), or by one that
            -- is gone, is fine.
            CONTINUE WHEN claim ->> 'mcsync_install' = ours::pg_catalog.text
                       OR claim ->> 'database' = pg_catalog.current_database()
                       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database d
                                       WHERE d.datname = claim ->> 'database');
            elsewhere := claim ->> 'database';
        ELSE
            -- Unclaimed (roles from before this check): refused if they hold privileges in
            -- another database, i.e. two installs already share them.
            SELECT d.datname INTO elsewhere
              FROM pg_catalog.pg_shdepend s
              JOIN pg_catalog.pg_database d ON d.oid = s.dbid
             WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
               AND s.refobjid = item.oid AND d.datname <> pg_catalog.current_database()
             LIMIT 1;
            CONTINUE WHEN elsewhere IS NULL;
        END IF;
        RAISE EXCEPTION 'role % belongs to the mcsync install in database %', item.rolname,
              elsewhere
            USING HINT = 'a login of that install would read this one: give this install roles '
                         'of its own, e.g. MCSYNC_ROLE_PREFIX=mcsync_'
                         || pg_catalog.current_database() || ' mcsync sql --grants '
                         '(docs/install.md)';
    END LOOP;
    -- The claim is written in the same block as the check: a refused run (psql without
    -- ON_ERROR_STOP carries on after the error) never takes the roles from their install.
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'mcsync_worker') THEN
        CREATE ROLE mcsync_worker NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'mcsync_web') THEN
        CREATE ROLE mcsync_web NOLOGIN;
    END IF;
    -- The claim: this install's id and database, on each role (see the check above).
    new_claim := pg_catalog.jsonb_build_object(
        'mcsync_install', ours, 'database', pg_catalog.current_database())::pg_catalog.text;
    EXECUTE pg_catalog.format('COMMENT ON ROLE mcsync_worker IS %L', new_claim);
    EXECUTE pg_catalog.format('COMMENT ON ROLE mcsync_web IS %L', new_claim);
    -- Roles an earlier run named (another prefix, or the fixed names of old) lose everything.
    FOR item IN
        SELECT p.role_name FROM mcsync.process_roles p
         WHERE p.role_name NOT IN ('mcsync_worker', 'mcsync_web')
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = p.role_name)
    LOOP
        EXECUTE pg_catalog.format(
            'REVOKE ALL ON ALL TABLES IN SCHEMA mcsync FROM %1$I; '
            'REVOKE ALL ON ALL SEQUENCES IN SCHEMA mcsync FROM %1$I; '
            'REVOKE ALL ON ALL ROUTINES IN SCHEMA mcsync FROM %1$I; '
            'REVOKE ALL ON SCHEMA mcsync FROM %1$I', item.role_name);
    END LOOP;
    DELETE FROM mcsync.process_roles;
    INSERT INTO mcsync.process_roles (process, role_name)
    VALUES ('worker', 'mcsync_worker'), ('web', 'mcsync_web');
END $$;

-- Start from nothing, so a grant from an older grants.sql (which gave the worker every table,
-- in `public`) does not outlive this one.
REVOKE ALL ON ALL TABLES IN SCHEMA mcsync FROM mcsync_worker, mcsync_web;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA mcsync FROM mcsync_worker, mcsync_web;
REVOKE ALL ON ALL ROUTINES IN SCHEMA mcsync FROM mcsync_worker, mcsync_web;

GRANT USAGE ON SCHEMA mcsync TO mcsync_worker, mcsync_web;
GRANT SELECT ON mcsync.source_contacts TO mcsync_worker, mcsync_web;
-- (mcsync.mcsync_email_key is executable by everyone already: see mcsync.lock_down in sql/004.)

-- The worker: claims and leases accounts, expands imports, plans, records outcomes and health.
-- It never creates or removes a connection.
GRANT SELECT, UPDATE ON mcsync.mailchimp_connections TO mcsync_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON mcsync.mailchimp_sync_queue TO mcsync_worker;
-- (It splits an import larger than one expansion into slices, INSERT: see SPLIT_OLDEST_BULK_ROW;
-- UPDATE only for the row lock of FOR UPDATE SKIP LOCKED.)
GRANT SELECT, INSERT, UPDATE, DELETE ON mcsync.mailchimp_sync_bulk TO mcsync_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON mcsync.mailchimp_members TO mcsync_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON mcsync.mailchimp_contact_links TO mcsync_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON mcsync.mailchimp_rejected_contacts TO mcsync_worker;
-- (The short health history, sql/008: a repeat bumps the latest row, old rows are trimmed.)
GRANT SELECT, INSERT, UPDATE, DELETE ON mcsync.mailchimp_health_events TO mcsync_worker;

-- The web side: stores and removes connections (queueing a full sync), spends OAuth states,
-- runs Sync Now (which reads the ledger and corrects it, adopts orphans, queues fixes).
GRANT SELECT, INSERT, UPDATE, DELETE ON mcsync.mailchimp_connections TO mcsync_web;
GRANT SELECT, INSERT, UPDATE, DELETE ON mcsync.mailchimp_sync_queue TO mcsync_web;
GRANT SELECT, DELETE ON mcsync.mailchimp_sync_bulk TO mcsync_web;
GRANT SELECT, UPDATE, DELETE ON mcsync.mailchimp_members TO mcsync_web;
GRANT SELECT, INSERT, UPDATE, DELETE ON mcsync.mailchimp_contact_links TO mcsync_web;
GRANT SELECT, DELETE ON mcsync.mailchimp_rejected_contacts TO mcsync_web;
GRANT SELECT, INSERT, DELETE ON mcsync.mcsync_oauth_states TO mcsync_web;
GRANT SELECT, INSERT, UPDATE, DELETE ON mcsync.mcsync_reconciliations TO mcsync_web;
GRANT SELECT, INSERT, DELETE ON mcsync.mcsync_reconcile_seen TO mcsync_web;
-- The operator's page (/admin): reads the health history and adds the operators' actions.
GRANT SELECT, INSERT, UPDATE, DELETE ON mcsync.mailchimp_health_events TO mcsync_web;

-- Row level security is on for every mcsync table with no policy for anyone else (sql/004);
-- these two roles see every row of the tables they were granted.
DO $$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT c.oid::pg_catalog.regclass AS target FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'mcsync'::pg_catalog.regnamespace AND c.relkind IN ('r', 'p')
    LOOP
        EXECUTE pg_catalog.format('DROP POLICY IF EXISTS mcsync_processes ON %s', item.target);
        EXECUTE pg_catalog.format('CREATE POLICY mcsync_processes ON %s TO mcsync_worker, '
                                  'mcsync_web USING (true) WITH CHECK (true)', item.target);
    END LOOP;
END $$;

-- Both processes read every user's contacts through the view. A view reads its tables with its
-- owner's rights (the owner of the app's table, who migrated), so row level security on the
-- app's table (Supabase: policies by auth.uid()) does not hide rows from it, and neither role
-- needs a grant or a policy on the app's table. An older grants.sql gave them a read-all policy
-- on `contacts`: dropped wherever it is.
DO $$
DECLARE
    item record;
BEGIN
    FOR item IN SELECT polname, polrelid::pg_catalog.regclass AS target FROM pg_catalog.pg_policy
                 WHERE polname = 'mcsync_read_all'
    LOOP
        EXECUTE pg_catalog.format('DROP POLICY %I ON %s', item.polname, item.target);
    END LOOP;
    IF pg_catalog.to_regclass('public.contacts') IS NOT NULL THEN
        REVOKE SELECT ON public.contacts FROM mcsync_worker, mcsync_web;
    END IF;
END $$;

-- Last: if the check above refused these roles (so they were not claimed for this install) and
-- the statements after it ran anyway (psql without ON_ERROR_STOP), take back what they were
-- given here, so another install's logins never keep a grant in this database.
DO $$
DECLARE
    ours CONSTANT text := (SELECT i.install_id::pg_catalog.text FROM mcsync.install i);
    item record;
    claimed_here boolean := true;
BEGIN
    FOR item IN
        SELECT pg_catalog.shobj_description(r.oid, 'pg_authid') AS said
          FROM pg_catalog.pg_roles r WHERE r.rolname IN ('mcsync_worker', 'mcsync_web')
    LOOP
        BEGIN
            claimed_here := claimed_here AND (item.said::jsonb ->> 'mcsync_install') = ours;
        EXCEPTION WHEN others THEN
            claimed_here := false;
        END;
    END LOOP;
    IF claimed_here THEN
        RETURN;
    END IF;
    REVOKE ALL ON ALL TABLES IN SCHEMA mcsync FROM mcsync_worker, mcsync_web;
    REVOKE ALL ON ALL SEQUENCES IN SCHEMA mcsync FROM mcsync_worker, mcsync_web;
    REVOKE ALL ON ALL ROUTINES IN SCHEMA mcsync FROM mcsync_worker, mcsync_web;
    REVOKE ALL ON SCHEMA mcsync FROM mcsync_worker, mcsync_web;
    FOR item IN
        SELECT c.oid::pg_catalog.regclass AS target FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'mcsync'::pg_catalog.regnamespace AND c.relkind IN ('r', 'p')
    LOOP
        EXECUTE pg_catalog.format('DROP POLICY IF EXISTS mcsync_processes ON %s', item.target);
    END LOOP;
    -- A warning, not an error: an error would roll back the revokes above.
    RAISE WARNING 'grants.sql was refused (see the first error): nothing was granted to '
                    'mcsync_worker, mcsync_web in this database'
        USING HINT = 'apply it with psql -v ON_ERROR_STOP=1, and MCSYNC_ROLE_PREFIX for a '
                     'second install in the cluster (docs/install.md)';
END $$;
