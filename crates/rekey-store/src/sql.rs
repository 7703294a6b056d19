//! [`SqlStore`]: the [`Store`] for SQLite (embedded default) and PostgreSQL.
//!
//! Both run the same statements (`queries`). SQLite runs in WAL mode; a write is on disk when
//! it returns, except through `apply_unsynced`, whose commit is on disk after the next `sync`
//! (see `sqlite`). All writes go through one connection (SQLite has one writer anyway) and
//! reads through a few more, each on a blocking thread. PostgreSQL uses one
//! pool; several Rekey servers may share the database, and the audit head row is locked
//! (`FOR UPDATE`) while a batch appends, so the chain stays linear across servers.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use rekey_types::{
    AlertId, AlertState, CampaignId, CredentialId, IncidentId, JobId, LinkId, RotationId, TenantId, TenantName,
    Timestamp, TokenId,
};
use sqlx::PgPool;

use crate::conn::ready;
use crate::model::*;
use crate::postgres::{self, PgConn};
use crate::queries as q;
use crate::reveal_cache::Changes;
use crate::sqlite::SqlitePool;
use crate::{BlockingWrites, ChainFn, Store, StoreError};

/// The database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite, one file (the default).
    Sqlite,
    /// PostgreSQL, which several servers may share.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://PATH` or `postgres://...`.
    pub url: String,
    /// Read connections (SQLite) or all connections (PostgreSQL).
    pub max_connections: u32,
}

enum Engine {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The store on SQLite or PostgreSQL.
pub struct SqlStore {
    engine: Engine,
}

/// Runs one `queries` function on a read connection (`read`; `point` for one indexed row) or
/// the write connection (`write`).
/// The arguments must be owned: on SQLite the call moves to a blocking thread.
macro_rules! run {
    ($self:ident, $mode:ident, |$c:ident| $body:expr) => {
        match &$self.engine {
            Engine::Sqlite(pool) => pool.$mode(move |$c| ready($body)).await,
            Engine::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(postgres::backend)?;
                let $c = &mut PgConn(&mut conn);
                $body.await
            }
        }
    };
}

impl SqlStore {
    /// Connects and brings the schema up to date.
    pub async fn open(options: &StoreOptions) -> Result<Self, StoreError> {
        let engine = if let Some(path) = options.url.strip_prefix("sqlite://") {
            let path = PathBuf::from(path.split('?').next().unwrap_or(path));
            let pool = SqlitePool::open(&path, options.max_connections.clamp(1, 8))?;
            pool.write(|c| ready(q::migrate(c))).await?;
            pool.write(|c| ready(q::grow(c))).await?;
            pool.start_background()?;
            Engine::Sqlite(pool)
        } else if options.url.starts_with("postgres://") || options.url.starts_with("postgresql://") {
            let pool = postgres::pool(&options.url, options.max_connections).await?;
            let mut conn = pool.acquire().await.map_err(postgres::backend)?;
            q::migrate(&mut PgConn(&mut conn)).await?;
            q::grow(&mut PgConn(&mut conn)).await?;
            Engine::Postgres(pool)
        } else {
            return Err(StoreError::Corrupt("store url must start with sqlite:// or postgres://".into()));
        };
        Ok(Self { engine })
    }

    /// SQLite: the bytes of sealed reveal rows kept in memory (0: none; default
    /// [`DEFAULT_REVEAL_CACHE_BYTES`]). PostgreSQL keeps none: other servers write the same rows.
    pub fn set_reveal_cache_bytes(&self, bytes: u64) {
        if let Engine::Sqlite(pool) = &self.engine {
            pool.reveals().set_budget(bytes);
        }
    }
}

/// The default of [`SqlStore::set_reveal_cache_bytes`].
pub const DEFAULT_REVEAL_CACHE_BYTES: u64 = crate::reveal_cache::DEFAULT_BYTES;

#[async_trait]
impl Store for SqlStore {
    fn reveal_cache(&self) -> Option<RevealCacheStats> {
        match &self.engine {
            Engine::Sqlite(pool) => Some(pool.reveals().stats()),
            Engine::Postgres(_) => None,
        }
    }

    fn backend(&self) -> Backend {
        match self.engine {
            Engine::Sqlite(_) => Backend::Sqlite,
            Engine::Postgres(_) => Backend::Postgres,
        }
    }

