//! The group-commit writer: owns all writes to the store.
//!
//! Requests queue on a channel; the writer takes everything waiting (up to [`MAX_BATCH`]),
//! applies it in one transaction together with the audit events and commits once. A second
//! step makes committed batches durable (one fsync of SQLite's WAL) and only then answers each
//! request, while the first applies the next batch. Many concurrent requests therefore share
//! one commit and one sync, and no request is answered before its audit event is on disk. If
//! the commit or the sync fails, every request in the batch gets [`WriteFailed`] and is refused
//! by its use case (fail closed).
//!
//! On SQLite, whose writes are blocking calls, the two steps run on two threads of their own
//! (`rekey-audit-writer`, `rekey-audit-sync`), so that a batch does not hop to a blocking
//! thread and back twice on its way to the disk. On PostgreSQL, whose commits are durable when
//! they return, they are tasks on the async runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rekey_crypto::AuditKey;
use rekey_store::{BlockingWrites, ChainFn, OpResult, Store, WriteRequest};
use tokio::sync::{mpsc, oneshot};

/// Most requests committed in one transaction.
pub const MAX_BATCH: usize = 1024;
const QUEUE: usize = 16 * 1024;

/// The batch this request was in could not be committed.
#[derive(Debug, Clone, Copy)]
pub struct WriteFailed;

struct Job {
    request: WriteRequest,
    reply: oneshot::Sender<Result<OpResult, WriteFailed>>,
}

pub use crate::stats::WriterStats;

/// The audit writer's handle: every write and its audit event go to one task that commits them in groups, one fsync per group.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
    tap: Arc<super::tap::Tap>,
}

impl Writer {
    /// Starts the writer: on threads of its own where the store offers blocking writes
    /// (SQLite), as tasks on the current runtime otherwise. Fails only if a thread cannot be
    /// started.
    pub fn spawn(
        store: Arc<dyn Store>,
        key: Arc<AuditKey>,
        head_seq: i64,
        stats: Option<Arc<WriterStats>>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = stats.unwrap_or_default();
        stats.head_seq.store(head_seq, Ordering::SeqCst);
        let chain: Arc<ChainFn> = Arc::new(move |prev: &[u8; 32], bytes: &[u8]| key.chain(prev, bytes));
        let tap = Arc::new(super::tap::Tap::default());
        let done = Done { stats: stats.clone(), tap: tap.clone() };
        match store.blocking_writes() {
            Some(writes) => start_threads(Arc::from(writes), chain, rx, done)?,
            None => drop(tokio::spawn(run(store, chain, rx, done))),
        }
        Ok(Self { tx, stats, tap })
    }

    /// The events this writer committed lately (see `tap`).
    pub(crate) fn tap(&self) -> &Arc<super::tap::Tap> {
        &self.tap
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Queues a write and waits until it is durable (or failed).
    pub async fn submit(&self, request: WriteRequest) -> Result<OpResult, WriteFailed> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job { request, reply }).await.map_err(|_| WriteFailed)?;
        rx.await.map_err(|_| WriteFailed)?
    }

    /// Queues several writes in order (they usually share one commit) and waits for all. Each
    /// is applied in its own savepoint, as any two requests are: a later one that depends on an
    /// earlier one that failed fails too.
    pub async fn submit_all(&self, requests: Vec<WriteRequest>) -> Result<Vec<OpResult>, WriteFailed> {
        let mut waiting = Vec::with_capacity(requests.len());
        for request in requests {
            let (reply, rx) = oneshot::channel();
            self.tx.send(Job { request, reply }).await.map_err(|_| WriteFailed)?;
            waiting.push(rx);
        }
        let mut results = Vec::with_capacity(waiting.len());
        for rx in waiting {
            results.push(rx.await.map_err(|_| WriteFailed)??);
        }
        Ok(results)
    }
}

/// Where a durable batch is counted and published.
#[derive(Clone)]
struct Done {
    stats: Arc<WriterStats>,
    tap: Arc<super::tap::Tap>,
}

