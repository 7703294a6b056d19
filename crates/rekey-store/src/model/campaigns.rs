//! Rows of rotation campaigns: items, notices, reset links, and their updates.

use rekey_types::{
    CampaignId, CampaignMode, CampaignState, CredentialId, CredentialKind, IncidentId, ItemState, LinkId, NoticeId,
    NoticeState, RotationId, TenantId, Timestamp,
};

/// An item state change. Timestamps set here are only set where still empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemUpdate {
    pub campaign: CampaignId,
    pub credential: CredentialId,
    pub from: &'static [ItemState],
    pub state: ItemState,
    pub error: Option<String>,
    /// When a worker should look at it again; `None` for none.
    pub next_at: Option<Timestamp>,
    pub done_by: Option<String>,
    pub note: Option<String>,
    /// Which of `notified_at`, `rotated_at`, `verified_at`, `retired_at` (and those before it)
    /// to stamp, by state name.
    pub stamp: Option<ItemState>,
    /// Counts one more attempt.
    pub attempt: bool,
    pub at: Timestamp,
}

/// A delivery attempt of a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeUpdate {
    pub id: NoticeId,
    /// `pending` (retry at `next_at`), `sent`, `failed` or `skipped`.
    pub state: NoticeState,
    pub next_at: Option<Timestamp>,
    pub error: Option<String>,
    pub link_id: Option<LinkId>,
    pub at: Timestamp,
}

/// A rotation campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRow {
    pub id: CampaignId,
    pub incident_id: IncidentId,
    /// `running` or `finished`.
    pub state: CampaignState,
    /// Channels: `email`, `webhook`.
    pub notify: Vec<String>,
    pub deadline: Timestamp,
    pub remind_at: Timestamp,
    pub reminded: bool,
    pub items: i64,
    pub created_by: String,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// One credential of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignItemRow {
    pub campaign_id: CampaignId,
    pub credential_id: CredentialId,
    pub tenant_id: TenantId,
    pub tenant: String,
    pub region: String,
    pub name: String,
    pub kind: CredentialKind,
    /// `automatic`, `self-service` or `manual`.
    pub mode: CampaignMode,
    pub from_version: u32,
    pub state: ItemState,
    pub rotation_id: Option<RotationId>,
    pub attempts: u32,
    pub next_at: Option<Timestamp>,
    /// Why it failed or waits (a connector's status and detail). Never a secret.
    pub error: Option<String>,
    /// Who did the last step (a principal, `system:campaign`, or `link:<id>`).
    pub done_by: Option<String>,
    /// Why it was waived.
    pub note: Option<String>,
    pub notified_at: Option<Timestamp>,
    pub rotated_at: Option<Timestamp>,
    pub verified_at: Option<Timestamp>,
    pub retired_at: Option<Timestamp>,
    pub changed_at: Timestamp,
}

/// A notification of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRow {
    pub id: NoticeId,
    pub campaign_id: CampaignId,
    pub tenant_id: TenantId,
    pub tenant: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// `initial` or `reminder`.
    pub purpose: String,
    pub state: NoticeState,
    pub attempts: u32,
    pub next_at: Option<Timestamp>,
    pub error: Option<String>,
    pub link_id: Option<LinkId>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// A self-service reset link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    pub id: LinkId,
    pub campaign_id: CampaignId,
    pub tenant_id: TenantId,
    pub secret_hash: Vec<u8>,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub created_by: String,
    pub created_at: Timestamp,
}

/// Which items of a campaign to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFilter {
    pub tenant: Option<String>,
    pub state: Option<ItemState>,
    /// Items after this `(tenant, name)`.
    pub after: Option<(String, String)>,
    pub limit: u32,
}

/// How many items of a campaign (of one tenant, if set) are in a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemCount {
    pub tenant: Option<String>,
    pub state: ItemState,
    pub count: i64,
}
