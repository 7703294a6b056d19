//! Rows of staged rotations and of the last check of each credential.

use rekey_types::{CredentialId, CredentialKind, RotationId, RotationState, TenantId, Timestamp};

/// One staged rotation. `tenant` and `credential` (names) are filled in on reads only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationRow {
    /// Its id.
    pub id: RotationId,
    /// Its credential.
    pub credential_id: CredentialId,
    /// The credential's tenant.
    pub tenant_id: TenantId,
    /// The version it rotates from.
    pub from_version: u32,
    /// The version it rotates to.
    pub to_version: u32,
    /// Its state.
    pub state: RotationState,
    /// Who started it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// When its state last changed.
    pub changed_at: Timestamp,
    /// When the old version is retired.
    pub retire_after: Option<Timestamp>,
    /// Why it failed: the connector's status and detail. Never a secret.
    pub error: Option<String>,
    /// What the target calls the secret this rotation created (a Graph client secret's keyId).
    pub target_ref: Option<String>,
    /// The tenant's name (reads only).
    pub tenant: String,
    /// The credential's name (reads only).
    pub credential: String,
    /// The credential's kind (reads only).
    pub kind: Option<CredentialKind>,
}

/// The last check of a credential against its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRow {
    /// The credential.
    pub credential_id: CredentialId,
    /// The version checked.
    pub version: u32,
    /// The outcome: `ok`, `auth-failed`, `unreachable`, …
    pub status: String,
    /// What the target said (never a secret).
    pub detail: String,
    /// How long the check took.
    pub elapsed_ms: i64,
    /// When.
    pub checked_at: Timestamp,
}

/// A credential whose last check is older than asked (or which was never checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleCredential {
    /// The credential.
    pub credential_id: CredentialId,
    /// Its tenant's name.
    pub tenant: String,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: CredentialKind,
}

/// How many credentials of a kind were last found in a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCount {
    /// The kind.
    pub kind: String,
    /// The outcome.
    pub status: String,
    /// Credentials in it.
    pub count: i64,
}
