//! The operators' side of a campaign: start, list, status, items, waive, reset links, report.

use std::collections::BTreeMap;

use rekey_store::{CampaignRow, ItemFilter, ItemUpdate, LinkRow, WriteOp};
use rekey_types::{AuditAction, CampaignId, CampaignState, CredRef, IncidentState, ItemState, TenantName, Timestamp};

use super::{
    micros, CampaignReport, CampaignStatus, CampaignView, ItemView, LinkView, NoticeView, ReportItem, StartCampaign,
    TenantProgress, TenantReport, DEFAULT_DEADLINE_SECS, MAX_DEADLINE_SECS, MIN_DEADLINE_SECS,
};
use crate::kernel::policy::Action;
use crate::{Caller, CoreError, Vault};

impl Vault {
    /// `rekey campaign start`.
    pub async fn start_campaign(&self, caller: &Caller, input: StartCampaign) -> Result<CampaignView, CoreError> {
        let resource = format!("incident:{}", input.incident);
        let prepared = async {
            self.authorize(caller, Action::ManageIncidents, "incidents")?;
            let deadline = input.deadline_secs.unwrap_or(DEFAULT_DEADLINE_SECS);
            if !(MIN_DEADLINE_SECS..=MAX_DEADLINE_SECS).contains(&deadline) {
                return Err(CoreError::BadRequest(format!(
                    "the deadline must be between {MIN_DEADLINE_SECS} seconds and 365 days from now"
                )));
            }
            let mut notify = Vec::new();
            for channel in &input.notify {
                let configured = match channel.as_str() {
                    "email" => self.campaign_options().mail.is_some(),
                    "webhook" => self.campaign_options().webhook.is_some(),
                    other => {
                        return Err(CoreError::BadRequest(format!(
                            "unknown notification channel {other:?}: use email or webhook"
                        )))
                    }
                };
                if !configured {
                    return Err(CoreError::Conflict(format!(
                        "{channel} notifications are not configured on this server (see [notify] in the configuration)"
                    )));
                }
                if !notify.contains(channel) {
                    notify.push(channel.clone());
                }
            }
            let incident = self
                .store()
                .incident(input.incident)
                .await?
                .ok_or_else(|| CoreError::NotFound(format!("incident {}", input.incident)))?;
            if incident.state != IncidentState::Open {
                return Err(CoreError::Conflict(format!(
                    "incident {} is closed: a campaign needs an open incident",
                    incident.id
                )));
            }
            if incident.affected == 0 {
                return Err(CoreError::Conflict(format!("incident {} reaches no credentials", incident.id)));
            }
            let now = Timestamp::now();
            let span = i64::try_from(deadline).unwrap_or(i64::MAX) * 1_000_000;
            let before = micros(self.campaign_options().remind_before);
            let remind_in = if span > before { span - before } else { span / 2 };
            Ok(CampaignRow {
                id: CampaignId::generate(),
                incident_id: incident.id,
                state: CampaignState::Running,
                notify,
                deadline: Timestamp::from_micros(now.as_micros() + span),
                remind_at: Timestamp::from_micros(now.as_micros() + remind_in),
                reminded: false,
                items: 0,
                created_by: caller.principal.audit_name(),
                created_at: now,
                finished_at: None,
            })
        }
        .await;
        let row = match prepared {
            Ok(r) => r,
            Err(e) => return self.finish(caller, AuditAction::CampaignStart, &resource, Err(e)).await,
        };
        let detail = format!("campaign {}; notify={}", row.id, row.notify.join(","));
        self.commit(caller, AuditAction::CampaignStart, &resource, WriteOp::StartCampaign(row.clone()), &detail)
            .await?;
        self.campaigns_wake().notify_one();
        Ok(CampaignView::from(&self.campaign_row(row.id).await?))
    }