    async fn tenant_by_name(&self, name: &TenantName) -> Result<Option<TenantRow>, StoreError> {
        let name = name.to_string();
        run!(self, point, |c| q::tenant_by(c, "name", name))
    }

    async fn tenant_by_id(&self, id: TenantId) -> Result<Option<TenantRow>, StoreError> {
        run!(self, point, |c| q::tenant_by(c, "id", id.to_string()))
    }

    async fn list_tenants(&self, filter: &TenantFilter) -> Result<Vec<TenantRow>, StoreError> {
        let filter = filter.clone();
        run!(self, read, |c| q::list_tenants(c, filter))
    }

    async fn kek(&self, tenant: TenantId, version: u32) -> Result<Option<KekRow>, StoreError> {
        run!(self, point, |c| q::kek(c, tenant.to_string(), Some(version)))
    }

    async fn active_kek(&self, tenant: TenantId) -> Result<Option<KekRow>, StoreError> {
        run!(self, point, |c| q::kek(c, tenant.to_string(), None))
    }

    async fn credential(&self, tenant: TenantId, name: &str) -> Result<Option<CredentialRow>, StoreError> {
        let name = name.to_owned();
        run!(self, point, |c| q::credential(c, tenant.to_string(), name))
    }

    async fn credentials_named(&self, tenant: TenantId, names: Vec<String>) -> Result<Vec<CredentialRow>, StoreError> {
        run!(self, read, |c| q::credentials_named(c, tenant.to_string(), names))
    }

    async fn list_credentials(&self, filter: &CredentialFilter) -> Result<Vec<CredentialListRow>, StoreError> {
        let filter = filter.clone();
        run!(self, read, |c| q::list_credentials(c, filter))
    }

    async fn version(&self, credential: CredentialId, version: Option<u32>) -> Result<Option<VersionRow>, StoreError> {
        run!(self, point, |c| q::version(c, credential.to_string(), version))
    }

    async fn list_versions(&self, credential: CredentialId) -> Result<Vec<VersionMeta>, StoreError> {
        run!(self, read, |c| q::list_versions(c, credential.to_string()))
    }

