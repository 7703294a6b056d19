//! Threat feeds in: STIX 2.1 bundles from a file, or a TAXII 2.1 collection read page by page
//! from where the last read ended (`added_after`, kept in the store, so a restart resumes). Each
//! read is one write of the indicators it lists ([`crate::stix::indicators`]); the detector
//! reads them again when this server's poller took something, and every 10 s for other
//! servers'. A certificate indicator that names a certificate in the inventory raises a
//! `feed-certificate` alert at once (docs/detection.md).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rekey_store::{FeedIndicatorRow, FeedUpdate};
use rekey_types::{AuditAction, AuditOutcome, Timestamp};

use crate::options::{FeedOptions, FeedSource};
use crate::rules::Finding;
use crate::stix::indicators::{self, Read};
use crate::stix::pattern::Observable;
use crate::{Caller, CoreError, Vault};

/// Objects asked for per TAXII page.
const PAGE: u32 = 500;
/// Pages read per pass at most (the next pass goes on from there).
const PAGES: usize = 100;

impl Vault {
    /// Starts one poller per feed, while the vault is open.
    pub(crate) fn start_feeds(self: Arc<Self>) {
        for feed in self.options().detect.feeds.clone() {
            let every = feed.interval;
            // A file's digest at its last read: an unchanged file is not written again.
            let last: Arc<std::sync::Mutex<Option<Vec<u8>>>> = Arc::default();
            self.clone().repeat(every, None, "reading a threat feed", move |vault| {
                let (feed, last) = (feed.clone(), last.clone());
                async move { vault.read_feed(&feed, &last).await }
            });
        }
    }

    /// One read of a feed: what it lists now (a file) or what was added since the last read
    /// (TAXII), written with where the next read starts.
    async fn read_feed(&self, feed: &FeedOptions, last: &std::sync::Mutex<Option<Vec<u8>>>) -> Result<(), CoreError> {
        let failed = |what: String| {
            self.writer_stats().feed_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(feed = %feed.name, error = %what, "reading the threat feed failed; tried again at its next interval");
            CoreError::Conflict(format!("feed {}: {what}", feed.name))
        };
        let mut total = Read::default();
        let mut update = FeedUpdate { feed: feed.name.clone(), ..Default::default() };
        match &feed.source {
            FeedSource::File(path) => {
                let text = tokio::fs::read(path).await.map_err(|e| failed(format!("{}: {e}", path.display())))?;
                let bundle: serde_json::Value =
                    serde_json::from_slice(&text).map_err(|_| failed("the file is not a JSON STIX bundle".into()))?;
                let objects = bundle.get("objects").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
                total = indicators::read(&objects);
                update.replace = true;
                let digest = <sha2::Sha256 as sha2::Digest>::digest(&text).to_vec();
                if last.lock().expect("never poisoned").replace(digest.clone()).as_deref() == Some(&digest[..]) {
                    // Unchanged since the last read: only the inventory may have changed.
                    return self.stolen_certificates(&feed.name, certificates_of(&total)).await;
                }
            }
            FeedSource::Taxii(collection) => {
                let mut after = self.store().feed_cursor(&feed.name).await?;
                let mut next: Option<String> = None;
                for _ in 0..PAGES {
                    let page = collection
                        .page(after.as_deref(), next.as_deref(), PAGE)
                        .await
                        .map_err(|e| failed(e.to_string()))?;
                    let read = indicators::read(&page.objects);
                    total.listed.extend(read.listed);
                    total.revoked.extend(read.revoked);
                    total.refused_count += read.refused_count;
                    total.refused.extend(read.refused);
                    if let Some(last) = page.added_last {
                        after = Some(last);
                    }
                    next = page.next;
                    if !page.more || (next.is_none() && page.objects.is_empty()) {
                        break;
                    }
                }
                update.added_after = after;
            }
        }
        for (id, why) in total.refused.iter().take(5) {
            tracing::info!(feed = %feed.name, indicator = %id, why = %why, "an indicator of the feed was not taken");
        }
        let certificates = certificates_of(&total);
        update.listed = total
            .listed
            .into_iter()
            .map(|l| {
                let (kind, value) = match l.observable {
                    Observable::Address(net) => ("address", net.to_string()),
                    Observable::Certificate(hash) => ("certificate", hash),
                };
                FeedIndicatorRow {
                    feed: feed.name.clone(),
                    stix_id: l.stix_id,
                    kind: kind.into(),
                    value,
                    name: l.name,
                    modified: l.modified,
                    valid_from: l.valid_from,
                    valid_until: l.valid_until,
                }
            })
            .collect();
        update.revoked = total.revoked;
        let changed = !update.listed.is_empty() || !update.revoked.is_empty() || update.replace;
        let (listed, revoked) = (update.listed.len(), update.revoked.len());
        let taken = self.store().apply_feed(update).await?;
        if changed {
            self.feeds_read().fetch_add(1, Ordering::SeqCst);
        }
        if taken > 0 || revoked > 0 || total.refused_count > 0 {
            let caller = Caller::system(super::ACTOR);
            let detail = format!(
                "feed={}; indicators={taken}; observables={listed}; revoked={revoked}; not_understood={}",
                feed.name, total.refused_count
            );
            let event = self.event(
                &caller,
                AuditAction::FeedRead,
                &format!("feed:{}", feed.name),
                AuditOutcome::Success,
                &detail,
            );
            self.audit_event(event).await?;
        }
        self.stolen_certificates(&feed.name, certificates).await
    }

    /// Raises `feed-certificate` for each certificate of the inventory the feed lists.
    async fn stolen_certificates(&self, feed: &str, listed: Vec<(String, String, String)>) -> Result<(), CoreError> {
        let rule = crate::rules::Rule::FeedCertificate;
        if !self.options().detect.rules.of(rule).enabled {
            return Ok(());
        }
        for (hash, stix_id, name) in listed {
            let Some(cert) = self.store().certificate(&hash).await? else { continue };
            let now = Timestamp::now();
            let resource = format!("{}/{}", cert.tenant, cert.credential);
            let finding = Finding {
                rule,
                key: format!("{}:{stix_id}:{}", rule.name(), cert.sha256),
                principal: String::new(),
                source: String::new(),
                summary: format!(
                    "feed {feed} lists the certificate of {resource} ({}) as {name:?} ({stix_id})",
                    cert.sha256
                ),
                resources: vec![resource],
                first_seq: 0,
                last_seq: 0,
                first_seen: now,
                last_seen: now,
                events: 1,
            };
            let alert = super::alert_row(&finding, &self.options().detect.rules);
            let stored = self.store().insert_alerts(&format!("feed:{feed}"), 0, vec![alert.clone()]).await?;
            if stored.contains(&alert.id) {
                self.raised(alert).await;
            }
        }
        Ok(())
    }
}

/// The certificate indicators read: (thumbprint, indicator id, name).
fn certificates_of(read: &Read) -> Vec<(String, String, String)> {
    read.listed
        .iter()
        .filter_map(|l| match &l.observable {
            Observable::Certificate(hash) => Some((hash.clone(), l.stix_id.clone(), l.name.clone())),
            Observable::Address(_) => None,
        })
        .collect()
}
