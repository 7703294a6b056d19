//! Alerts and decoys: the detector's inserts (with its position in the log, in one
//! transaction), an operator's judgement, notices, and the decoy registry.

use rekey_types::{AlertId, AlertState, CredentialId, IncidentId, TenantId, Timestamp};

use super::{all, begin_write, finish, id, json, json_of, kind, opt_ts, ts};
use crate::conn::{args, Conn, OwnedRow};
use crate::model::{AlertRow, BaselineRow, DecoyRow};
use crate::StoreError;

fn alert_row(r: &OwnedRow) -> Result<AlertRow, StoreError> {
    Ok(AlertRow {
        id: id(r, "id")?,
        key: r.text("key")?,
        rule: r.text("rule")?,
        severity: id(r, "severity")?,
        principal: r.text("principal")?,
        source: r.text("source")?,
        summary: r.text("summary")?,
        resources: json_of(r, "resources")?,
        first_seq: r.int("first_seq")?,
        last_seq: r.int("last_seq")?,
        first_seen: ts(r, "first_seen")?,
        last_seen: ts(r, "last_seen")?,
        events: r.int("events")?,
        state: id(r, "state")?,
        action: id(r, "action")?,
        action_outcome: r.opt_text("action_outcome")?,
        handled_by: r.opt_text("handled_by")?,
        handled_at: opt_ts(r, "handled_at")?,
        note: r.opt_text("note")?,
        incident: r
            .opt_text("incident_id")?
            .map(|t| t.parse())
            .transpose()
            .map_err(|_| super::corrupt("incident_id"))?,
        notify_attempts: r.int("notify_attempts")?,
        notified_at: opt_ts(r, "notified_at")?,
        created_at: ts(r, "created_at")?,
    })
}

/// Stores the alerts whose key is new and moves the detector's position to `upto` (never
/// back), in one transaction; answers the ids of the alerts stored (another server may have
/// stored the rest).
pub(crate) async fn insert_alerts<C: Conn>(
    c: &mut C,
    cursor: String,
    upto: i64,
    alerts: Vec<AlertRow>,
) -> Result<Vec<AlertId>, StoreError> {
    begin_write(c).await?;
    let step = async {
        let mut stored = Vec::new();
        for a in &alerts {
            let n = c
                .exec(
                    "INSERT INTO alerts (id, key, rule, severity, principal, source, summary, resources, first_seq, \
                     last_seq, first_seen, last_seen, events, state, action, created_at) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                     ON CONFLICT (key) DO NOTHING",
                    args![
                        a.id.to_string(),
                        a.key.clone(),
                        a.rule.clone(),
                        a.severity.as_str(),
                        a.principal.clone(),
                        a.source.clone(),
                        a.summary.clone(),
                        json(&a.resources),
                        a.first_seq,
                        a.last_seq,
                        a.first_seen.as_micros(),
                        a.last_seen.as_micros(),
                        a.events,
                        a.state.as_str(),
                        a.action.as_str(),
                        a.created_at.as_micros()
                    ],
                )
                .await?;
            if n == 1 {
                stored.push(a.id);
            }
        }
        super::set_siem_cursor(c, cursor, upto).await?;
        Ok(stored)
    }
    .await;
    finish(c, step).await
}

pub(crate) async fn alert<C: Conn>(c: &mut C, id_text: String) -> Result<Option<AlertRow>, StoreError> {
    c.query_opt("SELECT * FROM alerts WHERE id = $1", args![id_text]).await?.map(|r| alert_row(&r)).transpose()
}

/// The newest alerts first, of one state if given.
pub(crate) async fn alerts<C: Conn>(
    c: &mut C,
    state: Option<AlertState>,
    limit: u32,
) -> Result<Vec<AlertRow>, StoreError> {
    let rows = match state {
        Some(s) => {
            c.query(
                "SELECT * FROM alerts WHERE state = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                args![s.as_str(), limit],
            )
            .await?
        }
        None => c.query("SELECT * FROM alerts ORDER BY created_at DESC, id DESC LIMIT $1", args![limit]).await?,
    };
    all(rows, alert_row)
}

/// Alerts whose notice is still to be delivered, oldest first.
pub(crate) async fn unnotified_alerts<C: Conn>(
    c: &mut C,
    max_attempts: i64,
    limit: u32,
) -> Result<Vec<AlertRow>, StoreError> {
    all(
        c.query(
            "SELECT * FROM alerts WHERE notified_at IS NULL AND notify_attempts < $1 ORDER BY created_at, id LIMIT $2",
            args![max_attempts, limit],
        )
        .await?,
        alert_row,
    )
}

