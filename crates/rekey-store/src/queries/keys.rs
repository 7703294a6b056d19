//! Reads of the key hierarchy: root keys, the seal's keyring, tenant KEKs, DEKs to rewrap, key
//! jobs, system keys, and the versions still to bind (format migration).

use rekey_types::{JobId, JobState, KeyState, TenantId, Timestamp};

use super::{all, corrupt, duplicate_as, hex_of, id, json_of, kind, opt_ts, state, ts, u32_of, TARGET_FIELDS};
use crate::conn::{args, Arg, Conn, OwnedRow};
use crate::model::{
    DekCount, DekRow, DekUpdate, KekRow, KeyJobRow, LegacyVersion, RootKeyRow, RootRewrap, SealKeyringRow,
    SystemKeyRow, WrappedBy,
};
use crate::StoreError;

fn kek_row(row: &OwnedRow) -> Result<KekRow, StoreError> {
    Ok(KekRow {
        tenant_id: id(row, "tenant_id")?,
        version: u32_of(row, "version")?,
        state: state(row, "state")?,
        wrapped: row.blob("wrapped")?,
        root_version: u32_of(row, "root_version")?,
        created_at: ts(row, "created_at")?,
    })
}

pub(crate) async fn kek<C: Conn>(
    c: &mut C,
    tenant: String,
    version: Option<u32>,
) -> Result<Option<KekRow>, StoreError> {
    let row = match version {
        Some(v) => {
            c.query_opt("SELECT * FROM tenant_keks WHERE tenant_id = $1 AND version = $2", args![tenant, v]).await?
        }
        None => {
            c.query_opt(
                "SELECT * FROM tenant_keks WHERE tenant_id = $1 AND state = 'active' ORDER BY version DESC LIMIT 1",
                args![tenant],
            )
            .await?
        }
    };
    row.map(|r| kek_row(&r)).transpose()
}

pub(crate) async fn system_key<C: Conn>(c: &mut C, purpose: String) -> Result<Option<SystemKeyRow>, StoreError> {
    let row = c
        .query_opt(
            "SELECT purpose, version, wrapped FROM system_keys WHERE purpose = $1 ORDER BY version DESC LIMIT 1",
            args![purpose],
        )
        .await?;
    row.map(|r| {
        Ok(SystemKeyRow { purpose: r.text("purpose")?, version: u32_of(&r, "version")?, wrapped: r.blob("wrapped")? })
    })
    .transpose()
}

pub(crate) async fn insert_system_key<C: Conn>(c: &mut C, row: SystemKeyRow) -> Result<bool, StoreError> {
    let n = c
        .exec(
            "INSERT INTO system_keys (purpose, version, wrapped, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (purpose, version) DO NOTHING",
            args![row.purpose, row.version, row.wrapped, Timestamp::now().as_micros()],
        )
        .await?;
    Ok(n == 1)
}

fn root_key_row(r: &OwnedRow) -> Result<RootKeyRow, StoreError> {
    Ok(RootKeyRow {
        version: u32_of(r, "version")?,
        state: state(r, "state")?,
        created_at: ts(r, "created_at")?,
        changed_at: ts(r, "changed_at")?,
    })
}

pub(crate) async fn root_keys<C: Conn>(c: &mut C) -> Result<Vec<RootKeyRow>, StoreError> {
    all(c.query("SELECT * FROM root_keys ORDER BY version", vec![]).await?, root_key_row)
}

/// See the migration that made `key_epoch`.
pub(crate) async fn key_epoch<C: Conn>(c: &mut C) -> Result<u64, StoreError> {
    let row = c.query_opt("SELECT n FROM key_epoch WHERE id = 1", vec![]).await?.ok_or_else(|| corrupt("key_epoch"))?;
    u64::try_from(row.int("n")?).map_err(|_| corrupt("key_epoch"))
}

fn small(r: &OwnedRow, col: &str) -> Result<u8, StoreError> {
    u8::try_from(r.int(col)?).map_err(|_| corrupt(col))
}

