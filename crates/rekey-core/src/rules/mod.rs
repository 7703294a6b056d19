//! The detection rules over the audit log (docs/detection.md), as a pure engine: events in, in the log's order; findings out.
//! Time is the events' own (`AuditRecord::time`), never the clock, so every server that reads
//! the same log finds the same things, and a finding's key (rule, principal, the event that
//! raised it) is the same everywhere (docs/detection.md).

pub mod baseline;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use rekey_types::{AuditAction, AuditOutcome, AuditRecord, RuleAction, Severity, Timestamp};

use crate::failures::{DEAD_TOKEN, OUTSIDE_CIDRS};
use baseline::{Baselines, Learning, Unusual};

/// At most this many credentials are named in one finding (the count says how many there were).
pub const MAX_RESOURCES: usize = 1_000;
/// Principals whose reads are followed at once by the bulk-read rule; beyond, the ones idle the
/// longest are forgotten.
pub const MAX_PRINCIPALS: usize = 100_000;

/// A rule: its name, severity and what it looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// One principal reveals more than N distinct credentials within T.
    BulkRead,
    /// Anyone touches a decoy credential.
    Decoy,
    /// A token is presented from outside its CIDRs.
    OutsideCidr,
    /// A revoked or expired token (or a real token id with a wrong secret) is presented.
    DeadToken,
    /// A request comes from an address a threat feed lists.
    FeedAddress,
    /// A threat feed lists a certificate of the inventory (checked when the feed is read, not
    /// per event).
    FeedCertificate,
    /// A token reads in an hour it never read in, or faster than it ever did (a baseline
    /// learned from its own reads).
    Baseline,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 7] = [
        Rule::BulkRead,
        Rule::Decoy,
        Rule::OutsideCidr,
        Rule::DeadToken,
        Rule::FeedAddress,
        Rule::FeedCertificate,
        Rule::Baseline,
    ];

    /// The name the configuration and the alerts use.
    pub const fn name(self) -> &'static str {
        match self {
            Rule::BulkRead => "bulk-read",
            Rule::Decoy => "decoy",
            Rule::OutsideCidr => "outside-cidr",
            Rule::DeadToken => "dead-token",
            Rule::FeedAddress => "feed-address",
            Rule::FeedCertificate => "feed-certificate",
            Rule::Baseline => "baseline",
        }
    }

    /// The rule named `name`.
    pub fn parse(name: &str) -> Option<Rule> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// How urgent its alerts are.
    pub const fn severity(self) -> Severity {
        match self {
            Rule::BulkRead => Severity::High,
            Rule::Decoy => Severity::Critical,
            Rule::OutsideCidr => Severity::Medium,
            Rule::DeadToken => Severity::Medium,
            Rule::FeedAddress => Severity::High,
            Rule::FeedCertificate => Severity::Critical,
            Rule::Baseline => Severity::Medium,
        }
    }
}

/// One rule's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleConfig {
    /// Whether it runs.
    pub enabled: bool,
    /// What it does on its own when it raises an alert.
    pub action: RuleAction,
}

impl Default for RuleConfig {
    fn default() -> Self {
        Self { enabled: true, action: RuleAction::None }
    }
}

/// The rules' settings.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Per rule, in the order of [`Rule::ALL`].
    pub rules: [RuleConfig; 7],
    /// Bulk read: more than this many distinct credentials...
    pub bulk_distinct: usize,
    /// ... revealed by one principal within this long.
    pub bulk_within: Duration,
    /// A rule raises again for the same principal (and, for decoys, the same credential) only
    /// after this long.
    pub repeat_after: Duration,
    /// Baseline: how long a token's reads are learned before they are judged...
    pub baseline_learn: Duration,
    /// ... a minute is unusual above this many times its busiest...
    pub baseline_factor: u32,
    /// ... and at least this many reads.
    pub baseline_floor: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            rules: [RuleConfig::default(); 7],
            bulk_distinct: 100,
            bulk_within: Duration::from_secs(600),
            repeat_after: Duration::from_secs(600),
            baseline_learn: Duration::from_secs(7 * 86_400),
            baseline_factor: 3,
            baseline_floor: 30,
        }
    }
}

