//! `rekey init | unseal | seal`, `rekey key …`, `rekey tenant shred` and `rekey cert …`.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use rekey_core::views::{CertificateView, DestroyedView, JobView, KeyListView, ShreddedView, WrappedByView};

use crate::args::{CertCmd, KeyCmd, OutputFormat};
use crate::client::Client;
use crate::output::{self, opt, pairs, table};

fn show<T: serde::Serialize>(format: OutputFormat, value: &T, as_table: impl FnOnce(&T)) {
    match format {
        OutputFormat::Json => output::json(value),
        OutputFormat::Table => as_table(value),
    }
}

/// Asks for confirmation on a terminal; refuses without `--yes` elsewhere.
pub(crate) fn confirm(what: &str, word: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{what}: refusing without --yes when not on a terminal");
    }
    eprint!("{what}.\nType {word:?} to go on: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if line.trim() != word {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
}

#[derive(Deserialize, serde::Serialize)]
struct InitAnswer {
    shares: Vec<String>,
    threshold: u8,
}

#[derive(Deserialize, serde::Serialize)]
struct UnsealAnswer {
    sealed: bool,
    progress: u8,
    threshold: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root_token: Option<String>,
}

pub(crate) async fn init(c: &Client, shares: u8, threshold: u8, format: OutputFormat) -> Result<ExitCode> {
    let bytes = c
        .send_raw(c.request(Method::POST, "/v1/sys/init").json(&json!({ "shares": shares, "threshold": threshold })))
        .await?;
    let answer: InitAnswer = serde_json::from_slice(&bytes).context("unexpected answer")?;
    match format {
        OutputFormat::Json => output::json(&answer),
        OutputFormat::Table => {
            eprintln!(
                "Initialized. Below are {} unseal shares; any {} of them unseal the vault.\n\
                 Each is shown this once and Rekey keeps none: hand each to a different custodian now.\n",
                answer.shares.len(),
                answer.threshold
            );
            for (i, s) in answer.shares.iter().enumerate() {
                println!("share {}: {s}", i + 1);
            }
            eprintln!("\nThe vault is sealed: run `rekey unseal` {} times, one share each.", answer.threshold);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn unseal(c: &Client, reset: bool, format: OutputFormat) -> Result<ExitCode> {
    // A reset carries a share too: only a share holder may forget the shares given so far.
    let mut text = Zeroizing::new(String::new());
    if std::io::stdin().is_terminal() {
        // Typed or pasted at a terminal: not echoed, like a password.
        *text = rpassword::prompt_password("Unseal share (not shown): ").context("reading the share")?;
    } else {
        std::io::stdin().read_to_string(&mut text).context("reading the share from stdin")?;
    }
    let share = text.trim();
    if share.is_empty() {
        bail!("no share on stdin");
    }
    let body = if reset { json!({ "reset": true, "share": share }) } else { json!({ "share": share }) };
    let bytes = c.send_raw(c.request(Method::POST, "/v1/sys/unseal").json(&body)).await?;
    let answer: UnsealAnswer = serde_json::from_slice(&bytes).context("unexpected answer")?;
    match format {
        OutputFormat::Json => output::json(&answer),
        OutputFormat::Table => {
            if answer.sealed {
                println!("sealed: {} of {} shares given", answer.progress, answer.threshold);
            } else {
                println!("unsealed");
            }
            if let Some(t) = &answer.root_token {
                eprintln!("This was the first unseal: the root operator token below is shown once.");
                println!("{t}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls a job until it ends, with a progress bar on a terminal. Ctrl-C stops watching only:
/// the job goes on in the server.
async fn watch(c: &Client, job: JobView, format: OutputFormat) -> Result<ExitCode> {
    let bar = (format == OutputFormat::Table && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(job.total.max(0) as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
                .expect("constant template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("{} {}", job.reason, job.scope));
        bar
    });
    let path = format!("/v1/keys/jobs/{}", job.id);
    let mut current = job;
    loop {
        if let Some(b) = &bar {
            b.set_length(current.total.max(current.done).max(0) as u64);
            b.set_position(current.done.max(0) as u64);
        }
        if current.state != rekey_types::JobState::Running {
            break;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                if let Some(b) = &bar { b.abandon(); }
                eprintln!("stopped watching; job {} goes on in the server (rekey key job {} --wait)", current.id, current.id);
                return Ok(ExitCode::from(130));
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        current = c.get(&path, &[]).await?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let failed = current.state == rekey_types::JobState::Failed;
    show(format, &current, job_pairs);
    Ok(if failed { ExitCode::from(4) } else { ExitCode::SUCCESS })
}

fn job_pairs(j: &JobView) {
    pairs(&[
        ("job", j.id.clone()),
        ("scope", format!("{}{}", j.scope, j.tenant.as_ref().map(|t| format!(" {t}")).unwrap_or_default())),
        ("reason", j.reason.clone()),
        ("state", j.state.to_string()),
        ("progress", format!("{}/{}", j.done, j.total)),
        ("started", j.created_at.to_string()),
        ("finished", opt(&j.finished_at)),
        ("error", opt(&j.error)),
    ]);
}

async fn job_or_wait(c: &Client, job: JobView, no_wait: bool, format: OutputFormat) -> Result<ExitCode> {
    if no_wait {
        show(format, &job, job_pairs);
        return Ok(ExitCode::SUCCESS);
    }
    watch(c, job, format).await
}

pub(crate) async fn key(c: &Client, cmd: KeyCmd, format: OutputFormat) -> Result<ExitCode> {
    match cmd {
        KeyCmd::List { tenant } => {
            let q: Vec<(&str, String)> = tenant.map(|t| ("tenant", t)).into_iter().collect();
            let v: KeyListView = c.get("/v1/keys", &q).await?;
            show(format, &v, |v| {
                let mut rows: Vec<Vec<String>> = v
                    .root
                    .iter()
                    .map(|r| {
                        vec![
                            r.key.clone(),
                            r.state.to_string(),
                            "-".into(),
                            format!("{} KEKs", r.keks),
                            r.created_at.to_string(),
                        ]
                    })
                    .collect();
                for t in &v.tenants {
                    for k in &t.versions {
                        let wraps = if k.state == rekey_types::KeyState::Destroyed && k.deks > 0 {
                            format!("{} DEKs (unrecoverable)", k.deks)
                        } else {
                            format!("{} DEKs", k.deks)
                        };
                        rows.push(vec![
                            k.key.clone(),
                            k.state.to_string(),
                            format!("root@{}", k.root_version),
                            wraps,
                            k.created_at.to_string(),
                        ]);
                    }
                }
                table(&["KEY", "STATE", "WRAPPED BY", "WRAPS", "CREATED"], rows);
            });
        }
        KeyCmd::Rotate { tenant, all, root, shares, threshold, no_wait, yes } => {
            let chosen = usize::from(tenant.is_some()) + usize::from(all) + usize::from(root);
            if chosen != 1 {
                bail!("give exactly one of --tenant T, --all, --root");
            }
            if root {
                confirm("Rotating the root key rewraps every tenant key", "rotate root", yes)?;
                let mut body = json!({ "root": true });
                // A Shamir split keeps its shape unless told otherwise.
                let (mut shares, mut threshold) = (shares, threshold);
                if shares.is_none() || threshold.is_none() {
                    let status: rekey_core::views::StatusView = c.get("/v1/sys/status", &[]).await?;
                    if status.seal.kind == "shamir" {
                        shares = shares.or(status.seal.shares);
                        threshold = threshold.or(status.seal.threshold);
                    }
                }
                if let (Some(n), Some(k)) = (shares, threshold) {
                    body["shares"] = json!(n);
                    body["threshold"] = json!(k);
                }
                let bytes = c.send_raw(c.request(Method::POST, "/v1/keys/rotate").json(&body)).await?;
                let v: Value = serde_json::from_slice(&bytes).context("unexpected answer")?;
                if let Some(new_shares) = v.get("shares").and_then(Value::as_array) {
                    // Shamir: print the new shares before committing; until the commit, the old
                    // shares stay valid and nothing is lost if this process dies.
                    let set_id = v["set_id"].as_str().unwrap_or_default().to_owned();
                    let mut out = std::io::stdout().lock();
                    if format == OutputFormat::Json {
                        // One JSON line with the shares first, then the job.
                        writeln!(out, "{}", json!({ "shares": new_shares, "threshold": v["threshold"] }))?;
                    } else {
                        eprintln!(
                            "New unseal shares ({} of {} needed). Each is shown this once; after this command the old shares no longer work.",
                            v["threshold"],
                            new_shares.len()
                        );
                        for (i, s) in new_shares.iter().enumerate() {
                            writeln!(out, "share {}: {}", i + 1, s.as_str().unwrap_or_default())?;
                        }
                    }
                    out.flush()?;
                    drop(out);
                    let job: JobView =
                        c.json(Method::POST, "/v1/keys/rotate/commit", &json!({ "set_id": set_id })).await?;
                    return job_or_wait(c, job, no_wait, format).await;
                }
                let job: JobView = serde_json::from_value(v).context("unexpected answer")?;
                return job_or_wait(c, job, no_wait, format).await;
            }
            let body = match tenant {
                Some(t) => json!({ "tenant": t }),
                None => json!({ "all": true }),
            };
            let job: JobView = c.json(Method::POST, "/v1/keys/rotate", &body).await?;
            return job_or_wait(c, job, no_wait, format).await;
        }
        KeyCmd::Show { key } => {
            let v: WrappedByView = c.get(&format!("/v1/keys/{key}"), &[]).await?;
            show(format, &v, |v| {
                let what = if v.key.starts_with("root@") { "tenant key versions" } else { "credential versions" };
                println!("{} wraps {} {what}", v.key, v.total);
                for item in &v.items {
                    println!("  {item}");
                }
                if v.total as usize > v.items.len() {
                    println!("  … and {} more", v.total as usize - v.items.len());
                }
            });
        }
        KeyCmd::Compromise { key, no_wait } => {
            let job: JobView = c.send(c.request(Method::POST, &format!("/v1/keys/{key}/compromise"))).await?;
            if format == OutputFormat::Table {
                eprintln!("{key} is marked compromised; rotating off it (job {}).", job.id);
            }
            return job_or_wait(c, job, no_wait, format).await;
        }
        KeyCmd::Destroy { key, force, yes } => {
            if force {
                let v: WrappedByView = c.get(&format!("/v1/keys/{key}"), &[]).await?;
                if v.total > 0 {
                    eprintln!("Destroying {key} makes these {} unrecoverable:", v.total);
                    for item in &v.items {
                        eprintln!("  {item}");
                    }
                    if v.total as usize > v.items.len() {
                        eprintln!("  … and {} more", v.total as usize - v.items.len());
                    }
                }
            }
            confirm(&format!("Destroying {key} cannot be undone"), &key, yes)?;
            let mut request = c.request(Method::DELETE, &format!("/v1/keys/{key}"));
            if force {
                request = request.query(&[("force", "true")]);
            }
            let v: DestroyedView = c.send(request).await?;
            show(format, &v, |v| println!("destroyed {}; unrecoverable: {}", v.key, v.unrecoverable));
        }
        KeyCmd::Jobs => {
            let js: Vec<JobView> = c.get("/v1/keys/jobs", &[]).await?;
            show(format, &js, |js| {
                table(
                    &["JOB", "SCOPE", "TENANT", "REASON", "STATE", "PROGRESS", "STARTED"],
                    js.iter().map(|j| {
                        vec![
                            j.id.clone(),
                            j.scope.clone(),
                            opt(&j.tenant),
                            j.reason.clone(),
                            j.state.to_string(),
                            format!("{}/{}", j.done, j.total),
                            j.created_at.to_string(),
                        ]
                    }),
                )
            });
        }
        KeyCmd::Job { id, wait } => {
            let job: JobView = c.get(&format!("/v1/keys/jobs/{id}"), &[]).await?;
            return job_or_wait(c, job, !wait, format).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn shred(c: &Client, tenant: &str, yes: bool, format: OutputFormat) -> Result<ExitCode> {
    confirm(&format!("Shredding {tenant} destroys all its keys: its credentials become unrecoverable"), tenant, yes)?;
    let v: ShreddedView = c.send(c.request(Method::POST, &format!("/v1/tenants/{tenant}/shred"))).await?;
    show(format, &v, |v| {
        println!(
            "shredded {}: {} key versions destroyed, {} credential versions unrecoverable",
            v.tenant, v.keys_destroyed, v.versions_unrecoverable
        )
    });
    Ok(ExitCode::SUCCESS)
}

fn cert_pairs(c: &CertificateView) {
    pairs(&[
        ("credential", format!("{}/{} v{}", c.tenant, c.credential, c.credential_version)),
        ("subject", c.subject.clone()),
        ("sha1 (x5t)", c.sha1.clone()),
        ("sha256", c.sha256.clone()),
        ("x5t (base64url)", c.x5t.clone()),
        ("not before", c.not_before.to_string()),
        ("not after", c.not_after.to_string()),
        ("state", c.state.to_string()),
    ]);
}

pub(crate) async fn cert(c: &Client, cmd: CertCmd, format: OutputFormat) -> Result<ExitCode> {
    match cmd {
        CertCmd::Issue { cred, lifetime } => {
            let r = rekey_types::CredRef::parse(&cred).with_context(|| format!("{cred:?} is not tenant/name"))?;
            let path = format!("/v1/tenants/{}/credentials/{}/certificate", r.tenant, r.name);
            let v: CertificateView = c.json(Method::POST, &path, &json!({ "lifetime": lifetime })).await?;
            show(format, &v, |v| {
                cert_pairs(v);
                println!("\nThe private key is stored as the pending version; register this certificate with the provider:\n{}", v.pem);
            });
        }
        CertCmd::List { expiring } => {
            let q: Vec<(&str, String)> = expiring.map(|e| ("expiring", e)).into_iter().collect();
            let vs: Vec<CertificateView> = c.get("/v1/certificates", &q).await?;
            show(format, &vs, |vs| {
                table(
                    &["CREDENTIAL", "SHA1", "SHA256", "NOT BEFORE", "NOT AFTER", "STATE"],
                    vs.iter().map(|v| {
                        vec![
                            format!("{}/{} v{}", v.tenant, v.credential, v.credential_version),
                            v.sha1.clone(),
                            v.sha256.clone(),
                            v.not_before.to_string(),
                            v.not_after.to_string(),
                            v.state.to_string(),
                        ]
                    }),
                )
            });
        }
        CertCmd::Revoke { thumbprint } => {
            let v: CertificateView =
                c.send(c.request(Method::POST, &format!("/v1/certificates/{thumbprint}/revoke"))).await?;
            show(format, &v, cert_pairs);
        }
    }
    Ok(ExitCode::SUCCESS)
}
