-- mcsync's schema as migrations 001-010 leave it: every table, index, constraint,
-- function and privilege of the `mcsync` schema, in one file to read.
--
-- GENERATED: do not edit. After adding a migration, run `make schema-sql`
-- (tests/support/schema_sql.py); tests/e2e/test_schema_sql.py checks that a database built from
-- this file has the same catalog as one built by the migrations.
--
-- For reading, not for installing: installs run the migrations (`mcsync migrate`, or
-- `mcsync sql` for a migration tool of the app's own). Not here: the runner's bookkeeping
-- table (mcsync_schema_migrations), and what the source mapping generates in the same
-- transaction (docs/mapping.md): the view mcsync.source_contacts, the index and triggers on the
-- app's table, and the real bodies of the mcsync_enqueue_* trigger functions (declared here
-- with empty ones). The grants for mcsync's own roles are sql/grants.sql.

CREATE SCHEMA mcsync;

COMMENT ON SCHEMA mcsync IS 'mcsync (Mailchimp mirror): its tables, functions and bookkeeping';

CREATE PROCEDURE mcsync.distrust_exposed_rows()
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
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
           status_reason = 'token_withdrawn',
           notice = 'Please reconnect Mailchimp to keep your contacts in sync.',
           last_error = 'token held by more than one connection; reconnect required',
           access_token_encrypted = '',  -- none: see ALL_ENCRYPTED_TOKENS
           updated_at = pg_catalog.now()
     WHERE c.access_token_encrypted NOT LIKE 'mcsync2:%'  -- bound: decrypts only for its user
       AND c.access_token_encrypted IN (
               SELECT d.access_token_encrypted FROM mcsync.mailchimp_connections d
                GROUP BY d.access_token_encrypted HAVING pg_catalog.count(*) > 1);
END $$;

CREATE PROCEDURE mcsync.lock_down()
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
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

