//! Rekey benchmarks. Each prints its figures next to a baseline measured in the same run, and
//! the ratio between them. See BENCHMARKS.md for the latest figures and how to run them.
//!
//! ```text
//! cargo run --release -p rekey-bench -- http   [--seconds 15] [--connections 32]
//! cargo run --release -p rekey-bench -- audit  [--events 300000]
//! cargo run --release -p rekey-bench -- login  [--seconds 10] [--connections 16]
//! cargo run --release -p rekey-bench -- memory [--credentials 1000000]
//! cargo run --release -p rekey-bench -- dataset --credentials 1000000 --tenants 50000 --data DIR
//! cargo run --release -p rekey-bench -- custody [--credentials 1000000] [--hsm] [--data DIR]
//! cargo run --release -p rekey-bench -- incidents [--credentials 1000000] [--per-tenant 10] [--data DIR] [--postgres URL]
//! cargo run --release -p rekey-bench -- connect [--seconds 5] [--concurrency 8] [--rounds 3] [--accounts 10000]
//!     (needs the loopback peers: eval "$(scripts/peers/connectors.sh start /tmp/rekey-peers)")
//! ```
#![forbid(unsafe_code)]

mod campaign;
mod connect;
mod custody;
mod incidents;
mod load;
mod login;
mod proofs;
mod verify;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rekey_server::{App, Config};
use rekey_types::RequestId;

use load::{load, one, LoadResult};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// reveal and put over HTTP against a bare axum handler, with the same load generator.
    Http {
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
    },
    /// Workload logins with ES256 and RS256 JWTs over HTTP against the bare signature check.
    Login {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 16)]
        connections: usize,
    },
    /// Durable audit append through the group-commit writer against a raw batched insert.
    Audit {
        #[arg(long, default_value_t = 300_000)]
        events: usize,
    },
    /// Rewrap after a KEK compromise, root rotation (in memory and in SoftHSM2), and unseal to
    /// first served request, each against a baseline.
    Custody {
        #[arg(long, default_value_t = 1_000_000)]
        credentials: usize,
        /// Also measure with the root key in SoftHSM2 (needs softhsm2).
        #[arg(long)]
        hsm: bool,
        /// Keep the data folders here (reused if they already hold the credentials).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Connector verify per kind against raw client loops, and LDAP rotation against a raw
    /// password-modify loop (needs the peers of scripts/peers/connectors.sh).
    Connect {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
    },
    /// A campaign of N automatic LDAP rotations against a raw password-modify loop (needs the
    /// peers of scripts/peers/connectors.sh).
    Campaign {
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Blast radius of `region:uk,us` (incident open) against a raw query listing the same
    /// credentials, on SQLite and, with --postgres, on PostgreSQL.
    Incidents {
        #[arg(long, default_value_t = 1_000_000)]
        credentials: usize,
        #[arg(long, default_value_t = 10)]
        per_tenant: usize,
        /// Keep the SQLite data folder here (reused if it already holds the credentials).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Also measure on this PostgreSQL database (an admin URL; a database is created in it).
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Inclusion and consistency proofs of the audit log's Merkle tree on a log of N events,
    /// against a point read of one event.
    Proofs {
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 1_000)]
        samples: usize,
        /// Keep the SQLite data folder here (reused if it already holds the events).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Offline verification of an audit export of N events (`audit verify --export`), on one
    /// thread, against reading and parsing the same file.
    Verify {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 5)]
        samples: usize,
    },
    /// A dev data folder holding N credentials over T tenants (`t0/c0` …), its root token in
    /// `root-token` and its shape in `dataset.env`, for `scripts/bench/reveal-cpu.sh --dataset`.
    Dataset {
        #[arg(long, default_value_t = 1_000_000)]
        credentials: usize,
        #[arg(long, default_value_t = 50_000)]
        tenants: usize,
        #[arg(long)]
        data: PathBuf,
    },
    /// Resident memory of `rekey serve` with N stored credentials, against an empty store.
    Memory {
        #[arg(long, default_value_t = 1_000_000)]
        credentials: usize,
        /// Keep the data folder here (reused if it already holds the credentials).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    rekey_server::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        match cli.cmd {
            Cmd::Http { seconds, connections } => http(Duration::from_secs(seconds), connections).await,
            Cmd::Audit { events } => audit(events).await,
            Cmd::Login { seconds, connections } => login::run(seconds, connections).await,
            Cmd::Proofs { events, samples, data } => proofs::run(events, samples, data).await,
            Cmd::Memory { credentials, data } => memory(credentials, data).await,
            Cmd::Dataset { credentials, tenants, data } => dataset(credentials, tenants, data),
            Cmd::Verify { events, samples } => verify::run(events, samples),
            Cmd::Custody { credentials, data, hsm } => custody::run(credentials, data, hsm).await,
            Cmd::Incidents { credentials, per_tenant, data, postgres } => {
                incidents::run(credentials, per_tenant, data, postgres).await
            }
            Cmd::Campaign { accounts, concurrency } => campaign::run(accounts, concurrency).await,
            Cmd::Connect { seconds, concurrency, rounds, accounts } => {
                connect::run(seconds, concurrency, rounds, accounts).await
            }
        }
    })
}

