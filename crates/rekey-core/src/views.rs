//! What the use cases return: the shapes of the API's JSON bodies. None holds a secret, except
//! [`Revealed`], which is deliberately not `Serialize` or `Debug`.

use std::collections::BTreeMap;

use rekey_store::{CredentialRow, RotationRow, TenantRow, TokenRow, VersionMeta};
use rekey_types::{
    CertState, CredentialKind, JobState, KeyState, Role, RotationState, Secret, Stage, TenantState, Timestamp,
    TokenState,
};
use serde::{Deserialize, Serialize};

/// A tenant: one customer, its region and contacts.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantView {
    /// The tenant's id (a UUID; names can be reused after a shred, ids never).
    pub id: String,
    /// The tenant's name.
    pub name: String,
    /// Its data-residency region.
    pub region: String,
    /// E-mail addresses for its notices.
    pub contacts: Vec<String>,
    /// `active` or `shredded`.
    pub state: TenantState,
    /// When it was created.
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

/// A credential's metadata: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CredentialView {
    /// The credential's id (a UUID).
    pub id: String,
    /// Its tenant's name.
    pub tenant: String,
    /// Its tenant's region.
    pub region: String,
    /// Its name within the tenant.
    pub name: String,
    /// What it connects to.
    pub kind: CredentialKind,
    /// The target of the current version (URL, bind DN, host, client id…); never a secret.
    pub fields: BTreeMap<String, String>,
    /// Free labels.
    pub labels: BTreeMap<String, String>,
    /// The version served.
    pub current_version: u32,
    /// Above `current_version` while a pending version waits to be promoted.
    pub latest_version: u32,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its last version was stored.
    pub updated_at: Timestamp,
    /// The last check against the target (`cred show` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthView>,
    /// The newest rotation (`cred show` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationView>,
}

impl CredentialView {
    /// The view of a credential row, with its tenant's name and region.
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

/// One version of a credential (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionView {
    /// The version's number, from 1.
    pub version: u32,
    /// Its stage: `current`, `pending`, `previous`, `retired` or `failed`.
    pub stage: Stage,
    /// The version of the tenant key that wraps its data key.
    pub kek_version: u32,
    /// Who stored it (`token:<id>`, `system`, …).
    pub created_by: String,
    /// When it was stored.
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
    /// The credential's tenant.
    pub tenant: String,
    /// The credential's name.
    pub name: String,
    /// What it connects to.
    pub kind: CredentialKind,
    /// The version revealed.
    pub version: u32,
    /// When that version was stored.
    pub created_at: Timestamp,
    /// Its non-secret target fields (empty for a version stored before they were bound to it).
    pub fields: std::collections::BTreeMap<String, String>,
    /// The secret; zeroized on drop.
    pub secret: Secret,
}

/// An API token: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    /// The token's id (its public half).
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// Its tenant, for `tenant-admin` and `connector` tokens.
    pub tenant: Option<String>,
    /// What a `connector` token may reveal.
    pub credentials: Vec<String>,
    /// Where it may be used from (empty: anywhere).
    pub cidrs: Vec<String>,
    /// What it is for.
    pub description: String,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it expires (absent: never).
    pub expires_at: Option<Timestamp>,
    /// The latest its holder may renew it to (a token from a workload login); absent: it
    /// cannot be renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewable_until: Option<Timestamp>,
    /// When it was revoked.
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
            renewable_until: t.max_expires_at,
            revoked_at: t.revoked_at,
            state,
        }
    }
}

/// `sys status`: the seal, the store and counts.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusView {
    /// The server's version.
    pub version: String,
    /// The seal's state.
    pub seal: SealStatus,
    /// The store's backend: `sqlite` or `postgres`.
    pub store: String,
    /// Counts of what the store holds (absent while sealed).
    pub counts: Option<CountsView>,
    /// Absent while sealed.
    pub audit_head_seq: Option<i64>,
    /// Rows refused by their integrity check since this server started (absent while sealed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity_failures: Option<u64>,
    /// Set while writes are refused because the audit log was found shorter than, or
    /// inconsistent with, a signed checkpoint: the finding (see docs/audit.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_rollback: Option<String>,
}