impl Rules {
    /// One rule's settings.
    pub fn of(&self, rule: Rule) -> RuleConfig {
        self.rules[Rule::ALL.iter().position(|r| *r == rule).expect("every rule is in ALL")]
    }

    /// Sets one rule's settings.
    pub fn set(&mut self, rule: Rule, config: RuleConfig) {
        self.rules[Rule::ALL.iter().position(|r| *r == rule).expect("every rule is in ALL")] = config;
    }
}

/// What a rule found: the makings of an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule.
    pub rule: Rule,
    /// Rule, principal and the event that raised it.
    pub key: String,
    /// Who.
    pub principal: String,
    /// From where (the raising event's source).
    pub source: String,
    /// One line, never a secret.
    pub summary: String,
    /// The credentials touched (`tenant/name`), at most [`MAX_RESOURCES`].
    pub resources: Vec<String>,
    /// The first and the raising event.
    pub first_seq: i64,
    /// See `first_seq`.
    pub last_seq: i64,
    /// When the first sign was.
    pub first_seen: Timestamp,
    /// When the raising event was.
    pub last_seen: Timestamp,
    /// Events that made it up.
    pub events: i64,
}

/// What the engine knows of the world beyond the events: the decoys, and which presented tokens
/// exist (a dead token is a real one; an id nobody ever issued is a guess, which the per-source
/// failure limit already handles).
pub trait World {
    /// Whether `tenant/name` is a decoy.
    fn is_decoy(&self, resource: &str) -> bool;
    /// Whether `token:<id>` names a token that was issued.
    fn token_exists(&self, principal: &str) -> bool;
    /// The threat feeds' listings of addresses.
    fn listings(&self) -> &Listings;
}

/// What the threat feeds list, by address: an indicator's feed, name, and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The feed's name.
    pub feed: String,
    /// The indicator's name.
    pub name: String,
    /// Its STIX id.
    pub stix_id: String,
    /// From when (micros).
    pub valid_from: i64,
    /// Until when (micros), if it says.
    pub valid_until: Option<i64>,
}

/// The listed blocks, looked up by address in at most one hash probe per prefix length in use.
#[derive(Debug, Default)]
pub struct Listings {
    by_prefix: HashMap<(u8, IpAddr), Vec<Listing>>,
    /// The prefix lengths in use (IPv4 or not, length), longest first.
    prefixes: Vec<(bool, u8)>,
}

impl Listings {
    /// Lists `net` as `listing`.
    pub fn add(&mut self, net: ipnet::IpNet, listing: Listing) {
        let p = (net.addr().is_ipv4(), net.prefix_len());
        if !self.prefixes.contains(&p) {
            self.prefixes.push(p);
            self.prefixes.sort_unstable_by_key(|p| std::cmp::Reverse(p.1));
        }
        self.by_prefix.entry((p.1, net.network())).or_default().push(listing);
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    /// The listing in force at `at` (micros) of the most specific block holding `addr`.
    pub fn find(&self, addr: IpAddr, at: i64) -> Option<&Listing> {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            v4 => v4,
        };
        for &(v4, len) in &self.prefixes {
            if v4 != addr.is_ipv4() {
                continue;
            }
            let Ok(net) = ipnet::IpNet::new(addr, len) else { continue };
            let found = self
                .by_prefix
                .get(&(len, net.network()))
                .and_then(|l| l.iter().find(|l| l.valid_from <= at && l.valid_until.is_none_or(|u| at < u)));
            if found.is_some() {
                return found;
            }
        }
        None
    }
}

/// The actions on a decoy that raise an alert, whatever their outcome.
const DECOY_SIGHTS: &[AuditAction] = &[
    AuditAction::CredReveal,
    AuditAction::CredVerify,
    AuditAction::CredSend,
    AuditAction::CredRotateStart,
    AuditAction::CredRollback,
    AuditAction::CredRetarget,
    AuditAction::CredVersions,
];

/// One principal's recent reveals: credential → time of its latest reveal.
#[derive(Default)]
struct Reads {
    latest: HashMap<String, (i64, i64)>,
    last_at: i64,
}

