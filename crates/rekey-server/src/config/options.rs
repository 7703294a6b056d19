//! The configuration turned into the settings the vault, the guard and the campaign workers
//! take, each value checked on the way.

use super::{Config, ConfigError};

/// A duration setting: seconds, or `None` for `off` where `off` is allowed. `0s` is zero.
fn duration_setting(field: &'static str, text: &str, off_allowed: bool) -> Result<Option<u64>, ConfigError> {
    let text = text.trim();
    if off_allowed && text == "off" {
        return Ok(None);
    }
    if text == "0" || text == "0s" {
        return Ok(Some(0));
    }
    rekey_types::time::parse_duration_secs(text)
        .map(|s| Some(s.unsigned_abs()))
        .map_err(|message| ConfigError::Invalid { field, message })
}

impl Config {
    /// The connector and scheduler settings as the vault takes them.
    pub fn vault_options(&self) -> Result<rekey_core::VaultOptions, ConfigError> {
        use std::time::Duration;
        let c = &self.connectors;
        let connect = duration_setting("connectors.connect_timeout", &c.connect_timeout, false)?.unwrap_or(0);
        let overall = duration_setting("connectors.timeout", &c.timeout, false)?.unwrap_or(0);
        if connect == 0 || overall == 0 || connect > overall {
            return Err(ConfigError::Invalid {
                field: "connectors",
                message: "connect_timeout and timeout must be above zero, and connect_timeout at most timeout".into(),
            });
        }
        if !(1..=256).contains(&c.per_host) {
            return Err(ConfigError::Invalid {
                field: "connectors.per_host",
                message: "must be between 1 and 256".into(),
            });
        }
        let grace = duration_setting("rotation.grace", &self.rotation.grace, false)?.unwrap_or(0);
        let s = &self.scheduler;
        let interval = duration_setting("scheduler.interval", &s.interval, true)?;
        if interval == Some(0) {
            return Err(ConfigError::Invalid {
                field: "scheduler.interval",
                message: "must be above zero, or off".into(),
            });
        }
        let verify_every = duration_setting("scheduler.verify_every", &s.verify_every, true)?;
        if verify_every == Some(0) {
            return Err(ConfigError::Invalid {
                field: "scheduler.verify_every",
                message: "must be above zero, or off".into(),
            });
        }
        if !(1..=1024).contains(&s.concurrency) {
            return Err(ConfigError::Invalid {
                field: "scheduler.concurrency",
                message: "must be between 1 and 1024".into(),
            });
        }
        // One policy for the connectors, the notice relay and the webhook.
        let egress = self.egress.policy()?;
        let campaign = self.campaign_options(&egress)?;
        let detect = self.detect_options(&egress)?;
        Ok(rekey_core::VaultOptions {
            campaign,
            cert_lifetime_secs: self.certificates.lifetime_secs()?,
            connect: rekey_core::connectors::ConnectOptions {
                limits: rekey_connect::Limits {
                    connect: Duration::from_secs(connect),
                    overall: Duration::from_secs(overall),
                    egress,
                },
                per_host: c.per_host,
                grace_secs: grace,
            },
            scheduler: rekey_core::scheduler::SchedulerOptions {
                interval: interval.map(Duration::from_secs),
                verify_every: verify_every.map(Duration::from_secs),
                concurrency: s.concurrency,
            },
            failures: std::sync::Arc::new(rekey_core::failures::Failures::new(self.failure_options()?)),
            throttle: std::sync::Arc::new(rekey_core::throttle::Throttle::new(self.throttle_options()?)),
            checkpoints: self.checkpoint_options()?,
            siem: self.siem_options()?,
            detect,
            jwt_roles: self.jwt_roles()?,
            oidc: self.oidc.as_ref().map(|o| o.options()).transpose()?,
            ..Default::default()
        })
    }

    /// The auth roles of the file, checked as the API checks them (whether their tenant and
    /// credentials exist is found at login).
    fn jwt_roles(&self) -> Result<std::collections::BTreeMap<String, rekey_types::JwtRoleSpec>, ConfigError> {
        for (name, spec) in &self.jwt_roles {
            rekey_core::workloads::JwtRole::check_named(name, spec.clone())
                .map_err(|e| ConfigError::Invalid { field: "jwt_roles", message: format!("{name}: {e}") })?;
        }
        Ok(self.jwt_roles.clone())
    }

