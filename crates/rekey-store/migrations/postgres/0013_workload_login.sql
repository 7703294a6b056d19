-- Workload login: auth roles that trust an issuer's JWTs, and tokens that can be renewed up to
-- a limit. A row of either decides who gets what, so each carries a MAC under the integrity key.
ALTER TABLE tokens ADD COLUMN max_expires_at BIGINT;

CREATE TABLE auth_roles (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    mac BYTEA NOT NULL
);
