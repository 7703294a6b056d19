//! Rows of key custody: tenant KEKs, root key versions, the Shamir keyring, key jobs, the
//! wrapped DEKs they move, and issued certificates.

use rekey_types::{CertState, CredentialId, CredentialKind, JobId, JobState, KeyState, TenantId, Timestamp};

#[derive(Clone, PartialEq, Eq)]
pub struct KekRow {
    pub tenant_id: TenantId,
    pub version: u32,
    pub state: KeyState,
    /// The KEK wrapped by the root key.
    pub wrapped: Vec<u8>,
    pub root_version: u32,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootKeyRow {
    pub version: u32,
    pub state: KeyState,
    pub created_at: Timestamp,
    pub changed_at: Timestamp,
}

/// The Shamir seal's keyring as stored (`slot` is `active` or `pending`).
#[derive(Clone)]
pub struct SealKeyringRow {
    pub slot: String,
    pub set_id: Vec<u8>,
    pub shares: u8,
    pub threshold: u8,
    pub blob: Vec<u8>,
    /// The split's share commitments (see `rekey_crypto::ShareCommitment`); none for a split
    /// made before they were kept.
    pub commitments: Option<Vec<u8>>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyJobRow {
    pub id: JobId,
    /// `tenant`, `all` or `root`.
    pub scope: String,
    pub tenant_id: Option<TenantId>,
    /// `rotate` or `compromise`.
    pub reason: String,
    /// `running`, `done` or `failed`.
    pub state: JobState,
    pub total: i64,
    pub done: i64,
    pub created_by: String,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
}

/// A wrapped DEK to move to another KEK version, with what its slot needs.
#[derive(Clone)]
pub struct DekRow {
    pub tenant_id: TenantId,
    pub credential_id: CredentialId,
    pub kind: CredentialKind,
    pub version: u32,
    pub kek_version: u32,
    pub wrapped_dek: Vec<u8>,
}

/// One rewrapped DEK. Applied only if the row is still under `from_kek`.
#[derive(Clone)]
pub struct DekUpdate {
    pub credential_id: CredentialId,
    pub version: u32,
    pub from_kek: u32,
    pub to_kek: u32,
    pub wrapped_dek: Vec<u8>,
}

/// One KEK (or system key, with `tenant_id` `None`) rewrapped under another root version.
#[derive(Clone)]
pub struct RootRewrap {
    pub tenant_id: Option<TenantId>,
    /// The system key's purpose when `tenant_id` is `None`.
    pub purpose: String,
    pub version: u32,
    pub from_root: u32,
    pub to_root: u32,
    pub wrapped: Vec<u8>,
}

/// How many credential versions one KEK version wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DekCount {
    pub tenant_id: TenantId,
    pub kek_version: u32,
    pub count: i64,
}

/// A credential version that a key version wraps (what destroying it would make unrecoverable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedBy {
    pub tenant: String,
    pub credential: String,
    pub version: u32,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    /// Hex, lowercase.
    pub sha256: String,
    /// Hex, lowercase; the `x5t` of JWT headers in base64url.
    pub sha1: String,
    pub public_key_sha256: String,
    pub tenant_id: TenantId,
    pub tenant: String,
    pub credential_id: CredentialId,
    pub credential: String,
    pub credential_version: u32,
    pub subject: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// `active` or `revoked`.
    pub state: CertState,
    pub pem: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}
