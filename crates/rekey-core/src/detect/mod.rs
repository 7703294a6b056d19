//! Detection (docs/detection.md): rules over the audit log, evaluated off the requests' path by
//! a follower of the log like the SIEM export. Each server reads every event after its position,
//! runs the rules ([`crate::rules`]) and stores what they raise together with the detector's position
//! in one transaction; an alert's key (rule, principal, raising event) is unique, so servers
//! sharing a PostgreSQL database store each alert once, and the one that stored it audits it
//! (`alert.raise`), counts it, carries out the rule's automatic action if one is set, and hands
//! it to the notices (webhook and e-mail, retried until delivered or out of attempts).

pub mod alerts;
pub mod decoys;
mod feeds;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rekey_store::{AlertRow, BaselineRow, WriteOp};
use rekey_types::{AlertId, AlertState, AuditAction, AuditOutcome, AuditRecord, RuleAction, Timestamp, TokenId};

use crate::failures::DEAD_TOKEN;
use crate::rules::baseline::Baseline;
use crate::rules::{Engine, Finding, Listing, Listings, Rule, Rules, World};
use crate::{Caller, CoreError, Vault};

/// Events read per batch.
pub const BATCH: u32 = 1_000;
/// The detector's position is stored under this name beside the SIEM sinks'.
const CURSOR: &str = "detector";
/// The name the detector's own acts are audited under.
pub const ACTOR: &str = "system:detector";
/// Decoys planted and feeds read by other servers (on PostgreSQL) are read this often; this
/// server's own at once.
const RELOAD_EVERY: Duration = Duration::from_secs(10);
/// The least time between two passes (so at most 20 a second, each taking what gathered).
const PASS_GAP: Duration = Duration::from_millis(50);
/// The detector's position is stored at most this often (alerts with it, at once): after a
/// restart it goes over at most this much again, and what it raised then is stored once.
const STORE_POSITION_EVERY: Duration = Duration::from_secs(5);
/// Token ids remembered as issued or not (the dead-token rule asks the store once per id).
const KNOWN_TOKENS: usize = 100_000;

/// The detector's state between passes.
struct Follower {
    engine: Engine,
    /// The last event looked at; `None` until read from the store.
    position: Option<i64>,
    /// The decoys' `tenant/name`.
    decoys: HashSet<String>,
    /// When the decoys were read, and how many plants this server had made then.
    decoys_loaded: Option<(u64, Instant)>,
    /// Token ids (as `token:<id>`) known to be issued or not.
    tokens: HashMap<String, bool>,
    /// The addresses the threat feeds list.
    listings: Listings,
    /// When the listings were read, and how many feed reads this server had made then.
    listings_loaded: Option<(u64, Instant)>,
    /// When the position was last stored.
    stored_at: Instant,
}

impl Vault {
    /// Starts the detector and the alert notices, while the vault is open.
    pub(crate) fn start_detector(self: Arc<Self>) {
        let options = self.options().detect.clone();
        if !options.enabled {
            return;
        }
        let follower = Arc::new(tokio::sync::Mutex::new(Follower {
            engine: Engine::new(options.rules.clone()),
            position: None,
            decoys: HashSet::new(),
            decoys_loaded: None,
            tokens: HashMap::new(),
            listings: Listings::default(),
            listings_loaded: None,
            stored_at: Instant::now(),
        }));
        let wake = self.tap().wake();
        self.clone().repeat(options.interval, Some(wake), "detection", move |vault| {
            let follower = follower.clone();
            async move {
                let passed = vault.detect_pass(&follower).await;
                // Under load a batch is committed every few milliseconds: a pass per batch
                // would cost more than the rules; the next pass takes what gathered meanwhile.
                tokio::time::sleep(PASS_GAP.min(vault.options().detect.interval)).await;
                passed
            }
        });
        self.clone().start_feeds();
        if options.webhook || !options.email.is_empty() {
            let wake = self.alerts_wake().clone();
            self.repeat(Duration::from_secs(10), Some(wake), "alert notices", |vault| async move {
                vault.alert_notices().await
            });
        }
    }

