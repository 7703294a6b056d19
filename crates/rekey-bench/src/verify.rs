//! `rekey-bench verify`: the offline verification of an audit export of N events
//! (`rekey_core::evidence::verify_export`: the checkpoint's signature, then every event's leaf
//! appended to the tree from the export's edge and the head compared with the checkpoint's
//! root), on one thread, against reading and parsing the same JSON lines and nothing else, the
//! floor of any verifier of this format.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use rekey_core::evidence::{record_of, verify_export, Start, CHECKPOINT_FILE, EVENTS_FILE, START_FILE};
use rekey_core::views::AuditEventView;
use rekey_crypto::SigningKey;
use rekey_tlog::{leaf_hash, note, Checkpoint, Frontier, VerifierKey};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Writes an export of `events` events to `dir`; answers the log's key.
fn write_export(dir: &std::path::Path, events: u64) -> Result<VerifierKey> {
    let start = rekey_types::Timestamp::now().as_micros();
    let mut frontier = Frontier::new();
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join(EVENTS_FILE))?);
    for i in 0..events {
        let mut record = crate::audit_event(i as usize);
        record.seq = i as i64 + 1;
        record.time = rekey_types::Timestamp::from_micros(start + i as i64);
        frontier.push(leaf_hash(&record.canonical_bytes()));
        let view = AuditEventView {
            seq: record.seq,
            time: record.time,
            principal: record.principal,
            action: record.action,
            resource: record.resource,
            outcome: record.outcome.as_str().to_owned(),
            source: record.source,
            request_id: record.request_id,
            detail: record.detail,
            mac: "00".repeat(32),
        };
        serde_json::to_writer(&mut out, &view)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    let key = SigningKey::generate()?;
    let vkey = VerifierKey::new("bench/audit", key.public())?;
    let text = Checkpoint { origin: vkey.name.clone(), size: events, root: frontier.root(), extensions: vec![] }.text();
    std::fs::write(dir.join(CHECKPOINT_FILE), note::sign(&text, &vkey, |m| key.sign(m))?)?;
    std::fs::write(dir.join(START_FILE), serde_json::to_string(&Start { size: 0, edge: vec![] })?)?;
    Ok(vkey)
}

/// Reads and parses every line, and makes each record: what a verifier must do before hashing.
fn parse_only(dir: &std::path::Path) -> Result<u64> {
    let mut n = 0;
    let mut line = String::new();
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(dir.join(EVENTS_FILE))?);
    while reader.read_line(&mut line)? > 0 {
        let view: AuditEventView = serde_json::from_str(&line)?;
        std::hint::black_box(record_of(&view).map_err(anyhow::Error::msg)?);
        line.clear();
        n += 1;
    }
    Ok(n)
}

pub(crate) fn run(events: u64, samples: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let writing = Instant::now();
    let key = write_export(dir.path(), events)?;
    let bytes = std::fs::metadata(dir.path().join(EVENTS_FILE))?.len();
    println!(
        "export of {events} events ({} MB) written in {:.1} s",
        bytes / 1_000_000,
        writing.elapsed().as_secs_f64()
    );
    let (mut verify, mut parse) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let t = Instant::now();
        ensure!(parse_only(dir.path())? == events);
        parse.push(t.elapsed());
        let t = Instant::now();
        let report = verify_export(dir.path(), &key, &[])?;
        verify.push(t.elapsed());
        ensure!(report.events == events && report.size == events, "the export verified {} events", report.events);
    }
    let (v, p) = (median(verify), median(parse));
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    println!("one thread, median of {samples} runs (each alternating with the baseline):");
    println!("  parse only (baseline): {:>9.0} events/s ({:.2} s)", rate(p), p.as_secs_f64());
    println!("  verify_export:         {:>9.0} events/s ({:.2} s)", rate(v), v.as_secs_f64());
    println!("  verify / parse time:   {:.2}", v.as_secs_f64() / p.as_secs_f64());
    Ok(())
}
