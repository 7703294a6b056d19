//! Signed checkpoints of the audit log's tree, the witnesses' cosignatures of them, the SIEM
//! sinks' positions, and each tenant's own log (the tenant map a checkpoint commits to).

use std::collections::BTreeMap;

use rekey_tlog::tenants::TenantLog;
use rekey_tlog::{Frontier, Hash};
use rekey_types::Timestamp;

use super::tree::{edge_bytes, frontier_of};
use super::{all, begin_write, corrupt, finish, ts};
use crate::conn::{args, Conn, OwnedRow};
use crate::model::{CheckpointRow, CosignatureRow, NewCheckpoint};
use crate::sql::Backend;
use crate::StoreError;

fn checkpoint_row(r: &OwnedRow) -> Result<CheckpointRow, StoreError> {
    Ok(CheckpointRow {
        id: r.int("id")?,
        checkpoint: NewCheckpoint {
            size: u64::try_from(r.int("size")?).map_err(|_| corrupt("audit_checkpoints.size"))?,
            root: r.blob("root")?.try_into().map_err(|_| corrupt("audit_checkpoints.root"))?,
            note: r.text("note")?,
            signed_at: ts(r, "signed_at")?,
            accepted: r.opt_text("accepted")?,
        },
        cosignatures: Vec::new(),
    })
}

fn cosignature_row(r: &OwnedRow) -> Result<CosignatureRow, StoreError> {
    Ok(CosignatureRow {
        witness: r.text("witness")?,
        line: r.text("line")?,
        time: u64::try_from(r.int("time")?).map_err(|_| corrupt("audit_cosignatures.time"))?,
    })
}

/// The row, with its cosignatures.
async fn with_cosignatures<C: Conn>(c: &mut C, row: Option<OwnedRow>) -> Result<Option<CheckpointRow>, StoreError> {
    let Some(row) = row else { return Ok(None) };
    let mut checkpoint = checkpoint_row(&row)?;
    checkpoint.cosignatures = all(
        c.query(
            "SELECT witness, line, time FROM audit_cosignatures WHERE checkpoint = $1 ORDER BY witness",
            args![checkpoint.id],
        )
        .await?,
        cosignature_row,
    )?;
    Ok(Some(checkpoint))
}

pub(crate) async fn insert_checkpoint<C: Conn>(c: &mut C, new: NewCheckpoint) -> Result<i64, StoreError> {
    let size = i64::try_from(new.size).map_err(|_| corrupt("a checkpoint size"))?;
    c.query_opt(
        "INSERT INTO audit_checkpoints (size, root, note, signed_at, accepted) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        args![size, new.root.to_vec(), new.note, new.signed_at.as_micros(), new.accepted],
    )
    .await?
    .ok_or_else(|| corrupt("audit_checkpoints"))?
    .int("id")
}

/// The last checkpoint stored.
pub(crate) async fn latest_checkpoint<C: Conn>(c: &mut C) -> Result<Option<CheckpointRow>, StoreError> {
    let row = c.query_opt("SELECT * FROM audit_checkpoints ORDER BY id DESC LIMIT 1", vec![]).await?;
    with_cosignatures(c, row).await
}

/// The last checkpoint stored with at least one cosignature.
pub(crate) async fn latest_cosigned_checkpoint<C: Conn>(c: &mut C) -> Result<Option<CheckpointRow>, StoreError> {
    let row = c
        .query_opt(
            "SELECT * FROM audit_checkpoints k WHERE EXISTS \
             (SELECT 1 FROM audit_cosignatures s WHERE s.checkpoint = k.id) ORDER BY id DESC LIMIT 1",
            vec![],
        )
        .await?;
    with_cosignatures(c, row).await
}

/// The last checkpoint stored of at least `size` events (the one a proof of an event below
/// `size` is best made against).
pub(crate) async fn checkpoint_covering<C: Conn>(c: &mut C, size: u64) -> Result<Option<CheckpointRow>, StoreError> {
    let size = i64::try_from(size).map_err(|_| corrupt("a checkpoint size"))?;
    let row =
        c.query_opt("SELECT * FROM audit_checkpoints WHERE size >= $1 ORDER BY id DESC LIMIT 1", args![size]).await?;
    with_cosignatures(c, row).await
}

/// Stores a witness's cosignature (a second one of the same witness replaces the first).
pub(crate) async fn add_cosignature<C: Conn>(
    c: &mut C,
    checkpoint: i64,
    row: CosignatureRow,
) -> Result<(), StoreError> {
    let time = i64::try_from(row.time).map_err(|_| corrupt("a cosignature time"))?;
    c.exec(
        "INSERT INTO audit_cosignatures (checkpoint, witness, line, time) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (checkpoint, witness) DO UPDATE SET line = excluded.line, time = excluded.time",
        args![checkpoint, row.witness, row.line, time],
    )
    .await
    .map(drop)
}

/// The last sequence number sink `sink` acknowledged (0 for none).
pub(crate) async fn siem_cursor<C: Conn>(c: &mut C, sink: String) -> Result<i64, StoreError> {
    Ok(c.query_opt("SELECT seq FROM siem_cursors WHERE sink = $1", args![sink])
        .await?
        .map(|r| r.int("seq"))
        .transpose()?
        .unwrap_or(0))
}

