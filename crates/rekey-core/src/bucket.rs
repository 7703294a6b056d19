//! A token bucket refilled from the time elapsed: the one piece the per-source failure limit
//! (`failures`) and the per-token rate limit (`throttle`) share.

use std::time::Instant;

/// Tokens, and when they were last counted.
pub(crate) struct Bucket {
    /// Tokens held (fractions while refilling).
    pub(crate) tokens: f64,
    /// When `tokens` was last brought up to date.
    pub(crate) refilled: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(burst: f64, now: Instant) -> Self {
        Self { tokens: burst, refilled: now }
    }

    /// Adds what `per_second` gave since the last count, up to `burst`.
    pub(crate) fn refill(&mut self, now: Instant, per_second: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.refilled = now;
    }

    /// Whole seconds until the bucket holds one token again (`u64::MAX` at a rate of zero).
    pub(crate) fn wait_secs(&self, per_second: f64) -> u64 {
        if per_second > 0.0 {
            ((1.0 - self.tokens) / per_second).ceil() as u64
        } else {
            u64::MAX
        }
    }
}
