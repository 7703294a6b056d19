//! The `Store` trait and its SQL implementation for SQLite (the embedded default) and PostgreSQL.
//!
//! The store keeps rows; it never sees a key or a secret in clear (it holds ciphertexts and
//! wrapped keys only). Reads are plain async calls. Every write goes through [`Store::apply`],
//! which commits a group of operations together with their audit events in one transaction, so
//! that a write is never durable without its audit event and many writes share one fsync.
//!
//! Must never: turn a backend failure into "not found" (`StoreError::Backend` is its own case);
//! write an audit event outside the hash chain.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit_index;
mod conn;
mod model;
mod postgres;
mod proofs;
mod queries;
mod reveal_cache;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use rekey_types::{
    AlertId, AlertState, CampaignId, CredentialId, IncidentId, JobId, LinkId, RotationId, TenantId, TenantName,
    Timestamp, TokenId,
};

pub use model::*;
pub use proofs::{with_tree_nodes, NodeSource};
pub use sql::{Backend, SqlStore, StoreOptions, DEFAULT_REVEAL_CACHE_BYTES};
pub use sqlite::wait_until_closed;

/// Errors of the store. A backend failure is never turned into "not found".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such row.
    #[error("{entity} {id} not found")]
    NotFound {
        /// What was looked for (`tenant`, …).
        entity: &'static str,
        /// Its key, as text.
        id: String,
    },
    /// A row with that key exists.
    #[error("{entity} {id} already exists")]
    AlreadyExists {
        /// What was written.
        entity: &'static str,
        /// Its key, as text.
        id: String,
    },
    /// A concurrent update won, or the row was not in a state the write allows.
    #[error("write conflicted with a concurrent update")]
    Conflict,
    /// A unique key was already taken (mapped to `AlreadyExists` or `Conflict` where expected).
    #[error("a row with that key already exists")]
    Duplicate,
    /// A database constraint refused the write.
    #[error("a database constraint refused the write: {0}")]
    Constraint(String),
    /// A stored value does not decode (an unknown state, a malformed column).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A migration failed.
    #[error("database migration failed")]
    Migrate(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The SQLite store is held by another server (one server per SQLite file).
    #[error("{0}")]
    InUse(String),
}

/// Computes the chain MAC of an audit record from the previous MAC and the record's canonical
/// bytes. Supplied by the caller, who holds the audit key; the store never does.
pub type ChainFn = dyn Fn(&[u8; 32], &[u8]) -> [u8; 32] + Send + Sync;

