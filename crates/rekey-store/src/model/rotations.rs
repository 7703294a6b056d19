//! Rows of staged rotations and of the last check of each credential.

use rekey_types::{CredentialId, CredentialKind, RotationId, RotationState, TenantId, Timestamp};

/// One staged rotation. `tenant` and `credential` (names) are filled in on reads only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationRow {
    pub id: RotationId,
    pub credential_id: CredentialId,
    pub tenant_id: TenantId,
    pub from_version: u32,
    pub to_version: u32,
    pub state: RotationState,
    pub created_by: String,
    pub created_at: Timestamp,
    pub changed_at: Timestamp,
    pub retire_after: Option<Timestamp>,
    /// Why it failed: the connector's status and detail. Never a secret.
    pub error: Option<String>,
    /// What the target calls the secret this rotation created (a Graph client secret's keyId).
    pub target_ref: Option<String>,
    pub tenant: String,
    pub credential: String,
    pub kind: Option<CredentialKind>,
}

/// The last check of a credential against its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRow {
    pub credential_id: CredentialId,
    pub version: u32,
    pub status: String,
    pub detail: String,
    pub elapsed_ms: i64,
    pub checked_at: Timestamp,
}

/// A credential whose last check is older than asked (or which was never checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleCredential {
    pub credential_id: CredentialId,
    pub tenant: String,
    pub name: String,
    pub kind: CredentialKind,
}

/// How many credentials of a kind were last found in a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCount {
    pub kind: String,
    pub status: String,
    pub count: i64,
}
