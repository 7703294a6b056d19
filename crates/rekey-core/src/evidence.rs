//! Audit exports that anyone can check offline, with the log's public key and nothing else
//! (docs/audit.md, "Exports"): the files of an export, and the verifier.
//!
//! An export directory holds:
//!
//! - `checkpoint.note`: a signed checkpoint (with any witness cosignature lines) of `N` events;
//! - `start.json`: `{"size": S, "edge": [hex, …]}`, the right edge of the tree of the first `S`
//!   events (empty for `S = 0`);
//! - `events.jsonl`: the events `S+1 ..= N`, one JSON object per line, as `audit events` shows
//!   them.
//!
//! The verifier opens the checkpoint with the key, rebuilds the tree from the edge and the
//! leaves of the events in order, and compares its head with the checkpoint's root: equal only
//! if every event is the one the log held, none is missing, none added and none reordered.
//!
//! An evidence file (`evidence.jsonl`, from `audit evidence`) holds some events each with its
//! inclusion proof against the checkpoint instead; each proof is checked on its own.

use std::io::{BufRead, BufReader};
use std::path::Path;

use rekey_tlog::cosignature::verify_lines;
use rekey_tlog::tree::verify_inclusion;
use rekey_tlog::{leaf_hash, note, Checkpoint, Frontier, Hash, VerifierKey};
use rekey_types::{AuditOutcome, AuditRecord};
use serde::{Deserialize, Serialize};

use crate::views::AuditEventView;

/// The signed checkpoint of an export.
pub const CHECKPOINT_FILE: &str = "checkpoint.note";
/// Where the export's events start.
pub const START_FILE: &str = "start.json";
/// The export's events.
pub const EVENTS_FILE: &str = "events.jsonl";
/// Events with their inclusion proofs.
pub const EVIDENCE_FILE: &str = "evidence.jsonl";

/// `start.json`: the tree of the events before the export's first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// Events before the export's first.
    pub size: u64,
    /// Their tree's right edge, largest subtree first, hex.
    pub edge: Vec<String>,
}

/// One line of `evidence.jsonl`: an event and its inclusion proof against the checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvenEvent {
    /// The event.
    pub event: AuditEventView,
    /// The inclusion proof of its leaf (index `seq − 1`) in the checkpoint's tree, hex.
    pub proof: Vec<String>,
}

/// Why an export does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file is missing or unreadable.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A file is not in the export format.
    #[error("{0}")]
    Format(String),
    /// The checkpoint is not signed by the key, or a witness's cosignature does not verify.
    #[error("the checkpoint: {0}")]
    Signature(String),
    /// The events do not hash to the checkpoint's root: one was changed, removed, added or
    /// moved.
    #[error("{0}")]
    Mismatch(String),
}

/// What a verified export showed.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The checkpoint's origin.
    pub origin: String,
    /// Events the checkpoint covers.
    pub size: u64,
    /// The tree head, hex.
    pub root: String,
    /// The first event in the export (`start + 1`).
    pub first_seq: u64,
    /// Events checked in `events.jsonl`.
    pub events: u64,
    /// Events checked with their own proofs in `evidence.jsonl`.
    pub proven: u64,
    /// Witnesses (of those given) whose cosignature verified, with the time each states.
    pub cosigned_by: Vec<(String, u64)>,
}

/// The record an event view states (its canonical bytes are the leaf's).
pub fn record_of(e: &AuditEventView) -> Result<AuditRecord, String> {
    Ok(AuditRecord {
        seq: e.seq,
        time: e.time,
        principal: e.principal.clone(),
        action: e.action.clone(),
        resource: e.resource.clone(),
        outcome: AuditOutcome::parse(&e.outcome).ok_or_else(|| format!("event {}: outcome {:?}", e.seq, e.outcome))?,
        source: e.source.clone(),
        request_id: e.request_id.clone(),
        detail: e.detail.clone(),
    })
}

fn hash(text: &str) -> Result<Hash, ExportError> {
    hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ExportError::Format(format!("{text:?} is not a SHA-256 hash in hex")))
}

fn read(dir: &Path, name: &str) -> Result<String, ExportError> {
    std::fs::read_to_string(dir.join(name)).map_err(|e| ExportError::Io(name.into(), e))
}

