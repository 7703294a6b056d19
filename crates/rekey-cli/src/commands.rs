//! Each subcommand: build the request, send it, print the answer.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use rekey_core::views::{AuditEventView, CredentialView, StatusView, TenantView, TokenView, VerifyReport, VersionView};

use crate::args::{AuditCmd, Cli, Command, CredCmd, OutputFormat, PutArgs, TenantCmd, TokenCmd};
use crate::client::{cred_path, Client};
use crate::output::{self, opt, pairs, show, table};

fn key_values(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        let (k, v) = item.split_once('=').with_context(|| format!("{what} {item:?} is not key=value"))?;
        if map.insert(k.to_owned(), v.to_owned()).is_some() {
            bail!("{what} {k:?} is given twice");
        }
    }
    Ok(map)
}

/// Drops one trailing newline (`\n` or `\r\n`), as left by `echo` or an editor.
fn trim_newline(mut bytes: Vec<u8>, keep: bool) -> Zeroizing<Vec<u8>> {
    if !keep && bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Zeroizing::new(bytes)
}

fn read_secret_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The request body of `cred put`; secrets as text when UTF-8, else base64.
fn put_body(args: &PutArgs) -> Result<Zeroizing<Vec<u8>>> {
    let fields = key_values(&args.fields, "--set")?;
    let labels = key_values(&args.labels, "--label")?;
    let mut body = serde_json::Map::new();
    body.insert("kind".into(), json!(args.kind));
    body.insert("fields".into(), json!(fields));
    body.insert("labels".into(), json!(labels));
    let secret = if args.secret_stdin {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("reading the secret from stdin")?;
        Some(trim_newline(buf, args.keep_newline))
    } else if let Some(path) = &args.secret_file {
        Some(trim_newline(read_secret_file(path)?, args.keep_newline))
    } else {
        None
    };
    match (secret, &args.cert_file, &args.key_file) {
        (Some(s), None, None) => match std::str::from_utf8(&s) {
            Ok(text) => body.insert("secret".into(), json!(text)),
            Err(_) => {
                use base64::Engine;
                body.insert("secret_base64".into(), json!(base64::engine::general_purpose::STANDARD.encode(&*s)))
            }
        },
        (None, Some(cert), Some(key)) => {
            let cert = String::from_utf8(read_secret_file(cert)?).context("the certificate file is not text (PEM)")?;
            let key = Zeroizing::new(read_secret_file(key)?);
            let key = std::str::from_utf8(&key).context("the key file is not text (PEM)")?;
            body.insert("certificate_pem".into(), json!(cert));
            body.insert("private_key_pem".into(), json!(key))
        }
        _ => {
            bail!("give the secret with --secret-stdin or --secret-file (or --cert-file and --key-file for entra-app)")
        }
    };
    let bytes = Zeroizing::new(serde_json::to_vec(&Value::Object(body)).expect("JSON values serialize"));
    Ok(bytes)
}

/// Writes an answer body as it came (JSON that may hold a secret), without re-encoding it.
fn print_line(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.write_all(b"\n")
}

fn tenants_table(ts: &[TenantView]) {
    table(
        &["NAME", "REGION", "STATE", "CONTACTS", "CREATED"],
        ts.iter().map(|t| {
            vec![t.name.clone(), t.region.clone(), t.state.to_string(), t.contacts.join(","), t.created_at.to_string()]
        }),
    );
}

pub(crate) fn credential_pairs(c: &CredentialView) {
    let mut items = vec![
        ("credential", format!("{}/{}", c.tenant, c.name)),
        ("id", c.id.clone()),
        ("kind", c.kind.to_string()),
        ("region", c.region.clone()),
        ("version", c.current_version.to_string()),
        (
            "pending",
            if c.latest_version > c.current_version { format!("version {}", c.latest_version) } else { "-".into() },
        ),
        ("created", c.created_at.to_string()),
        ("updated", c.updated_at.to_string()),
    ];
    if c.fields.contains_key("danger_accept_invalid_certs") {
        items.push((
            "WARNING",
            "certificate checks are OFF for this credential (danger_accept_invalid_certs=true)".to_owned(),
        ));
    }
    for (k, v) in &c.fields {
        let shown = if k == "ca_pem" { "(PEM certificate)".to_owned() } else { v.clone() };
        items.push(("field", format!("{k}={shown}")));
    }
    if let Some(h) = &c.health {
        items.push((
            "last check",
            format!("{} (version {}, {} ms) at {}: {}", h.status, h.version, h.elapsed_ms, h.checked_at, h.detail),
        ));
    }
    if let Some(r) = &c.rotation {
        let error = r.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
        items.push((
            "last rotation",
            format!("{} {} (v{} -> v{}) at {}{error}", r.id, r.state, r.from_version, r.to_version, r.changed_at),
        ));
    }
    for (k, v) in &c.labels {
        items.push(("label", format!("{k}={v}")));
    }
    pairs(&items);
}

