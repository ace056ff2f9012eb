-- mcsync 006: room for updates in place, and earlier vacuuming, on the tables an import churns.
--
-- Every imported contact is one queue row (inserted, leased, deleted) and one ledger row
-- (written ahead of the call, then updated with Mailchimp's answer). Both updates touch no
-- indexed column, so PostgreSQL can keep the new row version on the same page (a HOT update:
-- no new index entries, and the old version is pruned on the next visit of the page) - but
-- only if the page has room. Rows are written a claim at a time and updated together in one
-- transaction, so a page needs room for a second version of every row on it: fillfactor 50.
-- Without it, each lease and each recorded answer wrote a new version on another page plus an
-- entry in every index (three on the queue), left for autovacuum, and a 100,000-contact import
-- left tens of thousands of dead rows that every later statement stepped over (issue 11).
-- The setting applies to pages written from now on; existing pages keep their layout.
ALTER TABLE mcsync.mailchimp_sync_queue SET (fillfactor = 50);
ALTER TABLE mcsync.mailchimp_members SET (fillfactor = 50);

-- The queue is small and churns fast: vacuum it after a fixed number of dead rows rather than a
-- fraction of its (shifting) size, and without the cost-based pauses, so the dead index entries
-- of leased-and-deleted rows are cleared while an import is still running. The links' updates
-- change an indexed column (the member a contact is linked to), so they are never HOT; vacuum
-- them, and the ledger, at a tenth of the default fraction too.
ALTER TABLE mcsync.mailchimp_sync_queue SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE mcsync.mailchimp_members SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE mcsync.mailchimp_contact_links SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

CALL mcsync.lock_down();
