//! RFC 6962 Merkle trees (RFC 9162 §2.1): leaf and node hashes, the tree head, inclusion and
//! consistency proofs, and their verification.
//!
//! A proof is built from the hashes of *complete* subtrees, [`Node`]s: `2^level` leaves starting
//! at leaf `index << level`. Every node a proof needs is either complete or lies on the tree's
//! right edge, and a right-edge node is folded from complete ones here, so a source of complete
//! subtrees (the store's table, or a test's vector) is all a proof needs, and it needs
//! `O(log n)` of them. Building a proof asks the source through a closure; calling the builder
//! once with a closure that records what it is asked for gives the list to fetch in one go.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash of a leaf: `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The head of the empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A complete subtree: the `2^level` leaves from `index << level`. Level 0 is a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    /// The subtree's height.
    pub level: u8,
    /// Its position among the subtrees of that height, from the left.
    pub index: u64,
}

/// Why a proof cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError<E> {
    /// The sizes or index do not make a proof: an index outside the tree, an older size larger
    /// than the newer one, a size of 0.
    Range(&'static str),
    /// The source of subtree hashes failed.
    Source(E),
}

impl<E: std::fmt::Display> std::fmt::Display for ProofError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProofError::Range(why) => f.write_str(why),
            ProofError::Source(e) => write!(f, "reading the tree: {e}"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for ProofError<E> {}

/// The largest power of two strictly below `n` (RFC 6962's split point; `n` ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[lo:hi]): a complete subtree straight from the source, a right-edge one folded from the
/// complete subtrees it is made of.
fn subtree<E>(lo: u64, hi: u64, node: &mut impl FnMut(Node) -> Result<Hash, E>) -> Result<Hash, E> {
    let n = hi - lo;
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        let level = n.trailing_zeros();
        return node(Node { level: level as u8, index: lo >> level });
    }
    let k = split(n);
    let left = subtree(lo, lo + k, node)?;
    let right = subtree(lo + k, hi, node)?;
    Ok(node_hash(&left, &right))
}

/// The head of the tree of the first `size` leaves.
pub fn root<E>(size: u64, mut node: impl FnMut(Node) -> Result<Hash, E>) -> Result<Hash, E> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree(0, size, &mut node)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 6962 PATH), deepest
/// sibling first.
pub fn inclusion_proof<E>(
    index: u64,
    size: u64,
    mut node: impl FnMut(Node) -> Result<Hash, E>,
) -> Result<Vec<Hash>, ProofError<E>> {
    if index >= size {
        return Err(ProofError::Range("the leaf is not in a tree of that size"));
    }
    let mut proof = Vec::new();
    path(index, 0, size, &mut node, &mut proof).map_err(ProofError::Source)?;
    Ok(proof)
}

fn path<E>(
    m: u64,
    lo: u64,
    hi: u64,
    node: &mut impl FnMut(Node) -> Result<Hash, E>,
    out: &mut Vec<Hash>,
) -> Result<(), E> {
    if hi - lo == 1 {
        return Ok(());
    }
    let k = split(hi - lo);
    if m < lo + k {
        path(m, lo, lo + k, node, out)?;
        out.push(subtree(lo + k, hi, node)?);
    } else {
        path(m, lo + k, hi, node, out)?;
        out.push(subtree(lo, lo + k, node)?);
    }
    Ok(())
}

/// The consistency proof between the trees of `old` and `new` leaves (RFC 6962 PROOF): empty
/// when they are the same size.
pub fn consistency_proof<E>(
    old: u64,
    new: u64,
    mut node: impl FnMut(Node) -> Result<Hash, E>,
) -> Result<Vec<Hash>, ProofError<E>> {
    if old == 0 || old > new {
        return Err(ProofError::Range("a consistency proof needs 0 < old size ≤ new size"));
    }
    let mut proof = Vec::new();
    if old < new {
        subproof(old, 0, new, true, &mut node, &mut proof).map_err(ProofError::Source)?;
    }
    Ok(proof)
}

fn subproof<E>(
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    node: &mut impl FnMut(Node) -> Result<Hash, E>,
    out: &mut Vec<Hash>,
) -> Result<(), E> {
    if m == hi {
        if !whole {
            out.push(subtree(lo, hi, node)?);
        }
        return Ok(());
    }
    let k = split(hi - lo);
    if m <= lo + k {
        subproof(m, lo, lo + k, whole, node, out)?;
        out.push(subtree(lo + k, hi, node)?);
    } else {
        subproof(m, lo + k, hi, false, node, out)?;
        out.push(subtree(lo, lo + k, node)?);
    }
    Ok(())
}