pub(crate) async fn seal_keyring<C: Conn>(c: &mut C, slot: String) -> Result<Option<SealKeyringRow>, StoreError> {
    c.query_opt("SELECT * FROM seal_keyring WHERE slot = $1", args![slot])
        .await?
        .map(|r| {
            Ok(SealKeyringRow {
                slot: r.text("slot")?,
                set_id: r.blob("set_id")?,
                shares: small(&r, "shares")?,
                threshold: small(&r, "threshold")?,
                blob: r.blob("blob")?,
                commitments: r.opt_blob("commitments")?,
                created_at: ts(&r, "created_at")?,
            })
        })
        .transpose()
}

/// Stores a keyring outside the audited write path: `rekey init` runs before there is an audit
/// key, and a pending keyring changes nothing until it is committed (which is audited). An
/// `active` row is inserted only if none exists (`false` if one did); `pending` replaces.
pub(crate) async fn put_seal_keyring<C: Conn>(c: &mut C, row: SealKeyringRow) -> Result<bool, StoreError> {
    let on_conflict = if row.slot == "active" {
        "ON CONFLICT (slot) DO NOTHING"
    } else {
        "ON CONFLICT (slot) DO UPDATE SET set_id = excluded.set_id, shares = excluded.shares, \
         threshold = excluded.threshold, blob = excluded.blob, commitments = excluded.commitments, \
         created_at = excluded.created_at"
    };
    let n = c
        .exec(
            &format!(
                "INSERT INTO seal_keyring (slot, set_id, shares, threshold, blob, created_at, commitments) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) {on_conflict}"
            ),
            args![
                row.slot,
                row.set_id,
                i64::from(row.shares),
                i64::from(row.threshold),
                row.blob,
                row.created_at.as_micros(),
                row.commitments
            ],
        )
        .await?;
    Ok(n == 1)
}

pub(crate) async fn keks<C: Conn>(c: &mut C, tenant: Option<String>) -> Result<Vec<KekRow>, StoreError> {
    let rows = match tenant {
        Some(t) => c.query("SELECT * FROM tenant_keks WHERE tenant_id = $1 ORDER BY version", args![t]).await?,
        None => c.query("SELECT * FROM tenant_keks ORDER BY tenant_id, version", vec![]).await?,
    };
    all(rows, kek_row)
}

pub(crate) async fn dek_counts<C: Conn>(c: &mut C, tenant: Option<String>) -> Result<Vec<DekCount>, StoreError> {
    let base = "SELECT c.tenant_id, v.kek_version, COUNT(*) AS n FROM credential_versions v \
                JOIN credentials c ON c.id = v.credential_id";
    let rows = match tenant {
        Some(t) => {
            c.query(&format!("{base} WHERE c.tenant_id = $1 GROUP BY c.tenant_id, v.kek_version"), args![t]).await?
        }
        None => c.query(&format!("{base} GROUP BY c.tenant_id, v.kek_version"), vec![]).await?,
    };
    all(rows, |r| {
        Ok(DekCount { tenant_id: id(r, "tenant_id")?, kek_version: u32_of(r, "kek_version")?, count: r.int("n")? })
    })
}

/// Up to `limit` credential versions of `tenant` (deleted credentials included) whose DEK is
/// wrapped under a KEK version other than `target`, skipping versions under destroyed KEKs.
pub(crate) async fn deks_to_rewrap<C: Conn>(
    c: &mut C,
    tenant: String,
    target: u32,
    limit: u32,
) -> Result<Vec<DekRow>, StoreError> {
    let rows = c
        .query(
            "SELECT c.tenant_id, v.credential_id, c.kind, v.version, v.kek_version, v.wrapped_dek \
             FROM credentials c JOIN credential_versions v ON v.credential_id = c.id \
             JOIN tenant_keks k ON k.tenant_id = c.tenant_id AND k.version = v.kek_version \
             WHERE c.tenant_id = $1 AND v.kek_version <> $2 AND k.state <> 'destroyed' LIMIT $3",
            args![tenant, target, limit],
        )
        .await?;
    all(rows, |r| {
        Ok(DekRow {
            tenant_id: id(r, "tenant_id")?,
            credential_id: id(r, "credential_id")?,
            kind: kind(r, "kind")?,
            version: u32_of(r, "version")?,
            kek_version: u32_of(r, "kek_version")?,
            wrapped_dek: r.blob("wrapped_dek")?,
        })
    })
}

