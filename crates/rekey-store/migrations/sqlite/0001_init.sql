CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    region TEXT NOT NULL,
    contacts TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX tenants_region ON tenants (region);

CREATE TABLE tenant_keks (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    wrapped BLOB NOT NULL,
    root_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    fields TEXT NOT NULL,
    labels TEXT NOT NULL,
    current_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE UNIQUE INDEX credentials_live_name ON credentials (tenant_id, name) WHERE deleted_at IS NULL;
CREATE INDEX credentials_kind ON credentials (kind);

CREATE TABLE credential_versions (
    credential_id TEXT NOT NULL REFERENCES credentials (id),
    version INTEGER NOT NULL,
    stage TEXT NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped_dek BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    verified_at INTEGER,
    PRIMARY KEY (credential_id, version)
) WITHOUT ROWID;

-- Staging a put touches the current and previous versions only.
CREATE INDEX credential_versions_stage ON credential_versions (credential_id, stage);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    hash BLOB NOT NULL,
    role TEXT NOT NULL,
    tenant_id TEXT REFERENCES tenants (id),
    bound TEXT NOT NULL,
    cidrs TEXT NOT NULL,
    description TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

CREATE TABLE system_keys (
    purpose TEXT NOT NULL,
    version INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (purpose, version)
);

CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    outcome TEXT NOT NULL,
    source TEXT NOT NULL,
    request_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    mac BLOB NOT NULL
);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    mac BLOB NOT NULL
);

INSERT INTO audit_head (id, seq, mac) VALUES (1, 0, zeroblob(32));
