//! `rekey audit export --proofs`, `audit evidence` and the offline `audit verify --export`: audit
//! exports that anyone can check with the log's public key alone (docs/audit.md, "Exports").

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use rekey_core::checkpoints::{CheckpointView, EvidenceView};
use rekey_core::evidence::{
    verify_export, Start, CHECKPOINT_FILE, EVENTS_FILE, EVIDENCE_FILE, START_FILE, TENANT_FILE,
};
use rekey_core::tree::TreeHeadView;
use rekey_core::views::AuditEventView;
use rekey_tlog::VerifierKey;

use crate::args::OutputFormat;
use crate::client::Client;
use crate::output::show;

/// A key given as its text, or as a file holding it.
fn key_arg(text: &str) -> Result<VerifierKey> {
    let text = match VerifierKey::parse(text) {
        Ok(k) => return Ok(k),
        Err(_) if Path::new(text).is_file() => {
            std::fs::read_to_string(text).with_context(|| format!("reading {text}"))?
        }
        Err(e) => bail!("{text:?} is neither a verifier key nor a file holding one: {e}"),
    };
    VerifierKey::parse(text.trim()).with_context(|| format!("the key in the file {text:?}"))
}

/// A new directory, refusing one that exists (an export is never mixed with another).
fn new_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir(dir).with_context(|| format!("creating {} (it must not exist)", dir.display()))
}

fn write_file(dir: &Path, name: &str, text: &str) -> Result<()> {
    let mut file = std::fs::File::create_new(dir.join(name)).with_context(|| format!("creating {name}"))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// `audit export --proofs DIR [--after S]`: the events `S+1 ..= N` of a checkpoint of `N`
/// events signed now, with the tree's edge at `S`.
pub(crate) async fn export(c: &Client, dir: &Path, after: i64, format: OutputFormat) -> Result<ExitCode> {
    let start = u64::try_from(after).context("--after is 0 or more")?;
    let checkpoint: CheckpointView = c.send(c.request(reqwest::Method::POST, "/v1/audit/checkpoint")).await?;
    if start > checkpoint.size {
        bail!("--after {start} is beyond the log's {} events", checkpoint.size);
    }
    let edge = if start == 0 {
        vec![]
    } else {
        let head: TreeHeadView = c.get("/v1/audit/tree", &[("size", start.to_string())]).await?;
        head.edge.context("the server answered no edge")?
    };
    new_dir(dir)?;
    write_file(dir, CHECKPOINT_FILE, &checkpoint.note)?;
    write_file(dir, START_FILE, &serde_json::to_string(&Start { size: start, edge })?)?;
    let mut out = BufWriter::new(std::fs::File::create_new(dir.join(EVENTS_FILE)).context("creating events.jsonl")?);
    const PAGE: usize = 10_000;
    let mut next = start;
    while next < checkpoint.size {
        let es: Vec<AuditEventView> =
            c.get("/v1/audit/events", &[("n", PAGE.to_string()), ("after", next.to_string())]).await?;
        if es.is_empty() {
            bail!("the server answered no events after {next}, though its checkpoint covers {}", checkpoint.size);
        }
        for e in es.iter().take_while(|e| e.seq as u64 <= checkpoint.size) {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
            next = e.seq as u64;
        }
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    show(format, &checkpoint, |v| {
        println!(
            "exported events {}..={} to {} with the checkpoint of {} events",
            start + 1,
            v.size,
            dir.display(),
            v.size
        );
        println!("check it anywhere: rekey audit verify --export {} --key '{}'", dir.display(), v.key);
    });
    Ok(ExitCode::SUCCESS)
}

/// `audit evidence --tenant T [--since S] --out DIR`.
pub(crate) async fn evidence(
    c: &Client,
    tenant: &str,
    since: Option<&str>,
    dir: &Path,
    format: OutputFormat,
) -> Result<ExitCode> {
    let mut query = vec![("tenant", tenant.to_owned())];
    query.extend(since.map(|s| ("since", s.to_owned())));
    let v: EvidenceView = c.get("/v1/audit/evidence", &query).await?;
    new_dir(dir)?;
    write_file(dir, CHECKPOINT_FILE, &v.checkpoint.note)?;
    let mut lines = String::new();
    for e in &v.events {
        lines.push_str(&serde_json::to_string(e)?);
        lines.push('\n');
    }
    write_file(dir, EVIDENCE_FILE, &lines)?;
    if let Some(complete) = &v.complete {
        write_file(dir, TENANT_FILE, &serde_json::to_string_pretty(complete)?)?;
    }
    show(format, &v, |v| {
        println!(
            "{} events of {tenant} with their proofs against the checkpoint of {} events, in {}",
            v.events.len(),
            v.checkpoint.size,
            dir.display()
        );
        if v.truncated {
            println!(
                "MORE EVENTS MATCHED: ask again with --since after the last one (this list proves no completeness)"
            );
        } else if v.complete.is_some() {
            println!("with the proof that they are all of {tenant}'s events from the first listed to the checkpoint");
        }
        println!("check it anywhere: rekey audit verify --export {} --key '{}'", dir.display(), v.checkpoint.key);
    });
    Ok(ExitCode::SUCCESS)
}

/// `audit verify --export DIR --key KEY [--witness KEY]…`: offline.
pub(crate) fn verify(dir: &Path, key: &str, witnesses: &[String], format: OutputFormat) -> Result<ExitCode> {
    let key = key_arg(key)?;
    let witnesses = witnesses.iter().map(|w| key_arg(w)).collect::<Result<Vec<_>>>()?;
    match verify_export(dir, &key, &witnesses) {
        Ok(report) => {
            show(format, &report, |r| {
                println!("checkpoint of {} events signed by {} (head {})", r.size, key, r.root);
                for (w, t) in &r.cosigned_by {
                    println!("  cosigned by {w} at {t}");
                }
                if r.events > 0 || r.first_seq > 0 {
                    println!("events {}..={}: all {} present, unchanged and in order", r.first_seq, r.size, r.events);
                }
                if let Some(n) = r.tenant_map {
                    println!("the checkpoint's tenant map ({n} tenants) rebuilt from the events: it matches");
                }
                if r.proven > 0 {
                    println!("{} events each proven in the checkpoint's tree", r.proven);
                }
                if let Some(t) = &r.complete_for {
                    println!("complete: every event about {t} from the first listed to the checkpoint");
                }
                println!("export verified");
            });
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("EXPORT DOES NOT VERIFY: {e}");
            Ok(ExitCode::from(3))
        }
    }
}
