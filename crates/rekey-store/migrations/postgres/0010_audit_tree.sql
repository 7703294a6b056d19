-- The audit log's Merkle tree (RFC 6962; docs/audit.md), written in the transaction that writes
-- the events: each event's leaf hash beside it, the complete subtrees of levels 8, 16, 24, …
-- in audit_tree (a node between them is folded from at most 128 of the level below), and the
-- tree's right edge (one hash per set bit of its size, largest first) in audit_head. Events
-- stored before this migration are hashed in when the store opens.
ALTER TABLE audit_events ADD COLUMN leaf BYTEA;
CREATE TABLE audit_tree (
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
ALTER TABLE audit_head ADD COLUMN tree_size BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_head ADD COLUMN tree_edge BYTEA NOT NULL DEFAULT '\x'::bytea;
