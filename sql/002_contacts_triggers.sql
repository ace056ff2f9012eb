-- mcsync 002: the functions behind the triggers on the app's contacts table. They are
-- statement-level with transition tables, so a 100,000-row import writes its queue rows in one
-- INSERT ... SELECT and sends one NOTIFY.
--
-- Since the source mapping (docs/mapping.md), the triggers, the index on the app's table and the
-- functions' bodies are generated from the mapping by `mcsync migrate` (mcsync.source), in the
-- same transaction as the migrations: this file no longer names the app's table, so an app whose
-- contacts live elsewhere installs it too. It declares the functions (004 moves them into
-- mcsync's schema); their bodies here do nothing, the generator writes the real ones. (The
-- first release's text, with full bodies and triggers on `contacts`, is still accepted by the
-- runner's checksum for installs that applied it.)

-- How mcsync compares addresses: ASCII whitespace trimmed, lowercased (the same rule as
-- mcsync.mirror.normalize_email). A function, so the index and the queries agree exactly.
CREATE FUNCTION mcsync_email_key(email text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT lower(btrim(email, E' \t\n\r\f\x0B')) $$;

CREATE FUNCTION mcsync_enqueue_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN NULL; END $$;

CREATE FUNCTION mcsync_enqueue_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN NULL; END $$;

CREATE FUNCTION mcsync_enqueue_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN NULL; END $$;
