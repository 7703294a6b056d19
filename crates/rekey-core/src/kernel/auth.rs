//! Who is calling, and whether they may: bearer tokens (read through a short-lived cache, rows
//! checked against their integrity MAC), source addresses, failed attempts, and the policy.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rekey_crypto::token::PresentedToken;
use rekey_store::{StoreError, TokenRow};
use rekey_types::{AuditAction, AuditOutcome, AuditRecord, RequestId, TenantName, Timestamp};

use super::policy::{self, Action, Denial};
use super::{record, Vault};
use crate::failures::{AttemptKind, Noted, DEAD_TOKEN, OUTSIDE_CIDRS};
use crate::{Caller, CoreError, Principal};

/// How long a token read from the store is trusted before it is read again. A revocation made
/// on this server takes effect at once (the entry is dropped); one made by another server
/// sharing the PostgreSQL database takes effect here within this time.
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Recently read token rows by id. Holds hashes only, never a token secret.
#[derive(Default)]
pub(super) struct TokenCache {
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

impl Vault {
    /// Drops a token from the cache so that a revocation takes effect at once.
    pub(crate) fn forget_token(&self, id: rekey_types::TokenId) {
        self.tokens.forget(id);
    }

    /// Checks a bearer token and the source address. Every failure is audited as a denial.
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
        source: IpAddr,
        request_id: RequestId,
        action: AuditAction,
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
                    Some(r) if crate::kernel::integrity::token_ok(&self.integrity, &r) => {
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
        let issued = row.is_some();
        let Some(row) = row.filter(|_| valid) else {
            let detail = if bearer.is_none() { "no token" } else { DEAD_TOKEN };
            let event = record(
                &principal_name,
                &source.to_string(),
                &request_id,
                action,
                resource,
                AuditOutcome::Denied,
                detail,
            );
            if issued {
                self.misused_token(source, event).await?;
            } else {
                self.failed_attempt(AttemptKind::Token, source, event).await?;
            }
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
            principal: Principal { token_id: row.id, role: row.role, tenant, bound: row.bound, cidrs, system: None },
            source,
            request_id,
        };
        if !policy::source_allowed(&caller.principal, source) {
            let why = OUTSIDE_CIDRS;
            let event = self.event(&caller, action, resource, AuditOutcome::Denied, why);
            self.misused_token(source, event).await?;
            return Err(CoreError::Forbidden(why.into()));
        }
        if let Err(refused) = self.options.throttle.take(caller.principal.token_id, caller.principal.role) {
            self.writer_stats().rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if refused.first {
                let detail = refused.detail(caller.principal.role);
                self.audit_event(self.event(&caller, action, resource, AuditOutcome::Denied, &detail)).await?;
            }
            return Err(CoreError::RateLimited(refused.retry_after));
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

    /// A token that was issued, presented dead (revoked, expired, a wrong secret) or from outside
    /// its CIDRs: a failed attempt of the source like any other, but audited every time (the
    /// detection rules look for each; the source's allowance of failures bounds how many).
    async fn misused_token(&self, source: IpAddr, event: AuditRecord) -> Result<(), CoreError> {
        let _ = self.options.failures.failed(AttemptKind::Token, source, Instant::now());
        self.audit_event(event).await
    }

    /// Writes the aggregate events of the failure and rate-limit windows that ended (see
    /// `failures` and `throttle`).
    pub async fn audit_failure_windows(&self) -> Result<usize, CoreError> {
        let now = Instant::now();
        let throttled = self.options.throttle.due(now);
        let due = self.options.failures.due(now);
        let n = due.len() + throttled.len();
        for aggregate in throttled {
            let event = record(
                &aggregate.principal,
                "",
                &RequestId::generate(),
                AuditAction::AuthThrottled,
                &aggregate.principal,
                AuditOutcome::Denied,
                &aggregate.detail(),
            );
            self.audit_event(event).await?;
        }
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
        let window = self.options.failures.options().window.min(self.options.throttle.options().window);
        let every = (window / 4).max(Duration::from_millis(250));
        self.repeat(every, None, "auditing the aggregate of failed attempts", |vault| async move {
            vault.audit_failure_windows().await.map(drop)
        });
    }

    /// Applies the policy; a hidden denial becomes "`what` not found".
    pub(crate) fn authorize(&self, caller: &Caller, action: Action<'_>, what: &str) -> Result<(), CoreError> {
        policy::check(&caller.principal, action).map_err(|d| match d {
            Denial::Forbidden(why) => CoreError::Forbidden(why.to_owned()),
            Denial::Hidden => CoreError::Hidden(what.to_owned()),
        })
    }
}