    async fn reveal_row(&self, tenant: &TenantName, name: &str) -> Result<Option<RevealRow>, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_owned());
        match &self.engine {
            // This server is the only writer of its SQLite file: see `crate::reveal_cache`.
            Engine::Sqlite(pool) => {
                if let Some(row) = pool.reveals().get(&tenant, &name) {
                    return Ok(Some(row));
                }
                let seen = pool.reveals().epoch();
                let (t, n) = (tenant.clone(), name.clone());
                let row = pool.point(move |c| ready(q::reveal_row(c, t, n))).await?;
                if let Some(row) = &row {
                    pool.reveals().put(&tenant, &name, seen, row);
                }
                Ok(row)
            }
            Engine::Postgres(_) => run!(self, point, |c| q::reveal_row(c, tenant, name)),
        }
    }

    async fn legacy_versions(
        &self,
        bound: bool,
        after: Option<(CredentialId, u32)>,
        limit: u32,
    ) -> Result<Vec<LegacyVersion>, StoreError> {
        let after = after.map(|(c, v)| (c.to_string(), v));
        run!(self, read, |c| q::legacy_versions(c, bound, after, limit))
    }

    async fn integrity_pending(&self, what: &str) -> Result<bool, StoreError> {
        let what = what.to_owned();
        run!(self, point, |c| q::integrity_pending(c, what))
    }

    async fn open_incidents_covering(&self, credential: CredentialId) -> Result<Vec<IncidentRow>, StoreError> {
        run!(self, read, |c| q::open_incidents_covering(c, credential.to_string()))
    }

    async fn token(&self, id: TokenId) -> Result<Option<TokenRow>, StoreError> {
        run!(self, point, |c| q::token(c, id.to_string()))
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        run!(self, read, |c| q::list_tokens(c))
    }

    async fn auth_role(&self, name: &str) -> Result<Option<AuthRoleRow>, StoreError> {
        let name = name.to_owned();
        run!(self, point, |c| q::auth_role(c, name))
    }

    async fn list_auth_roles(&self) -> Result<Vec<AuthRoleRow>, StoreError> {
        run!(self, read, |c| q::list_auth_roles(c))
    }

    async fn system_key(&self, purpose: &str) -> Result<Option<SystemKeyRow>, StoreError> {
        let purpose = purpose.to_owned();
        run!(self, read, |c| q::system_key(c, purpose))
    }

    async fn insert_system_key(&self, row: &SystemKeyRow) -> Result<bool, StoreError> {
        let row = row.clone();
        run!(self, write_other, |c| q::insert_system_key(c, row))
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        run!(self, read, |c| q::counts(c))
    }

    async fn root_keys(&self) -> Result<Vec<RootKeyRow>, StoreError> {
        run!(self, read, |c| q::root_keys(c))
    }

    async fn key_epoch(&self) -> Result<u64, StoreError> {
        run!(self, point, |c| q::key_epoch(c))
    }

    async fn seal_keyring(&self, slot: &str) -> Result<Option<SealKeyringRow>, StoreError> {
        let slot = slot.to_owned();
        run!(self, read, |c| q::seal_keyring(c, slot))
    }

    async fn put_seal_keyring(&self, row: &SealKeyringRow) -> Result<bool, StoreError> {
        let row = row.clone();
        run!(self, write_other, |c| q::put_seal_keyring(c, row))
    }

    async fn keks(&self, tenant: Option<TenantId>) -> Result<Vec<KekRow>, StoreError> {
        run!(self, read, |c| q::keks(c, tenant.map(|t| t.to_string())))
    }

    async fn dek_counts(&self, tenant: Option<TenantId>) -> Result<Vec<DekCount>, StoreError> {
        run!(self, read, |c| q::dek_counts(c, tenant.map(|t| t.to_string())))
    }

    async fn deks_to_rewrap(&self, tenant: TenantId, target: u32, limit: u32) -> Result<Vec<DekRow>, StoreError> {
        run!(self, read, |c| q::deks_to_rewrap(c, tenant.to_string(), target, limit))
    }

    async fn root_wrapped(&self, target: u32, limit: u32) -> Result<Vec<RootRewrap>, StoreError> {
        run!(self, read, |c| q::root_wrapped(c, target, limit))
    }

    async fn wrapped_by(&self, tenant: TenantId, version: u32, limit: u32) -> Result<Vec<WrappedBy>, StoreError> {
        run!(self, read, |c| q::wrapped_by(c, tenant.to_string(), version, limit))
    }

    async fn tenant_ids(&self) -> Result<Vec<TenantId>, StoreError> {
        run!(self, read, |c| q::tenant_ids(c))
    }

    async fn count_versions(&self, tenant: Option<TenantId>) -> Result<i64, StoreError> {
        run!(self, read, |c| q::count_versions(c, tenant.map(|t| t.to_string())))
    }

    async fn jobs(&self, running_only: bool, limit: u32) -> Result<Vec<KeyJobRow>, StoreError> {
        run!(self, read, |c| q::jobs(c, running_only, limit))
    }

    async fn job(&self, id: JobId) -> Result<Option<KeyJobRow>, StoreError> {
        run!(self, point, |c| q::job(c, id.to_string()))
    }

    async fn certificates(&self, not_after_before: Option<Timestamp>) -> Result<Vec<CertificateRow>, StoreError> {
        run!(self, read, |c| q::certificates(c, not_after_before.map(Timestamp::as_micros)))
    }

    async fn certificate(&self, thumbprint: &str) -> Result<Option<CertificateRow>, StoreError> {
        let thumbprint = thumbprint.to_owned();
        run!(self, point, |c| q::certificate(c, thumbprint))
    }

    async fn certificate_of(
        &self,
        credential: CredentialId,
        version: u32,
    ) -> Result<Option<CertificateRow>, StoreError> {
        run!(self, point, |c| q::certificate_of(c, credential.to_string(), version))
    }

    async fn rotation(&self, id: RotationId) -> Result<Option<RotationRow>, StoreError> {
        run!(self, point, |c| q::rotation(c, id.to_string()))
    }

    async fn rotations_of(&self, credential: CredentialId, limit: u32) -> Result<Vec<RotationRow>, StoreError> {
        run!(self, read, |c| q::rotations_of(c, credential.to_string(), limit))
    }

    async fn rotations_due(&self, now: Timestamp, limit: u32) -> Result<Vec<RotationRow>, StoreError> {
        run!(self, read, |c| q::rotations_due(c, now.as_micros(), limit))
    }

    async fn health(&self, credential: CredentialId) -> Result<Option<HealthRow>, StoreError> {
        run!(self, point, |c| q::health(c, credential.to_string()))
    }

    async fn stale_health(&self, before: Timestamp, limit: u32) -> Result<Vec<StaleCredential>, StoreError> {
        run!(self, read, |c| q::stale_health(c, before.as_micros(), limit))
    }

    async fn health_counts(&self) -> Result<Vec<HealthCount>, StoreError> {
        run!(self, read, |c| q::health_counts(c))
    }

    async fn incident(&self, id: IncidentId) -> Result<Option<IncidentRow>, StoreError> {
        run!(self, point, |c| q::incident(c, id.to_string()))
    }

    async fn incidents(&self, limit: u32) -> Result<Vec<IncidentRow>, StoreError> {
        run!(self, read, |c| q::incidents(c, limit))
    }

    async fn incident_items(
        &self,
        incident: &IncidentRow,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<IncidentItemRow>, StoreError> {
        let incident = incident.clone();
        run!(self, read, |c| q::incident_items(c, incident, after, limit))
    }

    async fn incident_reveals(&self, incident: &IncidentRow, since: Timestamp) -> Result<(i64, i64), StoreError> {
        let incident = incident.clone();
        run!(self, read, |c| q::incident_reveals(c, incident, since.as_micros()))
    }

    async fn reveal_counts(&self, resources: Vec<String>, since: Timestamp) -> Result<Vec<(String, i64)>, StoreError> {
        run!(self, read, |c| q::reveal_counts(c, resources, since.as_micros()))
    }

    async fn reveals_by(&self, principal: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let principal = principal.to_owned();
        run!(self, read, |c| q::reveals_by(c, principal))
    }

    async fn audit_of(&self, resource: &str, limit: u32) -> Result<Vec<StoredAudit>, StoreError> {
        let resource = resource.to_owned();
        run!(self, read, |c| q::audit_of(c, resource, limit))
    }

    async fn audit_of_tenant(
        &self,
        tenant: &str,
        after: i64,
        through: i64,
        limit: u32,
    ) -> Result<Vec<StoredAudit>, StoreError> {
        let tenant = tenant.to_owned();
        run!(self, read, |c| q::audit_of_tenant(c, tenant, after, through, limit))
    }

    async fn audit_index_lag(&self) -> Result<Option<i64>, StoreError> {
        match &self.engine {
            Engine::Sqlite(pool) => pool.point(|c| ready(q::audit_index_lag(c))).await.map(Some),
            Engine::Postgres(_) => Ok(None),
        }
    }

    async fn campaign(&self, id: CampaignId) -> Result<Option<CampaignRow>, StoreError> {
        run!(self, point, |c| q::campaign(c, id.to_string()))
    }

    async fn campaigns(&self, running_only: bool, limit: u32) -> Result<Vec<CampaignRow>, StoreError> {
        run!(self, read, |c| q::campaigns(c, running_only, limit))
    }

    async fn item_counts(&self, campaign: CampaignId, by_tenant: bool) -> Result<Vec<ItemCount>, StoreError> {
        run!(self, read, |c| q::item_counts(c, campaign.to_string(), by_tenant))
    }

    async fn open_items(&self, campaign: CampaignId) -> Result<i64, StoreError> {
        run!(self, read, |c| q::open_items(c, campaign.to_string()))
    }

    async fn campaign_items(
        &self,
        campaign: CampaignId,
        filter: &ItemFilter,
    ) -> Result<Vec<CampaignItemRow>, StoreError> {
        let filter = filter.clone();
        run!(self, read, |c| q::campaign_items(c, campaign.to_string(), filter))
    }

    async fn campaign_item(
        &self,
        campaign: CampaignId,
        credential: CredentialId,
    ) -> Result<Option<CampaignItemRow>, StoreError> {
        run!(self, point, |c| q::campaign_item(c, campaign.to_string(), credential.to_string()))
    }

    async fn tenant_outstanding(
        &self,
        campaign: CampaignId,
        tenant: TenantId,
    ) -> Result<Vec<CampaignItemRow>, StoreError> {
        run!(self, read, |c| q::tenant_outstanding(c, campaign.to_string(), tenant.to_string()))
    }

    async fn notices(&self, campaign: CampaignId) -> Result<Vec<NoticeRow>, StoreError> {
        run!(self, read, |c| q::notices(c, campaign.to_string()))
    }

    async fn due_notices(&self, now: Timestamp, limit: u32) -> Result<Vec<NoticeRow>, StoreError> {
        run!(self, read, |c| q::due_notices(c, now.as_micros(), limit))
    }

    async fn tenants_to_notify(
        &self,
        campaign: CampaignId,
        purpose: &str,
        limit: u32,
    ) -> Result<Vec<(TenantId, String)>, StoreError> {
        let purpose = purpose.to_owned();
        run!(self, read, |c| q::tenants_to_notify(c, campaign.to_string(), purpose, limit))
    }

    async fn link(&self, id: LinkId) -> Result<Option<LinkRow>, StoreError> {
        run!(self, point, |c| q::link(c, id.to_string()))
    }

    async fn claim_items(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> Result<Vec<CampaignItemRow>, StoreError> {
        run!(self, write_other, |c| q::claim_items(c, now.as_micros(), until.as_micros(), limit))
    }

    async fn release_leases(&self) -> Result<(), StoreError> {
        run!(self, write_other, |c| q::release_leases(c))
    }

    async fn tree_head(&self) -> Result<TreeHead, StoreError> {
        run!(self, read, |c| q::tree_head(c))
    }

    async fn tree_nodes(&self, nodes: Vec<rekey_tlog::Node>) -> Result<Vec<rekey_tlog::Hash>, StoreError> {
        run!(self, read, |c| q::tree_nodes(c, nodes))
    }

    async fn insert_checkpoint(&self, checkpoint: &NewCheckpoint) -> Result<i64, StoreError> {
        let checkpoint = checkpoint.clone();
        run!(self, write_other, |c| q::insert_checkpoint(c, checkpoint))
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        run!(self, read, |c| q::latest_checkpoint(c))
    }

    async fn latest_cosigned_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        run!(self, read, |c| q::latest_cosigned_checkpoint(c))
    }

    async fn checkpoint_covering(&self, size: u64) -> Result<Option<CheckpointRow>, StoreError> {
        run!(self, read, |c| q::checkpoint_covering(c, size))
    }

    async fn add_cosignature(&self, id: i64, cosignature: &CosignatureRow) -> Result<(), StoreError> {
        let cosignature = cosignature.clone();
        run!(self, write_other, |c| q::add_cosignature(c, id, cosignature))
    }

    async fn advance_tenant_logs(&self, to: i64) -> Result<i64, StoreError> {
        loop {
            let reached = run!(self, write_other, |c| q::advance_tenant_logs(c, to))?;
            if reached >= to {
                return Ok(reached);
            }
        }
    }

    async fn tenant_logs(&self) -> Result<(i64, Vec<rekey_tlog::tenants::TenantLog>), StoreError> {
        run!(self, read, |c| q::tenant_logs(c))
    }

    async fn tenant_leaves(
        &self,
        tenant: &str,
        through: i64,
    ) -> Result<Vec<(i64, Timestamp, rekey_tlog::Hash)>, StoreError> {
        let tenant = tenant.to_owned();
        run!(self, read, |c| q::tenant_leaves(c, tenant, through))
    }

    async fn siem_cursor(&self, sink: &str) -> Result<i64, StoreError> {
        let sink = sink.to_owned();
        run!(self, read, |c| q::siem_cursor(c, sink))
    }

    async fn set_siem_cursor(&self, sink: &str, seq: i64) -> Result<(), StoreError> {
        let sink = sink.to_owned();
        run!(self, write_other, |c| q::set_siem_cursor(c, sink, seq))
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        run!(self, read, |c| q::audit_head(c))
    }

    async fn audit_tail(&self, n: u32) -> Result<Vec<StoredAudit>, StoreError> {
        run!(self, read, |c| q::audit_tail(c, n))
    }

    async fn insert_alerts(&self, cursor: &str, upto: i64, alerts: Vec<AlertRow>) -> Result<Vec<AlertId>, StoreError> {
        let cursor = cursor.to_owned();
        run!(self, write_other, |c| q::insert_alerts(c, cursor, upto, alerts))
    }

    async fn alert(&self, id: AlertId) -> Result<Option<AlertRow>, StoreError> {
        let id = id.to_string();
        run!(self, point, |c| q::alert(c, id))
    }

    async fn alerts(&self, state: Option<AlertState>, limit: u32) -> Result<Vec<AlertRow>, StoreError> {
        run!(self, read, |c| q::alerts(c, state, limit))
    }

    async fn unnotified_alerts(&self, max_attempts: i64, limit: u32) -> Result<Vec<AlertRow>, StoreError> {
        run!(self, read, |c| q::unnotified_alerts(c, max_attempts, limit))
    }

    async fn alert_notified(&self, id: AlertId, at: Option<Timestamp>) -> Result<(), StoreError> {
        let (id, at) = (id.to_string(), at.map(|t| t.as_micros()));
        run!(self, write_other, |c| q::alert_notified(c, id, at))
    }

    async fn decoys(&self, tenant: Option<TenantId>) -> Result<Vec<DecoyRow>, StoreError> {
        let tenant = tenant.map(|t| t.to_string());
        run!(self, read, |c| q::decoys(c, tenant))
    }

    async fn sources_of(&self, principal: &str, since: Timestamp) -> Result<Vec<SourceUse>, StoreError> {
        let (principal, since) = (principal.to_owned(), since.as_micros());
        run!(self, read, |c| q::sources_of(c, principal, since))
    }

    async fn apply_feed(&self, update: FeedUpdate) -> Result<usize, StoreError> {
        let now = Timestamp::now().as_micros();
        run!(self, write_other, |c| q::apply_feed(c, update, now))
    }

    async fn feed_indicators(&self) -> Result<Vec<FeedIndicatorRow>, StoreError> {
        run!(self, read, |c| q::feed_indicators(c))
    }

    async fn feed_cursor(&self, feed: &str) -> Result<Option<String>, StoreError> {
        let feed = feed.to_owned();
        run!(self, read, |c| q::feed_cursor(c, feed))
    }

    async fn save_baselines(&self, rows: Vec<(String, BaselineRow)>) -> Result<(), StoreError> {
        run!(self, write_other, |c| q::save_baselines(c, rows))
    }

    async fn baselines(&self) -> Result<Vec<(String, BaselineRow)>, StoreError> {
        run!(self, read, |c| q::baselines(c))
    }

    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<StoredAudit>, StoreError> {
        run!(self, read, |c| q::audit_page(c, after, limit))
    }

    async fn apply(&self, requests: Vec<WriteRequest>, chain: Arc<ChainFn>) -> Result<Applied, StoreError> {
        match &self.engine {
            Engine::Sqlite(pool) => {
                let changes = Changes::of(&requests);
                pool.write_with(changes, move |c| ready(q::apply(c, &requests, &*chain))).await
            }
            Engine::Postgres(_) => run!(self, write, |c| q::apply(c, &requests, &*chain)),
        }
    }

    async fn apply_unsynced(&self, requests: Vec<WriteRequest>, chain: Arc<ChainFn>) -> Result<Applied, StoreError> {
        match &self.engine {
            Engine::Sqlite(pool) => {
                let changes = Changes::of(&requests);
                pool.write_unsynced(changes, move |c| ready(q::apply(c, &requests, &*chain))).await
            }
            Engine::Postgres(_) => self.apply(requests, chain).await,
        }
    }

    async fn sync(&self) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sqlite(pool) => pool.sync().await,
            Engine::Postgres(_) => Ok(()),
        }
    }

    fn blocking_writes(&self) -> Option<Box<dyn BlockingWrites>> {
        match &self.engine {
            Engine::Sqlite(pool) => Some(Box::new(pool.writes())),
            Engine::Postgres(_) => None,
        }
    }
}

impl BlockingWrites for crate::sqlite::SqliteWrites {
    fn apply_unsynced(&self, requests: &[WriteRequest], chain: &ChainFn) -> Result<Applied, StoreError> {
        let changes = Changes::of(requests);
        self.write_unsynced(changes, |c| ready(q::apply(c, requests, chain)))
    }

    fn sync(&self) -> Result<(), StoreError> {
        crate::sqlite::SqliteWrites::sync(self)
    }
}
