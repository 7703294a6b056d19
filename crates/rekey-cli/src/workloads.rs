//! `rekey jwt-role put|list|show|delete`: the auth roles workloads log in with (their login is
//! Vault's `auth/jwt/login`, which `bao write auth/jwt/login role=R jwt=@FILE` and `bao agent`
//! call; see docs/workloads.md).

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result};
use rekey_core::workloads::{JwtRoleSpec, JwtRoleView};
use reqwest::Method;
use serde_json::Value;

use crate::args::{JwtRoleCmd, OutputFormat};
use crate::client::Client;
use crate::output::{pairs, show, table};

pub(crate) async fn run(c: &Client, cmd: JwtRoleCmd, format: OutputFormat) -> Result<ExitCode> {
    match cmd {
        JwtRoleCmd::Put { name, file } => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).context("reading the role from stdin")?;
                s
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let spec: JwtRoleSpec = serde_json::from_str(&text).context("the role is not a valid specification")?;
            let role: JwtRoleView = c.json(Method::PUT, &format!("/v1/jwt-roles/{name}"), &spec).await?;
            show(format, &role, role_pairs);
        }
        JwtRoleCmd::List => {
            let roles: Vec<JwtRoleView> = c.get("/v1/jwt-roles", &[]).await?;
            show(format, &roles, |roles| {
                table(
                    &["NAME", "ISSUER", "GRANTS", "TENANT", "TTL", "MAX TTL"],
                    roles.iter().map(|r| {
                        vec![
                            r.name.clone(),
                            r.spec.issuer.clone(),
                            r.spec.role.to_string(),
                            r.spec.tenant.clone().unwrap_or_default(),
                            r.spec.ttl.clone().unwrap_or_else(|| rekey_core::workloads::role::DEFAULT_TTL.into()),
                            r.spec
                                .max_ttl
                                .clone()
                                .unwrap_or_else(|| rekey_core::workloads::role::DEFAULT_MAX_TTL.into()),
                        ]
                    }),
                )
            });
        }
        JwtRoleCmd::Show { name } => {
            let role: JwtRoleView = c.get(&format!("/v1/jwt-roles/{name}"), &[]).await?;
            show(format, &role, role_pairs);
        }
        JwtRoleCmd::Delete { name } => {
            let v: Value = c.send(c.request(Method::DELETE, &format!("/v1/jwt-roles/{name}"))).await?;
            show(format, &v, |_| println!("deleted {name}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn role_pairs(r: &JwtRoleView) {
    let spec = serde_json::to_string_pretty(&r.spec).unwrap_or_default();
    pairs(&[
        ("name", r.name.clone()),
        ("written by", r.created_by.clone()),
        ("created", r.created_at.to_string()),
        ("updated", r.updated_at.to_string()),
        ("spec", spec),
    ]);
}
