//! Blast radius: `incident open --scope region:uk,us` over N credentials in N / per-tenant
//! tenants (regions uk, us, eu in turn), which resolves the scope, stores every credential in
//! scope with its reason and the counts, with its audit event. The baseline, in the same run on
//! the same database, is the raw query that only lists the same credentials.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rekey_core::incidents::OpenIncident;
use rekey_server::config::Redacted;
use rekey_server::App;
use sqlx::Connection;

use crate::custody::{caller_of, load_dataset};

const RUNS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("times are numbers"));
    v[v.len() / 2]
}

pub(crate) async fn run(
    credentials: usize,
    per_tenant: usize,
    data: Option<PathBuf>,
    postgres: Option<String>,
) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = data.unwrap_or_else(|| tmp.path().join("sqlite"));
    let expected = expected_in_uk_us(credentials, per_tenant);
    println!(
        "Blast radius of region:uk,us, {credentials} credentials over {} tenants ({expected} in scope), median of {RUNS}",
        credentials.div_ceil(per_tenant)
    );
    let (app, root) = open(crate::dev_config(&dir), &dir, credentials, per_tenant).await?;
    let db = dir.join("rekey.db");
    let raw = move || -> Result<usize> {
        let c = rusqlite::Connection::open(&db)?;
        let mut q = c.prepare(
            "SELECT c.id, c.tenant_id FROM credentials c JOIN tenants t ON t.id = c.tenant_id \
             WHERE t.region IN ('uk', 'us') AND c.deleted_at IS NULL",
        )?;
        let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        Ok(rows.count())
    };
    let mut raw_times = Vec::new();
    for _ in 0..RUNS {
        let raw = raw.clone();
        let t = Instant::now();
        let n = tokio::task::spawn_blocking(raw).await??;
        raw_times.push(t.elapsed().as_secs_f64());
        ensure!(n == expected, "the raw query found {n}, expected {expected}");
    }
    let ours = measure(&app, &root, expected).await?;
    report("SQLite", median(raw_times), ours);
    drop(app);

    if let Some(admin) = postgres {
        let name = format!("rekey_bench_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&admin).await.context("connecting to PostgreSQL")?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
        let (base, _) = admin.rsplit_once('/').context("the URL names a database")?;
        let url = format!("{base}/{name}");
        let pg_dir = tmp.path().join("pg");
        let mut config = crate::dev_config(&pg_dir);
        config.store.url = Some(Redacted::new(url.clone()));
        let (app, root) = open(config, &pg_dir, credentials, per_tenant).await?;
        let mut pg = sqlx::PgConnection::connect(&url).await?;
        // Statistics as autovacuum keeps them on a live database (a bulk load leaves none yet).
        sqlx::query("VACUUM ANALYZE").execute(&mut pg).await?;
        let mut raw_times = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT c.id, c.tenant_id FROM credentials c JOIN tenants t ON t.id = c.tenant_id \
                 WHERE t.region IN ('uk', 'us') AND c.deleted_at IS NULL",
            )
            .fetch_all(&mut pg)
            .await?;
            raw_times.push(t.elapsed().as_secs_f64());
            ensure!(rows.len() == expected, "the raw query found {}, expected {expected}", rows.len());
        }
        let ours = measure(&app, &root, expected).await?;
        report("PostgreSQL", median(raw_times), ours);
        drop(app);
        drop(pg);
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut conn).await?;
    }
    Ok(())
}

fn expected_in_uk_us(credentials: usize, per_tenant: usize) -> usize {
    let tenants = credentials.div_ceil(per_tenant);
    (0..tenants).filter(|t| t % 3 != 2).count() * per_tenant
}

async fn open(
    config: rekey_server::Config,
    dir: &std::path::Path,
    credentials: usize,
    per_tenant: usize,
) -> Result<(App, String)> {
    let mut config = config;
    config.scheduler.interval = "off".into();
    std::fs::create_dir_all(dir)?;
    let token_file = dir.join("root-token");
    let mut app = App::build(config).await?;
    let fresh = app.root_token.is_some();
    if let Some(root) = app.root_token.take() {
        std::fs::write(&token_file, root.expose())?;
    }
    let root = std::fs::read_to_string(&token_file).context("the data folder has no root-token")?.trim().to_owned();
    if fresh {
        let vault = app.keeper.vault()?;
        load_dataset(&vault, &caller_of(&vault, &root).await?, credentials, per_tenant).await?;
    }
    Ok((app, root))
}

async fn measure(app: &App, root: &str, expected: usize) -> Result<f64> {
    let vault = app.keeper.vault()?;
    let caller = caller_of(&vault, root).await?;
    let mut times = Vec::new();
    for run in 0..RUNS {
        let input = OpenIncident { title: format!("bench {run}"), scope: vec!["region:uk,us".into()], since: None };
        let t = Instant::now();
        let report = vault.open_incident(&caller, input).await?;
        times.push(t.elapsed().as_secs_f64());
        ensure!(
            report.incident.affected as usize == expected,
            "affected {}, expected {expected}",
            report.incident.affected
        );
    }
    Ok(median(times))
}

fn report(store: &str, raw: f64, ours: f64) {
    println!(
        "{store:<11} raw listing query {raw:>7.3} s   rekey incident open {ours:>7.3} s   ratio {:.1}   (target < 1 s)",
        ours / raw
    );
}