/// Batches applied but not yet durable, at most. The next batch is applied while the previous
/// one syncs; beyond that the writer waits, and requests gather into a larger batch.
const UNSYNCED: usize = 2;

type Reply = oneshot::Sender<Result<OpResult, WriteFailed>>;

/// A committed batch waiting for its sync.
struct Unsynced {
    replies: Vec<Reply>,
    applied: rekey_store::Applied,
    /// The async writer's place among the [`UNSYNCED`] batches (the threads count with their
    /// channel instead).
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The writer on two threads, for a store whose writes block (SQLite). The channel between
/// them holds no batch: the writer thread hands a batch over only when the sync thread takes
/// it, so at most [`UNSYNCED`] batches (one syncing, one applied and waiting to be taken) are
/// not yet durable, as with the async writer, and requests gather meanwhile into the next.
fn start_threads(
    writes: Arc<dyn BlockingWrites>,
    chain: Arc<ChainFn>,
    mut rx: mpsc::Receiver<Job>,
    done: Done,
) -> std::io::Result<()> {
    let stats = done.stats.clone();
    const _: () = assert!(UNSYNCED == 2, "one batch syncing and one handed over");
    let failed = Arc::new(AtomicBool::new(false));
    let (synced_tx, synced_rx) = std::sync::mpsc::sync_channel::<Unsynced>(0);
    std::thread::Builder::new().name("rekey-audit-sync".into()).spawn({
        let (writes, done, failed) = (writes.clone(), done.clone(), failed.clone());
        move || {
            while let Ok(batch) = synced_rx.recv() {
                let synced = !failed.load(Ordering::SeqCst) && synced_or_failed(writes.sync(), &failed);
                answer(vec![batch], synced, &done);
            }
        }
    })?;
    std::thread::Builder::new().name("rekey-audit-writer".into()).spawn(move || {
        let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
        while rx.blocking_recv_many(&mut jobs, MAX_BATCH) > 0 {
            let Some((requests, replies)) = take_batch(&mut jobs, &failed, &stats) else { continue };
            match writes.apply_unsynced(&requests, &*chain) {
                // Should the sync thread be gone, the replies are dropped with the batch, and
                // their requests refused.
                Ok(applied) => {
                    if synced_tx.send(Unsynced { replies, applied, _slot: None }).is_err() {
                        return;
                    }
                }
                Err(e) => not_committed(&e, replies, &stats),
            }
        }
    })?;
    Ok(())
}

/// The requests received and their replies, unless an earlier sync failed: then they are
/// refused here.
fn take_batch(
    jobs: &mut Vec<Job>,
    failed: &AtomicBool,
    stats: &WriterStats,
) -> Option<(Vec<WriteRequest>, Vec<Reply>)> {
    let (requests, replies): (Vec<WriteRequest>, Vec<Reply>) = jobs.drain(..).map(|j| (j.request, j.reply)).unzip();
    if failed.load(Ordering::SeqCst) {
        stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        refuse(replies);
        return None;
    }
    Some((requests, replies))
}

/// Logs a batch that could not be committed, and refuses its requests.
fn not_committed(e: &rekey_store::StoreError, replies: Vec<Reply>, stats: &WriterStats) {
    stats.failed_batches.fetch_add(1, Ordering::Relaxed);
    tracing::error!(error = %e, source = ?std::error::Error::source(e), requests = replies.len(),
        "audit batch could not be committed; refusing its requests");
    refuse(replies);
}

/// Whether a sync succeeded; a failed one is logged and sets `failed` for good.
fn synced_or_failed(result: Result<(), rekey_store::StoreError>, failed: &AtomicBool) -> bool {
    match result {
        Ok(()) => true,
        Err(e) => {
            failed.store(true, Ordering::SeqCst);
            tracing::error!(error = %e, source = ?std::error::Error::source(&e),
                "the store could not make committed writes durable; refusing every write until restart");
            false
        }
    }
}

/// Answers the requests of synced batches (and publishes their events), or refuses them if the
/// sync failed.
fn answer(batches: Vec<Unsynced>, synced: bool, done: &Done) {
    let stats = &done.stats;
    for batch in batches {
        if !synced {
            stats.failed_batches.fetch_add(1, Ordering::Relaxed);
            refuse(batch.replies);
            continue;
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.events.fetch_add(batch.replies.len() as u64, Ordering::Relaxed);
        stats.head_seq.fetch_max(batch.applied.last_seq, Ordering::SeqCst);
        for (reply, result) in batch.replies.into_iter().zip(batch.applied.results) {
            let _ = reply.send(Ok(result));
        }
        done.tap.publish(batch.applied.records);
    }
}

async fn run(store: Arc<dyn Store>, chain: Arc<ChainFn>, mut rx: mpsc::Receiver<Job>, done: Done) {
    let slots = Arc::new(tokio::sync::Semaphore::new(UNSYNCED));
    let failed = Arc::new(AtomicBool::new(false));
    let (synced_tx, synced_rx) = mpsc::unbounded_channel();
    let stats = done.stats.clone();
    tokio::spawn(sync(store.clone(), synced_rx, done, failed.clone()));
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        if rx.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        let Some((requests, replies)) = take_batch(&mut jobs, &failed, &stats) else { continue };
        match store.apply_unsynced(requests, chain.clone()).await {
            Ok(applied) => {
                let _ = synced_tx.send(Unsynced { replies, applied, _slot: Some(slot) });
            }
            Err(e) => not_committed(&e, replies, &stats),
        }
    }
}

/// Syncs committed batches, as many as are waiting at once, and only then answers their
/// requests. A failed sync may have lost them, and the disk can no longer be trusted to hold
/// later ones: every request from then on is refused until the server restarts.
async fn sync(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Unsynced>, done: Done, failed: Arc<AtomicBool>) {
    let mut waiting = Vec::new();
    while rx.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        let synced = !failed.load(Ordering::SeqCst) && synced_or_failed(store.sync().await, &failed);
        answer(std::mem::take(&mut waiting), synced, &done);
    }
}