fn tokens_table(ts: &[TokenView]) {
    table(
        &["ID", "ROLE", "TENANT", "CREDENTIALS", "CIDRS", "STATE", "EXPIRES", "DESCRIPTION"],
        ts.iter().map(|t| {
            vec![
                t.id.clone(),
                t.role.to_string(),
                opt(&t.tenant),
                t.credentials.join(","),
                t.cidrs.join(","),
                t.state.to_string(),
                t.expires_at.map_or_else(|| "never".into(), |e| e.to_string()),
                t.description.clone(),
            ]
        }),
    );
}

fn events_table(es: &[AuditEventView]) {
    table(
        &["SEQ", "TIME", "PRINCIPAL", "ACTION", "RESOURCE", "OUTCOME", "SOURCE", "DETAIL"],
        es.iter().map(|e| {
            vec![
                e.seq.to_string(),
                e.time.to_string(),
                e.principal.clone(),
                e.action.clone(),
                e.resource.clone(),
                e.outcome.clone(),
                e.source.clone(),
                e.detail.clone(),
            ]
        }),
    );
}

pub(crate) async fn run(cli: Cli) -> Result<ExitCode> {
    let csv = cli.global.output == Some(crate::args::OutputArg::Csv);
    let format = output::format(cli.global.output);
    let client = || Client::new(&cli.global);
    match cli.command {
        Command::Serve(args) => {
            crate::serve::run(args).await?;
        }
        Command::Status => {
            let s: StatusView = client()?.get("/v1/sys/status", &[]).await?;
            show(format, &s, |s| {
                let mut items = vec![
                    ("version", s.version.clone()),
                    ("seal", format!("{} ({})", s.seal.kind, if s.seal.sealed { "sealed" } else { "unsealed" })),
                    ("root key version", opt(&s.seal.root_key_version)),
                    ("store", s.store.clone()),
                    ("audit head", opt(&s.audit_head_seq)),
                    ("integrity failures", opt(&s.integrity_failures)),
                ];
                if let Some(finding) = &s.audit_rollback {
                    items.push(("WRITES REFUSED", format!("audit log rolled back: {finding}")));
                }
                if let (Some(init), Some(t), Some(n)) = (s.seal.initialized, s.seal.threshold, s.seal.shares) {
                    if !init {
                        items.push(("shamir", "not initialized: run rekey init".into()));
                    } else if s.seal.sealed {
                        items.push((
                            "unseal progress",
                            format!("{} of {t} shares (split {t}-of-{n})", s.seal.unseal_progress.unwrap_or(0)),
                        ));
                    } else {
                        items.push(("shamir", format!("{t}-of-{n}")));
                    }
                }
                if let Some(c) = &s.counts {
                    items.push(("tenants", c.tenants.to_string()));
                    items.push(("credentials", c.credentials.to_string()));
                    items.push(("versions", c.versions.to_string()));
                    items.push(("active tokens", c.active_tokens.to_string()));
                }
                if let Some(w) = &s.seal.warning {
                    items.push(("WARNING", w.clone()));
                }
                pairs(&items);
            });
        }
        Command::Tenant(cmd) => {
            let c = client()?;
            match cmd {
                TenantCmd::Create { name, region, contacts } => {
                    let t: TenantView = c
                        .json(
                            Method::POST,
                            "/v1/tenants",
                            &json!({ "name": name, "region": region, "contacts": contacts }),
                        )
                        .await?;
                    show(format, &t, |t| tenants_table(std::slice::from_ref(t)));
                }
                TenantCmd::List { region, limit, after } => {
                    let mut q = vec![("limit", limit.to_string())];
                    q.extend(region.map(|r| ("region", r)));
                    q.extend(after.map(|a| ("after", a)));
                    let ts: Vec<TenantView> = c.get("/v1/tenants", &q).await?;
                    show(format, &ts, |ts| tenants_table(ts));
                }
                TenantCmd::Shred { name, yes } => return crate::keys::shred(&c, &name, yes, format).await,
                TenantCmd::Show { name } => {
                    let t: TenantView = c.get(&format!("/v1/tenants/{name}"), &[]).await?;
                    show(format, &t, |t| {
                        pairs(&[
                            ("tenant", t.name.clone()),
                            ("id", t.id.clone()),
                            ("region", t.region.clone()),
                            ("state", t.state.to_string()),
                            ("contacts", t.contacts.join(", ")),
                            ("created", t.created_at.to_string()),
                        ])
                    });
                }
            }
        }
        Command::Cred(cmd) => {
            let c = client()?;
            match cmd {
                CredCmd::Put(args) => {
                    let path = cred_path(&args.cred)?;
                    let body = put_body(&args)?;
                    let request = c
                        .request(Method::PUT, &path)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.to_vec());
                    let v: CredentialView = c.send(request).await?;
                    show(format, &v, credential_pairs);
                }
                CredCmd::Show { cred } => {
                    let v: CredentialView = c.get(&cred_path(&cred)?, &[]).await?;
                    show(format, &v, credential_pairs);
                }
                CredCmd::Reveal { cred, version } => {
                    let mut request = c.request(Method::POST, &format!("{}/reveal", cred_path(&cred)?));
                    if let Some(v) = version {
                        request = request.query(&[("version", v.to_string())]);
                    }
                    let bytes = c.send_raw(request).await?;
                    match format {
                        OutputFormat::Json => print_line(&bytes)?,
                        OutputFormat::Table => {
                            let v: Value = serde_json::from_slice(&bytes).context("unexpected answer")?;
                            let mut out = std::io::stdout().lock();
                            if let Some(s) = v.get("secret").and_then(Value::as_str) {
                                out.write_all(s.as_bytes())?;
                                out.write_all(b"\n")?;
                            } else if let Some(b) = v.get("secret_base64").and_then(Value::as_str) {
                                use base64::Engine;
                                let raw = Zeroizing::new(
                                    base64::engine::general_purpose::STANDARD
                                        .decode(b)
                                        .context("bad base64 from server")?,
                                );
                                out.write_all(&raw)?;
                            }
                        }
                    }
                }
                CredCmd::List { tenant, kind, region, limit, after } => {
                    let mut q = vec![("limit", limit.to_string())];
                    q.extend(tenant.map(|v| ("tenant", v)));
                    q.extend(kind.map(|v| ("kind", v)));
                    q.extend(region.map(|v| ("region", v)));
                    q.extend(after.map(|v| ("after", v)));
                    let vs: Vec<CredentialView> = c.get("/v1/credentials", &q).await?;
                    show(format, &vs, |vs| {
                        table(
                            &["CREDENTIAL", "KIND", "REGION", "VERSION", "UPDATED"],
                            vs.iter().map(|v| {
                                vec![
                                    format!("{}/{}", v.tenant, v.name),
                                    v.kind.to_string(),
                                    v.region.clone(),
                                    v.current_version.to_string(),
                                    v.updated_at.to_string(),
                                ]
                            }),
                        )
                    });
                }
                CredCmd::Versions { cred } => {
                    let vs: Vec<VersionView> = c.get(&format!("{}/versions", cred_path(&cred)?), &[]).await?;
                    show(format, &vs, |vs| {
                        table(
                            &["VERSION", "STAGE", "KEY VERSION", "CREATED BY", "CREATED"],
                            vs.iter().map(|v| {
                                vec![
                                    v.version.to_string(),
                                    v.stage.to_string(),
                                    v.kek_version.to_string(),
                                    v.created_by.clone(),
                                    v.created_at.to_string(),
                                ]
                            }),
                        )
                    });
                }
                CredCmd::Rollback { cred, to } => {
                    let v: CredentialView =
                        c.json(Method::POST, &format!("{}/rollback", cred_path(&cred)?), &json!({ "to": to })).await?;
                    show(format, &v, credential_pairs);
                }
                CredCmd::Retarget { cred, set, unset } => {
                    let set = key_values(&set, "--set")?;
                    let body = json!({ "set": set, "unset": unset });
                    let v: CredentialView =
                        c.json(Method::POST, &format!("{}/retarget", cred_path(&cred)?), &body).await?;
                    show(format, &v, credential_pairs);
                }
                CredCmd::Promote { cred } => {
                    let v: CredentialView =
                        c.send(c.request(Method::POST, &format!("{}/promote", cred_path(&cred)?))).await?;
                    show(format, &v, credential_pairs);
                }
                CredCmd::Verify { cred } => return crate::connect::verify(&c, &cred, format).await,
                CredCmd::Rotate(args) => return crate::connect::rotate(&c, args, format).await,
                CredCmd::Rotations { cred } => return crate::connect::rotations(&c, &cred, format).await,
                CredCmd::Delete { cred } => {
                    let v: Value = c.send(c.request(Method::DELETE, &cred_path(&cred)?)).await?;
                    show(format, &v, |_| println!("deleted {cred}"));
                }
                CredCmd::Import(args) => return crate::import::run(&c, args, format).await,
            }
        }
        Command::Token(cmd) => {
            let c = client()?;
            match cmd {
                TokenCmd::Create { role, tenant, creds, cidrs, ttl, description } => {
                    if ttl.as_deref() == Some("never") {
                        eprintln!(
                            "warning: this token never expires. A static token is for bootstrap and break-glass; \
                             workloads should log in with a JWT for a token of minutes (docs/workloads.md)."
                        );
                    }
                    let body = json!({ "role": role, "tenant": tenant, "credentials": creds, "cidrs": cidrs, "ttl": ttl, "description": description });
                    let bytes = c.send_raw(c.request(Method::POST, "/v1/tokens").json(&body)).await?;
                    match format {
                        OutputFormat::Json => print_line(&bytes)?,
                        OutputFormat::Table => {
                            let v: Value = serde_json::from_slice(&bytes).context("unexpected answer")?;
                            let id = v["token"]["id"].as_str().unwrap_or("?");
                            eprintln!("Created token {id} (role {role}). The secret below is shown once:");
                            println!("{}", v["secret"].as_str().unwrap_or(""));
                        }
                    }
                }
                TokenCmd::List => {
                    let ts: Vec<TokenView> = c.get("/v1/tokens", &[]).await?;
                    show(format, &ts, |ts| tokens_table(ts));
                }
                TokenCmd::Revoke { id } => {
                    let v: Value = c.send(c.request(Method::DELETE, &format!("/v1/tokens/{id}"))).await?;
                    show(format, &v, |_| println!("revoked {id}"));
                }
            }
        }
        Command::Init { shares, threshold } => return crate::keys::init(&client()?, shares, threshold, format).await,
        Command::Unseal { reset } => return crate::keys::unseal(&client()?, reset, format).await,
        Command::Seal => {
            let c = client()?;
            let v: Value = c.send(c.request(Method::POST, "/v1/sys/seal")).await?;
            show(format, &v, |_| println!("sealed"));
        }
        Command::Key(cmd) => return crate::keys::key(&client()?, cmd, format).await,
        Command::Incident(cmd) => return crate::incidents::run(&client()?, cmd, format, csv).await,
        Command::Campaign(cmd) => return crate::campaigns::run(&client()?, cmd, format).await,
        Command::Alert(cmd) => return crate::alerts::alert(&client()?, cmd, format).await,
        Command::Decoy(cmd) => return crate::alerts::decoy(&client()?, cmd, format).await,
        Command::Cert(cmd) => return crate::keys::cert(&client()?, cmd, format).await,
        Command::Witness(cmd) => return crate::witness::run(cmd).await,
        Command::JwtRole(cmd) => return crate::workloads::run(&client()?, cmd, format).await,
        Command::Login { oidc: _, role } => {
            return crate::login::oidc(&client()?, role, cli.global.token_file.clone()).await
        }
        Command::Audit(AuditCmd::Verify { export: Some(dir), key, witnesses }) => {
            return crate::exports::verify(&dir, key.as_deref().unwrap_or_default(), &witnesses, format);
        }
        Command::Audit(cmd) => {
            let c = client()?;
            match cmd {
                AuditCmd::Tail { n } => {
                    let es: Vec<AuditEventView> = c.get("/v1/audit/events", &[("n", n.to_string())]).await?;
                    show(format, &es, |es| events_table(es));
                }
                AuditCmd::Tree { .. }
                | AuditCmd::Prove { .. }
                | AuditCmd::Consistency { .. }
                | AuditCmd::Checkpoint { .. }
                | AuditCmd::Accept { .. } => {
                    return crate::proofs::run(&c, cmd, format).await;
                }
                AuditCmd::Export { proofs: Some(dir), after } => {
                    return crate::exports::export(&c, &dir, after, format).await;
                }
                AuditCmd::Evidence { tenant, since, out } => {
                    return crate::exports::evidence(&c, &tenant, since.as_deref(), &out, format).await;
                }
                AuditCmd::Verify { .. } => {
                    let r: VerifyReport = c.get("/v1/audit/verify", &[]).await?;
                    show(format, &r, |r| {
                        if r.ok {
                            println!("audit log OK: {} events verified, head at {}", r.checked, r.head_seq);
                        } else {
                            println!(
                                "AUDIT LOG DAMAGED: {} problem(s) in {} events (head {})",
                                r.problems.len(),
                                r.checked,
                                r.head_seq
                            );
                            for p in &r.problems {
                                println!("  event {:>8}  {:<10}  {}", p.seq, p.kind, p.message);
                            }
                        }
                    });
                    if !r.ok {
                        return Ok(ExitCode::from(3));
                    }
                }
                AuditCmd::Export { mut after, proofs: None } => {
                    // Each page read is itself audited, so the log grows while it is read: stop
                    // at the first short page instead of chasing the newest event.
                    const PAGE: usize = 10_000;
                    let mut out = std::io::stdout().lock();
                    loop {
                        let es: Vec<AuditEventView> =
                            c.get("/v1/audit/events", &[("n", PAGE.to_string()), ("after", after.to_string())]).await?;
                        for e in &es {
                            serde_json::to_writer(&mut out, e)?;
                            out.write_all(b"\n")?;
                        }
                        match es.last() {
                            Some(last) if es.len() == PAGE => after = last.seq,
                            _ => break,
                        }
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
