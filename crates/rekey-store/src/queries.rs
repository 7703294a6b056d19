//! Every statement Rekey runs, written once for both backends over [`Conn`]. Each domain has a
//! file of its own holding its reads and its writes (`queries/tenants.rs`, `credentials.rs`,
//! `tokens.rs`, `keys.rs`, `audit.rs`, `checkpoints.rs`, `certificates.rs`, `rotations.rs`, `incidents.rs`,
//! `campaigns.rs`); `queries/write.rs` is the transaction around a batch and the dispatch of each
//! [`WriteOp`] to its domain's function. Here stay the decoding helpers, the migrations and the
//! counts.

use std::str::FromStr;

use rekey_types::{CredentialKind, Timestamp};

use crate::conn::{args, Conn, OwnedRow};
use crate::model::*;
use crate::{Backend, StoreError};

/// The target fields of version `v` (a column named `fields`; NULL for a legacy version). A
/// macro, so that the statements that use it stay literals.
macro_rules! target_fields {
    () => {
        "(SELECT t.fields FROM version_targets t WHERE t.credential_id = v.credential_id \
         AND t.binding = v.binding) AS fields"
    };
}

/// No version of credential `cred` other than `version` holds fingerprint `fp` (or has none,
/// which cannot be shown to differ). `cred` is a column of the updated row, so the subquery is
/// correlated and runs only for a row the rest of the statement already matched (uncorrelated,
/// SQLite runs it once per statement, scanning every version of the credential on every put).
/// `version` and `fp` are parameter names (`$2`); SQLite numbers them in order of first use, so
/// the caller's statement must use them in order. A macro, so that the statement is a literal
/// (no text built per write).
macro_rules! fresh {
    ($cred:literal, $version:literal, $fp:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM credential_versions fv WHERE fv.credential_id = ",
            $cred,
            " AND fv.version <> ",
            $version,
            " AND (fv.fingerprint IS NULL OR fv.fingerprint = ",
            $fp,
            "))"
        )
    };
}
pub(crate) use fresh;

mod alerts;
mod audit;
mod campaigns;
mod certificates;
mod checkpoints;
mod credentials;
mod feeds;
mod incidents;
mod keys;
mod rotations;
mod tenants;
mod tokens;
mod tree;
mod write;

pub(crate) use alerts::{
    alert, alert_notified, alerts, baselines, decoys, insert_alerts, save_baselines, unnotified_alerts,
};
pub(crate) use audit::*;
pub(crate) use campaigns::*;
pub(crate) use certificates::*;
pub(crate) use checkpoints::*;
pub(crate) use credentials::*;
pub(crate) use feeds::*;
pub(crate) use incidents::*;
pub(crate) use keys::*;
pub(crate) use rotations::*;
pub(crate) use tenants::*;
pub(crate) use tokens::*;
pub(crate) use tree::{grow, tree_head, tree_nodes};
pub(crate) use write::apply;
use write::{duplicate_as, hex_of, insert_rows, update_one};

// ---- decoding -------------------------------------------------------------------------------

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn id<T: FromStr>(row: &OwnedRow, col: &str) -> Result<T, StoreError> {
    row.text(col)?.parse().map_err(|_| corrupt(col))
}

fn u32_of(row: &OwnedRow, col: &str) -> Result<u32, StoreError> {
    u32::try_from(row.int(col)?).map_err(|_| corrupt(col))
}

fn ts(row: &OwnedRow, col: &str) -> Result<Timestamp, StoreError> {
    Ok(Timestamp::from_micros(row.int(col)?))
}

fn opt_ts(row: &OwnedRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row.opt_int(col)?.map(Timestamp::from_micros))
}

fn json_of<T: serde::de::DeserializeOwned>(row: &OwnedRow, col: &str) -> Result<T, StoreError> {
    serde_json::from_str(&row.text(col)?).map_err(|_| corrupt(col))
}

fn opt_json_of<T: serde::de::DeserializeOwned>(row: &OwnedRow, col: &str) -> Result<Option<T>, StoreError> {
    row.opt_text(col)?.map(|t| serde_json::from_str(&t).map_err(|_| corrupt(col))).transpose()
}

fn kind(row: &OwnedRow, col: &str) -> Result<CredentialKind, StoreError> {
    row.text(col)?.parse().map_err(|_| corrupt(col))
}

/// A state or stage column (see `rekey_types::states`); any other text is corruption.
fn state<T: FromStr<Err = rekey_types::UnknownState>>(row: &OwnedRow, col: &str) -> Result<T, StoreError> {
    row.text(col)?.parse().map_err(|_| corrupt(col))
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("maps and lists of strings always serialize")
}