/// The checkpoint of an export, opened with `key` (its origin must be the key's name), and the
/// witnesses among `witnesses` whose cosignatures verify.
pub fn open_checkpoint(
    note_text: &str,
    key: &VerifierKey,
    witnesses: &[VerifierKey],
) -> Result<(Checkpoint, Vec<(String, u64)>), ExportError> {
    let (text, _) = note::open(note_text, key).map_err(|e| ExportError::Signature(e.to_string()))?;
    let checkpoint = Checkpoint::parse(text).map_err(|e| ExportError::Format(e.to_string()))?;
    if checkpoint.origin != key.name {
        return Err(ExportError::Signature(format!("its origin {:?} is not the key's name", checkpoint.origin)));
    }
    let lines: String = note_text.lines().filter(|l| l.starts_with('\u{2014}')).map(|l| format!("{l}\n")).collect();
    let cosigned = verify_lines(text, &lines, witnesses).map_err(|e| ExportError::Signature(e.to_string()))?;
    for w in witnesses {
        if !cosigned.iter().any(|(name, _)| name == &w.name) {
            return Err(ExportError::Signature(format!("no cosignature of the witness {}", w.name)));
        }
    }
    Ok((checkpoint, cosigned))
}

/// Verifies the export in `dir` with the log's key (and, if given, that each of `witnesses`
/// cosigned its checkpoint). Needs neither the server nor any secret key.
pub fn verify_export(dir: &Path, key: &VerifierKey, witnesses: &[VerifierKey]) -> Result<ExportReport, ExportError> {
    let (checkpoint, cosigned_by) = open_checkpoint(&read(dir, CHECKPOINT_FILE)?, key, witnesses)?;
    let mut report = ExportReport {
        origin: checkpoint.origin.clone(),
        size: checkpoint.size,
        root: hex::encode(checkpoint.root),
        first_seq: 0,
        events: 0,
        proven: 0,
        cosigned_by,
    };
    if dir.join(EVENTS_FILE).exists() {
        let start: Start = serde_json::from_str(&read(dir, START_FILE)?)
            .map_err(|e| ExportError::Format(format!("{START_FILE}: {e}")))?;
        let edge = start.edge.iter().map(|h| hash(h)).collect::<Result<Vec<_>, _>>()?;
        let mut frontier = Frontier::from_edge(start.size, edge).ok_or_else(|| {
            ExportError::Format(format!(
                "{START_FILE}: the edge of {} events has {} hashes",
                start.size,
                start.size.count_ones()
            ))
        })?;
        report.first_seq = start.size + 1;
        let file = std::fs::File::open(dir.join(EVENTS_FILE)).map_err(|e| ExportError::Io(EVENTS_FILE.into(), e))?;
        let mut line = String::new();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(|e| ExportError::Io(EVENTS_FILE.into(), e))? == 0 {
                break;
            }
            let event: AuditEventView = serde_json::from_str(&line)
                .map_err(|e| ExportError::Format(format!("{EVENTS_FILE} line {}: {e}", report.events + 1)))?;
            let expected = frontier.size() + 1;
            if u64::try_from(event.seq).ok() != Some(expected) {
                return Err(ExportError::Mismatch(format!(
                    "{EVENTS_FILE} line {}: event {} where event {expected} belongs",
                    report.events + 1,
                    event.seq
                )));
            }
            let record = record_of(&event).map_err(ExportError::Format)?;
            frontier.push(leaf_hash(&record.canonical_bytes()));
            report.events += 1;
        }
        if frontier.size() != checkpoint.size {
            return Err(ExportError::Mismatch(format!(
                "the export ends at event {}, the checkpoint covers {} events",
                frontier.size(),
                checkpoint.size
            )));
        }
        if frontier.root() != checkpoint.root {
            return Err(ExportError::Mismatch(
                "the events do not hash to the checkpoint's root: an event was changed, or the edge is wrong".into(),
            ));
        }
    }
    if dir.join(EVIDENCE_FILE).exists() {
        let file =
            std::fs::File::open(dir.join(EVIDENCE_FILE)).map_err(|e| ExportError::Io(EVIDENCE_FILE.into(), e))?;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| ExportError::Io(EVIDENCE_FILE.into(), e))?;
            let proven: ProvenEvent = serde_json::from_str(&line)
                .map_err(|e| ExportError::Format(format!("{EVIDENCE_FILE} line {}: {e}", n + 1)))?;
            let record = record_of(&proven.event).map_err(ExportError::Format)?;
            let proof = proven.proof.iter().map(|h| hash(h)).collect::<Result<Vec<_>, _>>()?;
            let index = u64::try_from(proven.event.seq - 1)
                .map_err(|_| ExportError::Format(format!("{EVIDENCE_FILE} line {}: seq", n + 1)))?;
            if !verify_inclusion(
                index,
                checkpoint.size,
                &leaf_hash(&record.canonical_bytes()),
                &proof,
                &checkpoint.root,
            ) {
                return Err(ExportError::Mismatch(format!(
                    "{EVIDENCE_FILE} line {}: event {} is not in the checkpoint's tree as shown",
                    n + 1,
                    proven.event.seq
                )));
            }
            report.proven += 1;
        }
    }
    if report.events == 0 && report.proven == 0 && !dir.join(EVENTS_FILE).exists() {
        return Err(ExportError::Format(format!("neither {EVENTS_FILE} nor {EVIDENCE_FILE} is in the export")));
    }
    Ok(report)
}
