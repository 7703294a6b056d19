-- Root key versions as this database knows them. The keys themselves are in the seal.
CREATE TABLE root_keys (
    version INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    changed_at INTEGER NOT NULL
);

-- The Shamir seal's root keyring, encrypted under the unseal key. 'pending' holds the keyring
-- of a root rotation whose new shares were handed out but not yet committed.
CREATE TABLE seal_keyring (
    slot TEXT PRIMARY KEY CHECK (slot IN ('active', 'pending')),
    set_id BLOB NOT NULL,
    shares INTEGER NOT NULL,
    threshold INTEGER NOT NULL,
    blob BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- Rotations and rewraps that run in the server and resume after a restart.
CREATE TABLE key_jobs (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    tenant_id TEXT REFERENCES tenants (id),
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    error TEXT
);

ALTER TABLE tenant_keks ADD COLUMN changed_at INTEGER;

-- Rewrapping walks a tenant's credential versions, deleted credentials included.
CREATE INDEX credentials_tenant ON credentials (tenant_id);
CREATE INDEX tenant_keks_root ON tenant_keks (root_version);

-- Per-tenant certificates: the inventory. The private key is the credential version's secret.
CREATE TABLE certificates (
    sha256 TEXT PRIMARY KEY,
    sha1 TEXT NOT NULL UNIQUE,
    public_key_sha256 TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    credential_id TEXT NOT NULL REFERENCES credentials (id),
    credential_version INTEGER NOT NULL,
    subject TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    state TEXT NOT NULL,
    pem TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX certificates_not_after ON certificates (not_after);
CREATE INDEX certificates_credential ON certificates (credential_id, credential_version);

-- The newest version number, which may be a pending one (a certificate issued but not yet
-- promoted); current_version is the one served.
ALTER TABLE credentials ADD COLUMN latest_version INTEGER NOT NULL DEFAULT 0;
UPDATE credentials SET latest_version = current_version;
