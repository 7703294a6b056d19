//! Rows as the store reads and writes them. Secrets appear only as ciphertexts and wrapped keys.

use std::collections::BTreeMap;

use rekey_types::{
    AuditRecord, CampaignId, CampaignMode, CredentialId, CredentialKind, IncidentId, ItemState, JobId, KeyState,
    LinkId, NoticeId, Role, RotationId, RotationState, Stage, TenantId, Timestamp, TokenId,
};

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
    pub state: KeyState,
    /// The KEK wrapped by the root key.
    pub wrapped: Vec<u8>,
    pub root_version: u32,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootKeyRow {
    pub version: u32,
    pub state: KeyState,
    pub created_at: Timestamp,
    pub changed_at: Timestamp,
}

/// The Shamir seal's keyring as stored (`slot` is `active` or `pending`).
#[derive(Clone)]
pub struct SealKeyringRow {
    pub slot: String,
    pub set_id: Vec<u8>,
    pub shares: u8,
    pub threshold: u8,
    pub blob: Vec<u8>,
    /// The split's share commitments (see `rekey_crypto::ShareCommitment`); none for a split
    /// made before they were kept.
    pub commitments: Option<Vec<u8>>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyJobRow {
    pub id: JobId,
    /// `tenant`, `all` or `root`.
    pub scope: String,
    pub tenant_id: Option<TenantId>,
    /// `rotate` or `compromise`.
    pub reason: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub total: i64,
    pub done: i64,
    pub created_by: String,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
}

/// A wrapped DEK to move to another KEK version, with what its slot needs.
#[derive(Clone)]
pub struct DekRow {
    pub tenant_id: TenantId,
    pub credential_id: CredentialId,
    pub kind: CredentialKind,
    pub version: u32,
    pub kek_version: u32,
    pub wrapped_dek: Vec<u8>,
}

/// One rewrapped DEK. Applied only if the row is still under `from_kek`.
#[derive(Clone)]
pub struct DekUpdate {
    pub credential_id: CredentialId,
    pub version: u32,
    pub from_kek: u32,
    pub to_kek: u32,
    pub wrapped_dek: Vec<u8>,
}

/// One KEK (or system key, with `tenant_id` `None`) rewrapped under another root version.
#[derive(Clone)]
pub struct RootRewrap {
    pub tenant_id: Option<TenantId>,
    /// The system key's purpose when `tenant_id` is `None`.
    pub purpose: String,
    pub version: u32,
    pub from_root: u32,
    pub to_root: u32,
    pub wrapped: Vec<u8>,
}

/// How many credential versions one KEK version wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DekCount {
    pub tenant_id: TenantId,
    pub kek_version: u32,
    pub count: i64,
}

