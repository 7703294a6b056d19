//! The vault: the store, the seal, the key cache and the audit writer, and the plumbing every use
//! case shares (authentication, authorization, audit).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rekey_crypto::token::{IssuedToken, PresentedToken};
use rekey_crypto::{AuditKey, KeyContext, Seal, SystemKey};
use rekey_store::{Store, StoreError, SystemKeyRow, TokenRow, WriteOp, WriteRequest};
use rekey_types::{AuditOutcome, AuditRecord, RequestId, Role, TenantName, Timestamp};

use crate::failures::{AttemptKind, Noted};
use crate::keys::KekCache;
use crate::policy::{self, Action, Denial};
use crate::views::{CountsView, StatusView};
use crate::writer::Writer;
use crate::{Caller, CoreError, Principal};

#[derive(Clone)]
pub struct VaultOptions {
    /// Counters the audit writer updates; shared so metrics survive a seal and unseal.
    pub writer_stats: Option<Arc<crate::writer::WriterStats>>,
    /// Lifetime of an issued certificate when the request names none.
    pub cert_lifetime_secs: u64,
    pub connect: crate::connectors::ConnectOptions,
    pub scheduler: crate::scheduler::SchedulerOptions,
    /// Connector counters; shared so metrics survive a seal and unseal.
    pub connector_stats: Option<Arc<crate::connectors::ConnectorStats>>,
    pub campaign: crate::campaigns::CampaignOptions,
    /// Failed attempts per source; shared so that a seal and unseal does not reset them.
    pub failures: Arc<crate::failures::Failures>,
}

impl Default for VaultOptions {
    fn default() -> Self {
        Self {
            writer_stats: None,
            cert_lifetime_secs: crate::certs::DEFAULT_LIFETIME_SECS,
            connect: Default::default(),
            scheduler: Default::default(),
            connector_stats: None,
            campaign: Default::default(),
            failures: Default::default(),
        }
    }
}

pub struct Vault {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) seal: Arc<dyn Seal>,
    pub(crate) keks: KekCache,
    pub(crate) writer: Writer,
    pub(crate) audit_key: Arc<AuditKey>,
    /// Authenticates token rows and fingerprints secrets (see `integrity`).
    pub(crate) integrity: Arc<rekey_crypto::IntegrityKey>,
    pub(crate) credential_locks: crate::locks::CredentialLocks,
    pub(crate) put_hints: crate::hints::PutHints,
    tokens: TokenCache,
    pub(crate) options: VaultOptions,
    /// Set when the vault is sealed: background jobs stop at their next step.
    pub(crate) closed: std::sync::atomic::AtomicBool,
    /// Wakes the job runner when a job is created.
    pub(crate) jobs_wake: Arc<tokio::sync::Notify>,
    pub(crate) hosts: crate::connectors::HostLimiter,
    pub(crate) connector_stats: Arc<crate::connectors::ConnectorStats>,
    /// Wakes the campaign workers when a campaign starts.
    pub(crate) campaigns_wake: Arc<tokio::sync::Notify>,
}

/// How long a token read from the store is trusted before it is read again. A revocation made
/// on this server takes effect at once (the entry is dropped); one made by another server
/// sharing the PostgreSQL database takes effect here within this time.
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Recently read token rows by id. Holds hashes only, never a token secret.
#[derive(Default)]
struct TokenCache {
    entries: std::sync::Mutex<std::collections::HashMap<rekey_types::TokenId, (TokenRow, std::time::Instant)>>,
}

impl TokenCache {
    const MAX: usize = 100_000;

    fn get(&self, id: rekey_types::TokenId) -> Option<TokenRow> {
        let entries = self.entries.lock().expect("token cache lock is never poisoned");
        entries.get(&id).filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL).map(|(row, _)| row.clone())
    }

    fn put(&self, row: TokenRow) {
        let mut entries = self.entries.lock().expect("token cache lock is never poisoned");
        if entries.len() >= Self::MAX {
            entries.clear();
        }
        entries.insert(row.id, (row, std::time::Instant::now()));
    }

    pub(crate) fn forget(&self, id: rekey_types::TokenId) {
        self.entries.lock().expect("token cache lock is never poisoned").remove(&id);
    }
}

