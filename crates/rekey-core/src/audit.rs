//! Reading and verifying the audit log.
//!
//! `verify` walks the whole chain: each event's sequence number must follow the previous one,
//! and its MAC must equal HMAC(audit key, previous MAC || event). The last event must match the
//! stored head, and the head must not be behind what this server itself has committed. Each
//! problem is reported with the sequence number where it shows.

use std::sync::atomic::Ordering;

use rekey_crypto::audit_mac::GENESIS;
use rekey_store::StoredAudit;
use rekey_types::AuditAction;

use crate::kernel::policy::Action;
use crate::views::{AuditEventView, VerifyProblem, VerifyReport};
use crate::{Caller, CoreError, Vault};

/// Events read per page while verifying.
const PAGE: u32 = 10_000;
/// Problems reported before verification stops listing them.
const MAX_PROBLEMS: usize = 100;

pub(crate) fn view(e: StoredAudit) -> AuditEventView {
    let r = e.record;
    AuditEventView {
        seq: r.seq,
        time: r.time,
        principal: r.principal,
        action: r.action,
        resource: r.resource,
        outcome: r.outcome.as_str().to_owned(),
        source: r.source,
        request_id: r.request_id,
        detail: r.detail,
        mac: hex::encode(&e.mac),
    }
}

impl Vault {
    /// The last `n` events (at most 10,000), oldest first; or, with `after`, up to `n` events
    /// following that sequence number (for exporting the whole log page by page).
    pub async fn audit_events(
        &self,
        caller: &Caller,
        n: u32,
        after: Option<i64>,
    ) -> Result<Vec<AuditEventView>, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadAudit, "audit log")?;
            let n = n.clamp(1, 10_000);
            let events = match after {
                Some(seq) => self.store().audit_page(seq, n).await?,
                None => self.store().audit_tail(n).await?,
            };
            Ok(events.into_iter().map(view).collect())
        }
        .await;
        self.finish(caller, AuditAction::AuditRead, "", result).await
    }

    /// `audit verify`: checks the whole chain from its first event, and the head against the last event this server committed.
    pub async fn audit_verify(&self, caller: &Caller) -> Result<VerifyReport, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadAudit, "audit log")?;
            // Read the server's own high-water mark first: everything up to it was committed
            // before the walk started and must be found.
            let server_head = self.writer_stats().head_seq.load(Ordering::SeqCst);
            let head = self.store().audit_head().await?;
            let (head_seq, head_mac) = head.map(|h| (h.seq, h.mac)).unwrap_or((0, GENESIS.to_vec()));
            let mut problems = Vec::new();
            let mut push = |seq: i64, kind: &str, message: String| {
                if problems.len() < MAX_PROBLEMS {
                    problems.push(VerifyProblem { seq, kind: kind.to_owned(), message });
                }
            };
            let mut prev_mac = GENESIS;
            let mut expected = 1i64;
            let mut checked = 0i64;
            let mut last_seq = 0i64;
            let mut last_mac = GENESIS.to_vec();
            let mut after = 0i64;
            loop {
                let page = self.store().audit_page(after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.record.seq;
                for event in page {
                    let seq = event.record.seq;
                    checked += 1;
                    if seq > expected {
                        let message = if seq - expected == 1 {
                            format!("event {expected} is missing (deleted)")
                        } else {
                            format!("events {expected} to {} are missing (deleted)", seq - 1)
                        };
                        push(expected, "deleted", message);
                    }
                    if seq > head_seq {
                        push(seq, "appended", format!("event {seq} lies beyond the recorded head {head_seq}: it was inserted"));
                    }
                    if !self.audit_key().verify(&prev_mac, &event.record.canonical_bytes(), &event.mac) {
                        push(seq, "modified", format!("event {seq} does not match its MAC: it was modified, moved or inserted"));
                    }
                    // Continue from what is stored, so one bad event is reported once.
                    prev_mac = event.mac.as_slice().try_into().unwrap_or(GENESIS);
                    expected = seq + 1;
                    last_seq = seq;
                    last_mac = event.mac;
                }
            }
            if last_seq < head_seq {
                push(
                    last_seq + 1,
                    "truncated",
                    format!("the log ends at event {last_seq} but the head records {head_seq}: events after {last_seq} were removed"),
                );
            } else if last_seq == head_seq && last_mac != head_mac {
                push(head_seq, "modified", format!("the last event {head_seq} does not match the recorded head"));
            }
            if head_seq < server_head {
                push(
                    head_seq + 1,
                    "truncated",
                    format!("this server committed events up to {server_head}, but the log and its head end at {head_seq}: the log was cut back"),
                );
            }
            Ok(VerifyReport { ok: problems.is_empty(), checked, head_seq, server_head_seq: server_head, problems })
        }
        .await;
        self.finish_with(caller, AuditAction::AuditVerify, "", result, |r| {
            format!("ok={}; checked={}", r.ok, r.checked)
        })
        .await
    }
}
