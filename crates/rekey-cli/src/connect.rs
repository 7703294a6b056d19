//! `rekey cred verify`, `cred rotate` (one, or many with a progress bar) and `cred rotations`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rekey_core::connectors::{HealthView, RotationView};
use rekey_core::views::CredentialView;
use reqwest::Method;

use crate::args::{OutputFormat, RotateArgs};
use crate::client::cred_path;
use crate::client::Client;
use crate::output::show;
use crate::output::{pairs, table};

/// Exit status when a check or a rotation did not succeed (the command itself worked).
const NOT_OK: u8 = 3;

pub(crate) async fn verify(c: &Client, cred: &str, format: OutputFormat) -> Result<ExitCode> {
    let h: HealthView = c.send(c.request(Method::POST, &format!("{}/verify", cred_path(cred)?))).await?;
    show(format, &h, |h| {
        pairs(&[
            ("credential", format!("{}/{}", h.tenant, h.name)),
            ("kind", h.kind.to_string()),
            ("version", h.version.to_string()),
            ("status", h.status.clone()),
            ("detail", h.detail.clone()),
            ("time", format!("{} ms", h.elapsed_ms)),
        ])
    });
    Ok(if h.status == "ok" { ExitCode::SUCCESS } else { ExitCode::from(NOT_OK) })
}

pub(crate) async fn rotations(c: &Client, cred: &str, format: OutputFormat) -> Result<ExitCode> {
    let rs: Vec<RotationView> = c.get(&format!("{}/rotations", cred_path(cred)?), &[]).await?;
    show(format, &rs, |rs| rotations_table(rs));
    Ok(ExitCode::SUCCESS)
}

fn rotations_table(rs: &[RotationView]) {
    table(
        &["ROTATION", "CREDENTIAL", "FROM", "TO", "STATE", "CHANGED", "ERROR"],
        rs.iter().map(|r| {
            vec![
                r.id.clone(),
                format!("{}/{}", r.tenant, r.name),
                r.from_version.to_string(),
                r.to_version.to_string(),
                r.state.to_string(),
                r.changed_at.to_string(),
                r.error.clone().unwrap_or_default(),
            ]
        }),
    )
}

pub(crate) async fn rotate(c: &Client, args: RotateArgs, format: OutputFormat) -> Result<ExitCode> {
    if let Some(cred) = &args.cred {
        let r: RotationView = c.send(c.request(Method::POST, &format!("{}/rotate", cred_path(cred)?))).await?;
        let ok = matches!(r.state.as_str(), "promoted" | "retired");
        show(format, &r, |r| rotations_table(std::slice::from_ref(r)));
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(NOT_OK) });
    }
    if let Some(kind) = &args.kind {
        if !matches!(kind.as_str(), "ldap" | "entra-app") {
            bail!("only ldap and entra-app credentials are rotated by Rekey; {kind} credentials are the customer's to change");
        }
    }
    if !(1..=256).contains(&args.concurrency) {
        bail!("--concurrency must be between 1 and 256");
    }
    let targets = select(c, &args).await?;
    if targets.is_empty() {
        bail!("no ldap or entra-app credential matches");
    }
    let bar = ProgressBar::with_draw_target(Some(targets.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rotated  {per_sec}  eta {eta}  {msg}")
            .expect("a valid template"),
    );
    let results: Vec<(String, Result<RotationView, String>)> = futures_util::stream::iter(targets)
        .map(|cred| {
            let bar = bar.clone();
            async move {
                let result = async {
                    let path = format!("{}/rotate", cred_path(&cred).map_err(|e| e.to_string())?);
                    c.send::<RotationView>(c.request(Method::POST, &path)).await.map_err(|e| format!("{e:#}"))
                }
                .await;
                bar.inc(1);
                (cred, result)
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    bar.finish_and_clear();
    let mut done = 0;
    let mut failures = Vec::new();
    let mut views = Vec::new();
    for (cred, result) in results {
        match result {
            Ok(r) if matches!(r.state.as_str(), "promoted" | "retired") => {
                done += 1;
                views.push(r);
            }
            Ok(r) => {
                failures.push((cred, format!("{}: {}", r.state, r.error.clone().unwrap_or_default())));
                views.push(r);
            }
            Err(e) => failures.push((cred, e)),
        }
    }
    match format {
        OutputFormat::Json => crate::output::json(&serde_json::json!({
            "rotated": done,
            "failed": failures.iter().map(|(c, e)| serde_json::json!({"credential": c, "error": e})).collect::<Vec<_>>(),
            "rotations": views,
        })),
        OutputFormat::Table => {
            println!("rotated {done}, not rotated {}", failures.len());
            if !failures.is_empty() {
                table(&["CREDENTIAL", "WHY"], failures.iter().map(|(c, e)| vec![c.clone(), e.clone()]));
            }
        }
    }
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(NOT_OK) })
}

/// The credentials a bulk rotation covers: ldap and entra-app ones matching the filters.
async fn select(c: &Client, args: &RotateArgs) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let kinds: Vec<&str> = match &args.kind {
        Some(k) => vec![k.as_str()],
        None => vec!["ldap", "entra-app"],
    };
    for kind in kinds {
        let mut after: Option<String> = None;
        loop {
            let mut q = vec![("limit", "1000".to_owned()), ("kind", kind.to_owned())];
            q.extend(args.tenant.clone().map(|t| ("tenant", t)));
            q.extend(after.clone().map(|a| ("after", a)));
            let page: Vec<CredentialView> = c.get("/v1/credentials", &q).await?;
            let full = page.len() == 1000;
            after = page.last().map(|v| format!("{}/{}", v.tenant, v.name));
            out.extend(page.into_iter().map(|v| format!("{}/{}", v.tenant, v.name)));
            if !full {
                break;
            }
        }
    }
    Ok(out)
}
