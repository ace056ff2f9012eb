-- The app's contacts table, as the demo and the tests create it. In a real deployment the
-- app owns this table already; mcsync only reads it and installs triggers on it.
-- Not a migration: `mcsync migrate` never applies this file.
CREATE TABLE IF NOT EXISTS contacts (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL,
    first_name  text,
    last_name   text,
    email       text,
    phone       text,
    tags        text[] NOT NULL DEFAULT '{}',
    -- Columns that never sync:
    notes       text,
    address     text,
    stage       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS contacts_user_id_idx ON contacts (user_id);
