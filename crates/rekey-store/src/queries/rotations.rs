//! Reads of rotations and of the connectors' health rows.

use rekey_types::{RotationId, RotationState, Timestamp};

use super::{all, duplicate_as, id, kind, opt_ts, state, ts, u32_of};
use crate::conn::{args, Conn, OwnedRow};
use crate::model::{HealthCount, HealthRow, RotationRow, StaleCredential};
use crate::StoreError;

const ROTATION_SELECT: &str = "SELECT r.*, t.name AS tenant_name, c.name AS credential_name, c.kind AS kind \
     FROM rotations r JOIN tenants t ON t.id = r.tenant_id JOIN credentials c ON c.id = r.credential_id";

fn rotation_row(r: &OwnedRow) -> Result<RotationRow, StoreError> {
    Ok(RotationRow {
        id: id(r, "id")?,
        credential_id: id(r, "credential_id")?,
        tenant_id: id(r, "tenant_id")?,
        from_version: u32_of(r, "from_version")?,
        to_version: u32_of(r, "to_version")?,
        state: state(r, "state")?,
        created_by: r.text("created_by")?,
        created_at: ts(r, "created_at")?,
        changed_at: ts(r, "changed_at")?,
        retire_after: opt_ts(r, "retire_after")?,
        error: r.opt_text("error")?,
        target_ref: r.opt_text("target_ref")?,
        tenant: r.text("tenant_name")?,
        credential: r.text("credential_name")?,
        kind: Some(kind(r, "kind")?),
    })
}

pub(crate) async fn rotation<C: Conn>(c: &mut C, id_text: String) -> Result<Option<RotationRow>, StoreError> {
    c.query_opt(&format!("{ROTATION_SELECT} WHERE r.id = $1"), args![id_text])
        .await?
        .map(|r| rotation_row(&r))
        .transpose()
}

/// The newest rotations of one credential, newest first.
pub(crate) async fn rotations_of<C: Conn>(
    c: &mut C,
    credential: String,
    limit: u32,
) -> Result<Vec<RotationRow>, StoreError> {
    let sql = format!("{ROTATION_SELECT} WHERE r.credential_id = $1 ORDER BY r.created_at DESC, r.id DESC LIMIT $2");
    all(c.query(&sql, args![credential, limit]).await?, rotation_row)
}

/// Rotations that still need a step: unfinished ones, and promoted ones whose grace period
/// ended before `now`. Oldest first.
pub(crate) async fn rotations_due<C: Conn>(c: &mut C, now: i64, limit: u32) -> Result<Vec<RotationRow>, StoreError> {
    let sql = format!(
        "{ROTATION_SELECT} WHERE (r.state IN ('pending', 'applied') \
         OR (r.state = 'promoted' AND r.retire_after <= $1)) \
         AND NOT EXISTS (SELECT 1 FROM campaign_items ci WHERE ci.rotation_id = r.id) \
         ORDER BY r.changed_at, r.id LIMIT $2"
    );
    all(c.query(&sql, args![now, limit]).await?, rotation_row)
}

fn health_row(r: &OwnedRow) -> Result<HealthRow, StoreError> {
    Ok(HealthRow {
        credential_id: id(r, "credential_id")?,
        version: u32_of(r, "version")?,
        status: r.text("status")?,
        detail: r.text("detail")?,
        elapsed_ms: r.int("elapsed_ms")?,
        checked_at: ts(r, "checked_at")?,
    })
}

pub(crate) async fn health<C: Conn>(c: &mut C, credential: String) -> Result<Option<HealthRow>, StoreError> {
    c.query_opt("SELECT * FROM credential_health WHERE credential_id = $1", args![credential])
        .await?
        .map(|r| health_row(&r))
        .transpose()
}

