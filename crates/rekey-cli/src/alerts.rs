//! `rekey alert list|show|ack|escalate` and `rekey decoy plant|list`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use rekey_core::detect::alerts::{AlertView, Escalation};
use rekey_core::detect::decoys::DecoyView;
use reqwest::Method;
use serde_json::json;

use crate::args::{AlertCmd, DecoyCmd, OutputFormat};
use crate::client::Client;
use crate::output::{opt, pairs, show, table};

pub(crate) async fn alert(c: &Client, cmd: AlertCmd, format: OutputFormat) -> Result<ExitCode> {
    match cmd {
        AlertCmd::List { state, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(s) = state {
                query.push(("state", s));
            }
            let list: Vec<AlertView> = c.get("/v1/alerts", &query).await?;
            show(format, &list, |list| {
                table(
                    &["ID", "SEVERITY", "RULE", "STATE", "PRINCIPAL", "SOURCE", "RAISED", "SUMMARY"],
                    list.iter().map(|a| {
                        vec![
                            a.id.clone(),
                            a.severity.to_string(),
                            a.rule.clone(),
                            a.state.to_string(),
                            a.principal.clone(),
                            a.source.clone(),
                            a.created_at.to_string(),
                            a.summary.clone(),
                        ]
                    }),
                )
            });
        }
        AlertCmd::Show { id } => {
            let a: AlertView = c.get(&format!("/v1/alerts/{}", alert_id(&id)?), &[]).await?;
            show(format, &a, alert_table);
        }
        AlertCmd::Ack { id, note } => {
            let path = format!("/v1/alerts/{}/ack", alert_id(&id)?);
            let a: AlertView = c.json(Method::POST, &path, &json!({ "note": note })).await?;
            show(format, &a, alert_table);
        }
        AlertCmd::Escalate { id } => {
            let path = format!("/v1/alerts/{}/escalate", alert_id(&id)?);
            let e: Escalation = c.json(Method::POST, &path, &json!({})).await?;
            show(format, &e, |e| {
                crate::incidents::report_table(&e.incident);
                println!("\nnext: rekey incident contain {} [--freeze]", e.incident.incident.id);
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn decoy(c: &Client, cmd: DecoyCmd, format: OutputFormat) -> Result<ExitCode> {
    let list: Vec<DecoyView> = match cmd {
        DecoyCmd::Plant { tenant, kind, count } => {
            let path = format!("/v1/tenants/{tenant}/decoys");
            c.json(Method::POST, &path, &json!({ "kind": kind, "count": count })).await?
        }
        DecoyCmd::List { tenant } => {
            let query: Vec<(&str, String)> = tenant.map(|t| vec![("tenant", t)]).unwrap_or_default();
            c.get("/v1/decoys", &query).await?
        }
    };
    show(format, &list, |list| {
        table(
            &["CREDENTIAL", "KIND", "PLANTED", "BY"],
            list.iter().map(|d| {
                vec![d.credential.clone(), d.kind.to_string(), d.planted_at.to_string(), d.planted_by.clone()]
            }),
        )
    });
    Ok(ExitCode::SUCCESS)
}

fn alert_id(id: &str) -> Result<String> {
    let id: rekey_types::AlertId = id.parse().ok().context("an alert id is a UUID")?;
    Ok(id.to_string())
}

fn alert_table(a: &AlertView) {
    let mut items = vec![
        ("alert", a.id.clone()),
        ("rule", format!("{} ({})", a.rule, a.severity)),
        ("state", a.state.to_string()),
        ("summary", a.summary.clone()),
        ("principal", a.principal.clone()),
        ("source", a.source.clone()),
        ("first sign", format!("{} (audit event {})", a.first_seen, a.first_seq)),
        ("raised by", format!("{} (audit event {})", a.last_seen, a.last_seq)),
        ("events", a.events.to_string()),
        ("action", format!("{}{}", a.action, a.action_outcome.as_ref().map(|o| format!(": {o}")).unwrap_or_default())),
        ("notified", if a.notified { "yes" } else { "no" }.into()),
        ("handled", a.handled_by.as_ref().map(|by| format!("{by} at {}", opt(&a.handled_at))).unwrap_or_default()),
        ("note", opt(&a.note)),
        ("incident", opt(&a.incident)),
        ("credentials", format!("{}", a.resources.len())),
    ];
    items.retain(|(_, v)| !v.is_empty() && v != "-");
    pairs(&items);
    for r in &a.resources {
        println!("  {r}");
    }
}
