-- Optional: a least-privilege role for the worker. Apply after the migrations, as an owner.
-- The worker only ever reads `contacts`; it writes nothing but mcsync's own tables.
--   then: GRANT mcsync_worker TO <the login the worker uses>;  (or ALTER ROLE ... LOGIN)
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mcsync_worker') THEN
        CREATE ROLE mcsync_worker NOLOGIN;
    END IF;
END $$;

GRANT SELECT ON contacts TO mcsync_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    mailchimp_connections, mailchimp_sync_queue, mailchimp_sync_bulk, mailchimp_members,
    mailchimp_contact_links, mailchimp_rejected_contacts
    TO mcsync_worker;
