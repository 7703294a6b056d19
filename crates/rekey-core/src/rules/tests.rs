use super::*;

struct Known {
    decoys: Vec<&'static str>,
    tokens: Vec<&'static str>,
    listings: Listings,
}

impl World for Known {
    fn is_decoy(&self, resource: &str) -> bool {
        self.decoys.contains(&resource)
    }
    fn token_exists(&self, principal: &str) -> bool {
        self.tokens.contains(&principal)
    }
    fn listings(&self) -> &Listings {
        &self.listings
    }
}

fn world() -> Known {
    let mut listings = Listings::default();
    let listing = |name: &str, from: i64, until: Option<i64>| Listing {
        feed: "isac".into(),
        name: name.into(),
        stix_id: format!("indicator--{name}"),
        valid_from: from,
        valid_until: until,
    };
    listings.add("203.0.113.0/24".parse().unwrap(), listing("block", 0, None));
    listings.add("198.51.100.7/32".parse().unwrap(), listing("expired", 0, Some(1_000)));
    listings.add("2001:db8::/32".parse().unwrap(), listing("v6", 0, None));
    Known { decoys: vec!["acme/svc-backup"], tokens: vec!["token:revoked"], listings }
}

struct Log {
    seq: i64,
    start: i64,
}

impl Log {
    fn new() -> Self {
        Self { seq: 0, start: 1_800_000_000_000_000 }
    }
    /// An event `secs` seconds after the start.
    fn at(
        &mut self,
        secs: f64,
        principal: &str,
        action: &str,
        resource: &str,
        outcome: AuditOutcome,
        detail: &str,
    ) -> AuditRecord {
        self.seq += 1;
        AuditRecord {
            seq: self.seq,
            time: Timestamp::from_micros(self.start + (secs * 1e6) as i64),
            principal: principal.into(),
            action: action.into(),
            resource: resource.into(),
            outcome,
            source: "192.0.2.7".into(),
            request_id: String::new(),
            detail: detail.into(),
        }
    }
    fn reveal(&mut self, secs: f64, principal: &str, resource: &str) -> AuditRecord {
        self.at(secs, principal, "cred.reveal", resource, AuditOutcome::Success, "version=1")
    }
}

fn rules(distinct: usize, within_secs: u64) -> Rules {
    Rules {
        bulk_distinct: distinct,
        bulk_within: Duration::from_secs(within_secs),
        repeat_after: Duration::from_secs(600),
        ..Rules::default()
    }
}

#[test]
fn bulk_read_raises_once_a_principal_passes_n_distinct_credentials_within_t() {
    let mut engine = Engine::new(rules(10, 60));
    let mut log = Log::new();
    let w = world();
    for i in 0..10 {
        assert!(engine.observe(&log.reveal(i as f64, "token:thief", &format!("acme/c{i}")), &w).is_empty());
    }
    let found = engine.observe(&log.reveal(10.0, "token:thief", "acme/c10"), &w);
    assert_eq!(found.len(), 1);
    let f = &found[0];
    assert_eq!(f.rule, Rule::BulkRead);
    assert_eq!(f.key, "bulk-read:token:thief:11");
    assert_eq!((f.first_seq, f.last_seq, f.events), (1, 11, 11));
    assert_eq!(f.resources.len(), 11);
    assert_eq!(f.last_seen.as_micros() - f.first_seen.as_micros(), 10_000_000);
    assert!(f.summary.contains("11 distinct credentials"), "{}", f.summary);
    // Going on, it stays quiet for repeat_after; then raises again.
    for i in 11..200 {
        assert!(engine.observe(&log.reveal(10.0 + i as f64, "token:thief", &format!("acme/c{i}")), &w).is_empty());
    }
    let again: Vec<_> = (200..230)
        .flat_map(|i| engine.observe(&log.reveal(600.0 + i as f64, "token:thief", &format!("acme/c{i}")), &w))
        .collect();
    assert_eq!(again.len(), 1, "once the quiet time is over");
}

#[test]
fn bulk_read_stays_silent_for_a_principal_that_keeps_to_its_credentials_or_reads_slowly() {
    let mut engine = Engine::new(rules(10, 60));
    let mut log = Log::new();
    let w = world();
    // Ten credentials, read over and over, fast.
    for i in 0..10_000 {
        assert!(engine
            .observe(&log.reveal(i as f64 / 100.0, "token:fetcher", &format!("acme/c{}", i % 10)), &w)
            .is_empty());
    }
    // Many credentials, each minute at most ten new ones (the window is a minute).
    for i in 0..100 {
        assert!(engine
            .observe(&log.reveal(200.0 + i as f64 * 7.0, "token:slow", &format!("acme/d{i}")), &w)
            .is_empty());
    }
    // Two principals with ten each: not one principal with twenty.
    for i in 0..10 {
        assert!(engine.observe(&log.reveal(1000.0, "token:a", &format!("acme/e{i}")), &w).is_empty());
        assert!(engine.observe(&log.reveal(1000.0, "token:b", &format!("acme/f{i}")), &w).is_empty());
    }
    // Refused reveals are not reads.
    for i in 0..50 {
        let e = log.at(2000.0, "token:c", "cred.reveal", &format!("acme/g{i}"), AuditOutcome::Denied, "not_found");
        assert!(engine.observe(&e, &w).is_empty());
    }
}