/// Live credentials of kinds with a target whose last check is before `before` (or missing),
/// least recently checked first.
pub(crate) async fn stale_health<C: Conn>(
    c: &mut C,
    before: i64,
    limit: u32,
) -> Result<Vec<StaleCredential>, StoreError> {
    let sql = "SELECT c.id AS id, t.name AS tenant_name, c.name AS name, c.kind AS kind FROM credentials c \
         JOIN tenants t ON t.id = c.tenant_id LEFT JOIN credential_health h ON h.credential_id = c.id \
         WHERE c.deleted_at IS NULL AND t.state = 'active' AND c.kind <> 'generic' \
         AND NOT EXISTS (SELECT 1 FROM decoys d WHERE d.credential_id = c.id) \
         AND (h.checked_at IS NULL OR h.checked_at < $1) \
         ORDER BY COALESCE(h.checked_at, 0), c.id LIMIT $2";
    all(c.query(sql, args![before, limit]).await?, |r| {
        Ok(StaleCredential {
            credential_id: id(r, "id")?,
            tenant: r.text("tenant_name")?,
            name: r.text("name")?,
            kind: kind(r, "kind")?,
        })
    })
}

pub(crate) async fn health_counts<C: Conn>(c: &mut C) -> Result<Vec<HealthCount>, StoreError> {
    let sql = "SELECT c.kind AS kind, h.status AS status, COUNT(*) AS n FROM credential_health h \
         JOIN credentials c ON c.id = h.credential_id WHERE c.deleted_at IS NULL \
         GROUP BY c.kind, h.status ORDER BY c.kind, h.status";
    all(c.query(sql, vec![]).await?, |r| {
        Ok(HealthCount { kind: r.text("kind")?, status: r.text("status")?, count: r.int("n")? })
    })
}

// Writes.

pub(super) async fn insert_rotation<C: Conn>(c: &mut C, r: &RotationRow) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO rotations (id, credential_id, tenant_id, from_version, to_version, state, created_by, \
         created_at, changed_at, retire_after, error, target_ref) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        args![
            r.id.to_string(),
            r.credential_id.to_string(),
            r.tenant_id.to_string(),
            r.from_version,
            r.to_version,
            r.state,
            r.created_by.clone(),
            r.created_at.as_micros(),
            r.changed_at.as_micros(),
            r.retire_after.map(Timestamp::as_micros),
            r.error.clone(),
            r.target_ref.clone()
        ],
    )
    .await
    .map(drop)
    .map_err(|e| {
        duplicate_as(e, StoreError::AlreadyExists { entity: "unfinished rotation of", id: r.credential_id.to_string() })
    })
}

/// The fields of [`WriteOp::SetRotation`](crate::WriteOp::SetRotation), one argument each.
#[allow(clippy::too_many_arguments)]
pub(super) async fn set_rotation<C: Conn>(
    c: &mut C,
    id: &RotationId,
    from: &&'static [RotationState],
    state: &RotationState,
    error: &Option<String>,
    retire_after: &Option<Timestamp>,
    target_ref: &Option<String>,
    at: &Timestamp,
) -> Result<(), StoreError> {
    // `from` holds states, never input.
    let states: Vec<String> = from.iter().map(|s| format!("'{s}'")).collect();
    let sql = format!(
        "UPDATE rotations SET state = $1, error = $2, retire_after = $3, changed_at = $4, \
         target_ref = COALESCE($5, target_ref) WHERE id = $6 AND state IN ({})",
        states.join(", ")
    );
    let n = c
        .exec(
            &sql,
            args![
                *state,
                error.clone(),
                retire_after.map(Timestamp::as_micros),
                at.as_micros(),
                target_ref.clone(),
                id.to_string()
            ],
        )
        .await?;
    if n != 1 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

pub(super) async fn record_health<C: Conn>(c: &mut C, h: &HealthRow) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO credential_health (credential_id, version, status, detail, elapsed_ms, checked_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (credential_id) DO UPDATE SET \
         version = excluded.version, status = excluded.status, detail = excluded.detail, \
         elapsed_ms = excluded.elapsed_ms, checked_at = excluded.checked_at",
        args![
            h.credential_id.to_string(),
            h.version,
            h.status.clone(),
            h.detail.clone(),
            h.elapsed_ms,
            h.checked_at.as_micros()
        ],
    )
    .await
    .map(drop)
}