/// The seal's state.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SealStatus {
    /// `dev`, `shamir` or `pkcs11`.
    pub kind: String,
    /// Whether the vault is sealed.
    pub sealed: bool,
    /// Shamir only: whether `rekey init` has run.
    pub initialized: Option<bool>,
    /// Shamir only: shares given so far towards the threshold.
    pub unseal_progress: Option<u8>,
    /// Shamir only: shares needed to unseal.
    pub threshold: Option<u8>,
    /// Shamir only: shares made.
    pub shares: Option<u8>,
    /// The root key version new wraps use; absent while sealed.
    pub root_key_version: Option<u32>,
    /// Every root key version (destroyed ones included).
    pub root_key_versions: Vec<u32>,
    /// Set for the dev seal: it must never be used in production.
    pub warning: Option<String>,
}

/// What the store holds.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CountsView {
    /// Tenants.
    pub tenants: i64,
    /// Credentials.
    pub credentials: i64,
    /// Credential versions.
    pub versions: i64,
    /// Tokens neither expired nor revoked.
    pub active_tokens: i64,
}

/// One audit event, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEventView {
    /// Its position in the chain, from 1.
    pub seq: i64,
    /// When it was recorded.
    pub time: Timestamp,
    /// Who: `token:<id>`, `anonymous`, `system`.
    pub principal: String,
    /// What, e.g. `cred.reveal` (docs/audit.md).
    pub action: String,
    /// On what, e.g. `acme/directory`.
    pub resource: String,
    /// `success`, `denied` or `error`.
    pub outcome: String,
    /// The request's source address (empty for the server's own work).
    pub source: String,
    /// The request's id.
    pub request_id: String,
    /// Non-secret facts: an error code, a version, a count.
    pub detail: String,
    /// The event's chain MAC, hex.
    pub mac: String,
}

/// `audit verify`: the chain checked from its first event.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyReport {
    /// Whether nothing is wrong.
    pub ok: bool,
    /// Events read and checked.
    pub checked: i64,
    /// The sequence number the stored head records.
    pub head_seq: i64,
    /// The highest sequence number this server has itself committed (catches a rolled-back head).
    pub server_head_seq: i64,
    /// What is wrong, event by event.
    pub problems: Vec<VerifyProblem>,
}

/// One problem the chain check found.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyProblem {
    /// The event's sequence number.
    pub seq: i64,
    /// `modified`, `deleted`, `out-of-order`, `truncated`, `appended`.
    pub kind: String,
    /// What was found, for a person.
    pub message: String,
}

/// `key list`: the root key's versions and each tenant's.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyListView {
    /// Root key versions.
    pub root: Vec<RootKeyView>,
    /// Each tenant's key versions.
    pub tenants: Vec<TenantKeysView>,
}

/// One root key version.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RootKeyView {
    /// `root@N`.
    pub key: String,
    /// The version.
    pub version: u32,
    /// Its state.
    pub state: KeyState,
    /// Tenant KEK versions wrapped under it (destroyed ones not counted).
    pub keks: i64,
    /// When it was made.
    pub created_at: Timestamp,
}

/// One tenant's key versions.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantKeysView {
    /// The tenant.
    pub tenant: String,
    /// Its region.
    pub region: String,
    /// Its state.
    pub state: TenantState,
    /// Its key versions, oldest first.
    pub versions: Vec<KekView>,
}

/// One version of a tenant's key-encryption key.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KekView {
    /// `TENANT@N`.
    pub key: String,
    /// The version.
    pub version: u32,
    /// Its state.
    pub state: KeyState,
    /// The root key version that wraps it.
    pub root_version: u32,
    /// Credential versions whose DEK it wraps.
    pub deks: i64,
    /// When it was made.
    pub created_at: Timestamp,
}

