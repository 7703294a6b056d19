//! Rotation campaigns: every credential an incident reaches, driven to a verified new secret.
//!
//! ```text
//! pending ──► rotating ──► rotated ──► verified ──► retired      automatic (ldap; entra-app with app_object_id)
//!    │                                                           through the connectors' staged rotation
//!    └──────► notified ──► rotated ──► verified ──► retired      self-service (pop3, smtp, other entra-app):
//!                                                                the tenant's administrator, through a link
//! any open state ──► failed (the connector's reason; retried with backoff up to `max_attempts`)
//! any state but rotating ──► waived (by whom, why)
//! ```
//!
//! An automatic item holds its rotation's id, written in the same transaction that starts the
//! rotation; every later rotation step moves the item in the statement that moves the rotation
//! (`rekey-store`), so the two never disagree, whenever the server dies. A stolen secret is the
//! reason for the campaign: the old version is retired as soon as the new one is verified (no
//! grace period).
//!
//! Workers run inside the server. Each pass leases due items (so that servers sharing
//! PostgreSQL do not take the same one), works on `concurrency` of them at once (each network
//! step also holds a permit of its target host), queues and sends notices, and finishes a
//! campaign whose items are all done. A new secret stored by anyone for an item that waits for
//! one (`cred put`, a reset link) moves it to `rotated`, and a worker verifies it against the
//! target before calling it `verified`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rekey_connect::notify::{MailRelay, Webhook};
use rekey_store::{
    item_state, rotation_state, CampaignItemRow, CampaignRow, CredentialRow, ItemFilter, ItemUpdate, LinkRow,
    NoticeRow, NoticeUpdate, RotationRow, WriteOp,
};
use rekey_types::{
    AuditOutcome, CampaignId, CredRef, CredentialKind, Fields, IncidentId, NoticeId, Secret, TenantName, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::connectors::Actor;
use crate::failures::AttemptKind;
use crate::incidents::IncidentView;
use crate::policy::Action;
use crate::target::target_of;
use crate::{Caller, CoreError, Vault};

/// How campaigns run; from the `[campaign]` and `[notify]` config sections.
#[derive(Clone)]
pub struct CampaignOptions {
    /// Items worked on at once by this server (the per-host limit still applies).
    pub concurrency: usize,
    /// Time between passes when there is nothing to do; `None` turns the workers off.
    pub interval: Option<Duration>,
    /// Attempts of an item (and deliveries of a notice) before it is `failed` for good.
    pub max_attempts: u32,
    /// The first retry waits this long; each further one twice as long (at most an hour).
    pub retry_base: Duration,
    /// How long a worker holds an item before another may take it (a crashed server's items).
    pub lease: Duration,
    /// Reminders go out this long before the deadline (halfway, for a shorter campaign).
    pub remind_before: Duration,
    /// Where tenants open their reset links: `<public_url>/r/<link>`. Set from the
    /// configuration, or by the server once it knows the address it listens on.
    pub public_url: Arc<std::sync::OnceLock<String>>,
    pub mail: Option<MailRelay>,
    pub webhook: Option<Webhook>,
}

impl Default for CampaignOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            interval: Some(Duration::from_secs(2)),
            max_attempts: 5,
            retry_base: Duration::from_secs(30),
            lease: Duration::from_secs(300),
            remind_before: Duration::from_secs(48 * 3600),
            public_url: Default::default(),
            mail: None,
            webhook: None,
        }
    }
}

/// Campaign deadlines: default, shortest and longest.
const DEFAULT_DEADLINE_SECS: u64 = 7 * 24 * 3600;
const MIN_DEADLINE_SECS: u64 = 60;
const MAX_DEADLINE_SECS: u64 = 365 * 24 * 3600;
/// Items one pass works through before it sees to notices and finished campaigns.
const ITEMS_PER_PASS: usize = 2_000;
/// Tenants whose notices are queued per write.
const NOTICE_BATCH: u32 = 500;
/// The principal recorded for the workers' steps.
const WORKER: &str = "system:campaign";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartCampaign {
    pub incident: IncidentId,
    /// Seconds from now; 7 days if absent.
    #[serde(default)]
    pub deadline_secs: Option<u64>,
    /// `email`, `webhook`.
    #[serde(default)]
    pub notify: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignView {
    pub id: String,
    pub incident: String,
    pub state: String,
    pub notify: Vec<String>,
    pub deadline: Timestamp,
    pub remind_at: Timestamp,
    pub items: i64,
    pub created_by: String,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
}

impl From<&CampaignRow> for CampaignView {
    fn from(r: &CampaignRow) -> Self {
        Self {
            id: r.id.to_string(),
            incident: r.incident_id.to_string(),
            state: r.state.clone(),
            notify: r.notify.clone(),
            deadline: r.deadline,
            remind_at: r.remind_at,
            items: r.items,
            created_by: r.created_by.clone(),
            created_at: r.created_at,
            finished_at: r.finished_at,
        }
    }
}

/// `campaign status`: progress overall, per tenant, and of the notices.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignStatus {
    pub campaign: CampaignView,
    /// Items by state (every state listed, zero included).
    pub counts: BTreeMap<String, i64>,
    /// Items done: retired or waived.
    pub done: i64,
    /// Items still to be done (failed ones with a retry planned included).
    pub open: i64,
    /// Items failed for good.
    pub failed: i64,
    pub overdue: bool,
    /// Tenants with items not yet done first, then by name.
    pub tenants: Vec<TenantProgress>,
    /// Notices by `channel/state`.
    pub notices: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantProgress {
    pub tenant: String,
    pub total: i64,
    pub done: i64,
    pub counts: BTreeMap<String, i64>,
}

/// One item of a campaign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemView {
    pub tenant: String,
    pub region: String,
    pub name: String,
    pub kind: CredentialKind,
    pub mode: String,
    pub state: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<Timestamp>,
    pub changed_at: Timestamp,
}

