-- Staged rotations of a credential at its target: pending (the new version is stored) -> applied
-- (the target took it) -> promoted (it is current; the old one is previous) -> retired (the old
-- one is gone from the target too), or failed.
CREATE TABLE rotations (
    id TEXT PRIMARY KEY,
    credential_id TEXT NOT NULL REFERENCES credentials (id),
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    from_version BIGINT NOT NULL,
    to_version BIGINT NOT NULL,
    state TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    changed_at BIGINT NOT NULL,
    retire_after BIGINT,
    error TEXT,
    -- What the target calls the secret this rotation created (a Graph password credential's keyId).
    target_ref TEXT
);
-- At most one unfinished rotation per credential, whichever server started it.
CREATE UNIQUE INDEX rotations_unfinished ON rotations (credential_id) WHERE state IN ('pending', 'applied');
CREATE INDEX rotations_state ON rotations (state, changed_at);
CREATE INDEX rotations_credential ON rotations (credential_id, created_at);

-- The last check of each credential against its target.
CREATE TABLE credential_health (
    credential_id TEXT PRIMARY KEY REFERENCES credentials (id),
    version BIGINT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    elapsed_ms BIGINT NOT NULL,
    checked_at BIGINT NOT NULL
);
CREATE INDEX credential_health_checked ON credential_health (checked_at);
