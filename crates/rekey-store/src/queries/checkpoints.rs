//! Signed checkpoints of the audit log's tree and the witnesses' cosignatures of them.

use super::{all, corrupt, ts};
use crate::conn::{args, Conn, OwnedRow};
use crate::model::{CheckpointRow, CosignatureRow, NewCheckpoint};
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