CREATE FUNCTION mcsync.mcsync_email_key(email text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT pg_catalog.lower(pg_catalog.btrim(email, E' \t\n\r\f\x0B')) $$;

CREATE FUNCTION mcsync.mcsync_enqueue_deleted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$ BEGIN RETURN NULL; END $$;

CREATE FUNCTION mcsync.mcsync_enqueue_inserted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$ BEGIN RETURN NULL; END $$;

CREATE FUNCTION mcsync.mcsync_enqueue_updated() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$ BEGIN RETURN NULL; END $$;

CREATE TABLE mcsync.install (
    singleton boolean DEFAULT true NOT NULL,
    install_id uuid DEFAULT gen_random_uuid() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT install_singleton_check CHECK (singleton)
);

CREATE TABLE mcsync.mailchimp_connections (
    user_id uuid NOT NULL,
    access_token_encrypted text NOT NULL,
    dc text NOT NULL,
    api_endpoint text NOT NULL,
    account_name text,
    audience_id text,
    audience_name text,
    double_optin boolean DEFAULT false NOT NULL,
    sync_status text DEFAULT 'active'::text NOT NULL,
    notice text,
    consecutive_failures integer DEFAULT 0 NOT NULL,
    throttled_count integer DEFAULT 0 NOT NULL,
    last_error text,
    next_probe_at timestamp with time zone,
    lease_owner text,
    lease_until timestamp with time zone,
    connected_at timestamp with time zone DEFAULT now() NOT NULL,
    last_sync_at timestamp with time zone,
    last_full_sync_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    audience_changes integer DEFAULT 0 NOT NULL,
    audience_changes_since timestamp with time zone,
    status_reason text,
    CONSTRAINT mailchimp_connections_dc_form CHECK ((dc ~ '^[a-z]+[0-9]+$'::text)),
    CONSTRAINT mailchimp_connections_sync_status_check CHECK ((sync_status = ANY (ARRAY['active'::text, 'paused'::text, 'error'::text])))
);

CREATE TABLE mcsync.mailchimp_contact_links (
    user_id uuid NOT NULL,
    contact_id uuid NOT NULL,
    audience_id text NOT NULL,
    email_hash bytea,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    maybe_hashes bytea[]
)
WITH (autovacuum_vacuum_scale_factor='0.02', autovacuum_vacuum_cost_delay='0', fillfactor='55');

CREATE TABLE mcsync.mailchimp_health_events (
    id bigint NOT NULL,
    user_id uuid NOT NULL,
    kind text NOT NULL,
    actor text,
    detail text,
    at timestamp with time zone DEFAULT now() NOT NULL,
    last_at timestamp with time zone DEFAULT now() NOT NULL,
    repeats integer DEFAULT 1 NOT NULL
);

ALTER TABLE mcsync.mailchimp_health_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME mcsync.mailchimp_health_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE mcsync.mailchimp_members (
    user_id uuid NOT NULL,
    audience_id text NOT NULL,
    email_hash bytea NOT NULL,
    email text NOT NULL,
    fields_hash bytea,
    tags text[] DEFAULT '{}'::text[] NOT NULL,
    maybe_tags text[],
    status text,
    archived boolean DEFAULT false NOT NULL,
    archive_status text,
    pending_rename_from text
)
WITH (fillfactor='50', autovacuum_vacuum_scale_factor='0.02', autovacuum_vacuum_cost_delay='0');

CREATE TABLE mcsync.mailchimp_rejected_contacts (
    user_id uuid NOT NULL,
    contact_id uuid NOT NULL,
    email text,
    severity text NOT NULL,
    reason text NOT NULL,
    field text,
    detail text,
    rejected_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT mailchimp_rejected_contacts_severity_check CHECK ((severity = ANY (ARRAY['error'::text, 'warning'::text])))
);

CREATE TABLE mcsync.mailchimp_sync_bulk (
    id bigint NOT NULL,
    user_id uuid NOT NULL,
    contact_ids uuid[] NOT NULL,
    enqueued_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE mcsync.mailchimp_sync_bulk ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME mcsync.mailchimp_sync_bulk_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE mcsync.mailchimp_sync_queue (
    id bigint NOT NULL,
    user_id uuid NOT NULL,
    contact_id uuid NOT NULL,
    op text NOT NULL,
    email text,
    version bigint DEFAULT 1 NOT NULL,
    enqueued_at timestamp with time zone DEFAULT now() NOT NULL,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_retry_at timestamp with time zone DEFAULT now() NOT NULL,
    last_error text,
    locked_by text,
    locked_until timestamp with time zone,
    CONSTRAINT mailchimp_sync_queue_op_check CHECK ((op = ANY (ARRAY['upsert'::text, 'delete'::text, 'resync'::text])))
)
WITH (fillfactor='50', autovacuum_vacuum_scale_factor='0', autovacuum_vacuum_threshold='5000', autovacuum_vacuum_cost_delay='0');

ALTER TABLE mcsync.mailchimp_sync_queue ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME mcsync.mailchimp_sync_queue_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE mcsync.mcsync_oauth_states (
    nonce text NOT NULL,
    user_id uuid NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    used_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE mcsync.mcsync_reconcile_seen (
    user_id uuid NOT NULL,
    email_hash text NOT NULL
);

CREATE TABLE mcsync.mcsync_reconciliations (
    user_id uuid NOT NULL,
    audience_id text NOT NULL,
    requested_at timestamp with time zone DEFAULT now() NOT NULL,
    next_offset integer DEFAULT 0 NOT NULL,
    queued integer DEFAULT 0 NOT NULL,
    lease_owner text,
    lease_until timestamp with time zone,
    finished_at timestamp with time zone,
    error text
);

CREATE TABLE mcsync.process_roles (
    process text NOT NULL,
    role_name name NOT NULL,
    CONSTRAINT process_roles_process_check CHECK ((process = ANY (ARRAY['worker'::text, 'web'::text])))
);

CREATE TABLE mcsync.quarantined_connections (
    user_id uuid NOT NULL,
    access_token_encrypted text NOT NULL,
    dc text NOT NULL,
    api_endpoint text NOT NULL,
    account_name text,
    audience_id text,
    audience_name text,
    double_optin boolean NOT NULL,
    sync_status text NOT NULL,
    notice text,
    consecutive_failures integer NOT NULL,
    throttled_count integer NOT NULL,
    last_error text,
    next_probe_at timestamp with time zone,
    lease_owner text,
    lease_until timestamp with time zone,
    connected_at timestamp with time zone NOT NULL,
    last_sync_at timestamp with time zone,
    last_full_sync_at timestamp with time zone,
    updated_at timestamp with time zone NOT NULL,
    reason text NOT NULL,
    quarantined_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE mcsync.source_mapping (
    singleton boolean DEFAULT true NOT NULL,
    mapping jsonb NOT NULL,
    fingerprint text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT source_mapping_singleton_check CHECK (singleton)
);

ALTER TABLE ONLY mcsync.install
    ADD CONSTRAINT install_pkey PRIMARY KEY (singleton);

ALTER TABLE ONLY mcsync.mailchimp_connections
    ADD CONSTRAINT mailchimp_connections_pkey PRIMARY KEY (user_id);

ALTER TABLE ONLY mcsync.mailchimp_contact_links
    ADD CONSTRAINT mailchimp_contact_links_pkey PRIMARY KEY (user_id, contact_id);

ALTER TABLE ONLY mcsync.mailchimp_health_events
    ADD CONSTRAINT mailchimp_health_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY mcsync.mailchimp_members
    ADD CONSTRAINT mailchimp_members_pkey PRIMARY KEY (user_id, audience_id, email_hash);

ALTER TABLE ONLY mcsync.mailchimp_rejected_contacts
    ADD CONSTRAINT mailchimp_rejected_contacts_pkey PRIMARY KEY (user_id, contact_id);

ALTER TABLE ONLY mcsync.mailchimp_sync_bulk
    ADD CONSTRAINT mailchimp_sync_bulk_pkey PRIMARY KEY (id);

ALTER TABLE ONLY mcsync.mailchimp_sync_queue
    ADD CONSTRAINT mailchimp_sync_queue_contact_key UNIQUE (user_id, contact_id);

ALTER TABLE ONLY mcsync.mailchimp_sync_queue
    ADD CONSTRAINT mailchimp_sync_queue_pkey PRIMARY KEY (id);

ALTER TABLE ONLY mcsync.mcsync_oauth_states
    ADD CONSTRAINT mcsync_oauth_states_pkey PRIMARY KEY (nonce);

ALTER TABLE ONLY mcsync.mcsync_reconcile_seen
    ADD CONSTRAINT mcsync_reconcile_seen_pkey PRIMARY KEY (user_id, email_hash);

ALTER TABLE ONLY mcsync.mcsync_reconciliations
    ADD CONSTRAINT mcsync_reconciliations_pkey PRIMARY KEY (user_id);

ALTER TABLE ONLY mcsync.process_roles
    ADD CONSTRAINT process_roles_pkey PRIMARY KEY (process);

ALTER TABLE ONLY mcsync.source_mapping
    ADD CONSTRAINT source_mapping_pkey PRIMARY KEY (singleton);

CREATE INDEX mailchimp_health_events_user_idx ON mcsync.mailchimp_health_events USING btree (user_id, id);

CREATE INDEX mailchimp_sync_bulk_user_idx ON mcsync.mailchimp_sync_bulk USING btree (user_id, id);

CREATE INDEX mailchimp_sync_queue_due_idx ON mcsync.mailchimp_sync_queue USING btree (user_id, next_retry_at, id);

ALTER TABLE mcsync.install ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.mailchimp_connections ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.mailchimp_contact_links ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.mailchimp_health_events ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.mailchimp_members ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.mailchimp_rejected_contacts ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.mailchimp_sync_bulk ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.mailchimp_sync_queue ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.mcsync_oauth_states ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.mcsync_reconcile_seen ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.mcsync_reconciliations ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.process_roles ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.quarantined_connections ENABLE ROW LEVEL SECURITY;

ALTER TABLE mcsync.source_mapping ENABLE ROW LEVEL SECURITY;

REVOKE ALL ON PROCEDURE mcsync.distrust_exposed_rows() FROM PUBLIC;

REVOKE ALL ON PROCEDURE mcsync.lock_down() FROM PUBLIC;

REVOKE ALL ON FUNCTION mcsync.mcsync_enqueue_deleted() FROM PUBLIC;

REVOKE ALL ON FUNCTION mcsync.mcsync_enqueue_inserted() FROM PUBLIC;

REVOKE ALL ON FUNCTION mcsync.mcsync_enqueue_updated() FROM PUBLIC;
