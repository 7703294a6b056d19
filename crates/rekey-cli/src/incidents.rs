//! `rekey incident open|list|show|contain|close`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use rekey_core::incidents::{ContainReport, IncidentItemView, IncidentReport, IncidentView};
use reqwest::Method;
use serde_json::json;

use crate::args::{IncidentCmd, OutputFormat};
use crate::client::Client;
use crate::output::show;
use crate::output::{csv_field, pairs, table};

/// Rows fetched per request when exporting an incident's credentials.
const PAGE: usize = 5_000;

pub(crate) async fn run(c: &Client, cmd: IncidentCmd, format: OutputFormat, csv: bool) -> Result<ExitCode> {
    match cmd {
        IncidentCmd::Open { title, scope, since } => {
            let since = since.map(|s| parse_since(&s)).transpose()?;
            let body = json!({ "title": title, "scope": scope, "since": since });
            let r: IncidentReport = c.json(Method::POST, "/v1/incidents", &body).await?;
            show(format, &r, report_table);
        }
        IncidentCmd::List => {
            let list: Vec<IncidentView> = c.get("/v1/incidents", &[]).await?;
            show(format, &list, |list| {
                table(
                    &["ID", "STATE", "AFFECTED", "FROZEN", "OPENED", "TITLE"],
                    list.iter().map(|i| {
                        vec![
                            i.id.clone(),
                            i.state.to_string(),
                            i.affected.to_string(),
                            if i.frozen { "yes" } else { "no" }.into(),
                            i.created_at.to_string(),
                            i.title.clone(),
                        ]
                    }),
                )
            });
        }
        IncidentCmd::Show { id } => {
            let path = format!("/v1/incidents/{}", path_id(&id)?);
            let report: IncidentReport = c.get(&path, &[]).await?;
            if csv {
                let mut out = std::io::stdout().lock();
                writeln!(out, "tenant,region,credential,kind,reasons,reveals_since")?;
                for_each_item(c, &path, |item| {
                    writeln!(
                        out,
                        "{},{},{},{},{},{}",
                        csv_field(&item.tenant),
                        csv_field(&item.region),
                        csv_field(&item.name),
                        item.kind,
                        csv_field(&item.reasons),
                        item.reveals_since
                    )?;
                    Ok(())
                })
                .await?;
            } else if format == OutputFormat::Json {
                let mut items = Vec::new();
                for_each_item(c, &path, |item| {
                    items.push(item);
                    Ok(())
                })
                .await?;
                crate::output::json(&json!({ "report": report, "credentials": items }));
            } else {
                report_table(&report);
            }
        }
        IncidentCmd::Contain { id, freeze, dry_run } => {
            let path = format!("/v1/incidents/{}/contain", path_id(&id)?);
            let r: ContainReport =
                c.json(Method::POST, &path, &json!({ "freeze": freeze, "dry_run": dry_run })).await?;
            let failed = r.actions.iter().any(|a| a.outcome == "failed");
            show(format, &r, |r| {
                if r.dry_run {
                    println!("dry run: nothing was done");
                }
                table(
                    &["ACTION", "TARGET", "OUTCOME", "DETAIL"],
                    r.actions
                        .iter()
                        .map(|a| vec![a.action.clone(), a.target.clone(), a.outcome.clone(), a.detail.clone()]),
                )
            });
            if failed {
                return Ok(ExitCode::from(3));
            }
        }
        IncidentCmd::Share { id, tlp, out, name_tenants, taxii, collection } => {
            let path = format!("/v1/incidents/{}/stix", path_id(&id)?);
            let query = [("tlp", tlp), ("name_tenants", name_tenants.to_string())];
            let bundle: serde_json::Value = c.get(&path, &query).await?;
            let objects = bundle["objects"].as_array().map_or(0, Vec::len);
            if let Some(file) = &out {
                std::fs::write(file, serde_json::to_vec_pretty(&bundle)?)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                eprintln!("wrote {objects} STIX objects to {}", file.display());
            }
            if let (Some(root), Some(collection)) = (&taxii, &collection) {
                let taken = publish(root, collection, &bundle).await?;
                eprintln!("published {taken} of {objects} STIX objects to collection {collection}");
            }
            if out.is_none() && taxii.is_none() {
                crate::output::json(&bundle);
            }
        }
        IncidentCmd::Close { id } => {
            let i: IncidentView =
                c.send(c.request(Method::POST, &format!("/v1/incidents/{}/close", path_id(&id)?))).await?;
            show(format, &i, |i| println!("closed {}", i.id));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn path_id(id: &str) -> Result<String> {
    let id: rekey_types::IncidentId = id.parse().ok().context("an incident id is a UUID")?;
    Ok(id.to_string())
}

/// An RFC 3339 time, or a duration back from now (`14d`).
fn parse_since(s: &str) -> Result<String> {
    if let Ok(t) = rekey_types::Timestamp::parse_rfc3339(s) {
        return Ok(t.to_string());
    }
    match rekey_types::time::parse_duration_secs(s) {
        Ok(secs) => {
            let now = rekey_types::Timestamp::now().as_micros();
            Ok(rekey_types::Timestamp::from_micros(now - secs.saturating_mul(1_000_000)).to_string())
        }
        Err(_) => bail!("--since takes an RFC 3339 time (2026-01-12T00:00:00Z) or a duration back from now (14d)"),
    }
}

async fn for_each_item(c: &Client, path: &str, mut f: impl FnMut(IncidentItemView) -> Result<()>) -> Result<()> {
    let mut after: Option<String> = None;
    loop {
        let mut q = vec![("limit", PAGE.to_string())];
        q.extend(after.clone().map(|a| ("after", a)));
        let page: Vec<IncidentItemView> = c.get(&format!("{path}/items"), &q).await?;
        let full = page.len() == PAGE;
        after = page.last().map(|i| format!("{}/{}", i.tenant, i.name));
        for item in page {
            f(item)?;
        }
        if !full {
            return Ok(());
        }
    }
}

pub(crate) fn report_table(r: &IncidentReport) {
    let i = &r.incident;
    let mut items = vec![
        ("incident", i.id.clone()),
        ("title", i.title.clone()),
        ("state", i.state.to_string()),
        ("scope", i.scope.join(" ")),
        ("affected", format!("{} credentials", i.affected)),
        ("frozen", if i.frozen { "yes: connectors are refused until each is rotated" } else { "no" }.into()),
        ("opened", format!("{} by {}", i.created_at, i.created_by)),
    ];
    if let Some(t) = i.contained_at {
        items.push(("contained", t.to_string()));
    }
    if let (Some(since), Some(rv)) = (i.since, r.reveals_since) {
        items.push(("reveals since", format!("{since}: {} reveals of {} credentials", rv.reveals, rv.credentials)));
    }
    pairs(&items);
    println!();
    let by = |title: &str, rows: Vec<(String, i64)>| {
        table(&[title, "CREDENTIALS"], rows.into_iter().map(|(k, n)| vec![k, n.to_string()]));
        println!();
    };
    by("REGION", r.by_region.iter().map(|(k, n)| (k.clone(), *n)).collect());
    by("KIND", r.by_kind.iter().map(|(k, n)| (k.clone(), *n)).collect());
    by("TENANT (largest 50)", r.by_tenant.clone());
    table(
        &["TIME", "PRINCIPAL", "ACTION", "DETAIL"],
        r.timeline.iter().map(|e| vec![e.time.to_string(), e.principal.clone(), e.action.clone(), e.detail.clone()]),
    );
}

/// Adds the bundle's objects to a TAXII 2.1 collection; answers how many it took.
async fn publish(root: &str, collection: &str, bundle: &serde_json::Value) -> Result<u64> {
    const MEDIA: &str = "application/taxii+json;version=2.1";
    let user =
        std::env::var("REKEY_TAXII_USER").context("set REKEY_TAXII_USER (and REKEY_TAXII_PASSWORD) to publish")?;
    let password =
        zeroize::Zeroizing::new(std::env::var("REKEY_TAXII_PASSWORD").context("set REKEY_TAXII_PASSWORD to publish")?);
    if !collection.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        bail!("a collection id is letters, digits and hyphens");
    }
    let url = format!("{}/collections/{collection}/objects/", root.trim_end_matches('/'));
    let envelope = json!({ "objects": bundle["objects"] });
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", MEDIA)
        .header("accept", MEDIA)
        .basic_auth(user, Some(password.as_str()))
        .body(serde_json::to_vec(&envelope)?)
        .send()
        .await
        .with_context(|| format!("cannot reach the TAXII server at {root}"))?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the TAXII server answered {status}: {}", answer["title"].as_str().unwrap_or("no reason given"));
    }
    // The marking definition and the addresses have fixed ids and contents: shared before, they
    // are in the collection already, and a TAXII server refuses them as the same version.
    let unversioned = ["marking-definition--", "ipv4-addr--", "ipv6-addr--"];
    let refused: Vec<&serde_json::Value> = answer["failures"]
        .as_array()
        .map(|f| {
            f.iter().filter(|f| !unversioned.iter().any(|p| f["id"].as_str().unwrap_or("").starts_with(p))).collect()
        })
        .unwrap_or_default();
    if !refused.is_empty() {
        bail!(
            "the TAXII server refused {} objects: {}",
            refused.len(),
            serde_json::Value::from(refused.into_iter().cloned().collect::<Vec<_>>())
        );
    }
    Ok(answer["success_count"].as_u64().unwrap_or(0))
}