/// KEKs and system keys wrapped under a root version other than `target` (up to `limit`).
pub(crate) async fn root_wrapped<C: Conn>(c: &mut C, target: u32, limit: u32) -> Result<Vec<RootRewrap>, StoreError> {
    let keks = c
        .query(
            "SELECT tenant_id, version, root_version, wrapped FROM tenant_keks \
             WHERE root_version <> $1 AND state <> 'destroyed' LIMIT $2",
            args![target, limit],
        )
        .await?;
    let mut out = all(keks, |r| {
        Ok(RootRewrap {
            tenant_id: Some(id(r, "tenant_id")?),
            purpose: String::new(),
            version: u32_of(r, "version")?,
            from_root: u32_of(r, "root_version")?,
            to_root: target,
            wrapped: r.blob("wrapped")?,
        })
    })?;
    let system = c.query("SELECT purpose, version, wrapped FROM system_keys", vec![]).await?;
    for r in &system {
        let wrapped = r.blob("wrapped")?;
        let from_root = rekey_root_version(&wrapped).ok_or_else(|| corrupt("system_keys.wrapped"))?;
        if from_root != target {
            out.push(RootRewrap {
                tenant_id: None,
                purpose: r.text("purpose")?,
                version: u32_of(r, "version")?,
                from_root,
                to_root: target,
                wrapped,
            });
        }
    }
    Ok(out)
}

/// The key version in a Rekey blob header (bytes 21..25); see `rekey-crypto`'s envelope.
fn rekey_root_version(blob: &[u8]) -> Option<u32> {
    (blob.len() > 25 && &blob[..2] == b"RK").then(|| u32::from_be_bytes(blob[21..25].try_into().expect("4 bytes")))
}

/// Credential versions wrapped under one KEK version (what destroying it makes unrecoverable).
pub(crate) async fn wrapped_by<C: Conn>(
    c: &mut C,
    tenant: String,
    version: u32,
    limit: u32,
) -> Result<Vec<WrappedBy>, StoreError> {
    let rows = c
        .query(
            "SELECT t.name AS tenant_name, c.name, v.version, c.deleted_at FROM credential_versions v \
             JOIN credentials c ON c.id = v.credential_id JOIN tenants t ON t.id = c.tenant_id \
             WHERE c.tenant_id = $1 AND v.kek_version = $2 ORDER BY c.name, v.version LIMIT $3",
            args![tenant, version, limit],
        )
        .await?;
    all(rows, |r| {
        Ok(WrappedBy {
            tenant: r.text("tenant_name")?,
            credential: r.text("name")?,
            version: u32_of(r, "version")?,
            deleted: r.opt_int("deleted_at")?.is_some(),
        })
    })
}

/// Credential versions in scope of a job: of one tenant, or of all.
pub(crate) async fn count_versions<C: Conn>(c: &mut C, tenant: Option<String>) -> Result<i64, StoreError> {
    let row = match tenant {
        Some(t) => {
            c.query_opt(
                "SELECT COUNT(*) AS n FROM credential_versions v JOIN credentials c ON c.id = v.credential_id \
                 WHERE c.tenant_id = $1",
                args![t],
            )
            .await?
        }
        None => c.query_opt("SELECT COUNT(*) AS n FROM credential_versions", vec![]).await?,
    };
    row.ok_or_else(|| corrupt("count"))?.int("n")
}