    /// Runs the rules over the events after the detector's position, a batch at a time, until
    /// caught up: from what this server's writer just committed while it follows on without a
    /// gap (see `kernel::tap`), from the store otherwise.
    async fn detect_pass(&self, follower: &tokio::sync::Mutex<Follower>) -> Result<(), CoreError> {
        let mut f = follower.lock().await;
        let mut from = match f.position {
            Some(p) => p,
            None => {
                let stored = self.store().baselines().await?;
                f.engine.baselines().load(
                    stored
                        .into_iter()
                        .map(|(p, b)| (p, Baseline { first_at: b.first_at, hours: b.hours, busiest: b.busiest })),
                );
                self.store().siem_cursor(CURSOR).await?
            }
        };
        loop {
            if self.is_closed() {
                return Ok(());
            }
            // Held here while `events` borrows from them.
            let (batches, page);
            let (events, full): (Vec<&AuditRecord>, bool) = match self.tap().after(from) {
                Some(b) => {
                    batches = b;
                    (following(&batches, from), false)
                }
                None => {
                    page = self.store().audit_page(from, BATCH).await?;
                    (page.iter().map(|e| &e.record).collect(), page.len() == BATCH as usize)
                }
            };
            let Some(last) = events.last().map(|e| e.seq) else { break };
            // Read after the events: a decoy planted on this server before any of them was
            // committed is in the registry.
            let planted = self.decoys_planted().load(Ordering::SeqCst);
            if stale(f.decoys_loaded, planted) {
                f.decoys =
                    self.store().decoys(None).await?.into_iter().map(|d| format!("{}/{}", d.tenant, d.name)).collect();
                f.decoys_loaded = Some((planted, Instant::now()));
            }
            let read = self.feeds_read().load(Ordering::SeqCst);
            if stale(f.listings_loaded, read) {
                f.listings = listings(self.store().feed_indicators().await?);
                f.listings_loaded = Some((read, Instant::now()));
            }
            self.learn_tokens(&mut f, &events).await?;
            let mut found = Vec::new();
            {
                let Follower { engine, decoys, tokens, listings, .. } = &mut *f;
                let world = Known { decoys, tokens, listings };
                for e in &events {
                    found.extend(engine.observe(e, &world));
                }
            }
            f.position = Some(last);
            from = last;
            if !found.is_empty() || f.stored_at.elapsed() >= STORE_POSITION_EVERY {
                let rows: Vec<AlertRow> = found.iter().map(|x| alert_row(x, f.engine.rules())).collect();
                let changed: Vec<(String, BaselineRow)> = f
                    .engine
                    .baselines()
                    .take_changed()
                    .into_iter()
                    .map(|(p, b)| (p, BaselineRow { first_at: b.first_at, hours: b.hours, busiest: b.busiest }))
                    .collect();
                if !changed.is_empty() {
                    self.store().save_baselines(changed).await?;
                }
                let stored = self.store().insert_alerts(CURSOR, last, rows.clone()).await?;
                f.stored_at = Instant::now();
                for row in rows.into_iter().filter(|r| stored.contains(&r.id)) {
                    self.raised(row).await;
                }
            }
            self.writer_stats().detector_seq.store(last, Ordering::Relaxed);
            if !full && self.tap().after(from).is_none() {
                break;
            }
        }
        Ok(())
    }

    /// Looks up, once each, the tokens presented dead in these events.
    async fn learn_tokens(&self, f: &mut Follower, events: &[&AuditRecord]) -> Result<(), CoreError> {
        for e in events {
            if e.detail != DEAD_TOKEN || f.tokens.contains_key(&e.principal) {
                continue;
            }
            let issued = match e.principal.strip_prefix("token:").and_then(|id| id.parse::<TokenId>().ok()) {
                Some(id) => self.store().token(id).await?.is_some(),
                None => false,
            };
            if f.tokens.len() >= KNOWN_TOKENS {
                f.tokens.clear();
            }
            f.tokens.insert(e.principal.clone(), issued);
        }
        Ok(())
    }