/// The principal name recorded for work the server does on its own.
const SYSTEM: &str = "system";

impl Vault {
    /// Opens the vault: loads (or on first start creates) the audit chain key, starts the writer,
    /// and on first start creates a root operator token, returned so the caller can show it once.
    pub async fn open(
        store: Arc<dyn Store>,
        seal: Arc<dyn Seal>,
        options: VaultOptions,
    ) -> Result<(Self, Option<IssuedToken>), CoreError> {
        if !seal.is_unsealed() {
            return Err(CoreError::Sealed);
        }
        let registered = store.root_keys().await?;
        if seal.root_versions().is_empty() {
            // A seal with no root key yet (an HSM token before first use). Only a store that
            // has never held a key may get a fresh one; anything else means the wrong seal.
            if !registered.is_empty() || store.counts().await?.tenants > 0 {
                return Err(CoreError::Seal(rekey_crypto::CryptoError::Seal(
                    "the seal holds no root key, but this database has keys wrapped by one: is this the right seal?"
                        .into(),
                )));
            }
            seal.add_root_version().map_err(CoreError::from_seal)?;
            tracing::info!(kind = seal.kind(), "created root key version 1 in the seal");
        }
        let held = seal.root_versions();
        for r in registered.iter().filter(|r| r.state != rekey_store::key_state::DESTROYED) {
            if !held.contains(&r.version) {
                return Err(CoreError::Seal(rekey_crypto::CryptoError::Seal(format!(
                    "the seal does not hold root@{}, which this database uses: is this the right seal \
                     (key file, HSM token and key label)?",
                    r.version
                ))));
            }
        }
        let (audit_key, created) = load_or_create_system_key(store.as_ref(), seal.as_ref(), AuditKey::PURPOSE).await?;
        let audit_key = Arc::new(AuditKey::from_system_key(audit_key));
        let (integrity, _) =
            load_or_create_system_key(store.as_ref(), seal.as_ref(), rekey_crypto::IntegrityKey::PURPOSE).await?;
        let integrity = Arc::new(rekey_crypto::IntegrityKey::from_system_key(integrity));
        let head = store.audit_head().await?.map(|h| h.seq).unwrap_or(0);
        let writer = Writer::spawn(store.clone(), audit_key.clone(), head, options.writer_stats.clone())
            .map_err(|e| CoreError::Store(rekey_store::StoreError::Backend(Box::new(e))))?;
        let vault = Self {
            store,
            seal,
            keks: KekCache::default(),
            writer,
            audit_key,
            integrity,
            credential_locks: Default::default(),
            put_hints: Default::default(),
            tokens: TokenCache::default(),
            closed: Default::default(),
            jobs_wake: Default::default(),
            campaigns_wake: Default::default(),
            hosts: Default::default(),
            connector_stats: options.connector_stats.clone().unwrap_or_default(),
            options,
        };
        if created {
            let event = record(
                SYSTEM,
                "",
                &RequestId::generate(),
                "system.init",
                "audit-chain-key",
                AuditOutcome::Success,
                "created the audit chain key",
            );
            vault.audit_event(event).await?;
        }
        vault.register_root_versions(&registered).await?;
        vault.seal_legacy_tokens().await?;
        let root = vault.create_root_token_if_none().await?;
        Ok((vault, root))
    }