fn job_row(r: &OwnedRow) -> Result<KeyJobRow, StoreError> {
    Ok(KeyJobRow {
        id: id(r, "id")?,
        scope: r.text("scope")?,
        tenant_id: r.opt_text("tenant_id")?.map(|t| t.parse().map_err(|_| corrupt("tenant_id"))).transpose()?,
        reason: r.text("reason")?,
        state: state(r, "state")?,
        total: r.int("total")?,
        done: r.int("done")?,
        created_by: r.text("created_by")?,
        created_at: ts(r, "created_at")?,
        finished_at: opt_ts(r, "finished_at")?,
        error: r.opt_text("error")?,
    })
}

pub(crate) async fn jobs<C: Conn>(c: &mut C, running_only: bool, limit: u32) -> Result<Vec<KeyJobRow>, StoreError> {
    let sql = if running_only {
        "SELECT * FROM key_jobs WHERE state = 'running' ORDER BY created_at, id LIMIT $1"
    } else {
        "SELECT * FROM key_jobs ORDER BY created_at DESC, id DESC LIMIT $1"
    };
    all(c.query(sql, args![limit]).await?, job_row)
}

pub(crate) async fn job<C: Conn>(c: &mut C, id_text: String) -> Result<Option<KeyJobRow>, StoreError> {
    c.query_opt("SELECT * FROM key_jobs WHERE id = $1", args![id_text]).await?.map(|r| job_row(&r)).transpose()
}

/// Versions stored before target binding, a batch at a time (`bound`: those stored after it,
/// in key order after `after`, for tests and benchmarks that build a legacy store).
pub(crate) async fn legacy_versions<C: Conn>(
    c: &mut C,
    bound: bool,
    after: Option<(String, u32)>,
    limit: u32,
) -> Result<Vec<LegacyVersion>, StoreError> {
    // In key order along the primary key, which holds the rows themselves: a sequential read.
    let which = if bound { "v.binding IS NOT NULL" } else { "v.binding IS NULL" };
    // A bound version carries its own fields; a legacy one is bound to its credential's.
    let own = if bound { TARGET_FIELDS } else { "NULL AS fields" };
    let (cred, version) = after.unwrap_or_default();
    let versions = c
        .query(
            &format!(
                "SELECT v.credential_id, v.version, v.kek_version, v.wrapped_dek, v.ciphertext, {own} \
                 FROM credential_versions v WHERE (v.credential_id, v.version) > ($1, $2) AND {which} \
                 ORDER BY v.credential_id, v.version LIMIT $3"
            ),
            args![cred, version, limit],
        )
        .await?;
    let (Some(first), Some(last)) = (versions.first(), versions.last()) else { return Ok(Vec::new()) };
    // The credentials of the batch in one range read along their key, not one lookup per
    // version (a join looked each one up: most of the migration's time).
    let (first, last) = (first.text("credential_id")?, last.text("credential_id")?);
    let credentials = c
        .query(
            "SELECT id, tenant_id, name, kind, fields FROM credentials WHERE id >= $1 AND id <= $2 ORDER BY id",
            args![first, last],
        )
        .await?;
    let mut of: std::collections::HashMap<String, &OwnedRow> =
        std::collections::HashMap::with_capacity(credentials.len());
    for r in &credentials {
        of.insert(r.text("id")?, r);
    }
    let mut out = Vec::with_capacity(versions.len());
    for v in &versions {
        let id_text = v.text("credential_id")?;
        let c = of
            .get(&id_text)
            .ok_or_else(|| StoreError::Corrupt(format!("version of a missing credential {id_text}")))?;
        out.push(LegacyVersion {
            tenant_id: id(c, "tenant_id")?,
            credential_id: id(c, "id")?,
            name: c.text("name")?,
            kind: kind(c, "kind")?,
            fields: json_of(if bound { v } else { c }, "fields")?,
            version: u32_of(v, "version")?,
            kek_version: u32_of(v, "kek_version")?,
            wrapped_dek: v.blob("wrapped_dek")?,
            ciphertext: v.blob("ciphertext")?,
        });
    }
    Ok(out)
}

