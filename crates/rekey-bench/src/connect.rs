//! Connector benchmarks against the loopback peers of `scripts/peers/connectors.sh`:
//!
//! 1. Verify throughput per kind: `POST .../verify` on a Rekey server (decrypt, connect, audit)
//!    against a raw client loop of the same protocol with the same libraries at the same
//!    concurrency, in alternating rounds; medians and the ratio are printed.
//! 2. Rotation of N LDAP accounts: `POST .../rotate` (store pending, password modify, verify,
//!    promote, retire, each step audited) against a raw password-modify loop over N other
//!    accounts of the same directory.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::StreamExt;
use rekey_server::App;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::load::{load, one};

pub(crate) use rekey_test_peers::Peers;

/// The peers of `scripts/peers/connectors.sh`, which must be running.
pub(crate) fn peers() -> Result<Peers> {
    Peers::from_env().context("start the peers first: eval \"$(scripts/peers/connectors.sh start /tmp/rekey-peers)\"")
}

const SVC_DN: &str = "uid=svc-app,ou=services,dc=rekey,dc=test";
use rekey_test_peers::{LDAP_ADMIN_DN as ADMIN_DN, LDAP_ADMIN_PASSWORD};

pub(crate) fn tls_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("rates are numbers"));
    v[v.len() / 2]
}

/// Runs `op` in `concurrency` closed loops for `duration`; returns operations per second.
async fn raw_loop<F, Fut>(concurrency: usize, duration: Duration, op: F) -> (f64, u64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let (mut done, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                match op().await {
                    Ok(()) => done += 1,
                    Err(_) => errors += 1,
                }
            }
            (done, errors)
        }));
    }
    let (mut done, mut errors) = (0, 0);
    for t in tasks {
        let (d, e) = t.await.expect("raw loop task");
        done += d;
        errors += e;
    }
    (done as f64 / start.elapsed().as_secs_f64(), errors)
}

