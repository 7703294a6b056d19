//! The audit log's Merkle tree (`rekey_tlog::tree`), kept beside the events: each event's leaf
//! hash in its row, the complete subtrees of every eighth level (8, 16, …) in `audit_tree`, and
//! the right edge in `audit_head`. Written in the transaction that writes the events; a node of
//! another level is folded from at most 128 stored ones, so a proof reads `O(log n)` ranges.

use rekey_tlog::{leaf_hash, node_hash, Frontier, Hash, Node};
use rekey_types::AuditRecord;

use super::{all, begin_write, corrupt, finish};
use crate::conn::{args, Conn};
use crate::model::TreeHead;
use crate::sql::Backend;
use crate::StoreError;

/// Levels kept in `audit_tree` are the multiples of this (level 0 is the events' `leaf`).
const STRIDE: u8 = 8;

/// Events hashed in per transaction when a store written before the tree opens.
const GROW_CHUNK: i64 = 5_000;

/// The hash of an event's leaf: its canonical bytes (the ones its chain MAC covers).
pub(crate) fn leaf_of(record: &AuditRecord) -> Hash {
    leaf_hash(&record.canonical_bytes())
}

fn hash_of(bytes: Vec<u8>, what: &str) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| corrupt(what))
}

/// The tree's size and right edge, as `audit_head` holds them (locked on PostgreSQL by the
/// caller's `FOR UPDATE` when it is about to extend it).
pub(crate) fn frontier_of(size: i64, edge: Vec<u8>) -> Result<Frontier, StoreError> {
    if !edge.len().is_multiple_of(32) {
        return Err(corrupt("audit_head.tree_edge"));
    }
    let hashes = edge.chunks(32).map(|c| c.try_into().expect("32-byte chunks")).collect();
    Frontier::from_edge(u64::try_from(size).map_err(|_| corrupt("audit_head.tree_size"))?, hashes)
        .ok_or_else(|| corrupt("audit_head.tree_edge"))
}

/// The edge as `audit_head` stores it.
pub(crate) fn edge_bytes(frontier: &Frontier) -> Vec<u8> {
    frontier.edge().concat()
}

/// Appends leaves to the frontier; answers the nodes to keep in `audit_tree`.
pub(crate) fn extend(frontier: &mut Frontier, leaves: &[Hash]) -> Vec<(Node, Hash)> {
    let mut kept = Vec::new();
    for leaf in leaves {
        kept.extend(frontier.push(*leaf).into_iter().filter(|(n, _)| n.level > 0 && n.level.is_multiple_of(STRIDE)));
    }
    kept
}

/// Stores the kept nodes.
pub(crate) async fn store_nodes<C: Conn>(c: &mut C, nodes: &[(Node, Hash)]) -> Result<(), StoreError> {
    for (node, hash) in nodes {
        c.exec(
            "INSERT INTO audit_tree (level, idx, hash) VALUES ($1, $2, $3)",
            args![i64::from(node.level), node.index as i64, hash.to_vec()],
        )
        .await?;
    }
    Ok(())
}

/// The tree's size and head.
pub(crate) async fn tree_head<C: Conn>(c: &mut C) -> Result<TreeHead, StoreError> {
    let row = c
        .query_opt("SELECT tree_size, tree_edge FROM audit_head WHERE id = 1", vec![])
        .await?
        .ok_or_else(|| corrupt("audit_head"))?;
    let frontier = frontier_of(row.int("tree_size")?, row.blob("tree_edge")?)?;
    Ok(TreeHead { size: frontier.size(), root: frontier.root() })
}

/// One complete subtree's hash: stored, or folded from the stored level below it.
pub(crate) async fn tree_node<C: Conn>(c: &mut C, node: Node) -> Result<Hash, StoreError> {
    let base = node.level - node.level % STRIDE;
    let span = 1u64 << (node.level - base);
    let first = node.index.checked_mul(span).ok_or_else(|| corrupt("audit tree node"))?;
    let (first, end) = (first as i64, (first + span) as i64);
    let rows = if base == 0 {
        c.query("SELECT leaf FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq", args![first, end]).await?
    } else {
        c.query(
            "SELECT hash AS leaf FROM audit_tree WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
            args![i64::from(base), first, end],
        )
        .await?
    };
    let mut level: Vec<Hash> = all(rows, |r| hash_of(r.blob("leaf")?, "audit tree hash"))?;
    if level.len() as u64 != span {
        return Err(StoreError::NotFound { entity: "audit tree node", id: format!("{}/{}", node.level, node.index) });
    }
    while level.len() > 1 {
        level = level.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    Ok(level[0])
}

/// Several nodes, in the order asked.
pub(crate) async fn tree_nodes<C: Conn>(c: &mut C, nodes: Vec<Node>) -> Result<Vec<Hash>, StoreError> {
    let mut hashes = Vec::with_capacity(nodes.len());
    for node in nodes {
        hashes.push(tree_node(c, node).await?);
    }
    Ok(hashes)
}

/// Hashes into the tree the events a store holds beyond it (a store written before the tree, or
/// by a release that did not keep it), a chunk per transaction. Run when the store opens.
pub(crate) async fn grow<C: Conn>(c: &mut C) -> Result<u64, StoreError> {
    let mut grown = 0;
    loop {
        begin_write(c).await?;
        let step = async {
            let lock = match c.backend() {
                Backend::Postgres => "SELECT seq, tree_size, tree_edge FROM audit_head WHERE id = 1 FOR UPDATE",
                Backend::Sqlite => "SELECT seq, tree_size, tree_edge FROM audit_head WHERE id = 1",
            };
            let head = c.query_opt(lock, vec![]).await?.ok_or_else(|| corrupt("audit_head"))?;
            let seq = head.int("seq")?;
            let mut frontier = frontier_of(head.int("tree_size")?, head.blob("tree_edge")?)?;
            let from = frontier.size() as i64;
            if from >= seq {
                return Ok(0);
            }
            let rows = c
                .query(
                    "SELECT seq, time, principal, action, resource, outcome, source, request_id, detail, mac \
                     FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                    args![from, (from + GROW_CHUNK).min(seq)],
                )
                .await?;
            let events = all(rows, super::audit::audit_row)?;
            let mut leaves = Vec::with_capacity(events.len());
            for (i, e) in events.iter().enumerate() {
                if e.record.seq != from + 1 + i as i64 {
                    return Err(corrupt("audit_events: a sequence number is missing"));
                }
                let leaf = leaf_of(&e.record);
                c.exec("UPDATE audit_events SET leaf = $1 WHERE seq = $2", args![leaf.to_vec(), e.record.seq]).await?;
                leaves.push(leaf);
            }
            let nodes = extend(&mut frontier, &leaves);
            store_nodes(c, &nodes).await?;
            c.exec(
                "UPDATE audit_head SET tree_size = $1, tree_edge = $2 WHERE id = 1",
                args![frontier.size() as i64, edge_bytes(&frontier)],
            )
            .await?;
            Ok(leaves.len() as u64)
        }
        .await;
        let n = finish(c, step).await?;
        if n == 0 {
            return Ok(grown);
        }
        grown += n;
    }
}