pub(crate) async fn integrity_pending<C: Conn>(c: &mut C, what: String) -> Result<bool, StoreError> {
    Ok(c.query_opt("SELECT what FROM integrity_pending WHERE what = $1", args![what]).await?.is_some())
}

// Writes.

pub(super) const INSERT_KEK: &str =
    "INSERT INTO tenant_keks (tenant_id, version, state, wrapped, root_version, created_at) VALUES ";

pub(super) fn kek_args(kek: &KekRow) -> Vec<Arg> {
    args![
        kek.tenant_id.to_string(),
        kek.version,
        kek.state,
        kek.wrapped.clone(),
        kek.root_version,
        kek.created_at.as_micros()
    ]
}

pub(super) async fn create_kek<C: Conn>(c: &mut C, kek: &KekRow) -> Result<(), StoreError> {
    let tenant = kek.tenant_id.to_string();
    c.exec(
        "UPDATE tenant_keks SET state = 'retired', changed_at = $1 WHERE tenant_id = $2 AND state = 'active'",
        args![kek.created_at.as_micros(), tenant.clone()],
    )
    .await?;
    c.exec(
        "INSERT INTO tenant_keks (tenant_id, version, state, wrapped, root_version, created_at, changed_at) \
         VALUES ($1, $2, 'active', $3, $4, $5, $5)",
        args![tenant, kek.version, kek.wrapped.clone(), kek.root_version, kek.created_at.as_micros()],
    )
    .await
    .map_err(|e| duplicate_as(e, StoreError::Conflict))?;
    Ok(())
}

pub(super) async fn set_kek_state<C: Conn>(
    c: &mut C,
    tenant: &TenantId,
    version: &u32,
    state: &KeyState,
    at: &Timestamp,
) -> Result<(), StoreError> {
    let (sql, a) = if *state == KeyState::Destroyed {
        (
            "UPDATE tenant_keks SET state = $1, changed_at = $2, wrapped = $3 \
             WHERE tenant_id = $4 AND version = $5 AND state <> 'destroyed'",
            args![*state, at.as_micros(), Vec::<u8>::new(), tenant.to_string(), *version],
        )
    } else {
        (
            "UPDATE tenant_keks SET state = $1, changed_at = $2 \
             WHERE tenant_id = $3 AND version = $4 AND state <> 'destroyed'",
            args![*state, at.as_micros(), tenant.to_string(), *version],
        )
    };
    let n = c.exec(sql, a).await?;
    if n != 1 {
        return Err(StoreError::NotFound { entity: "key version", id: format!("{tenant}@{version}") });
    }
    Ok(())
}

pub(super) async fn rewrap_deks<C: Conn>(
    c: &mut C,
    updates: &[DekUpdate],
    job: &Option<JobId>,
) -> Result<(), StoreError> {
    let mut moved = 0i64;
    for u in updates {
        moved += c
            .exec(
                "UPDATE credential_versions SET kek_version = $1, wrapped_dek = $2 \
                 WHERE credential_id = $3 AND version = $4 AND kek_version = $5",
                args![u.to_kek, u.wrapped_dek.clone(), u.credential_id.to_string(), u.version, u.from_kek],
            )
            .await? as i64;
    }
    if let Some(job) = job {
        c.exec("UPDATE key_jobs SET done = done + $1 WHERE id = $2", args![moved, job.to_string()]).await?;
    }
    Ok(())
}

