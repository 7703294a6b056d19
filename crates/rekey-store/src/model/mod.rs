//! Rows as the store reads and writes them, a file per domain; here the tenants, tokens, system
//! keys, the audit head, and what a write answers. Secrets appear only as ciphertexts and
//! wrapped keys.

mod campaigns;
mod credentials;
mod incidents;
mod keys;
mod rotations;
mod write;

pub use campaigns::*;
pub use credentials::*;
pub use incidents::*;
pub use keys::*;
pub use rotations::*;
pub use write::*;

use rekey_types::{AuditRecord, Role, TenantId, TenantState, Timestamp, TokenId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub id: TenantId,
    pub name: String,
    pub region: String,
    pub contacts: Vec<String>,
    pub state: TenantState,
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
    /// MAC of the row under the integrity key (see `rekey-core`'s `integrity`); `None` for a row
    /// stored before rows were authenticated, until the first unseal seals it.
    pub mac: Option<Vec<u8>>,
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
