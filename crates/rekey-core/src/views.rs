//! What the use cases return: the shapes of the API's JSON bodies. None holds a secret, except
//! [`Revealed`], which is deliberately not `Serialize` or `Debug`.

use std::collections::BTreeMap;

use rekey_store::{CredentialRow, RotationRow, TenantRow, TokenRow, VersionMeta};
use rekey_types::{
    CertState, CredentialKind, JobState, KeyState, Role, RotationState, Secret, Stage, TenantState, Timestamp,
    TokenState,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub region: String,
    pub contacts: Vec<String>,
    pub state: TenantState,
    pub created_at: Timestamp,
}

impl From<TenantRow> for TenantView {
    fn from(t: TenantRow) -> Self {
        Self {
            id: t.id.to_string(),
            name: t.name,
            region: t.region,
            contacts: t.contacts,
            state: t.state,
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CredentialView {
    pub id: String,
    pub tenant: String,
    pub region: String,
    pub name: String,
    pub kind: CredentialKind,
    pub fields: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub current_version: u32,
    /// Above `current_version` while a pending version waits to be promoted.
    pub latest_version: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The last check against the target (`cred show` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthView>,
    /// The newest rotation (`cred show` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationView>,
}

impl CredentialView {
    pub fn new(tenant: &str, region: &str, c: CredentialRow) -> Self {
        Self {
            id: c.id.to_string(),
            tenant: tenant.to_owned(),
            region: region.to_owned(),
            name: c.name,
            kind: c.kind,
            fields: c.fields,
            labels: c.labels,
            current_version: c.current_version,
            latest_version: c.latest_version,
            created_at: c.created_at,
            updated_at: c.updated_at,
            health: None,
            rotation: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionView {
    pub version: u32,
    pub stage: Stage,
    pub kek_version: u32,
    pub created_by: String,
    pub created_at: Timestamp,
}

impl From<VersionMeta> for VersionView {
    fn from(v: VersionMeta) -> Self {
        Self {
            version: v.version,
            stage: v.stage,
            kek_version: v.kek_version,
            created_by: v.created_by,
            created_at: v.created_at,
        }
    }
}

/// A revealed secret. Not `Serialize` or `Debug`: the server writes the response body itself.
pub struct Revealed {
    pub tenant: String,
    pub name: String,
    pub kind: CredentialKind,
    pub version: u32,
    pub secret: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub role: Role,
    pub tenant: Option<String>,
    pub credentials: Vec<String>,
    pub cidrs: Vec<String>,
    pub description: String,
    pub created_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// Derived from the expiry and the revocation.
    pub state: TokenState,
}

impl From<TokenRow> for TokenView {
    fn from(t: TokenRow) -> Self {
        let now = Timestamp::now();
        let state = if t.revoked_at.is_some() {
            TokenState::Revoked
        } else if t.expires_at.is_some_and(|e| e <= now) {
            TokenState::Expired
        } else {
            TokenState::Active
        };
        Self {
            id: t.id.to_string(),
            role: t.role,
            tenant: t.tenant_name,
            credentials: t.bound,
            cidrs: t.cidrs,
            description: t.description,
            created_by: t.created_by,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            state,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusView {
    pub version: String,
    pub seal: SealStatus,
    pub store: String,
    pub counts: Option<CountsView>,
    /// Absent while sealed.
    pub audit_head_seq: Option<i64>,
    /// Rows refused by their integrity check since this server started (absent while sealed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity_failures: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SealStatus {
    pub kind: String,
    pub sealed: bool,
    /// Shamir only: whether `rekey init` has run.
    pub initialized: Option<bool>,
    /// Shamir only: shares given so far towards the threshold.
    pub unseal_progress: Option<u8>,
    pub threshold: Option<u8>,
    pub shares: Option<u8>,
    /// The root key version new wraps use; absent while sealed.
    pub root_key_version: Option<u32>,
    pub root_key_versions: Vec<u32>,
    /// Set for the dev seal: it must never be used in production.
    pub warning: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CountsView {
    pub tenants: i64,
    pub credentials: i64,
    pub versions: i64,
    pub active_tokens: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEventView {
    pub seq: i64,
    pub time: Timestamp,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub outcome: String,
    pub source: String,
    pub request_id: String,
    pub detail: String,
    /// The event's chain MAC, hex.
    pub mac: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    /// Events read and checked.
    pub checked: i64,
    /// The sequence number the stored head records.
    pub head_seq: i64,
    /// The highest sequence number this server has itself committed (catches a rolled-back head).
    pub server_head_seq: i64,
    pub problems: Vec<VerifyProblem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyProblem {
    pub seq: i64,
    /// `modified`, `deleted`, `out-of-order`, `truncated`, `appended`.
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyListView {
    pub root: Vec<RootKeyView>,
    pub tenants: Vec<TenantKeysView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RootKeyView {
    /// `root@N`.
    pub key: String,
    pub version: u32,
    pub state: KeyState,
    /// Tenant KEK versions wrapped under it (destroyed ones not counted).
    pub keks: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantKeysView {
    pub tenant: String,
    pub region: String,
    pub state: TenantState,
    pub versions: Vec<KekView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KekView {
    /// `TENANT@N`.
    pub key: String,
    pub version: u32,
    pub state: KeyState,
    pub root_version: u32,
    /// Credential versions whose DEK it wraps.
    pub deks: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub scope: String,
    pub tenant: Option<String>,
    pub reason: String,
    pub state: JobState,
    pub total: i64,
    pub done: i64,
    pub created_by: String,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
}

impl JobView {
    pub fn new(j: rekey_store::KeyJobRow, tenant: Option<String>) -> Self {
        Self {
            id: j.id.to_string(),
            scope: j.scope,
            tenant,
            reason: j.reason,
            state: j.state,
            total: j.total,
            done: j.done,
            created_by: j.created_by,
            created_at: j.created_at,
            finished_at: j.finished_at,
            error: j.error,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WrappedByView {
    pub key: String,
    /// Credential versions (tenant KEK) or tenant KEK versions (root) it wraps.
    pub total: i64,
    /// The first of them (at most 1,000): `tenant/name vN`, or `tenant@N` for a root key.
    pub items: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DestroyedView {
    pub key: String,
    /// What became unrecoverable.
    pub unrecoverable: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShreddedView {
    pub tenant: String,
    pub keys_destroyed: usize,
    pub versions_unrecoverable: i64,
}

/// The new shares of a Shamir root rotation, shown once; nothing changes until it is committed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RootSplitView {
    pub set_id: String,
    pub threshold: u8,
    pub shares: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertificateView {
    pub tenant: String,
    pub credential: String,
    pub credential_version: u32,
    pub subject: String,
    /// Hex, as certificate tools show it; base64url of the same bytes is the JWT `x5t`.
    pub sha1: String,
    pub sha256: String,
    pub x5t: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub state: CertState,
    pub pem: String,
}

/// The last check of a credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct HealthView {
    pub tenant: String,
    pub name: String,
    pub kind: CredentialKind,
    pub version: u32,
    pub status: String,
    pub detail: String,
    pub elapsed_ms: i64,
    pub checked_at: Timestamp,
}

/// One rotation of a credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RotationView {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub from_version: u32,
    pub to_version: u32,
    pub state: RotationState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub changed_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_after: Option<Timestamp>,
}

impl From<&RotationRow> for RotationView {
    fn from(r: &RotationRow) -> Self {
        Self {
            id: r.id.to_string(),
            tenant: r.tenant.clone(),
            name: r.credential.clone(),
            from_version: r.from_version,
            to_version: r.to_version,
            state: r.state,
            error: r.error.clone(),
            created_by: r.created_by.clone(),
            created_at: r.created_at,
            changed_at: r.changed_at,
            retire_after: r.retire_after,
        }
    }
}