/// A credential version that a key version wraps (what destroying it would make unrecoverable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedBy {
    pub tenant: String,
    pub credential: String,
    pub version: u32,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    /// Hex, lowercase.
    pub sha256: String,
    /// Hex, lowercase; the `x5t` of JWT headers in base64url.
    pub sha1: String,
    pub public_key_sha256: String,
    pub tenant_id: TenantId,
    pub tenant: String,
    pub credential_id: CredentialId,
    pub credential: String,
    pub credential_version: u32,
    pub subject: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// `active` or `revoked`.
    pub state: String,
    pub pem: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

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
    /// one more than the stored latest version, or the write is a `Conflict`. The version's
    /// `stage` is `current` (served from now on; the old current becomes `previous`) or
    /// `pending` (stored beside the current one, which stays served). Either way an older
    /// pending version is retired.
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
    /// Revokes an active token; `mac` is the row's MAC with `revoked_at` set.
    RevokeToken {
        id: TokenId,
        at: Timestamp,
        mac: Vec<u8>,
    },
    /// Ends an incident's freeze of a credential: the caller verified a new secret at its
    /// target. With `fresh = (version, fingerprint)`, only if no other version of the
    /// credential holds that fingerprint (or lacks one): a reused secret keeps the freeze.
    LiftFreeze {
        credential: CredentialId,
        fresh: Option<(u32, Vec<u8>)>,
    },
    /// Moves the credential's campaign items that wait for a new secret to `rotated`, for a
    /// worker to verify, if version `version`'s `fingerprint` differs from every other version's
    /// (a reused secret moves nothing).
    ItemsRotated {
        credential: CredentialId,
        version: u32,
        fingerprint: Vec<u8>,
        by: String,
        at: Timestamp,
    },
    /// Moves legacy versions to the bound payload format.
    BindVersions(Vec<VersionBinding>),
    /// Stores versions as releases before target binding did (format 1 payload, no fields,
    /// binding or fingerprint). Only migration tests and benchmarks build such stores.
    UnbindVersions(Vec<LegacyRewrite>),
    /// Ends the format migration: no version stored before target binding is left.
    VersionsBound,
    /// Stores the MACs of token rows stored before rows were authenticated, once.
    SealTokens(Vec<(TokenId, Vec<u8>)>),
    /// Several operations that succeed or fail together (used by bulk import).
    All(Vec<WriteOp>),
    /// A new KEK version; every older `active` version of the tenant becomes `retired`.
    CreateKek(KekRow),
    /// Sets a KEK version's state. Destroying also erases the wrapped key.
    SetKekState {
        tenant: TenantId,
        version: u32,
        state: KeyState,
        at: Timestamp,
    },
    /// Destroys every KEK version of a tenant and marks the tenant `shredded`.
    ShredTenant {
        tenant: TenantId,
        at: Timestamp,
    },
    /// Moves DEKs to another KEK version (rows that moved meanwhile are skipped) and adds how
    /// many moved to a job's progress.
    RewrapDeks {
        updates: Vec<DekUpdate>,
        job: Option<JobId>,
    },
    /// Moves KEKs and system keys to another root version.
    RewrapRoot {
        updates: Vec<RootRewrap>,
        job: Option<JobId>,
    },
    InsertRootKey(RootKeyRow),
    SetRootKeyState {
        version: u32,
        state: KeyState,
        at: Timestamp,
    },
    CreateJob(KeyJobRow),
    FinishJob {
        id: JobId,
        state: &'static str,
        error: Option<String>,
        at: Timestamp,
    },
    /// Makes the pending Shamir keyring the active one.
    CommitKeyring {
        set_id: Vec<u8>,
    },
    /// Replaces the active Shamir keyring (after a root version was destroyed).
    ReplaceKeyring(SealKeyringRow),
    /// Makes the pending version `version` current (the old current becomes previous, the old
    /// previous retired) and sets the credential's fields; `NotFound` unless `version` is the
    /// latest version and above the current one.
    PromotePending {
        credential: CredentialId,
        version: u32,
        fields: BTreeMap<String, String>,
        at: Timestamp,
    },
    InsertCertificate(CertificateRow),
    /// Moves the campaign item that holds `rotation` (if any, and only while it is `rotating`,
    /// `rotated` or `verified`) to `state`, with `error`; stamps the state's time. Written beside
    /// a [`WriteOp::SetRotation`] (see `rekey_types::ItemState::following`).
    FollowRotation {
        rotation: RotationId,
        state: ItemState,
        error: Option<String>,
        at: Timestamp,
    },
    /// A new rotation; `AlreadyExists` if the credential has an unfinished one.
    InsertRotation(RotationRow),
    /// Moves a rotation from one of the `from` states to `state`; `Conflict` if it was not in
    /// one of them (another server moved it first). The campaign item that holds it moves only
    /// by a [`WriteOp::FollowRotation`] beside it.
    SetRotation {
        id: RotationId,
        from: &'static [RotationState],
        state: RotationState,
        error: Option<String>,
        retire_after: Option<Timestamp>,
        /// Set when `Some`; kept otherwise.
        target_ref: Option<String>,
        at: Timestamp,
    },
    /// Sets a version's stage if it is still `from` (no error if it moved on meanwhile).
    SetVersionStage {
        credential: CredentialId,
        version: u32,
        from: Stage,
        stage: Stage,
    },
    /// Records (replaces) the last check of a credential.
    RecordHealth(HealthRow),
    /// Stores an incident and its reach (each scope query adds tenants or credentials, with its
    /// reason bit), then counts what it reaches (only the incident's kinds, if set).
    OpenIncident {
        incident: IncidentRow,
        scope: Vec<ScopeQuery>,
    },
    /// Marks an incident contained (and frozen: its credentials refuse connectors' reveals until
    /// a new version is current).
    ContainIncident {
        id: IncidentId,
        freeze: bool,
        at: Timestamp,
    },
    /// Closes an open incident; `NotFound` if it is not open.
    CloseIncident {
        id: IncidentId,
        at: Timestamp,
    },
    RevokeCertificate {
        sha256: String,
        at: Timestamp,
    },
    /// Stores a campaign and one item per credential its incident reaches (live ones only),
    /// each `pending`; `Conflict` if the incident is not open, `AlreadyExists` if it already has a
    /// running campaign.
    StartCampaign(CampaignRow),
    /// Moves an item to `rotating` with the rotation that now holds it (written with the
    /// rotation's insert).
    StartItemRotation {
        campaign: CampaignId,
        credential: CredentialId,
        rotation: RotationId,
        by: String,
        at: Timestamp,
    },
    /// Moves an item from one of the `from` states; `Conflict` if it was in none of them.
    SetItem(ItemUpdate),
    /// Marks a campaign finished; `Conflict` if an item is still open.
    FinishCampaign {
        id: CampaignId,
        at: Timestamp,
    },
    /// Records that a campaign's reminders are queued.
    SetReminded {
        id: CampaignId,
    },
    /// Queues notices (one already queued for the same tenant, channel and purpose is kept).
    QueueNotices(Vec<NoticeRow>),
    /// Records a delivery attempt. A delivered notice moves the tenant's `pending` self-service
    /// items to `notified`.
    SetNotice(NoticeUpdate),
    InsertLink(LinkRow),
    /// Spends a link; `Conflict` if it was spent, revoked or expired.
    UseLink {
        id: LinkId,
        at: Timestamp,
    },
    RevokeLink {
        id: LinkId,
        at: Timestamp,
    },
}

