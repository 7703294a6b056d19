//! Key custody benchmarks: rewrap after a KEK compromise (every tenant's KEK rotated, every DEK
//! rewrapped) against unwrap+wrap of as many keys in memory plus a raw SQLite update of as many
//! rows; the format migration of target binding against that rewrap; the root rotation with the root key in memory (Shamir) and in SoftHSM2; and the time
//! from the last unseal share to the first served request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use rekey_core::custody::RotateScope;
use rekey_core::import::{ImportLine, ImportMode, ImportOptions};
use rekey_core::{Caller, Vault};
use rekey_crypto::{rewrap_dek, seal_payload, Kek, PayloadSlot, TargetBinding};
use rekey_server::{App, Config};
use rekey_types::{CredentialId, CredentialKind, RequestId, TenantId};

use crate::load::one;

const SHARES_FILE: &str = "bench-unseal-shares";

fn config(data: &Path, seal: &str) -> Config {
    let mut config = Config::dev_defaults();
    config.data_dir = data.to_owned();
    config.listen = "127.0.0.1:0".parse().expect("constant");
    config.seal.kind = seal.into();
    config.log.level = "warn".into();
    config
}

/// Loads `credentials` LDAP credentials over `credentials / 100` tenants through the import use
/// case (real encryption, real audit events).
/// Loads `credentials` ldap credentials, `per_tenant` to a tenant, tenants in `uk`, `us` and
/// `eu` in turn; returns (tenants, per tenant).
pub(crate) async fn load_dataset(
    vault: &Vault,
    caller: &Caller,
    credentials: usize,
    per_tenant: usize,
) -> Result<(usize, usize)> {
    let start = Instant::now();
    let tenants = credentials.div_ceil(per_tenant).max(1);
    let mut line_no = 0u64;
    let mut chunk = Vec::new();
    let options = || ImportOptions { dry_run: false, create_tenants: true, mode: ImportMode::Atomic };
    for t in 0..tenants {
        for c in 0..per_tenant {
            line_no += 1;
            let json = format!(
                r#"{{"tenant":"t{t}","region":"{}","name":"c{c}","kind":"ldap","fields":{{"url":"ldaps://dc{t}.example:636","bind_dn":"cn=svc,dc=t{t},dc=example"}},"secret":"password-{t}-{c}-xxxxxxxxxxxx"}}"#,
                ["uk", "us", "eu"][t % 3]
            );
            chunk.push((line_no, serde_json::from_str::<ImportLine>(&json).map_err(|e| e.to_string())));
            if chunk.len() == 5000 {
                let report = vault.import_chunk(caller, std::mem::take(&mut chunk), options()).await?;
                ensure!(report.errors.is_empty(), "import errors: {:?}", report.errors.first());
                if line_no.is_multiple_of(100_000) {
                    eprintln!("  loaded {line_no} credentials in {:.0} s", start.elapsed().as_secs_f64());
                }
            }
        }
    }
    if !chunk.is_empty() {
        vault.import_chunk(caller, chunk, options()).await?;
    }
    eprintln!("  loaded {line_no} credentials over {tenants} tenants in {:.0} s", start.elapsed().as_secs_f64());
    Ok((tenants, per_tenant))
}

/// Runs `work` on a runtime of its own and returns once that runtime has ended, with every task
/// of any server `work` built, and the SQLite files it opened are closed (the audit writer's
/// threads let go of them just after the runtime): the process then no longer holds that
/// server's file, which a `rekey serve` process started next must take.
pub(crate) fn on_own_runtime<T: Send + 'static, F: std::future::Future<Output = Result<T>>>(
    work: impl FnOnce() -> F + Send + 'static,
) -> Result<T> {
    let result = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        rt.block_on(work())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("a thread running part of the benchmark panicked"))?;
    anyhow::ensure!(
        rekey_store::wait_until_closed(std::time::Duration::from_secs(300)),
        "the in-process server's store did not close within 300 s"
    );
    result
}

