//! Self-service: a tenant administrator's reset link, its page and its form.

use std::net::IpAddr;

use rekey_store::{CampaignItemRow, CampaignRow, CredentialRow, ItemUpdate, LinkRow, WriteOp};
use rekey_types::{AuditAction, AuditOutcome, AuditRecord, CampaignState, Fields, ItemState, Secret, Stage, Timestamp};

use super::{ResetItem, ResetOutcome, ResetPage};
use crate::failures::AttemptKind;
use crate::kernel::target::target_of;
use crate::{CoreError, Vault};

impl Vault {
    /// Checks a presented link: `NotFound` for a forged or unknown one, `LinkGone` for one used,
    /// revoked or expired, or whose campaign is over.
    async fn usable_link(&self, token: &str) -> Result<(LinkRow, CampaignRow), CoreError> {
        let presented =
            rekey_crypto::link::PresentedLink::parse(token).ok_or_else(|| CoreError::NotFound("reset link".into()))?;
        let link = self
            .store()
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
        if campaign.state != CampaignState::Running {
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

    /// The audit event of something a link did, as `link:<id>` (never its secret).
    fn link_event(
        token: &str,
        source: IpAddr,
        action: AuditAction,
        resource: &str,
        outcome: AuditOutcome,
        detail: &str,
    ) -> AuditRecord {
        crate::kernel::record(
            &Self::link_principal(token),
            &source.to_string(),
            &rekey_types::RequestId::generate(),
            action,
            resource,
            outcome,
            detail,
        )
    }

    async fn link_audit(
        &self,
        token: &str,
        source: IpAddr,
        action: AuditAction,
        resource: &str,
        outcome: AuditOutcome,
        detail: &str,
    ) -> Result<(), CoreError> {
        self.audit_event(Self::link_event(token, source, action, resource, outcome, detail)).await
    }

    /// Audits a link that did not open. A miss (forged, unknown, used, withdrawn, expired) is a
    /// failed attempt of its source: the first of a window audited as itself, the rest counted
    /// (see `failures`); any other failure (the store's, say) is audited as itself.
    async fn link_missed(
        &self,
        token: &str,
        source: IpAddr,
        action: AuditAction,
        e: &CoreError,
    ) -> Result<(), CoreError> {
        let event = Self::link_event(token, source, action, "", e.audit_outcome(), e.code().as_str());
        if matches!(e, CoreError::NotFound(_) | CoreError::LinkGone(_)) {
            self.failed_attempt(AttemptKind::Link, source, event).await
        } else {
            self.audit_event(event).await
        }
    }

    /// Refuses a source that spent its allowance of link failures, before the link is looked up.
    fn admit_link(&self, source: IpAddr) -> Result<(), CoreError> {
        self.options().failures.admit(AttemptKind::Link, source).map_err(CoreError::TooManyAttempts)
    }

    /// The target fields of the version a campaign replaces (`None` for one stored before
    /// target binding and not migrated yet): where a reset form sends the new secret.
    async fn campaign_target(
        &self,
        credential: &CredentialRow,
        from_version: u32,
    ) -> Result<Option<Fields>, CoreError> {
        Ok(self
            .store()
            .version(credential.id, Some(from_version))
            .await?
            .and_then(|v| crate::kernel::target::bound_fields(&v).cloned())
            .map(Fields::from_stored))
    }

    /// What a reset page shows. Audited as `link.view`.
    pub async fn reset_page(&self, token: &str, source: IpAddr) -> Result<ResetPage, CoreError> {
        self.admit_link(source)?;
        let link = match self.usable_link(token).await {
            Ok(l) => l,
            Err(e) => {
                self.link_missed(token, source, AuditAction::LinkView, &e).await?;
                return Err(e);
            }
        };
        let result = self.reset_page_of(&link.0, &link.1).await.map(|(page, _)| page);
        let (resource, outcome, detail) = match &result {
            Ok(p) => (format!("tenant:{}", p.tenant), AuditOutcome::Success, format!("{} credentials", p.items.len())),
            Err(e) => (String::new(), e.audit_outcome(), e.code().as_str().to_owned()),
        };
        self.link_audit(token, source, AuditAction::LinkView, &resource, outcome, &detail).await?;
        result
    }

    /// The page of a link, and beside each of its items the campaign item and the credential.
    async fn reset_page_of(
        &self,
        link: &LinkRow,
        campaign: &CampaignRow,
    ) -> Result<(ResetPage, Vec<(CampaignItemRow, CredentialRow)>), CoreError> {
        let tenant = self
            .store()
            .tenant_by_id(link.tenant_id)
            .await?
            .ok_or_else(|| CoreError::NotFound("the link's tenant".into()))?;
        let incident = self
            .store()
            .incident(campaign.incident_id)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("incident {}", campaign.incident_id)))?;
        let mut items = Vec::new();
        let mut rows = Vec::new();
        for item in self.store().tenant_outstanding(campaign.id, link.tenant_id).await? {
            let Some(credential) = self.store().credential(item.tenant_id, &item.name).await? else { continue };
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
                self.link_missed(token, source, AuditAction::LinkSubmit, &e).await?;
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
                let event = crate::kernel::record(
                    &by,
                    &source.to_string(),
                    &rekey_types::RequestId::generate(),
                    AuditAction::CredSend,
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
                self.link_audit(token, source, AuditAction::LinkSubmit, "", e.audit_outcome(), e.code().as_str())
                    .await?;
                return Err(e);
            }
        };
        let resource = format!("tenant:{}", page.tenant);
        if !refused.is_empty() || accepted.is_empty() {
            let detail = refused.iter().map(|(n, why)| format!("{n}: {why}")).collect::<Vec<_>>().join("; ");
            self.link_audit(
                token,
                source,
                AuditAction::LinkSubmit,
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
                from: Stage::Previous,
                stage: Stage::Retired,
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
                from: &[ItemState::Pending, ItemState::Notified, ItemState::Failed, ItemState::Rotated],
                state: ItemState::Retired,
                error: None,
                next_at: None,
                done_by: Some(by.clone()),
                note: None,
                stamp: Some(ItemState::Retired),
                attempt: false,
                at: now,
            }));
            names.push(credential.name.clone());
        }
        let event = crate::kernel::record(
            &by,
            &source.to_string(),
            &rekey_types::RequestId::generate(),
            AuditAction::LinkSubmit,
            &resource,
            AuditOutcome::Success,
            &format!("campaign={}; verified and stored: {}", campaign.id, names.join(", ")),
        );
        match self.submit(rekey_store::WriteRequest { op: Some(WriteOp::All(ops)), audit: event }).await {
            Ok(()) => Ok(ResetOutcome::Done(names)),
            // Spent by a concurrent submission, or a credential changed meanwhile.
            Err(CoreError::Conflict(_)) => match self.store().link(link.id).await? {
                Some(l) if l.used_at.is_some() => Err(CoreError::LinkGone("this link was already used".into())),
                _ => Err(CoreError::Conflict(
                    "a credential changed while the form was open; nothing was stored, open the link again".into(),
                )),
            },
            Err(e) => Err(e),
        }
    }
}
