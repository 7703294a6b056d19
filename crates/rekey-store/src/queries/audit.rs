//! Reads of the audit log.

use rekey_types::{AuditOutcome, AuditRecord};

use super::{all, audit_where, corrupt, ts, REVEAL};
use crate::conn::{args, Conn, OwnedRow};
use crate::model::{AuditHead, StoredAudit};
use crate::StoreError;

pub(crate) fn audit_row(row: &OwnedRow) -> Result<StoredAudit, StoreError> {
    Ok(StoredAudit {
        record: AuditRecord {
            seq: row.int("seq")?,
            time: ts(row, "time")?,
            principal: row.text("principal")?,
            action: row.text("action")?,
            resource: row.text("resource")?,
            outcome: AuditOutcome::parse(&row.text("outcome")?).ok_or_else(|| corrupt("outcome"))?,
            source: row.text("source")?,
            request_id: row.text("request_id")?,
            detail: row.text("detail")?,
        },
        mac: row.blob("mac")?,
    })
}

pub(crate) async fn audit_head<C: Conn>(c: &mut C) -> Result<Option<AuditHead>, StoreError> {
    c.query_opt("SELECT seq, mac FROM audit_head WHERE id = 1", vec![])
        .await?
        .map(|r| Ok(AuditHead { seq: r.int("seq")?, mac: r.blob("mac")? }))
        .transpose()
}

pub(crate) async fn audit_tail<C: Conn>(c: &mut C, n: u32) -> Result<Vec<StoredAudit>, StoreError> {
    let mut rows = all(c.query("SELECT * FROM audit_events ORDER BY seq DESC LIMIT $1", args![n]).await?, audit_row)?;
    rows.reverse();
    Ok(rows)
}

pub(crate) async fn audit_page<C: Conn>(c: &mut C, after: i64, limit: u32) -> Result<Vec<StoredAudit>, StoreError> {
    all(
        c.query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2", args![after, limit]).await?,
        audit_row,
    )
}

/// The resources (`tenant/name`) a principal revealed successfully, with how many times.
pub(crate) async fn reveals_by<C: Conn>(c: &mut C, principal: String) -> Result<Vec<(String, i64)>, StoreError> {
    let sql = format!(
        "SELECT a.resource, COUNT(*) AS n FROM audit_events a WHERE {} AND a.outcome = 'success' GROUP BY a.resource",
        audit_where(c.backend(), "principal", "$1", REVEAL)
    );
    all(c.query(&sql, args![principal]).await?, |r| Ok((r.text("resource")?, r.int("n")?)))
}

/// The audit events about one resource, oldest first (an incident's timeline).
pub(crate) async fn audit_of<C: Conn>(c: &mut C, resource: String, limit: u32) -> Result<Vec<StoredAudit>, StoreError> {
    let sql = format!(
        "SELECT a.* FROM audit_events a WHERE {} ORDER BY a.seq LIMIT $2",
        audit_where(c.backend(), "resource", "$1", None)
    );
    all(c.query(&sql, args![resource, limit]).await?, audit_row)
}

/// The events about one tenant (by `rekey_types::audit::tenant_of`) with `after < seq <=
/// through`, oldest first, at most `limit`.
pub(crate) async fn audit_of_tenant<C: Conn>(
    c: &mut C,
    tenant: String,
    after: i64,
    through: i64,
    limit: u32,
) -> Result<Vec<StoredAudit>, StoreError> {
    let sql = format!(
        "SELECT a.* FROM audit_events a WHERE {} AND a.seq > $2 AND a.seq <= $3 ORDER BY a.seq LIMIT $4",
        super::tenant_where(c.backend())
    );
    // A few more than asked: a resource in the range that is not the tenant's (`acme/a/b`) is
    // read and dropped.
    let mut out = Vec::new();
    for row in c.query(&sql, args![tenant.clone(), after, through, i64::from(limit) + 64]).await? {
        let event = audit_row(&row)?;
        if rekey_types::audit::tenant_of(&event.record.resource) == Some(tenant.as_str()) {
            out.push(event);
            if out.len() >= limit as usize {
                break;
            }
        }
    }
    Ok(out)
}

/// Events past the SQLite audit index's watermark (see `audit_where`).
pub(crate) async fn audit_index_lag<C: Conn>(c: &mut C) -> Result<i64, StoreError> {
    let row = c
        .query_opt(
            "SELECT (SELECT seq FROM audit_head WHERE id = 1) - (SELECT seq FROM ix.indexed WHERE id = 1) AS lag",
            vec![],
        )
        .await?;
    row.map_or(Ok(0), |r| r.int("lag"))
}