pub(crate) async fn caller_of(vault: &Vault, root: &str) -> Result<Caller> {
    Ok(vault
        .authenticate(Some(root), "127.0.0.1".parse()?, RequestId::generate(), rekey_types::AuditAction::HttpAuth, "")
        .await?)
}

/// Opens (creating and loading it the first time) a data folder whose root key is in a Shamir
/// seal; returns the app, unsealed, and the root token.
async fn open_shamir(data: &Path, credentials: usize) -> Result<(App, String)> {
    let fresh = !data.join("rekey.db").exists();
    let app = App::build(config(data, "shamir")).await?;
    if fresh {
        let init = app.keeper.init(3, 2).await?;
        let text: Vec<String> = init.shares.iter().map(|s| s.to_string()).collect();
        write_private(&data.join(SHARES_FILE), &text.join("\n"))?;
    }
    let shares = std::fs::read_to_string(data.join(SHARES_FILE))?;
    let mut root = None;
    for share in shares.lines().take(2) {
        root = app.keeper.unseal(share, "127.0.0.1".parse()?).await?.root_token.or(root);
    }
    if let Some(root) = root {
        write_private(&data.join("root-token"), root.expose())?;
    }
    let root = std::fs::read_to_string(data.join("root-token"))?.trim().to_owned();
    if fresh {
        let vault = app.keeper.vault()?;
        load_dataset(&vault, &caller_of(&vault, &root).await?, credentials, 100).await?;
    }
    Ok((app, root))
}

/// Replaces `to` with a copy of the files of `from`.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// User + system CPU time of this process so far, from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())?;
    Ok(())
}

/// Rotates every tenant's KEK and waits until every DEK is rewrapped; returns the seconds taken
/// and the DEKs moved.
async fn rotate_all(vault: &Vault, caller: &Caller) -> Result<(f64, i64)> {
    let cpu = cpu_seconds();
    let start = Instant::now();
    let job = vault.rotate(caller, RotateScope::All).await?;
    vault.wait_for_jobs().await?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!("  (rotation used {:.1} s of CPU in {secs:.1} s on 2 cores)", cpu_seconds() - cpu);
    let done = vault.job(caller, job.id.parse()?).await?;
    ensure!(
        done.state == rekey_types::JobState::Done && done.done == done.total,
        "rotation ended {} ({}/{})",
        done.state,
        done.done,
        done.total
    );
    Ok((secs, done.done))
}

