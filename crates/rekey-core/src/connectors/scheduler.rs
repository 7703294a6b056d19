//! The scheduler: the server's own connector work, every `interval`.
//!
//! 1. Rotations with a step to take: unfinished ones (a crash, a timeout, a target that was
//!    down) are driven on; promoted ones whose grace period ended are retired.
//! 2. Credentials whose last check is older than `verify_every` are checked again.
//! 3. Credentials with a `max_age` whose current version is older are rotated.
//!
//! It runs once at start, so a server killed in the middle of a rotation recovers it as soon as
//! it is back. With several servers on one PostgreSQL database, each runs its own scheduler: a
//! rotation can only be started once (one unfinished rotation per credential, enforced by the
//! database), and each step moves a rotation from the state it was read in, so a second server
//! that tries the same step finds it taken.

use std::sync::Arc;

use futures_util::StreamExt;
use rekey_store::CredentialFilter;
use rekey_types::{CredentialKind, RotationState, Timestamp};

use crate::kernel::Actor;
use crate::{CoreError, Vault};

pub use crate::options::SchedulerOptions;

/// Work items per pass and kind of work.
const PASS_LIMIT: u32 = 1_000;
/// A credential whose rotation failed is not rotated by age again for this long.
const RETRY_FAILED_AFTER: i64 = 3600 * 1_000_000;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Unfinished rotations driven a step further.
    pub rotations_driven: usize,
    /// Credentials verified against their targets.
    pub verified: usize,
    /// Credentials rotated because their secret reached `max_age`.
    pub rotated_by_age: usize,
}

impl Vault {
    pub(crate) fn start_scheduler(self: Arc<Self>) {
        let Some(interval) = self.options().scheduler.interval else { return };
        self.repeat(interval, None, "scheduler pass", |vault| async move { vault.scheduler_pass().await.map(drop) });
    }

    /// One pass of the scheduler (also run by tests and benchmarks).
    pub async fn scheduler_pass(&self) -> Result<PassReport, CoreError> {
        let mut report = PassReport::default();
        let concurrency = self.options().scheduler.concurrency.max(1);

        let due = self.store().rotations_due(Timestamp::now(), PASS_LIMIT).await?;
        report.rotations_driven = due.len();
        futures_util::stream::iter(due)
            .for_each_concurrent(concurrency, |rotation| async move {
                let id = rotation.id;
                let actor = Actor { recovering: true, ..Actor::scheduler() };
                if let Err(e) = self.drive(&actor, rotation).await {
                    tracing::warn!(rotation = %id, error = %e, "rotation step failed");
                }
            })
            .await;

        if let Some(every) = self.options().scheduler.verify_every {
            let micros = i64::try_from(every.as_micros()).unwrap_or(i64::MAX);
            let before = Timestamp::from_micros(Timestamp::now().as_micros().saturating_sub(micros));
            let stale = self.store().stale_health(before, PASS_LIMIT).await?;
            report.verified = stale.len();
            futures_util::stream::iter(stale)
                .for_each_concurrent(concurrency, |item| async move {
                    if let Err(e) = self.check_by_id(&item).await {
                        tracing::warn!(credential = %item.credential_id, error = %e, "scheduled check failed");
                    }
                })
                .await;
        }

        report.rotated_by_age = self.rotate_by_age(concurrency).await?;
        if let Ok(counts) = self.store().health_counts().await {
            *self.connector_stats().health.lock().expect("stats lock") = counts;
        }
        Ok(report)
    }

    async fn check_by_id(&self, item: &rekey_store::StaleCredential) -> Result<(), CoreError> {
        let name = rekey_types::TenantName::parse(&item.tenant)?;
        let tenant = self.tenant(&name).await?;
        let Some(credential) = self.store().credential(tenant.id, &item.name).await? else { return Ok(()) };
        self.check(&Actor::scheduler(), &tenant, &credential).await.map(drop)
    }

    /// Starts and drives a rotation of every credential past its `max_age`.
    async fn rotate_by_age(&self, concurrency: usize) -> Result<usize, CoreError> {
        let now = Timestamp::now().as_micros();
        let mut due = Vec::new();
        for kind in [CredentialKind::Ldap, CredentialKind::EntraApp] {
            let mut after = None;
            loop {
                let page = self
                    .store()
                    .list_credentials(&CredentialFilter {
                        tenant: None,
                        kind: Some(kind),
                        region: None,
                        after: after.clone(),
                        limit: PASS_LIMIT,
                    })
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some((last.tenant.clone(), last.credential.name.clone()));
                let full = page.len() as u32 == PASS_LIMIT;
                for row in page {
                    let Some(max_age) = row.credential.fields.get("max_age") else { continue };
                    let Ok(secs) = rekey_types::time::parse_duration_secs(max_age) else { continue };
                    if row.credential.updated_at.as_micros().saturating_add(secs.saturating_mul(1_000_000)) > now {
                        continue;
                    }
                    due.push(row);
                }
                if !full {
                    break;
                }
            }
        }
        let mut started = 0;
        let mut work = Vec::new();
        for row in due {
            let latest = self.store().rotations_of(row.credential.id, 1).await?;
            let busy = latest.first().is_some_and(|r| {
                RotationState::UNFINISHED.contains(&r.state)
                    || (r.state == RotationState::Failed && r.changed_at.as_micros() + RETRY_FAILED_AFTER > now)
            });
            if busy || crate::connectors::rotation_plan(&row.credential, &row.credential.name).is_err() {
                continue;
            }
            started += 1;
            work.push(row);
        }
        futures_util::stream::iter(work)
            .for_each_concurrent(concurrency, |row| async move {
                let actor = Actor::scheduler();
                let result = async {
                    let name = rekey_types::TenantName::parse(&row.tenant)?;
                    let tenant = self.tenant(&name).await?;
                    let rotation = self.start_rotation(&actor, &tenant, &row.credential, None).await?;
                    self.drive(&actor, rotation).await
                }
                .await;
                if let Err(e) = result {
                    tracing::warn!(credential = %row.credential.id, error = %e, "rotation by age failed");
                }
            })
            .await;
        Ok(started)
    }
}