/// An item state change. Timestamps set here are only set where still empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemUpdate {
    pub campaign: CampaignId,
    pub credential: CredentialId,
    pub from: &'static [ItemState],
    pub state: ItemState,
    pub error: Option<String>,
    /// When a worker should look at it again; `None` for none.
    pub next_at: Option<Timestamp>,
    pub done_by: Option<String>,
    pub note: Option<String>,
    /// Which of `notified_at`, `rotated_at`, `verified_at`, `retired_at` (and those before it)
    /// to stamp, by state name.
    pub stamp: Option<ItemState>,
    /// Counts one more attempt.
    pub attempt: bool,
    pub at: Timestamp,
}

/// A delivery attempt of a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeUpdate {
    pub id: NoticeId,
    /// `pending` (retry at `next_at`), `sent` or `failed`.
    pub state: &'static str,
    pub next_at: Option<Timestamp>,
    pub error: Option<String>,
    pub link_id: Option<LinkId>,
    pub at: Timestamp,
}

/// A rotation campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRow {
    pub id: CampaignId,
    pub incident_id: IncidentId,
    /// `running` or `finished`.
    pub state: String,
    /// Channels: `email`, `webhook`.
    pub notify: Vec<String>,
    pub deadline: Timestamp,
    pub remind_at: Timestamp,
    pub reminded: bool,
    pub items: i64,
    pub created_by: String,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// One credential of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignItemRow {
    pub campaign_id: CampaignId,
    pub credential_id: CredentialId,
    pub tenant_id: TenantId,
    pub tenant: String,
    pub region: String,
    pub name: String,
    pub kind: CredentialKind,
    /// `automatic`, `self-service` or `manual`.
    pub mode: CampaignMode,
    pub from_version: u32,
    pub state: ItemState,
    pub rotation_id: Option<RotationId>,
    pub attempts: u32,
    pub next_at: Option<Timestamp>,
    /// Why it failed or waits (a connector's status and detail). Never a secret.
    pub error: Option<String>,
    /// Who did the last step (a principal, `system:campaign`, or `link:<id>`).
    pub done_by: Option<String>,
    /// Why it was waived.
    pub note: Option<String>,
    pub notified_at: Option<Timestamp>,
    pub rotated_at: Option<Timestamp>,
    pub verified_at: Option<Timestamp>,
    pub retired_at: Option<Timestamp>,
    pub changed_at: Timestamp,
}

