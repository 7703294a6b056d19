-- Signed checkpoints of the audit log's tree (docs/audit.md): the C2SP note as signed, its size
-- and root for comparison, when it was signed, and for a checkpoint signed after an operator
-- accepted a shorter or different log, the reason given. Witnesses' cosignatures beside them.
-- Checkpoints are statements about the log, not events of it: they are signed, so a row a
-- database writer forges does not verify.
CREATE TABLE audit_checkpoints (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    size BIGINT NOT NULL,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    signed_at BIGINT NOT NULL,
    accepted TEXT
);
CREATE TABLE audit_cosignatures (
    checkpoint BIGINT NOT NULL REFERENCES audit_checkpoints (id),
    witness TEXT NOT NULL,
    line TEXT NOT NULL,
    time BIGINT NOT NULL,
    PRIMARY KEY (checkpoint, witness)
);
-- How far each SIEM sink has been sent (docs/audit.md, "SIEM export"): the last sequence number
-- it acknowledged. Advanced only after a batch was delivered, so a crash resends, never skips.
CREATE TABLE siem_cursors (
    sink TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);
-- Each tenant's own log (docs/audit.md, "The tenant map"): the right edge of the tree of the
-- leaves of the events about it, advanced by the checkpoint job up to tenant_log_state.upto.
CREATE TABLE tenant_logs (
    tenant TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    edge BYTEA NOT NULL
);
CREATE TABLE tenant_log_state (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    upto BIGINT NOT NULL
);
INSERT INTO tenant_log_state (id, upto) VALUES (1, 0);
