//! Campaign throughput against the loopback OpenLDAP of `scripts/peers/connectors.sh`: a
//! campaign of N automatic LDAP rotations (the server's own workers: store the new password,
//! password modify, prove it on a fresh connection, promote, retire, each step audited), from
//! `campaign start` to `finished`, against a raw password-modify loop over N other accounts of
//! the same directory at the same concurrency, in the same run.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rekey_server::App;

use crate::connect::{add_accounts, call, http, import_accounts, peers, raw_password_modify_loop, tls_config};

pub(crate) async fn run(accounts: usize, concurrency: usize) -> Result<()> {
    let p = peers()?;
    let n = accounts;
    let dir = tempfile::tempdir()?;
    let mut config = crate::dev_config(&dir.path().join("data"));
    config.scheduler.interval = "off".into();
    config.rotation.grace = "0s".into();
    // Equal concurrency on both sides: Rekey works on `concurrency` items, all on one host.
    config.connectors.per_host = concurrency;
    config.campaign.concurrency = concurrency;
    config.campaign.interval = "1s".into();
    let mut app = App::build(config).await?;
    let root = app.root_token.take().context("fresh vault has a root token")?.expose().to_owned();
    let started = app.start(std::future::pending()).await?;
    let addr = started.addr;
    let tls = tls_config(&p.ca_pem)?;

    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() % 1_000_000_000;
    let (raw_prefix, rekey_prefix) = (format!("craw{stamp}"), format!("camp{stamp}"));
    let t = Instant::now();
    add_accounts(p.ldap, &raw_prefix, n).await?;
    add_accounts(p.ldap, &rekey_prefix, n).await?;
    println!(
        "Campaign of {n} LDAP rotations, {concurrency} at once ({} accounts added in {:.1} s; one 2-core machine: \
         slapd, the load and Rekey share it)",
        2 * n,
        t.elapsed().as_secs_f64()
    );

    // Raw: StartTLS, bind as the account, password modify, unbind; `concurrency` loops.
    let raw_secs = raw_password_modify_loop(&tls, p.ldap, &raw_prefix, n, concurrency).await?;

    // Rekey: import the accounts, open an incident over their tenant, run the campaign.
    import_accounts(&p, addr, &root, "campaign", &rekey_prefix, n).await?;
    let incident =
        call(addr, &http("POST", "/v1/incidents", &root, r#"{"title":"bench","scope":["tenant:campaign"]}"#)).await?;
    let incident = incident["incident"]["id"].as_str().context("incident id")?.to_owned();
    let t = Instant::now();
    let campaign =
        call(addr, &http("POST", "/v1/campaigns", &root, &format!(r#"{{"incident":"{incident}"}}"#))).await?;
    let id = campaign["id"].as_str().context("campaign id")?.to_owned();
    let status = loop {
        let status = call(addr, &http("GET", &format!("/v1/campaigns/{id}"), &root, "")).await?;
        if status["campaign"]["state"] != "running" {
            break status;
        }
        // Polled twice a second: a status read counts every item, which is work the campaign
        // does not need.
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let rekey_secs = t.elapsed().as_secs_f64();
    ensure!(status["counts"]["retired"].as_u64() == Some(n as u64), "not every item retired: {status}");

    let (raw_rate, rekey_rate) = (n as f64 / raw_secs, n as f64 / rekey_secs);
    println!("{:<50} {:>8.0} accounts/s ({raw_secs:.1} s)", "raw password modify (bind, exop, unbind)", raw_rate);
    println!(
        "{:<50} {:>8.0} accounts/s ({rekey_secs:.1} s)",
        "rekey campaign (staged, verified, retired, audited)", rekey_rate
    );
    println!("  ratio rekey / raw: {:.2} (target >= 0.50)", rekey_rate / raw_rate);
    println!("  for scale: at 50 rotations/s, {n} take {:.0} s", n as f64 / 50.0);
    Ok(())
}