    /// Drops a token from the cache so that a revocation takes effect at once.
    pub(crate) fn forget_token(&self, id: rekey_types::TokenId) {
        self.tokens.forget(id);
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    async fn create_root_token_if_none(&self) -> Result<Option<IssuedToken>, CoreError> {
        if !self.store.list_tokens().await?.is_empty() {
            return Ok(None);
        }
        let issued = rekey_crypto::token::issue().map_err(CoreError::Crypto)?;
        let row = TokenRow {
            id: issued.id,
            hash: issued.hash.to_vec(),
            role: Role::Operator,
            tenant_id: None,
            tenant_name: None,
            bound: vec![],
            cidrs: vec![],
            description: "root token, created at first start".into(),
            created_by: SYSTEM.into(),
            created_at: Timestamp::now(),
            expires_at: None,
            revoked_at: None,
            mac: None,
        };
        let row = TokenRow { mac: Some(crate::integrity::token_mac(&self.integrity, &row)), ..row };
        let audit = record(
            SYSTEM,
            "",
            &RequestId::generate(),
            "token.create",
            &format!("token:{}", issued.id),
            AuditOutcome::Success,
            "role=operator; root token",
        );
        self.submit(WriteRequest { op: Some(WriteOp::CreateToken(row)), audit }).await?;
        Ok(Some(issued))
    }

    /// Checks a bearer token and the source address. Every failure is audited as a denial.
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
        source: IpAddr,
        request_id: RequestId,
        action: &str,
        resource: &str,
    ) -> Result<Caller, CoreError> {
        // A source that spent its allowance of failures is refused before anything is looked up.
        self.options.failures.admit(AttemptKind::Token, source).map_err(CoreError::TooManyAttempts)?;
        let presented = bearer.and_then(PresentedToken::parse);
        let principal_name = presented.as_ref().map_or_else(|| "anonymous".to_owned(), |p| format!("token:{}", p.id));
        let row = match &presented {
            Some(p) => match self.tokens.get(p.id) {
                Some(row) => Some(row),
                None => match self.store.token(p.id).await? {
                    Some(r) if crate::integrity::token_ok(&self.integrity, &r) => {
                        self.tokens.put(r.clone());
                        Some(r)
                    }
                    Some(r) => {
                        // Inserted or edited outside Rekey: never believed.
                        self.integrity_failure(&format!("token:{}", r.id), "token row failed its integrity check")
                            .await?;
                        None
                    }
                    None => None,
                },
            },
            None => None,
        };
        let now = Timestamp::now();
        let valid = match (&presented, &row) {
            (Some(p), Some(row)) => {
                p.matches(&row.hash) && row.revoked_at.is_none() && row.expires_at.is_none_or(|e| e > now)
            }
            _ => false,
        };
        let Some(row) = row.filter(|_| valid) else {
            let detail = if bearer.is_none() { "no token" } else { "invalid, expired or revoked token" };
            let event = record(
                &principal_name,
                &source.to_string(),
                &request_id,
                action,
                resource,
                AuditOutcome::Denied,
                detail,
            );
            self.failed_attempt(AttemptKind::Token, source, event).await?;
            return Err(CoreError::Unauthenticated);
        };
        let tenant = match (row.tenant_id, row.tenant_name) {
            (Some(id), Some(name)) => Some((id, TenantName::parse(&name)?)),
            _ => None,
        };
        let cidrs = row
            .cidrs
            .iter()
            .map(|c| c.parse::<IpNet>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| CoreError::Store(StoreError::Corrupt("token cidrs".into())))?;
        let caller = Caller {
            principal: Principal { token_id: row.id, role: row.role, tenant, bound: row.bound, cidrs },
            source,
            request_id,
        };
        if !policy::source_allowed(&caller.principal, source) {
            let why = "this token may not be used from this address";
            let event = self.event(&caller, action, resource, AuditOutcome::Denied, why);
            self.failed_attempt(AttemptKind::Token, source, event).await?;
            return Err(CoreError::Forbidden(why.into()));
        }
        Ok(caller)
    }