fn dev_config(data: &Path) -> Config {
    let mut config = Config::dev_defaults();
    config.data_dir = data.to_owned();
    config.listen = "127.0.0.1:0".parse().expect("constant");
    // The peers of the connector benchmarks listen on loopback.
    config.egress.allow = vec!["127.0.0.0/8".into(), "::1".into()];
    config
}

fn report(name: &str, r: &LoadResult) {
    println!(
        "{name:<34} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} requests, {} errors)",
        r.rate(),
        r.percentile(50.0),
        r.percentile(99.0),
        r.requests,
        r.errors
    );
}

async fn http(duration: Duration, connections: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut app = App::build(dev_config(&dir.path().join("data"))).await?;
    let root = app.root_token.take().context("fresh vault has a root token")?.expose().to_owned();
    let started = app.start(std::future::pending()).await?;
    let addr = started.addr;
    let auth = |t: &str| format!("Authorization: Bearer {t}\r\n");
    let json_req = |method: &str, path: &str, token: &str, body: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            auth(token),
            body.len()
        )
        .into_bytes()
    };
    let (s, _) = one(addr, &json_req("POST", "/v1/tenants", &root, r#"{"name":"acme","region":"uk"}"#)).await?;
    anyhow::ensure!(s == 200, "tenant create: {s}");
    let put_body = r#"{"kind":"ldap","fields":{"url":"ldaps://dc1.acme.example:636","bind_dn":"cn=svc,dc=acme,dc=example"},"secret":"correct horse battery staple"}"#;
    let (s, _) = one(addr, &json_req("PUT", "/v1/tenants/acme/credentials/dir", &root, put_body)).await?;
    anyhow::ensure!(s == 200, "put: {s}");
    let (s, body) = one(
        addr,
        &json_req(
            "POST",
            "/v1/tokens",
            &root,
            r#"{"role":"connector","tenant":"acme","credentials":["dir"],"cidrs":["127.0.0.1/32"]}"#,
        ),
    )
    .await?;
    anyhow::ensure!(s == 200, "token: {s}");
    let token: serde_json::Value = serde_json::from_slice(&body)?;
    let connector = token["secret"].as_str().context("token secret")?.to_owned();
    let reveal = format!(
        "POST /v1/tenants/acme/credentials/dir/reveal HTTP/1.1\r\nHost: bench\r\n{}Content-Length: 0\r\n\r\n",
        auth(&connector)
    )
    .into_bytes();
    let (s, reveal_body) = one(addr, &reveal).await?;
    anyhow::ensure!(s == 200, "reveal: {s}");

    // The baseline: a bare axum handler on the same runtime returning the same bytes.
    let bytes = bytes_of(reveal_body);
    let bare = axum::Router::new().route(
        "/v1/tenants/{tenant}/credentials/{name}/reveal",
        axum::routing::post(move || {
            let b = bytes.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], b) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, bare).await });

    println!(
        "HTTP, {connections} connections, {} s each, one 2-core machine (load generator included)",
        duration.as_secs()
    );
    let base = load(bare_addr, vec![reveal.clone()], connections, duration).await;
    report("bare axum handler (same bytes)", &base);
    let rekey = load(addr, vec![reveal.clone()], connections, duration).await;
    report("rekey reveal (connector, audited)", &rekey);
    println!("  ratio reveal / bare: {:.2}   (target >= 0.40, p99 < 10 ms)", rekey.rate() / base.rate());

    // put: one credential per connection, each request a new durable version.
    let mut puts = Vec::new();
    for c in 0..connections {
        let (s, _) =
            one(addr, &json_req("PUT", &format!("/v1/tenants/acme/credentials/p{c}"), &root, put_body)).await?;
        anyhow::ensure!(s == 200, "put: {s}");
        puts.push(json_req("PUT", &format!("/v1/tenants/acme/credentials/p{c}"), &root, put_body));
    }
    let put = load(addr, puts, connections, duration).await;
    report("rekey put (new version, durable)", &put);
    println!("  ratio put / bare: {:.2}   (target >= 15000 req/s)", put.rate() / base.rate());
    let writer = started.keeper.writer_stats();
    let batches = writer.batches.load(std::sync::atomic::Ordering::Relaxed);
    let events = writer.events.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "  group commit: {events} audit events in {batches} commits ({:.1} per commit)",
        events as f64 / batches.max(1) as f64
    );
    Ok(())
}