pub(super) async fn rewrap_root<C: Conn>(
    c: &mut C,
    updates: &[RootRewrap],
    job: &Option<JobId>,
) -> Result<(), StoreError> {
    let mut moved = 0i64;
    for u in updates {
        moved += match u.tenant_id {
            Some(t) => {
                c.exec(
                    "UPDATE tenant_keks SET root_version = $1, wrapped = $2 \
                     WHERE tenant_id = $3 AND version = $4 AND root_version = $5 AND state <> 'destroyed'",
                    args![u.to_root, u.wrapped.clone(), t.to_string(), u.version, u.from_root],
                )
                .await? as i64
            }
            None => {
                c.exec(
                    "UPDATE system_keys SET wrapped = $1 WHERE purpose = $2 AND version = $3",
                    args![u.wrapped.clone(), &u.purpose, u.version],
                )
                .await? as i64
            }
        };
    }
    if let Some(job) = job {
        c.exec("UPDATE key_jobs SET done = done + $1 WHERE id = $2", args![moved, job.to_string()]).await?;
    }
    Ok(())
}

pub(super) async fn insert_root_key<C: Conn>(c: &mut C, r: &RootKeyRow) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO root_keys (version, state, created_at, changed_at) VALUES ($1, $2, $3, $4)",
        args![r.version, r.state, r.created_at.as_micros(), r.changed_at.as_micros()],
    )
    .await
    .map_err(|e| {
        duplicate_as(e, StoreError::AlreadyExists { entity: "root key", id: format!("root@{}", r.version) })
    })?;
    Ok(())
}

pub(super) async fn set_root_key_state<C: Conn>(
    c: &mut C,
    version: &u32,
    state: &KeyState,
    at: &Timestamp,
) -> Result<(), StoreError> {
    let n = c
        .exec(
            "UPDATE root_keys SET state = $1, changed_at = $2 WHERE version = $3 AND state <> 'destroyed'",
            args![*state, at.as_micros(), *version],
        )
        .await?;
    if n != 1 {
        return Err(StoreError::NotFound { entity: "key version", id: format!("root@{version}") });
    }
    Ok(())
}

pub(super) async fn create_job<C: Conn>(c: &mut C, j: &KeyJobRow) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO key_jobs (id, scope, tenant_id, reason, state, total, done, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        args![
            j.id.to_string(),
            &j.scope,
            j.tenant_id.map(|t| t.to_string()),
            &j.reason,
            j.state,
            j.total,
            j.done,
            &j.created_by,
            j.created_at.as_micros()
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn finish_job<C: Conn>(
    c: &mut C,
    id: &JobId,
    state: &JobState,
    error: &Option<String>,
    at: &Timestamp,
) -> Result<(), StoreError> {
    let n = c
        .exec(
            "UPDATE key_jobs SET state = $1, error = $2, finished_at = $3 WHERE id = $4 AND state = 'running'",
            args![*state, error.clone(), at.as_micros(), id.to_string()],
        )
        .await?;
    if n != 1 {
        return Err(StoreError::NotFound { entity: "running job", id: id.to_string() });
    }
    Ok(())
}

pub(super) async fn commit_keyring<C: Conn>(c: &mut C, set_id: &[u8]) -> Result<(), StoreError> {
    let pending = c
        .query_opt("SELECT set_id FROM seal_keyring WHERE slot = 'pending'", vec![])
        .await?
        .map(|r| r.blob("set_id"))
        .transpose()?;
    if pending.as_deref() != Some(set_id) {
        return Err(StoreError::NotFound { entity: "pending root rotation", id: hex_of(set_id) });
    }
    c.exec("DELETE FROM seal_keyring WHERE slot = 'active'", vec![]).await?;
    c.exec("UPDATE seal_keyring SET slot = 'active' WHERE slot = 'pending'", vec![]).await?;
    Ok(())
}

pub(super) async fn replace_keyring<C: Conn>(c: &mut C, row: &SealKeyringRow) -> Result<(), StoreError> {
    let n = c
        .exec(
            "UPDATE seal_keyring SET blob = $1 WHERE slot = 'active' AND set_id = $2",
            args![row.blob.clone(), row.set_id.clone()],
        )
        .await?;
    if n != 1 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}
