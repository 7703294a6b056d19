//! Rows of credentials and their versions, and what a reveal reads.

use std::collections::BTreeMap;

use rekey_types::{CredentialId, CredentialKind, Stage, TenantId, Timestamp};

/// A credential: its name, kind, target and labels, and which versions are current and latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    /// Its id.
    pub id: CredentialId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its name within the tenant.
    pub name: String,
    /// Its kind.
    pub kind: CredentialKind,
    /// The current version's target (the version keeps its own copy, bound into its payload).
    pub fields: BTreeMap<String, String>,
    /// Free labels.
    pub labels: BTreeMap<String, String>,
    /// The version served (stage `current`).
    pub current_version: u32,
    /// The newest version: `current_version`, or a `pending` one above it.
    pub latest_version: u32,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its last version was stored.
    pub updated_at: Timestamp,
    /// The incident that froze this credential for connectors, if any (read only; set by
    /// `ContainIncident`, cleared by `LiftFreeze`).
    pub frozen_by: Option<String>,
}

/// Which credentials to list.
#[derive(Debug, Clone, Default)]
pub struct CredentialFilter {
    /// Only this tenant's.
    pub tenant: Option<TenantId>,
    /// Only this kind.
    pub kind: Option<CredentialKind>,
    /// Only this region's.
    pub region: Option<String>,
    /// `(tenant name, credential name)` after which to continue (paging).
    pub after: Option<(String, String)>,
    /// At most this many.
    pub limit: u32,
}

/// A credential with its tenant's name and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialListRow {
    /// The tenant's name.
    pub tenant: String,
    /// The tenant's region.
    pub region: String,
    /// The credential.
    pub credential: CredentialRow,
}

/// A credential version: its stage and its encrypted secret.
#[derive(Clone, PartialEq, Eq)]
pub struct VersionRow {
    /// Its credential.
    pub credential_id: CredentialId,
    /// Its number.
    pub version: u32,
    /// Its stage.
    pub stage: Stage,
    /// The tenant key version that wraps its data key.
    pub kek_version: u32,
    /// Its data key, wrapped by the tenant key.
    pub wrapped_dek: Vec<u8>,
    /// Its payload, encrypted under the data key (AES-256-GCM, bound to its slot and target).
    pub ciphertext: Vec<u8>,
    /// Who stored it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// The target fields this version's secret was stored for (`None`: stored before target
    /// binding and not migrated yet). On a write with a binding, `None` means that the store
    /// already holds these fields for the credential under that binding (the writer knows it
    /// wrote them with the version before), so there is nothing to add.
    pub fields: Option<std::collections::BTreeMap<String, String>>,
    /// The target binding bound into the payload (a digest of the name and `fields`).
    pub binding: Option<Vec<u8>>,
    /// The keyed fingerprint of the secret.
    pub fingerprint: Option<Vec<u8>>,
}

/// A version without its ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMeta {
    /// Its number.
    pub version: u32,
    /// Its stage.
    pub stage: Stage,
    /// The tenant key version that wraps its data key.
    pub kek_version: u32,
    /// Who stored it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// The keyed fingerprint of the version's secret (not a secret: an HMAC under a key the
    /// database does not hold).
    pub fingerprint: Option<Vec<u8>>,
}

/// A version stored before target binding, with what binding it needs.
#[derive(Clone)]
pub struct LegacyVersion {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its credential.
    pub credential_id: CredentialId,
    /// The credential's name.
    pub name: String,
    /// The credential's kind.
    pub kind: CredentialKind,
    /// The credential's fields as they stand: what the version gets bound to (for a version
    /// read as bound, its own fields).
    pub fields: BTreeMap<String, String>,
    /// The version.
    pub version: u32,
    /// The tenant key version that wraps its data key.
    pub kek_version: u32,
    /// Its wrapped data key.
    pub wrapped_dek: Vec<u8>,
    /// Its payload.
    pub ciphertext: Vec<u8>,
}

/// A version rewritten in format 1 (see `WriteOp::UnbindVersions`).
#[derive(Clone)]
pub struct LegacyRewrite {
    /// Its credential.
    pub credential_id: CredentialId,
    /// The version.
    pub version: u32,
    /// Its data key, wrapped again.
    pub wrapped_dek: Vec<u8>,
    /// Its payload, in format 1.
    pub ciphertext: Vec<u8>,
}

/// A legacy version moved to format 2. Applied only if the row is still unbound.
#[derive(Clone)]
pub struct VersionBinding {
    /// Its credential.
    pub credential_id: CredentialId,
    /// The version.
    pub version: u32,
    /// Its payload, in format 2 (bound to `fields`).
    pub ciphertext: Vec<u8>,
    /// The fields it is bound to.
    pub fields: BTreeMap<String, String>,
    /// The binding.
    pub binding: Vec<u8>,
    /// The keyed fingerprint of its secret.
    pub fingerprint: Vec<u8>,
}

/// A reveal's single read: tenant, credential and current version together.
#[derive(Clone)]
pub struct RevealRow {
    /// The incident that froze this credential for connectors, if any.
    pub frozen_by: Option<String>,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its credential.
    pub credential_id: CredentialId,
    /// The credential's kind.
    pub kind: CredentialKind,
    /// The current version.
    pub version: u32,
    /// When that version was stored.
    pub created_at: rekey_types::Timestamp,
    /// The tenant key version that wraps its data key.
    pub kek_version: u32,
    /// Its wrapped data key.
    pub wrapped_dek: Vec<u8>,
    /// Its payload.
    pub ciphertext: Vec<u8>,
    /// The target fields the version was stored for (`None` for a version not migrated yet):
    /// the reveal recomputes the binding from them and the name it was asked for, so a name
    /// swapped between two credentials in the database opens nothing.
    pub fields: Option<BTreeMap<String, String>>,
}

/// What the reveal cache of a SQLite store holds and how it served (see
/// [`crate::SqlStore::set_reveal_cache_bytes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevealCacheStats {
    /// Rows kept.
    pub rows: u64,
    /// Their estimated bytes.
    pub bytes: u64,
    /// The budget in bytes.
    pub budget: u64,
    /// Reveals served from memory since the start.
    pub hits: u64,
    /// Reveals that read the database since the start.
    pub misses: u64,
}
