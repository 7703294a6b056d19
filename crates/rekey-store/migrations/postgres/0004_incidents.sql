-- Incidents: a declared exposure (its scope selectors), what it reaches (frozen at the moment it
-- was opened), and its state. What was done about it is in the audit log, under the resource
-- "incident:<id>".
--
-- Reach is kept at two grains so that a scope of a million credentials is stored in well under
-- a second: a tenant reached as a whole (a region, a tenant, a root key version) is one row of
-- incident_tenants, and its credentials are those created before the incident opened; single
-- credentials (a certificate, a token's bindings and reveals, a tenant key version) are rows of
-- incident_items under a tenant row with whole = 0. Reasons are bits: bit i is the incident's
-- reasons[i].
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    scope TEXT NOT NULL,
    reasons TEXT NOT NULL,
    kinds TEXT,
    since BIGINT,
    state TEXT NOT NULL,
    frozen BIGINT NOT NULL DEFAULT 0,
    affected BIGINT NOT NULL DEFAULT 0,
    counts TEXT NOT NULL DEFAULT '{}',
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    contained_at BIGINT,
    closed_at BIGINT
);

-- No foreign keys on the two reach tables: their rows are selected from tenants and credentials
-- in the same transaction (neither is ever deleted), and a per-row check would cost more than
-- the insert itself at a hundred thousand tenants.
CREATE TABLE incident_tenants (
    incident_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    -- Copied from the tenant, so that counting and listing need not visit it.
    tenant_name TEXT NOT NULL,
    region TEXT NOT NULL,
    whole BIGINT NOT NULL,
    reasons BIGINT NOT NULL,
    PRIMARY KEY (incident_id, tenant_id)
);

CREATE TABLE incident_items (
    incident_id TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    reasons BIGINT NOT NULL,
    PRIMARY KEY (incident_id, credential_id)
);

CREATE INDEX incident_tenants_name ON incident_tenants (incident_id, tenant_name);

-- Counting a scope reads only this index (live credentials by tenant, kind and age).
CREATE INDEX credentials_reach ON credentials (tenant_id, kind, created_at) WHERE deleted_at IS NULL;

-- Set while an incident freezes the credential: connectors may not reveal it until a new
-- version is current.
ALTER TABLE credentials ADD COLUMN frozen_by TEXT;

-- The timeline reads the audit log by resource; a token's reveals by principal.
CREATE INDEX audit_events_resource ON audit_events (resource, action);
CREATE INDEX audit_events_principal ON audit_events (principal, action);