    /// `campaign list`: campaigns, newest first.
    pub async fn list_campaigns(&self, caller: &Caller) -> Result<Vec<CampaignView>, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadIncidents, "incidents")?;
            Ok(self.store().campaigns(false, 1000).await?.iter().map(CampaignView::from).collect())
        }
        .await;
        self.finish(caller, AuditAction::CampaignList, "", result).await
    }

    /// `rekey campaign status`.
    pub async fn campaign_status(&self, caller: &Caller, id: CampaignId) -> Result<CampaignStatus, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadIncidents, "incidents")?;
            self.status_of(&self.campaign_row(id).await?).await
        }
        .await;
        self.finish(caller, AuditAction::CampaignStatus, &format!("campaign:{id}"), result).await
    }

    pub(super) async fn status_of(&self, campaign: &CampaignRow) -> Result<CampaignStatus, CoreError> {
        let mut counts: BTreeMap<String, i64> = ItemState::ALL.iter().map(|s| (s.to_string(), 0)).collect();
        for c in self.store().item_counts(campaign.id, false).await? {
            counts.insert(c.state.to_string(), c.count);
        }
        let mut tenants: BTreeMap<String, TenantProgress> = BTreeMap::new();
        for c in self.store().item_counts(campaign.id, true).await? {
            let t = c.tenant.unwrap_or_default();
            let entry = tenants.entry(t.clone()).or_insert_with(|| TenantProgress {
                tenant: t,
                total: 0,
                done: 0,
                counts: BTreeMap::new(),
            });
            entry.total += c.count;
            if c.state == ItemState::Retired || c.state == ItemState::Waived {
                entry.done += c.count;
            }
            entry.counts.insert(c.state.to_string(), c.count);
        }
        let mut tenants: Vec<TenantProgress> = tenants.into_values().collect();
        tenants.sort_by_key(|t| (t.done == t.total, t.tenant.clone()));
        let mut notices = BTreeMap::new();
        for n in self.store().notices(campaign.id).await? {
            *notices.entry(format!("{}/{}", n.channel, n.state)).or_insert(0) += 1;
        }
        let open = self.store().open_items(campaign.id).await?;
        let done = counts[ItemState::Retired.as_str()] + counts[ItemState::Waived.as_str()];
        Ok(CampaignStatus {
            campaign: CampaignView::from(campaign),
            failed: campaign.items - done - open,
            done,
            open,
            overdue: open > 0 && Timestamp::now() > campaign.deadline,
            counts,
            tenants,
            notices,
        })
    }

    /// `rekey campaign items`: a page by tenant and name.
    pub async fn campaign_items(
        &self,
        caller: &Caller,
        id: CampaignId,
        filter: ItemFilter,
    ) -> Result<Vec<ItemView>, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadIncidents, "incidents")?;
            self.campaign_row(id).await?;
            Ok(self.store().campaign_items(id, &filter).await?.into_iter().map(ItemView::from).collect())
        }
        .await;
        self.finish(caller, AuditAction::CampaignItems, &format!("campaign:{id}"), result).await
    }

    /// `rekey campaign waive`: an item that will not be rotated, and why.
    pub async fn waive_item(
        &self,
        caller: &Caller,
        id: CampaignId,
        cref: &CredRef,
        reason: &str,
    ) -> Result<ItemView, CoreError> {
        let resource = cref.to_string();
        let prepared = async {
            self.authorize(caller, Action::ManageIncidents, "incidents")?;
            let reason = rekey_types::text::line("a waiver's reason", reason, super::MAX_REASON)
                .map_err(|e| CoreError::BadRequest(e.to_string()))?;
            let (_, credential) = self.tenant_credential(cref).await?;
            let item = self
                .store()
                .campaign_item(id, credential.id)
                .await?
                .ok_or_else(|| CoreError::NotFound(format!("{cref} in campaign {id}")))?;
            if item.state == ItemState::Rotating {
                return Err(CoreError::Conflict(format!(
                    "{cref} is being rotated; waive it once the rotation has finished or failed"
                )));
            }
            if item.state == ItemState::Retired || item.state == ItemState::Waived {
                return Err(CoreError::Conflict(format!("{cref} is already {}", item.state)));
            }
            Ok((item, reason.to_owned()))
        }
        .await;
        let (item, reason) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::CampaignItemWaive, &resource, Err(e)).await,
        };
        let op = WriteOp::SetItem(ItemUpdate {
            campaign: id,
            credential: item.credential_id,
            from: &[
                ItemState::Pending,
                ItemState::Notified,
                ItemState::Rotated,
                ItemState::Verified,
                ItemState::Failed,
            ],
            state: ItemState::Waived,
            error: item.error.clone(),
            next_at: None,
            done_by: Some(caller.principal.audit_name()),
            note: Some(reason.clone()),
            stamp: None,
            attempt: false,
            at: Timestamp::now(),
        });
        self.commit(caller, AuditAction::CampaignItemWaive, &resource, op, &format!("campaign={id}; reason: {reason}"))
            .await?;
        let item = self
            .store()
            .campaign_item(id, item.credential_id)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("{cref} in campaign {id}")))?;
        Ok(item.into())
    }

    /// `rekey campaign link`: a reset link for one tenant, handed out by an operator (who then
    /// sends it by a channel of their own). The tenant's pending items become `notified`.
    pub async fn issue_reset_link(
        &self,
        caller: &Caller,
        id: CampaignId,
        tenant: &TenantName,
    ) -> Result<LinkView, CoreError> {
        let resource = format!("tenant:{tenant}");
        let prepared = async {
            self.authorize(caller, Action::ManageIncidents, "incidents")?;
            let campaign = self.campaign_row(id).await?;
            if campaign.state != CampaignState::Running {
                return Err(CoreError::Conflict(format!("campaign {id} is {}", campaign.state)));
            }
            if Timestamp::now() >= campaign.deadline {
                return Err(CoreError::Conflict(format!("campaign {id} is past its deadline")));
            }
            let tenant_row = self.tenant(tenant).await?;
            let outstanding = self.store().tenant_outstanding(id, tenant_row.id).await?;
            if outstanding.is_empty() {
                return Err(CoreError::Conflict(format!(
                    "{tenant} has nothing to reset in campaign {id} (no self-service credential still waiting)"
                )));
            }
            Ok((campaign, tenant_row, outstanding))
        }
        .await;
        let (campaign, tenant_row, outstanding) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::CampaignLinkIssue, &resource, Err(e)).await,
        };
        let issued = rekey_crypto::link::issue_link().map_err(CoreError::Crypto)?;
        let now = Timestamp::now();
        let mut ops = vec![WriteOp::InsertLink(LinkRow {
            id: issued.id,
            campaign_id: id,
            tenant_id: tenant_row.id,
            secret_hash: issued.hash.to_vec(),
            expires_at: campaign.deadline,
            used_at: None,
            revoked_at: None,
            created_by: caller.principal.audit_name(),
            created_at: now,
        })];
        for item in outstanding.iter().filter(|i| i.state == ItemState::Pending) {
            ops.push(WriteOp::SetItem(ItemUpdate {
                campaign: id,
                credential: item.credential_id,
                from: &[ItemState::Pending],
                state: ItemState::Notified,
                error: None,
                next_at: None,
                done_by: Some(caller.principal.audit_name()),
                note: None,
                stamp: Some(ItemState::Notified),
                attempt: false,
                at: now,
            }));
        }
        let detail = format!("campaign={id}; link={}; {} credentials", issued.id, outstanding.len());
        self.commit(caller, AuditAction::CampaignLinkIssue, &resource, WriteOp::All(ops), &detail).await?;
        Ok(LinkView {
            id: issued.id.to_string(),
            tenant: tenant.to_string(),
            url: self.link_url(issued.expose()),
            expires_at: campaign.deadline,
            credentials: outstanding.into_iter().map(|i| i.name).collect(),
        })
    }

    pub(super) fn link_url(&self, token: &str) -> String {
        let base = self.campaign_options().public_url.get().map_or("", String::as_str);
        format!("{}/r/{token}", base.trim_end_matches('/'))
    }

    /// `rekey campaign report`.
    pub async fn campaign_report(&self, caller: &Caller, id: CampaignId) -> Result<CampaignReport, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadIncidents, "incidents")?;
            let campaign = self.campaign_row(id).await?;
            let incident = self
                .store()
                .incident(campaign.incident_id)
                .await?
                .ok_or_else(|| CoreError::NotFound(format!("incident {}", campaign.incident_id)))?;
            // Why each credential was in scope, and its reveals, from the incident.
            let mut why: std::collections::HashMap<String, (String, i64)> = std::collections::HashMap::new();
            let mut after = None;
            loop {
                let page = self.incident_item_page(&incident, after.clone(), 5_000).await?;
                let Some(last) = page.last() else { break };
                after = Some((last.tenant.clone(), last.name.clone()));
                for i in page {
                    why.insert(format!("{}/{}", i.tenant, i.name), (i.reasons, i.reveals_since));
                }
            }
            let mut notices: BTreeMap<String, Vec<NoticeView>> = BTreeMap::new();
            for n in self.store().notices(id).await? {
                notices.entry(n.tenant.clone()).or_default().push(NoticeView {
                    channel: n.channel,
                    purpose: n.purpose,
                    state: n.state,
                    attempts: n.attempts,
                    error: n.error,
                    sent_at: n.sent_at,
                });
            }
            let mut tenants: Vec<TenantReport> = Vec::new();
            let mut filter = ItemFilter { limit: 5_000, ..Default::default() };
            let (mut done, mut open) = (0, 0);
            loop {
                let page = self.store().campaign_items(id, &filter).await?;
                let Some(last) = page.last() else { break };
                filter.after = Some((last.tenant.clone(), last.name.clone()));
                for item in page {
                    match item.state {
                        ItemState::Retired | ItemState::Waived => done += 1,
                        ItemState::Failed if item.next_at.is_none() => {}
                        _ => open += 1,
                    }
                    let (reasons, reveals_since) =
                        why.remove(&format!("{}/{}", item.tenant, item.name)).unwrap_or_default();
                    if tenants.last().is_none_or(|t| t.tenant != item.tenant) {
                        tenants.push(TenantReport {
                            tenant: item.tenant.clone(),
                            region: item.region.clone(),
                            items: Vec::new(),
                            notices: notices.remove(&item.tenant).unwrap_or_default(),
                            evidence: evidence_path(&item.tenant, incident.since),
                        });
                    }
                    let tenant = tenants.last_mut().expect("a tenant was pushed above");
                    tenant.items.push(ReportItem { item: item.into(), reasons, reveals_since });
                }
            }
            Ok(CampaignReport {
                generated_at: Timestamp::now(),
                incident: incident.into(),
                campaign: CampaignView::from(&campaign),
                done,
                open,
                tenants,
            })
        }
        .await;
        self.finish(caller, AuditAction::CampaignReport, &format!("campaign:{id}"), result).await
    }
}

/// The evidence path of a tenant's audit events since `since` (all of them without one).
fn evidence_path(tenant: &str, since: Option<Timestamp>) -> String {
    match since {
        Some(t) => format!("/v1/audit/evidence?tenant={tenant}&since={t}"),
        None => format!("/v1/audit/evidence?tenant={tenant}"),
    }
}
