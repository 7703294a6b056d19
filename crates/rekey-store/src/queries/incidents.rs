//! Reads of incidents: their rows, their reach (tenants, credentials, reveals), and the scope
//! resolution written when one is opened.

use std::str::FromStr;

use rekey_types::{CredentialKind, IncidentId, IncidentState, Timestamp};

use super::{all, corrupt, id, json, json_of, kind, opt_ts, state, ts, update_one, ReachTenant};
use crate::conn::{args, Arg, Conn, OwnedRow};
use crate::model::{IncidentCounts, IncidentItemRow, IncidentRow, ScopeQuery};
use crate::{Backend, StoreError};

fn incident_row(r: &OwnedRow) -> Result<IncidentRow, StoreError> {
    let kinds: Option<Vec<String>> =
        r.opt_text("kinds")?.map(|k| serde_json::from_str(&k)).transpose().map_err(|_| corrupt("kinds"))?;
    let kinds = kinds
        .map(|list| list.iter().map(|k| k.parse::<CredentialKind>().map_err(|_| corrupt("kinds"))).collect())
        .transpose()?;
    Ok(IncidentRow {
        id: id(r, "id")?,
        title: r.text("title")?,
        scope: json_of(r, "scope")?,
        reasons: json_of(r, "reasons")?,
        kinds,
        since: opt_ts(r, "since")?,
        state: state(r, "state")?,
        frozen: r.int("frozen")? != 0,
        affected: r.int("affected")?,
        counts: json_of(r, "counts")?,
        created_by: r.text("created_by")?,
        created_at: ts(r, "created_at")?,
        contained_at: opt_ts(r, "contained_at")?,
        closed_at: opt_ts(r, "closed_at")?,
    })
}

pub(crate) async fn incident<C: Conn>(c: &mut C, id_text: String) -> Result<Option<IncidentRow>, StoreError> {
    c.query_opt("SELECT * FROM incidents WHERE id = $1", args![id_text]).await?.map(|r| incident_row(&r)).transpose()
}

pub(crate) async fn incidents<C: Conn>(c: &mut C, limit: u32) -> Result<Vec<IncidentRow>, StoreError> {
    all(
        c.query("SELECT * FROM incidents ORDER BY created_at DESC, id DESC LIMIT $1", args![limit]).await?,
        incident_row,
    )
}

/// The open incidents whose scope holds `credential`.
pub(crate) async fn open_incidents_covering<C: Conn>(
    c: &mut C,
    credential: String,
) -> Result<Vec<IncidentRow>, StoreError> {
    let open = all(
        c.query("SELECT * FROM incidents WHERE state = 'open' ORDER BY created_at, id", vec![]).await?,
        incident_row,
    )?;
    let mut out = Vec::new();
    for incident in open {
        let sql = format!("SELECT c.id {} AND c.id = $3", reach(&incident.kinds));
        let hit = c
            .query_opt(&sql, args![incident.id.to_string(), incident.created_at.as_micros(), credential.clone()])
            .await?;
        if hit.is_some() {
            out.push(incident);
        }
    }
    Ok(out)
}

/// `AND c.kind IN (…)` for an incident limited to some kinds (constant names, never input).
fn kinds_clause(kinds: &Option<Vec<CredentialKind>>) -> String {
    match kinds {
        Some(list) => {
            let names: Vec<String> = list.iter().map(|k| format!("'{}'", k.as_str())).collect();
            format!(" AND c.kind IN ({})", if names.is_empty() { "''".into() } else { names.join(", ") })
        }
        None => String::new(),
    }
}

/// The tenants an incident reaches, as `(tenant_id, tenant_name, region, whole, reasons)`: the
/// tenant rows outside covered regions, and every tenant of a covered region (its reasons merged
/// with its tenant row's, if it has one). `$1` is the incident id.
const REACH_TENANTS: &str =
    "SELECT it.tenant_id, it.tenant_name, it.region, it.whole, it.reasons FROM incident_tenants it \
     WHERE it.incident_id = $1 AND it.region NOT IN (SELECT r.region FROM incident_regions r WHERE r.incident_id = $1) \
     UNION ALL \
     SELECT t.id, t.name, t.region, 1, r.reasons | COALESCE(x.reasons, 0) FROM incident_regions r \
     JOIN tenants t ON t.region = r.region \
     LEFT JOIN incident_tenants x ON x.incident_id = r.incident_id AND x.tenant_id = t.id \
     WHERE r.incident_id = $1";

