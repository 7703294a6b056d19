//! `rekey campaign start|list|status|items|waive|link|report`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rekey_core::campaigns::{CampaignStatus, CampaignView, ItemView, LinkView};
use reqwest::Method;
use serde_json::json;

use crate::args::{CampaignCmd, OutputFormat, ReportFormat};
use crate::client::Client;
use crate::output::show;
use crate::output::{pairs, table};

/// Items fetched per request.
const PAGE: usize = 5_000;

pub(crate) async fn run(c: &Client, cmd: CampaignCmd, format: OutputFormat) -> Result<ExitCode> {
    match cmd {
        CampaignCmd::Start { incident, deadline, notify } => {
            let body = json!({ "incident": incident, "deadline": deadline, "notify": notify });
            let v: CampaignView = c.json(Method::POST, "/v1/campaigns", &body).await?;
            show(format, &v, |v| {
                println!("started campaign {} with {} credentials (deadline {})", v.id, v.items, v.deadline);
                println!("follow it with: rekey campaign status {} --watch", v.id);
            });
        }
        CampaignCmd::List => {
            let list: Vec<CampaignView> = c.get("/v1/campaigns", &[]).await?;
            show(format, &list, |list| {
                table(
                    &["ID", "INCIDENT", "STATE", "ITEMS", "DEADLINE", "NOTIFY"],
                    list.iter().map(|v| {
                        vec![
                            v.id.clone(),
                            v.incident.clone(),
                            v.state.to_string(),
                            v.items.to_string(),
                            v.deadline.to_string(),
                            v.notify.join(","),
                        ]
                    }),
                )
            });
        }
        CampaignCmd::Status { id, watch } => {
            let path = format!("/v1/campaigns/{}", path_id(&id)?);
            if watch && std::io::stderr().is_terminal() {
                return follow(c, &path).await;
            }
            let mut status: CampaignStatus = c.get(&path, &[]).await?;
            while watch && status.campaign.state == rekey_types::CampaignState::Running {
                tokio::time::sleep(Duration::from_secs(2)).await;
                status = c.get(&path, &[]).await?;
            }
            show(format, &status, status_table);
            if watch && status.failed > 0 {
                return Ok(ExitCode::from(3));
            }
        }
        CampaignCmd::Items { id, tenant, state } => {
            let path = format!("/v1/campaigns/{}/items", path_id(&id)?);
            let mut items: Vec<ItemView> = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut q = vec![("limit", PAGE.to_string())];
                q.extend(tenant.clone().map(|t| ("tenant", t)));
                q.extend(state.clone().map(|s| ("state", s)));
                q.extend(after.clone().map(|a| ("after", a)));
                let page: Vec<ItemView> = c.get(&path, &q).await?;
                let full = page.len() == PAGE;
                after = page.last().map(|i| format!("{}/{}", i.tenant, i.name));
                items.extend(page);
                if !full {
                    break;
                }
            }
            show(format, &items, |items| {
                table(
                    &["TENANT", "CREDENTIAL", "KIND", "MODE", "STATE", "TRIES", "DONE BY", "CHANGED", "NOTE"],
                    items.iter().map(|i| {
                        vec![
                            i.tenant.clone(),
                            i.name.clone(),
                            i.kind.to_string(),
                            i.mode.to_string(),
                            i.state.to_string(),
                            i.attempts.to_string(),
                            i.done_by.clone().unwrap_or_default(),
                            i.changed_at.to_string(),
                            i.error.clone().or_else(|| i.note.clone()).unwrap_or_default(),
                        ]
                    }),
                )
            });
        }
        CampaignCmd::Waive { id, credential, reason } => {
            let path = format!("/v1/campaigns/{}/waive", path_id(&id)?);
            let i: ItemView =
                c.json(Method::POST, &path, &json!({ "credential": credential, "reason": reason })).await?;
            show(format, &i, |i| println!("waived {}/{}: {}", i.tenant, i.name, i.note.clone().unwrap_or_default()));
        }
        CampaignCmd::Link { id, tenant } => {
            let path = format!("/v1/campaigns/{}/links", path_id(&id)?);
            let l: LinkView = c.json(Method::POST, &path, &json!({ "tenant": tenant })).await?;
            show(format, &l, |l| {
                pairs(&[
                    ("link", l.url.clone()),
                    ("tenant", l.tenant.clone()),
                    ("credentials", l.credentials.join(", ")),
                    ("expires", l.expires_at.to_string()),
                ]);
                eprintln!("The link works once. It is shown only now: pass it to the tenant's administrator.");
            });
        }
        CampaignCmd::Report { id, format: report_format, out } => {
            let name = match report_format {
                ReportFormat::Html => "html",
                ReportFormat::Json => "json",
                ReportFormat::Csv => "csv",
            };
            let path = format!("/v1/campaigns/{}/report", path_id(&id)?);
            let bytes = c.send_raw(c.request(Method::GET, &path).query(&[("format", name)])).await?;
            match out {
                Some(file) => {
                    std::fs::write(&file, bytes.as_slice()).with_context(|| format!("writing {}", file.display()))?;
                    eprintln!("wrote {}", file.display());
                }
                None => std::io::stdout().lock().write_all(&bytes).context("writing the report")?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn path_id(id: &str) -> Result<String> {
    let id: rekey_types::CampaignId = id.parse().ok().context("a campaign id is a UUID")?;
    Ok(id.to_string())
}

fn status_table(s: &CampaignStatus) {
    let c = &s.campaign;
    pairs(&[
        ("campaign", c.id.clone()),
        ("incident", c.incident.clone()),
        ("state", c.state.to_string()),
        ("deadline", format!("{}{}", c.deadline, if s.overdue { " (overdue)" } else { "" })),
        ("progress", format!("{} of {} done ({} open, {} failed)", s.done, c.items, s.open, s.failed)),
        (
            "by state",
            s.counts.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "),
        ),
        ("notices", s.notices.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")),
    ]);
    println!();
    table(
        &["TENANT", "DONE", "TOTAL", "STATES"],
        s.tenants.iter().take(50).map(|t| {
            vec![
                t.tenant.clone(),
                t.done.to_string(),
                t.total.to_string(),
                t.counts.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "),
            ]
        }),
    );
    if s.tenants.len() > 50 {
        println!("... {} more tenants (rekey campaign items shows every credential)", s.tenants.len() - 50);
    }
}

/// A live view: one bar overall, one line per state, until the campaign finishes.
async fn follow(c: &Client, path: &str) -> Result<ExitCode> {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let overall = multi.add(ProgressBar::new(0));
    overall.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} done  {msg}").expect("the template is valid"));
    let states = multi.add(ProgressBar::new_spinner());
    loop {
        let s: CampaignStatus = c.get(path, &[]).await?;
        overall.set_length(s.campaign.items.max(0) as u64);
        overall.set_position(s.done.max(0) as u64);
        overall.set_message(format!(
            "{} open, {} failed{}",
            s.open,
            s.failed,
            if s.overdue { ", overdue" } else { "" }
        ));
        states.set_message(
            s.counts.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join("  "),
        );
        if s.campaign.state != rekey_types::CampaignState::Running {
            overall.finish();
            states.finish();
            status_table(&s);
            return Ok(if s.failed > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