/// The baseline: unwrap+wrap of `n` DEKs in memory, then a raw SQLite update of `n` rows shaped
/// like Rekey's (same table, same key, 5,000 rows per durable commit).
fn baseline(n: usize, tenants: usize, dir: &Path) -> Result<(f64, f64)> {
    let old: Vec<Kek> = (0..tenants).map(|_| Kek::generate()).collect::<Result<_, _>>()?;
    let new: Vec<Kek> = (0..tenants).map(|_| Kek::generate()).collect::<Result<_, _>>()?;
    let mut deks = Vec::with_capacity(n);
    for i in 0..n {
        let t = i % tenants;
        let slot = PayloadSlot {
            tenant: TenantId::generate(),
            credential: CredentialId::generate(),
            version: 1,
            kind: CredentialKind::Ldap,
        };
        let binding = TargetBinding::of("bench", &Default::default());
        let sealed = seal_payload(&old[t], 1, &slot, &binding, b"x")?;
        deks.push((t, slot, sealed.wrapped_dek));
    }
    let start = Instant::now();
    let mut rewrapped = Vec::with_capacity(n);
    for (t, slot, wrapped) in &deks {
        rewrapped.push(rewrap_dek((&old[*t], 1), (&new[*t], 2), slot, wrapped)?);
    }
    let crypto = start.elapsed().as_secs_f64();

    let path = dir.join("baseline.db");
    let _ = std::fs::remove_file(&path);
    let mut db = rusqlite::Connection::open(&path)?;
    db.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE credential_versions (credential_id TEXT NOT NULL, version INTEGER NOT NULL, stage TEXT NOT NULL,
           kek_version INTEGER NOT NULL, wrapped_dek BLOB NOT NULL, ciphertext BLOB NOT NULL, created_by TEXT NOT NULL,
           created_at INTEGER NOT NULL, verified_at INTEGER, PRIMARY KEY (credential_id, version)) WITHOUT ROWID;
         CREATE INDEX credential_versions_stage ON credential_versions (credential_id, stage);",
    )?;
    let ids: Vec<String> = deks.iter().map(|(_, s, _)| s.credential.to_string()).collect();
    {
        let tx = db.transaction()?;
        {
            let mut ins =
                tx.prepare("INSERT INTO credential_versions VALUES (?1, 1, 'current', 1, ?2, ?3, 'bench', 0, NULL)")?;
            for (id, (_, _, wrapped)) in ids.iter().zip(&deks) {
                ins.execute(rusqlite::params![id, wrapped, vec![0u8; 80]])?;
            }
        }
        tx.commit()?;
    }
    let start = Instant::now();
    for chunk in ids.iter().zip(&rewrapped).collect::<Vec<_>>().chunks(5000) {
        let tx = db.transaction()?;
        {
            let mut up = tx.prepare_cached(
                "UPDATE credential_versions SET kek_version = 2, wrapped_dek = ?1 WHERE credential_id = ?2 AND version = 1 AND kek_version = 1",
            )?;
            for (id, wrapped) in chunk {
                ensure!(up.execute(rusqlite::params![wrapped, id])? == 1, "baseline update missed a row");
            }
        }
        tx.commit()?;
    }
    let sql = start.elapsed().as_secs_f64();
    Ok((crypto, sql))
}

async fn send(addr: SocketAddr, request: String) -> Result<(u16, Vec<u8>)> {
    one(addr, request.as_bytes()).await
}