impl From<CampaignItemRow> for ItemView {
    fn from(r: CampaignItemRow) -> Self {
        Self {
            next_attempt: r.next_at.filter(|_| r.state == item_state::FAILED || r.error.is_some()),
            tenant: r.tenant,
            region: r.region,
            name: r.name,
            kind: r.kind,
            mode: r.mode,
            state: r.state,
            attempts: r.attempts,
            error: r.error,
            done_by: r.done_by,
            note: r.note,
            notified_at: r.notified_at,
            rotated_at: r.rotated_at,
            verified_at: r.verified_at,
            retired_at: r.retired_at,
            changed_at: r.changed_at,
        }
    }
}

/// A notice as the report shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NoticeView {
    pub channel: String,
    pub purpose: String,
    pub state: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Timestamp>,
}

/// `campaign report`: per tenant, what was exposed, what was done, by whom and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignReport {
    pub generated_at: Timestamp,
    pub incident: IncidentView,
    pub campaign: CampaignView,
    pub done: i64,
    pub open: i64,
    pub tenants: Vec<TenantReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantReport {
    pub tenant: String,
    pub region: String,
    pub items: Vec<ReportItem>,
    pub notices: Vec<NoticeView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportItem {
    #[serde(flatten)]
    pub item: ItemView,
    /// Why the credential was in scope.
    pub reasons: String,
    /// Successful reveals since the incident's `since` (0 without one).
    pub reveals_since: i64,
}

/// A reset link handed out by an operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkView {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub expires_at: Timestamp,
    pub credentials: Vec<String>,
}

/// What a reset page shows: the tenant, why, and each credential to reset (never a secret).
#[derive(Debug, Clone)]
pub struct ResetPage {
    pub link: rekey_types::LinkId,
    pub tenant: String,
    pub incident: String,
    pub deadline: Timestamp,
    pub items: Vec<ResetItem>,
}

#[derive(Debug, Clone)]
pub struct ResetItem {
    pub name: String,
    pub kind: CredentialKind,
    /// The account the secret belongs to (a user, a bind DN, a client id), for password managers.
    pub account: String,
    pub target: String,
}

/// The answer to a reset form.
#[derive(Debug, Clone)]
pub enum ResetOutcome {
    /// Every new secret opened its target and is stored; the link is spent.
    Done(Vec<String>),
    /// Nothing was stored: these credentials' new secrets were refused, and why; the page to
    /// show again.
    Refused { page: ResetPage, refusals: Vec<(String, String)> },
}

/// What one worker pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CampaignPass {
    pub items: usize,
    pub notices: usize,
    pub finished: usize,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn after(d: Duration) -> Timestamp {
    Timestamp::from_micros(Timestamp::now().as_micros().saturating_add(micros(d)))
}

impl Vault {
    fn campaign_options(&self) -> &CampaignOptions {
        &self.options.campaign
    }

    /// When attempt `n` (1-based, just failed) is retried.
    fn retry_at(&self, attempts: u32) -> Option<Timestamp> {
        if attempts >= self.campaign_options().max_attempts {
            return None;
        }
        let factor = 1u32 << attempts.saturating_sub(1).min(16);
        Some(after((self.campaign_options().retry_base * factor).min(Duration::from_secs(3600))))
    }

