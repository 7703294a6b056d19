//! Overrides from `REKEY_…` environment variables.

use std::fmt;
use std::path::PathBuf;

use super::{Config, ConfigError, Redacted, TlsConfig};

impl Config {
    /// Overrides from `REKEY_…` variables (read through `get`, so tests need not touch the
    /// process environment).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(var: &'static str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: fmt::Display,
        {
            v.parse().map_err(|e: T::Err| ConfigError::Env { var, message: e.to_string() })
        }
        if let Some(v) = get("REKEY_LISTEN") {
            self.listen = parse("REKEY_LISTEN", &v)?;
        }
        if let Some(v) = get("REKEY_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        match (get("REKEY_TLS_CERT_FILE"), get("REKEY_TLS_KEY_FILE")) {
            (Some(cert), Some(key)) => self.tls = Some(TlsConfig { cert_file: cert.into(), key_file: key.into() }),
            (None, None) => {}
            _ => {
                return Err(ConfigError::Env {
                    var: "REKEY_TLS_CERT_FILE",
                    message: "set both REKEY_TLS_CERT_FILE and REKEY_TLS_KEY_FILE, or neither".into(),
                })
            }
        }
        if let Some(v) = get("REKEY_STORE_URL") {
            self.store.url = Some(Redacted::new(v));
        }
        if let Some(v) = get("REKEY_STORE_MAX_CONNECTIONS") {
            self.store.max_connections = Some(parse("REKEY_STORE_MAX_CONNECTIONS", &v)?);
        }
        if let Some(v) = get("REKEY_STORE_REVEAL_CACHE_MB") {
            self.store.reveal_cache_mb = Some(parse("REKEY_STORE_REVEAL_CACHE_MB", &v)?);
        }
        if let Some(v) = get("REKEY_SEAL_KIND") {
            self.seal.kind = v;
        }
        if let Some(v) = get("REKEY_SEAL_KEY_FILE") {
            self.seal.key_file = Some(v.into());
        }
        if let Some(v) = get("REKEY_SEAL_MODULE") {
            self.seal.module = Some(v.into());
        }
        if let Some(v) = get("REKEY_SEAL_TOKEN_LABEL") {
            self.seal.token_label = Some(v);
        }
        if let Some(v) = get("REKEY_SEAL_KEY_LABEL") {
            self.seal.key_label = Some(v);
        }
        if let Some(v) = get("REKEY_SEAL_PIN_ENV") {
            self.seal.pin_env = Some(v);
        }
        if let Some(v) = get("REKEY_SEAL_PIN_FILE") {
            self.seal.pin_file = Some(v.into());
        }
        if let Some(v) = get("REKEY_LIMITS_MAX_BODY_BYTES") {
            self.limits.max_body_bytes = parse("REKEY_LIMITS_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("REKEY_LIMITS_MAX_IMPORT_BYTES") {
            self.limits.max_import_bytes = parse("REKEY_LIMITS_MAX_IMPORT_BYTES", &v)?;
        }
        if let Some(v) = get("REKEY_LOG_FORMAT") {
            self.log.format = v;
        }
        if let Some(v) = get("REKEY_LOG_LEVEL") {
            self.log.level = v;
        }
        if let Some(v) = get("REKEY_CERTIFICATES_LIFETIME") {
            self.certificates.lifetime = Some(v);
        }
        if let Some(v) = get("REKEY_CONNECTORS_CONNECT_TIMEOUT") {
            self.connectors.connect_timeout = v;
        }
        if let Some(v) = get("REKEY_CONNECTORS_TIMEOUT") {
            self.connectors.timeout = v;
        }
        if let Some(v) = get("REKEY_CONNECTORS_PER_HOST") {
            self.connectors.per_host = parse("REKEY_CONNECTORS_PER_HOST", &v)?;
        }
        if let Some(v) = get("REKEY_ROTATION_GRACE") {
            self.rotation.grace = v;
        }
        if let Some(v) = get("REKEY_SCHEDULER_INTERVAL") {
            self.scheduler.interval = v;
        }
        if let Some(v) = get("REKEY_SCHEDULER_VERIFY_EVERY") {
            self.scheduler.verify_every = v;
        }
        if let Some(v) = get("REKEY_SCHEDULER_CONCURRENCY") {
            self.scheduler.concurrency = parse("REKEY_SCHEDULER_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("REKEY_CAMPAIGN_INTERVAL") {
            self.campaign.interval = v;
        }
        if let Some(v) = get("REKEY_CAMPAIGN_CONCURRENCY") {
            self.campaign.concurrency = parse("REKEY_CAMPAIGN_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("REKEY_CAMPAIGN_MAX_ATTEMPTS") {
            self.campaign.max_attempts = parse("REKEY_CAMPAIGN_MAX_ATTEMPTS", &v)?;
        }
        if let Some(v) = get("REKEY_CAMPAIGN_RETRY_BASE") {
            self.campaign.retry_base = v;
        }
        if let Some(v) = get("REKEY_CAMPAIGN_LEASE") {
            self.campaign.lease = v;
        }
        if let Some(v) = get("REKEY_CAMPAIGN_REMIND_BEFORE") {
            self.campaign.remind_before = v;
        }
        if let Some(v) = get("REKEY_CAMPAIGN_PUBLIC_URL") {
            self.campaign.public_url = Some(v);
        }
        if let Some(v) = get("REKEY_NOTIFY_SMTP_URL") {
            self.notify.smtp_url = Some(Redacted(v));
        }
        if let Some(v) = get("REKEY_NOTIFY_FROM") {
            self.notify.from = Some(v);
        }
        if let Some(v) = get("REKEY_NOTIFY_WEBHOOK_URL") {
            self.notify.webhook_url = Some(v);
        }
        if let Some(v) = get("REKEY_NOTIFY_WEBHOOK_SECRET_FILE") {
            self.notify.webhook_secret_file = Some(v.into());
        }
        if let Some(v) = get("REKEY_NOTIFY_WEBHOOK_SECRET_ENV") {
            self.notify.webhook_secret_env = Some(v);
        }
        if let Some(v) = get("REKEY_NOTIFY_TIMEOUT") {
            self.notify.timeout = v;
        }
        Ok(())
    }
}
