//! Alerts as operators handle them: list, show, acknowledge, escalate to an incident.

use rekey_store::{AlertRow, WriteOp, WriteRequest};
use rekey_types::{AlertId, AlertState, AuditAction, AuditOutcome, IncidentId, RuleAction, Severity, Timestamp};
use serde::{Deserialize, Serialize};

use crate::incidents::{IncidentReport, OpenIncident, MAX_SELECTORS};
use crate::kernel::policy::Action;
use crate::{Caller, CoreError, Vault};

/// Longest note an operator may leave on an alert.
pub const MAX_NOTE: usize = 500;

/// An alert, as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertView {
    /// Its id.
    pub id: String,
    /// The rule that raised it (docs/detection.md).
    pub rule: String,
    /// How urgent.
    pub severity: Severity,
    /// `open`, `acknowledged` or `escalated`.
    pub state: AlertState,
    /// Who: `token:<id>`.
    pub principal: String,
    /// From where.
    pub source: String,
    /// What the rule saw, in one line.
    pub summary: String,
    /// The credentials it saw touched (`tenant/name`), at most 1,000.
    pub resources: Vec<String>,
    /// Events that made it up.
    pub events: i64,
    /// The first sign.
    pub first_seen: Timestamp,
    /// The event that raised it.
    pub last_seen: Timestamp,
    /// The audit sequence numbers of the first sign and of the event that raised it.
    pub first_seq: i64,
    /// See `first_seq`.
    pub last_seq: i64,
    /// What the rule was set to do on its own: `none`, `revoke` or `freeze`.
    pub action: RuleAction,
    /// How that went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_outcome: Option<String>,
    /// Who acknowledged or escalated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_by: Option<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_at: Option<Timestamp>,
    /// The acknowledging operator's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The incident opened from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// Whether its notice was delivered (webhook or e-mail, where configured).
    pub notified: bool,
    /// When it was raised.
    pub created_at: Timestamp,
}

impl From<AlertRow> for AlertView {
    fn from(a: AlertRow) -> Self {
        AlertView {
            id: a.id.to_string(),
            rule: a.rule,
            severity: a.severity,
            state: a.state,
            principal: a.principal,
            source: a.source,
            summary: a.summary,
            resources: a.resources,
            events: a.events,
            first_seen: a.first_seen,
            last_seen: a.last_seen,
            first_seq: a.first_seq,
            last_seq: a.last_seq,
            action: a.action,
            action_outcome: a.action_outcome,
            handled_by: a.handled_by,
            handled_at: a.handled_at,
            note: a.note,
            incident: a.incident.map(|i| i.to_string()),
            notified: a.notified_at.is_some(),
            created_at: a.created_at,
        }
    }
}

/// What an escalation made: the incident, and the alert as it is now.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Escalation {
    /// The alert.
    pub alert: AlertView,
    /// The incident opened from it.
    pub incident: IncidentReport,
}

impl Vault {
    /// `alert list`: the newest first, of one state if given.
    pub async fn list_alerts(
        &self,
        caller: &Caller,
        state: Option<AlertState>,
        limit: u32,
    ) -> Result<Vec<AlertView>, CoreError> {
        let result = async {
            self.authorize(caller, Action::ManageAlerts, "alerts")?;
            Ok(self.store().alerts(state, limit.clamp(1, 10_000)).await?.into_iter().map(AlertView::from).collect())
        }
        .await;
        self.finish(caller, AuditAction::AlertList, "", result).await
    }

    /// `alert show`.
    pub async fn show_alert(&self, caller: &Caller, id: AlertId) -> Result<AlertView, CoreError> {
        let result = async {
            self.authorize(caller, Action::ManageAlerts, "alerts")?;
            Ok(self.alert_row(id).await?.into())
        }
        .await;
        self.finish(caller, AuditAction::AlertShow, &format!("alert:{id}"), result).await
    }

