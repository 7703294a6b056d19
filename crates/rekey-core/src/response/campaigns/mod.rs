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
use std::time::Duration;

use rekey_store::{CampaignItemRow, CampaignRow};
use rekey_types::{
    CampaignId, CampaignMode, CampaignState, CredentialKind, IncidentId, ItemState, NoticeState, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::response::incidents::IncidentView;
use crate::{CoreError, Vault};

mod api;
mod notices;
mod reset;
mod worker;

pub use crate::options::CampaignOptions;

/// Campaign deadlines: default, shortest and longest.
const DEFAULT_DEADLINE_SECS: u64 = 7 * 24 * 3600;
const MIN_DEADLINE_SECS: u64 = 60;
const MAX_DEADLINE_SECS: u64 = 365 * 24 * 3600;
/// The longest reason for a waiver, in characters.
pub const MAX_REASON: usize = 500;
/// Items one pass works through before it sees to notices and finished campaigns.
const ITEMS_PER_PASS: usize = 2_000;
/// Tenants whose notices are queued per write.
const NOTICE_BATCH: u32 = 500;
/// The principal recorded for the workers' steps.
const WORKER: &str = "system:campaign";

/// `campaign start`: the incident, the deadline, the channels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartCampaign {
    /// The open incident whose credentials to rotate.
    pub incident: IncidentId,
    /// Seconds from now; 7 days if absent.
    #[serde(default)]
    pub deadline_secs: Option<u64>,
    /// `email`, `webhook`.
    #[serde(default)]
    pub notify: Vec<String>,
}

/// A rotation campaign: every credential of an incident driven to a verified new secret.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignView {
    /// The campaign's id.
    pub id: String,
    /// Its incident's id.
    pub incident: String,
    /// `running` or `finished`.
    pub state: CampaignState,
    /// Channels tenants are notified by: `email`, `webhook`.
    pub notify: Vec<String>,
    /// When every item should be done.
    pub deadline: Timestamp,
    /// When tenants with open items are reminded.
    pub remind_at: Timestamp,
    /// Items (credentials) in it.
    pub items: i64,
    /// Who started it.
    pub created_by: String,
    /// When it started.
    pub created_at: Timestamp,
    /// When its last item was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
}

