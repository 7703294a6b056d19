//! Rows of detection: alerts and the decoy credentials the decoy rule watches.

use rekey_types::{
    AlertId, AlertState, CredentialId, CredentialKind, IncidentId, RuleAction, Severity, TenantId, Timestamp,
};

/// An alert a rule raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    /// Its id.
    pub id: AlertId,
    /// The rule, the principal and the event that raised it: the same on every server that
    /// evaluates the same log, so that the alert is stored once.
    pub key: String,
    /// The rule's name, e.g. `bulk-read`.
    pub rule: String,
    /// The rule's severity.
    pub severity: Severity,
    /// Who: `token:<id>`, or `anonymous` with a source.
    pub principal: String,
    /// From where (the last event's source address).
    pub source: String,
    /// One line: what the rule saw (never a secret).
    pub summary: String,
    /// The credentials (`tenant/name`) it saw touched, at most 1,000.
    pub resources: Vec<String>,
    /// The first and last events that made it up.
    pub first_seq: i64,
    /// See `first_seq`.
    pub last_seq: i64,
    /// When the first sign was.
    pub first_seen: Timestamp,
    /// When the event that raised it was.
    pub last_seen: Timestamp,
    /// Events that made it up.
    pub events: i64,
    /// Open, acknowledged or escalated.
    pub state: AlertState,
    /// What the rule was set to do on its own.
    pub action: RuleAction,
    /// How that went (`done`, `failed: ...`), once done.
    pub action_outcome: Option<String>,
    /// Who acknowledged or escalated it, and when.
    pub handled_by: Option<String>,
    /// See `handled_by`.
    pub handled_at: Option<Timestamp>,
    /// The acknowledging operator's note.
    pub note: Option<String>,
    /// The incident opened from it.
    pub incident: Option<IncidentId>,
    /// Delivery attempts of its notice.
    pub notify_attempts: i64,
    /// When its notice was delivered.
    pub notified_at: Option<Timestamp>,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// A decoy credential, with the names that an operator lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoyRow {
    /// The credential.
    pub credential_id: CredentialId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its tenant's name.
    pub tenant: String,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: CredentialKind,
    /// Who planted it.
    pub planted_by: String,
    /// When.
    pub planted_at: Timestamp,
}

/// One observable of one indicator a threat feed lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedIndicatorRow {
    /// The feed's name.
    pub feed: String,
    /// The indicator's STIX id.
    pub stix_id: String,
    /// `address` (a CIDR block) or `certificate` (a SHA-256 or SHA-1 thumbprint, hex).
    pub kind: String,
    /// The block or the thumbprint.
    pub value: String,
    /// The indicator's name.
    pub name: String,
    /// Its `modified` time: a later version replaces this one.
    pub modified: Timestamp,
    /// From when it holds.
    pub valid_from: Timestamp,
    /// Until when, if it says.
    pub valid_until: Option<Timestamp>,
}

/// What one read of a feed changes.
#[derive(Debug, Clone, Default)]
pub struct FeedUpdate {
    /// The feed.
    pub feed: String,
    /// Drop everything the feed listed before (a file is read whole each time).
    pub replace: bool,
    /// Indicators listed (each replaces the earlier versions of its id, unless older).
    pub listed: Vec<FeedIndicatorRow>,
    /// Indicators revoked, with their `modified` times.
    pub revoked: Vec<(String, Timestamp)>,
    /// Where the next read of a TAXII collection starts (its `added_after`).
    pub added_after: Option<String>,
}

/// One token's baseline (the `baseline` detection rule's memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaselineRow {
    /// Its first read (micros).
    pub first_at: i64,
    /// The UTC hours it read in, a bit each.
    pub hours: u32,
    /// Its busiest minute's reads.
    pub busiest: u32,
}
