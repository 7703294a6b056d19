-- The audit log's indexes by resource and by principal move to a file of their own beside the
-- store, filled behind the writer in sorted chunks (see src/audit_index.rs): kept here, each
-- commit rewrote one index page per credential it touched. PostgreSQL keeps them.
DROP INDEX IF EXISTS audit_events_resource;
DROP INDEX IF EXISTS audit_events_principal;
