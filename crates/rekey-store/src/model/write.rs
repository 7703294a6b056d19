//! One write and its audit event: [`WriteRequest`] and the operations a write may carry.

use std::collections::BTreeMap;

use rekey_types::{
    AlertId, AlertState, AuditRecord, CampaignId, CredentialId, IncidentId, ItemState, JobId, JobState, KeyState,
    LinkId, RotationId, RotationState, Stage, TenantId, Timestamp, TokenId,
};

use super::{
    AuthRoleRow, CampaignRow, CertificateRow, CredentialRow, DekUpdate, HealthRow, IncidentRow, ItemUpdate, KekRow,
    KeyJobRow, LegacyRewrite, LinkRow, NoticeRow, NoticeUpdate, RootKeyRow, RootRewrap, RotationRow, ScopeQuery,
    SealKeyringRow, TenantRow, TokenRow, VersionBinding, VersionRow,
};

/// One write and the audit event that records it.
pub struct WriteRequest {
    /// `None` for a request that only needs its audit event written (a read, a denial).
    pub op: Option<WriteOp>,
    /// `seq` is assigned by the store; the outcome is set to `error` if `op` fails.
    pub audit: AuditRecord,
}

/// A write the store applies, in one transaction with its audit event.
#[non_exhaustive]
pub enum WriteOp {
    /// A new tenant and its first key.
    CreateTenant {
        /// The tenant.
        tenant: TenantRow,
        /// Its first key version.
        kek: KekRow,
    },
    /// A new version of a credential. With `create`, the credential row is inserted (its name
    /// must be free); otherwise its fields and labels are updated and `version` must be exactly
    /// one more than the stored latest version, or the write is a `Conflict`. The version's
    /// `stage` is `current` (served from now on; the old current becomes `previous`) or
    /// `pending` (stored beside the current one, which stays served). Either way an older
    /// pending version is retired.
    PutVersion {
        /// The credential (with the version's fields and labels).
        credential: CredentialRow,
        /// The version.
        version: VersionRow,
        /// Whether the credential is new.
        create: bool,
    },
    /// Marks a credential deleted (its versions stay, unreadable through the API).
    DeleteCredential {
        /// The credential.
        id: CredentialId,
        /// When.
        at: Timestamp,
    },
    /// A new token.
    CreateToken(TokenRow),
    /// Revokes an active token; `mac` is the row's MAC with `revoked_at` set.
    RevokeToken {
        /// The token.
        id: TokenId,
        /// When.
        at: Timestamp,
        /// The row's new MAC.
        mac: Vec<u8>,
    },
    /// Moves a renewable token's expiry (at most to its `max_expires_at`); `mac` is the row's MAC
    /// with it moved.
    RenewToken {
        /// The token.
        id: TokenId,
        /// Its new expiry.
        expires_at: Timestamp,
        /// The row's new MAC.
        mac: Vec<u8>,
    },
    /// Writes an auth role (new, or replacing the one of that name).
    PutAuthRole(AuthRoleRow),
    /// Deletes an auth role.
    DeleteAuthRole {
        /// Its name.
        name: String,
    },
    /// Ends an incident's freeze of a credential: the caller verified a new secret at its
    /// target. With `fresh = (version, fingerprint)`, only if no other version of the
    /// credential holds that fingerprint (or lacks one): a reused secret keeps the freeze.
    LiftFreeze {
        /// The credential.
        credential: CredentialId,
        /// The verified version and its secret's fingerprint.
        fresh: Option<(u32, Vec<u8>)>,
    },
    /// Moves the credential's campaign items that wait for a new secret to `rotated`, for a
    /// worker to verify, if version `version`'s `fingerprint` differs from every other version's
    /// (a reused secret moves nothing).
    ItemsRotated {
        /// The credential.
        credential: CredentialId,
        /// The version stored.
        version: u32,
        /// Its secret's fingerprint.
        fingerprint: Vec<u8>,
        /// Who stored it.
        by: String,
        /// When.
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
        /// The tenant.
        tenant: TenantId,
        /// The key version.
        version: u32,
        /// Its new state.
        state: KeyState,
        /// When.
        at: Timestamp,
    },
    /// Destroys every KEK version of a tenant and marks the tenant `shredded`.
    ShredTenant {
        /// The tenant.
        tenant: TenantId,
        /// When.
        at: Timestamp,
    },
    /// Moves DEKs to another KEK version (rows that moved meanwhile are skipped) and adds how
    /// many moved to a job's progress.
    RewrapDeks {
        /// The rewrapped data keys.
        updates: Vec<DekUpdate>,
        /// The job whose progress they count toward.
        job: Option<JobId>,
    },
    /// Moves KEKs and system keys to another root version.
    RewrapRoot {
        /// The rewrapped keys.
        updates: Vec<RootRewrap>,
        /// The job whose progress they count toward.
        job: Option<JobId>,
    },
    /// A new root key version.
    InsertRootKey(RootKeyRow),
    /// Sets a root key version's state.
    SetRootKeyState {
        /// The version.
        version: u32,
        /// Its new state.
        state: KeyState,
        /// When.
        at: Timestamp,
    },
    /// A new key job.
    CreateJob(KeyJobRow),
    /// Ends a key job.
    FinishJob {
        /// The job.
        id: JobId,
        /// `done` or `failed`.
        state: JobState,
        /// Why it failed.
        error: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// Makes the pending Shamir keyring the active one.
    CommitKeyring {
        /// The pending keyring's key set id.
        set_id: Vec<u8>,
    },
    /// Replaces the active Shamir keyring (after a root version was destroyed).
    ReplaceKeyring(SealKeyringRow),
    /// Makes the pending version `version` current (the old current becomes previous, the old
    /// previous retired) and sets the credential's fields; `NotFound` unless `version` is the
    /// latest version and above the current one.
    PromotePending {
        /// The credential.
        credential: CredentialId,
        /// The pending version.
        version: u32,
        /// The version's target, which becomes the credential's.
        fields: BTreeMap<String, String>,
        /// When.
        at: Timestamp,
    },
    /// A new certificate.
    InsertCertificate(CertificateRow),
    /// Moves the campaign item that holds `rotation` (if any, and only while it is `rotating`,
    /// `rotated` or `verified`) to `state`, with `error`; stamps the state's time. Written beside
    /// a [`WriteOp::SetRotation`] (see `rekey_types::ItemState::following`).
    FollowRotation {
        /// The rotation.
        rotation: RotationId,
        /// The item's new state.
        state: ItemState,
        /// Why, when it failed.
        error: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// A new rotation; `AlreadyExists` if the credential has an unfinished one.
    InsertRotation(RotationRow),
    /// Moves a rotation from one of the `from` states to `state`; `Conflict` if it was not in
    /// one of them (another server moved it first). The campaign item that holds it moves only
    /// by a [`WriteOp::FollowRotation`] beside it.
    SetRotation {
        /// The rotation.
        id: RotationId,
        /// The states it may move from.
        from: &'static [RotationState],
        /// Its new state.
        state: RotationState,
        /// Why, when it failed.
        error: Option<String>,
        /// When the old version is retired.
        retire_after: Option<Timestamp>,
        /// Set when `Some`; kept otherwise.
        target_ref: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// Sets a version's stage if it is still `from` (no error if it moved on meanwhile).
    SetVersionStage {
        /// The credential.
        credential: CredentialId,
        /// The version.
        version: u32,
        /// The stage it must still be in.
        from: Stage,
        /// Its new stage.
        stage: Stage,
    },
    /// Records (replaces) the last check of a credential.
    RecordHealth(HealthRow),
    /// Stores an incident and its reach (each scope query adds tenants or credentials, with its
    /// reason bit), then counts what it reaches (only the incident's kinds, if set).
    OpenIncident {
        /// The incident.
        incident: IncidentRow,
        /// What its scope reaches.
        scope: Vec<ScopeQuery>,
    },
    /// Marks an incident contained (and frozen: its credentials refuse connectors' reveals until
    /// a new version is current).
    ContainIncident {
        /// The incident.
        id: IncidentId,
        /// Whether to freeze its credentials.
        freeze: bool,
        /// When.
        at: Timestamp,
    },
    /// Closes an open incident; `NotFound` if it is not open.
    CloseIncident {
        /// The incident.
        id: IncidentId,
        /// When.
        at: Timestamp,
    },
    /// Marks a credential (stored in the same write) a decoy.
    PlantDecoy {
        /// The credential.
        credential: CredentialId,
        /// Its tenant.
        tenant: TenantId,
        /// Who planted it.
        by: String,
        /// When.
        at: Timestamp,
    },
    /// An operator's judgement of an open alert: acknowledged with a note, or escalated to an
    /// incident (opened in the same write). "Not found" if the alert is not open.
    HandleAlert {
        /// The alert.
        id: AlertId,
        /// `acknowledged` or `escalated`.
        state: AlertState,
        /// Who.
        by: String,
        /// When.
        at: Timestamp,
        /// The note (acknowledged) or none.
        note: Option<String>,
        /// The incident (escalated).
        incident: Option<IncidentId>,
    },
    /// Records how a rule's automatic action went.
    AlertActed {
        /// The alert.
        id: AlertId,
        /// `done`, or `failed: <why>`.
        outcome: String,
    },
    /// Marks a certificate revoked.
    RevokeCertificate {
        /// Its SHA-256 thumbprint, hex.
        sha256: String,
        /// When.
        at: Timestamp,
    },
    /// Stores a campaign and one item per credential its incident reaches (live ones only),
    /// each `pending`; `Conflict` if the incident is not open, `AlreadyExists` if it already has a
    /// running campaign.
    StartCampaign(CampaignRow),
    /// Moves an item to `rotating` with the rotation that now holds it (written with the
    /// rotation's insert).
    StartItemRotation {
        /// The campaign.
        campaign: CampaignId,
        /// The item's credential.
        credential: CredentialId,
        /// The rotation.
        rotation: RotationId,
        /// Who started it.
        by: String,
        /// When.
        at: Timestamp,
    },
    /// Moves an item from one of the `from` states; `Conflict` if it was in none of them.
    SetItem(ItemUpdate),
    /// Marks a campaign finished; `Conflict` if an item is still open.
    FinishCampaign {
        /// The campaign.
        id: CampaignId,
        /// When.
        at: Timestamp,
    },
    /// Records that a campaign's reminders are queued.
    SetReminded {
        /// The campaign.
        id: CampaignId,
    },
    /// Queues notices (one already queued for the same tenant, channel and purpose is kept).
    QueueNotices(Vec<NoticeRow>),
    /// Records a delivery attempt. A delivered notice moves the tenant's `pending` self-service
    /// items to `notified`.
    SetNotice(NoticeUpdate),
    /// A new reset link.
    InsertLink(LinkRow),
    /// Spends a link; `Conflict` if it was spent, revoked or expired.
    UseLink {
        /// The link.
        id: LinkId,
        /// When.
        at: Timestamp,
    },
    /// Revokes a link.
    RevokeLink {
        /// The link.
        id: LinkId,
        /// When.
        at: Timestamp,
    },
}
