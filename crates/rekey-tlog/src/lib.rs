//! The audit log's public side: what anyone needs to check Rekey's audit log with a public key
//! and nothing else.
//!
//! [`tree`] is RFC 6962 (RFC 9162 §2.1): the hashes of leaves and nodes, the tree head of any
//! size, inclusion and consistency proofs built from the hashes of complete subtrees (which the
//! store keeps), their verification, and the right edge of a growing tree ([`tree::Frontier`]),
//! which is how the writer extends the tree as events are committed.
//!
//! [`checkpoint`] is the C2SP checkpoint text (origin, size, root) a log signs about its head.
//!
//! [`note`] is the C2SP signed-note envelope with Ed25519: key ids, verifier keys, signing with a
//! key the caller holds, and opening a note with a trusted key.
//!
//! [`cosignature`] is a witness's timestamped cosignature of a checkpoint (C2SP
//! `tlog-cosignature`) and the body of the witness protocol's `add-checkpoint` request (C2SP
//! `tlog-witness`).
//!
//! [`tenants`] is the tenant map a checkpoint carries: each tenant's own log, committed so that
//! a tenant can check that the events it was shown are all there are.
//!
//! This crate holds no key and does no I/O: the store, the server and the offline verifier all
//! use the same code.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod cosignature;
pub mod note;
pub mod tenants;
pub mod tree;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use cosignature::AddCheckpoint;
pub use note::{KeyKind, NoteError, VerifierKey};
pub use tree::{empty_root, leaf_hash, node_hash, Frontier, Hash, Node, ProofError};