/// A key job: a rotation or rewrap that runs in the server and survives restarts.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// `tenant`, `all` or `root`.
    pub scope: String,
    /// The tenant, for a tenant's rotation.
    pub tenant: Option<String>,
    /// `rotate` or `compromise`.
    pub reason: String,
    /// Its state.
    pub state: JobState,
    /// Items to do (credential versions or tenant keys).
    pub total: i64,
    /// Items done.
    pub done: i64,
    /// Who started it.
    pub created_by: String,
    /// When it started.
    pub created_at: Timestamp,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// Why it failed.
    pub error: Option<String>,
}

impl JobView {
    /// The view of a job row, with its tenant's name.
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

/// `key show`: what a key version wraps.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WrappedByView {
    /// The key version, `root@N` or `TENANT@N`.
    pub key: String,
    /// Credential versions (tenant KEK) or tenant KEK versions (root) it wraps.
    pub total: i64,
    /// The first of them (at most 1,000): `tenant/name vN`, or `tenant@N` for a root key.
    pub items: Vec<String>,
}

/// `key destroy`: what became unrecoverable.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DestroyedView {
    /// The key version destroyed.
    pub key: String,
    /// What became unrecoverable.
    pub unrecoverable: i64,
}

/// `tenant shred`: every key of a tenant destroyed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShreddedView {
    /// The tenant.
    pub tenant: String,
    /// Key versions destroyed.
    pub keys_destroyed: usize,
    /// Credential versions that can no longer be opened.
    pub versions_unrecoverable: i64,
}

/// The new shares of a Shamir root rotation, shown once; nothing changes until it is committed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RootSplitView {
    /// The new key set's id; `/v1/keys/rotate/commit` takes it.
    pub set_id: String,
    /// Shares needed to unseal with the new set.
    pub threshold: u8,
    /// The new shares, each shown once, here.
    pub shares: Vec<String>,
}

/// An application certificate Rekey issued or stored, and its state.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertificateView {
    /// The credential's tenant.
    pub tenant: String,
    /// The credential it authenticates.
    pub credential: String,
    /// The credential version that holds its key.
    pub credential_version: u32,
    /// Its subject.
    pub subject: String,
    /// Hex, as certificate tools show it; base64url of the same bytes is the JWT `x5t`.
    pub sha1: String,
    /// SHA-256 thumbprint, hex.
    pub sha256: String,
    /// The JWT `x5t` header value (base64url SHA-1).
    pub x5t: String,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until.
    pub not_after: Timestamp,
    /// `active`, `revoked`, or `expired` (shown, never stored).
    pub state: CertState,
    /// The certificate, PEM (public).
    pub pem: String,
}

/// The last check of a credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct HealthView {
    /// The credential's tenant.
    pub tenant: String,
    /// The credential's name.
    pub name: String,
    /// Its kind.
    pub kind: CredentialKind,
    /// The version checked.
    pub version: u32,
    /// `ok`, `auth-failed`, `unreachable`, `tls-failed`, `protocol-error`, `timeout` or `egress-denied`.
    pub status: String,
    /// What the target said, for a person (never a secret).
    pub detail: String,
    /// How long the check took.
    pub elapsed_ms: i64,
    /// When it was checked.
    pub checked_at: Timestamp,
}

/// One rotation of a credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RotationView {
    /// The rotation's id.
    pub id: String,
    /// The credential's tenant.
    pub tenant: String,
    /// The credential's name.
    pub name: String,
    /// The version it rotates from.
    pub from_version: u32,
    /// The version it rotates to (stored as `pending` first).
    pub to_version: u32,
    /// Its state.
    pub state: RotationState,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who started it.
    pub created_by: String,
    /// When it started.
    pub created_at: Timestamp,
    /// When its state last changed.
    pub changed_at: Timestamp,
    /// When the old secret is retired (after the grace period).
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