fn bytes_of(v: Vec<u8>) -> axum::body::Bytes {
    axum::body::Bytes::from(v)
}

/// The `i`th event of the audit benchmarks: a connector's reveal, round 1,000 resources.
fn audit_event(i: usize) -> rekey_types::AuditRecord {
    rekey_types::AuditRecord {
        seq: 0,
        time: rekey_types::Timestamp::now(),
        principal: "token:01a216c4-2d50-732e-b628-52cac193c647".into(),
        action: "cred.reveal".into(),
        resource: format!("tenant{}/directory", i % 1000),
        outcome: rekey_types::AuditOutcome::Success,
        source: "127.0.0.1".into(),
        request_id: RequestId::generate().to_string(),
        detail: "version=1".into(),
    }
}

async fn audit(events: usize) -> Result<()> {
    use rekey_store::{SqlStore, Store, StoreOptions, WriteRequest};
    use rekey_types::AuditRecord;
    let dir = tempfile::tempdir()?;

    // Baseline: the same rows with a prepared single-row INSERT straight into SQLite (rusqlite,
    // no async hop), 1,024 per durable transaction, no MAC, no channel.
    let mut raw = rusqlite::Connection::open(dir.path().join("raw.db"))?;
    raw.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
         CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, time INTEGER NOT NULL, principal TEXT NOT NULL, action TEXT NOT NULL, \
         resource TEXT NOT NULL, outcome TEXT NOT NULL, source TEXT NOT NULL, request_id TEXT NOT NULL, detail TEXT NOT NULL, mac BLOB NOT NULL)",
    )?;
    let rows: Vec<AuditRecord> = (0..events).map(audit_event).collect();
    let start = Instant::now();
    let mut seq = 0i64;
    for batch in rows.chunks(1024) {
        let tx = raw.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT INTO audit_events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")?;
            for r in batch {
                seq += 1;
                stmt.execute(rusqlite::params![
                    seq,
                    r.time.as_micros(),
                    r.principal,
                    r.action,
                    r.resource,
                    r.outcome.as_str(),
                    r.source,
                    r.request_id,
                    r.detail,
                    vec![0u8; 32]
                ])?;
            }
        }
        tx.commit()?;
    }
    let raw_rate = events as f64 / start.elapsed().as_secs_f64();

    // Rekey: every event through the writer (channel, HMAC chain, Any driver, durable commit),
    // submitted by 512 concurrent tasks as requests would.
    let store: Arc<dyn Store> = Arc::new(
        SqlStore::open(&StoreOptions {
            url: format!("sqlite://{}", dir.path().join("rekey.db").display()),
            max_connections: 4,
        })
        .await?,
    );
    let key = Arc::new(rekey_crypto::AuditKey::generate()?);
    let writer = rekey_core::writer::Writer::spawn(store.clone(), key, 0, None)?;
    let rows = Arc::new(rows);
    let start = Instant::now();
    let tasks = 512;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let writer = writer.clone();
        let rows = rows.clone();
        handles.push(tokio::spawn(async move {
            let mut i = t;
            while i < rows.len() {
                let r = writer.submit(WriteRequest { op: None, audit: rows[i].clone() }).await;
                assert!(matches!(r, Ok(Ok(_))), "audit append failed");
                i += tasks;
            }
        }));
    }
    for h in handles {
        h.await?;
    }
    let appended = start.elapsed();
    let rekey_rate = events as f64 / appended.as_secs_f64();
    // The audit log's indexes by resource and principal follow behind the writer (SQLite):
    // measure when they have every event, so that the figure above hides no debt.
    let lag_at_end = store.audit_index_lag().await?.unwrap_or(0);
    while store.audit_index_lag().await?.unwrap_or(0) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let indexed = start.elapsed();
    let stats = writer.stats();
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    println!("Audit append, {events} events, SQLite WAL, each answer after its commit is flushed to disk");
    println!("{:<46} {raw_rate:>10.0} events/s", "raw SQLite insert (1,024 per commit, no MAC)");
    println!("{:<46} {rekey_rate:>10.0} events/s   ({batches} commits)", "rekey writer (HMAC chain, group commit)");
    println!("  ratio rekey / raw: {:.2}   (target >= 50,000 events/s)", rekey_rate / raw_rate);
    println!(
        "  audit index: {lag_at_end} events behind at the last answer, all indexed {:.2} s later \
         ({:.0} events/s appended and indexed)",
        (indexed - appended).as_secs_f64(),
        events as f64 / indexed.as_secs_f64()
    );

    // Detection: every rule (defaults: bulk read past 100 credentials in 10 minutes; a feed
    // listing 10,100 addresses and blocks) over the stored log, read as the detector reads it
    // from the store (after a restart, or on PostgreSQL), a page of 1,000 events at a time. Every event
    // is one token's reveal, round 1,000 credentials: the bulk-read rule's busiest case (its
    // window fills past the limit and starts again every 101 reads).
    let start = Instant::now();
    let mut engine = rekey_core::rules::Engine::new(rekey_core::rules::Rules::default());
    let world = NoDecoys::new();
    let (mut from, mut seen, mut raised) = (0i64, 0usize, 0usize);
    loop {
        let page = store.audit_page(from, 1000).await?;
        let Some(last) = page.last().map(|e| e.record.seq) else { break };
        for e in &page {
            raised += engine.observe(&e.record, &world).len();
        }
        seen += page.len();
        from = last;
    }
    let detect_rate = seen as f64 / start.elapsed().as_secs_f64();
    println!(
        "{:<46} {detect_rate:>10.0} events/s   ({raised} alerts)",
        "detection rules over the log (pages of 1,000)"
    );
    println!(
        "  ratio detection / rekey writer: {:.2}   (>= 1: the rules keep up with the writer's peak)",
        detect_rate / rekey_rate
    );
    Ok(())
}

