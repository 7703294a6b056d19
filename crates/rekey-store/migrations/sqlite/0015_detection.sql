-- Detection (docs/detection.md): the alerts the rules over the audit log raise, and the decoy
-- credentials the decoy rule watches. An alert's key names its rule, its principal and the
-- event that raised it, so that servers evaluating the same log store it once.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    principal TEXT NOT NULL,
    source TEXT NOT NULL,
    summary TEXT NOT NULL,
    resources TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    events INTEGER NOT NULL,
    state TEXT NOT NULL,
    action TEXT NOT NULL,
    action_outcome TEXT,
    handled_by TEXT,
    handled_at INTEGER,
    note TEXT,
    incident_id TEXT,
    notify_attempts INTEGER NOT NULL DEFAULT 0,
    notified_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX alerts_created ON alerts (created_at);
CREATE INDEX alerts_unnotified ON alerts (created_at) WHERE notified_at IS NULL;

CREATE TABLE decoys (
    credential_id TEXT PRIMARY KEY REFERENCES credentials (id),
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    planted_by TEXT NOT NULL,
    planted_at INTEGER NOT NULL
);
CREATE INDEX decoys_tenant ON decoys (tenant_id);

-- Threat feeds: the indicators each feed lists now (an address block or a certificate hash per
-- row), and how far each TAXII collection was read (its added_after).
CREATE TABLE feed_indicators (
    feed TEXT NOT NULL,
    stix_id TEXT NOT NULL,
    value TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    modified INTEGER NOT NULL,
    valid_from INTEGER NOT NULL,
    valid_until INTEGER,
    PRIMARY KEY (feed, stix_id, value)
);

CREATE TABLE feed_state (
    feed TEXT PRIMARY KEY,
    added_after TEXT,
    polled_at INTEGER NOT NULL
);

-- The baseline rule's memory: per token, its first read, the UTC hours it reads in (a bit each)
-- and its busiest minute.
CREATE TABLE baselines (
    principal TEXT PRIMARY KEY,
    first_at INTEGER NOT NULL,
    hours INTEGER NOT NULL,
    busiest INTEGER NOT NULL
);