/// The credentials an incident reaches: `$1` is the incident id, `$2` its opening time. Joins
/// `it` (the reached tenants, [`REACH_TENANTS`]), `c` (credentials) and `i` (incident_items, if
/// any).
pub(super) fn reach(kinds: &Option<Vec<CredentialKind>>) -> String {
    format!(
        "FROM ({REACH_TENANTS}) it \
         JOIN credentials c ON c.tenant_id = it.tenant_id \
         LEFT JOIN incident_items i ON i.incident_id = $1 AND i.credential_id = c.id \
         WHERE c.deleted_at IS NULL AND c.created_at <= $2 \
         AND (it.whole = 1 OR i.credential_id IS NOT NULL){}",
        kinds_clause(kinds)
    )
}

/// A page of the incident's credentials, by tenant and name, after `(tenant, name)`: tenants in
/// name order (`incident_tenants_name`), and each tenant's credentials in name order
/// (`credentials_live_name`), so no page sorts the whole scope.
pub(crate) async fn incident_items<C: Conn>(
    c: &mut C,
    incident: IncidentRow,
    after: Option<(String, String)>,
    limit: u32,
) -> Result<Vec<IncidentItemRow>, StoreError> {
    let limit = limit.max(1) as usize;
    let kinds = kinds_clause(&incident.kinds);
    let id = incident.id.to_string();
    let opened = incident.created_at.as_micros();
    let creds_sql = |after_name: bool| {
        format!(
            "SELECT c.id AS credential_id, c.name, c.kind, i.reasons AS item_reasons FROM credentials c \
             LEFT JOIN incident_items i ON i.incident_id = $1 AND i.credential_id = c.id \
             WHERE c.tenant_id = $2 AND c.deleted_at IS NULL AND c.created_at <= $3{kinds} \
             AND ($4 = 1 OR i.credential_id IS NOT NULL){} ORDER BY c.name LIMIT $6",
            if after_name { " AND c.name > $5" } else { " AND $5 = $5" }
        )
    };
    let mut out = Vec::new();
    let mut cursor = String::new();
    let mut first_after = None;
    if let Some((t, n)) = after {
        cursor = t.clone();
        first_after = Some((t, n));
    }
    let regions =
        !c.query("SELECT region FROM incident_regions WHERE incident_id = $1", args![id.clone()]).await?.is_empty();
    // The tenant the previous page ended in: its remaining credentials first.
    let mut tenants: Vec<ReachTenant> = Vec::new();
    if let Some((t, _)) = &first_after {
        tenants = reach_tenants(c, &id, regions, "=", t).await?;
    }
    loop {
        for tenant in std::mem::take(&mut tenants) {
            let after_name = first_after.as_ref().filter(|(t, _)| *t == tenant.name).map(|(_, n)| n.clone());
            let remaining = (limit - out.len()) as i64;
            let rows = c
                .query(
                    &creds_sql(after_name.is_some()),
                    args![id.clone(), tenant.id, opened, tenant.whole, after_name.unwrap_or_default(), remaining],
                )
                .await?;
            for r in rows {
                let bits = tenant.reasons | r.opt_int("item_reasons")?.unwrap_or(0);
                out.push(IncidentItemRow {
                    credential_id: id_of(&r, "credential_id")?,
                    tenant: tenant.name.clone(),
                    region: tenant.region.clone(),
                    name: r.text("name")?,
                    kind: kind(&r, "kind")?,
                    reasons: bits as u64,
                });
            }
            if out.len() >= limit {
                return Ok(out);
            }
        }
        let next = reach_tenants(c, &id, regions, ">", &cursor).await?;
        match next.last() {
            None => return Ok(out),
            Some(last) => cursor = last.name.clone(),
        }
        tenants = next;
    }
}