/// The engine: the rules' state between events.
pub struct Engine {
    rules: Rules,
    baselines: Baselines,
    reads: HashMap<String, Reads>,
    /// (rule, principal, credential or "") → raised until.
    quiet: HashMap<(Rule, String, String), i64>,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Engine {
    /// An engine with no history.
    pub fn new(rules: Rules) -> Self {
        Self { rules, baselines: Baselines::default(), reads: HashMap::new(), quiet: HashMap::new() }
    }

    /// The rules it runs.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The tokens' baselines (to load at start and store as they change).
    pub fn baselines(&mut self) -> &mut Baselines {
        &mut self.baselines
    }

    /// Looks at one event (in the log's order); answers what it raised.
    pub fn observe(&mut self, e: &AuditRecord, world: &dyn World) -> Vec<Finding> {
        let mut found = Vec::new();
        let at = e.time.as_micros();
        let reveal = e.action == AuditAction::CredReveal.as_str();
        if self.on(Rule::Decoy)
            && (reveal || DECOY_SIGHTS.iter().any(|a| a.as_str() == e.action))
            && !e.resource.is_empty()
            && world.is_decoy(&e.resource)
        {
            let what = e.action.as_str();
            let summary =
                format!("{} {what} of decoy {} ({}) from {}", e.principal, e.resource, e.outcome.as_str(), source(e));
            found.extend(self.single(Rule::Decoy, e, &e.resource, summary, vec![e.resource.clone()]));
        }
        if e.outcome == AuditOutcome::Denied && e.principal.starts_with("token:") {
            if self.on(Rule::OutsideCidr) && e.detail == OUTSIDE_CIDRS {
                let summary = format!(
                    "{} presented from {}, outside its allowed networks ({})",
                    e.principal,
                    source(e),
                    e.action
                );
                found.extend(self.single(Rule::OutsideCidr, e, "", summary, resources_of(e)));
            }
            if self.on(Rule::DeadToken) && e.detail == DEAD_TOKEN && world.token_exists(&e.principal) {
                let summary = format!(
                    "{} presented from {} though it is revoked, expired, or its secret is wrong ({})",
                    e.principal,
                    source(e),
                    e.action
                );
                found.extend(self.single(Rule::DeadToken, e, "", summary, resources_of(e)));
            }
        }
        if self.on(Rule::FeedAddress) && !e.source.is_empty() && !world.listings().is_empty() {
            if let Some(l) = e.source.parse::<IpAddr>().ok().and_then(|a| world.listings().find(a, at)) {
                let summary = format!(
                    "{} {} ({}) from {}, listed by feed {} as {:?} ({})",
                    e.principal,
                    e.action,
                    e.outcome.as_str(),
                    e.source,
                    l.feed,
                    l.name,
                    l.stix_id
                );
                let about = e.source.clone();
                found.extend(self.single(Rule::FeedAddress, e, &about, summary, resources_of(e)));
            }
        }
        if self.on(Rule::Baseline) && reveal && e.outcome == AuditOutcome::Success && e.principal.starts_with("token:")
        {
            let learning = Learning {
                learn: micros(self.rules.baseline_learn),
                factor: self.rules.baseline_factor,
                floor: self.rules.baseline_floor,
            };
            if let Some(unusual) = self.baselines.read(&e.principal, at, learning, MAX_PRINCIPALS) {
                let summary = match unusual {
                    Unusual::Hour(h) => format!(
                        "{} revealed {} at {h:02}:00 UTC, an hour it had not read in before, from {}",
                        e.principal,
                        e.resource,
                        source(e)
                    ),
                    Unusual::Rate { reads, busiest } => format!(
                        "{} revealed {reads} credentials within a minute, against at most {busiest} a minute before, from {}",
                        e.principal,
                        source(e)
                    ),
                };
                found.extend(self.single(Rule::Baseline, e, "", summary, resources_of(e)));
            }
        }
        if self.on(Rule::BulkRead) && reveal && e.outcome == AuditOutcome::Success && e.principal.starts_with("token:")
        {
            found.extend(self.bulk_read(e, at));
        }
        found
    }

    fn on(&self, rule: Rule) -> bool {
        self.rules.of(rule).enabled
    }

    /// A rule raised by one event, unless it raised for the same principal (and credential)
    /// within `repeat_after`.
    fn single(
        &mut self,
        rule: Rule,
        e: &AuditRecord,
        about: &str,
        summary: String,
        resources: Vec<String>,
    ) -> Option<Finding> {
        if !self.quiet_now(rule, &e.principal, about, e.time.as_micros()) {
            return None;
        }
        Some(Finding {
            rule,
            key: format!("{}:{}:{}", rule.name(), e.principal, e.seq),
            principal: e.principal.clone(),
            source: e.source.clone(),
            summary,
            resources,
            first_seq: e.seq,
            last_seq: e.seq,
            first_seen: e.time,
            last_seen: e.time,
            events: 1,
        })
    }

    /// Whether the rule may raise now for `(principal, about)`; if so, it stays quiet for them
    /// for `repeat_after` from now.
    fn quiet_now(&mut self, rule: Rule, principal: &str, about: &str, at: i64) -> bool {
        let key = (rule, principal.to_owned(), about.to_owned());
        if self.quiet.get(&key).is_some_and(|until| *until > at) {
            return false;
        }
        if self.quiet.len() >= MAX_PRINCIPALS {
            self.quiet.retain(|_, until| *until > at);
        }
        self.quiet.insert(key, at.saturating_add(micros(self.rules.repeat_after)));
        true
    }

    fn bulk_read(&mut self, e: &AuditRecord, at: i64) -> Option<Finding> {
        let within = micros(self.rules.bulk_within);
        let limit = self.rules.bulk_distinct;
        if !self.reads.contains_key(&e.principal) && self.reads.len() >= MAX_PRINCIPALS {
            // Forget the principals whose reads all fell out of the window, or else the idlest.
            self.reads.retain(|_, r| r.last_at > at - within);
            if self.reads.len() >= MAX_PRINCIPALS {
                if let Some(idlest) = self.reads.iter().min_by_key(|(_, r)| r.last_at).map(|(p, _)| p.clone()) {
                    self.reads.remove(&idlest);
                }
            }
        }
        // No allocation for a principal and a credential seen before (the usual read).
        let reads = match self.reads.get_mut(&e.principal) {
            Some(r) => r,
            None => self.reads.entry(e.principal.clone()).or_default(),
        };
        reads.last_at = at;
        match reads.latest.get_mut(&e.resource) {
            Some(seen) => *seen = (at, e.seq),
            None => {
                reads.latest.insert(e.resource.clone(), (at, e.seq));
            }
        }
        if reads.latest.len() <= limit {
            return None;
        }
        // Over the limit: drop what fell out of the window, then look again. A principal that
        // keeps to at most `limit` credentials never gets here, however often it reads them.
        reads.latest.retain(|_, (t, _)| *t > at - within);
        if reads.latest.len() <= limit {
            return None;
        }
        // Raised (or quiet): the window starts again, so that a sweep costs each read O(limit).
        let latest = std::mem::take(&mut reads.latest);
        let count = latest.len();
        let (first_seen, first_seq) = latest.values().copied().min().unwrap_or((at, e.seq));
        if !self.quiet_now(Rule::BulkRead, &e.principal, "", at) {
            return None;
        }
        let mut resources: Vec<String> = latest.into_keys().collect();
        resources.sort();
        resources.truncate(MAX_RESOURCES);
        let minutes = self.rules.bulk_within.as_secs_f64() / 60.0;
        Some(Finding {
            rule: Rule::BulkRead,
            key: format!("{}:{}:{}", Rule::BulkRead.name(), e.principal, e.seq),
            principal: e.principal.clone(),
            source: e.source.clone(),
            summary: format!(
                "{} revealed {count} distinct credentials within {minutes:.3} minutes (more than {limit}), the last from {}",
                e.principal,
                source(e)
            ),
            resources,
            first_seq,
            last_seq: e.seq,
            first_seen: Timestamp::from_micros(first_seen),
            last_seen: e.time,
            events: count as i64,
        })
    }
}

fn source(e: &AuditRecord) -> &str {
    if e.source.is_empty() {
        "the server itself"
    } else {
        &e.source
    }
}

/// The credential an event names, if it names one.
fn resources_of(e: &AuditRecord) -> Vec<String> {
    match rekey_types::audit::tenant_of(&e.resource) {
        Some(_) if e.resource.contains('/') => vec![e.resource.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