pub(crate) fn http(method: &str, path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub(crate) async fn call(addr: SocketAddr, request: &[u8]) -> Result<serde_json::Value> {
    let (status, body) = one(addr, request).await?;
    ensure!(status == 200, "HTTP {status}: {}", String::from_utf8_lossy(&body));
    Ok(serde_json::from_slice(&body)?)
}

pub(crate) async fn run(seconds: u64, concurrency: usize, rounds: usize, accounts: usize) -> Result<()> {
    let p = peers()?;
    let dir = tempfile::tempdir()?;
    let mut config = crate::dev_config(&dir.path().join("data"));
    config.scheduler.interval = "off".into();
    config.rotation.grace = "0s".into();
    // The comparison is at equal concurrency: the per-host limit must not be what limits Rekey.
    config.connectors.per_host = concurrency;
    let mut app = App::build(config).await?;
    let root = app.root_token.take().context("fresh vault has a root token")?.expose().to_owned();
    let started = app.start(std::future::pending()).await?;
    let addr = started.addr;
    call(addr, &http("POST", "/v1/tenants", &root, r#"{"name":"bench","region":"uk"}"#)).await?;
    let duration = Duration::from_secs(seconds);
    let tls = tls_config(&p.ca_pem)?;

    println!(
        "Verify throughput, {concurrency} at once, {rounds} alternating rounds of {seconds} s, medians (one 2-core machine: \
         the peers, the load and Rekey share it)"
    );
    println!("{:<10} {:>12} {:>12} {:>8}", "kind", "raw ops/s", "rekey ops/s", "ratio");

    let kinds: [(&str, serde_json::Value, &str); 4] = [
        (
            "ldap",
            serde_json::json!({"url": format!("ldap://localhost:{}", p.ldap), "bind_dn": SVC_DN, "ca_pem": p.ca_pem}),
            "svc-initial-pw",
        ),
        (
            "pop3",
            serde_json::json!({"host": "localhost", "port": p.pop3s.to_string(), "tls": "implicit",
                "user": "svc-mail@rekey.test", "ca_pem": p.ca_pem}),
            "mail-initial-pw",
        ),
        (
            "smtp",
            serde_json::json!({"host": "localhost", "port": p.submission.to_string(), "tls": "starttls",
                "user": "svc-mail@rekey.test", "ca_pem": p.ca_pem}),
            "mail-initial-pw",
        ),
        (
            "entra-app",
            serde_json::json!({"token_url": format!("{}/token", p.oidc), "client_id": "svc-secret", "scope": "api.read"}),
            "client-secret-1",
        ),
    ];
    for (kind, fields, secret) in kinds {
        let mut requests = Vec::new();
        for c in 0..concurrency {
            let body = serde_json::json!({"kind": kind, "fields": fields, "secret": secret}).to_string();
            call(addr, &http("PUT", &format!("/v1/tenants/bench/credentials/{kind}-{c}"), &root, &body)).await?;
            let verify = http("POST", &format!("/v1/tenants/bench/credentials/{kind}-{c}/verify"), &root, "");
            let v = call(addr, &verify).await?;
            ensure!(v["status"] == "ok", "{kind} does not verify: {v}");
            requests.push(verify);
        }
        let (mut raw, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (rate, errors) = match kind {
                "ldap" => {
                    let (tls, port) = (tls.clone(), p.ldap);
                    raw_loop(concurrency, duration, move || raw_ldap_verify(tls.clone(), port)).await
                }
                "pop3" => {
                    let (tls, port) = (tls.clone(), p.pop3s);
                    raw_loop(concurrency, duration, move || raw_pop3_verify(tls.clone(), port)).await
                }
                "smtp" => {
                    let (ca, port) = (p.ca_pem.clone(), p.submission);
                    raw_loop(concurrency, duration, move || raw_smtp_verify(ca.clone(), port)).await
                }
                _ => {
                    let client = reqwest::Client::new();
                    let url = format!("{}/token", p.oidc);
                    raw_loop(concurrency, duration, move || raw_token(client.clone(), url.clone())).await
                }
            };
            ensure!(errors == 0, "the raw {kind} loop had {errors} errors");
            raw.push(rate);
            let r = load(addr, requests.clone(), concurrency, duration).await;
            ensure!(r.errors == 0, "rekey {kind} verify had {} errors", r.errors);
            ours.push(r.rate());
        }
        let (raw, ours) = (median(raw), median(ours));
        println!("{kind:<10} {raw:>12.0} {ours:>12.0} {:>8.2}   (target >= 0.50)", ours / raw);
    }

    rotation(&p, addr, &root, &tls, concurrency, accounts).await
}

/// A StartTLS connection with `ldap3`, its TCP connection opened as Rekey opens it (Nagle off),
/// so that raw and Rekey differ only above it.
async fn raw_ldap_open(tls: Arc<rustls::ClientConfig>, port: u16) -> Result<ldap3::Ldap> {
    let stream = tokio::net::TcpStream::connect(("localhost", port)).await?;
    stream.set_nodelay(true)?;
    let settings = ldap3::LdapConnSettings::new()
        .set_config(tls)
        .set_starttls(true)
        .set_std_stream(ldap3::StdStream::Tcp(stream.into_std()?));
    let (conn, ldap) = ldap3::LdapConnAsync::with_settings(settings, &format!("ldap://localhost:{port}")).await?;
    tokio::spawn(async move { conn.drive().await });
    Ok(ldap)
}

async fn raw_ldap_verify(tls: Arc<rustls::ClientConfig>, port: u16) -> Result<()> {
    let mut ldap = raw_ldap_open(tls, port).await?;
    ldap.simple_bind(SVC_DN, "svc-initial-pw").await?.success()?;
    ldap.extended(ldap3::exop::WhoAmI).await?.success()?;
    ldap.unbind().await?;
    Ok(())
}

async fn raw_pop3_verify(tls: Arc<rustls::ClientConfig>, port: u16) -> Result<()> {
    let tcp = tokio::net::TcpStream::connect(("localhost", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
    let mut s = BufReader::new(stream);
    let mut line = String::new();
    for command in ["", "USER svc-mail@rekey.test\r\n", "PASS mail-initial-pw\r\n", "QUIT\r\n"] {
        if !command.is_empty() {
            s.get_mut().write_all(command.as_bytes()).await?;
        }
        line.clear();
        s.read_line(&mut line).await?;
        if !line.starts_with("+OK") {
            bail!("pop3: {line}");
        }
    }
    Ok(())
}

async fn raw_smtp_verify(ca_pem: String, port: u16) -> Result<()> {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters};
    use lettre::transport::smtp::extension::ClientId;
    let hello = ClientId::Domain("bench.localhost".into());
    let params = TlsParameters::builder("localhost".into())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(Certificate::from_pem(ca_pem.as_bytes())?)
        .build_rustls()?;
    let mut conn = AsyncSmtpConnection::connect_tokio1(("localhost", port), None, &hello, None, None).await?;
    conn.starttls(params, &hello).await?;
    let creds = Credentials::new("svc-mail@rekey.test".into(), "mail-initial-pw".into());
    conn.auth(&[Mechanism::Plain], &creds).await?;
    conn.quit().await?;
    Ok(())
}

async fn raw_token(client: reqwest::Client, url: String) -> Result<()> {
    let response = client
        .post(url)
        .basic_auth("svc-secret", Some("client-secret-1"))
        .form(&[("grant_type", "client_credentials"), ("scope", "api.read")])
        .send()
        .await?;
    ensure!(response.status().is_success(), "token: {}", response.status());
    let body: serde_json::Value = response.json().await?;
    ensure!(body["access_token"].is_string(), "no token");
    Ok(())
}

/// Adds `n` accounts `uid=<prefix>-<i>` with password `old-<i>`, as the directory admin.
pub(crate) async fn add_accounts(port: u16, prefix: &str, n: usize) -> Result<()> {
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(&format!("ldap://127.0.0.1:{port}")).await?;
    tokio::spawn(async move { conn.drive().await });
    ldap.simple_bind(ADMIN_DN, LDAP_ADMIN_PASSWORD).await?.success()?;
    let results: Vec<Result<()>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let mut ldap = ldap.clone();
            let prefix = prefix.to_owned();
            async move {
                let uid = format!("{prefix}-{i}");
                let dn = format!("uid={uid},ou=services,dc=rekey,dc=test");
                let password = format!("old-{i}");
                ldap.add(
                    &dn,
                    vec![
                        ("objectClass", ["inetOrgPerson"].into()),
                        ("uid", [uid.as_str()].into()),
                        ("cn", [uid.as_str()].into()),
                        ("sn", ["bench"].into()),
                        ("userPassword", [password.as_str()].into()),
                    ],
                )
                .await?
                .success()?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn rotation(
    p: &Peers,
    addr: SocketAddr,
    root: &str,
    tls: &Arc<rustls::ClientConfig>,
    concurrency: usize,
    n: usize,
) -> Result<()> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() % 1_000_000_000;
    let (raw_prefix, rekey_prefix) = (format!("raw{stamp}"), format!("rot{stamp}"));
    let t = Instant::now();
    add_accounts(p.ldap, &raw_prefix, n).await?;
    add_accounts(p.ldap, &rekey_prefix, n).await?;
    println!();
    println!(
        "Rotation of {n} LDAP accounts, {concurrency} at once ({} accounts added in {:.1} s)",
        2 * n,
        t.elapsed().as_secs_f64()
    );

    // Raw: StartTLS, bind as the account, password modify, unbind.
    let raw_rate = n as f64 / raw_password_modify_loop(tls, p.ldap, &raw_prefix, n, concurrency).await?;

    // Rekey: import the accounts as credentials, then rotate each through the API.
    import_accounts(p, addr, root, "rot", &rekey_prefix, n).await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let root = root.to_owned();
    let (failures, seconds) = spread(n, concurrency, move |i| {
        let (client, root) = (client.clone(), root.clone());
        async move {
            let answer = client
                .post(format!("http://{addr}/v1/tenants/rot/credentials/svc-{i}/rotate"))
                .bearer_auth(&root)
                .send()
                .await;
            match answer {
                Ok(r) if r.status().is_success() => {
                    r.json::<serde_json::Value>().await.is_ok_and(|v| v["state"] == "retired")
                }
                _ => false,
            }
        }
    })
    .await?;
    let rekey_rate = n as f64 / seconds;
    ensure!(failures == 0, "{failures} Rekey rotations did not finish");
    println!("{:<44} {:>10.0} accounts/s", "raw password modify (bind, exop, unbind)", raw_rate);
    println!("{:<44} {:>10.0} accounts/s", "rekey rotate (staged, verified, audited)", rekey_rate);
    println!("  ratio rekey / raw: {:.2}", rekey_rate / raw_rate);
    Ok(())
}

/// Runs `step(i)` for every `i` in `0..n` on `concurrency` tasks, each taking the next index
/// when it is done with one; returns how many steps failed and the seconds it all took.
async fn spread<F, Fut>(n: usize, concurrency: usize, step: F) -> Result<(usize, f64)>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, step) = (next.clone(), step.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return failures;
                }
                if !step(i).await {
                    failures += 1;
                }
            }
        }));
    }
    let mut failures = 0;
    for task in tasks {
        failures += task.await?;
    }
    Ok((failures, t.elapsed().as_secs_f64()))
}