#[test]
fn a_decoy_is_raised_on_any_sight_of_it_once_per_principal_and_quiet_time() {
    let mut engine = Engine::new(rules(100, 60));
    let mut log = Log::new();
    let w = world();
    assert!(engine
        .observe(&log.at(0.0, "token:op", "cred.put", "acme/svc-backup", AuditOutcome::Success, "version=1"), &w)
        .is_empty());
    assert!(engine
        .observe(&log.at(0.0, "token:admin", "cred.show", "acme/svc-backup", AuditOutcome::Success, ""), &w)
        .is_empty());
    assert!(engine.observe(&log.reveal(1.0, "token:x", "acme/directory"), &w).is_empty());
    let found = engine.observe(&log.reveal(2.0, "token:x", "acme/svc-backup"), &w);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].rule, Rule::Decoy);
    assert_eq!(found[0].resources, ["acme/svc-backup"]);
    assert!(engine.observe(&log.reveal(3.0, "token:x", "acme/svc-backup"), &w).is_empty(), "quiet");
    // A refused try by another principal is a sight too.
    let denied = log.at(4.0, "token:y", "cred.reveal", "acme/svc-backup", AuditOutcome::Denied, "not_found");
    assert_eq!(engine.observe(&denied, &w).len(), 1);
    let verify = log.at(5.0, "token:z", "cred.verify", "acme/svc-backup", AuditOutcome::Error, "auth_failed");
    assert_eq!(engine.observe(&verify, &w).len(), 1);
    assert_eq!(engine.observe(&log.reveal(700.0, "token:x", "acme/svc-backup"), &w).len(), 1, "after the quiet time");
}

#[test]
fn outside_cidrs_and_dead_tokens_are_raised_and_guesses_are_not() {
    let mut engine = Engine::new(rules(100, 60));
    let mut log = Log::new();
    let w = world();
    let outside = log.at(0.0, "token:t1", "cred.reveal", "acme/directory", AuditOutcome::Denied, OUTSIDE_CIDRS);
    let found = engine.observe(&outside, &w);
    assert_eq!((found.len(), found[0].rule), (1, Rule::OutsideCidr));
    assert_eq!(found[0].resources, ["acme/directory"]);
    let dead = log.at(1.0, "token:revoked", "cred.reveal", "acme/directory", AuditOutcome::Denied, DEAD_TOKEN);
    assert_eq!(engine.observe(&dead, &w)[0].rule, Rule::DeadToken);
    let guess = log.at(2.0, "token:never-issued", "cred.reveal", "acme/directory", AuditOutcome::Denied, DEAD_TOKEN);
    assert!(engine.observe(&guess, &w).is_empty());
    let anonymous = log.at(3.0, "anonymous", "cred.reveal", "acme/directory", AuditOutcome::Denied, "no token");
    assert!(engine.observe(&anonymous, &w).is_empty());
}

#[test]
fn a_rule_switched_off_raises_nothing() {
    let mut r = rules(1, 60);
    for rule in Rule::ALL {
        r.set(rule, RuleConfig { enabled: false, action: RuleAction::None });
    }
    let mut engine = Engine::new(r);
    let mut log = Log::new();
    let w = world();
    for i in 0..5 {
        assert!(engine.observe(&log.reveal(0.0, "token:x", &format!("acme/c{i}")), &w).is_empty());
    }
    assert!(engine.observe(&log.reveal(0.0, "token:x", "acme/svc-backup"), &w).is_empty());
    assert_eq!(Rule::parse("bulk-read"), Some(Rule::BulkRead));
    assert_eq!(Rule::parse("bulk"), None);
}

#[test]
fn a_request_from_a_listed_address_is_raised_while_its_listing_holds() {
    let mut engine = Engine::new(rules(100, 60));
    let mut log = Log::new();
    let w = world();
    let from = |log: &mut Log, source: &str| {
        let mut e = log.reveal(1.0, "token:x", "acme/directory");
        e.source = source.into();
        e
    };
    let e = from(&mut log, "203.0.113.77");
    let found = engine.observe(&e, &w);
    assert_eq!((found.len(), found[0].rule), (1, Rule::FeedAddress));
    assert!(found[0].summary.contains("listed by feed isac as \"block\""), "{}", found[0].summary);
    let e = from(&mut log, "203.0.113.77");
    assert!(engine.observe(&e, &w).is_empty(), "quiet for the same principal and address");
    let e = from(&mut log, "::ffff:203.0.113.8");
    assert_eq!(engine.observe(&e, &w).len(), 1, "an IPv4 client seen over IPv6");
    let e = from(&mut log, "2001:db8:1::5");
    assert_eq!(engine.observe(&e, &w).len(), 1);
    for clean in ["198.51.100.7", "192.0.2.1", "2001:db9::1", ""] {
        let e = from(&mut log, clean);
        assert!(engine.observe(&e, &w).is_empty(), "{clean}: expired, unlisted or none");
    }
}