fn refuse(replies: Vec<Reply>) {
    for reply in replies {
        let _ = reply.send(Err(WriteFailed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_store::{SqlStore, StoreOptions};
    use rekey_types::{AuditOutcome, AuditRecord, Timestamp};

    fn event() -> WriteRequest {
        let audit = AuditRecord {
            seq: 0,
            time: Timestamp::now(),
            principal: "test".into(),
            action: "test".into(),
            resource: String::new(),
            outcome: AuditOutcome::Success,
            source: "127.0.0.1".into(),
            request_id: "r".into(),
            detail: String::new(),
        };
        WriteRequest { op: None, audit }
    }

    /// A flush that fails refuses its requests and every request after it, even once the disk
    /// would take writes again: it may have lost what it was flushing.
    #[tokio::test]
    async fn a_failed_flush_refuses_its_batch_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let store = SqlStore::open(&StoreOptions { url: format!("sqlite://{}", db.display()), max_connections: 2 })
            .await
            .unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let writer = Writer::spawn(store.clone(), Arc::new(AuditKey::generate().unwrap()), 0, None).unwrap();
        assert!(matches!(writer.submit(event()).await, Ok(Ok(_))));
        let committed = writer.stats().head_seq.load(Ordering::SeqCst);
        assert_eq!(committed, 1);
        // The WAL file vanishes from the folder (SQLite keeps writing to its open handle), so
        // the next flush, which opens it by name, fails.
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::rename(&wal, dir.path().join("moved-wal")).unwrap();
        assert!(writer.submit(event()).await.is_err(), "the batch whose flush failed is refused");
        std::fs::rename(dir.path().join("moved-wal"), &wal).unwrap();
        assert!(writer.submit(event()).await.is_err(), "every later write is refused");
        assert!(store.sync().await.is_err(), "the store refuses to flush again");
        assert_eq!(writer.stats().head_seq.load(Ordering::SeqCst), committed, "nothing refused counts as committed");
        assert!(writer.stats().failed_batches.load(Ordering::Relaxed) >= 2);
    }
}
