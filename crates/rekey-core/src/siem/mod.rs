//! The audit log pushed to SIEMs as it grows (docs/audit.md, "SIEM export"): each configured
//! sink has a task that reads the events after its position, maps them to OCSF ([`ocsf`]),
//! sends them, and moves its position (stored, per sink) only once they are delivered: at least
//! once, in order, resumable across restarts by sequence number.
//!
//! A syslog receiver has no acknowledgement: a batch written to it counts as delivered once the
//! connection is still open at the next pass, and after a reconnect everything since the last
//! delivered position is sent again (duplicates are possible and carry the same
//! `metadata.uid`; gaps are not, unless a receiver loses what it read and stays connected).

pub mod ocsf;

use std::sync::Arc;
use std::time::Duration;

use rekey_connect::siem::{HttpSink, SinkError, SyslogSink};
use rekey_types::{AuditOutcome, AuditRecord};

use crate::{CoreError, Vault};

/// Events read and sent per batch.
pub const BATCH: u32 = 1_000;

/// Where events go.
#[derive(Clone)]
pub enum Destination {
    /// RFC 5424 over TLS.
    Syslog(Arc<SyslogSink>),
    /// JSON lines over HTTP.
    Http(Arc<HttpSink>),
}

/// One sink: its name (its position is stored under it) and destination.
#[derive(Clone)]
pub struct Sink {
    /// The name, e.g. `syslog:siem.example.com:6514`.
    pub name: String,
    /// Where.
    pub destination: Destination,
}

/// The SIEM export; from the `[siem]` config section.
#[derive(Clone)]
pub struct SiemOptions {
    /// The sinks.
    pub sinks: Vec<Sink>,
    /// Time between passes when caught up (and between a failure and the retry).
    pub interval: Duration,
    /// The `HOSTNAME` of syslog messages.
    pub hostname: String,
}

impl Default for SiemOptions {
    fn default() -> Self {
        Self { sinks: Vec::new(), interval: Duration::from_secs(1), hostname: "-".into() }
    }
}

/// An event as one RFC 5424 message: facility 13 (log audit), severity 6 (informational) for a
/// success, 4 (warning) for a denial, 3 (error) for an error; `APP-NAME` `rekey`, `MSGID`
/// `audit`, no structured data, the OCSF JSON as the message.
pub fn syslog_message(record: &AuditRecord, hostname: &str, ocsf_json: &str) -> String {
    let severity = match record.outcome {
        AuditOutcome::Success => 6,
        AuditOutcome::Denied => 4,
        AuditOutcome::Error => 3,
    };
    format!("<{}>1 {} {hostname} rekey - audit - {ocsf_json}", 13 * 8 + severity, record.time)
}

impl Vault {
    /// Starts one task per sink, while the vault is open.
    pub(crate) fn start_siem(self: Arc<Self>) {
        let options = self.options().siem.clone();
        for sink in options.sinks.clone() {
            let hostname = options.hostname.clone();
            let pending: Arc<std::sync::Mutex<Option<i64>>> = Default::default();
            self.clone().repeat(options.interval, None, "sending audit events to a SIEM", move |vault| {
                let (sink, hostname, pending) = (sink.clone(), hostname.clone(), pending.clone());
                async move { vault.siem_pass(&sink, &hostname, &pending).await }
            });
        }
    }

    /// Sends what the sink has not received, a batch at a time, until caught up or a failure.
    async fn siem_pass(
        &self,
        sink: &Sink,
        hostname: &str,
        pending: &std::sync::Mutex<Option<i64>>,
    ) -> Result<(), CoreError> {
        let mut from = self.store().siem_cursor(&sink.name).await?;
        if let Destination::Syslog(s) = &sink.destination {
            // What was written at the last pass is delivered if the connection survived it.
            let written = pending.lock().expect("never poisoned").take();
            if s.still_open().await {
                if let Some(seq) = written {
                    self.store().set_siem_cursor(&sink.name, seq).await?;
                    from = from.max(seq);
                }
            }
        }
        let origin = self.log_key().name.clone();
        loop {
            if self.is_closed() {
                return Ok(());
            }
            let events = self.store().audit_page(from, BATCH).await?;
            let Some(last) = events.last().map(|e| e.record.seq) else { return Ok(()) };
            let sent = match &sink.destination {
                Destination::Syslog(s) => {
                    let messages: Vec<String> = events
                        .iter()
                        .map(|e| syslog_message(&e.record, hostname, &ocsf::event(&e.record, &origin).to_string()))
                        .collect();
                    s.send(&messages).await
                }
                Destination::Http(h) => {
                    let lines: Vec<String> =
                        events.iter().map(|e| ocsf::event(&e.record, &origin).to_string()).collect();
                    h.send(&lines).await
                }
            };
            match (sent, &sink.destination) {
                (Ok(()), Destination::Http(_)) => self.store().set_siem_cursor(&sink.name, last).await?,
                (Ok(()), Destination::Syslog(_)) => *pending.lock().expect("never poisoned") = Some(last),
                (Err(e), _) => {
                    self.writer_stats().siem_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(sink_failed(&sink.name, e));
                }
            }
            from = last;
            if events.len() < BATCH as usize {
                return Ok(());
            }
        }
    }
}

fn sink_failed(name: &str, e: SinkError) -> CoreError {
    tracing::warn!(sink = name, error = %e, "the SIEM sink failed; its events are sent again from where it stopped");
    CoreError::Conflict(format!("SIEM sink {name}: {e}"))
}