    /// The SIEM export (see `rekey_core::siem`).
    fn siem_options(&self) -> Result<rekey_core::siem::SiemOptions, ConfigError> {
        use rekey_core::siem::{Destination, Sink};
        use std::time::Duration;
        let s = &self.siem;
        let invalid = |field: &'static str, message: String| ConfigError::Invalid { field, message };
        let interval = duration_setting("siem.interval", &s.interval, false)?.unwrap_or(0);
        let timeout = duration_setting("siem.timeout", &s.timeout, false)?.unwrap_or(0);
        if interval == 0 || timeout == 0 {
            return Err(invalid("siem", "interval and timeout must be above zero".into()));
        }
        let timeout = Duration::from_secs(timeout);
        let mut sinks = Vec::new();
        for r in &s.syslog {
            let ca = match &r.ca_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| invalid("siem.syslog.ca_file", format!("cannot read {}: {e}", path.display())))?,
                ),
                None => None,
            };
            let sink = rekey_connect::siem::SyslogSink::new(&r.address, ca.as_deref(), timeout)
                .map_err(|e| invalid("siem.syslog", e.to_string()))?;
            sinks.push(Sink { name: format!("syslog:{}", r.address), destination: Destination::Syslog(sink.into()) });
        }
        for h in &s.http {
            let authorization = match &h.authorization_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    invalid("siem.http.authorization_env", format!("the environment variable {var} is not set"))
                })?),
                None => None,
            };
            let sink = rekey_connect::siem::HttpSink::new(&h.url, authorization, timeout)
                .map_err(|e| invalid("siem.http", e.to_string()))?;
            // The position is stored under the URL without what may be secret in it.
            let mut url: url::Url = h.url.parse().map_err(|_| invalid("siem.http.url", "does not parse".into()))?;
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            let name = format!("http:{url}");
            sinks.push(Sink { name, destination: Destination::Http(sink.into()) });
        }
        let hostname = match &s.hostname {
            Some(h) => h.clone(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
                .unwrap_or_else(|| "-".into()),
        };
        if hostname.is_empty() || hostname.len() > 255 || !hostname.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("siem.hostname", "printable ASCII without spaces, at most 255 characters".into()));
        }
        Ok(rekey_core::siem::SiemOptions { sinks, interval: Duration::from_secs(interval), hostname })
    }

    /// Signed checkpoints of the audit log (see `rekey_core::checkpoints`).
    fn checkpoint_options(&self) -> Result<rekey_core::options::CheckpointOptions, ConfigError> {
        use std::time::Duration;
        let a = &self.audit;
        let invalid = |field: &'static str, message: &str| ConfigError::Invalid { field, message: message.into() };
        let every = duration_setting("audit.checkpoint_every", &a.checkpoint_every, true)?;
        if every == Some(0) {
            return Err(invalid("audit.checkpoint_every", "must be above zero, or off"));
        }
        if a.checkpoint_events == Some(0) {
            return Err(invalid("audit.checkpoint_events", "must be above zero, or left out"));
        }
        if let Some(origin) = &a.origin {
            rekey_tlog::VerifierKey::new(origin, [0; 32])
                .map_err(|_| invalid("audit.origin", "a name without spaces, '+' or control characters"))?;
        }
        let timeout = duration_setting("audit.witness_timeout", &a.witness_timeout, false)?.unwrap_or(0);
        if timeout == 0 {
            return Err(invalid("audit.witness_timeout", "must be above zero"));
        }
        let witnesses = a
            .witnesses
            .iter()
            .map(|w| {
                rekey_connect::witness::HttpWitness::new(&w.url, &w.key, Duration::from_secs(timeout))
                    .map_err(|e| invalid("audit.witnesses", &e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rekey_core::options::CheckpointOptions {
            origin: a.origin.clone(),
            every: every.map(Duration::from_secs),
            events: a.checkpoint_events,
            dirs: a.witness_dirs.clone(),
            witnesses,
        })
    }

    /// How failed attempts are limited and audited (see `rekey_core::failures`).
    fn failure_options(&self) -> Result<rekey_core::failures::FailureOptions, ConfigError> {
        let l = &self.limits;
        let window = duration_setting("limits.failures_window", &l.failures_window, false)?.unwrap_or(0);
        if !(1..=86_400).contains(&window) {
            return Err(ConfigError::Invalid {
                field: "limits.failures_window",
                message: "must be between 1s and 1d".into(),
            });
        }
        if l.failures_burst == 0 || l.failures_per_minute == 0 || l.failures_sources == 0 {
            return Err(ConfigError::Invalid {
                field: "limits",
                message: "failures_burst, failures_per_minute and failures_sources must be above zero".into(),
            });
        }
        Ok(rekey_core::failures::FailureOptions {
            burst: l.failures_burst,
            per_minute: l.failures_per_minute,
            window: std::time::Duration::from_secs(window),
            max_sources: l.failures_sources,
        })
    }

    /// Request rates per token by role (see `rekey_core::throttle`); their refusals are
    /// aggregated over the failures' window.
    fn throttle_options(&self) -> Result<rekey_core::throttle::ThrottleOptions, ConfigError> {
        let mut options =
            rekey_core::throttle::ThrottleOptions { window: self.failure_options()?.window, ..Default::default() };
        for (name, rate) in &self.limits.rate {
            let invalid = |message: String| ConfigError::Invalid { field: "limits.rate", message };
            let role = rekey_types::Role::ALL.into_iter().position(|r| r.as_str() == name).ok_or_else(|| {
                invalid(format!("{name:?} is not a role (operator, auditor, tenant-admin, connector)"))
            })?;
            if !(rate.per_second.is_finite() && rate.per_second >= 0.001 && rate.per_second <= 1e6) || rate.burst == 0 {
                return Err(invalid(format!(
                    "{name}: per_second must be between 0.001 and 1000000, and burst above zero"
                )));
            }
            options.limits[role] =
                Some(rekey_core::throttle::RateLimit { per_second: rate.per_second, burst: rate.burst });
        }
        Ok(options)
    }
}

impl Config {
    /// The limits the server applies before any work (see `guard`).
    pub(crate) fn guard_limits(&self) -> Result<crate::guard::GuardLimits, ConfigError> {
        let l = &self.limits;
        let body_timeout = duration_setting("limits.body_timeout", &l.body_timeout, false)?.unwrap_or(0);
        if body_timeout == 0 {
            return Err(ConfigError::Invalid { field: "limits.body_timeout", message: "must be above zero".into() });
        }
        if l.max_concurrent == 0 || l.max_concurrent_per_source == 0 || l.max_concurrent_per_source > l.max_concurrent {
            return Err(ConfigError::Invalid {
                field: "limits",
                message:
                    "max_concurrent and max_concurrent_per_source must be above zero, per source at most the total"
                        .into(),
            });
        }
        Ok(crate::guard::GuardLimits {
            max_concurrent: l.max_concurrent,
            max_concurrent_per_source: l.max_concurrent_per_source,
            body_timeout: std::time::Duration::from_secs(body_timeout),
            max_body_bytes: l.max_body_bytes,
            max_import_bytes: l.max_import_bytes,
        })
    }

    /// The campaign and notification settings as the vault takes them.
    fn campaign_options(
        &self,
        egress: &std::sync::Arc<rekey_connect::egress::EgressPolicy>,
    ) -> Result<rekey_core::campaigns::CampaignOptions, ConfigError> {
        use std::time::Duration;
        let c = &self.campaign;
        let invalid = |field: &'static str, message: &str| ConfigError::Invalid { field, message: message.to_owned() };
        let interval = duration_setting("campaign.interval", &c.interval, true)?;
        if interval == Some(0) {
            return Err(invalid("campaign.interval", "must be above zero, or off"));
        }
        if !(1..=1024).contains(&c.concurrency) {
            return Err(invalid("campaign.concurrency", "must be between 1 and 1024"));
        }
        if !(1..=100).contains(&c.max_attempts) {
            return Err(invalid("campaign.max_attempts", "must be between 1 and 100"));
        }
        let retry_base = duration_setting("campaign.retry_base", &c.retry_base, false)?.unwrap_or(0);
        let lease = duration_setting("campaign.lease", &c.lease, false)?.unwrap_or(0);
        let remind_before = duration_setting("campaign.remind_before", &c.remind_before, false)?.unwrap_or(0);
        if retry_base == 0 || lease < 10 {
            return Err(invalid("campaign", "retry_base must be above zero and lease at least 10s"));
        }
        // Without a setting, the server fills it in once it knows the address it listens on.
        let public_url: std::sync::Arc<std::sync::OnceLock<String>> = Default::default();
        if let Some(u) = &c.public_url {
            let parsed = url::Url::parse(u).map_err(|e| invalid("campaign.public_url", &e.to_string()))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid("campaign.public_url", "must be an http or https URL"));
            }
            let _ = public_url.set(u.trim_end_matches('/').to_owned());
        }
        let n = &self.notify;
        let timeout = duration_setting("notify.timeout", &n.timeout, false)?.unwrap_or(0);
        if timeout == 0 {
            return Err(invalid("notify.timeout", "must be above zero"));
        }
        let timeout = Duration::from_secs(timeout);
        let mail = match (&n.smtp_url, &n.from) {
            (Some(url), Some(from)) => Some(
                rekey_connect::notify::MailRelay::new(url.expose(), from, timeout, egress.clone())
                    .map_err(|e| invalid("notify.smtp_url", &e.to_string()))?,
            ),
            (None, None) => None,
            _ => return Err(invalid("notify", "email needs both smtp_url and from")),
        };
        let webhook = match &n.webhook_url {
            Some(url) => {
                let secret =
                    match (&n.webhook_secret_file, &n.webhook_secret_env) {
                        (Some(path), None) => std::fs::read_to_string(path).map_err(|e| {
                            invalid("notify.webhook_secret_file", &format!("cannot read {}: {e}", path.display()))
                        })?,
                        (None, Some(var)) => std::env::var(var).map_err(|_| {
                            invalid("notify.webhook_secret_env", &format!("the environment variable {var} is not set"))
                        })?,
                        _ => return Err(invalid(
                            "notify",
                            "a webhook needs its secret from exactly one of webhook_secret_file or webhook_secret_env",
                        )),
                    };
                let secret = secret.trim().as_bytes().to_vec();
                Some(
                    rekey_connect::notify::Webhook::new(url, secret, timeout, egress.clone())
                        .map_err(|e| invalid("notify.webhook_url", &e.to_string()))?,
                )
            }
            None => None,
        };
        Ok(rekey_core::campaigns::CampaignOptions {
            concurrency: c.concurrency,
            interval: interval.map(Duration::from_secs),
            max_attempts: c.max_attempts,
            retry_base: Duration::from_secs(retry_base),
            lease: Duration::from_secs(lease),
            remind_before: Duration::from_secs(remind_before),
            public_url,
            mail,
            webhook,
        })
    }
}
