//! Failed attempts per source: a token bucket that stops a source which keeps failing, and audit
//! events in aggregate, so that a flood of bad tokens or guessed reset links cannot grow the audit
//! log (and fill the disk of a vault that fails closed) without bound.
//!
//! A source is an IPv4 address or an IPv6 /64 (what one host usually holds). For each source and
//! kind of attempt (a token, a reset link):
//!
//! - **Limit.** Every failure takes one token from the source's bucket (`burst` tokens, refilled
//!   at `per_minute`). While the bucket is empty, the source's attempts of that kind are refused
//!   (`429 too_many_requests` with `Retry-After`) before the token or link is looked up, so a
//!   guess that happens to be right is refused too and the answer tells nothing.
//! - **Audit.** The first failure of a window is audited as itself, at once, with all it showed.
//!   The window's other failures and refusals are counted and written as one event
//!   (`auth.failures` or `link.failures`) once the window has ended. So a source adds at most two
//!   events per window, and the table holds at most `max_sources` sources; failures from sources
//!   beyond those are counted together in one event per window (its source empty) and are not
//!   limited (a bucket shared by strangers would let one of them lock the others out).
//!
//! The counts live in the server's memory: a server that stops loses the counts of its current
//! window (the first failure of each source is already in the log).
//!
//! Must never: look a presented token or link up for a source whose bucket is empty.

/// The detail of the event of a request whose token is unknown, expired or revoked (the
/// detection rules look for it).
pub const DEAD_TOKEN: &str = "invalid, expired or revoked token";
/// The detail of the event of a request from outside its token's CIDRs (and the refusal's reason).
pub const OUTSIDE_CIDRS: &str = "this token may not be used from this address";

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rekey_types::{AuditAction, Timestamp};

use crate::bucket::Bucket;

/// How failed attempts are limited and audited.
#[derive(Debug, Clone, Copy)]
pub struct FailureOptions {
    /// Failures a source may make at once before it is refused.
    pub burst: u32,
    /// Failures a source regains per minute.
    pub per_minute: u32,
    /// The span of one aggregate event.
    pub window: Duration,
    /// Sources tracked one by one.
    pub max_sources: usize,
}

impl Default for FailureOptions {
    fn default() -> Self {
        Self { burst: 30, per_minute: 30, window: Duration::from_secs(60), max_sources: 10_000 }
    }
}

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptKind {
    /// A bearer token: missing, unknown, expired, revoked, or used from outside its CIDRs.
    Token,
    /// A reset link: malformed, unknown, used, withdrawn or expired.
    Link,
}

impl AttemptKind {
    /// The action of the aggregate event.
    pub fn aggregate_action(self) -> AuditAction {
        match self {
            AttemptKind::Token => AuditAction::AuthFailures,
            AttemptKind::Link => AuditAction::LinkFailures,
        }
    }
}

/// Whether a failure is audited as itself (the first of its source's window) or only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// The first of its source's window: audited as itself.
    First,
    /// Counted into the window's aggregate event.
    Counted,
}

/// One window's count for one source, to be written as one audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// Failed tokens or failed reset links.
    pub kind: AttemptKind,
    /// The source (`203.0.113.7`, `2001:db8:1:2::/64`), or `None` for the sources beyond the table.
    pub source: Option<String>,
    /// Failures after the first (which was audited as itself).
    pub failures: u64,
    /// Attempts refused with an empty bucket (never looked up).
    pub refused: u64,
    /// When the window began.
    pub since: Timestamp,
    /// The window's length.
    pub window: Duration,
}

impl Aggregate {
    /// The aggregate audit event's detail.
    pub fn detail(&self) -> String {
        let whom = if self.source.is_some() { "" } else { "; sources=beyond the table" };
        format!(
            "failures={} refused={} window={}s since={}{whom}",
            self.failures,
            self.refused,
            self.window.as_secs(),
            self.since,
        )
    }
}

struct Window {
    started: Instant,
    since: Timestamp,
    failures: u64,
    refused: u64,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self { started: now, since: Timestamp::now(), failures: 0, refused: 0 }
    }
}

struct Entry {
    bucket: Bucket,
    window: Option<Window>,
}

#[derive(Default)]
struct Table {
    entries: HashMap<(AttemptKind, IpAddr), Entry>,
    overflow: HashMap<AttemptKind, Window>,
}

/// The failures of every source; one per server, kept across seal and unseal.
pub struct Failures {
    options: FailureOptions,
    table: Mutex<Table>,
    /// Sources in the table: while none is, `admit` takes no lock (the path of every request).
    tracked: AtomicUsize,
}

