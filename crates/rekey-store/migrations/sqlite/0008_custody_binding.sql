-- Secret custody. Each version keeps the target fields it was stored for, the digest of those
-- fields and the credential's name (bound into the payload's associated data, format 2), and a
-- keyed fingerprint of its secret. Versions stored before this have none of them until the
-- format migration binds them (`binding IS NULL` marks what is left to do).
ALTER TABLE credential_versions ADD COLUMN fields TEXT;
ALTER TABLE credential_versions ADD COLUMN binding BLOB;
ALTER TABLE credential_versions ADD COLUMN fingerprint BLOB;
CREATE INDEX credential_versions_unbound ON credential_versions (credential_id, version) WHERE binding IS NULL;

-- Token rows carry a MAC under the integrity key. Rows stored before this are sealed once, at the
-- first unseal after the upgrade (the marker below), and audited.
ALTER TABLE tokens ADD COLUMN mac BLOB;
CREATE TABLE integrity_pending (what TEXT PRIMARY KEY);
INSERT INTO integrity_pending (what) VALUES ('tokens');