    async fn campaign_row(&self, id: CampaignId) -> Result<CampaignRow, CoreError> {
        self.store.campaign(id).await?.ok_or_else(|| CoreError::NotFound(format!("campaign {id}")))
    }

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
                    return Err(CoreError::BadRequest(format!(
                        "{channel} notifications are not configured on this server (see [notify] in the configuration)"
                    )));
                }
                if !notify.contains(channel) {
                    notify.push(channel.clone());
                }
            }
            let incident = self
                .store
                .incident(input.incident)
                .await?
                .ok_or_else(|| CoreError::NotFound(format!("incident {}", input.incident)))?;
            if incident.state != "open" {
                return Err(CoreError::Conflict(format!(
                    "incident {} is closed: a campaign needs an open incident",
                    incident.id
                )));
            }
            if incident.affected == 0 {
                return Err(CoreError::BadRequest(format!("incident {} reaches no credentials", incident.id)));
            }
            let now = Timestamp::now();
            let span = i64::try_from(deadline).unwrap_or(i64::MAX) * 1_000_000;
            let before = micros(self.campaign_options().remind_before);
            let remind_in = if span > before { span - before } else { span / 2 };
            Ok(CampaignRow {
                id: CampaignId::generate(),
                incident_id: incident.id,
                state: "running".into(),
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
            Err(e) => return self.finish(caller, "campaign.start", &resource, Err(e)).await,
        };
        let detail = format!("campaign {}; notify={}", row.id, row.notify.join(","));
        self.commit(caller, "campaign.start", &resource, WriteOp::StartCampaign(row.clone()), &detail).await?;
        self.campaigns_wake.notify_one();
        Ok(CampaignView::from(&self.campaign_row(row.id).await?))
    }

    pub async fn list_campaigns(&self, caller: &Caller) -> Result<Vec<CampaignView>, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadIncidents, "incidents")?;
            Ok(self.store.campaigns(false, 1000).await?.iter().map(CampaignView::from).collect())
        }
        .await;
        self.finish(caller, "campaign.list", "", result).await
    }

    /// `rekey campaign status`.
    pub async fn campaign_status(&self, caller: &Caller, id: CampaignId) -> Result<CampaignStatus, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadIncidents, "incidents")?;
            self.status_of(&self.campaign_row(id).await?).await
        }
        .await;
        self.finish(caller, "campaign.status", &format!("campaign:{id}"), result).await
    }

    async fn status_of(&self, campaign: &CampaignRow) -> Result<CampaignStatus, CoreError> {
        let mut counts: BTreeMap<String, i64> = item_state::ALL.iter().map(|s| ((*s).to_owned(), 0)).collect();
        for c in self.store.item_counts(campaign.id, false).await? {
            counts.insert(c.state, c.count);
        }
        let mut tenants: BTreeMap<String, TenantProgress> = BTreeMap::new();
        for c in self.store.item_counts(campaign.id, true).await? {
            let t = c.tenant.unwrap_or_default();
            let entry = tenants.entry(t.clone()).or_insert_with(|| TenantProgress {
                tenant: t,
                total: 0,
                done: 0,
                counts: BTreeMap::new(),
            });
            entry.total += c.count;
            if c.state == item_state::RETIRED || c.state == item_state::WAIVED {
                entry.done += c.count;
            }
            entry.counts.insert(c.state, c.count);
        }
        let mut tenants: Vec<TenantProgress> = tenants.into_values().collect();
        tenants.sort_by_key(|t| (t.done == t.total, t.tenant.clone()));
        let mut notices = BTreeMap::new();
        for n in self.store.notices(campaign.id).await? {
            *notices.entry(format!("{}/{}", n.channel, n.state)).or_insert(0) += 1;
        }
        let open = self.store.open_items(campaign.id).await?;
        let done = counts[item_state::RETIRED] + counts[item_state::WAIVED];
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
            if let Some(state) = &filter.state {
                if !item_state::ALL.contains(&state.as_str()) {
                    return Err(CoreError::BadRequest(format!(
                        "unknown state {state:?}: use one of {}",
                        item_state::ALL.join(", ")
                    )));
                }
            }
            self.campaign_row(id).await?;
            Ok(self.store.campaign_items(id, &filter).await?.into_iter().map(ItemView::from).collect())
        }
        .await;
        self.finish(caller, "campaign.items", &format!("campaign:{id}"), result).await
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
            let reason = reason.trim();
            if reason.is_empty() || reason.len() > 500 || reason.chars().any(char::is_control) {
                return Err(CoreError::BadRequest("a waiver needs a reason: one line, at most 500 characters".into()));
            }
            let (_, credential) = self.tenant_credential(cref).await?;
            let item = self
                .store
                .campaign_item(id, credential.id)
                .await?
                .ok_or_else(|| CoreError::NotFound(format!("{cref} in campaign {id}")))?;
            if item.state == item_state::ROTATING {
                return Err(CoreError::Conflict(format!(
                    "{cref} is being rotated; waive it once the rotation has finished or failed"
                )));
            }
            if item.state == item_state::RETIRED || item.state == item_state::WAIVED {
                return Err(CoreError::Conflict(format!("{cref} is already {}", item.state)));
            }
            Ok((item, reason.to_owned()))
        }
        .await;
        let (item, reason) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, "campaign.item.waive", &resource, Err(e)).await,
        };
        let op = WriteOp::SetItem(ItemUpdate {
            campaign: id,
            credential: item.credential_id,
            from: &[
                item_state::PENDING,
                item_state::NOTIFIED,
                item_state::ROTATED,
                item_state::VERIFIED,
                item_state::FAILED,
            ],
            state: item_state::WAIVED,
            error: item.error.clone(),
            next_at: None,
            done_by: Some(caller.principal.audit_name()),
            note: Some(reason.clone()),
            stamp: None,
            attempt: false,
            at: Timestamp::now(),
        });
        self.commit(caller, "campaign.item.waive", &resource, op, &format!("campaign={id}; reason: {reason}")).await?;
        let item = self
            .store
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
            if campaign.state != "running" {
                return Err(CoreError::Conflict(format!("campaign {id} is {}", campaign.state)));
            }
            if Timestamp::now() >= campaign.deadline {
                return Err(CoreError::Conflict(format!("campaign {id} is past its deadline")));
            }
            let tenant_row = self.tenant(tenant).await?;
            let outstanding = self.store.tenant_outstanding(id, tenant_row.id).await?;
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
            Err(e) => return self.finish(caller, "campaign.link.issue", &resource, Err(e)).await,
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
        for item in outstanding.iter().filter(|i| i.state == item_state::PENDING) {
            ops.push(WriteOp::SetItem(ItemUpdate {
                campaign: id,
                credential: item.credential_id,
                from: &[item_state::PENDING],
                state: item_state::NOTIFIED,
                error: None,
                next_at: None,
                done_by: Some(caller.principal.audit_name()),
                note: None,
                stamp: Some(item_state::NOTIFIED),
                attempt: false,
                at: now,
            }));
        }
        let detail = format!("campaign={id}; link={}; {} credentials", issued.id, outstanding.len());
        self.commit(caller, "campaign.link.issue", &resource, WriteOp::All(ops), &detail).await?;
        Ok(LinkView {
            id: issued.id.to_string(),
            tenant: tenant.to_string(),
            url: self.link_url(issued.expose()),
            expires_at: campaign.deadline,
            credentials: outstanding.into_iter().map(|i| i.name).collect(),
        })
    }

    fn link_url(&self, token: &str) -> String {
        let base = self.campaign_options().public_url.get().map_or("", String::as_str);
        format!("{}/r/{token}", base.trim_end_matches('/'))
    }

    /// `rekey campaign report`.
    pub async fn campaign_report(&self, caller: &Caller, id: CampaignId) -> Result<CampaignReport, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadIncidents, "incidents")?;
            let campaign = self.campaign_row(id).await?;
            let incident = self
                .store
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
            for n in self.store.notices(id).await? {
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
                let page = self.store.campaign_items(id, &filter).await?;
                let Some(last) = page.last() else { break };
                filter.after = Some((last.tenant.clone(), last.name.clone()));
                for item in page {
                    match item.state.as_str() {
                        item_state::RETIRED | item_state::WAIVED => done += 1,
                        item_state::FAILED if item.next_at.is_none() => {}
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
        self.finish(caller, "campaign.report", &format!("campaign:{id}"), result).await
    }

    // ---- self-service ---------------------------------------------------------------------

    /// Checks a presented link: `NotFound` for a forged or unknown one, `LinkGone` for one used,
    /// revoked or expired, or whose campaign is over.
    async fn usable_link(&self, token: &str) -> Result<(LinkRow, CampaignRow), CoreError> {
        let presented =
            rekey_crypto::link::PresentedLink::parse(token).ok_or_else(|| CoreError::NotFound("reset link".into()))?;
        let link = self
            .store
            .link(presented.id)
            .await?
            .filter(|l| presented.matches(&l.secret_hash))
            .ok_or_else(|| CoreError::NotFound("reset link".into()))?;
        if link.used_at.is_some() {
            return Err(CoreError::LinkGone("this link was already used".into()));
        }
        if link.revoked_at.is_some() {
            return Err(CoreError::LinkGone("this link was withdrawn".into()));
        }
        if Timestamp::now() >= link.expires_at {
            return Err(CoreError::LinkGone("this link has expired".into()));
        }
        let campaign = self.campaign_row(link.campaign_id).await?;
        if campaign.state != "running" {
            return Err(CoreError::LinkGone("the campaign this link belongs to is over".into()));
        }
        Ok((link, campaign))
    }

    /// The principal a link acts as in the audit log: `link:<id>` (never its secret).
    fn link_principal(token: &str) -> String {
        match rekey_crypto::link::PresentedLink::parse(token) {
            Some(p) => format!("link:{}", p.id),
            None => "link:malformed".into(),
        }
    }

    async fn link_audit(
        &self,
        token: &str,
        source: IpAddr,
        action: &str,
        resource: &str,
        outcome: AuditOutcome,
        detail: &str,
    ) -> Result<(), CoreError> {
        let event = crate::vault::record(
            &Self::link_principal(token),
            &source.to_string(),
            &rekey_types::RequestId::generate(),
            action,
            resource,
            outcome,
            detail,
        );
        self.audit_event(event).await
    }

    /// Audits a link that did not open. A miss (forged, unknown, used, withdrawn, expired) is a
    /// failed attempt of its source: the first of a window audited as itself, the rest counted
    /// (see `failures`); any other failure (the store's, say) is audited as itself.
    async fn link_missed(&self, token: &str, source: IpAddr, action: &str, e: &CoreError) -> Result<(), CoreError> {
        if !matches!(e, CoreError::NotFound(_) | CoreError::LinkGone(_)) {
            return self.link_audit(token, source, action, "", e.audit_outcome(), e.code().as_str()).await;
        }
        let event = crate::vault::record(
            &Self::link_principal(token),
            &source.to_string(),
            &rekey_types::RequestId::generate(),
            action,
            "",
            e.audit_outcome(),
            e.code().as_str(),
        );
        self.failed_attempt(AttemptKind::Link, source, event).await
    }

    /// Refuses a source that spent its allowance of link failures, before the link is looked up.
    fn admit_link(&self, source: IpAddr) -> Result<(), CoreError> {
        self.options.failures.admit(AttemptKind::Link, source).map_err(CoreError::TooManyAttempts)
    }

    /// The target fields of the version a campaign replaces (`None` for one stored before
    /// target binding and not migrated yet): where a reset form sends the new secret.
    async fn campaign_target(
        &self,
        credential: &CredentialRow,
        from_version: u32,
    ) -> Result<Option<Fields>, CoreError> {
        Ok(self
            .store
            .version(credential.id, Some(from_version))
            .await?
            .and_then(|v| crate::target::bound_fields(&v).cloned())
            .map(Fields::from_stored))
    }

    /// What a reset page shows. Audited as `link.view`.
    pub async fn reset_page(&self, token: &str, source: IpAddr) -> Result<ResetPage, CoreError> {
        self.admit_link(source)?;
        let link = match self.usable_link(token).await {
            Ok(l) => l,
            Err(e) => {
                self.link_missed(token, source, "link.view", &e).await?;
                return Err(e);
            }
        };
        let result = self.reset_page_of(&link.0, &link.1).await.map(|(page, _)| page);
        let (resource, outcome, detail) = match &result {
            Ok(p) => (format!("tenant:{}", p.tenant), AuditOutcome::Success, format!("{} credentials", p.items.len())),
            Err(e) => (String::new(), e.audit_outcome(), e.code().as_str().to_owned()),
        };
        self.link_audit(token, source, "link.view", &resource, outcome, &detail).await?;
        result
    }

    /// The page of a link, and beside each of its items the campaign item and the credential.
    async fn reset_page_of(
        &self,
        link: &LinkRow,
        campaign: &CampaignRow,
    ) -> Result<(ResetPage, Vec<(CampaignItemRow, CredentialRow)>), CoreError> {
        let tenant = self
            .store
            .tenant_by_id(link.tenant_id)
            .await?
            .ok_or_else(|| CoreError::NotFound("the link's tenant".into()))?;
        let incident = self
            .store
            .incident(campaign.incident_id)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("incident {}", campaign.incident_id)))?;
        let mut items = Vec::new();
        let mut rows = Vec::new();
        for item in self.store.tenant_outstanding(campaign.id, link.tenant_id).await? {
            let Some(credential) = self.store.credential(item.tenant_id, &item.name).await? else { continue };
            let fields = self
                .campaign_target(&credential, item.from_version)
                .await?
                .unwrap_or_else(|| Fields::from_stored(credential.fields.clone()));
            let account = ["user", "bind_dn", "client_id"].iter().find_map(|k| fields.get(k)).unwrap_or_default();
            items.push(ResetItem {
                account: account.to_owned(),
                target: target_of(item.kind, &fields),
                name: item.name.clone(),
                kind: item.kind,
            });
            rows.push((item, credential));
        }
        let page = ResetPage {
            link: link.id,
            tenant: tenant.name,
            incident: incident.title,
            deadline: campaign.deadline,
            items,
        };
        Ok((page, rows))
    }

    /// Takes a reset form: every listed credential's new secret, each checked against its target.
    /// All are stored, and the link spent, only if every one opens its target; otherwise nothing
    /// changes and the refusals say why. A name the link does not list is refused outright.
    pub async fn reset_submit(
        &self,
        token: &str,
        source: IpAddr,
        secrets: Vec<(String, Secret)>,
    ) -> Result<ResetOutcome, CoreError> {
        self.admit_link(source)?;
        let (link, campaign) = match self.usable_link(token).await {
            Ok(l) => l,
            Err(e) => {
                self.link_missed(token, source, "link.submit", &e).await?;
                return Err(e);
            }
        };
        let checked = async {
            let (page, rows) = self.reset_page_of(&link, &campaign).await?;
            for (name, _) in &secrets {
                if !page.items.iter().any(|i| &i.name == name) {
                    return Err(CoreError::BadRequest(format!("{name:?} is not a credential this link resets")));
                }
            }
            let mut refused = Vec::new();
            let mut accepted = Vec::new();
            let by = format!("link:{}", link.id);
            for (item, credential) in rows {
                let secret = secrets.iter().find(|(n, _)| *n == item.name).map(|(_, s)| s);
                let Some(secret) = secret.filter(|s| !s.expose().is_empty()) else {
                    refused.push((item.name.clone(), "a new secret is required".to_owned()));
                    continue;
                };
                // A secret that any version of the credential held before is refused before it
                // is sent anywhere: the old one may be the stolen one.
                let fingerprint = self.fingerprint(credential.id, secret);
                if self.holder_of(credential.id, &fingerprint).await?.is_some() {
                    refused.push((
                        item.name.clone(),
                        "this secret was used before; choose one that this credential never had".to_owned(),
                    ));
                    continue;
                }
                // The new secret goes to the target of the version the campaign replaces, as an
                // operator left it, never to fields changed since.
                let Some(fields) = self.campaign_target(&credential, item.from_version).await? else {
                    refused.push((item.name.clone(), "the credential's target is not migrated yet".to_owned()));
                    continue;
                };
                let event = crate::vault::record(
                    &by,
                    &source.to_string(),
                    &rekey_types::RequestId::generate(),
                    "cred.send",
                    &format!("{}/{}", item.tenant, item.name),
                    AuditOutcome::Success,
                    &format!("purpose=reset-form; target={}", target_of(credential.kind, &fields)),
                );
                self.audit_event(event).await?;
                match self.probe(credential.kind, &fields, secret).await {
                    Ok(o) if o.is_ok() => accepted.push((item, credential, fields, secret, fingerprint)),
                    Ok(o) => refused.push((item.name.clone(), format!("{}: {}", o.status, o.detail))),
                    Err(e) => refused.push((item.name.clone(), e.to_string())),
                }
            }
            Ok((link, campaign, page, refused, accepted))
        }
        .await;
        let (link, campaign, page, refused, accepted) = match checked {
            Ok(c) => c,
            Err(e) => {
                self.link_audit(token, source, "link.submit", "", e.audit_outcome(), e.code().as_str()).await?;
                return Err(e);
            }
        };
        let resource = format!("tenant:{}", page.tenant);
        if !refused.is_empty() || accepted.is_empty() {
            let detail = refused.iter().map(|(n, why)| format!("{n}: {why}")).collect::<Vec<_>>().join("; ");
            self.link_audit(
                token,
                source,
                "link.submit",
                &resource,
                AuditOutcome::Error,
                &format!("refused: {detail}"),
            )
            .await?;
            return Ok(ResetOutcome::Refused { page, refusals: refused });
        }
        let by = format!("link:{}", link.id);
        let now = Timestamp::now();
        let mut ops = vec![WriteOp::UseLink { id: link.id, at: now }];
        let mut names = Vec::new();
        for (item, credential, fields, secret, fingerprint) in accepted {
            let next = crate::credentials::NextVersion {
                tenant: link.tenant_id,
                name: &credential.name,
                kind: credential.kind,
                fields,
                labels: credential.labels.clone(),
                existing: Some(&credential),
                created_by: &by,
                kek_version: None,
                pending: false,
            };
            let (op, updated) = self.sealed_version(next, secret).await?;
            ops.push(op);
            ops.push(WriteOp::SetVersionStage {
                credential: credential.id,
                version: item.from_version,
                from: "previous",
                stage: "retired",
            });
            // Verified at its target just now, and fresh: the freeze ends with it (the store
            // checks the fingerprint again in the same write).
            ops.push(WriteOp::LiftFreeze {
                credential: credential.id,
                fresh: Some((updated.latest_version, fingerprint.0.to_vec())),
            });
            ops.push(WriteOp::SetItem(ItemUpdate {
                campaign: campaign.id,
                credential: credential.id,
                from: &[item_state::PENDING, item_state::NOTIFIED, item_state::FAILED, item_state::ROTATED],
                state: item_state::RETIRED,
                error: None,
                next_at: None,
                done_by: Some(by.clone()),
                note: None,
                stamp: Some(item_state::RETIRED),
                attempt: false,
                at: now,
            }));
            names.push(credential.name.clone());
        }
        let event = crate::vault::record(
            &by,
            &source.to_string(),
            &rekey_types::RequestId::generate(),
            "link.submit",
            &resource,
            AuditOutcome::Success,
            &format!("campaign={}; verified and stored: {}", campaign.id, names.join(", ")),
        );
        match self.submit(rekey_store::WriteRequest { op: Some(WriteOp::All(ops)), audit: event }).await {
            Ok(()) => Ok(ResetOutcome::Done(names)),
            // Spent by a concurrent submission, or a credential changed meanwhile.
            Err(CoreError::Conflict(_)) => match self.store.link(link.id).await? {
                Some(l) if l.used_at.is_some() => Err(CoreError::LinkGone("this link was already used".into())),
                _ => Err(CoreError::Conflict(
                    "a credential changed while the form was open; nothing was stored, open the link again".into(),
                )),
            },
            Err(e) => Err(e),
        }
    }

    // ---- workers --------------------------------------------------------------------------

    pub(crate) fn start_campaigns(self: Arc<Self>) {
        let Some(interval) = self.campaign_options().interval else { return };
        let vault = Arc::downgrade(&self);
        let wake = self.campaigns_wake.clone();
        drop(self);
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let Some(this) = vault.upgrade() else { return };
                if this.closed.load(Ordering::SeqCst) {
                    return;
                }
                if first && this.store.backend() == rekey_store::Backend::Sqlite {
                    // Only this server uses an SQLite file: leases of a crashed run end now.
                    if let Err(e) = this.store.release_leases().await {
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
                    let claimed = self.store.claim_items(Timestamp::now(), after(options.lease), batch).await?;
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

        let campaigns = self.store.campaigns(true, 1000).await?;
        for campaign in campaigns.iter().filter(|c| !c.notify.is_empty()) {
            self.queue_notices(campaign).await?;
        }
        let due = self.store.due_notices(Timestamp::now(), 200).await?;
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
            if self.store.open_items(campaign.id).await? == 0 {
                let op = WriteOp::FinishCampaign { id: campaign.id, at: Timestamp::now() };
                let status = self.status_of(&campaign).await?;
                let detail = format!(
                    "campaign {} finished: {} retired, {} waived, {} failed",
                    campaign.id,
                    status.counts[item_state::RETIRED],
                    status.counts[item_state::WAIVED],
                    status.failed
                );
                let resource = format!("incident:{}", campaign.incident_id);
                match self.worker_write("campaign.finish", &resource, op, AuditOutcome::Success, &detail).await {
                    Ok(()) => pass.finished += 1,
                    Err(CoreError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(pass)
    }

    async fn worker_write(
        &self,
        action: &str,
        resource: &str,
        op: WriteOp,
        outcome: AuditOutcome,
        detail: &str,
    ) -> Result<(), CoreError> {
        let audit =
            crate::vault::record(WORKER, "", &rekey_types::RequestId::generate(), action, resource, outcome, detail);
        self.submit(rekey_store::WriteRequest { op: Some(op), audit }).await
    }

    /// One step of a due item, as far as it goes now.
    async fn work_item(&self, item: CampaignItemRow) -> Result<(), CoreError> {
        let resuming = matches!(item.state.as_str(), item_state::ROTATING | item_state::ROTATED | item_state::VERIFIED);
        let actor = Actor { recovering: resuming, retire_at_once: true, ..Actor::system(WORKER) };
        match (item.state.as_str(), item.rotation_id) {
            (item_state::ROTATING | item_state::ROTATED | item_state::VERIFIED, Some(rotation)) => {
                match self.store.rotation(rotation).await? {
                    Some(r) => self.follow_through(&actor, &item, r).await,
                    None => self.retry_or_fail(&item, "its rotation is missing", true).await,
                }
            }
            (item_state::ROTATED | item_state::FAILED, None) => self.confirm(&item).await,
            (item_state::PENDING | item_state::FAILED, _) if item.mode == "automatic" => {
                self.rotate_item(&actor, &item).await
            }
            (item_state::FAILED, Some(_)) => self.confirm(&item).await,
            _ => {
                // Nothing for a worker to do (a self-service item waits for its tenant).
                self.hold(&item, None, None).await
            }
        }
    }

    /// Starts an automatic item's rotation and follows it through.
    async fn rotate_item(&self, actor: &Actor, item: &CampaignItemRow) -> Result<(), CoreError> {
        let loaded = async {
            let tenant = self
                .store
                .tenant_by_id(item.tenant_id)
                .await?
                .ok_or_else(|| CoreError::NotFound("the item's tenant".into()))?;
            let credential = self
                .store
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
        if rotation.state == rotation_state::PROMOTED {
            rotation = self.retire(actor, rotation, true).await?;
        }
        let fresh = self
            .store
            .campaign_item(item.campaign_id, item.credential_id)
            .await?
            .ok_or_else(|| CoreError::NotFound("campaign item".into()))?;
        match rotation.state.as_str() {
            rotation_state::RETIRED => Ok(()),
            rotation_state::FAILED => {
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
            .store
            .tenant_by_id(item.tenant_id)
            .await?
            .ok_or_else(|| CoreError::NotFound("the item's tenant".into()))?;
        let Some(credential) =
            self.store.credential(item.tenant_id, &item.name).await?.filter(|c| c.id == item.credential_id)
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
        let versions = self.store.list_versions(credential.id).await?;
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
        let now_at = self.store.version(credential.id, Some(credential.current_version)).await?.and_then(|v| v.fields);
        let was_at = self.store.version(credential.id, Some(item.from_version)).await?.and_then(|v| v.fields);
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
                from: "previous",
                stage: "retired",
            },
            WriteOp::SetItem(ItemUpdate {
                campaign: item.campaign_id,
                credential: item.credential_id,
                from: &[item_state::ROTATED, item_state::FAILED],
                state: item_state::RETIRED,
                error: None,
                next_at: None,
                done_by: None,
                note: verified.is_none().then(|| "a generic credential has no target to verify".to_owned()),
                stamp: Some(if verified.is_some() { item_state::RETIRED } else { item_state::ROTATED }),
                attempt: false,
                at: now,
            }),
        ]);
        let detail = format!(
            "campaign={}; version {} verified; version {} retired",
            item.campaign_id, credential.current_version, item.from_version
        );
        self.worker_write("campaign.item.retire", &resource, op, AuditOutcome::Success, &detail).await
    }

    /// A step that did not work: try again later, or fail for good after `max_attempts`.
    async fn retry_or_fail(&self, item: &CampaignItemRow, why: &str, count: bool) -> Result<(), CoreError> {
        let resource = format!("{}/{}", item.tenant, item.name);
        let attempts = item.attempts + u32::from(count);
        let next = self.retry_at(attempts.max(1));
        let action = if next.is_some() { "campaign.item.retry" } else { "campaign.item.fail" };
        let op = WriteOp::SetItem(ItemUpdate {
            campaign: item.campaign_id,
            credential: item.credential_id,
            from: &[
                item_state::PENDING,
                item_state::ROTATING,
                item_state::ROTATED,
                item_state::VERIFIED,
                item_state::FAILED,
            ],
            state: item_state::FAILED,
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
        let (state, from) = item_state::named(&item.state)
            .ok_or_else(|| CoreError::Store(rekey_store::StoreError::Corrupt(format!("item state {}", item.state))))?;
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
        self.worker_write("campaign.item.wait", &resource, op, AuditOutcome::Success, &detail).await
    }

    // ---- notices --------------------------------------------------------------------------

    /// Queues the initial notice of every tenant with self-service items, and the reminders once
    /// the campaign's reminder time has come.
    async fn queue_notices(&self, campaign: &CampaignRow) -> Result<(), CoreError> {
        let now = Timestamp::now();
        let remind = !campaign.reminded && now >= campaign.remind_at && now < campaign.deadline;
        let purposes: &[&str] = if remind { &["initial", "reminder"] } else { &["initial"] };
        for purpose in purposes {
            loop {
                let tenants = self.store.tenants_to_notify(campaign.id, purpose, NOTICE_BATCH).await?;
                if tenants.is_empty() {
                    break;
                }
                let mut rows = Vec::new();
                for (tenant_id, tenant) in &tenants {
                    for channel in &campaign.notify {
                        rows.push(NoticeRow {
                            id: NoticeId::generate(),
                            campaign_id: campaign.id,
                            tenant_id: *tenant_id,
                            tenant: tenant.clone(),
                            channel: channel.clone(),
                            purpose: (*purpose).to_owned(),
                            state: "pending".into(),
                            attempts: 0,
                            next_at: Some(now),
                            error: None,
                            link_id: None,
                            created_at: now,
                            sent_at: None,
                        });
                    }
                }
                let detail =
                    format!("campaign={}; {purpose} notices queued for {} tenants", campaign.id, tenants.len());
                let resource = format!("incident:{}", campaign.incident_id);
                self.worker_write(
                    "campaign.notify.queue",
                    &resource,
                    WriteOp::QueueNotices(rows),
                    AuditOutcome::Success,
                    &detail,
                )
                .await?;
                if tenants.len() < NOTICE_BATCH as usize {
                    break;
                }
            }
        }
        if remind {
            let resource = format!("incident:{}", campaign.incident_id);
            let detail = format!("campaign={}; reminders queued", campaign.id);
            self.worker_write(
                "campaign.remind",
                &resource,
                WriteOp::SetReminded { id: campaign.id },
                AuditOutcome::Success,
                &detail,
            )
            .await?;
        }
        Ok(())
    }

    /// One delivery attempt of a notice, with a fresh link (revoked again if delivery fails).
    async fn send_notice(&self, notice: NoticeRow) -> Result<(), CoreError> {
        let resource = format!("tenant:{}", notice.tenant);
        let campaign = self.campaign_row(notice.campaign_id).await?;
        let outstanding = self.store.tenant_outstanding(campaign.id, notice.tenant_id).await?;
        let now = Timestamp::now();
        let skip = if campaign.state != "running" {
            Some("the campaign is over")
        } else if now >= campaign.deadline {
            Some("the deadline has passed")
        } else if outstanding.is_empty() {
            Some("nothing left to reset")
        } else {
            None
        };
        if let Some(why) = skip {
            let op = WriteOp::SetNotice(NoticeUpdate {
                id: notice.id,
                state: "skipped",
                next_at: None,
                error: Some(why.into()),
                link_id: None,
                at: now,
            });
            let detail = format!("campaign={}; {} {}: skipped: {why}", campaign.id, notice.purpose, notice.channel);
            return self.worker_write("campaign.notify", &resource, op, AuditOutcome::Success, &detail).await;
        }
        let tenant = self
            .store
            .tenant_by_id(notice.tenant_id)
            .await?
            .ok_or_else(|| CoreError::NotFound("the notice's tenant".into()))?;
        let incident = self
            .store
            .incident(campaign.incident_id)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("incident {}", campaign.incident_id)))?;
        let issued = rekey_crypto::link::issue_link().map_err(CoreError::Crypto)?;
        let link = LinkRow {
            id: issued.id,
            campaign_id: campaign.id,
            tenant_id: tenant.id,
            secret_hash: issued.hash.to_vec(),
            expires_at: campaign.deadline,
            used_at: None,
            revoked_at: None,
            created_by: WORKER.into(),
            created_at: now,
        };
        let detail =
            format!("campaign={}; link={}; for the {} {}", campaign.id, issued.id, notice.purpose, notice.channel);
        self.worker_write("campaign.link.issue", &resource, WriteOp::InsertLink(link), AuditOutcome::Success, &detail)
            .await?;

        let mut items = Vec::new();
        for item in &outstanding {
            let target = match self.store.credential(item.tenant_id, &item.name).await? {
                Some(c) => target_of(item.kind, &Fields::from_stored(c.fields.clone())),
                None => "?".into(),
            };
            items.push(NoticeItem { name: item.name.clone(), kind: item.kind, target });
        }
        let message = NoticeMessage {
            event: "rekey.campaign.notice",
            delivery: notice.id.to_string(),
            purpose: notice.purpose.clone(),
            campaign: campaign.id.to_string(),
            incident: incident.title.clone(),
            tenant: tenant.name.clone(),
            region: tenant.region.clone(),
            deadline: campaign.deadline,
            link: self.link_url(issued.expose()),
            items,
        };
        let sent = match notice.channel.as_str() {
            "email" => match &self.campaign_options().mail {
                Some(relay) => {
                    let to: Vec<String> = tenant.contacts.iter().filter(|c| c.contains('@')).cloned().collect();
                    relay.send(&to, &message.subject(), message.text()).await.map_err(|e| e.to_string())
                }
                None => Err("email is not configured on this server".into()),
            },
            "webhook" => match &self.campaign_options().webhook {
                Some(hook) => {
                    let body = serde_json::to_vec(&message).expect("a notice always serializes");
                    hook.post(body, &message.delivery).await.map_err(|e| e.to_string())
                }
                None => Err("webhooks are not configured on this server".into()),
            },
            other => Err(format!("unknown channel {other}")),
        };
        drop(message);
        let attempts = notice.attempts + 1;
        let (state, next_at, error, outcome) = match &sent {
            Ok(()) => ("sent", None, None, AuditOutcome::Success),
            Err(why) => match self.retry_at(attempts) {
                Some(next) => ("pending", Some(next), Some(why.clone()), AuditOutcome::Error),
                None => ("failed", None, Some(why.clone()), AuditOutcome::Error),
            },
        };
        let mut ops = vec![WriteOp::SetNotice(NoticeUpdate {
            id: notice.id,
            state,
            next_at,
            error: error.clone(),
            link_id: Some(issued.id),
            at: Timestamp::now(),
        })];
        if sent.is_err() {
            ops.push(WriteOp::RevokeLink { id: issued.id, at: Timestamp::now() });
        }
        let detail = format!(
            "campaign={}; {} {} attempt {attempts}: {state}{}",
            campaign.id,
            notice.purpose,
            notice.channel,
            error.map(|e| format!(": {e}")).unwrap_or_default()
        );
        self.worker_write("campaign.notify", &resource, WriteOp::All(ops), outcome, &detail).await
    }
}

/// A notice's content: the webhook body, and the source of the email's text. It carries the
/// link (a bearer secret for one tenant's reset), so it is never logged.
#[derive(Serialize)]
struct NoticeMessage {
    event: &'static str,
    delivery: String,
    purpose: String,
    campaign: String,
    incident: String,
    tenant: String,
    region: String,
    deadline: Timestamp,
    link: String,
    items: Vec<NoticeItem>,
}

#[derive(Serialize)]
struct NoticeItem {
    name: String,
    kind: CredentialKind,
    target: String,
}

impl NoticeMessage {
    fn subject(&self) -> String {
        let what = if self.purpose == "reminder" { "Reminder: action" } else { "Action" };
        format!("{what} required: reset {} credential(s) for {}", self.items.len(), self.tenant)
    }

    fn text(&self) -> String {
        let mut body = format!(
            "Hello,\n\nWe are responding to a security incident: {}.\n\n\
             The credentials below, which your organisation ({}) gave us,\n\
             may be exposed. Please set a new secret for each of them at its\n\
             target, then enter the new secrets on this page, which checks each\n\
             one against its target before accepting it:\n\n{}\n\n\
             The link works once and until {}.\n\n",
            self.incident, self.tenant, self.link, self.deadline
        );
        for item in &self.items {
            body.push_str(&format!("  - {} ({}): {}\n", item.name, item.kind, item.target));
        }
        body.push_str("\nNever send a password by email. This message asks for none.\n");
        body
    }
}