/// Up to 256 tenants an incident reaches whose name compares (`op`, `=` or `>`) with `name`, in
/// name order: the tenant rows (`incident_tenants_name`) and, if the incident covers `regions`,
/// the tenants of those regions (the unique index on tenant names), merged.
async fn reach_tenants<C: Conn>(
    c: &mut C,
    incident: &str,
    regions: bool,
    op: &str,
    name: &str,
) -> Result<Vec<ReachTenant>, StoreError> {
    const PAGE: usize = 256;
    let mut sqls = vec![format!(
        "SELECT it.tenant_id, it.tenant_name, it.region, it.whole, it.reasons FROM incident_tenants it \
         WHERE it.incident_id = $1 AND it.tenant_name {op} $2 \
         AND it.region NOT IN (SELECT r.region FROM incident_regions r WHERE r.incident_id = $1) \
         ORDER BY it.tenant_name LIMIT {PAGE}"
    )];
    if regions {
        sqls.push(format!(
            "SELECT t.id AS tenant_id, t.name AS tenant_name, t.region, 1 AS whole, \
             r.reasons | COALESCE(x.reasons, 0) AS reasons FROM tenants t \
             JOIN incident_regions r ON r.incident_id = $1 AND r.region = t.region \
             LEFT JOIN incident_tenants x ON x.incident_id = $1 AND x.tenant_id = t.id \
             WHERE t.name {op} $2 ORDER BY t.name LIMIT {PAGE}"
        ));
    }
    let mut out = Vec::new();
    for sql in sqls {
        for r in c.query(&sql, args![incident.to_owned(), name.to_owned()]).await? {
            out.push(ReachTenant {
                id: r.text("tenant_id")?,
                name: r.text("tenant_name")?,
                region: r.text("region")?,
                whole: r.int("whole")?,
                reasons: r.int("reasons")?,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.truncate(PAGE);
    Ok(out)
}

fn id_of<T: FromStr>(row: &OwnedRow, col: &str) -> Result<T, StoreError> {
    id(row, col)
}

/// The condition on audit events `a` whose `key` column (`resource` or `principal`) is in `set`
/// (a list or a subquery, which may be used twice) and whose action is `action`, if given.
/// PostgreSQL reads the log's own indexes. SQLite reads its index file (`ix`, see
/// `audit_index`) and scans the events past that file's watermark, which the log's key keeps to
/// the tail.
pub(super) fn audit_where(backend: Backend, key: &str, set: &str, action: Option<&str>) -> String {
    let act = |t: &str| action.map(|a| format!(" AND {t}.action = '{a}'")).unwrap_or_default();
    match backend {
        Backend::Postgres => format!("a.{key} IN ({set}){}", act("a")),
        Backend::Sqlite => format!(
            "a.seq IN (SELECT x.seq FROM ix.by_{key} x WHERE x.{key} IN ({set}){} \
             UNION ALL SELECT t.seq FROM audit_events t \
             WHERE t.seq > (SELECT w.seq FROM ix.indexed w WHERE w.id = 1) AND t.{key} IN ({set}){})",
            act("x"),
            act("t")
        ),
    }
}

/// Events that may be about tenant `$1` (`tenant:<name>`, or a resource starting `<name>/` or
/// `<name>@`),
/// through the SQLite audit index by a range of `resource`; the caller keeps those
/// `rekey_types::audit::tenant_of` says are the tenant's. PostgreSQL scans with `starts_with`
/// (correct under any collation).
pub(super) fn tenant_where(backend: Backend) -> String {
    match backend {
        Backend::Postgres => {
            "(a.resource = 'tenant:' || $1 OR starts_with(a.resource, $1 || '/') OR starts_with(a.resource, $1 || '@'))"
                .into()
        }
        Backend::Sqlite => "a.seq IN (SELECT x.seq FROM ix.by_resource x WHERE x.resource = 'tenant:' || $1 \
             OR (x.resource >= $1 || '/' AND x.resource < $1 || '0') OR (x.resource >= $1 || '@' AND x.resource < $1 || 'A') \
             UNION ALL SELECT t.seq FROM audit_events t WHERE t.seq > (SELECT w.seq FROM ix.indexed w WHERE w.id = 1) \
             AND (t.resource = 'tenant:' || $1 OR (t.resource >= $1 || '/' AND t.resource < $1 || '0') \
             OR (t.resource >= $1 || '@' AND t.resource < $1 || 'A')))"
            .into(),
    }
}

pub(super) const REVEAL: Option<&str> = Some("cred.reveal");

/// Successful reveals of an incident's credentials at or after `since`: (events, credentials).
pub(crate) async fn incident_reveals<C: Conn>(
    c: &mut C,
    incident: IncidentRow,
    since: i64,
) -> Result<(i64, i64), StoreError> {
    let sql = format!(
        "WITH r (resource) AS (SELECT it.tenant_name || '/' || c.name {}) \
         SELECT COUNT(*) AS n, COUNT(DISTINCT a.resource) AS d FROM audit_events a \
         WHERE {} AND a.outcome = 'success' AND a.time >= $3",
        reach(&incident.kinds),
        audit_where(c.backend(), "resource", "SELECT r.resource FROM r", REVEAL)
    );
    let row = c.query_opt(&sql, args![incident.id.to_string(), incident.created_at.as_micros(), since]).await?;
    match row {
        Some(r) => Ok((r.int("n")?, r.int("d")?)),
        None => Ok((0, 0)),
    }
}

/// Successful reveals at or after `since` of each of `resources` (`tenant/name`).
pub(crate) async fn reveal_counts<C: Conn>(
    c: &mut C,
    resources: Vec<String>,
    since: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut out = Vec::new();
    for chunk in resources.chunks(200) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        // `$1` first: SQLite numbers parameters in order of first use.
        let sql = format!(
            "SELECT a.resource, COUNT(*) AS n FROM audit_events a WHERE a.time >= $1 AND {} \
             AND a.outcome = 'success' GROUP BY a.resource",
            audit_where(c.backend(), "resource", &marks.join(", "), REVEAL)
        );
        let mut a: Vec<Arg> = vec![since.into()];
        a.extend(chunk.iter().map(|r| Arg::from(r.clone())));
        for r in c.query(&sql, a).await? {
            out.push((r.text("resource")?, r.int("n")?));
        }
    }
    Ok(out)
}

/// Adds what one scope query reaches to an incident, merging reason bits.
pub(super) async fn add_scope<C: Conn>(c: &mut C, incident: &str, q: &ScopeQuery) -> Result<(), StoreError> {
    const WHOLE: &str = "INSERT INTO incident_tenants (incident_id, tenant_id, tenant_name, region, whole, reasons) \
         SELECT $1, t.id, t.name, t.region, 1, $2 FROM tenants t";
    const WHOLE_MERGE: &str = "ON CONFLICT (incident_id, tenant_id) DO UPDATE \
         SET whole = 1, reasons = incident_tenants.reasons | excluded.reasons";
    let bit = |b: u8| -> i64 { 1i64 << b };
    let whole = |cond: &str| format!("{WHOLE} {cond} {WHOLE_MERGE}");
    // Single credentials: the items, and their tenants (not whole).
    let items = |cond: &str| {
        (
            format!(
                "INSERT INTO incident_items (incident_id, credential_id, reasons) SELECT $1, c.id, $2 FROM credentials c \
                 WHERE c.deleted_at IS NULL AND {cond} ON CONFLICT (incident_id, credential_id) DO UPDATE \
                 SET reasons = incident_items.reasons | excluded.reasons"
            ),
            format!(
                "INSERT INTO incident_tenants (incident_id, tenant_id, tenant_name, region, whole, reasons) \
                 SELECT DISTINCT $1, t.id, t.name, t.region, 0, 0 FROM credentials c JOIN tenants t ON t.id = c.tenant_id \
                 WHERE c.deleted_at IS NULL AND {} ON CONFLICT (incident_id, tenant_id) DO NOTHING",
                cond.replace("$3", "$2").replace("$4", "$3")
            ),
        )
    };
    let id = || incident.to_owned();
    match q {
        ScopeQuery::AllTenants { bit: b } => {
            // Every tenant is every region's tenants: one row per region, not per tenant. (A
            // region that appears later brings only tenants, and credentials, created after the
            // opening.) SQLite reads `ON CONFLICT` after a bare `FROM t` as a join: give it a WHERE.
            c.exec(
                "INSERT INTO incident_regions (incident_id, region, reasons) \
                 SELECT DISTINCT $1, t.region, $2 FROM tenants t WHERE 1 = 1 \
                 ON CONFLICT (incident_id, region) DO UPDATE SET reasons = incident_regions.reasons | excluded.reasons",
                args![id(), bit(*b)],
            )
            .await?;
        }
        ScopeQuery::Region { region, bit: b } => {
            c.exec(
                "INSERT INTO incident_regions (incident_id, region, reasons) VALUES ($1, $2, $3) \
                 ON CONFLICT (incident_id, region) DO UPDATE SET reasons = incident_regions.reasons | excluded.reasons",
                args![id(), region.clone(), bit(*b)],
            )
            .await?;
        }
        ScopeQuery::Tenants { ids, bit: b } => {
            for tenant in ids {
                c.exec(&whole("WHERE t.id = $3"), args![id(), bit(*b), tenant.to_string()]).await?;
            }
        }
        ScopeQuery::RootKey { version, bit: b } => {
            let cond = "WHERE EXISTS (SELECT 1 FROM tenant_keks k WHERE k.tenant_id = t.id AND k.root_version = $3)";
            c.exec(&whole(cond), args![id(), bit(*b), *version]).await?;
        }
        ScopeQuery::Credentials { ids, bit: b } => {
            let (ins, ten) = items("c.id = $3");
            for cred in ids {
                c.exec(&ins, args![id(), bit(*b), cred.to_string()]).await?;
                c.exec(&ten, args![id(), cred.to_string()]).await?;
            }
        }
        ScopeQuery::TenantKek { tenant, version, bit: b } => {
            let (ins, ten) = items(
                "c.tenant_id = $3 AND EXISTS (SELECT 1 FROM credential_versions v WHERE v.credential_id = c.id \
                 AND v.kek_version = $4)",
            );
            c.exec(&ins, args![id(), bit(*b), tenant.to_string(), *version]).await?;
            c.exec(&ten, args![id(), tenant.to_string(), *version]).await?;
        }
        ScopeQuery::Certificate { thumbprint, bit: b } => {
            let (ins, ten) = items("c.id IN (SELECT credential_id FROM certificates WHERE sha1 = $3 OR sha256 = $3)");
            c.exec(&ins, args![id(), bit(*b), thumbprint.clone()]).await?;
            c.exec(&ten, args![id(), thumbprint.clone()]).await?;
        }
    }
    Ok(())
}

/// Counts what an incident reaches by tenant, region and kind. Covered regions come from
/// `tenant_counts` (less the credentials created after the incident opened, found through
/// `credentials_created`), so their credentials are not visited; whole tenants of other regions
/// from the `credentials_reach` index; single credentials through their items.
pub(super) async fn count_reach<C: Conn>(
    c: &mut C,
    incident: &IncidentRow,
) -> Result<(i64, IncidentCounts), StoreError> {
    const TOP: usize = 50;
    let kinds = kinds_clause(&incident.kinds);
    let id = incident.id.to_string();
    let opened = incident.created_at.as_micros();
    let covered = "(SELECT r.region FROM incident_regions r WHERE r.incident_id = $1)";
    let mut counts = IncidentCounts::default();
    let mut tenants: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut total = 0;

    // Covered regions. `tenant_counts` is aliased `c` for the kinds clause.
    let live_now = format!(
        "SELECT c.region AS region, c.kind AS kind, CAST(SUM(c.n) AS BIGINT) AS n FROM tenant_counts c \
         WHERE c.region IN {covered}{kinds} GROUP BY c.region, c.kind"
    );
    // `CROSS JOIN` keeps SQLite on `credentials_created` (few rows) rather than walking the
    // regions' tenants; PostgreSQL plans it as a plain join.
    let late = format!(
        "SELECT t.name AS tname, t.region AS region, c.kind AS kind, COUNT(*) AS n FROM credentials c \
         CROSS JOIN tenants t WHERE t.id = c.tenant_id AND t.region IN {covered} AND c.deleted_at IS NULL \
         AND c.created_at > $2{kinds} GROUP BY t.id, t.name, t.region, c.kind"
    );
    let mut late_by_tenant: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for r in c.query(&late, args![id.clone(), opened]).await? {
        let n = r.int("n")?;
        total -= n;
        *counts.by_region.entry(r.text("region")?).or_default() -= n;
        *counts.by_kind.entry(r.text("kind")?).or_default() -= n;
        *late_by_tenant.entry(r.text("tname")?).or_default() += n;
    }
    for r in c.query(&live_now, args![id.clone()]).await? {
        let n = r.int("n")?;
        total += n;
        *counts.by_region.entry(r.text("region")?).or_default() += n;
        *counts.by_kind.entry(r.text("kind")?).or_default() += n;
    }
    // The largest tenants of covered regions: enough of them that the late credentials cannot
    // change which are the largest.
    let top = format!(
        "SELECT c.tenant_name AS tname, CAST(SUM(c.n) AS BIGINT) AS n FROM tenant_counts c WHERE c.region IN {covered}{kinds} \
         GROUP BY c.tenant_id, c.tenant_name ORDER BY SUM(c.n) DESC, c.tenant_name LIMIT {}",
        TOP + late_by_tenant.len()
    );
    for r in c.query(&top, args![id.clone()]).await? {
        let name = r.text("tname")?;
        let n = r.int("n")? - late_by_tenant.get(&name).copied().unwrap_or(0);
        tenants.insert(name, n);
    }

    // Tenant rows outside covered regions, and single credentials.
    let whole = format!(
        "SELECT it.tenant_name AS tname, it.region AS region, c.kind AS kind, COUNT(*) AS n \
         FROM incident_tenants it JOIN credentials c ON c.tenant_id = it.tenant_id \
         WHERE it.incident_id = $1 AND it.whole = 1 AND it.region NOT IN {covered} \
         AND c.deleted_at IS NULL AND c.created_at <= $2{kinds} \
         GROUP BY it.tenant_id, it.tenant_name, it.region, c.kind"
    );
    let single = format!(
        "SELECT it.tenant_name AS tname, it.region AS region, c.kind AS kind, COUNT(*) AS n \
         FROM incident_items i JOIN credentials c ON c.id = i.credential_id \
         JOIN incident_tenants it ON it.incident_id = i.incident_id AND it.tenant_id = c.tenant_id \
         WHERE i.incident_id = $1 AND it.whole = 0 AND c.deleted_at IS NULL AND c.created_at <= $2{kinds} \
         GROUP BY it.tenant_id, it.tenant_name, it.region, c.kind"
    );
    for sql in [whole, single] {
        for r in c.query(&sql, args![id.clone(), opened]).await? {
            let n = r.int("n")?;
            total += n;
            *counts.by_region.entry(r.text("region")?).or_default() += n;
            *counts.by_kind.entry(r.text("kind")?).or_default() += n;
            *tenants.entry(r.text("tname")?).or_default() += n;
        }
    }
    counts.by_region.retain(|_, n| *n != 0);
    counts.by_kind.retain(|_, n| *n != 0);
    tenants.retain(|_, n| *n != 0);
    let mut by_tenant: Vec<(String, i64)> = tenants.into_iter().collect();
    by_tenant.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    by_tenant.truncate(TOP);
    counts.by_tenant = by_tenant;
    Ok((total, counts))
}

// Writes.

pub(super) async fn open_incident<C: Conn>(
    c: &mut C,
    incident: &IncidentRow,
    scope: &[ScopeQuery],
) -> Result<(), StoreError> {
    let id = incident.id.to_string();
    let kinds: Option<Vec<&str>> = incident.kinds.as_ref().map(|k| k.iter().map(|k| k.as_str()).collect());
    c.exec(
        "INSERT INTO incidents (id, title, scope, reasons, kinds, since, state, frozen, affected, counts, \
         created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'open', 0, 0, '{}', $7, $8)",
        args![
            id.clone(),
            incident.title.clone(),
            json(&incident.scope),
            json(&incident.reasons),
            kinds.map(|k| json(&k)),
            incident.since.map(Timestamp::as_micros),
            incident.created_by.clone(),
            incident.created_at.as_micros()
        ],
    )
    .await?;
    for q in scope {
        add_scope(c, &id, q).await?;
    }
    // A tenant of a covered region that another selector reached as well: whole, with
    // the region's reasons too (readers take its row, not the region's, for its reasons).
    c.exec(
        "UPDATE incident_tenants SET whole = 1, reasons = reasons | (SELECT r.reasons FROM incident_regions r \
         WHERE r.incident_id = incident_tenants.incident_id AND r.region = incident_tenants.region) \
         WHERE incident_id = $1 AND region IN (SELECT region FROM incident_regions WHERE incident_id = $1)",
        args![id.clone()],
    )
    .await?;
    let (total, counts) = count_reach(c, incident).await?;
    c.exec("UPDATE incidents SET affected = $1, counts = $2 WHERE id = $3", args![total, json(&counts), id])
        .await
        .map(drop)
}

pub(super) async fn contain_incident<C: Conn>(
    c: &mut C,
    id: &IncidentId,
    freeze: &bool,
    at: &Timestamp,
) -> Result<(), StoreError> {
    let row = incident(c, id.to_string()).await?.filter(|r| r.state == IncidentState::Open);
    let Some(row) = row else {
        return Err(StoreError::NotFound { entity: "open incident", id: id.to_string() });
    };
    if *freeze {
        let sql = format!("UPDATE credentials SET frozen_by = $1 WHERE id IN (SELECT c.id {})", reach(&row.kinds));
        c.exec(&sql, args![id.to_string(), row.created_at.as_micros()]).await?;
    }
    c.exec(
        "UPDATE incidents SET contained_at = $1, frozen = CASE WHEN $2 = 1 THEN 1 ELSE frozen END WHERE id = $3",
        args![at.as_micros(), i64::from(*freeze), id.to_string()],
    )
    .await
    .map(drop)
}

pub(super) async fn close_incident<C: Conn>(c: &mut C, id: &IncidentId, at: &Timestamp) -> Result<(), StoreError> {
    update_one(
        c,
        "UPDATE incidents SET state = 'closed', closed_at = $1 WHERE id = $2 AND state = 'open'",
        at.as_micros(),
        "open incident",
        id.to_string(),
    )
    .await
}

/// Where a principal acted from since `since` (micros): per source address, its events, its
/// successful reveals and the credentials they read, first and last (the shared account of an
/// incident; docs/detection.md).
pub(crate) async fn sources_of<C: Conn>(
    c: &mut C,
    principal: String,
    since: i64,
) -> Result<Vec<crate::model::SourceUse>, StoreError> {
    let sql = format!(
        "SELECT a.source AS source, COUNT(*) AS events, \
         SUM(CASE WHEN a.action = 'cred.reveal' AND a.outcome = 'success' THEN 1 ELSE 0 END) AS reveals, \
         COUNT(DISTINCT CASE WHEN a.action = 'cred.reveal' AND a.outcome = 'success' THEN a.resource END) AS credentials, \
         MIN(a.time) AS first_at, MAX(a.time) AS last_at \
         FROM audit_events a WHERE {} AND a.time >= $2 AND a.source <> '' \
         GROUP BY a.source ORDER BY a.source LIMIT 1000",
        audit_where(c.backend(), "principal", "$1", None)
    );
    all(c.query(&sql, args![principal, since]).await?, |r| {
        Ok(crate::model::SourceUse {
            source: r.text("source")?,
            events: r.int("events")?,
            reveals: r.int("reveals")?,
            credentials: r.int("credentials")?,
            first: ts(r, "first_at")?,
            last: ts(r, "last_at")?,
        })
    })
}