/// Every read and the one write path of Rekey's data. Reads are plain async calls; every write goes through [`Store::apply`] with its audit events.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> Backend;

    /// The reveal cache's figures, for a store that keeps one (SQLite).
    fn reveal_cache(&self) -> Option<RevealCacheStats> {
        None
    }

    /// A tenant by name.
    async fn tenant_by_name(&self, name: &TenantName) -> Result<Option<TenantRow>, StoreError>;
    /// A tenant by id.
    async fn tenant_by_id(&self, id: TenantId) -> Result<Option<TenantRow>, StoreError>;
    /// Tenants by name, one page.
    async fn list_tenants(&self, filter: &TenantFilter) -> Result<Vec<TenantRow>, StoreError>;
    /// One version of a tenant's key.
    async fn kek(&self, tenant: TenantId, version: u32) -> Result<Option<KekRow>, StoreError>;
    /// The newest `active` KEK of a tenant: the one new DEKs are wrapped with.
    async fn active_kek(&self, tenant: TenantId) -> Result<Option<KekRow>, StoreError>;

    /// A live (not deleted) credential by its tenant and name.
    async fn credential(&self, tenant: TenantId, name: &str) -> Result<Option<CredentialRow>, StoreError>;
    /// The live credentials of one tenant among `names` (an import's lookups, a few round trips
    /// for thousands of names); names without one are left out.
    async fn credentials_named(&self, tenant: TenantId, names: Vec<String>) -> Result<Vec<CredentialRow>, StoreError>;
    /// Credentials by tenant and name, one page.
    async fn list_credentials(&self, filter: &CredentialFilter) -> Result<Vec<CredentialListRow>, StoreError>;
    /// One version (or, with `None`, the current one) including its ciphertext.
    async fn version(&self, credential: CredentialId, version: Option<u32>) -> Result<Option<VersionRow>, StoreError>;
    /// Every version of a credential, without ciphertexts.
    async fn list_versions(&self, credential: CredentialId) -> Result<Vec<VersionMeta>, StoreError>;
    /// Everything a reveal needs in one round trip: the live credential and its current version.
    async fn reveal_row(&self, tenant: &TenantName, name: &str) -> Result<Option<RevealRow>, StoreError>;

    /// Versions stored before target binding (at most `limit`); with `bound`, versions stored
    /// after it instead, in key order after `after` (to build a legacy store for tests).
    async fn legacy_versions(
        &self,
        bound: bool,
        after: Option<(CredentialId, u32)>,
        limit: u32,
    ) -> Result<Vec<LegacyVersion>, StoreError>;
    /// Whether a one-time integrity step is still to be done (`tokens`: seal the token rows;
    /// `versions`: bind the versions stored before target binding).
    async fn integrity_pending(&self, what: &str) -> Result<bool, StoreError>;
    /// The open incidents whose scope holds the credential.
    async fn open_incidents_covering(&self, credential: CredentialId) -> Result<Vec<IncidentRow>, StoreError>;

    /// A token by id (its hash and powers).
    async fn token(&self, id: TokenId) -> Result<Option<TokenRow>, StoreError>;
    /// Every token.
    async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError>;
    /// An auth role by name.
    async fn auth_role(&self, name: &str) -> Result<Option<AuthRoleRow>, StoreError>;
    /// Every auth role, by name.
    async fn list_auth_roles(&self) -> Result<Vec<AuthRoleRow>, StoreError>;

    /// The newest version of a system key.
    async fn system_key(&self, purpose: &str) -> Result<Option<SystemKeyRow>, StoreError>;
    /// Stores a system key unless one exists for its purpose and version; `false` if one did.
    /// Not audited here: the caller audits once it knows which key won.
    async fn insert_system_key(&self, row: &SystemKeyRow) -> Result<bool, StoreError>;

    /// What the store holds, counted.
    async fn counts(&self) -> Result<Counts, StoreError>;

    /// Every root key version.
    async fn root_keys(&self) -> Result<Vec<RootKeyRow>, StoreError>;

    /// A counter that moves whenever any tenant or root key row is changed or deleted, by
    /// anyone (a trigger keeps it): while it stands still, no key state read before has changed.
    async fn key_epoch(&self) -> Result<u64, StoreError>;
    /// The Shamir keyring in `slot` (`active` or `pending`).
    async fn seal_keyring(&self, slot: &str) -> Result<Option<SealKeyringRow>, StoreError>;
    /// Stores a Shamir keyring without an audit event (see `queries::put_seal_keyring`).
    async fn put_seal_keyring(&self, row: &SealKeyringRow) -> Result<bool, StoreError>;
    /// Every KEK version of one tenant, or of all tenants.
    async fn keks(&self, tenant: Option<TenantId>) -> Result<Vec<KekRow>, StoreError>;
    /// How many credential versions each tenant key version wraps.
    async fn dek_counts(&self, tenant: Option<TenantId>) -> Result<Vec<DekCount>, StoreError>;
    /// Data keys of a tenant not yet under key version `target`, at most `limit`.
    async fn deks_to_rewrap(&self, tenant: TenantId, target: u32, limit: u32) -> Result<Vec<DekRow>, StoreError>;
    /// Tenant and system keys not yet under root version `target`, at most `limit`.
    async fn root_wrapped(&self, target: u32, limit: u32) -> Result<Vec<RootRewrap>, StoreError>;
    /// The credential versions a tenant key version wraps, at most `limit`.
    async fn wrapped_by(&self, tenant: TenantId, version: u32, limit: u32) -> Result<Vec<WrappedBy>, StoreError>;
    /// Ids of every tenant not shredded, in id order.
    async fn tenant_ids(&self) -> Result<Vec<TenantId>, StoreError>;
    /// Credential versions, of one tenant or all.
    async fn count_versions(&self, tenant: Option<TenantId>) -> Result<i64, StoreError>;
    /// Key jobs, newest first (only running ones if asked).
    async fn jobs(&self, running_only: bool, limit: u32) -> Result<Vec<KeyJobRow>, StoreError>;
    /// A key job.
    async fn job(&self, id: JobId) -> Result<Option<KeyJobRow>, StoreError>;
    /// Certificates, or only those whose `not_after` is before the given time.
    async fn certificates(&self, not_after_before: Option<Timestamp>) -> Result<Vec<CertificateRow>, StoreError>;
    /// A certificate by SHA-1 or SHA-256 thumbprint.
    async fn certificate(&self, thumbprint: &str) -> Result<Option<CertificateRow>, StoreError>;
    /// The certificate whose private key is a given credential version, if any.
    async fn certificate_of(
        &self,
        credential: CredentialId,
        version: u32,
    ) -> Result<Option<CertificateRow>, StoreError>;

    /// A rotation.
    async fn rotation(&self, id: RotationId) -> Result<Option<RotationRow>, StoreError>;
    /// The newest rotations of one credential, newest first.
    async fn rotations_of(&self, credential: CredentialId, limit: u32) -> Result<Vec<RotationRow>, StoreError>;
    /// Rotations with a step to take: unfinished ones, and promoted ones whose grace period ended
    /// before `now`; not those a campaign item holds (its worker takes them). Oldest first.
    async fn rotations_due(&self, now: Timestamp, limit: u32) -> Result<Vec<RotationRow>, StoreError>;
    /// The last check of a credential.
    async fn health(&self, credential: CredentialId) -> Result<Option<HealthRow>, StoreError>;
    /// Live credentials with a target whose last check is before `before`, or never checked.
    async fn stale_health(&self, before: Timestamp, limit: u32) -> Result<Vec<StaleCredential>, StoreError>;
    /// Credentials by kind and last check status.
    async fn health_counts(&self) -> Result<Vec<HealthCount>, StoreError>;

    /// An incident.
    async fn incident(&self, id: IncidentId) -> Result<Option<IncidentRow>, StoreError>;
    /// The newest incidents first.
    async fn incidents(&self, limit: u32) -> Result<Vec<IncidentRow>, StoreError>;
    /// A page of the incident's credentials by tenant and name, after `(tenant, name)`.
    async fn incident_items(
        &self,
        incident: &IncidentRow,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<IncidentItemRow>, StoreError>;
    /// Successful reveals of an incident's credentials at or after `since`: (events, credentials).
    async fn incident_reveals(&self, incident: &IncidentRow, since: Timestamp) -> Result<(i64, i64), StoreError>;
    /// Successful reveals at or after `since` of each of these `tenant/name` resources.
    async fn reveal_counts(&self, resources: Vec<String>, since: Timestamp) -> Result<Vec<(String, i64)>, StoreError>;
    /// What a principal (`token:<id>`) revealed, by `tenant/name`.
    async fn reveals_by(&self, principal: &str) -> Result<Vec<(String, i64)>, StoreError>;
    /// The audit events about one resource, oldest first.
    async fn audit_of(&self, resource: &str, limit: u32) -> Result<Vec<StoredAudit>, StoreError>;
    /// Up to `limit` audit events about tenant `tenant` (by `rekey_types::audit::tenant_of`:
    /// `tenant:<name>` and `<name>/<credential>`) with `after < seq <= through`, oldest first.
    async fn audit_of_tenant(
        &self,
        tenant: &str,
        after: i64,
        through: i64,
        limit: u32,
    ) -> Result<Vec<StoredAudit>, StoreError>;

    /// A campaign.
    async fn campaign(&self, id: CampaignId) -> Result<Option<CampaignRow>, StoreError>;
    /// The newest campaigns first (only running ones, if asked).
    async fn campaigns(&self, running_only: bool, limit: u32) -> Result<Vec<CampaignRow>, StoreError>;
    /// Item counts by state, overall or by tenant.
    async fn item_counts(&self, campaign: CampaignId, by_tenant: bool) -> Result<Vec<ItemCount>, StoreError>;
    /// Items still to be done (failed ones with a retry planned included).
    async fn open_items(&self, campaign: CampaignId) -> Result<i64, StoreError>;
    /// A campaign's items, one page.
    async fn campaign_items(
        &self,
        campaign: CampaignId,
        filter: &ItemFilter,
    ) -> Result<Vec<CampaignItemRow>, StoreError>;
    /// One item of a campaign.
    async fn campaign_item(
        &self,
        campaign: CampaignId,
        credential: CredentialId,
    ) -> Result<Option<CampaignItemRow>, StoreError>;
    /// A tenant's self-service items still to be reset (pending, notified or failed).
    async fn tenant_outstanding(
        &self,
        campaign: CampaignId,
        tenant: TenantId,
    ) -> Result<Vec<CampaignItemRow>, StoreError>;
    /// A campaign's notices.
    async fn notices(&self, campaign: CampaignId) -> Result<Vec<NoticeRow>, StoreError>;
    /// Notices due for a delivery attempt.
    async fn due_notices(&self, now: Timestamp, limit: u32) -> Result<Vec<NoticeRow>, StoreError>;
    /// Tenants with self-service items to reset and no notice of `purpose` yet.
    async fn tenants_to_notify(
        &self,
        campaign: CampaignId,
        purpose: &str,
        limit: u32,
    ) -> Result<Vec<(TenantId, String)>, StoreError>;
    /// A reset link.
    async fn link(&self, id: LinkId) -> Result<Option<LinkRow>, StoreError>;
    /// Takes up to `limit` items due at `now` (not leased by anyone), leasing them until `until`.
    /// Not audited: a lease is bookkeeping between workers, and each step it leads to is.
    async fn claim_items(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> Result<Vec<CampaignItemRow>, StoreError>;
    /// Ends every lease; for a server that is the only one using its database (SQLite).
    async fn release_leases(&self) -> Result<(), StoreError>;

    /// The audit chain's head.
    async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError>;
    /// The audit log's Merkle tree: its size (the number of events) and head.
    async fn tree_head(&self) -> Result<TreeHead, StoreError>;
    /// The hashes of complete subtrees of the audit log's tree, in the order asked
    /// (`NotFound` for a subtree the log does not complete yet).
    async fn tree_nodes(&self, nodes: Vec<rekey_tlog::Node>) -> Result<Vec<rekey_tlog::Hash>, StoreError>;
    /// Stores a signed checkpoint of the audit log's tree; answers its number. Not an event of
    /// the log, and not written through the audit writer: a statement about the log, signed,
    /// so that a row a database writer forges does not verify.
    async fn insert_checkpoint(&self, checkpoint: &NewCheckpoint) -> Result<i64, StoreError>;
    /// The last checkpoint stored, with its cosignatures.
    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError>;
    /// The last checkpoint stored that a witness cosigned.
    async fn latest_cosigned_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError>;
    /// The last checkpoint stored of at least `size` events.
    async fn checkpoint_covering(&self, size: u64) -> Result<Option<CheckpointRow>, StoreError>;
    /// Stores a witness's cosignature of checkpoint `id`.
    async fn add_cosignature(&self, id: i64, cosignature: &CosignatureRow) -> Result<(), StoreError>;
    /// Advances every tenant's own log over the events up to `to` (in chunks, each its own
    /// transaction); answers how far they reach.
    async fn advance_tenant_logs(&self, to: i64) -> Result<i64, StoreError>;
    /// How far the tenants' own logs reach (a sequence number), and each (its size and head),
    /// sorted by the bytes of the tenant's name.
    async fn tenant_logs(&self) -> Result<(i64, Vec<rekey_tlog::tenants::TenantLog>), StoreError>;
    /// The sequence numbers, times and leaf hashes of the events about `tenant` with
    /// `seq <= through`, in order.
    async fn tenant_leaves(
        &self,
        tenant: &str,
        through: i64,
    ) -> Result<Vec<(i64, Timestamp, rekey_tlog::Hash)>, StoreError>;
    /// The last sequence number SIEM sink `sink` acknowledged (0 for none).
    async fn siem_cursor(&self, sink: &str) -> Result<i64, StoreError>;
    /// Records that SIEM sink `sink` acknowledged every event up to `seq` (never moves back).
    async fn set_siem_cursor(&self, sink: &str, seq: i64) -> Result<(), StoreError>;
    /// Stores the alerts whose key is not stored yet and moves cursor `cursor` to `upto` (never
    /// back), in one transaction; answers the ids of the alerts this call stored.
    async fn insert_alerts(&self, cursor: &str, upto: i64, alerts: Vec<AlertRow>) -> Result<Vec<AlertId>, StoreError>;
    /// One alert.
    async fn alert(&self, id: AlertId) -> Result<Option<AlertRow>, StoreError>;
    /// The newest `limit` alerts, of one state if given.
    async fn alerts(&self, state: Option<AlertState>, limit: u32) -> Result<Vec<AlertRow>, StoreError>;
    /// Alerts whose notice was not delivered in fewer than `max_attempts` attempts, oldest first.
    async fn unnotified_alerts(&self, max_attempts: i64, limit: u32) -> Result<Vec<AlertRow>, StoreError>;
    /// Counts one delivery attempt of an alert's notice, delivered at `at` if it was.
    async fn alert_notified(&self, id: AlertId, at: Option<Timestamp>) -> Result<(), StoreError>;
    /// The live decoy credentials, of one tenant if given.
    async fn decoys(&self, tenant: Option<TenantId>) -> Result<Vec<DecoyRow>, StoreError>;
    /// Per source address, what `principal` did from it since `since` (at most 1,000 sources).
    async fn sources_of(&self, principal: &str, since: Timestamp) -> Result<Vec<SourceUse>, StoreError>;
    /// Applies one read of a threat feed (in one transaction); answers how many indicators it took.
    async fn apply_feed(&self, update: FeedUpdate) -> Result<usize, StoreError>;
    /// Every indicator of every feed.
    async fn feed_indicators(&self) -> Result<Vec<FeedIndicatorRow>, StoreError>;
    /// Where the next read of a TAXII feed starts.
    async fn feed_cursor(&self, feed: &str) -> Result<Option<String>, StoreError>;
    /// Stores tokens' baselines (the `baseline` rule's memory), each replacing the one before.
    async fn save_baselines(&self, rows: Vec<(String, BaselineRow)>) -> Result<(), StoreError>;
    /// Every stored baseline.
    async fn baselines(&self) -> Result<Vec<(String, BaselineRow)>, StoreError>;
    /// The last `n` events, oldest first.
    async fn audit_tail(&self, n: u32) -> Result<Vec<StoredAudit>, StoreError>;
    /// Up to `limit` events with `seq > after`, in order.
    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<StoredAudit>, StoreError>;
    /// Audit events not yet in the audit log's deferred indexes (SQLite keeps them behind the
    /// writer); `None` where the indexes are kept with every commit (PostgreSQL). Queries
    /// include such events either way, by scanning them.
    async fn audit_index_lag(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }

    /// Applies each request's operation (each in its own savepoint: one failing does not undo the
    /// others), appends every request's audit event to the chain (marked as an error where its
    /// operation failed), and commits once. Returns each operation's result and the sequence
    /// number of the last audit event written. `Err` means nothing was committed.
    async fn apply(&self, requests: Vec<WriteRequest>, chain: Arc<ChainFn>) -> Result<Applied, StoreError>;

    /// [`Store::apply`], except that the commit is durable only once a later [`Store::sync`]
    /// has returned. Other connections may see the commit before then; whoever acknowledges
    /// it must wait for the sync. A backend whose commits are always durable (PostgreSQL)
    /// keeps the default.
    async fn apply_unsynced(&self, requests: Vec<WriteRequest>, chain: Arc<ChainFn>) -> Result<Applied, StoreError> {
        self.apply(requests, chain).await
    }

    /// Makes every commit of [`Store::apply_unsynced`] that has returned durable. An error
    /// means they may be lost: the caller must refuse them and every later write.
    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The same two steps as plain calls, for a writer that runs them on threads of its own
    /// rather than hopping to a blocking thread and back for every batch; `None` where a
    /// write is network I/O (PostgreSQL) and belongs on the async runtime.
    fn blocking_writes(&self) -> Option<Box<dyn BlockingWrites>> {
        None
    }
}

/// [`Store::apply_unsynced`] and [`Store::sync`], run on the calling thread (which they block).
/// Both must be called from a thread outside the async runtime.
pub trait BlockingWrites: Send + Sync {
    /// Applies a group of writes and their audit events in one transaction, without waiting for the disk.
    fn apply_unsynced(&self, requests: &[WriteRequest], chain: &ChainFn) -> Result<Applied, StoreError>;
    /// Waits for what `apply_unsynced` wrote to reach the disk.
    fn sync(&self) -> Result<(), StoreError>;
}
