//! The tenant map: a commitment, in each checkpoint, to every tenant's own log, so that a tenant
//! shown its events can check that none was left out.
//!
//! A tenant's log is the subsequence of the audit log's leaves whose events are about it (see
//! `rekey_types::audit::tenant_of`), in order, hashed as an RFC 6962 tree of its own (the same
//! leaf hashes). The map is an RFC 6962 tree over one leaf per tenant, sorted by the bytes of
//! the tenant's name, each `SHA-256(0x00 ‖ "rekey-tenant-v1" ‖ u32 BE length ‖ name ‖ u64 BE
//! size ‖ root)`. A checkpoint carries the map as the extension line
//! `rekey-tenants <tenants> <map root, base64>`.

use std::convert::Infallible;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::tree::{leaf_hash, node_hash};
use crate::{Hash, Node};

/// The first word of the checkpoint extension line that carries the map.
pub const EXTENSION: &str = "rekey-tenants";

/// One tenant's log as the map holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLog {
    /// The tenant's name.
    pub name: String,
    /// Events about it.
    pub size: u64,
    /// The RFC 6962 head of the tree of their leaves.
    pub root: Hash,
}

/// The map's leaf of a tenant's log.
pub fn map_leaf(log: &TenantLog) -> Hash {
    let mut bytes = Vec::with_capacity(64 + log.name.len());
    bytes.extend_from_slice(b"rekey-tenant-v1");
    bytes.extend_from_slice(&(log.name.len() as u32).to_be_bytes());
    bytes.extend_from_slice(log.name.as_bytes());
    bytes.extend_from_slice(&log.size.to_be_bytes());
    bytes.extend_from_slice(&log.root);
    leaf_hash(&bytes)
}

/// A source of complete-subtree hashes over leaves held in memory (for the map, and a tenant's
/// own log), as the proof builders of [`crate::tree`] take one.
pub fn memory_source(leaves: &[Hash]) -> impl FnMut(Node) -> Result<Hash, Infallible> + '_ {
    fn subtree(leaves: &[Hash]) -> Hash {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let half = leaves.len() / 2;
        node_hash(&subtree(&leaves[..half]), &subtree(&leaves[half..]))
    }
    move |n: Node| {
        let width = 1usize << n.level;
        let start = n.index as usize * width;
        Ok(subtree(&leaves[start..start + width]))
    }
}

/// The extension line of a map of `tenants` tenants with head `root`.
pub fn extension_line(tenants: u64, root: &Hash) -> String {
    format!("{EXTENSION} {tenants} {}", STANDARD.encode(root))
}

/// The map a checkpoint's extension lines carry, if one does: `(tenants, root)`.
pub fn from_extensions(lines: &[String]) -> Option<(u64, Hash)> {
    lines.iter().find_map(|l| {
        let mut parts = l.strip_prefix(EXTENSION)?.strip_prefix(' ')?.split(' ');
        let (n, root, None) = (parts.next()?, parts.next()?, parts.next()) else { return None };
        let n = n.parse().ok().filter(|_| n == "0" || !n.starts_with('0'))?;
        Some((n, STANDARD.decode(root).ok()?.try_into().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{inclusion_proof, root, verify_inclusion};
    use crate::Frontier;

    #[test]
    fn the_memory_source_gives_the_frontier_head_and_proofs_verify() {
        for n in [1usize, 2, 3, 7, 8, 100] {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&[i as u8])).collect();
            let mut f = Frontier::new();
            leaves.iter().for_each(|l| drop(f.push(*l)));
            let head = root(n as u64, memory_source(&leaves)).unwrap();
            assert_eq!(head, f.root(), "{n}");
            for i in 0..n as u64 {
                let proof = inclusion_proof(i, n as u64, memory_source(&leaves)).unwrap();
                assert!(verify_inclusion(i, n as u64, &leaves[i as usize], &proof, &head));
            }
        }
    }

    #[test]
    fn leaves_bind_name_size_and_root_and_the_line_round_trips() {
        let a = TenantLog { name: "acme".into(), size: 3, root: [1; 32] };
        assert_ne!(map_leaf(&a), map_leaf(&TenantLog { size: 4, ..a.clone() }));
        assert_ne!(map_leaf(&a), map_leaf(&TenantLog { root: [2; 32], ..a.clone() }));
        assert_ne!(map_leaf(&a), map_leaf(&TenantLog { name: "acmf".into(), ..a.clone() }));
        let line = extension_line(12, &[7; 32]);
        assert_eq!(from_extensions(&["other".into(), line]), Some((12, [7; 32])));
        assert_eq!(from_extensions(&["rekey-tenants 012 AAAA".into()]), None);
        assert_eq!(from_extensions(&[]), None);
    }
}
