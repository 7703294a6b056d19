//! Request rates per principal: a token bucket per token, sized by its role, that stops a
//! stolen token from sweeping what it can read faster than its role's limit allows.
//!
//! - **Limit.** Every authenticated request of a token whose role has a limit takes one token
//!   from that principal's bucket (`burst` tokens, refilled at `per_second`). While the bucket is
//!   empty the request is refused with `429 too_many_requests` and `Retry-After` (the seconds
//!   until the bucket holds a token again), after the token was checked and before anything it
//!   asked for is looked up. Roles without a limit are not counted (none has one by default).
//! - **Audit.** The first refusal of a principal's window is audited as itself (the request's
//!   own action, `denied`, with the limit in its detail). The window's other refusals are
//!   counted and written as one `auth.throttled` event once the window has ended, so a token
//!   hammering the server adds at most two events per window.
//! - **Memory.** At most `max_principals` buckets are kept; a bucket is forgotten once it is
//!   full again and its window has been written. Principals beyond the table are not limited and
//!   their refusals (none) are not counted; filling the table takes that many valid tokens
//!   running at once.
//!
//! The buckets live in each server's memory: behind a load balancer, a cluster of N servers
//! lets a token through at up to N times its role's rate, and a restart refills every bucket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rekey_types::{Role, Timestamp, TokenId};

use crate::bucket::Bucket;

/// One role's limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests regained per second.
    pub per_second: f64,
    /// Requests a principal may make at once.
    pub burst: u32,
}

/// The limits of every role, and how refusals are audited.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleOptions {
    /// By role, in the order of [`Role::ALL`]; `None`: not limited.
    pub limits: [Option<RateLimit>; 4],
    /// The span of one aggregate event.
    pub window: Duration,
    /// Principals tracked at once.
    pub max_principals: usize,
}

impl Default for ThrottleOptions {
    fn default() -> Self {
        Self { limits: [None; 4], window: Duration::from_secs(60), max_principals: 100_000 }
    }
}

impl ThrottleOptions {
    /// The limit of `role`, if it has one.
    pub fn limit(&self, role: Role) -> Option<RateLimit> {
        let i = Role::ALL.iter().position(|r| *r == role).expect("every role is in Role::ALL");
        self.limits[i]
    }
}

/// Why a request was refused: the seconds to wait, the limit, and whether this is the first
/// refusal of the principal's window (audit it as itself) or one to count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refused {
    /// Seconds until the bucket holds a token again (at least 1).
    pub retry_after: u64,
    /// The role's limit.
    pub limit: RateLimit,
    /// The first refusal of the window.
    pub first: bool,
}

impl Refused {
    /// The detail of the refusal's audit event.
    pub fn detail(&self, role: Role) -> String {
        format!(
            "rate limit of role {}: {}/s, burst {}; retry after {} s",
            role.as_str(),
            self.limit.per_second,
            self.limit.burst,
            self.retry_after
        )
    }
}

/// One principal's refusals over a window after its first, to be written as one audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleAggregate {
    /// `token:<id>`.
    pub principal: String,
    /// Refusals after the first (which was audited as itself).
    pub refused: u64,
    /// When the window began.
    pub since: Timestamp,
    /// The window's length.
    pub window: Duration,
}

impl ThrottleAggregate {
    /// The aggregate audit event's detail.
    pub fn detail(&self) -> String {
        format!("refused={} window={}s since={}", self.refused, self.window.as_secs(), self.since)
    }
}

struct Window {
    started: Instant,
    since: Timestamp,
    refused: u64,
}

struct Entry {
    bucket: Bucket,
    limit: RateLimit,
    window: Option<Window>,
}

impl Entry {
    fn refill(&mut self, now: Instant) {
        self.bucket.refill(now, self.limit.per_second, f64::from(self.limit.burst));
    }
}

/// The buckets of every principal; one per server, kept across seal and unseal.
pub struct Throttle {
    options: ThrottleOptions,
    buckets: Mutex<HashMap<TokenId, Entry>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(ThrottleOptions::default())
    }
}

impl Throttle {
    /// Buckets with these limits.
    pub fn new(options: ThrottleOptions) -> Self {
        Self { options, buckets: Mutex::new(HashMap::new()) }
    }

