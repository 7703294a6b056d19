-- Secret custody. Each version records the target binding its payload was sealed with (a digest
-- of the credential's name and the target fields, bound into the payload's associated data,
-- format 2) and a keyed fingerprint of its secret. The fields themselves are kept once per
-- credential and binding in `version_targets`: successive versions for the same target share a
-- row, which keeps version rows (rewritten at every stage change) small. Versions stored before
-- this have neither until the format migration binds them (`binding IS NULL` marks what is left).
ALTER TABLE credential_versions ADD COLUMN binding BLOB;
ALTER TABLE credential_versions ADD COLUMN fingerprint BLOB;
CREATE INDEX credential_versions_unbound ON credential_versions (credential_id, version) WHERE binding IS NULL;
CREATE TABLE version_targets (
    credential_id TEXT NOT NULL,
    binding BLOB NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (credential_id, binding)
) WITHOUT ROWID;

-- Token rows carry a MAC under the integrity key. Rows stored before this are sealed once, at the
-- first unseal after the upgrade (the marker below), and audited.
ALTER TABLE tokens ADD COLUMN mac BLOB;
CREATE TABLE integrity_pending (what TEXT PRIMARY KEY);
INSERT INTO integrity_pending (what) VALUES ('tokens');
