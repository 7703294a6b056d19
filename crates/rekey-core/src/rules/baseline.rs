//! The `baseline` rule's memory: per token, the hours of the day (UTC) it reads in and its
//! busiest minute, learned from its own successful reveals over its first `learn` (default 7
//! days, by the events' times). Once learned, a read in an hour it never read in, or a minute of
//! more reads than `factor` times its busiest (and at least `floor`), is unusual. It goes on
//! learning afterwards: an hour once raised is usual from then on, and a minute that raised
//! nothing may raise the busiest. Kept in the store with the detector's position, so a restart
//! does not start the learning again (docs/detection.md).

use std::collections::{HashMap, HashSet};

/// Micros in a minute and an hour.
const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;

/// One token's baseline, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    /// Its first read (micros): learned `learn` after it.
    pub first_at: i64,
    /// The UTC hours it read in, a bit each.
    pub hours: u32,
    /// Its busiest minute's reads.
    pub busiest: u32,
}

/// What is unusual about a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusual {
    /// In an hour (UTC) the token never read in.
    Hour(u32),
    /// A minute of more reads than the token's busiest allows.
    Rate {
        /// The reads of the minute so far.
        reads: u32,
        /// The token's busiest minute before.
        busiest: u32,
    },
}

struct Live {
    base: Baseline,
    minute: i64,
    count: u32,
    raised: bool,
}

/// The baselines of every token followed.
#[derive(Default)]
pub struct Baselines {
    live: HashMap<String, Live>,
    changed: HashSet<String>,
}

/// The rule's settings.
#[derive(Debug, Clone, Copy)]
pub struct Learning {
    /// How long a token is watched before it is judged (micros).
    pub learn: i64,
    /// A minute is unusual above this many times the busiest...
    pub factor: u32,
    /// ... and at least this many reads.
    pub floor: u32,
}

impl Baselines {
    /// Takes stored baselines (at start).
    pub fn load(&mut self, stored: impl IntoIterator<Item = (String, Baseline)>) {
        for (principal, base) in stored {
            self.live.insert(principal, Live { base, minute: 0, count: 0, raised: false });
        }
    }

    /// The baselines changed since the last call, to store.
    pub fn take_changed(&mut self) -> Vec<(String, Baseline)> {
        let changed = std::mem::take(&mut self.changed);
        changed.into_iter().filter_map(|p| self.live.get(&p).map(|l| (p, l.base))).collect()
    }

    /// Tokens followed.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether none is followed.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// A successful reveal by `principal` at `at` (micros): what is unusual about it, if the
    /// token is learned.
    pub fn read(&mut self, principal: &str, at: i64, l: Learning, max: usize) -> Option<Unusual> {
        if !self.live.contains_key(principal) && self.live.len() >= max {
            return None;
        }
        let live = self.live.entry(principal.to_owned()).or_insert_with(|| Live {
            base: Baseline { first_at: at, hours: 0, busiest: 0 },
            minute: at.div_euclid(MINUTE),
            count: 0,
            raised: false,
        });
        let learned = at - live.base.first_at >= l.learn;
        let minute = at.div_euclid(MINUTE);
        if minute != live.minute {
            if !live.raised && live.count > live.base.busiest {
                live.base.busiest = live.count;
                self.changed.insert(principal.to_owned());
            }
            live.minute = minute;
            live.count = 0;
            live.raised = false;
        }
        live.count += 1;
        let hour = (at.div_euclid(HOUR).rem_euclid(24)) as u32;
        let mut unusual = None;
        if live.base.hours & (1 << hour) == 0 {
            if learned {
                unusual = Some(Unusual::Hour(hour));
            }
            live.base.hours |= 1 << hour;
            self.changed.insert(principal.to_owned());
        }
        let limit = live.base.busiest.saturating_mul(l.factor).max(l.floor);
        if learned && !live.raised && live.count > limit {
            live.raised = true;
            unusual = unusual.or(Some(Unusual::Rate { reads: live.count, busiest: live.base.busiest }));
        }
        if !learned && live.count > live.base.busiest {
            live.base.busiest = live.count;
            self.changed.insert(principal.to_owned());
        }
        unusual
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Learning = Learning { learn: 7 * 24 * HOUR, factor: 3, floor: 30 };

    /// Day `d`, hour `h`, minute `m`, second `s`, from a Monday midnight (UTC).
    fn t(d: i64, h: i64, m: i64, s: i64) -> i64 {
        1_767_571_200_000_000 + d * 24 * HOUR + h * HOUR + m * MINUTE + s * 1_000_000
    }

    #[test]
    fn a_token_learned_over_office_hours_is_raised_at_night_and_in_a_burst() {
        let mut b = Baselines::default();
        // A week of reads from 08:00 to 17:00, up to 10 a minute: nothing is judged yet.
        for d in 0..7 {
            for h in 8..18 {
                for i in 0..10 {
                    assert_eq!(b.read("token:a", t(d, h, 5, i), L, 10), None);
                }
            }
        }
        assert_eq!(b.read("token:a", t(7, 9, 0, 0), L, 10), None, "learned: a usual hour");
        // 30 reads a minute (3 × 10) is the limit; the 31st is unusual, once a minute.
        let mut raised = Vec::new();
        for i in 0..40 {
            raised.extend(b.read("token:a", t(7, 10, 0, i), L, 10));
        }
        assert_eq!(raised, [Unusual::Rate { reads: 31, busiest: 10 }]);
        // A burst that raised does not become the busiest; a quiet minute of 20 does.
        for i in 0..20 {
            assert_eq!(b.read("token:a", t(7, 10, 1, i), L, 10), None);
        }
        assert_eq!(b.read("token:a", t(8, 3, 0, 0), L, 10), Some(Unusual::Hour(3)), "03:00: never before");
        assert_eq!(b.read("token:a", t(8, 3, 1, 0), L, 10), None, "an hour raised once is usual from then on");
        let stored = b.take_changed();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].1.busiest, 20, "a quiet minute of 20 raised it");
        assert_eq!(stored[0].1.hours, (0x3ff << 8) | (1 << 3));
    }

    #[test]
    fn nothing_is_judged_while_learning_and_a_stored_baseline_survives() {
        let mut b = Baselines::default();
        for i in 0..100 {
            assert_eq!(b.read("token:b", t(0, 2, 0, i % 60), L, 10), None, "the first week only learns");
        }
        let stored = b.take_changed();
        let mut again = Baselines::default();
        again.load(stored);
        assert_eq!(again.read("token:b", t(8, 4, 0, 0), L, 10), Some(Unusual::Hour(4)), "judged after a restart");
        // At most `max` tokens followed.
        let mut small = Baselines::default();
        assert_eq!(small.read("token:x", t(0, 0, 0, 0), L, 1), None);
        assert_eq!(small.read("token:y", t(0, 0, 0, 0), L, 1), None);
        assert_eq!(small.len(), 1);
    }
}