    /// What the server that stored an alert does: audit it, count it, act, notify.
    async fn raised(&self, alert: AlertRow) {
        let rule = Rule::parse(&alert.rule);
        if let Some(i) = rule.and_then(|r| Rule::ALL.iter().position(|x| *x == r)) {
            self.writer_stats().alerts[i].fetch_add(1, Ordering::Relaxed);
        }
        let caller = Caller::system(ACTOR);
        let resource = format!("alert:{}", alert.id);
        let detail = format!("rule={}; severity={}", alert.rule, alert.severity);
        let event = self.event(&caller, AuditAction::AlertRaise, &resource, AuditOutcome::Success, &detail);
        if let Err(e) = self.audit_event(event).await {
            tracing::error!(alert = %alert.id, error = %e, "an alert was stored but its audit event was not written");
        }
        tracing::warn!(alert = %alert.id, rule = %alert.rule, severity = %alert.severity, principal = %alert.principal, "alert raised");
        if alert.action != RuleAction::None {
            if let Err(e) = self.act(&caller, &alert).await {
                tracing::error!(alert = %alert.id, error = %e, "the rule's automatic action failed");
            }
        }
        self.alerts_wake().notify_one();
    }

    /// A rule's automatic action, recorded as the alert's `action_outcome` with an `alert.act`
    /// event; the acts themselves are audited as the detector's own (`token.revoke`,
    /// `incident.open`, `incident.contain`).
    async fn act(&self, caller: &Caller, alert: &AlertRow) -> Result<(), CoreError> {
        let token = alert.principal.strip_prefix("token:").and_then(|id| id.parse::<TokenId>().ok());
        let outcome = match (alert.action, token) {
            (RuleAction::None, _) => return Ok(()),
            (RuleAction::Revoke, None) => "skipped: the alert names no token".to_owned(),
            (RuleAction::Revoke, Some(id)) => match self.revoke_token(caller, id).await {
                Ok(()) => format!("done: token:{id} revoked"),
                Err(e) => format!("failed: {}", e.code().as_str()),
            },
            // With or without a token: the credentials it names are frozen either way.
            (RuleAction::Freeze, _) => match self.escalate_alert(caller, alert.id).await {
                Ok(escalation) => {
                    let incident = escalation.incident.incident.id.clone();
                    match incident.parse() {
                        Ok(iid) => match self.contain_incident(caller, iid, true, false).await {
                            Ok(_) => format!("done: incident:{incident} opened and contained, its credentials frozen"),
                            Err(e) => format!("failed: incident:{incident} opened, containment {}", e.code().as_str()),
                        },
                        Err(_) => format!("failed: incident:{incident} opened, containment not started"),
                    }
                }
                Err(e) => format!("failed: {}", e.code().as_str()),
            },
        };
        let resource = format!("alert:{}", alert.id);
        let op = WriteOp::AlertActed { id: alert.id, outcome: outcome.clone() };
        self.commit(caller, AuditAction::AlertAct, &resource, op, &format!("{}: {outcome}", alert.action)).await
    }

