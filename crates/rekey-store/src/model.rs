//! Rows as the store reads and writes them. Secrets appear only as ciphertexts and wrapped keys.

use std::collections::BTreeMap;

use rekey_types::{AuditRecord, CredentialId, CredentialKind, Role, TenantId, Timestamp, TokenId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub id: TenantId,
    pub name: String,
    pub region: String,
    pub contacts: Vec<String>,
    pub state: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    pub region: Option<String>,
    /// Names after this one (paging).
    pub after: Option<String>,
    pub limit: u32,
}

#[derive(Clone, PartialEq, Eq)]
pub struct KekRow {
    pub tenant_id: TenantId,
    pub version: u32,
    pub state: String,
    /// The KEK wrapped by the root key.
    pub wrapped: Vec<u8>,
    pub root_version: u32,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub id: CredentialId,
    pub tenant_id: TenantId,
    pub name: String,
    pub kind: CredentialKind,
    pub fields: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub current_version: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
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
    pub stage: String,
    pub kek_version: u32,
    pub wrapped_dek: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_by: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMeta {
    pub version: u32,
    pub stage: String,
    pub kek_version: u32,
    pub created_by: String,
    pub created_at: Timestamp,
}

/// A reveal's single read: tenant, credential and current version together.
#[derive(Clone)]
pub struct RevealRow {
    pub tenant_id: TenantId,
    pub credential_id: CredentialId,
    pub kind: CredentialKind,
    pub version: u32,
    pub kek_version: u32,
    pub wrapped_dek: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: TokenId,
    /// SHA-256 of the token's secret; the secret itself is never stored.
    pub hash: Vec<u8>,
    pub role: Role,
    pub tenant_id: Option<TenantId>,
    /// The name of `tenant_id` (read through a join; not written).
    pub tenant_name: Option<String>,
    /// Names of the credentials (of `tenant_id`) a connector may reveal.
    pub bound: Vec<String>,
    /// Allowed source networks, as text (`127.0.0.1/32`); empty means anywhere.
    pub cidrs: Vec<String>,
    pub description: String,
    pub created_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Clone)]
pub struct SystemKeyRow {
    pub purpose: String,
    pub version: u32,
    pub wrapped: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub tenants: i64,
    pub credentials: i64,
    pub versions: i64,
    pub tokens: i64,
    pub audit_events: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub mac: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAudit {
    pub record: AuditRecord,
    pub mac: Vec<u8>,
}

/// One write and the audit event that records it.
pub struct WriteRequest {
    /// `None` for a request that only needs its audit event written (a read, a denial).
    pub op: Option<WriteOp>,
    /// `seq` is assigned by the store; the outcome is set to `error` if `op` fails.
    pub audit: AuditRecord,
}

#[non_exhaustive]
pub enum WriteOp {
    CreateTenant {
        tenant: TenantRow,
        kek: KekRow,
    },
    /// A new version of a credential. With `create`, the credential row is inserted (its name
    /// must be free); otherwise its fields and labels are updated and `version` must be exactly
    /// one more than the stored current version, or the write is a `Conflict`.
    PutVersion {
        credential: CredentialRow,
        version: VersionRow,
        create: bool,
    },
    DeleteCredential {
        id: CredentialId,
        at: Timestamp,
    },
    CreateToken(TokenRow),
    RevokeToken {
        id: TokenId,
        at: Timestamp,
    },
    /// Several operations that succeed or fail together (used by bulk import).
    All(Vec<WriteOp>),
}

/// What an operation did, when it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOk {
    Done,
    /// The audit event was written (requests without an operation).
    AuditOnly,
}

pub type OpResult = Result<OpOk, crate::StoreError>;

/// The outcome of [`crate::Store::apply`]: one result per request, and the new audit head.
pub struct Applied {
    pub results: Vec<OpResult>,
    pub last_seq: i64,
}