/// Starts `rekey serve` on a Shamir data folder and measures the last unseal share to the first
/// served reveal, against a reveal on the warm server.
async fn unseal_to_first_request(data: &Path) -> Result<(f64, f64, f64)> {
    let bin = std::env::current_exe()?.parent().context("exe dir")?.join("rekey");
    ensure!(bin.exists(), "build the server first: cargo build --release -p rekey-cli ({} missing)", bin.display());
    let cfg = data.join("bench-shamir.toml");
    std::fs::write(&cfg, "[seal]\nkind = \"shamir\"\n[log]\nlevel = \"warn\"\n")?;
    let started = Instant::now();
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data"]).arg(data).arg("--config").arg(&cfg);
    let (mut child, addr) = crate::start_server(cmd)?;
    let listening = started.elapsed().as_secs_f64();
    let shares = std::fs::read_to_string(data.join(SHARES_FILE))?;
    let shares: Vec<&str> = shares.lines().collect();
    let root = std::fs::read_to_string(data.join("root-token"))?.trim().to_owned();
    let unseal = |share: &str| {
        let body = format!(r#"{{"share":"{share}"}}"#);
        format!("POST /v1/sys/unseal HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
    };
    let reveal = format!(
        "POST /v1/tenants/t1/credentials/c1/reveal HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {root}\r\nContent-Length: 0\r\n\r\n"
    );
    let (status, _) = send(addr, unseal(shares[0])).await?;
    ensure!(status == 200, "first share: HTTP {status}");
    let t0 = Instant::now();
    let (status, body) = send(addr, unseal(shares[1])).await?;
    ensure!(status == 200, "second share: HTTP {status} {}", String::from_utf8_lossy(&body));
    let (status, body) = send(addr, reveal.clone()).await?;
    let first = t0.elapsed().as_secs_f64();
    ensure!(status == 200, "first reveal: HTTP {status} {}", String::from_utf8_lossy(&body));
    let mut warm = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let (status, _) = send(addr, reveal.clone()).await?;
        ensure!(status == 200, "warm reveal: HTTP {status}");
        warm.push(t.elapsed().as_secs_f64());
    }
    warm.sort_by(f64::total_cmp);
    let _ = child.kill();
    let _ = child.wait();
    Ok((listening, first, warm[warm.len() / 2]))
}

fn softhsm_token(dir: &Path) -> Result<PathBuf> {
    const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
    ensure!(Path::new(MODULE).exists(), "SoftHSM2 is not installed ({MODULE} missing): apt-get install softhsm2");
    let conf = dir.join("softhsm2.conf");
    if !conf.exists() {
        std::fs::create_dir_all(dir.join("tokens"))?;
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )?;
        let out = std::process::Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", "rekey-bench", "--so-pin", "87654321", "--pin", "1234"])
            .env("SOFTHSM2_CONF", &conf)
            .output()?;
        if !out.status.success() {
            bail!("softhsm2-util: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(conf)
}

pub(crate) async fn run(credentials: usize, data: Option<PathBuf>, hsm: bool) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = data.unwrap_or_else(|| tmp.path().to_owned());
    let shamir_dir = base.join("shamir");
    let pristine = base.join("shamir.pristine");
    let tenants = (credentials / 100).max(1);
    // Every run starts from the same freshly loaded data: the first run loads it and keeps a
    // copy; later runs start from that copy (a rotation adds key versions, which would make each
    // run measure a different database).
    if pristine.join("rekey.db").exists() {
        copy_dir(&pristine, &shamir_dir)?;
    } else {
        std::fs::create_dir_all(&shamir_dir)?;
        let dir = shamir_dir.clone();
        on_own_runtime(move || async move { open_shamir(&dir, credentials).await.map(drop) })?;
        copy_dir(&shamir_dir, &pristine)?;
    }

    // 1. Unseal to first served request, in a fresh `rekey serve` process.
    let (listening, first, warm) = unseal_to_first_request(&shamir_dir).await?;
    println!("Unseal to first served request, {credentials} credentials, Shamir 2-of-3, SQLite");
    println!("  process start to listening (sealed)        {:>8.1} ms", listening * 1e3);
    println!("  last share sent to first reveal answered   {:>8.1} ms   (target < 1000 ms)", first * 1e3);
    println!(
        "  a reveal on the warm server (median of 100) {:>7.1} ms   ratio first / warm: {:.1}",
        warm * 1e3,
        first / warm
    );

    // 2. Rewrap after a KEK compromise: every tenant's KEK rotated, every DEK rewrapped.
    let (app, root) = open_shamir(&shamir_dir, credentials).await?;
    let vault = app.keeper.vault()?;
    let caller = caller_of(&vault, &root).await?;
    let (secs, moved) = rotate_all(&vault, &caller).await?;
    let (crypto, sql) = tokio::task::spawn_blocking({
        let dir = base.clone();
        move || baseline(moved as usize, tenants, &dir)
    })
    .await??;
    println!("\nRewrap after a KEK compromise: {moved} DEKs over {tenants} tenants, SQLite WAL, durable, root key in memory (Shamir)");
    println!("  rekey key rotate --all (new KEK per tenant, every DEK rewrapped, audited)  {secs:>6.2} s   {:>9.0} DEKs/s   (target < 15 s)", moved as f64 / secs);
    println!("  baseline: unwrap+wrap in memory {crypto:.2} s + raw SQLite update {sql:.2} s = {:.2} s", crypto + sql);
    println!("  ratio rekey / baseline: {:.2}   (target <= 3)", secs / (crypto + sql));

    // 2b. The format migration of target binding: every version, stored as releases before it
    // did (format 1), decrypted, re-encrypted bound to its target, fingerprinted, batch by batch
    // with its audit event; against the rewrap just measured.
    let downgraded = vault.downgrade_to_legacy().await?;
    let cpu = cpu_seconds();
    let start = Instant::now();
    let bound = vault.bind_legacy_versions().await?;
    let bind_secs = start.elapsed().as_secs_f64();
    let bind_cpu = cpu_seconds() - cpu;
    ensure!(bound == downgraded, "bound {bound} of {downgraded} legacy versions");
    println!("\nFormat migration (target binding): {bound} versions, SQLite WAL, durable");
    println!(
        "  bind every version (decrypt, re-encrypt bound, fingerprint, audited)  {bind_secs:>6.2} s   {:>9.0} versions/s   ({bind_cpu:.1} s CPU)",
        bound as f64 / bind_secs
    );
    println!("  ratio migration / rewrap of as many DEKs: {:.2}   (target <= 2)", bind_secs / secs);

    // 3. Root rotation with the root key in memory (Shamir): every KEK rewrapped.
    let start = Instant::now();
    let split = vault.prepare_root_split(&caller, 3, 2).await?;
    let job = vault.commit_root_split(&caller, &split.set_id).await?;
    vault.wait_for_jobs().await?;
    let root_secs = start.elapsed().as_secs_f64();
    let job = vault.job(&caller, job.id.parse()?).await?;
    ensure!(job.state == rekey_types::JobState::Done, "root rotation ended {}", job.state);
    write_private(&shamir_dir.join(SHARES_FILE), &split.shares.join("\n"))?;
    println!("\nRoot rotation, {} tenant KEKs rewrapped", job.done);
    println!(
        "  Shamir (root key in memory)               {root_secs:>6.2} s   {:>9.0} keys/s",
        job.done as f64 / root_secs
    );
    drop(vault);
    drop(app);

    // 4. The same with the root key in SoftHSM2.
    if hsm {
        let hsm_dir = base.join("pkcs11");
        std::fs::create_dir_all(&hsm_dir)?;
        let conf = softhsm_token(&hsm_dir)?;
        std::env::set_var("SOFTHSM2_CONF", &conf);
        std::env::set_var("REKEY_BENCH_HSM_PIN", "1234");
        let mut cfg = config(&hsm_dir, "pkcs11");
        cfg.seal.module = Some("/usr/lib/softhsm/libsofthsm2.so".into());
        cfg.seal.token_label = Some("rekey-bench".into());
        cfg.seal.pin_env = Some("REKEY_BENCH_HSM_PIN".into());
        let fresh = !hsm_dir.join("rekey.db").exists();
        let mut app = App::build(cfg).await?;
        if let Some(root) = app.root_token.take() {
            write_private(&hsm_dir.join("root-token"), root.expose())?;
        }
        let root = std::fs::read_to_string(hsm_dir.join("root-token"))?.trim().to_owned();
        let vault = app.keeper.vault()?;
        let caller = caller_of(&vault, &root).await?;
        if fresh {
            load_dataset(&vault, &caller, credentials, 100).await?;
        }
        let (hsm_secs, hsm_moved) = rotate_all(&vault, &caller).await?;
        let start = Instant::now();
        let job = vault.rotate(&caller, RotateScope::Root).await?;
        vault.wait_for_jobs().await?;
        let hsm_root = start.elapsed().as_secs_f64();
        let job = vault.job(&caller, job.id.parse()?).await?;
        ensure!(job.state == rekey_types::JobState::Done, "HSM root rotation ended {}", job.state);
        println!("\nRoot key in SoftHSM2 (PKCS#11, AES-256-GCM inside the token)");
        println!(
            "  rekey key rotate --all, {hsm_moved} DEKs          {hsm_secs:>6.2} s   {:>9.0} DEKs/s   ratio to in-memory root: {:.2}",
            hsm_moved as f64 / hsm_secs,
            hsm_secs / secs
        );
        println!(
            "  rekey key rotate --root, {} KEKs in the HSM   {hsm_root:>6.2} s   {:>9.0} keys/s   ratio to in-memory root: {:.2}",
            job.done,
            job.done as f64 / hsm_root,
            hsm_root / root_secs
        );
        drop(vault);
        drop(app);
    }
    Ok(())
}