/// A world without decoys, where every presented token was issued, and a threat feed lists
/// 10,000 addresses and 100 blocks (none the events' source).
struct NoDecoys(rekey_core::rules::Listings);

impl NoDecoys {
    fn new() -> Self {
        let mut listings = rekey_core::rules::Listings::default();
        let listing = |i: u32| rekey_core::rules::Listing {
            feed: "bench".into(),
            name: format!("listed {i}"),
            stix_id: format!("indicator--{i}"),
            valid_from: 0,
            valid_until: None,
        };
        for i in 0..10_000u32 {
            let net = std::net::Ipv4Addr::from(0xC633_0000 + i); // 198.51.0.0 and on
            listings.add(ipnet::IpNet::from(std::net::IpAddr::V4(net)), listing(i));
        }
        for i in 0..100u32 {
            let net = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0xCB00_0000 + (i << 8)), 24).expect("a /24");
            listings.add(ipnet::IpNet::V4(net), listing(i));
        }
        Self(listings)
    }
}

impl rekey_core::rules::World for NoDecoys {
    fn is_decoy(&self, _: &str) -> bool {
        false
    }
    fn token_exists(&self, _: &str) -> bool {
        true
    }
    fn listings(&self) -> &rekey_core::rules::Listings {
        &self.0
    }
}

/// Spawns `rekey serve --dev …` and waits for the address it prints. Its stderr keeps being
/// read (and dropped) afterwards: a server writing to a pipe nobody reads would block, or fail
/// on a pipe closed under it.
fn start_server(mut cmd: std::process::Command) -> Result<(std::process::Child, SocketAddr)> {
    use std::io::BufRead;
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let mut lines = std::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        if let Some(rest) = line?.split("Rekey dev server on http://").nth(1) {
            addr = Some(rest.trim().parse::<SocketAddr>()?);
            break;
        }
    }
    let addr = addr.context("server did not start")?;
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, addr))
}

fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line =
            status.lines().find(|l| l.starts_with(name)).with_context(|| format!("{name} in /proc/{pid}/status"))?;
        Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Starts `rekey serve --dev` on `data`, runs `reveals` reveals and a few listings, and returns
