//! `rekey-bench proofs`: inclusion and consistency proofs of the audit log's Merkle tree on a log
//! of N events (SQLite), against a point read of one event by its sequence number, the floor of
//! any read of the log. A proof is built as the server builds one: the complete subtrees it needs
//! (`rekey_tlog::tree::nodes_needed`), read from the store in one call, then assembled and
//! checked with the RFC 6962 verifier.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use rekey_store::{with_tree_nodes, SqlStore, Store, StoreOptions, WriteRequest};
use rekey_tlog::tree::{consistency_proof, inclusion_proof, root, verify_consistency, verify_inclusion};

/// Events per write while the log is filled.
const FILL_BATCH: usize = 20_000;

/// A stand-in chain MAC: the proofs do not read it.
fn chain(prev: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    let mut out = *prev;
    out[0] ^= bytes.len() as u8;
    out
}

/// A small deterministic generator (xorshift), so that runs pick the same events.
struct Picks(u64);

impl Picks {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

pub(crate) async fn run(events: u64, samples: usize, data: Option<PathBuf>) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = data.unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("proofs.db").display());
    let store = SqlStore::open(&StoreOptions { url, max_connections: 4 }).await?;
    let mut size = store.tree_head().await?.size;
    let filling = Instant::now();
    let filled_from = size;
    while size < events {
        let n = FILL_BATCH.min((events - size) as usize);
        let requests =
            (0..n as u64).map(|i| WriteRequest { op: None, audit: crate::audit_event((size + i) as usize) }).collect();
        store.apply(requests, Arc::new(chain)).await?;
        size += n as u64;
    }
    if size > filled_from {
        let secs = filling.elapsed().as_secs_f64();
        println!(
            "filled {} events in {secs:.0} s ({:.0} events/s, leaves and nodes included)",
            size - filled_from,
            (size - filled_from) as f64 / secs
        );
    }
    let head = store.tree_head().await?;
    ensure!(head.size >= events, "the log holds {} events", head.size);

    let mut picks = Picks(0x9e37_79b9_7f4a_7c15);
    // Baseline: one event read by its sequence number.
    let mut point = Vec::with_capacity(samples);
    for _ in 0..samples {
        let seq = picks.below(head.size) as i64 + 1;
        let t = Instant::now();
        let e = store.audit_page(seq - 1, 1).await?;
        point.push(t.elapsed());
        ensure!(e.first().map(|e| e.record.seq) == Some(seq), "event {seq}");
    }
    // An inclusion proof against the current head, checked.
    let mut inclusion = Vec::with_capacity(samples);
    let mut hashes = 0;
    for _ in 0..samples {
        let index = picks.below(head.size);
        let t = Instant::now();
        let proof = with_tree_nodes(&store, |src| inclusion_proof(index, head.size, src)).await??;
        let leaf = store.tree_nodes(vec![rekey_tlog::Node { level: 0, index }]).await?[0];
        inclusion.push(t.elapsed());
        hashes = proof.len();
        ensure!(verify_inclusion(index, head.size, &leaf, &proof, &head.root), "proof of leaf {index}");
    }
    // A consistency proof from a random older size, with that size's head, checked.
    let mut consistency = Vec::with_capacity(samples);
    for _ in 0..samples {
        let old = picks.below(head.size - 1) + 1;
        let t = Instant::now();
        let old_root = with_tree_nodes(&store, |src| root(old, src)).await??;
        let proof = with_tree_nodes(&store, |src| consistency_proof(old, head.size, src)).await??;
        consistency.push(t.elapsed());
        ensure!(verify_consistency(old, head.size, &old_root, &head.root, &proof), "{old} → {}", head.size);
    }
    let (p50, p99) = median(point);
    let (i50, i99) = median(inclusion);
    let (c50, c99) = median(consistency);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("Audit tree proofs on a log of {} events (SQLite), {samples} samples each, medians and p99", head.size);
    println!("{:<52} {:>8.3} ms  p99 {:>8.3} ms", "one event by sequence number (baseline)", ms(p50), ms(p99));
    println!(
        "{:<52} {:>8.3} ms  p99 {:>8.3} ms   ({hashes} hashes)",
        "inclusion proof, read and verified",
        ms(i50),
        ms(i99)
    );
    println!(
        "{:<52} {:>8.3} ms  p99 {:>8.3} ms",
        "consistency proof and the old head, read and verified",
        ms(c50),
        ms(c99)
    );
    println!(
        "  ratio inclusion / point read: {:.1}   (target: a proof under 10 ms at 10,000,000 events)",
        ms(i50) / ms(p50)
    );
    Ok(())
}