    /// Notes a failed attempt of `source`, and audits `event` if it is the first of the source's
    /// window; the others are counted and audited together (see `failures`).
    pub(crate) async fn failed_attempt(
        &self,
        kind: AttemptKind,
        source: IpAddr,
        event: AuditRecord,
    ) -> Result<(), CoreError> {
        match self.options.failures.failed(kind, source, Instant::now()) {
            Noted::First => self.audit_event(event).await,
            Noted::Counted => Ok(()),
        }
    }

    /// Writes the aggregate events of the failure windows that ended (see `failures`).
    pub async fn audit_failure_windows(&self) -> Result<usize, CoreError> {
        let due = self.options.failures.due(Instant::now());
        let n = due.len();
        for aggregate in due {
            let event = record(
                "anonymous",
                aggregate.source.as_deref().unwrap_or(""),
                &RequestId::generate(),
                aggregate.kind.aggregate_action(),
                "",
                AuditOutcome::Denied,
                &aggregate.detail(),
            );
            self.audit_event(event).await?;
        }
        Ok(n)
    }

    /// Every quarter of a failure window, writes the aggregates of the windows that ended.
    pub(crate) fn start_failure_audit(self: Arc<Self>) {
        let every = (self.options.failures.options().window / 4).max(Duration::from_millis(250));
        let vault = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(this) = vault.upgrade() else { return };
                if this.closed.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                if let Err(e) = this.audit_failure_windows().await {
                    tracing::error!(error = %e, "the aggregate of failed attempts could not be audited");
                }
            }
        });
    }

    /// Applies the policy; a hidden denial becomes "`what` not found".
    pub(crate) fn authorize(&self, caller: &Caller, action: Action<'_>, what: &str) -> Result<(), CoreError> {
        policy::check(&caller.principal, action).map_err(|d| match d {
            Denial::Forbidden(why) => CoreError::Forbidden(why.to_owned()),
            Denial::Hidden => CoreError::Hidden(what.to_owned()),
        })
    }

    pub(crate) fn event(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
        outcome: AuditOutcome,
        detail: &str,
    ) -> AuditRecord {
        record(
            &caller.principal.audit_name(),
            &caller.source.to_string(),
            &caller.request_id,
            action,
            resource,
            outcome,
            detail,
        )
    }

    pub(crate) async fn submit(&self, request: WriteRequest) -> Result<(), CoreError> {
        let touch = self.put_hints.before(&request.op);
        match self.writer.submit(request).await {
            Ok(Ok(_)) => {
                self.put_hints.after(touch);
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(CoreError::AuditUnavailable),
        }
    }

    /// Several writes in order, usually in one commit; each one's own result.
    pub(crate) async fn submit_all(
        &self,
        requests: Vec<WriteRequest>,
    ) -> Result<Vec<Result<(), CoreError>>, CoreError> {
        let touches: Vec<_> = requests.iter().map(|r| self.put_hints.before(&r.op)).collect();
        match self.writer.submit_all(requests).await {
            Ok(results) => Ok(results
                .into_iter()
                .zip(touches)
                .map(|(r, touch)| {
                    if r.is_ok() {
                        self.put_hints.after(touch);
                    }
                    r.map(drop).map_err(CoreError::from)
                })
                .collect()),
            Err(_) => Err(CoreError::AuditUnavailable),
        }
    }

    pub(crate) async fn audit_event(&self, event: AuditRecord) -> Result<(), CoreError> {
        self.submit(WriteRequest { op: None, audit: event }).await
    }

    /// Records the outcome of a request that changed nothing (a read, or a failure before any
    /// write) and passes the result through. If the event cannot be written, the result is
    /// dropped and the request fails: nothing leaves without its audit event.
    pub(crate) async fn finish<T>(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
        result: Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        self.finish_with(caller, action, resource, result, |_| String::new()).await
    }

    /// [`Vault::finish`] with a detail (never a secret) taken from a successful result.
    pub(crate) async fn finish_with<T>(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
        result: Result<T, CoreError>,
        detail: impl FnOnce(&T) -> String,
    ) -> Result<T, CoreError> {
        let event = match &result {
            Ok(value) => self.event(caller, action, resource, AuditOutcome::Success, &detail(value)),
            Err(e) => self.event(caller, action, resource, e.audit_outcome(), e.code().as_str()),
        };
        self.audit_event(event).await?;
        result
    }

    /// Commits `op` together with its audit event. A failed operation is recorded as failed.
    pub(crate) async fn commit(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
        op: WriteOp,
        detail: &str,
    ) -> Result<(), CoreError> {
        let audit = self.event(caller, action, resource, AuditOutcome::Success, detail);
        self.submit(WriteRequest { op: Some(op), audit }).await
    }

    /// Records a request refused for bad input before it reached a use case (a body that is not
    /// JSON, an invalid name), so that it too leaves an audit event.
    pub async fn record_rejection(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
        code: rekey_types::ErrorCode,
    ) -> Result<(), CoreError> {
        self.audit_event(self.event(caller, action, resource, AuditOutcome::Error, code.as_str())).await
    }

    pub async fn status(&self, caller: &Caller) -> Result<StatusView, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadStatus, "status")?;
            let counts = self.store.counts().await?;
            let shamir = match self.seal.as_shamir() {
                Some(_) => self.store.seal_keyring("active").await?.map(|k| (true, 0, k.threshold, k.shares)),
                None => None,
            };
            Ok(StatusView {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                seal: crate::keeper::seal_status(self.seal.as_ref(), shamir),
                store: self.store.backend().as_str().to_owned(),
                counts: Some(CountsView {
                    tenants: counts.tenants,
                    credentials: counts.credentials,
                    versions: counts.versions,
                    active_tokens: counts.tokens,
                }),
                audit_head_seq: Some(counts.audit_events),
                integrity_failures: Some(
                    self.writer.stats().integrity_failures.load(std::sync::atomic::Ordering::Relaxed),
                ),
            })
        }
        .await;
        self.finish(caller, "sys.status", "", result).await
    }

    pub fn seal(&self) -> &Arc<dyn Seal> {
        &self.seal
    }
}

