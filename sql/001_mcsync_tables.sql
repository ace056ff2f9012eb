-- mcsync 001: the tables. Plain SQL; `mcsync migrate` applies it, and so can any migration tool
-- (Supabase CLI, Flyway, sqitch...). Apply the files in order, each once.

-- One Mailchimp connection per app user. The token is Fernet-encrypted by the application;
-- it never exists here in plain text.
CREATE TABLE mailchimp_connections (
    user_id                uuid PRIMARY KEY,
    access_token_encrypted text NOT NULL,
    dc                     text NOT NULL,
    api_endpoint           text NOT NULL,
    account_name           text,
    audience_id            text,
    audience_name          text,
    double_optin           boolean NOT NULL DEFAULT false,
    sync_status            text NOT NULL DEFAULT 'active'
                           CHECK (sync_status IN ('active', 'paused', 'error')),
    notice                 text,
    consecutive_failures   integer NOT NULL DEFAULT 0,
    throttled_count        integer NOT NULL DEFAULT 0,
    last_error             text,
    next_probe_at          timestamptz,
    -- The account lease: one worker serves an account at a time, which is what keeps the
    -- per-account in-flight cap and per-contact order true across several workers.
    lease_owner            text,
    lease_until            timestamptz,
    connected_at           timestamptz NOT NULL DEFAULT now(),
    last_sync_at           timestamptz,
    last_full_sync_at      timestamptz,
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- The outbox, read as "contacts that need reconciling": at most one row per (user, contact),
-- upserted by the triggers. Rows are deleted once Mailchimp agrees with the contact, so every
-- row here is pending work. No foreign key to contacts: a delete must outlive its row.
CREATE TABLE mailchimp_sync_queue (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       uuid NOT NULL,
    contact_id    uuid NOT NULL,
    op            text NOT NULL CHECK (op IN ('upsert', 'delete', 'resync')),
    -- The address Mailchimp may know this contact by (its email before the first pending
    -- change); what a delete or an email change needs when the contact row is gone or changed.
    email         text,
    -- Bumped by every new change; completion deletes the row only if the version it
    -- processed is still the current one, so a change made mid-flight is never lost.
    version       bigint NOT NULL DEFAULT 1,
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    changed_at    timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    next_retry_at timestamptz NOT NULL DEFAULT now(),
    last_error    text,
    locked_by     text,
    locked_until  timestamptz,
    CONSTRAINT mailchimp_sync_queue_contact_key UNIQUE (user_id, contact_id)
);
-- The claim's order (next_retry_at, id) in the index, so a claim stays an index scan of its
-- few hundred rows however large the backlog.
CREATE INDEX mailchimp_sync_queue_due_idx ON mailchimp_sync_queue (user_id, next_retry_at, id);

-- Large imports: one row per user per statement holding the new contacts' ids, written by the
-- insert trigger instead of one queue row per contact, so an import costs the app's statement
-- almost nothing. The worker expands it into queue rows (in chunks) before claiming.
CREATE TABLE mailchimp_sync_bulk (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     uuid NOT NULL,
    contact_ids uuid[] NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mailchimp_sync_bulk_user_idx ON mailchimp_sync_bulk (user_id, id);

-- The ledger: what Mailchimp was last told, per member. It answers "does mcsync own this
-- member?" and "did mcsync set this tag?" without asking Mailchimp.
CREATE TABLE mailchimp_members (
    user_id     uuid NOT NULL,
    audience_id text NOT NULL,
    email_hash  text NOT NULL,
    email       text NOT NULL,
    fields_hash text,
    tags        text[] NOT NULL DEFAULT '{}',
    -- Tags mcsync asked Mailchimp to set without hearing back (a lost answer): they may be
    -- set, so a removal still clears them, but they are sent again until confirmed.
    maybe_tags  text[] NOT NULL DEFAULT '{}',
    status      text,
    archived    boolean NOT NULL DEFAULT false,
    -- Set just before mcsync archives the member: the status it had. If the archive's answer
    -- is lost, this tells "archived by mcsync" (restorable) from "archived by a marketer".
    archive_status text,
    -- Written ahead of an email change: this member may be the one at that old address, renamed
    -- (the answer was lost). The next pass asks Mailchimp again instead of guessing.
    pending_rename_from text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, audience_id, email_hash)
);

-- Which member each contact was last synced as (so an email change renames, a delete archives),
-- and which members it may have become without hearing back (written before the calls go out,
-- so a member created by a call whose answer was lost is still archived when the contact goes).
CREATE TABLE mailchimp_contact_links (
    user_id      uuid NOT NULL,
    contact_id   uuid NOT NULL,
    audience_id  text NOT NULL,
    email_hash   text,
    maybe_hashes text[] NOT NULL DEFAULT '{}',
    changed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, contact_id)
);
CREATE INDEX mailchimp_contact_links_member_idx
    ON mailchimp_contact_links (user_id, audience_id, email_hash);

-- Contacts Mailchimp refused (severity 'error': not synced until the contact changes) or
-- accepted only in part (severity 'warning', e.g. PHONE dropped), with Mailchimp's reason.
CREATE TABLE mailchimp_rejected_contacts (
    user_id     uuid NOT NULL,
    contact_id  uuid NOT NULL,
    email       text,
    severity    text NOT NULL CHECK (severity IN ('error', 'warning')),
    reason      text NOT NULL,
    field       text,
    detail      text,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, contact_id)
);
