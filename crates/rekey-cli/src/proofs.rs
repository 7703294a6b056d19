//! `rekey audit tree|prove|consistency|checkpoint|accept`: the audit log's Merkle tree head,
//! proofs and signed checkpoints, each proof and signature checked here before it is shown, so
//! that a proof the server got wrong (or a server that lies about an event) never reads as one
//! that holds.

use std::process::ExitCode;

use anyhow::{Context, Result};
use rekey_core::checkpoints::CheckpointView;
use rekey_core::tree::{ConsistencyView, InclusionView, TreeHeadView};
use rekey_tlog::tree::{verify_consistency, verify_inclusion};
use rekey_tlog::{Checkpoint, Hash, VerifierKey};

use crate::args::{AuditCmd, OutputFormat};
use crate::client::Client;
use crate::output::show;

fn hash(text: &str) -> Result<Hash> {
    hex::decode(text).ok().and_then(|b| b.try_into().ok()).with_context(|| format!("{text:?} is not a SHA-256 hash"))
}

fn hashes(texts: &[String]) -> Result<Vec<Hash>> {
    texts.iter().map(|t| hash(t)).collect()
}

pub(crate) async fn run(c: &Client, cmd: AuditCmd, format: OutputFormat) -> Result<ExitCode> {
    let size = |s: Option<u64>| s.map(|n| ("size", n.to_string())).into_iter().collect::<Vec<_>>();
    match cmd {
        AuditCmd::Tree { size: s } => {
            let head: TreeHeadView = c.get("/v1/audit/tree", &size(s)).await?;
            show(format, &head, |h| println!("{} events, head {}", h.size, h.root));
        }
        AuditCmd::Prove { seq, size: s, key } => {
            // Without --size, against a signed checkpoint that covers the event (one signed now
            // if the latest does not), whose signature is checked too.
            let checkpoint: Option<CheckpointView> = match s {
                Some(_) => None,
                None => {
                    let latest: CheckpointView = c.get("/v1/audit/checkpoint", &[]).await?;
                    Some(if latest.size >= u64::try_from(seq).unwrap_or(u64::MAX) {
                        latest
                    } else {
                        c.send(c.request(reqwest::Method::POST, "/v1/audit/checkpoint")).await?
                    })
                }
            };
            let mut query = size(s.or(checkpoint.as_ref().map(|v| v.size)));
            query.push(("seq", seq.to_string()));
            let p: InclusionView = c.get("/v1/audit/proof/inclusion", &query).await?;
            let index = u64::try_from(p.seq - 1).context("the server answered for another event")?;
            let signed = match &checkpoint {
                Some(v) => {
                    let key = VerifierKey::parse(key.as_deref().unwrap_or(&v.key)).context("the log's key")?;
                    checkpoint_holds(v, &key) && v.size == p.tree.size && v.root == p.tree.root
                }
                None => true,
            };
            let holds = signed
                && p.seq == seq
                && s.is_none_or(|n| n == p.tree.size)
                && verify_inclusion(index, p.tree.size, &hash(&p.leaf)?, &hashes(&p.proof)?, &hash(&p.tree.root)?);
            show(format, &p, |p| {
                println!(
                    "event {} (leaf {}) in the tree of {} events, head {}",
                    p.seq, p.leaf, p.tree.size, p.tree.root
                );
                for h in &p.proof {
                    println!("  {h}");
                }
                if let Some(v) = &checkpoint {
                    println!("against the checkpoint signed {} by {}", v.signed_at, key.as_deref().unwrap_or(&v.key));
                }
                println!("{}", if holds { "proof verified" } else { "PROOF DOES NOT VERIFY" });
            });
            if !holds {
                return Ok(ExitCode::from(3));
            }
        }
        AuditCmd::Consistency { old, new } => {
            let mut query = vec![("old", old.to_string())];
            query.extend(new.map(|n| ("new", n.to_string())));
            let p: ConsistencyView = c.get("/v1/audit/proof/consistency", &query).await?;
            let holds = p.old.size == old
                && new.is_none_or(|n| n == p.new.size)
                && verify_consistency(
                    p.old.size,
                    p.new.size,
                    &hash(&p.old.root)?,
                    &hash(&p.new.root)?,
                    &hashes(&p.proof)?,
                );
            show(format, &p, |p| {
                println!("tree of {} events, head {}", p.old.size, p.old.root);
                println!("tree of {} events, head {}", p.new.size, p.new.root);
                for h in &p.proof {
                    println!("  {h}");
                }
                println!(
                    "{}",
                    if holds { "the first is a prefix of the second: verified" } else { "PROOF DOES NOT VERIFY" }
                );
            });
            if !holds {
                return Ok(ExitCode::from(3));
            }
        }
        AuditCmd::Checkpoint { now, key } => {
            let v: CheckpointView = if now {
                c.send(c.request(reqwest::Method::POST, "/v1/audit/checkpoint")).await?
            } else {
                c.get("/v1/audit/checkpoint", &[]).await?
            };
            let trusted = key.is_some();
            let key = VerifierKey::parse(key.as_deref().unwrap_or(&v.key)).context("the log's key")?;
            let holds = checkpoint_holds(&v, &key);
            show(format, &v, |v| {
                print!("{}", v.note);
                println!("{} events, head {}, signed {}", v.size, v.root, v.signed_at);
                for c in &v.cosignatures {
                    println!("  cosigned by {} at {}", c.witness, c.time);
                }
                if let Some(reason) = &v.accepted {
                    println!("  signed after an operator accepted a rolled-back log: {reason}");
                }
                if let Some(why) = &v.rollback {
                    println!("WRITES ARE REFUSED: {why}");
                }
                println!(
                    "{}",
                    match (holds, trusted) {
                        (true, true) => "signature verified with the key given",
                        (true, false) => "signature verified with the key the server states (give --key to check against one you trust)",
                        (false, _) => "SIGNATURE DOES NOT VERIFY",
                    }
                );
            });
            if !holds {
                return Ok(ExitCode::from(3));
            }
        }
        AuditCmd::Accept { reason } => {
            let v: CheckpointView = c
                .send(
                    c.request(reqwest::Method::POST, "/v1/audit/accept").json(&serde_json::json!({ "reason": reason })),
                )
                .await?;
            show(format, &v, |v| println!("accepted: writes resume; checkpoint of {} events signed", v.size));
        }
        AuditCmd::Tail { .. } | AuditCmd::Verify { .. } | AuditCmd::Export { .. } | AuditCmd::Evidence { .. } => {
            anyhow::bail!("not a tree command")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the checkpoint's note is signed by `key` and states the size and root shown.
fn checkpoint_holds(v: &CheckpointView, key: &VerifierKey) -> bool {
    let Ok((text, _)) = rekey_tlog::note::open(&v.note, key) else { return false };
    Checkpoint::parse(text).is_ok_and(|c| c.origin == key.name && c.size == v.size && hex::encode(c.root) == v.root)
}
