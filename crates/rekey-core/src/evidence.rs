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
use rekey_tlog::tenants::{from_extensions, map_leaf, memory_source, TenantLog};
use rekey_tlog::tree::{inclusion_proof, root, verify_inclusion};
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
/// The proof that the evidence's events are all of the tenant's since the first.
pub const TENANT_FILE: &str = "tenant.json";

/// `tenant.json`: where a tenant's listed events sit in its own log, and that log's place in the
/// checkpoint's tenant map (docs/audit.md, "Evidence for a tenant").
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantLogProof {
    /// The tenant.
    pub tenant: String,
    /// Events in the tenant's log at the checkpoint.
    pub size: u64,
    /// The index in the tenant's log of the first event listed.
    pub start: u64,
    /// The right edge of the tree of the tenant's first `start` events, hex.
    pub edge: Vec<String>,
    /// The tenant's leaf index in the map.
    pub map_index: u64,
    /// Tenants in the map.
    pub map_size: u64,
    /// The inclusion proof of the tenant's leaf in the map, hex.
    pub map_proof: Vec<String>,
}

/// The proof for `tenant`, whose log's leaves up to the checkpoint are `leaves` and whose
/// listed events start at `start`, if `logs` (the map's entries) are the map the checkpoint
/// `note` carries and hold the tenant's log as `leaves` make it. `None` otherwise.
pub fn tenant_log_proof(
    tenant: &str,
    leaves: &[Hash],
    start: usize,
    logs: &[TenantLog],
    note_text: &str,
) -> Option<TenantLogProof> {
    let (text, _) = note::parse(note_text).ok()?;
    let (map_size, map_root) = from_extensions(&Checkpoint::parse(text).ok()?.extensions)?;
    let map_leaves: Vec<Hash> = logs.iter().map(map_leaf).collect();
    let head = root(map_leaves.len() as u64, memory_source(&map_leaves)).ok()?;
    if head != map_root || map_leaves.len() as u64 != map_size {
        return None;
    }
    let index = logs.iter().position(|l| l.name == tenant)?;
    let mut frontier = Frontier::new();
    let mut edge = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        if i == start {
            edge = frontier.edge().to_vec();
        }
        frontier.push(*leaf);
    }
    if start == leaves.len() {
        edge = frontier.edge().to_vec();
    }
    if logs[index].size != frontier.size() || logs[index].root != frontier.root() {
        return None;
    }
    let proof = inclusion_proof(index as u64, map_size, memory_source(&map_leaves)).ok()?;
    Some(TenantLogProof {
        tenant: tenant.to_owned(),
        size: frontier.size(),
        start: start as u64,
        edge: edge.iter().map(hex::encode).collect(),
        map_index: index as u64,
        map_size,
        map_proof: proof.iter().map(hex::encode).collect(),
    })
}

