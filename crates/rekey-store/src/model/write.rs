//! One write and its audit event: [`WriteRequest`] and the operations a write may carry.

use std::collections::BTreeMap;

use rekey_types::{
    AuditRecord, CampaignId, CredentialId, IncidentId, ItemState, JobId, JobState, KeyState, LinkId, RotationId,
    RotationState, Stage, TenantId, Timestamp, TokenId,
};

use super::{
    CampaignRow, CertificateRow, CredentialRow, DekUpdate, HealthRow, IncidentRow, ItemUpdate, KekRow, KeyJobRow,
    LegacyRewrite, LinkRow, NoticeRow, NoticeUpdate, RootKeyRow, RootRewrap, RotationRow, ScopeQuery, SealKeyringRow,
    TenantRow, TokenRow, VersionBinding, VersionRow,
};

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
        state: JobState,
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
