CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    region TEXT NOT NULL,
    contacts TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX tenants_region ON tenants (region);

CREATE TABLE tenant_keks (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    version BIGINT NOT NULL,
    state TEXT NOT NULL,
    wrapped BYTEA NOT NULL,
    root_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    fields TEXT NOT NULL,
    labels TEXT NOT NULL,
    current_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE UNIQUE INDEX credentials_live_name ON credentials (tenant_id, name) WHERE deleted_at IS NULL;
CREATE INDEX credentials_kind ON credentials (kind);

CREATE TABLE credential_versions (
    credential_id TEXT NOT NULL REFERENCES credentials (id),
    version BIGINT NOT NULL,
    stage TEXT NOT NULL,
    kek_version BIGINT NOT NULL,
    wrapped_dek BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    verified_at BIGINT,
    PRIMARY KEY (credential_id, version)
);

-- Staging a put touches the current and previous versions only.
CREATE INDEX credential_versions_stage ON credential_versions (credential_id, stage);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    hash BYTEA NOT NULL,
    role TEXT NOT NULL,
    tenant_id TEXT REFERENCES tenants (id),
    bound TEXT NOT NULL,
    cidrs TEXT NOT NULL,
    description TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE system_keys (
    purpose TEXT NOT NULL,
    version BIGINT NOT NULL,
    wrapped BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (purpose, version)
);

CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    time BIGINT NOT NULL,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    outcome TEXT NOT NULL,
    source TEXT NOT NULL,
    request_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    mac BYTEA NOT NULL
);

CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    mac BYTEA NOT NULL
);

INSERT INTO audit_head (id, seq, mac) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