/// Checks that `events` (each a leaf of the tenant's log, in order) are every event of the
/// tenant's log from `proof.start` to its end, and that the log is the one the checkpoint's
/// tenant map holds.
fn check_tenant_log(
    proof: &TenantLogProof,
    checkpoint: &Checkpoint,
    events: &[AuditEventView],
) -> Result<(), ExportError> {
    let (map_size, map_root) = from_extensions(&checkpoint.extensions)
        .ok_or_else(|| ExportError::Format("the checkpoint carries no tenant map".into()))?;
    let edge = proof.edge.iter().map(|h| hash(h)).collect::<Result<Vec<_>, _>>()?;
    let mut frontier = Frontier::from_edge(proof.start, edge)
        .ok_or_else(|| ExportError::Format(format!("{TENANT_FILE}: the edge does not fit its start")))?;
    for e in events {
        if rekey_types::audit::tenant_of(&e.resource) != Some(proof.tenant.as_str()) {
            return Err(ExportError::Mismatch(format!("event {} is not about {}", e.seq, proof.tenant)));
        }
        frontier.push(leaf_hash(&record_of(e).map_err(ExportError::Format)?.canonical_bytes()));
    }
    let log = TenantLog { name: proof.tenant.clone(), size: frontier.size(), root: frontier.root() };
    if log.size != proof.size {
        return Err(ExportError::Mismatch(format!(
            "the tenant's log holds {} events at the checkpoint; the list reaches {}",
            proof.size, log.size
        )));
    }
    let map_proof = proof.map_proof.iter().map(|h| hash(h)).collect::<Result<Vec<_>, _>>()?;
    if proof.map_size != map_size
        || !verify_inclusion(proof.map_index, map_size, &map_leaf(&log), &map_proof, &map_root)
    {
        return Err(ExportError::Mismatch(
            "the listed events are not the tenant's log the checkpoint commits to: one is missing, added or changed"
                .into(),
        ));
    }
    Ok(())
}

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
    /// Tenants in the checkpoint's tenant map, when it was rebuilt from the events and matched.
    pub tenant_map: Option<u64>,
    /// The tenant whose evidence was shown complete: every event about it from the first
    /// listed to the checkpoint.
    pub complete_for: Option<String>,
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
        complete_for: None,
        tenant_map: None,
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
        // From the first event, every tenant's own log is rebuilt too, and the checkpoint's
        // tenant map checked against it.
        let mut tenants: Option<std::collections::BTreeMap<String, Frontier>> =
            (start.size == 0 && from_extensions(&checkpoint.extensions).is_some()).then(Default::default);
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
            let leaf = leaf_hash(&record.canonical_bytes());
            frontier.push(leaf);
            if let (Some(tenants), Some(tenant)) = (tenants.as_mut(), rekey_types::audit::tenant_of(&record.resource)) {
                match tenants.get_mut(tenant) {
                    Some(f) => drop(f.push(leaf)),
                    None => {
                        let mut f = Frontier::new();
                        f.push(leaf);
                        tenants.insert(tenant.to_owned(), f);
                    }
                }
            }
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
        if let (Some(tenants), Some((map_size, map_root))) = (tenants, from_extensions(&checkpoint.extensions)) {
            // BTreeMap order is the byte order of the names.
            let logs: Vec<TenantLog> =
                tenants.into_iter().map(|(name, f)| TenantLog { name, size: f.size(), root: f.root() }).collect();
            let leaves: Vec<Hash> = logs.iter().map(map_leaf).collect();
            let head = root(leaves.len() as u64, memory_source(&leaves)).unwrap_or_else(|e| match e {});
            if leaves.len() as u64 != map_size || head != map_root {
                return Err(ExportError::Mismatch(
                    "the checkpoint's tenant map is not the one these events make: a tenant's log was misstated".into(),
                ));
            }
            report.tenant_map = Some(map_size);
        }
    }
    if dir.join(EVIDENCE_FILE).exists() {
        let file =
            std::fs::File::open(dir.join(EVIDENCE_FILE)).map_err(|e| ExportError::Io(EVIDENCE_FILE.into(), e))?;
        let mut listed = Vec::new();
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
            listed.push(proven.event);
        }
        if dir.join(TENANT_FILE).exists() {
            let proof: TenantLogProof = serde_json::from_str(&read(dir, TENANT_FILE)?)
                .map_err(|e| ExportError::Format(format!("{TENANT_FILE}: {e}")))?;
            check_tenant_log(&proof, &checkpoint, &listed)?;
            report.complete_for = Some(proof.tenant);
        }
    }
    if report.events == 0 && report.proven == 0 && !dir.join(EVENTS_FILE).exists() {
        return Err(ExportError::Format(format!("neither {EVENTS_FILE} nor {EVIDENCE_FILE} is in the export")));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use rekey_crypto::SigningKey;
    use rekey_tlog::tenants::extension_line;
    use rekey_types::Timestamp;

    use super::*;

    fn view(seq: i64, resource: &str) -> AuditEventView {
        AuditEventView {
            seq,
            time: Timestamp::from_micros(1_700_000_000_000_000 + seq),
            principal: "token:x".into(),
            action: "cred.reveal".into(),
            resource: resource.into(),
            outcome: "success".into(),
            source: "10.0.0.1".into(),
            request_id: format!("r{seq}"),
            detail: String::new(),
            mac: String::new(),
        }
    }

    /// Writes an export of `events` whose checkpoint states the tenant map of `map_events`.
    fn export(dir: &Path, events: &[AuditEventView], map_events: &[AuditEventView]) -> VerifierKey {
        let mut frontier = Frontier::new();
        for e in events {
            frontier.push(leaf_hash(&record_of(e).unwrap().canonical_bytes()));
        }
        let mut tenants: std::collections::BTreeMap<String, Frontier> = Default::default();
        for e in map_events {
            if let Some(t) = rekey_types::audit::tenant_of(&e.resource) {
                tenants.entry(t.to_owned()).or_default().push(leaf_hash(&record_of(e).unwrap().canonical_bytes()));
            }
        }
        let logs: Vec<TenantLog> =
            tenants.into_iter().map(|(name, f)| TenantLog { name, size: f.size(), root: f.root() }).collect();
        let leaves: Vec<Hash> = logs.iter().map(map_leaf).collect();
        let map_root = root(leaves.len() as u64, memory_source(&leaves)).unwrap();
        let key = SigningKey::generate().unwrap();
        let vkey = VerifierKey::new("test/audit", key.public()).unwrap();
        let text = Checkpoint {
            origin: vkey.name.clone(),
            size: frontier.size(),
            root: frontier.root(),
            extensions: vec![extension_line(leaves.len() as u64, &map_root)],
        }
        .text();
        std::fs::write(dir.join(CHECKPOINT_FILE), note::sign(&text, &vkey, |m| key.sign(m)).unwrap()).unwrap();
        std::fs::write(dir.join(START_FILE), r#"{"size":0,"edge":[]}"#).unwrap();
        let lines: String = events.iter().map(|e| serde_json::to_string(e).unwrap() + "\n").collect();
        std::fs::write(dir.join(EVENTS_FILE), lines).unwrap();
        vkey
    }

    /// A checkpoint whose tenant map leaves out an event about a tenant (a server hiding a
    /// read from that tenant's evidence) fails the full export's check.
    #[test]
    fn a_misstated_tenant_map_fails_the_full_export() {
        let events = [view(1, "tenant:acme"), view(2, "acme/ldap"), view(3, "other/x"), view(4, "acme@2")];
        let dir = tempfile::tempdir().unwrap();
        let key = export(dir.path(), &events, &events);
        let report = verify_export(dir.path(), &key, &[]).unwrap();
        assert_eq!((report.events, report.tenant_map), (4, Some(2)));
        let hidden = [events[0].clone(), events[2].clone(), events[3].clone()];
        let key = export(dir.path(), &events, &hidden);
        let err = verify_export(dir.path(), &key, &[]).unwrap_err();
        assert!(err.to_string().contains("tenant map"), "{err}");
    }
}
