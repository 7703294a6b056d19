-- Rotation campaigns: every credential of an incident driven to a verified new secret.
--
-- An item is one credential. Its state moves pending → rotating (automatic kinds, through a
-- staged rotation whose id it holds) or notified (the tenant was sent a reset link) → rotated →
-- verified → retired, or to failed or waived. A rotation step and the item's state change are
-- one transaction: the statement that moves a rotation also moves the item holding it.
--
-- Workers take due items (next_at passed) under a lease (lease_until) so that several servers
-- sharing PostgreSQL do not take the same one; a crash leaves the lease to expire.
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    state TEXT NOT NULL,
    notify TEXT NOT NULL,
    deadline BIGINT NOT NULL,
    remind_at BIGINT NOT NULL,
    reminded BIGINT NOT NULL DEFAULT 0,
    items BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);

-- One running campaign per incident.
CREATE UNIQUE INDEX campaigns_running ON campaigns (incident_id) WHERE state = 'running';

CREATE TABLE campaign_items (
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    credential_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    tenant_name TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    -- automatic (Rekey rotates it) | self-service (the tenant's administrator does) | manual
    -- (no target: an operator stores the new secret)
    mode TEXT NOT NULL,
    from_version BIGINT NOT NULL,
    state TEXT NOT NULL,
    rotation_id TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT,
    lease_until BIGINT,
    error TEXT,
    done_by TEXT,
    note TEXT,
    notified_at BIGINT,
    rotated_at BIGINT,
    verified_at BIGINT,
    retired_at BIGINT,
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, credential_id)
);

CREATE INDEX campaign_items_due ON campaign_items (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX campaign_items_rotation ON campaign_items (rotation_id) WHERE rotation_id IS NOT NULL;
CREATE INDEX campaign_items_credential ON campaign_items (credential_id);
CREATE INDEX campaign_items_tenant ON campaign_items (campaign_id, tenant_name, name);

-- Notifications of a tenant: one row per channel and purpose (initial, reminder), delivered at
-- least once. Each delivery attempt carries a fresh reset link; the link of a failed attempt is
-- revoked.
CREATE TABLE campaign_notices (
    id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    tenant_id TEXT NOT NULL,
    tenant_name TEXT NOT NULL,
    channel TEXT NOT NULL,
    purpose TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT,
    error TEXT,
    link_id TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    UNIQUE (campaign_id, tenant_id, channel, purpose)
);

CREATE INDEX campaign_notices_due ON campaign_notices (next_at) WHERE next_at IS NOT NULL;

-- Single-use reset links. Only a hash of the secret half is stored.
CREATE TABLE reset_links (
    id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    tenant_id TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    revoked_at BIGINT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