impl From<&CampaignRow> for CampaignView {
    fn from(r: &CampaignRow) -> Self {
        Self {
            id: r.id.to_string(),
            incident: r.incident_id.to_string(),
            state: r.state,
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
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignStatus {
    /// The campaign.
    pub campaign: CampaignView,
    /// Items by state (every state listed, zero included).
    pub counts: BTreeMap<String, i64>,
    /// Items done: retired or waived.
    pub done: i64,
    /// Items still to be done (failed ones with a retry planned included).
    pub open: i64,
    /// Items failed for good.
    pub failed: i64,
    /// Whether the deadline passed with items open.
    pub overdue: bool,
    /// Tenants with items not yet done first, then by name.
    pub tenants: Vec<TenantProgress>,
    /// Notices by `channel/state`.
    pub notices: BTreeMap<String, i64>,
}

/// One tenant's progress in a campaign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TenantProgress {
    /// The tenant.
    pub tenant: String,
    /// Its items.
    pub total: i64,
    /// Its items done.
    pub done: i64,
    /// Its items by state.
    pub counts: BTreeMap<String, i64>,
}

/// One item of a campaign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ItemView {
    /// The credential's tenant.
    pub tenant: String,
    /// The tenant's region.
    pub region: String,
    /// The credential's name.
    pub name: String,
    /// Its kind.
    pub kind: CredentialKind,
    /// How it is rotated: `automatic`, `self-service` or `manual`.
    pub mode: CampaignMode,
    /// The item's state.
    pub state: ItemState,
    /// Rotation attempts so far.
    pub attempts: u32,
    /// The last attempt's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who finished it (a token, `system`, or a reset link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_by: Option<String>,
    /// An operator's note, e.g. a waiver's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When the worker tries again, after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<Timestamp>,
    /// When its tenant was notified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<Timestamp>,
    /// When a new secret was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<Timestamp>,
    /// When the new secret was verified against the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Timestamp>,
    /// When the old secret was retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<Timestamp>,
    /// When its state last changed.
    pub changed_at: Timestamp,
}

impl From<CampaignItemRow> for ItemView {
    fn from(r: CampaignItemRow) -> Self {
        Self {
            next_attempt: r.next_at.filter(|_| r.state == ItemState::Failed || r.error.is_some()),
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct NoticeView {
    /// `email` or `webhook`.
    pub channel: String,
    /// `notice` or `reminder`.
    pub purpose: String,
    /// Its delivery state.
    pub state: NoticeState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The last attempt's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Timestamp>,
}

/// `campaign report`: per tenant, what was exposed, what was done, by whom and when.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignReport {
    /// When the report was made.
    pub generated_at: Timestamp,
    /// The incident.
    pub incident: IncidentView,
    /// The campaign.
    pub campaign: CampaignView,
    /// Items done (retired or waived).
    pub done: i64,
    /// Items not done yet.
    pub open: i64,
    /// Per tenant, by name.
    pub tenants: Vec<TenantReport>,
}

/// One tenant's part of a campaign report.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantReport {
    /// The tenant.
    pub tenant: String,
    /// Its region.
    pub region: String,
    /// Its items.
    pub items: Vec<ReportItem>,
    /// The notices sent to it.
    pub notices: Vec<NoticeView>,
    /// Where the tenant's audit events since the incident's `since`, each with its inclusion
    /// proof against a signed checkpoint, are fetched (`GET` with an operator's or auditor's
    /// token; `rekey audit evidence` writes them to a directory `rekey audit verify --export`
    /// checks offline): the path and query.
    pub evidence: String,
}

/// An item as the report shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportItem {
    /// The item.
    #[serde(flatten)]
    pub item: ItemView,
    /// Why the credential was in scope.
    pub reasons: String,
    /// Successful reveals since the incident's `since` (0 without one).
    pub reveals_since: i64,
}

/// A reset link handed out by an operator.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinkView {
    /// The link's id (its public half).
    pub id: String,
    /// The tenant whose items it resets.
    pub tenant: String,
    /// The link, shown once: it is a bearer secret for this tenant's reset page.
    pub url: String,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// The credentials it resets.
    pub credentials: Vec<String>,
}

/// What a reset page shows: the tenant, why, and each credential to reset (never a secret).
#[derive(Debug, Clone)]
pub struct ResetPage {
    /// The link's id.
    pub link: rekey_types::LinkId,
    /// The tenant.
    pub tenant: String,
    /// The incident's title.
    pub incident: String,
    /// The campaign's deadline.
    pub deadline: Timestamp,
    /// The credentials to reset.
    pub items: Vec<ResetItem>,
}

/// One credential on a reset page.
#[derive(Debug, Clone)]
pub struct ResetItem {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: CredentialKind,
    /// The account the secret belongs to (a user, a bind DN, a client id), for password managers.
    pub account: String,
    /// Where it connects (host, URL), so the admin knows which one it is.
    pub target: String,
}

/// The answer to a reset form.
#[derive(Debug, Clone)]
pub enum ResetOutcome {
    /// Every new secret opened its target and is stored; the link is spent.
    Done(Vec<String>),
    /// Nothing was stored: these credentials' new secrets were refused, and why; the page to
    /// show again.
    Refused {
        /// The page, to show again.
        page: ResetPage,
        /// Each refused credential's name, and why.
        refusals: Vec<(String, String)>,
    },
}

/// What one worker pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CampaignPass {
    /// Items started or advanced.
    pub items: usize,
    /// Notices sent.
    pub notices: usize,
    /// Items finished.
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
        &self.options().campaign
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
        self.store().campaign(id).await?.ok_or_else(|| CoreError::NotFound(format!("campaign {id}")))
    }
}
