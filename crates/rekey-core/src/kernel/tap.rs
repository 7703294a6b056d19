//! The audit events this server committed lately, as the store wrote them, held in memory for
//! the followers of the log on this server (the detection rules), so that they need not read
//! back from the store what the writer has just written. Only durable events are published
//! (after their sync). A follower takes from here while the events after its position are held
//! without a gap, and reads the store otherwise: after a restart, once it fell more than
//! [`CAPACITY`] events behind, or on PostgreSQL, where other servers' events fill the gaps.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rekey_types::AuditRecord;

/// Events held at most (about 300 bytes each).
pub(crate) const CAPACITY: usize = 16_384;

/// See the module documentation.
#[derive(Default)]
pub(crate) struct Tap {
    ring: Mutex<Ring>,
    wake: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct Ring {
    batches: VecDeque<Arc<[AuditRecord]>>,
    events: usize,
}

impl Tap {
    /// Adds one committed, durable batch (its records in sequence order).
    pub(crate) fn publish(&self, records: Vec<AuditRecord>) {
        if records.is_empty() {
            return;
        }
        {
            let mut ring = self.ring.lock().expect("never poisoned");
            ring.events += records.len();
            ring.batches.push_back(records.into());
            while ring.events > CAPACITY {
                match ring.batches.pop_front() {
                    Some(old) => ring.events -= old.len(),
                    None => break,
                }
            }
        }
        self.wake.notify_waiters();
    }

    /// The batches holding the events after `seq`, in order, if the event right after `seq` is
    /// held; `None` if it is not (read the store). The first batch may begin before `seq + 1`,
    /// and a later one may leave a gap: the caller takes events while each follows the last.
    pub(crate) fn after(&self, seq: i64) -> Option<Vec<Arc<[AuditRecord]>>> {
        let ring = self.ring.lock().expect("never poisoned");
        let start = ring.batches.iter().position(|b| {
            let (first, last) = (b[0].seq, b[b.len() - 1].seq);
            first <= seq + 1 && seq < last
        })?;
        Some(ring.batches.range(start..).cloned().collect())
    }

    /// Notified when a batch is published.
    pub(crate) fn wake(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(from: i64, n: i64) -> Vec<AuditRecord> {
        (from..from + n)
            .map(|seq| AuditRecord {
                seq,
                time: rekey_types::Timestamp::now(),
                principal: "token:x".into(),
                action: "cred.reveal".into(),
                resource: "acme/d".into(),
                outcome: rekey_types::AuditOutcome::Success,
                source: String::new(),
                request_id: String::new(),
                detail: String::new(),
            })
            .collect()
    }

    #[test]
    fn holds_what_follows_a_position_and_forgets_the_oldest() {
        let tap = Tap::default();
        assert!(tap.after(0).is_none());
        tap.publish(batch(1, 10));
        tap.publish(batch(11, 5));
        let got = tap.after(0).unwrap();
        assert_eq!((got.len(), got[0][0].seq), (2, 1));
        assert_eq!(tap.after(12).unwrap()[0][0].seq, 11, "the batch holding 13");
        assert!(tap.after(15).is_none(), "nothing after the last");
        tap.publish(batch(16, CAPACITY as i64));
        assert!(tap.after(0).is_none(), "forgotten: read the store");
        assert_eq!(tap.after(15).unwrap()[0][0].seq, 16);
    }
}