impl Default for Failures {
    fn default() -> Self {
        Self::new(FailureOptions::default())
    }
}

/// The address a source is counted under: IPv4 as it is (IPv4-mapped IPv6 included), IPv6 by /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

fn source_text(key: IpAddr) -> String {
    match key {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

impl Failures {
    /// A table of sources with these limits.
    pub fn new(options: FailureOptions) -> Self {
        Self { options, table: Mutex::new(Table::default()), tracked: AtomicUsize::new(0) }
    }

    /// The limits.
    pub fn options(&self) -> FailureOptions {
        self.options
    }

    fn rate_per_sec(&self) -> f64 {
        f64::from(self.options.per_minute) / 60.0
    }

    fn refill(&self, entry: &mut Entry, now: Instant) {
        entry.bucket.refill(now, self.rate_per_sec(), f64::from(self.options.burst));
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock leaves counts, never a broken invariant: go on with them.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May `source` try again? `Err(seconds)` to wait when its bucket is empty (the refusal is
    /// counted in its window). Costs one atomic load while no source has failed.
    pub fn admit(&self, kind: AttemptKind, source: IpAddr) -> Result<(), u64> {
        if self.tracked.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        self.admit_at(kind, source, Instant::now())
    }

    /// [`Failures::admit`] at `now`.
    pub fn admit_at(&self, kind: AttemptKind, source: IpAddr, now: Instant) -> Result<(), u64> {
        let mut table = self.table();
        let Some(entry) = table.entries.get_mut(&(kind, source_key(source))) else { return Ok(()) };
        self.refill(entry, now);
        if entry.bucket.tokens >= 1.0 {
            return Ok(());
        }
        entry.window.get_or_insert_with(|| Window::new(now)).refused += 1;
        let wait = entry.bucket.wait_secs(self.rate_per_sec());
        Err(wait.clamp(1, self.options.window.as_secs().max(1) * 60))
    }

    /// Notes a failure of `source`: `First` when it opens the source's window (audit it now).
    pub fn failed(&self, kind: AttemptKind, source: IpAddr, now: Instant) -> Noted {
        let key = source_key(source);
        let mut table = self.table();
        if !table.entries.contains_key(&(kind, key)) && table.entries.len() >= self.options.max_sources {
            table.overflow.entry(kind).or_insert_with(|| Window::new(now)).failures += 1;
            return Noted::Counted;
        }
        let burst = f64::from(self.options.burst);
        let entry = table.entries.entry((kind, key)).or_insert_with(|| {
            self.tracked.fetch_add(1, Ordering::AcqRel);
            Entry { bucket: Bucket::full(burst, now), window: None }
        });
        self.refill(entry, now);
        entry.bucket.tokens = (entry.bucket.tokens - 1.0).max(0.0);
        match &mut entry.window {
            Some(w) => {
                w.failures += 1;
                Noted::Counted
            }
            None => {
                entry.window = Some(Window::new(now));
                Noted::First
            }
        }
    }

    /// The windows that ended by `now` with something to say, oldest first; forgets the sources
    /// that are quiet again (no open window, a full bucket).
    pub fn due(&self, now: Instant) -> Vec<Aggregate> {
        let span = self.options.window;
        let ended = |w: &Window| now.saturating_duration_since(w.started) >= span;
        let mut out = Vec::new();
        let mut table = self.table();
        let burst = f64::from(self.options.burst);
        let rate = self.rate_per_sec();
        table.entries.retain(|(kind, key), entry| {
            if entry.window.as_ref().is_some_and(ended) {
                let w = entry.window.take().expect("checked above");
                if w.failures + w.refused > 0 {
                    out.push(Aggregate {
                        kind: *kind,
                        source: Some(source_text(*key)),
                        failures: w.failures,
                        refused: w.refused,
                        since: w.since,
                        window: span,
                    });
                }
            }
            entry.bucket.refill(now, rate, burst);
            entry.window.is_some() || entry.bucket.tokens < burst
        });
        self.tracked.store(table.entries.len(), Ordering::Release);
        let kinds: Vec<AttemptKind> = table.overflow.iter().filter(|(_, w)| ended(w)).map(|(k, _)| *k).collect();
        for kind in kinds {
            let w = table.overflow.remove(&kind).expect("listed above");
            out.push(Aggregate {
                kind,
                source: None,
                failures: w.failures,
                refused: w.refused,
                since: w.since,
                window: span,
            });
        }
        out.sort_by_key(|a| a.since);
        out
    }

    /// Sources tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.table().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(burst: u32, per_minute: u32) -> FailureOptions {
        FailureOptions { burst, per_minute, window: Duration::from_secs(60), max_sources: 3 }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_is_refused_once_its_burst_is_spent_and_regains_at_the_rate() {
        let f = Failures::new(opts(3, 60));
        let t0 = Instant::now();
        let a = ip("203.0.113.7");
        assert_eq!(f.failed(AttemptKind::Token, a, t0), Noted::First);
        assert_eq!(f.failed(AttemptKind::Token, a, t0), Noted::Counted);
        assert_eq!(f.admit_at(AttemptKind::Token, a, t0), Ok(()));
        f.failed(AttemptKind::Token, a, t0);
        assert_eq!(f.admit_at(AttemptKind::Token, a, t0), Err(1));
        // Another source and another kind are not affected.
        assert_eq!(f.admit_at(AttemptKind::Token, ip("203.0.113.8"), t0), Ok(()));
        assert_eq!(f.admit_at(AttemptKind::Link, a, t0), Ok(()));
        // One per second comes back.
        assert_eq!(f.admit_at(AttemptKind::Token, a, t0 + Duration::from_millis(1100)), Ok(()));
    }

    #[test]
    fn a_window_is_one_aggregate_of_what_followed_its_first_failure() {
        let f = Failures::new(opts(2, 1));
        let t0 = Instant::now();
        let a = ip("203.0.113.7");
        for _ in 0..5 {
            f.failed(AttemptKind::Token, a, t0);
        }
        for _ in 0..7 {
            let _ = f.admit_at(AttemptKind::Token, a, t0);
        }
        assert!(f.due(t0 + Duration::from_secs(59)).is_empty(), "the window is still open");
        let due = f.due(t0 + Duration::from_secs(60));
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].failures, due[0].refused), (4, 7));
        assert_eq!(due[0].source.as_deref(), Some("203.0.113.7"));
        assert!(due[0].detail().starts_with("failures=4 refused=7 window=60s"), "{}", due[0].detail());
        // Nothing twice; a quiet source is forgotten once its bucket is whole.
        assert!(f.due(t0 + Duration::from_secs(61)).is_empty());
        assert_eq!(f.tracked(), 1);
        f.due(t0 + Duration::from_secs(600));
        assert_eq!(f.tracked(), 0);
    }

    #[test]
    fn a_single_failure_needs_no_aggregate() {
        let f = Failures::new(opts(5, 60));
        let t0 = Instant::now();
        assert_eq!(f.failed(AttemptKind::Link, ip("198.51.100.1"), t0), Noted::First);
        assert!(f.due(t0 + Duration::from_secs(120)).is_empty());
    }

    #[test]
    fn ipv6_sources_are_counted_by_their_64() {
        assert_eq!(source_key(ip("2001:db8:1:2::1")), source_key(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(source_key(ip("2001:db8:1:2::1")), source_key(ip("2001:db8:1:3::1")));
        assert_eq!(source_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        let f = Failures::new(opts(1, 60));
        let t0 = Instant::now();
        f.failed(AttemptKind::Token, ip("2001:db8:1:2::1"), t0);
        assert!(f.admit_at(AttemptKind::Token, ip("2001:db8:1:2::99"), t0).is_err());
        f.failed(AttemptKind::Token, ip("2001:db8:1:2::99"), t0);
        let due = f.due(t0 + Duration::from_secs(60));
        assert_eq!(due[0].source.as_deref(), Some("2001:db8:1:2::/64"));
    }

    #[test]
    fn sources_beyond_the_table_are_counted_together_and_not_limited() {
        let f = Failures::new(opts(1, 0));
        let t0 = Instant::now();
        for i in 1..=3 {
            assert_eq!(f.failed(AttemptKind::Token, ip(&format!("192.0.2.{i}")), t0), Noted::First);
        }
        for i in 4..=10 {
            let s = ip(&format!("192.0.2.{i}"));
            assert_eq!(f.admit_at(AttemptKind::Token, s, t0), Ok(()));
            assert_eq!(f.failed(AttemptKind::Token, s, t0), Noted::Counted);
        }
        assert_eq!(f.tracked(), 3);
        let due = f.due(t0 + Duration::from_secs(60));
        let beyond: Vec<_> = due.iter().filter(|a| a.source.is_none()).collect();
        assert_eq!(beyond.len(), 1);
        assert_eq!(beyond[0].failures, 7);
    }
}
