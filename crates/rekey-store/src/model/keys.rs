//! Rows of key custody: tenant KEKs, root key versions, the Shamir keyring, key jobs, the
//! wrapped DEKs they move, and issued certificates.

use rekey_types::{CertState, CredentialId, CredentialKind, JobId, JobState, KeyState, TenantId, Timestamp};

/// A version of a tenant's key-encryption key, wrapped by the root key.
#[derive(Clone, PartialEq, Eq)]
pub struct KekRow {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its version.
    pub version: u32,
    /// Its state.
    pub state: KeyState,
    /// The KEK wrapped by the root key.
    pub wrapped: Vec<u8>,
    /// The root key version that wraps it.
    pub root_version: u32,
    /// When it was made.
    pub created_at: Timestamp,
}

/// A root key version (the key itself is in the seal, never here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootKeyRow {
    /// Its version.
    pub version: u32,
    /// Its state.
    pub state: KeyState,
    /// When it was made.
    pub created_at: Timestamp,
    /// When its state last changed.
    pub changed_at: Timestamp,
}

/// The Shamir seal's keyring as stored (`slot` is `active` or `pending`).
#[derive(Clone)]
pub struct SealKeyringRow {
    /// `active` or `pending`.
    pub slot: String,
    /// The key set's id.
    pub set_id: Vec<u8>,
    /// Shares in the split.
    pub shares: u8,
    /// Shares needed.
    pub threshold: u8,
    /// The root keyring, encrypted under the key the shares rebuild.
    pub blob: Vec<u8>,
    /// The split's share commitments (see `rekey_crypto::ShareCommitment`); none for a split
    /// made before they were kept.
    pub commitments: Option<Vec<u8>>,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// A key job: a rotation or rewrap that survives restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyJobRow {
    /// Its id.
    pub id: JobId,
    /// `tenant`, `all` or `root`.
    pub scope: String,
    /// The tenant, for a tenant's rotation.
    pub tenant_id: Option<TenantId>,
    /// `rotate` or `compromise`.
    pub reason: String,
    /// `running`, `done` or `failed`.
    pub state: JobState,
    /// Items to do.
    pub total: i64,
    /// Items done.
    pub done: i64,
    /// Who started it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A wrapped DEK to move to another KEK version, with what its slot needs.
#[derive(Clone)]
pub struct DekRow {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its credential.
    pub credential_id: CredentialId,
    /// The credential's kind.
    pub kind: CredentialKind,
    /// The version.
    pub version: u32,
    /// The tenant key version that wraps it now.
    pub kek_version: u32,
    /// The wrapped data key.
    pub wrapped_dek: Vec<u8>,
}

/// One rewrapped DEK. Applied only if the row is still under `from_kek`.
#[derive(Clone)]
pub struct DekUpdate {
    /// Its credential.
    pub credential_id: CredentialId,
    /// The version.
    pub version: u32,
    /// The tenant key version it was under.
    pub from_kek: u32,
    /// The tenant key version it is under now.
    pub to_kek: u32,
    /// The data key, wrapped by `to_kek`.
    pub wrapped_dek: Vec<u8>,
}

/// One KEK (or system key, with `tenant_id` `None`) rewrapped under another root version.
#[derive(Clone)]
pub struct RootRewrap {
    /// The tenant (`None`: a system key).
    pub tenant_id: Option<TenantId>,
    /// The system key's purpose when `tenant_id` is `None`.
    pub purpose: String,
    /// The key's version.
    pub version: u32,
    /// The root version it was under.
    pub from_root: u32,
    /// The root version it is under now.
    pub to_root: u32,
    /// The key, wrapped by `to_root`.
    pub wrapped: Vec<u8>,
}

/// How many credential versions one KEK version wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DekCount {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its key version.
    pub kek_version: u32,
    /// Credential versions it wraps.
    pub count: i64,
}

/// A credential version that a key version wraps (what destroying it would make unrecoverable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedBy {
    /// The tenant's name.
    pub tenant: String,
    /// The credential's name.
    pub credential: String,
    /// The version.
    pub version: u32,
    /// Whether the credential was deleted.
    pub deleted: bool,
}

/// An application certificate: its thumbprints, owner and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    /// Hex, lowercase.
    pub sha256: String,
    /// Hex, lowercase; the `x5t` of JWT headers in base64url.
    pub sha1: String,
    /// SHA-256 of its public key, hex (certificates with the same key share it).
    pub public_key_sha256: String,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The tenant's name.
    pub tenant: String,
    /// The credential it authenticates.
    pub credential_id: CredentialId,
    /// The credential's name.
    pub credential: String,
    /// The credential version that holds its key.
    pub credential_version: u32,
    /// Its subject.
    pub subject: String,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until.
    pub not_after: Timestamp,
    /// `active` or `revoked`.
    pub state: CertState,
    /// The certificate, PEM (public).
    pub pem: String,
    /// When it was stored.
    pub created_at: Timestamp,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}
