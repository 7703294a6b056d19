//! Building anything over the audit log's Merkle tree (a head, a proof, several at once) from
//! the complete subtrees the store keeps: the nodes the build asks for are listed first
//! (`rekey_tlog::tree::nodes_needed`), read in one call, then the build runs on them.

use std::collections::BTreeMap;
use std::convert::Infallible;

use rekey_tlog::tree::nodes_needed;
use rekey_tlog::{Hash, Node};

use crate::{Store, StoreError};

/// A source of subtree hashes, as `rekey_tlog`'s builders take one.
pub type NodeSource<'a> = &'a mut dyn FnMut(Node) -> Result<Hash, Infallible>;

/// Runs `build` on the subtree hashes it needs, read from `store` in one call.
pub async fn with_tree_nodes<T>(store: &dyn Store, build: impl Fn(NodeSource<'_>) -> T) -> Result<T, StoreError> {
    let needed = nodes_needed(&build);
    let hashes = store.tree_nodes(needed.clone()).await?;
    let known: BTreeMap<Node, Hash> = needed.into_iter().zip(hashes).collect();
    Ok(build(&mut |n| Ok(known[&n])))
}
