-- Incidents: a declared exposure (its scope selectors), the credentials it reaches (frozen at
-- the moment it was opened, each with the reasons it is in scope), and its state. What was done
-- about it is in the audit log, under the resource "incident:<id>".
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    scope TEXT NOT NULL,
    since BIGINT,
    state TEXT NOT NULL,
    frozen BIGINT NOT NULL DEFAULT 0,
    affected BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    contained_at BIGINT,
    closed_at BIGINT
);

CREATE TABLE incident_items (
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    credential_id TEXT NOT NULL REFERENCES credentials (id),
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    reasons TEXT NOT NULL,
    PRIMARY KEY (incident_id, credential_id)
);
CREATE INDEX incident_items_tenant ON incident_items (incident_id, tenant_id);

-- Set while an incident freezes the credential: connectors may not reveal it until a new
-- version is current.
ALTER TABLE credentials ADD COLUMN frozen_by TEXT;

-- Blast radius and the timeline read the audit log by resource and by principal.
CREATE INDEX audit_events_resource ON audit_events (resource, action);
CREATE INDEX audit_events_principal ON audit_events (principal, action);
