//! The counters `/metrics` shows, kept outside the vault so that they survive a seal and
//! unseal: the audit writer's and the connectors'.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Mutex;

use rekey_types::CredentialKind;

/// The audit writer's counters.
#[derive(Default, Debug)]
pub struct WriterStats {
    /// Groups committed.
    pub batches: AtomicU64,
    /// Events committed.
    pub events: AtomicU64,
    /// Groups that failed (their requests were refused).
    pub failed_batches: AtomicU64,
    /// The highest audit sequence number this server has seen committed.
    pub head_seq: AtomicI64,
    /// Rows refused because their integrity check failed (a token row or a version's target
    /// fields changed outside Rekey).
    pub integrity_failures: AtomicU64,
    /// 1 while writes are refused because the audit log was found rolled back, else 0.
    pub rollback: AtomicU64,
    /// The size of the last checkpoint this server signed.
    pub checkpoint_size: AtomicU64,
    /// Checkpoints a witness did not cosign (refused, or not reached).
    pub witness_failures: AtomicU64,
    /// Batches a SIEM sink did not take (sent again later).
    pub siem_failures: AtomicU64,
    /// Requests refused over their token's rate limit.
    pub rate_limited: AtomicU64,
    /// Alerts this server stored, per rule (in the order of `rules::Rule::ALL`).
    pub alerts: [AtomicU64; 7],
    /// The last audit event the detector looked at.
    pub detector_seq: AtomicI64,
    /// Alert notices delivered, and attempts that failed.
    pub alert_notices: AtomicU64,
    /// See `alert_notices`.
    pub alert_notice_failures: AtomicU64,
    /// Reads of a threat feed that failed (tried again at the feed's next interval).
    pub feed_failures: AtomicU64,
}

/// Counters for `/metrics`; shared so they survive a seal and unseal.
#[derive(Debug, Default)]
pub struct ConnectorStats {
    /// Checks by (kind, status).
    pub verifies: Mutex<HashMap<(String, String), u64>>,
    /// Rotation steps by (kind, step): started, applied, promoted, retired, failed.
    pub rotations: Mutex<HashMap<(String, String), u64>>,
    /// The last health counts the scheduler read: (kind, status) → credentials.
    pub health: Mutex<Vec<rekey_store::HealthCount>>,
}

impl ConnectorStats {
    pub(crate) fn count(map: &Mutex<HashMap<(String, String), u64>>, kind: CredentialKind, what: &str) {
        *map.lock().expect("stats lock").entry((kind.as_str().to_owned(), what.to_owned())).or_default() += 1;
    }
}