/// One delivery attempt of an alert's notice: delivered (`at`) or not.
pub(crate) async fn alert_notified<C: Conn>(c: &mut C, id: String, at: Option<i64>) -> Result<(), StoreError> {
    c.exec("UPDATE alerts SET notify_attempts = notify_attempts + 1, notified_at = $1 WHERE id = $2", args![at, id])
        .await
        .map(drop)
}

pub(super) async fn handle_alert<C: Conn>(
    c: &mut C,
    id: &AlertId,
    state: &AlertState,
    by: &str,
    at: &Timestamp,
    note: &Option<String>,
    incident: &Option<IncidentId>,
) -> Result<(), StoreError> {
    let n = c
        .exec(
            "UPDATE alerts SET state = $1, handled_by = $2, handled_at = $3, note = $4, incident_id = $5 \
             WHERE id = $6 AND state = 'open'",
            args![state.as_str(), by, at.as_micros(), note.clone(), incident.map(|i| i.to_string()), id.to_string()],
        )
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound { entity: "open alert", id: id.to_string() })
    }
}

pub(super) async fn alert_acted<C: Conn>(c: &mut C, id: &AlertId, outcome: &str) -> Result<(), StoreError> {
    c.exec("UPDATE alerts SET action_outcome = $1 WHERE id = $2", args![outcome, id.to_string()]).await.map(drop)
}

pub(super) async fn plant_decoy<C: Conn>(
    c: &mut C,
    credential: &CredentialId,
    tenant: &TenantId,
    by: &str,
    at: &Timestamp,
) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO decoys (credential_id, tenant_id, planted_by, planted_at) VALUES ($1, $2, $3, $4)",
        args![credential.to_string(), tenant.to_string(), by, at.as_micros()],
    )
    .await
    .map(drop)
}

/// The live decoys and their names; a macro, so that the statements stay literals.
macro_rules! decoy_select {
    () => {
        "SELECT d.credential_id AS credential_id, d.tenant_id AS tenant_id, t.name AS tenant, \
         c.name AS name, c.kind AS kind, d.planted_by AS planted_by, d.planted_at AS planted_at \
         FROM decoys d JOIN credentials c ON c.id = d.credential_id JOIN tenants t ON t.id = d.tenant_id \
         WHERE c.deleted_at IS NULL"
    };
}

fn decoy_row(r: &OwnedRow) -> Result<DecoyRow, StoreError> {
    Ok(DecoyRow {
        credential_id: id(r, "credential_id")?,
        tenant_id: id(r, "tenant_id")?,
        tenant: r.text("tenant")?,
        name: r.text("name")?,
        kind: kind(r, "kind")?,
        planted_by: r.text("planted_by")?,
        planted_at: ts(r, "planted_at")?,
    })
}

/// The live decoys, of one tenant if given, by tenant and name.
pub(crate) async fn decoys<C: Conn>(c: &mut C, tenant: Option<String>) -> Result<Vec<DecoyRow>, StoreError> {
    let rows = match tenant {
        Some(t) => c.query(concat!(decoy_select!(), " AND d.tenant_id = $1 ORDER BY t.name, c.name"), args![t]).await?,
        None => c.query(concat!(decoy_select!(), " ORDER BY t.name, c.name"), vec![]).await?,
    };
    all(rows, decoy_row)
}

/// Stores tokens' baselines (each replacing the one before), in one transaction.
pub(crate) async fn save_baselines<C: Conn>(c: &mut C, rows: Vec<(String, BaselineRow)>) -> Result<(), StoreError> {
    begin_write(c).await?;
    let step = async {
        for (principal, b) in rows {
            c.exec(
                "INSERT INTO baselines (principal, first_at, hours, busiest) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (principal) DO UPDATE SET first_at = excluded.first_at, hours = excluded.hours, \
                 busiest = excluded.busiest",
                args![principal, b.first_at, i64::from(b.hours), i64::from(b.busiest)],
            )
            .await?;
        }
        Ok(())
    }
    .await;
    finish(c, step).await
}

/// Every stored baseline.
pub(crate) async fn baselines<C: Conn>(c: &mut C) -> Result<Vec<(String, BaselineRow)>, StoreError> {
    all(c.query("SELECT * FROM baselines", vec![]).await?, |r| {
        Ok((
            r.text("principal")?,
            BaselineRow {
                first_at: r.int("first_at")?,
                hours: u32::try_from(r.int("hours")?).map_err(|_| super::corrupt("baselines.hours"))?,
                busiest: u32::try_from(r.int("busiest")?).map_err(|_| super::corrupt("baselines.busiest"))?,
            },
        ))
    })
}
