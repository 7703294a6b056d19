//! The group-commit writer: one task that owns all writes to the store.
//!
//! Requests queue on a channel; the task takes everything waiting (up to [`MAX_BATCH`]), applies
//! it in one transaction together with the audit events, commits once (one fsync for SQLite),
//! and then answers each request. Many concurrent requests therefore share one durable commit,
//! and no request is answered before its audit event is on disk. If the commit fails, every
//! request in the batch gets [`WriteFailed`] and is refused by its use case (fail closed).

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

async fn run(store: Arc<dyn Store>, key: Arc<AuditKey>, mut rx: mpsc::Receiver<Job>, stats: Arc<WriterStats>) {
    let chain: Arc<ChainFn> = Arc::new(move |prev: &[u8; 32], bytes: &[u8]| key.chain(prev, bytes));
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (requests, replies): (Vec<WriteRequest>, Vec<_>) = jobs.drain(..).map(|j| (j.request, j.reply)).unzip();
        let count = requests.len();
        match store.apply(requests, chain.clone()).await {
            Ok(applied) => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.events.fetch_add(count as u64, Ordering::Relaxed);
                stats.head_seq.fetch_max(applied.last_seq, Ordering::SeqCst);
                for (reply, result) in replies.into_iter().zip(applied.results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), requests = count,
                    "audit batch could not be committed; refusing its requests");
                for reply in replies {
                    let _ = reply.send(Err(WriteFailed));
                }
            }
        }
    }
}
