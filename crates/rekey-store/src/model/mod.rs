//! Rows as the store reads and writes them, a file per domain; here the tenants, tokens, system
//! keys, the audit head, and what a write answers. Secrets appear only as ciphertexts and
//! wrapped keys.

mod alerts;
mod campaigns;
mod credentials;
mod incidents;
mod keys;
mod rotations;
mod write;

pub use alerts::*;
pub use campaigns::*;
pub use credentials::*;
pub use incidents::*;
pub use keys::*;
pub use rotations::*;
pub use write::*;

use rekey_types::{AuditRecord, Role, TenantId, TenantState, Timestamp, TokenId};

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    /// Its id.
    pub id: TenantId,
    /// Its name.
    pub name: String,
    /// Its region.
    pub region: String,
    /// E-mail addresses for its notices.
    pub contacts: Vec<String>,
    /// `active` or `shredded`.
    pub state: TenantState,
    /// When it was created.
    pub created_at: Timestamp,
}

/// Which tenants to list.
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    /// Only this region's.
    pub region: Option<String>,
    /// Names after this one (paging).
    pub after: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// An API token; only its hash is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// Its id (the token's public half).
    pub id: TokenId,
    /// SHA-256 of the token's secret; the secret itself is never stored.
    pub hash: Vec<u8>,
    /// Its role.
    pub role: Role,
    /// Its tenant.
    pub tenant_id: Option<TenantId>,
    /// The name of `tenant_id` (read through a join; not written).
    pub tenant_name: Option<String>,
    /// Names of the credentials (of `tenant_id`) a connector may reveal.
    pub bound: Vec<String>,
    /// Allowed source networks, as text (`127.0.0.1/32`); empty means anywhere.
    pub cidrs: Vec<String>,
    /// What it is for.
    pub description: String,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// When it expires (`None`: never).
    pub expires_at: Option<Timestamp>,
    /// The latest its holder may renew it to (`None`: it cannot be renewed).
    pub max_expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// MAC of the row under the integrity key (see `rekey-core`'s `integrity`); `None` for a row
    /// stored before rows were authenticated, until the first unseal seals it.
    pub mac: Option<Vec<u8>>,
}

/// An auth role: which issuer's JWTs a workload may log in with, and what a login grants. The
/// store keeps the specification as the core wrote it (JSON) and never reads inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRoleRow {
    /// Its name.
    pub name: String,
    /// The specification, JSON.
    pub spec: String,
    /// Who wrote it last.
    pub created_by: String,
    /// When it was first written.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
    /// MAC of name and specification under the integrity key.
    pub mac: Vec<u8>,
}

/// A key of the server itself (the audit chain's, the integrity key), wrapped by the root key.
#[derive(Clone)]
pub struct SystemKeyRow {
    /// What it is for.
    pub purpose: String,
    /// Its version.
    pub version: u32,
    /// The key, wrapped.
    pub wrapped: Vec<u8>,
}

/// What the store holds, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Tenants.
    pub tenants: i64,
    /// Credentials.
    pub credentials: i64,
    /// Credential versions.
    pub versions: i64,
    /// Tokens neither expired nor revoked.
    pub tokens: i64,
    /// Audit events.
    pub audit_events: i64,
}

/// The audit chain's head: the last event's number and MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// The last event's sequence number.
    pub seq: i64,
    /// Its MAC.
    pub mac: Vec<u8>,
}

/// The audit log's Merkle tree: its size (always the number of events) and head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Leaves: events.
    pub size: u64,
    /// The RFC 6962 tree head.
    pub root: rekey_tlog::Hash,
}

/// A signed checkpoint of the audit log's tree, as stored, with the witnesses' cosignatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// Its number, in the order checkpoints were stored.
    pub id: i64,
    /// The checkpoint.
    pub checkpoint: NewCheckpoint,
    /// The cosignatures received, by witness name.
    pub cosignatures: Vec<CosignatureRow>,
}

/// A checkpoint to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCheckpoint {
    /// The tree size it states.
    pub size: u64,
    /// The root hash it states.
    pub root: rekey_tlog::Hash,
    /// The C2SP signed note, as signed.
    pub note: String,
    /// When it was signed.
    pub signed_at: Timestamp,
    /// Set on the first checkpoint signed after an operator accepted a log that is shorter than,
    /// or inconsistent with, the last checkpoint: the reason given.
    pub accepted: Option<String>,
}

/// A witness's cosignature of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureRow {
    /// The witness's key name.
    pub witness: String,
    /// The signature line, as the witness answered it.
    pub line: String,
    /// The time it states, in seconds since the Unix epoch.
    pub time: u64,
}

/// An audit event as stored, with its chain MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAudit {
    /// The event.
    pub record: AuditRecord,
    /// Its MAC, chained to the one before.
    pub mac: Vec<u8>,
}

/// What an operation did, when it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOk {
    /// The operation was applied.
    Done,
    /// The audit event was written (requests without an operation).
    AuditOnly,
}

/// What one operation of a write did.
pub type OpResult = Result<OpOk, crate::StoreError>;

/// The outcome of [`crate::Store::apply`]: one result per request, and the new audit head.
pub struct Applied {
    /// One result per request, in order.
    pub results: Vec<OpResult>,
    /// The sequence number of the last audit event written.
    pub last_seq: i64,
    /// The audit events as written (sequence numbers set; a failed operation's marked), in
    /// order: what a follower of the log would read back.
    pub records: Vec<rekey_types::AuditRecord>,
}
