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

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub incident: String,
    pub state: CampaignState,
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TenantProgress {
    pub tenant: String,
    pub total: i64,
    pub done: i64,
    pub counts: BTreeMap<String, i64>,
}

/// One item of a campaign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ItemView {
    pub tenant: String,
    pub region: String,
    pub name: String,
    pub kind: CredentialKind,
    pub mode: CampaignMode,
    pub state: ItemState,
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
    pub channel: String,
    pub purpose: String,
    pub state: NoticeState,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Timestamp>,
}

/// `campaign report`: per tenant, what was exposed, what was done, by whom and when.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignReport {
    pub generated_at: Timestamp,
    pub incident: IncidentView,
    pub campaign: CampaignView,
    pub done: i64,
    pub open: i64,
    pub tenants: Vec<TenantReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantReport {
    pub tenant: String,
    pub region: String,
    pub items: Vec<ReportItem>,
    pub notices: Vec<NoticeView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportItem {
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