    /// Delivers the notices of alerts not yet delivered.
    async fn alert_notices(&self) -> Result<(), CoreError> {
        let options = self.options().detect.clone();
        let pending = self.store().unnotified_alerts(i64::from(options.max_attempts), 100).await?;
        for alert in pending {
            let view = alerts::AlertView::from(alert.clone());
            let mut delivered = true;
            if options.webhook {
                if let Some(hook) = &self.options().campaign.webhook {
                    let body = serde_json::to_vec(&serde_json::json!({ "type": "alert", "alert": view }))
                        .expect("an alert always serializes");
                    if let Err(e) = hook.post(body, &alert.id.to_string()).await {
                        tracing::warn!(alert = %alert.id, error = %e, "the alert's webhook failed");
                        delivered = false;
                    }
                }
            }
            if !options.email.is_empty() {
                if let Some(mail) = &self.options().campaign.mail {
                    let subject = format!("[rekey] {} alert: {}", alert.severity, alert.rule);
                    if let Err(e) = mail.send(&options.email, &subject, notice_text(&view)).await {
                        tracing::warn!(alert = %alert.id, error = %e, "the alert's e-mail failed");
                        delivered = false;
                    }
                }
            }
            let at = delivered.then(Timestamp::now);
            self.store().alert_notified(alert.id, at).await?;
            if delivered {
                self.writer_stats().alert_notices.fetch_add(1, Ordering::Relaxed);
            } else {
                self.writer_stats().alert_notice_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// What the follower knows, borrowed for one event.
struct Known<'a> {
    decoys: &'a HashSet<String>,
    tokens: &'a HashMap<String, bool>,
    listings: &'a Listings,
}

impl World for Known<'_> {
    fn is_decoy(&self, resource: &str) -> bool {
        self.decoys.contains(resource)
    }
    fn token_exists(&self, principal: &str) -> bool {
        self.tokens.get(principal).copied().unwrap_or(false)
    }
    fn listings(&self) -> &Listings {
        self.listings
    }
}

/// The address indicators of the feeds, for the rules.
fn listings(rows: Vec<rekey_store::FeedIndicatorRow>) -> Listings {
    let mut out = Listings::default();
    for r in rows.into_iter().filter(|r| r.kind == "address") {
        let Ok(net) = r.value.parse::<ipnet::IpNet>() else { continue };
        let listing = Listing {
            feed: r.feed,
            name: r.name,
            stix_id: r.stix_id,
            valid_from: r.valid_from.as_micros(),
            valid_until: r.valid_until.map(Timestamp::as_micros),
        };
        out.add(net, listing);
    }
    out
}

/// Whether what was read from the store when this server's count was `loaded.0` must be read
/// again: never read, the count moved (this server changed it), or read `RELOAD_EVERY` ago
/// (another server may have).
fn stale(loaded: Option<(u64, Instant)>, count: u64) -> bool {
    loaded.is_none_or(|(n, at)| n != count || at.elapsed() >= RELOAD_EVERY)
}

/// The events of `batches` after `from`, in order, while each follows the last without a gap.
fn following(batches: &[std::sync::Arc<[AuditRecord]>], from: i64) -> Vec<&AuditRecord> {
    let mut next = from + 1;
    let mut out = Vec::new();
    for e in batches.iter().flat_map(|b| b.iter()) {
        if e.seq < next {
            continue;
        }
        if e.seq > next {
            break;
        }
        out.push(e);
        next += 1;
    }
    out
}

fn alert_row(f: &Finding, rules: &Rules) -> AlertRow {
    AlertRow {
        id: AlertId::generate(),
        key: f.key.clone(),
        rule: f.rule.name().to_owned(),
        severity: f.rule.severity(),
        principal: f.principal.clone(),
        source: f.source.clone(),
        summary: f.summary.clone(),
        resources: f.resources.clone(),
        first_seq: f.first_seq,
        last_seq: f.last_seq,
        first_seen: f.first_seen,
        last_seen: f.last_seen,
        events: f.events,
        state: AlertState::Open,
        action: rules.of(f.rule).action,
        action_outcome: None,
        handled_by: None,
        handled_at: None,
        note: None,
        incident: None,
        notify_attempts: 0,
        notified_at: None,
        created_at: Timestamp::now(),
    }
}

/// The text of an alert's e-mail: what a responder needs to start, never a secret.
fn notice_text(a: &alerts::AlertView) -> String {
    let mut text = format!(
        "Rekey raised a {} alert ({}).\n\n{}\n\nAlert: {}\nPrincipal: {}\nSource: {}\nFirst sign: {}\nRaised by the event at: {}\n",
        a.severity, a.rule, a.summary, a.id, a.principal, a.source, a.first_seen, a.last_seen
    );
    if !a.resources.is_empty() {
        text.push_str(&format!("Credentials ({}):\n", a.resources.len()));
        for r in a.resources.iter().take(50) {
            text.push_str(&format!("  {r}\n"));
        }
    }
    text.push_str(&format!("\nrekey alert show {0}\nrekey alert escalate {0}\n", a.id));
    text
}
