//! The audit log's Merkle tree as callers see it: its head, and inclusion and consistency
//! proofs (RFC 6962; docs/audit.md), read from the complete subtrees the store keeps.

use std::convert::Infallible;

use rekey_store::with_tree_nodes;
use rekey_tlog::tree::{consistency_proof, inclusion_proof, root, ProofError};
use rekey_tlog::{Frontier, Hash, Node};
use rekey_types::AuditAction;
use serde::{Deserialize, Serialize};

use crate::kernel::policy::Action;
use crate::{Caller, CoreError, Vault};

/// The head of the audit log's tree at some size.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TreeHeadView {
    /// Leaves: the events `1..=size`.
    pub size: u64,
    /// The RFC 6962 tree head, hex.
    pub root: String,
    /// `audit tree` only: the hashes of the complete subtrees the first `size` leaves
    /// decompose into, largest first, hex (the tree's right edge). With them and the events
    /// after `size`, anyone can compute the head of a larger tree without the earlier events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<Vec<String>>,
}

/// An inclusion proof of one event in the tree of some size.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InclusionView {
    /// The event's sequence number (its leaf is `seq − 1`).
    pub seq: i64,
    /// The event's leaf hash, hex: `SHA-256(0x00 ‖ canonical bytes)`.
    pub leaf: String,
    /// The tree the proof is against.
    pub tree: TreeHeadView,
    /// The proof, deepest sibling first, hex.
    pub proof: Vec<String>,
}

/// A consistency proof between the trees of two sizes.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsistencyView {
    /// The older tree.
    pub old: TreeHeadView,
    /// The newer tree.
    pub new: TreeHeadView,
    /// The proof, hex (empty when the sizes are equal).
    pub proof: Vec<String>,
}

fn head(size: u64, root: Hash) -> TreeHeadView {
    TreeHeadView { size, root: hex::encode(root), edge: None }
}

/// The value of a read that cannot fail (the source holds every node it was asked for).
fn sure<T>(r: Result<T, Infallible>) -> T {
    r.unwrap_or_else(|e| match e {})
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

impl Vault {
    /// The tree's current size, and `size` checked against it (the current size when `None`).
    async fn size_within(&self, size: Option<u64>) -> Result<u64, CoreError> {
        let current = self.store().tree_head().await?.size;
        let size = size.unwrap_or(current);
        if size > current {
            return Err(CoreError::NotFound(format!("a tree of {size} events (the log has {current})")));
        }
        Ok(size)
    }

    /// `audit tree`: the head of the tree of the first `size` events (all of them when `None`).
    pub async fn audit_tree(&self, caller: &Caller, size: Option<u64>) -> Result<TreeHeadView, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadAudit, "audit log")?;
            let size = self.size_within(size).await?;
            let (root, edge) = with_tree_nodes(self.store().as_ref(), |src| {
                let edge: Vec<Hash> = Frontier::edge_nodes(size).into_iter().map(|n| sure(src(n))).collect();
                (sure(root(size, &mut *src)), edge)
            })
            .await?;
            Ok(TreeHeadView { edge: Some(hexes(&edge)), ..head(size, root) })
        }
        .await;
        self.finish(caller, AuditAction::AuditTree, "", result).await
    }

    /// `audit prove SEQ`: the inclusion proof of event `seq` in the tree of `size` events (all
    /// of them when `None`).
    pub async fn audit_inclusion(
        &self,
        caller: &Caller,
        seq: i64,
        size: Option<u64>,
    ) -> Result<InclusionView, CoreError> {
        let resource = format!("seq:{seq}");
        let result = async {
            self.authorize(caller, Action::ReadAudit, "audit log")?;
            let size = self.size_within(size).await?;
            let index = u64::try_from(seq - 1).map_err(|_| CoreError::BadRequest("seq starts at 1".into()))?;
            if index >= size {
                return Err(CoreError::NotFound(format!("event {seq} in a tree of {size} events")));
            }
            // The proof, the leaf and the head from one read of the nodes they need.
            let (proof, leaf, root) = with_tree_nodes(self.store().as_ref(), |src| {
                Ok((
                    inclusion_proof(index, size, &mut *src)?,
                    sure(src(Node { level: 0, index })),
                    sure(root(size, &mut *src)),
                ))
            })
            .await?
            .map_err(|e| CoreError::BadRequest(range(e)))?;
            Ok(InclusionView { seq, leaf: hex::encode(leaf), tree: head(size, root), proof: hexes(&proof) })
        }
        .await;
        self.finish(caller, AuditAction::AuditProve, &resource, result).await
    }

    /// `audit consistency OLD NEW`: the proof that the tree of `old` events is a prefix of the
    /// tree of `new` (all of them when `None`).
    pub async fn audit_consistency(
        &self,
        caller: &Caller,
        old: u64,
        new: Option<u64>,
    ) -> Result<ConsistencyView, CoreError> {
        let resource = format!("size:{old}");
        let result = async {
            self.authorize(caller, Action::ReadAudit, "audit log")?;
            let new = self.size_within(new).await?;
            if old == 0 || old > new {
                return Err(CoreError::BadRequest(format!("the older size must be 1 to {new}")));
            }
            // The proof and both heads from one read of the nodes they need.
            let (proof, old_root, new_root) = with_tree_nodes(self.store().as_ref(), |src| {
                Ok((consistency_proof(old, new, &mut *src)?, sure(root(old, &mut *src)), sure(root(new, &mut *src))))
            })
            .await?
            .map_err(|e| CoreError::BadRequest(range(e)))?;
            Ok(ConsistencyView { old: head(old, old_root), new: head(new, new_root), proof: hexes(&proof) })
        }
        .await;
        self.finish(caller, AuditAction::AuditProve, &resource, result).await
    }
}

fn range(e: ProofError<Infallible>) -> String {
    match e {
        ProofError::Range(why) => why.to_owned(),
        ProofError::Source(e) => match e {},
    }
}