/// A notification of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRow {
    pub id: NoticeId,
    pub campaign_id: CampaignId,
    pub tenant_id: TenantId,
    pub tenant: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// `initial` or `reminder`.
    pub purpose: String,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub next_at: Option<Timestamp>,
    pub error: Option<String>,
    pub link_id: Option<LinkId>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// A self-service reset link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    pub id: LinkId,
    pub campaign_id: CampaignId,
    pub tenant_id: TenantId,
    pub secret_hash: Vec<u8>,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub created_by: String,
    pub created_at: Timestamp,
}

/// Which items of a campaign to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFilter {
    pub tenant: Option<String>,
    pub state: Option<ItemState>,
    /// Items after this `(tenant, name)`.
    pub after: Option<(String, String)>,
    pub limit: u32,
}

/// How many items of a campaign (of one tenant, if set) are in a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemCount {
    pub tenant: Option<String>,
    pub state: ItemState,
    pub count: i64,
}

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

/// An incident. `scope` holds the selectors as typed; `reasons[i]` is what bit `i` of a
/// credential's reasons means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRow {
    pub id: IncidentId,
    pub title: String,
    pub scope: Vec<String>,
    pub reasons: Vec<String>,
    /// Only these kinds are in scope, if set.
    pub kinds: Option<Vec<CredentialKind>>,
    pub since: Option<Timestamp>,
    /// `open` or `closed`.
    pub state: String,
    pub frozen: bool,
    pub affected: i64,
    pub counts: IncidentCounts,
    pub created_by: String,
    /// Credentials created after this are not in scope.
    pub created_at: Timestamp,
    pub contained_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
}

/// The blast radius in numbers, computed when the incident opens.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncidentCounts {
    pub by_region: BTreeMap<String, i64>,
    pub by_kind: BTreeMap<String, i64>,
    /// The 50 largest tenants, largest first.
    pub by_tenant: Vec<(String, i64)>,
}

/// One way credentials enter an incident's scope, resolved to ids; `bit` is its reason's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeQuery {
    /// Every tenant, whole.
    AllTenants { bit: u8 },
    /// Tenants of a region, whole.
    Region { region: String, bit: u8 },
    /// These tenants, whole.
    Tenants { ids: Vec<TenantId>, bit: u8 },
    /// Tenants with a KEK version wrapped by this root version, whole.
    RootKey { version: u32, bit: u8 },
    /// These credentials.
    Credentials { ids: Vec<CredentialId>, bit: u8 },
    /// Credentials of the tenant with a version wrapped by this KEK version.
    TenantKek { tenant: TenantId, version: u32, bit: u8 },
    /// The credential holding this certificate (SHA-1 or SHA-256, hex).
    Certificate { thumbprint: String, bit: u8 },
}

/// A credential in an incident's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentItemRow {
    pub credential_id: CredentialId,
    pub tenant: String,
    pub region: String,
    pub name: String,
    pub kind: CredentialKind,
    /// Bits into the incident's `reasons`.
    pub reasons: u64,
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
