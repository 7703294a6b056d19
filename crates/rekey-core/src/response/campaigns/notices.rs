//! Notices to tenants: queued when a campaign starts (and as reminders), sent by email and
//! webhook, each delivery recorded.

use rekey_store::{CampaignRow, LinkRow, NoticeRow, NoticeUpdate, WriteOp};
use rekey_types::{AuditAction, AuditOutcome, CampaignState, CredentialKind, Fields, NoticeId, NoticeState, Timestamp};
use serde::Serialize;

use super::{NOTICE_BATCH, WORKER};
use crate::kernel::target::target_of;
use crate::{CoreError, Vault};

impl Vault {
    /// Queues the initial notice of every tenant with self-service items, and the reminders once
    /// the campaign's reminder time has come.
    pub(super) async fn queue_notices(&self, campaign: &CampaignRow) -> Result<(), CoreError> {
        let now = Timestamp::now();
        let remind = !campaign.reminded && now >= campaign.remind_at && now < campaign.deadline;
        let purposes: &[&str] = if remind { &["initial", "reminder"] } else { &["initial"] };
        for purpose in purposes {
            loop {
                let tenants = self.store().tenants_to_notify(campaign.id, purpose, NOTICE_BATCH).await?;
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
                            state: NoticeState::Pending,
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
                    AuditAction::CampaignNotifyQueue,
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
                AuditAction::CampaignRemind,
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
    pub(super) async fn send_notice(&self, notice: NoticeRow) -> Result<(), CoreError> {
        let resource = format!("tenant:{}", notice.tenant);
        let campaign = self.campaign_row(notice.campaign_id).await?;
        let outstanding = self.store().tenant_outstanding(campaign.id, notice.tenant_id).await?;
        let now = Timestamp::now();
        let skip = if campaign.state != CampaignState::Running {
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
                state: NoticeState::Skipped,
                next_at: None,
                error: Some(why.into()),
                link_id: None,
                at: now,
            });
            let detail = format!("campaign={}; {} {}: skipped: {why}", campaign.id, notice.purpose, notice.channel);
            return self.worker_write(AuditAction::CampaignNotify, &resource, op, AuditOutcome::Success, &detail).await;
        }
        let tenant = self
            .store()
            .tenant_by_id(notice.tenant_id)
            .await?
            .ok_or_else(|| CoreError::NotFound("the notice's tenant".into()))?;
        let incident = self
            .store()
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
        self.worker_write(
            AuditAction::CampaignLinkIssue,
            &resource,
            WriteOp::InsertLink(link),
            AuditOutcome::Success,
            &detail,
        )
        .await?;

        let mut items = Vec::new();
        for item in &outstanding {
            let target = match self.store().credential(item.tenant_id, &item.name).await? {
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
            Ok(()) => (NoticeState::Sent, None, None, AuditOutcome::Success),
            Err(why) => match self.retry_at(attempts) {
                Some(next) => (NoticeState::Pending, Some(next), Some(why.clone()), AuditOutcome::Error),
                None => (NoticeState::Failed, None, Some(why.clone()), AuditOutcome::Error),
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
        self.worker_write(AuditAction::CampaignNotify, &resource, WriteOp::All(ops), outcome, &detail).await
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
