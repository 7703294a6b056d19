//! The group-commit writer: one task that owns all writes to the store.
//!
//! Requests queue on a channel; the task takes everything waiting (up to [`MAX_BATCH`]), applies
//! it in one transaction together with the audit events and commits once. A second task makes
//! committed batches durable (one fsync of SQLite's WAL for all batches waiting) and only then
//! answers each request, while the first applies the next batch. Many concurrent requests
//! therefore share one commit and one sync, and no request is answered before its audit event
//! is on disk. If the commit or the sync fails, every request in the batch gets [`WriteFailed`]
//! and is refused by its use case (fail closed).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use rekey_crypto::AuditKey;
use rekey_store::{ChainFn, OpResult, Store, WriteRequest};
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

/// Counters for `/metrics`.
#[derive(Default, Debug)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub events: AtomicU64,
    pub failed_batches: AtomicU64,
    /// The highest audit sequence number this server has seen committed.
    pub head_seq: AtomicI64,
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
}

impl Writer {
    pub fn spawn(store: Arc<dyn Store>, key: Arc<AuditKey>, head_seq: i64, stats: Option<Arc<WriterStats>>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = stats.unwrap_or_default();
        stats.head_seq.store(head_seq, Ordering::SeqCst);
        tokio::spawn(run(store, key, rx, stats.clone()));
        Self { tx, stats }
    }

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

/// Batches applied but not yet durable, at most. The next batch is applied while the previous
/// one syncs; beyond that the writer waits, and requests gather into a larger batch.
const UNSYNCED: usize = 2;

/// A committed batch waiting for its sync.
struct Unsynced {
    replies: Vec<oneshot::Sender<Result<OpResult, WriteFailed>>>,
    applied: rekey_store::Applied,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

async fn run(store: Arc<dyn Store>, key: Arc<AuditKey>, mut rx: mpsc::Receiver<Job>, stats: Arc<WriterStats>) {
    let chain: Arc<ChainFn> = Arc::new(move |prev: &[u8; 32], bytes: &[u8]| key.chain(prev, bytes));
    let slots = Arc::new(tokio::sync::Semaphore::new(UNSYNCED));
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (synced_tx, synced_rx) = mpsc::unbounded_channel();
    tokio::spawn(sync(store.clone(), synced_rx, stats.clone(), failed.clone()));
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        if rx.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        let (requests, replies): (Vec<WriteRequest>, Vec<_>) = jobs.drain(..).map(|j| (j.request, j.reply)).unzip();
        let count = requests.len();
        if failed.load(Ordering::SeqCst) {
            stats.failed_batches.fetch_add(1, Ordering::Relaxed);
            refuse(replies);
            continue;
        }
        match store.apply_unsynced(requests, chain.clone()).await {
            Ok(applied) => {
                let _ = synced_tx.send(Unsynced { replies, applied, _slot: slot });
            }
            Err(e) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), requests = count,
                    "audit batch could not be committed; refusing its requests");
                refuse(replies);
            }
        }
    }
}

/// Syncs committed batches, as many as are waiting at once, and only then answers their
/// requests. A failed sync may have lost them, and the disk can no longer be trusted to hold
/// later ones: every request from then on is refused until the server restarts.
async fn sync(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Unsynced>,
    stats: Arc<WriterStats>,
    failed: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut waiting = Vec::new();
    while rx.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        let synced = if failed.load(Ordering::SeqCst) {
            false
        } else {
            match store.sync().await {
                Ok(()) => true,
                Err(e) => {
                    failed.store(true, Ordering::SeqCst);
                    tracing::error!(error = %e, source = ?std::error::Error::source(&e),
                        "the store could not make committed writes durable; refusing every write until restart");
                    false
                }
            }
        };
        for batch in waiting.drain(..) {
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
        }
    }
}

fn refuse(replies: Vec<oneshot::Sender<Result<OpResult, WriteFailed>>>) {
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
        let writer = Writer::spawn(store.clone(), Arc::new(AuditKey::generate().unwrap()), 0, None);
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