/// (RSS, peak RSS) in KiB.
async fn serve_and_measure(
    bin: &Path,
    data: &Path,
    reveals: usize,
    tenants: usize,
    per_tenant: usize,
) -> Result<(u64, u64)> {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data"]).arg(data).env("REKEY_LOG_LEVEL", "warn");
    let (mut child, addr) = start_server(cmd)?;
    let root = std::fs::read_to_string(data.join("root-token"))?.trim().to_owned();
    let mut requests = Vec::new();
    for i in 0..reveals {
        let t = (i * 7919) % tenants.max(1);
        let c = (i * 104_729) % per_tenant.max(1);
        requests.push(
            format!(
                "POST /v1/tenants/t{t}/credentials/c{c}/reveal HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {root}\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        );
    }
    requests.push(
        format!("GET /v1/credentials?limit=10000 HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {root}\r\n\r\n")
            .into_bytes(),
    );
    requests
        .push(format!("GET /v1/sys/status HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {root}\r\n\r\n").into_bytes());
    let mut failures = 0;
    for r in &requests {
        let (status, _) = one(addr, r).await?;
        failures += usize::from(status != 200);
    }
    let rss = rss_kib(child.id())?;
    let _ = child.kill();
    let _ = child.wait();
    if failures > 0 && tenants > 0 {
        bail!("{failures} of {} requests failed", requests.len());
    }
    Ok(rss)
}

/// Loads a dev data folder through the import use case (see `Cmd::Dataset`).
fn load_folder(folder: &Path, credentials: usize, per_tenant: usize) -> Result<(usize, usize)> {
    let load = folder.to_owned();
    custody::on_own_runtime(move || async move {
        let mut app = App::build(dev_config(&load)).await?;
        let root = app.root_token.take().context("root token")?;
        std::fs::write(load.join("root-token"), format!("{}\n", root.expose()))?;
        let vault = app.keeper.vault()?;
        let caller = custody::caller_of(&vault, root.expose()).await?;
        let shape = custody::load_dataset(&vault, &caller, credentials, per_tenant).await?;
        // The audit index follows behind the writer: let it catch up here, so that a server
        // measured on this folder does not spend its first minute indexing the import.
        while vault.store().audit_index_lag().await?.unwrap_or(0) > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(shape)
    })
}

fn dataset(credentials: usize, tenants: usize, data: PathBuf) -> Result<()> {
    anyhow::ensure!(tenants > 0 && credentials >= tenants, "at least one credential per tenant");
    anyhow::ensure!(!data.join("rekey.db").exists(), "{} already holds a store", data.display());
    let start = Instant::now();
    let (tenants, per_tenant) = load_folder(&data, credentials, credentials.div_ceil(tenants))?;
    std::fs::write(data.join("dataset.env"), format!("TENANTS={tenants}\nPER_TENANT={per_tenant}\n"))?;
    println!(
        "{} credentials over {tenants} tenants ({per_tenant} each, t0/c0 …) in {} ({:.0} s)",
        tenants * per_tenant,
        data.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn memory(credentials: usize, data: Option<PathBuf>) -> Result<()> {
    let bin = std::env::current_exe()?.parent().context("exe dir")?.join("rekey");
    anyhow::ensure!(
        bin.exists(),
        "build the server first: cargo build --release -p rekey-cli ({} missing)",
        bin.display()
    );
    let tmp = tempfile::tempdir()?;
    let empty = tmp.path().join("empty");
    let full = data.unwrap_or_else(|| tmp.path().join("full"));
    let tenants = (credentials / 100).max(1);
    let per_tenant = credentials.div_ceil(tenants);
    if !full.join("rekey.db").exists() {
        let start = Instant::now();
        load_folder(&full, credentials, per_tenant)?;
        eprintln!("  ready in {:.0} s", start.elapsed().as_secs_f64());
    }
    let (base_rss, base_hwm) = serve_and_measure(&bin, &empty, 0, 0, 0).await?;
    let (rss, hwm) = serve_and_measure(&bin, &full, 2000, tenants, per_tenant).await?;
    let db_size: u64 =
        std::fs::read_dir(&full)?.filter_map(|e| e.ok()).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    println!("Resident memory of `rekey serve --dev` after 2,000 reveals, a 10,000-row listing and status");
    println!(
        "{:<40} RSS {:>7.1} MB   peak {:>7.1} MB",
        "empty store (baseline)",
        base_rss as f64 / 1024.0,
        base_hwm as f64 / 1024.0
    );
    println!(
        "{:<40} RSS {:>7.1} MB   peak {:>7.1} MB   (data folder {:.0} MB)",
        format!("{credentials} credentials, {tenants} tenants"),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        db_size as f64 / 1_048_576.0
    );
    println!("  ratio full / empty (peak): {:.2}   (target: peak < 200 MB)", hwm as f64 / base_hwm as f64);
    Ok(())
}