    pub(crate) async fn alert_row(&self, id: AlertId) -> Result<AlertRow, CoreError> {
        self.store().alert(id).await?.ok_or_else(|| CoreError::NotFound(format!("alert {id}")))
    }

    /// `alert ack`: judged (a false positive, or dealt with), with a note.
    pub async fn ack_alert(&self, caller: &Caller, id: AlertId, note: String) -> Result<AlertView, CoreError> {
        let resource = format!("alert:{id}");
        let checked = async {
            self.authorize(caller, Action::ManageAlerts, "alerts")?;
            let note = rekey_types::text::line("the note", &note, MAX_NOTE)
                .map_err(|e| CoreError::BadRequest(e.to_string()))?
                .to_owned();
            open_alert(self.alert_row(id).await?)?;
            Ok(note)
        }
        .await;
        let note = match checked {
            Ok(n) => n,
            Err(e) => return self.finish(caller, AuditAction::AlertAck, &resource, Err(e)).await,
        };
        let op = WriteOp::HandleAlert {
            id,
            state: AlertState::Acknowledged,
            by: caller.principal.audit_name(),
            at: Timestamp::now(),
            note: Some(note),
            incident: None,
        };
        self.commit(caller, AuditAction::AlertAck, &resource, op, "acknowledged").await?;
        Ok(self.alert_row(id).await?.into())
    }

    /// `alert escalate`: opens an incident of the alert's principal's token (every credential
    /// it could reveal and did reveal), the credentials the alert names, since its first sign;
    /// the incident's opening and the alert's new state are one write.
    pub async fn escalate_alert(&self, caller: &Caller, id: AlertId) -> Result<Escalation, CoreError> {
        let resource = format!("alert:{id}");
        let incident = IncidentId::generate();
        let prepared = async {
            self.authorize(caller, Action::ManageAlerts, "alerts")?;
            let alert = open_alert(self.alert_row(id).await?)?;
            let mut scope = Vec::new();
            if alert.principal.starts_with("token:") {
                scope.push(alert.principal.clone());
            }
            if scope.len() + alert.resources.len() <= MAX_SELECTORS {
                scope.extend(alert.resources.iter().map(|r| format!("cred:{r}")));
            }
            if scope.is_empty() {
                return Err(CoreError::Conflict(
                    "this alert names no token and no credential: open an incident by hand".into(),
                ));
            }
            let title = format!("alert {id}: {} by {}", alert.rule, alert.principal);
            let input = OpenIncident { title, scope, since: Some(alert.first_seen) };
            self.incident_to_open(caller, incident, input).await
        }
        .await;
        let open = match prepared {
            Ok(op) => op,
            Err(e) => return self.finish(caller, AuditAction::AlertEscalate, &resource, Err(e)).await,
        };
        let detail = crate::incidents::opened_detail(&open);
        let handle = WriteOp::HandleAlert {
            id,
            state: AlertState::Escalated,
            by: caller.principal.audit_name(),
            at: Timestamp::now(),
            note: None,
            incident: Some(incident),
        };
        let opened = self.event(
            caller,
            AuditAction::IncidentOpen,
            &format!("incident:{incident}"),
            AuditOutcome::Success,
            &format!("{detail}; from alert:{id}"),
        );
        self.submit(WriteRequest { op: Some(WriteOp::All(vec![open, handle])), audit: opened }).await?;
        self.audit_event(self.event(
            caller,
            AuditAction::AlertEscalate,
            &resource,
            AuditOutcome::Success,
            &format!("incident:{incident}"),
        ))
        .await?;
        Ok(Escalation { alert: self.alert_row(id).await?.into(), incident: self.report(incident).await? })
    }
}

fn open_alert(alert: AlertRow) -> Result<AlertRow, CoreError> {
    if alert.state == AlertState::Open {
        Ok(alert)
    } else {
        Err(CoreError::Conflict(format!("alert {} is {} already", alert.id, alert.state)))
    }
}
