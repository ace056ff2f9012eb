-- mcsync 008: a short health history per connection, for the operator's page (`/admin`).
--
-- Each row is one thing that happened to a connection's health (paused, probed and still down,
-- resumed, put in error, a token found unbound) or one operator action (resume, Sync Now,
-- retry rejected contacts, disconnect, verify), with who did it: `actor` is NULL for the
-- worker, else the operator's user id. A repeat of the latest event (a probe failing again)
-- bumps `repeats` and `last_at` instead of adding a row, and only the latest 50 rows per
-- connection are kept (mcsync.admin_queries.RECORD_HEALTH_EVENT trims as it writes), so the
-- table stays small whatever the outage.
CREATE TABLE mcsync.mailchimp_health_events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id  uuid NOT NULL,
    kind     text NOT NULL,
    actor    text,
    detail   text,
    at       timestamptz NOT NULL DEFAULT now(),
    last_at  timestamptz NOT NULL DEFAULT now(),
    repeats  integer NOT NULL DEFAULT 1
);
-- The page reads a connection's newest events; the trim finds the 50th newest.
CREATE INDEX mailchimp_health_events_user_idx ON mcsync.mailchimp_health_events (user_id, id);

CALL mcsync.lock_down();