/// The complete subtrees a proof or a tree head will ask its source for, in the order asked
/// (so that a store can read them in one query first): run `build` with a recording source.
pub fn nodes_needed<T>(
    build: impl FnOnce(&mut dyn FnMut(Node) -> Result<Hash, std::convert::Infallible>) -> T,
) -> Vec<Node> {
    let mut asked = Vec::new();
    let mut record = |n: Node| -> Result<Hash, std::convert::Infallible> {
        asked.push(n);
        Ok([0; 32])
    };
    let _ = build(&mut record);
    asked
}

/// Whether `proof` shows that `leaf` (a leaf hash) is leaf `index` of the tree of `size` leaves
/// whose head is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// Whether `proof` shows that the tree of `old` leaves with head `old_root` is a prefix of the
/// tree of `new` leaves with head `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    let Some((&first, rest)) = proof.split_first() else {
        return false;
    };
    // When the old tree is complete, its head is the proof's implicit first node.
    let (seed, rest) = if old.is_power_of_two() { (*old_root, proof) } else { (first, rest) };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &fr == old_root && &sr == new_root
}

/// The right edge of a growing tree: the complete subtrees that the leaves so far decompose
/// into, largest first. Appending a leaf gives the complete subtrees it completes (the leaf
/// itself included), which is what a store keeps to answer proofs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, the largest subtree first.
    edge: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The complete subtrees a tree of `size` leaves decomposes into, largest first: what
    /// [`Frontier::from_edge`] takes.
    pub fn edge_nodes(size: u64) -> Vec<Node> {
        let mut nodes = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size >> level & 1 == 1 {
                nodes.push(Node { level, index: start >> level });
                start += 1 << level;
            }
        }
        nodes
    }

    /// The frontier of a tree of `size` leaves, from the hashes of [`Frontier::edge_nodes`].
    pub fn from_edge(size: u64, edge: Vec<Hash>) -> Option<Self> {
        (edge.len() == size.count_ones() as usize).then_some(Self { size, edge })
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The hashes of [`Frontier::edge_nodes`] of its size, largest subtree first.
    pub fn edge(&self) -> &[Hash] {
        &self.edge
    }

    /// Appends the leaf with hash `leaf`; answers the complete subtrees it completes, the leaf
    /// first and the largest last.
    pub fn push(&mut self, leaf: Hash) -> Vec<(Node, Hash)> {
        let mut done = vec![(Node { level: 0, index: self.size }, leaf)];
        let mut hash = leaf;
        let mut node = Node { level: 0, index: self.size };
        while node.index & 1 == 1 {
            let left = self.edge.pop().expect("an odd index has a left sibling on the edge");
            hash = node_hash(&left, &hash);
            node = Node { level: node.level + 1, index: node.index >> 1 };
            done.push((node, hash));
        }
        self.edge.push(hash);
        self.size += 1;
        done
    }

    /// The tree head.
    pub fn root(&self) -> Hash {
        let mut iter = self.edge.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::convert::Infallible;

    use proptest::prelude::*;

    use super::*;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// Every complete subtree of a tree, as a store would keep them.
    struct Memory(BTreeMap<Node, Hash>, u64);

    impl Memory {
        fn of(leaves: &[Hash]) -> Self {
            let mut f = Frontier::new();
            let mut nodes = BTreeMap::new();
            for l in leaves {
                nodes.extend(f.push(*l));
            }
            Memory(nodes, leaves.len() as u64)
        }

        fn source(&self) -> impl FnMut(Node) -> Result<Hash, Infallible> + '_ {
            |n| Ok(*self.0.get(&n).unwrap_or_else(|| panic!("{n:?} is not complete in a tree of {}", self.1)))
        }
    }

    /// The transparency-dev / RFC 6962 reference leaves.
    fn reference() -> Vec<Hash> {
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
            .iter()
            .map(|d| leaf_hash(&hex::decode(d).unwrap()))
            .collect()
    }

    #[test]
    fn heads_match_the_reference() {
        let roots = [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = reference();
        let memory = Memory::of(&leaves);
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), h(roots[0]));
        for (size, want) in roots.iter().enumerate() {
            assert_eq!(root(size as u64, memory.source()).unwrap(), h(want), "size {size}");
            if size > 0 {
                frontier.push(leaves[size - 1]);
                assert_eq!(frontier.root(), h(want), "frontier at size {size}");
            }
        }
    }

    #[test]
    fn proofs_match_the_reference() {
        let memory = Memory::of(&reference());
        let inclusion: [(u64, &[&str]); 2] = [
            (
                0,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (index, want) in inclusion {
            let got = inclusion_proof(index, 8, memory.source()).unwrap();
            assert_eq!(got, want.iter().map(|s| h(s)).collect::<Vec<_>>(), "inclusion of {index} in 8");
        }
        let consistency: [(u64, u64, &[&str]); 4] = [
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                2,
                8,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in consistency {
            let got = consistency_proof(old, new, memory.source()).unwrap();
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(got, want, "consistency {old} → {new}");
            let (r1, r2) = (root(old, memory.source()).unwrap(), root(new, memory.source()).unwrap());
            assert!(verify_consistency(old, new, &r1, &r2, &got), "{old} → {new} verifies");
        }
    }

    #[test]
    fn bad_ranges_are_refused() {
        let memory = Memory::of(&reference());
        assert!(matches!(inclusion_proof(8, 8, memory.source()), Err(ProofError::Range(_))));
        assert!(matches!(consistency_proof(0, 8, memory.source()), Err(ProofError::Range(_))));
        assert!(matches!(consistency_proof(5, 4, memory.source()), Err(ProofError::Range(_))));
        assert_eq!(consistency_proof(8, 8, memory.source()).unwrap(), Vec::<Hash>::new());
    }

    #[test]
    fn a_proof_reads_few_nodes_and_says_which() {
        // A tree of a million leaves: a proof asks for at most two nodes per level.
        let size = 1_000_003;
        let asked = nodes_needed(|src| inclusion_proof(123_456, size, src));
        assert!(asked.len() <= 2 * 21, "{} nodes", asked.len());
        let asked = nodes_needed(|src| consistency_proof(777_777, size, src));
        assert!(asked.len() <= 2 * 21, "{} nodes", asked.len());
        for n in asked {
            let span = 1u64 << n.level;
            assert!((n.index + 1) * span <= size, "{n:?} is complete");
        }
    }

    #[test]
    fn the_frontier_restarts_from_its_edge() {
        let leaves: Vec<Hash> = (0..300u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let memory = Memory::of(&leaves);
        for size in [0u64, 1, 2, 3, 7, 8, 255, 256, 299] {
            let edge = Frontier::edge_nodes(size).into_iter().map(|n| memory.0[&n]).collect();
            let mut f = Frontier::from_edge(size, edge).unwrap();
            for l in &leaves[size as usize..] {
                f.push(*l);
            }
            assert_eq!(f.root(), root(300, memory.source()).unwrap(), "restarted at {size}");
        }
        assert!(Frontier::from_edge(3, vec![[0; 32]]).is_none());
    }

    fn flip(proof: &mut [Hash], which: usize, bit: usize) {
        proof[which][bit / 8] ^= 1 << (bit % 8);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn every_inclusion_proof_verifies_and_no_altered_one_does(
            size in 1u64..300, pick in any::<u64>(), which in any::<usize>(), bit in 0usize..256
        ) {
            let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_le_bytes())).collect();
            let memory = Memory::of(&leaves);
            let index = pick % size;
            let head = root(size, memory.source()).unwrap();
            let mut proof = inclusion_proof(index, size, memory.source()).unwrap();
            prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &proof, &head));
            // (A size is checked together with its head, as a checkpoint signs both: the same
            // path can fit a larger size with the same head, which proves nothing new.)
            prop_assert!(!verify_inclusion(index, size, &leaves[index as usize], &proof, &leaf_hash(b"other head")));
            if size > 1 {
                let other = (index + 1) % size;
                prop_assert!(!verify_inclusion(other, size, &leaves[index as usize], &proof, &head));
                let which = which % proof.len();
                flip(&mut proof, which, bit);
                prop_assert!(!verify_inclusion(index, size, &leaves[index as usize], &proof, &head));
            }
        }

        #[test]
        fn every_consistency_proof_verifies_and_no_altered_one_does(
            new in 1u64..300, pick in any::<u64>(), which in any::<usize>(), bit in 0usize..256
        ) {
            let leaves: Vec<Hash> = (0..new).map(|i| leaf_hash(&i.to_le_bytes())).collect();
            let memory = Memory::of(&leaves);
            let old = pick % new + 1;
            let (r1, r2) = (root(old, memory.source()).unwrap(), root(new, memory.source()).unwrap());
            let mut proof = consistency_proof(old, new, memory.source()).unwrap();
            prop_assert!(verify_consistency(old, new, &r1, &r2, &proof));
            if old < new {
                prop_assert!(!verify_consistency(old, new, &r2, &r1, &proof));
                prop_assert!(!verify_consistency(old, new, &r1, &leaf_hash(b"other head"), &proof));
                let which = which % proof.len();
                flip(&mut proof, which, bit);
                prop_assert!(!verify_consistency(old, new, &r1, &r2, &proof));
            }
        }
    }
}
