//! Rows of credentials and their versions, and what a reveal reads.

use std::collections::BTreeMap;

use rekey_types::{CredentialId, CredentialKind, Stage, TenantId, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub id: CredentialId,
    pub tenant_id: TenantId,
    pub name: String,
    pub kind: CredentialKind,
    pub fields: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// The version served (stage `current`).
    pub current_version: u32,
    /// The newest version: `current_version`, or a `pending` one above it.
    pub latest_version: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The incident that froze this credential for connectors, if any (read only; set by
    /// `ContainIncident`, cleared by `LiftFreeze`).
    pub frozen_by: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CredentialFilter {
    pub tenant: Option<TenantId>,
    pub kind: Option<CredentialKind>,
    pub region: Option<String>,
    /// `(tenant name, credential name)` after which to continue (paging).
    pub after: Option<(String, String)>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialListRow {
    pub tenant: String,
    pub region: String,
    pub credential: CredentialRow,
}

#[derive(Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub credential_id: CredentialId,
    pub version: u32,
    pub stage: Stage,
    pub kek_version: u32,
    pub wrapped_dek: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_by: String,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMeta {
    pub version: u32,
    pub stage: Stage,
    pub kek_version: u32,
    pub created_by: String,
    pub created_at: Timestamp,
    /// The keyed fingerprint of the version's secret (not a secret: an HMAC under a key the
    /// database does not hold).
    pub fingerprint: Option<Vec<u8>>,
}

/// A version stored before target binding, with what binding it needs.
#[derive(Clone)]
pub struct LegacyVersion {
    pub tenant_id: TenantId,
    pub credential_id: CredentialId,
    pub name: String,
    pub kind: CredentialKind,
    /// The credential's fields as they stand: what the version gets bound to (for a version
    /// read as bound, its own fields).
    pub fields: BTreeMap<String, String>,
    pub version: u32,
    pub kek_version: u32,
    pub wrapped_dek: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// A version rewritten in format 1 (see `WriteOp::UnbindVersions`).
#[derive(Clone)]
pub struct LegacyRewrite {
    pub credential_id: CredentialId,
    pub version: u32,
    pub wrapped_dek: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// A legacy version moved to format 2. Applied only if the row is still unbound.
#[derive(Clone)]
pub struct VersionBinding {
    pub credential_id: CredentialId,
    pub version: u32,
    pub ciphertext: Vec<u8>,
    pub fields: BTreeMap<String, String>,
    pub binding: Vec<u8>,
    pub fingerprint: Vec<u8>,
}

/// A reveal's single read: tenant, credential and current version together.
#[derive(Clone)]
pub struct RevealRow {
    /// The incident that froze this credential for connectors, if any.
    pub frozen_by: Option<String>,
    pub tenant_id: TenantId,
    pub credential_id: CredentialId,
    pub kind: CredentialKind,
    pub version: u32,
    pub kek_version: u32,
    pub wrapped_dek: Vec<u8>,
    pub ciphertext: Vec<u8>,
    /// The target fields the version was stored for (`None` for a version not migrated yet):
    /// the reveal recomputes the binding from them and the name it was asked for, so a name
    /// swapped between two credentials in the database opens nothing.
    pub fields: Option<BTreeMap<String, String>>,
}