    /// The limits.
    pub fn options(&self) -> ThrottleOptions {
        self.options
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, HashMap<TokenId, Entry>> {
        // A panic while holding the lock leaves counts, never a broken invariant: go on with them.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one request from `token`'s bucket. Costs nothing for a role without a limit.
    pub fn take(&self, token: TokenId, role: Role) -> Result<(), Refused> {
        match self.options.limit(role) {
            None => Ok(()),
            Some(limit) => self.take_at(token, limit, Instant::now()),
        }
    }

    /// [`Throttle::take`] at `now`, under `limit`.
    pub fn take_at(&self, token: TokenId, limit: RateLimit, now: Instant) -> Result<(), Refused> {
        let mut buckets = self.buckets();
        if !buckets.contains_key(&token) && buckets.len() >= self.options.max_principals {
            return Ok(());
        }
        let bucket = buckets.entry(token).or_insert_with(|| Entry {
            bucket: Bucket::full(f64::from(limit.burst), now),
            limit,
            window: None,
        });
        bucket.limit = limit;
        bucket.refill(now);
        if bucket.bucket.tokens >= 1.0 {
            bucket.bucket.tokens -= 1.0;
            return Ok(());
        }
        let retry_after = bucket.bucket.wait_secs(limit.per_second).max(1);
        let first = match &mut bucket.window {
            Some(w) => {
                w.refused += 1;
                false
            }
            None => {
                bucket.window = Some(Window { started: now, since: Timestamp::now(), refused: 0 });
                true
            }
        };
        Err(Refused { retry_after: retry_after.min(86_400), limit, first })
    }

    /// The windows that ended by `now` with refusals after their first, oldest first; forgets
    /// the principals whose buckets are full again and whose windows are written.
    pub fn due(&self, now: Instant) -> Vec<ThrottleAggregate> {
        let span = self.options.window;
        let mut out = Vec::new();
        self.buckets().retain(|token, bucket| {
            if bucket.window.as_ref().is_some_and(|w| now.saturating_duration_since(w.started) >= span) {
                let w = bucket.window.take().expect("checked above");
                if w.refused > 0 {
                    out.push(ThrottleAggregate {
                        principal: format!("token:{token}"),
                        refused: w.refused,
                        since: w.since,
                        window: span,
                    });
                }
            }
            bucket.refill(now);
            bucket.window.is_some() || bucket.bucket.tokens < f64::from(bucket.limit.burst)
        });
        out.sort_by_key(|a| a.since);
        out
    }

    /// Principals tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.buckets().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit { per_second: 2.0, burst: 3 };

    #[test]
    fn a_principal_is_refused_once_its_burst_is_spent_and_regains_at_the_rate() {
        let t = Throttle::default();
        let (a, b) = (TokenId::generate(), TokenId::generate());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.take_at(a, LIMIT, t0), Ok(()));
        }
        let refused = t.take_at(a, LIMIT, t0).unwrap_err();
        assert_eq!((refused.retry_after, refused.first), (1, true));
        assert!(!t.take_at(a, LIMIT, t0).unwrap_err().first, "the window's later refusals are counted");
        assert_eq!(t.take_at(b, LIMIT, t0), Ok(()), "another principal has its own bucket");
        assert_eq!(t.take_at(a, LIMIT, t0 + Duration::from_millis(500)), Ok(()), "two per second come back");
        assert!(t.take_at(a, LIMIT, t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn a_slow_rate_asks_for_a_longer_wait() {
        let t = Throttle::default();
        let a = TokenId::generate();
        let slow = RateLimit { per_second: 0.1, burst: 1 };
        let t0 = Instant::now();
        assert!(t.take_at(a, slow, t0).is_ok());
        assert_eq!(t.take_at(a, slow, t0).unwrap_err().retry_after, 10);
    }

    #[test]
    fn a_window_is_one_aggregate_of_what_followed_its_first_refusal_and_quiet_principals_are_forgotten() {
        let t = Throttle::new(ThrottleOptions { window: Duration::from_secs(60), ..Default::default() });
        let a = TokenId::generate();
        let t0 = Instant::now();
        for _ in 0..10 {
            let _ = t.take_at(a, LIMIT, t0);
        }
        assert!(t.due(t0 + Duration::from_secs(30)).is_empty(), "the window is still open");
        let due = t.due(t0 + Duration::from_secs(60));
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].principal.clone(), due[0].refused), (format!("token:{a}"), 6));
        assert_eq!(t.tracked(), 0, "its bucket is full again: forgotten");
    }

    #[test]
    fn the_table_is_bounded_and_roles_without_a_limit_are_not_counted() {
        let t = Throttle::new(ThrottleOptions { max_principals: 2, ..Default::default() });
        let t0 = Instant::now();
        for _ in 0..2 {
            t.take_at(TokenId::generate(), LIMIT, t0).unwrap();
        }
        let beyond = TokenId::generate();
        for _ in 0..10 {
            assert_eq!(t.take_at(beyond, LIMIT, t0), Ok(()));
        }
        assert_eq!(t.tracked(), 2);
        assert_eq!(t.take(TokenId::generate(), Role::Operator), Ok(()));
        assert_eq!(t.tracked(), 2);
    }
}
