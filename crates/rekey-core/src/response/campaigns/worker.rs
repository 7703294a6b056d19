//! The workers: each pass leases due items, works on them (rotate, follow through, confirm,
//! retry or fail) and finishes the campaigns whose items are all done.

use std::sync::Arc;

use futures_util::StreamExt;
use rekey_store::{CampaignItemRow, ItemUpdate, RotationRow, WriteOp};
use rekey_types::{
    AuditAction, AuditOutcome, CampaignMode, CredentialKind, ItemState, RotationId, RotationState, Stage, Timestamp,
};

use super::{after, CampaignPass, ITEMS_PER_PASS, WORKER};
use crate::kernel::Actor;
use crate::{CoreError, Vault};

impl Vault {
    pub(crate) fn start_campaigns(self: Arc<Self>) {
        let Some(interval) = self.campaign_options().interval else { return };
        let vault = Arc::downgrade(&self);
        let wake = self.campaigns_wake().clone();
        drop(self);
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let Some(this) = vault.upgrade() else { return };
                if this.is_closed() {
                    return;
                }
                if first && this.store().backend() == rekey_store::Backend::Sqlite {
                    // Only this server uses an SQLite file: leases of a crashed run end now.
                    if let Err(e) = this.store().release_leases().await {
                        tracing::error!(error = %e, "releasing campaign leases failed");
                    }
                }
                first = false;
                let busy = match this.campaign_pass().await {
                    Ok(pass) => pass.items > 0,
                    Err(e) => {
                        tracing::error!(error = %e, "campaign pass failed");
                        false
                    }
                };
                drop(this);
                if !busy {
                    let _ = tokio::time::timeout(interval, wake.notified()).await;
                }
            }
        });
    }

    /// One pass of the campaign workers (also run by tests and benchmarks).
    pub async fn campaign_pass(&self) -> Result<CampaignPass, CoreError> {
        let mut pass = CampaignPass::default();
        let options = self.campaign_options().clone();
        let concurrency = options.concurrency.max(1);
        // Items flow through `concurrency` slots: a slot that frees takes the next item at once
        // (claimed a few at a time), so one slow target does not hold back a whole batch.
        let batch = u32::try_from(concurrency * 2).unwrap_or(u32::MAX);
        let mut queue = std::collections::VecDeque::new();
        let mut running = futures_util::stream::FuturesUnordered::new();
        let mut exhausted = false;
        loop {
            while running.len() < concurrency && pass.items + running.len() < ITEMS_PER_PASS {
                if queue.is_empty() && !exhausted {
                    let claimed = self.store().claim_items(Timestamp::now(), after(options.lease), batch).await?;
                    exhausted = claimed.is_empty();
                    queue.extend(claimed);
                }
                let Some(item) = queue.pop_front() else { break };
                running.push(async move {
                    let (campaign, name) = (item.campaign_id, format!("{}/{}", item.tenant, item.name));
                    if let Err(e) = self.work_item(item).await {
                        tracing::warn!(%campaign, credential = %name, error = %e, "campaign item step failed");
                    }
                });
            }
            if running.next().await.is_none() {
                break;
            }
            pass.items += 1;
        }
        // Claimed but not started (the pass reached its size): free them for the next pass.
        for item in queue {
            self.hold(&item, item.error.clone(), item.next_at.or(Some(Timestamp::now()))).await?;
        }

        let campaigns = self.store().campaigns(true, 1000).await?;
        for campaign in campaigns.iter().filter(|c| !c.notify.is_empty()) {
            self.queue_notices(campaign).await?;
        }
        let due = self.store().due_notices(Timestamp::now(), 200).await?;
        pass.notices = due.len();
        futures_util::stream::iter(due)
            .for_each_concurrent(8, |notice| async move {
                let id = notice.id;
                if let Err(e) = self.send_notice(notice).await {
                    tracing::warn!(notice = %id, error = %e, "notice step failed");
                }
            })
            .await;

        for campaign in campaigns {
            if self.store().open_items(campaign.id).await? == 0 {
                let op = WriteOp::FinishCampaign { id: campaign.id, at: Timestamp::now() };
                let status = self.status_of(&campaign).await?;
                let detail = format!(
                    "campaign {} finished: {} retired, {} waived, {} failed",
                    campaign.id,
                    status.counts[ItemState::Retired.as_str()],
                    status.counts[ItemState::Waived.as_str()],
                    status.failed
                );
                let resource = format!("incident:{}", campaign.incident_id);
                match self
                    .worker_write(AuditAction::CampaignFinish, &resource, op, AuditOutcome::Success, &detail)
                    .await
                {
                    Ok(()) => pass.finished += 1,
                    Err(CoreError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(pass)
    }

    pub(super) async fn worker_write(
        &self,
        action: AuditAction,
        resource: &str,
        op: WriteOp,
        outcome: AuditOutcome,
        detail: &str,
    ) -> Result<(), CoreError> {
        let audit =
            crate::kernel::record(WORKER, "", &rekey_types::RequestId::generate(), action, resource, outcome, detail);
        self.submit(rekey_store::WriteRequest { op: Some(op), audit }).await
    }

    /// One step of a due item, as far as it goes now.
    async fn work_item(&self, item: CampaignItemRow) -> Result<(), CoreError> {
        let resuming = matches!(item.state, ItemState::Rotating | ItemState::Rotated | ItemState::Verified);
        let actor = Actor { recovering: resuming, retire_at_once: true, ..Actor::system(WORKER) };
        match next_step(item.state, item.mode, item.rotation_id) {
            NextStep::FollowRotation(rotation) => match self.store().rotation(rotation).await? {
                Some(r) => self.follow_through(&actor, &item, r).await,
                None => self.retry_or_fail(&item, "its rotation is missing", true).await,
            },
            NextStep::Confirm => self.confirm(&item).await,
            NextStep::Rotate => self.rotate_item(&actor, &item).await,
            NextStep::Hold => self.hold(&item, None, None).await,
        }
    }

    /// Starts an automatic item's rotation and follows it through.
    async fn rotate_item(&self, actor: &Actor, item: &CampaignItemRow) -> Result<(), CoreError> {
        let loaded = async {
            let tenant = self
                .store()
                .tenant_by_id(item.tenant_id)
                .await?
                .ok_or_else(|| CoreError::NotFound("the item's tenant".into()))?;
            let credential = self
                .store()
                .credential(item.tenant_id, &item.name)
                .await?
                .filter(|c| c.id == item.credential_id)
                .ok_or_else(|| CoreError::NotRotatable("the credential was deleted".into()))?;
            crate::connectors::rotation_plan(&credential, &format!("{}/{}", item.tenant, item.name))?;
            Ok((tenant, credential))
        }
        .await;
        let (tenant, credential) = match loaded {
            Ok(l) => l,
            Err(CoreError::NotRotatable(why)) => return self.retry_or_fail(item, &why, true).await,
            Err(e) => return Err(e),
        };
        let (campaign, credential_id) = (item.campaign_id, item.credential_id);
        let by = actor.name.clone();
        let with = move |rotation| WriteOp::StartItemRotation {
            campaign,
            credential: credential_id,
            rotation,
            by: by.clone(),
            at: Timestamp::now(),
        };
        match self.start_rotation(actor, &tenant, &credential, Some(&with)).await {
            Ok(rotation) => self.follow_through(actor, item, rotation).await,
            Err(e @ (CoreError::RotationInProgress(_) | CoreError::Conflict(_))) => {
                // Another rotation of the credential runs (a person's, another campaign's): later.
                let next = after(self.campaign_options().retry_base);
                self.hold(item, Some(e.to_string()), Some(next)).await
            }
            Err(CoreError::NotRotatable(why) | CoreError::BadRequest(why)) => {
                self.retry_or_fail(item, &why, true).await
            }
            Err(e) => Err(e),
        }
    }

    /// Drives an item's rotation to its end: promoted rotations retire at once.
    async fn follow_through(
        &self,
        actor: &Actor,
        item: &CampaignItemRow,
        rotation: RotationRow,
    ) -> Result<(), CoreError> {
        let mut rotation = self.drive(actor, rotation).await?;
        if rotation.state == RotationState::Promoted {
            rotation = self.retire(actor, rotation, true).await?;
        }
        let fresh = self
            .store()
            .campaign_item(item.campaign_id, item.credential_id)
            .await?
            .ok_or_else(|| CoreError::NotFound("campaign item".into()))?;
        match rotation.state {
            RotationState::Retired => Ok(()),
            RotationState::Failed => {
                let why = rotation.error.clone().unwrap_or_else(|| "the rotation failed".into());
                self.retry_or_fail(&fresh, &why, false).await
            }
            _ => {
                // Waiting on the target (no answer, a retirement that did not go through): later.
                let why = rotation.error.clone().unwrap_or_else(|| format!("rotation is {}", rotation.state));
                let attempts = fresh.attempts.max(1);
                let next = self.retry_at(attempts).unwrap_or_else(|| after(self.campaign_options().retry_base));
                self.hold(&fresh, Some(why), Some(next)).await
            }
        }
    }

    /// A new secret stored by someone else: verify it against the target, then retire the old.
    async fn confirm(&self, item: &CampaignItemRow) -> Result<(), CoreError> {
        let resource = format!("{}/{}", item.tenant, item.name);
        let tenant = self
            .store()
            .tenant_by_id(item.tenant_id)
            .await?
            .ok_or_else(|| CoreError::NotFound("the item's tenant".into()))?;
        let Some(credential) =
            self.store().credential(item.tenant_id, &item.name).await?.filter(|c| c.id == item.credential_id)
        else {
            return self.retry_or_fail(item, "the credential was deleted", true).await;
        };
        if credential.current_version == item.from_version {
            // A failed item whose secret nobody replaced yet.
            return self.hold(item, item.error.clone(), None).await;
        }
        // Only a version made after the campaign started, holding a secret that no other
        // version of the credential ever held, counts: the old secret put back is not a rotation.
        let campaign = self.campaign_row(item.campaign_id).await?;
        let versions = self.store().list_versions(credential.id).await?;
        let current = versions.iter().find(|v| v.version == credential.current_version);
        let fresh = current.is_some_and(|c| {
            c.created_at > campaign.created_at
                && c.fingerprint.as_ref().is_some_and(|fp| {
                    versions.iter().all(|v| v.version == c.version || v.fingerprint.as_ref().is_some_and(|o| o != fp))
                })
        });
        if !fresh {
            let why = format!(
                "version {} is not a new secret (it was made before the campaign, or holds a secret an earlier version held)",
                credential.current_version
            );
            return self.retry_or_fail(item, &why, true).await;
        }
        // And for the same target: a secret for somewhere else leaves the stolen one in place.
        let now_at =
            self.store().version(credential.id, Some(credential.current_version)).await?.and_then(|v| v.fields);
        let was_at = self.store().version(credential.id, Some(item.from_version)).await?.and_then(|v| v.fields);
        if now_at.is_none() || now_at != was_at {
            let why = format!(
                "version {} is for another target than the credential had when the campaign started; \
                 an operator can retarget the credential or waive the item",
                credential.current_version
            );
            return self.retry_or_fail(item, &why, true).await;
        }
        let verified = if credential.kind == CredentialKind::Generic {
            None
        } else {
            let health = self.check(&Actor::system(WORKER), &tenant, &credential).await?;
            Some(health)
        };
        if let Some(h) = verified.as_ref().filter(|h| h.status != "ok") {
            let why = format!("the new version {} does not work: {}: {}", h.version, h.status, h.detail);
            return self.retry_or_fail(item, &why, true).await;
        }
        let now = Timestamp::now();
        let op = WriteOp::All(vec![
            WriteOp::SetVersionStage {
                credential: credential.id,
                version: item.from_version,
                from: Stage::Previous,
                stage: Stage::Retired,
            },
            WriteOp::SetItem(ItemUpdate {
                campaign: item.campaign_id,
                credential: item.credential_id,
                from: &[ItemState::Rotated, ItemState::Failed],
                state: ItemState::Retired,
                error: None,
                next_at: None,
                done_by: None,
                note: verified.is_none().then(|| "a generic credential has no target to verify".to_owned()),
                stamp: Some(if verified.is_some() { ItemState::Retired } else { ItemState::Rotated }),
                attempt: false,
                at: now,
            }),
        ]);
        let detail = format!(
            "campaign={}; version {} verified; version {} retired",
            item.campaign_id, credential.current_version, item.from_version
        );
        self.worker_write(AuditAction::CampaignItemRetire, &resource, op, AuditOutcome::Success, &detail).await
    }

    /// A step that did not work: try again later, or fail for good after `max_attempts`.
    async fn retry_or_fail(&self, item: &CampaignItemRow, why: &str, count: bool) -> Result<(), CoreError> {
        let resource = format!("{}/{}", item.tenant, item.name);
        let attempts = item.attempts + u32::from(count);
        let next = self.retry_at(attempts.max(1));
        let action = if next.is_some() { AuditAction::CampaignItemRetry } else { AuditAction::CampaignItemFail };
        let op = WriteOp::SetItem(ItemUpdate {
            campaign: item.campaign_id,
            credential: item.credential_id,
            from: &[
                ItemState::Pending,
                ItemState::Rotating,
                ItemState::Rotated,
                ItemState::Verified,
                ItemState::Failed,
            ],
            state: ItemState::Failed,
            error: Some(why.to_owned()),
            next_at: next,
            done_by: None,
            note: None,
            stamp: None,
            attempt: count,
            at: Timestamp::now(),
        });
        let detail = format!("campaign={}; attempt {attempts}: {why}", item.campaign_id);
        self.worker_write(action, &resource, op, AuditOutcome::Error, &detail).await
    }

    /// Keeps an item in its state, with why it waits and when to look again.
    async fn hold(
        &self,
        item: &CampaignItemRow,
        error: Option<String>,
        next_at: Option<Timestamp>,
    ) -> Result<(), CoreError> {
        let (state, from) = (item.state, item.state.only());
        let op = WriteOp::SetItem(ItemUpdate {
            campaign: item.campaign_id,
            credential: item.credential_id,
            from,
            state,
            error: error.clone(),
            next_at,
            done_by: None,
            note: None,
            stamp: None,
            attempt: false,
            at: Timestamp::now(),
        });
        let resource = format!("{}/{}", item.tenant, item.name);
        let detail = format!("campaign={}; {state}; {}", item.campaign_id, error.unwrap_or_default());
        self.worker_write(AuditAction::CampaignItemWait, &resource, op, AuditOutcome::Success, &detail).await
    }
}

/// What a worker does with an item it leased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextStep {
    /// Follow the item's rotation to its end (after a crash, or a rotation still under way).
    FollowRotation(RotationId),
    /// Check at its target the new secret someone stored for the item (a put, a reset form).
    Confirm,
    /// Start the item's rotation (automatic items only).
    Rotate,
    /// Nothing for a worker to do: a self-service item waits for its tenant.
    Hold,
}

/// The worker's choice for an item, from its state, its mode and the rotation it holds.
pub(crate) fn next_step(state: ItemState, mode: CampaignMode, rotation: Option<RotationId>) -> NextStep {
    match (state, rotation) {
        (ItemState::Rotating | ItemState::Rotated | ItemState::Verified, Some(r)) => NextStep::FollowRotation(r),
        (ItemState::Rotated | ItemState::Failed, None) => NextStep::Confirm,
        (ItemState::Pending | ItemState::Failed, _) if mode == CampaignMode::Automatic => NextStep::Rotate,
        (ItemState::Failed, Some(_)) => NextStep::Confirm,
        _ => NextStep::Hold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_step_of_every_state_mode_and_rotation() {
        let r = RotationId::generate();
        let auto = CampaignMode::Automatic;
        let own = CampaignMode::SelfService;
        // A rotation under way (or interrupted) is followed, whatever the mode.
        for state in [ItemState::Rotating, ItemState::Rotated, ItemState::Verified] {
            for mode in [auto, own] {
                assert_eq!(next_step(state, mode, Some(r)), NextStep::FollowRotation(r), "{state} {mode}");
            }
        }
        // A new secret stored by someone (no rotation of ours) is confirmed at its target.
        for mode in [auto, own] {
            assert_eq!(next_step(ItemState::Rotated, mode, None), NextStep::Confirm);
            assert_eq!(next_step(ItemState::Failed, mode, None), NextStep::Confirm);
        }
        // Automatic items that wait, or whose rotation failed, are rotated (again).
        assert_eq!(next_step(ItemState::Pending, auto, None), NextStep::Rotate);
        assert_eq!(next_step(ItemState::Pending, auto, Some(r)), NextStep::Rotate);
        assert_eq!(next_step(ItemState::Failed, auto, Some(r)), NextStep::Rotate);
        // A failed self-service item with a rotation is confirmed; a waiting one waits.
        assert_eq!(next_step(ItemState::Failed, own, Some(r)), NextStep::Confirm);
        assert_eq!(next_step(ItemState::Pending, own, None), NextStep::Hold);
        assert_eq!(next_step(ItemState::Notified, own, None), NextStep::Hold);
        // Done items, and a rotating item without its rotation, are left alone.
        for state in [ItemState::Retired, ItemState::Waived, ItemState::Rotating, ItemState::Verified] {
            assert_eq!(next_step(state, auto, None), NextStep::Hold, "{state}");
        }
    }
}