/// Records that sink `sink` acknowledged every event up to `seq` (never moves back).
pub(crate) async fn set_siem_cursor<C: Conn>(c: &mut C, sink: String, seq: i64) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO siem_cursors (sink, seq) VALUES ($1, $2) \
         ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq WHERE siem_cursors.seq < excluded.seq",
        args![sink, seq],
    )
    .await
    .map(drop)
}

/// Events read per transaction while the tenants' logs are advanced: a transaction holds the
/// writer, so a short one (about a millisecond) keeps the reveals' latency flat.
const TENANT_CHUNK: i64 = 2_000;

/// Advances every tenant's log over the events up to `to` (at most [`TENANT_CHUNK`] of them in
/// this transaction); answers how far the logs now reach.
pub(crate) async fn advance_tenant_logs<C: Conn>(c: &mut C, to: i64) -> Result<i64, StoreError> {
    begin_write(c).await?;
    let step = async {
        let lock = match c.backend() {
            Backend::Postgres => "SELECT upto FROM tenant_log_state WHERE id = 1 FOR UPDATE",
            Backend::Sqlite => "SELECT upto FROM tenant_log_state WHERE id = 1",
        };
        let upto = c.query_opt(lock, vec![]).await?.ok_or_else(|| corrupt("tenant_log_state"))?.int("upto")?;
        if upto >= to {
            return Ok(upto);
        }
        let until = to.min(upto + TENANT_CHUNK);
        let rows = c
            .query(
                "SELECT seq, resource, leaf FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                args![upto, until],
            )
            .await?;
        if rows.len() as i64 != until - upto {
            return Err(corrupt("audit_events: a sequence number is missing"));
        }
        let mut by_tenant: BTreeMap<String, Vec<Hash>> = BTreeMap::new();
        for r in &rows {
            let resource = r.text("resource")?;
            if let Some(tenant) = rekey_types::audit::tenant_of(&resource) {
                let leaf: Hash = r.blob("leaf")?.try_into().map_err(|_| corrupt("audit_events.leaf"))?;
                by_tenant.entry(tenant.to_owned()).or_default().push(leaf);
            }
        }
        for (tenant, leaves) in by_tenant {
            let mut frontier =
                match c.query_opt("SELECT size, edge FROM tenant_logs WHERE tenant = $1", args![tenant.clone()]).await?
                {
                    Some(r) => frontier_of(r.int("size")?, r.blob("edge")?)?,
                    None => Frontier::new(),
                };
            for leaf in leaves {
                frontier.push(leaf);
            }
            c.exec(
                "INSERT INTO tenant_logs (tenant, size, edge) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant) DO UPDATE SET size = excluded.size, edge = excluded.edge",
                args![tenant, frontier.size() as i64, edge_bytes(&frontier)],
            )
            .await?;
        }
        c.exec("UPDATE tenant_log_state SET upto = $1 WHERE id = 1", args![until]).await?;
        Ok(until)
    }
    .await;
    finish(c, step).await
}

/// How far the tenants' logs reach, and every tenant's log then, sorted by the bytes of its
/// name (read again if another server advanced them in between).
pub(crate) async fn tenant_logs<C: Conn>(c: &mut C) -> Result<(i64, Vec<TenantLog>), StoreError> {
    let upto = |row: Option<OwnedRow>| row.ok_or_else(|| corrupt("tenant_log_state"))?.int("upto");
    loop {
        let before = upto(c.query_opt("SELECT upto FROM tenant_log_state WHERE id = 1", vec![]).await?)?;
        let mut logs = all(c.query("SELECT tenant, size, edge FROM tenant_logs", vec![]).await?, |r| {
            let frontier = frontier_of(r.int("size")?, r.blob("edge")?)?;
            Ok(TenantLog { name: r.text("tenant")?, size: frontier.size(), root: frontier.root() })
        })?;
        let after = upto(c.query_opt("SELECT upto FROM tenant_log_state WHERE id = 1", vec![]).await?)?;
        if before == after {
            logs.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
            return Ok((after, logs));
        }
    }
}

/// The sequence numbers, times and leaves of the events about `tenant` (by `tenant_of`) with
/// `seq <= through`, in order.
pub(crate) async fn tenant_leaves<C: Conn>(
    c: &mut C,
    tenant: String,
    through: i64,
) -> Result<Vec<(i64, Timestamp, Hash)>, StoreError> {
    let sql = format!(
        "SELECT a.seq, a.time, a.resource, a.leaf FROM audit_events a WHERE {} AND a.seq <= $2 ORDER BY a.seq",
        super::tenant_where(c.backend())
    );
    let rows = c.query(&sql, args![tenant.clone(), through]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if rekey_types::audit::tenant_of(&r.text("resource")?) == Some(tenant.as_str()) {
            out.push((
                r.int("seq")?,
                ts(&r, "time")?,
                r.blob("leaf")?.try_into().map_err(|_| corrupt("audit_events.leaf"))?,
            ));
        }
    }
    Ok(out)
}