pub(crate) fn record(
    principal: &str,
    source: &str,
    request_id: &RequestId,
    action: &str,
    resource: &str,
    outcome: AuditOutcome,
    detail: &str,
) -> AuditRecord {
    AuditRecord {
        seq: 0,
        time: Timestamp::now(),
        principal: principal.to_owned(),
        action: action.to_owned(),
        resource: resource.to_owned(),
        outcome,
        source: source.to_owned(),
        request_id: request_id.to_string(),
        detail: detail.to_owned(),
    }
}

/// A system key (the audit chain key, the integrity key) lives in the store wrapped by the seal.
/// On first start it is created; if another server sharing the database stored one first, that
/// one is used. `true` when this call created it, so that the caller can audit that once the key
/// is settled (the event is then chained with the key that stays).
pub(crate) async fn load_or_create_system_key(
    store: &dyn Store,
    seal: &dyn Seal,
    purpose: &'static str,
) -> Result<(SystemKey, bool), CoreError> {
    if store.system_key(purpose).await?.is_none() {
        let key = SystemKey::generate().map_err(CoreError::Crypto)?;
        let ctx = KeyContext::System { purpose, version: 1 };
        let wrapped = seal.wrap_system_key(ctx, &key).map_err(CoreError::Crypto)?;
        if store.insert_system_key(&SystemKeyRow { purpose: purpose.into(), version: 1, wrapped }).await? {
            return Ok((key, true));
        }
    }
    let row = store
        .system_key(purpose)
        .await?
        .ok_or_else(|| CoreError::Store(StoreError::Corrupt(format!("system key {purpose} vanished"))))?;
    let ctx = KeyContext::System { purpose, version: row.version };
    let key = seal.unwrap_system_key(ctx, &row.wrapped).map_err(CoreError::Decrypt)?;
    Ok((key, false))
}