/// Password modify over accounts `<prefix>-0..n` with `concurrency` loops, as a bare `ldap3`
/// client would; returns the seconds it took.
pub(crate) async fn raw_password_modify_loop(
    tls: &Arc<rustls::ClientConfig>,
    port: u16,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Result<f64> {
    let prefix = prefix.to_owned();
    let tls = tls.clone();
    let (errors, seconds) = spread(n, concurrency, move |i| {
        let (tls, prefix) = (tls.clone(), prefix.clone());
        async move { raw_password_modify(tls, port, &prefix, i).await.is_ok() }
    })
    .await?;
    ensure!(errors == 0, "the raw password-modify loop had {errors} errors");
    Ok(seconds)
}

/// Imports accounts `<prefix>-0..n` (password `old-<i>`) as `ldap` credentials `svc-<i>` of
/// `tenant`, through the API, a thousand lines per request.
pub(crate) async fn import_accounts(
    p: &Peers,
    addr: SocketAddr,
    root: &str,
    tenant: &str,
    prefix: &str,
    n: usize,
) -> Result<()> {
    let url = format!("ldap://localhost:{}", p.ldap);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let lines: Vec<String> = chunk
            .iter()
            .map(|i| {
                serde_json::json!({"tenant": tenant, "region": "uk", "name": format!("svc-{i}"), "kind": "ldap",
                    "fields": {"url": url, "bind_dn": format!("uid={prefix}-{i},ou=services,dc=rekey,dc=test"), "ca_pem": p.ca_pem},
                    "secret": format!("old-{i}")})
                .to_string()
            })
            .collect();
        let body = lines.join("\n");
        let request = format!(
            "POST /v1/import?create_tenants=true HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {root}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let report = call(addr, request.as_bytes()).await?;
        ensure!(report["written"].as_u64() == Some(chunk.len() as u64), "import: {report}");
    }
    Ok(())
}

async fn raw_password_modify(tls: Arc<rustls::ClientConfig>, port: u16, prefix: &str, i: usize) -> Result<()> {
    let mut ldap = raw_ldap_open(tls, port).await?;
    let dn = format!("uid={prefix}-{i},ou=services,dc=rekey,dc=test");
    let old = format!("old-{i}");
    ldap.simple_bind(&dn, &old).await?.success()?;
    let new = format!("new-password-{i}-{}", i * 7919);
    ldap.extended(ldap3::exop::PasswordModify { user_id: Some(&dn), old_pass: Some(&old), new_pass: Some(&new) })
        .await?
        .success()?;
    ldap.unbind().await?;
    Ok(())
}