fn all<T>(rows: Vec<OwnedRow>, f: impl Fn(&OwnedRow) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

// ---- migrations -----------------------------------------------------------------------------

fn migrations(backend: Backend) -> &'static [(i64, &'static str)] {
    match backend {
        Backend::Sqlite => &[
            (1, include_str!("../migrations/sqlite/0001_init.sql")),
            (2, include_str!("../migrations/sqlite/0002_key_custody.sql")),
            (3, include_str!("../migrations/sqlite/0003_connectors.sql")),
            (4, include_str!("../migrations/sqlite/0004_incidents.sql")),
            (5, include_str!("../migrations/sqlite/0005_campaigns.sql")),
            (6, include_str!("../migrations/sqlite/0006_region_reach.sql")),
            (7, include_str!("../migrations/sqlite/0007_audit_index_file.sql")),
            (8, include_str!("../migrations/sqlite/0008_custody_binding.sql")),
            (9, include_str!("../migrations/sqlite/0009_bind_marker.sql")),
            (10, include_str!("../migrations/sqlite/0010_share_commitments.sql")),
            (11, include_str!("../migrations/sqlite/0011_audit_tree.sql")),
            (12, include_str!("../migrations/sqlite/0012_audit_checkpoints.sql")),
            (13, include_str!("../migrations/sqlite/0013_key_epoch.sql")),
            (14, include_str!("../migrations/sqlite/0014_workload_login.sql")),
            (15, include_str!("../migrations/sqlite/0015_detection.sql")),
        ],
        Backend::Postgres => &[
            (1, include_str!("../migrations/postgres/0001_init.sql")),
            (2, include_str!("../migrations/postgres/0002_key_custody.sql")),
            (3, include_str!("../migrations/postgres/0003_connectors.sql")),
            (4, include_str!("../migrations/postgres/0004_incidents.sql")),
            (5, include_str!("../migrations/postgres/0005_campaigns.sql")),
            (6, include_str!("../migrations/postgres/0006_region_reach.sql")),
            (7, include_str!("../migrations/postgres/0007_custody_binding.sql")),
            (8, include_str!("../migrations/postgres/0008_bind_marker.sql")),
            (9, include_str!("../migrations/postgres/0009_share_commitments.sql")),
            (10, include_str!("../migrations/postgres/0010_audit_tree.sql")),
            (11, include_str!("../migrations/postgres/0011_audit_checkpoints.sql")),
            (12, include_str!("../migrations/postgres/0012_key_epoch.sql")),
            (13, include_str!("../migrations/postgres/0013_workload_login.sql")),
            (14, include_str!("../migrations/postgres/0014_detection.sql")),
        ],
    }
}

pub(crate) async fn migrate<C: Conn>(c: &mut C) -> Result<(), StoreError> {
    let backend = c.backend();
    begin_write(c).await?;
    let result = async {
        if backend == Backend::Postgres {
            // Several servers may start at once against one database: one migrates at a time.
            c.exec("SELECT pg_advisory_xact_lock(72657365)", vec![]).await?;
        }
        c.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
        let applied: Vec<i64> =
            all(c.query("SELECT version FROM schema_migrations", vec![]).await?, |r| r.int("version"))?;
        for (version, sql) in migrations(backend) {
            if applied.contains(version) {
                continue;
            }
            c.batch(sql).await?;
            c.exec(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                args![*version, Timestamp::now().as_micros()],
            )
            .await?;
            tracing::info!(backend = backend.as_str(), version, "applied migration");
        }
        Ok(())
    }
    .await;
    finish(c, result).await
}

/// Commits on success, rolls back on failure.
/// Begins a write transaction: on SQLite one that takes the write lock at once (`IMMEDIATE`), so
/// that it never fails later on a lock another connection took first.
async fn begin_write<C: Conn>(c: &mut C) -> Result<(), StoreError> {
    c.batch(match c.backend() {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    })
    .await
}

async fn finish<C: Conn, T>(c: &mut C, result: Result<T, StoreError>) -> Result<T, StoreError> {
    match result {
        Ok(v) => {
            c.batch("COMMIT").await?;
            Ok(v)
        }
        Err(e) => {
            let _ = c.batch("ROLLBACK").await;
            Err(e)
        }
    }
}

// ---- reads (the rest are in the domain files) ---------------------------------------------------

pub(crate) async fn counts<C: Conn>(c: &mut C) -> Result<Counts, StoreError> {
    let r = c
        .query_opt(
            "SELECT (SELECT COUNT(*) FROM tenants) AS tenants, \
                    (SELECT COUNT(*) FROM credentials WHERE deleted_at IS NULL) AS credentials, \
                    (SELECT COUNT(*) FROM credential_versions) AS versions, \
                    (SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL) AS tokens, \
                    (SELECT seq FROM audit_head WHERE id = 1) AS audit_events",
            vec![],
        )
        .await?
        .ok_or_else(|| corrupt("counts"))?;
    Ok(Counts {
        tenants: r.int("tenants")?,
        credentials: r.int("credentials")?,
        versions: r.int("versions")?,
        tokens: r.int("tokens")?,
        audit_events: r.int("audit_events")?,
    })
}

// ---- the target fields of versions (read and written) -----------------------------------------

const TARGET_FIELDS: &str = target_fields!();

/// A tenant an incident reaches, as [`REACH_TENANTS`] gives it.
struct ReachTenant {
    id: String,
    name: String,
    region: String,
    whole: i64,
    reasons: i64,
}

// ---- writes ---------------------------------------------------------------------------------

/// `credential_versions`, for a lookup of one credential's versions by stage. Without
/// statistics SQLite prefers the primary key's `credential_id` prefix, which walks every version
/// the credential ever had (a put cost 100 µs in these lookups at a few hundred versions);
/// `INDEXED BY` (SQLite only) keeps it on `credential_versions_live`, which holds the current,
/// previous and pending versions only. PostgreSQL plans from its statistics.
fn live_versions(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "credential_versions INDEXED BY credential_versions_live",
        Backend::Postgres => "credential_versions",
    }
}
