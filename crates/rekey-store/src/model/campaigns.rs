//! Rows of rotation campaigns: items, notices, reset links, and their updates.

use rekey_types::{
    CampaignId, CampaignMode, CampaignState, CredentialId, CredentialKind, IncidentId, ItemState, LinkId, NoticeId,
    NoticeState, RotationId, TenantId, Timestamp,
};

/// An item state change. Timestamps set here are only set where still empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemUpdate {
    /// The item's campaign.
    pub campaign: CampaignId,
    /// The item's credential.
    pub credential: CredentialId,
    /// The states it may move from; in any other, the update is refused.
    pub from: &'static [ItemState],
    /// The state it moves to.
    pub state: ItemState,
    /// Why it failed or waits (never a secret).
    pub error: Option<String>,
    /// When a worker should look at it again; `None` for none.
    pub next_at: Option<Timestamp>,
    /// Who did the step.
    pub done_by: Option<String>,
    /// An operator's note.
    pub note: Option<String>,
    /// Which of `notified_at`, `rotated_at`, `verified_at`, `retired_at` (and those before it)
    /// to stamp, by state name.
    pub stamp: Option<ItemState>,
    /// Counts one more attempt.
    pub attempt: bool,
    /// When.
    pub at: Timestamp,
}

/// A delivery attempt of a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeUpdate {
    /// The notice.
    pub id: NoticeId,
    /// `pending` (retry at `next_at`), `sent`, `failed` or `skipped`.
    pub state: NoticeState,
    /// When to try again.
    pub next_at: Option<Timestamp>,
    /// The attempt's error.
    pub error: Option<String>,
    /// The reset link the notice carried.
    pub link_id: Option<LinkId>,
    /// When.
    pub at: Timestamp,
}

/// A rotation campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRow {
    /// The campaign's id.
    pub id: CampaignId,
    /// Its incident.
    pub incident_id: IncidentId,
    /// `running` or `finished`.
    pub state: CampaignState,
    /// Channels: `email`, `webhook`.
    pub notify: Vec<String>,
    /// When every item should be done.
    pub deadline: Timestamp,
    /// When tenants with open items are reminded.
    pub remind_at: Timestamp,
    /// Whether the reminders went out.
    pub reminded: bool,
    /// Items in it.
    pub items: i64,
    /// Who started it.
    pub created_by: String,
    /// When it started.
    pub created_at: Timestamp,
    /// When its last item was done.
    pub finished_at: Option<Timestamp>,
}

/// One credential of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignItemRow {
    /// The campaign.
    pub campaign_id: CampaignId,
    /// The credential to rotate.
    pub credential_id: CredentialId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The tenant's name.
    pub tenant: String,
    /// The tenant's region.
    pub region: String,
    /// The credential's name.
    pub name: String,
    /// Its kind.
    pub kind: CredentialKind,
    /// `automatic`, `self-service` or `manual`.
    pub mode: CampaignMode,
    /// The version current when the campaign started: the one to replace.
    pub from_version: u32,
    /// Its state.
    pub state: ItemState,
    /// The rotation that replaces it, once started.
    pub rotation_id: Option<RotationId>,
    /// Attempts so far.
    pub attempts: u32,
    /// When a worker should look at it again.
    pub next_at: Option<Timestamp>,
    /// Why it failed or waits (a connector's status and detail). Never a secret.
    pub error: Option<String>,
    /// Who did the last step (a principal, `system:campaign`, or `link:<id>`).
    pub done_by: Option<String>,
    /// Why it was waived.
    pub note: Option<String>,
    /// When its tenant was notified.
    pub notified_at: Option<Timestamp>,
    /// When a new secret was stored.
    pub rotated_at: Option<Timestamp>,
    /// When the new secret was verified.
    pub verified_at: Option<Timestamp>,
    /// When the old secret was retired.
    pub retired_at: Option<Timestamp>,
    /// When its state last changed.
    pub changed_at: Timestamp,
}

/// A notification of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRow {
    /// The notice's id.
    pub id: NoticeId,
    /// Its campaign.
    pub campaign_id: CampaignId,
    /// The tenant notified.
    pub tenant_id: TenantId,
    /// The tenant's name.
    pub tenant: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// `initial` or `reminder`.
    pub purpose: String,
    /// Its delivery state.
    pub state: NoticeState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When to try again.
    pub next_at: Option<Timestamp>,
    /// The last attempt's error.
    pub error: Option<String>,
    /// The reset link it carries.
    pub link_id: Option<LinkId>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was delivered.
    pub sent_at: Option<Timestamp>,
}

/// A self-service reset link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// The link's id (its public half).
    pub id: LinkId,
    /// Its campaign.
    pub campaign_id: CampaignId,
    /// The tenant whose items it resets.
    pub tenant_id: TenantId,
    /// SHA-256 of its secret half; the secret is never stored.
    pub secret_hash: Vec<u8>,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// When it was used (it works once).
    pub used_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// Who handed it out.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
}

/// Which items of a campaign to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFilter {
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only in this state.
    pub state: Option<ItemState>,
    /// Items after this `(tenant, name)`.
    pub after: Option<(String, String)>,
    /// At most this many.
    pub limit: u32,
}

/// How many items of a campaign (of one tenant, if set) are in a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemCount {
    /// The tenant (`None`: every tenant).
    pub tenant: Option<String>,
    /// The state.
    pub state: ItemState,
    /// Items in it.
    pub count: i64,
}
