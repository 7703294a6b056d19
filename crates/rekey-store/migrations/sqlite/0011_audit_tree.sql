-- The audit log's Merkle tree (RFC 6962; docs/audit.md), written in the transaction that writes
-- the events: each event's leaf hash beside it, the complete subtrees of levels 8, 16, 24, …
-- in audit_tree (a node between them is folded from at most 128 of the level below), and the
-- tree's right edge (one hash per set bit of its size, largest first) in audit_head. Events
-- stored before this migration are hashed in when the store opens.
ALTER TABLE audit_events ADD COLUMN leaf BLOB;
CREATE TABLE audit_tree (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
ALTER TABLE audit_head ADD COLUMN tree_size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_head ADD COLUMN tree_edge BLOB NOT NULL DEFAULT x'';
