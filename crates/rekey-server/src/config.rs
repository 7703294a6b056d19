//! Configuration: defaults, then a TOML file, then `REKEY_…` environment variables. Unknown keys
//! are rejected; every value is checked at start-up and a bad one is named in the error.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A value that must not be printed (a database URL may hold a password).
#[derive(Clone, Deserialize, Default)]
#[serde(transparent)]
pub struct Redacted(String);

impl Redacted {
    pub fn new(s: String) -> Self {
        Self(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Folder for the SQLite database, the dev seal's key file and the root token file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// TLS certificate and key. Required unless the server runs in dev mode.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub seal: SealConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub certificates: CertificatesConfig,
    #[serde(default)]
    pub connectors: ConnectorsConfig,
    #[serde(default)]
    pub egress: EgressConfig,
    #[serde(default)]
    pub rotation: RotationConfig,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    #[serde(default)]
    pub campaign: CampaignConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    /// Set only by `rekey serve --dev`: plain HTTP on loopback, dev seal.
    #[serde(skip)]
    pub dev: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`. Default: `<data_dir>/rekey.db`.
    #[serde(default)]
    pub url: Option<Redacted>,
    /// Connections in the pool (SQLite: readers; PostgreSQL: all). Default 8.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealConfig {
    /// `dev` (a key file; quickstart only), `shamir` (shares; starts sealed) or `pkcs11` (an HSM).
    #[serde(default = "default_seal_kind")]
    pub kind: String,
    /// The dev seal's key file. Default: `<data_dir>/dev-root.key`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// PKCS#11: the module (a shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    #[serde(default)]
    pub module: Option<PathBuf>,
    /// PKCS#11: the token's label.
    #[serde(default)]
    pub token_label: Option<String>,
    /// PKCS#11: the label of the root key objects. Default `rekey-root`.
    #[serde(default)]
    pub key_label: Option<String>,
    /// PKCS#11: the environment variable holding the user PIN. The PIN itself is never in the
    /// config.
    #[serde(default)]
    pub pin_env: Option<String>,
    /// PKCS#11: a file holding the user PIN (one line).
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
}

impl Default for SealConfig {
    fn default() -> Self {
        Self {
            kind: default_seal_kind(),
            key_file: None,
            module: None,
            token_label: None,
            key_label: None,
            pin_env: None,
            pin_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest JSON request body, in bytes. Default 1 MiB.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Largest import request body (one chunk of JSON lines), in bytes. Default 64 MiB.
    #[serde(default = "default_max_import")]
    pub max_import_bytes: usize,
    /// Requests in the server at once; beyond, `503 overloaded`. Default 1024.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Requests from one address at once; beyond, `429 too_many_requests`. Default 256.
    #[serde(default = "default_max_concurrent_per_source")]
    pub max_concurrent_per_source: usize,
    /// The time a request body may take to arrive; beyond, `408 request_timeout`. Default 30s.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: String,
    /// Failed attempts (tokens, reset links) a source may make at once before `429`. Default 30.
    #[serde(default = "default_failures_burst")]
    pub failures_burst: u32,
    /// Failed attempts a source regains per minute. Default 30.
    #[serde(default = "default_failures_per_minute")]
    pub failures_per_minute: u32,
    /// Failures after a source's first are audited as one event per this window. Default 60s.
    #[serde(default = "default_failures_window")]
    pub failures_window: String,
    /// Sources whose failures are tracked one by one. Default 10,000.
    #[serde(default = "default_failures_sources")]
    pub failures_sources: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body(),
            max_import_bytes: default_max_import(),
            max_concurrent: default_max_concurrent(),
            max_concurrent_per_source: default_max_concurrent_per_source(),
            body_timeout: default_body_timeout(),
            failures_burst: default_failures_burst(),
            failures_per_minute: default_failures_per_minute(),
            failures_window: default_failures_window(),
            failures_sources: default_failures_sources(),
        }
    }
}

fn default_failures_burst() -> u32 {
    30
}
fn default_failures_per_minute() -> u32 {
    30
}
fn default_failures_window() -> String {
    "60s".into()
}
fn default_failures_sources() -> usize {
    10_000
}

fn default_max_concurrent() -> usize {
    1024
}
fn default_max_concurrent_per_source() -> usize {
    256
}
fn default_body_timeout() -> String {
    "30s".into()
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CertificatesConfig {
    /// Lifetime of an issued certificate when the request names none, e.g. `90d` (the default).
    #[serde(default)]
    pub lifetime: Option<String>,
}

impl CertificatesConfig {
    /// The default lifetime in seconds.
    pub fn lifetime_secs(&self) -> Result<u64, ConfigError> {
        match &self.lifetime {
            None => Ok(rekey_core::certs::DEFAULT_LIFETIME_SECS),
            Some(text) => {
                let secs = rekey_types::time::parse_duration_secs(text)
                    .map_err(|message| ConfigError::Invalid { field: "certificates.lifetime", message })?
                    .unsigned_abs();
                if !(rekey_core::certs::MIN_LIFETIME_SECS..=rekey_core::certs::MAX_LIFETIME_SECS).contains(&secs) {
                    return Err(ConfigError::Invalid {
                        field: "certificates.lifetime",
                        message: "must be between 1h and 730d".into(),
                    });
                }
                Ok(secs)
            }
        }
    }
}

/// Where Rekey may connect on a tenant's behalf (targets, token and key URLs, Graph, the
/// webhook). By default every public address and port; loopback, private, shared, link-local,
/// unique-local, multicast and cloud metadata addresses are refused unless allowed here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// CIDRs (`10.20.0.0/16`), addresses (`::1`), host names (`ldap.corp.example`) and domains
    /// (`*.corp.example`) allowed besides the public internet.
    #[serde(default)]
    pub allow: Vec<String>,
    /// If set, the only ports connected to.
    #[serde(default)]
    pub ports: Option<Vec<u16>>,
}

impl EgressConfig {
    pub fn policy(&self) -> Result<std::sync::Arc<rekey_connect::EgressPolicy>, ConfigError> {
        rekey_connect::EgressPolicy::new(&self.allow, self.ports.clone())
            .map(std::sync::Arc::new)
            .map_err(|e| ConfigError::Invalid { field: "egress", message: e.to_string() })
    }
}

/// How Rekey connects to credentials' targets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsConfig {
    /// Opening a TCP connection, e.g. `5s`.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// A whole exchange (connect, TLS, login), e.g. `20s`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Connections to one host and port at once, across verify, rotation and the scheduler.
    #[serde(default = "default_per_host")]
    pub per_host: usize,
}

fn default_connect_timeout() -> String {
    "5s".into()
}
fn default_timeout() -> String {
    "20s".into()
}
fn default_per_host() -> usize {
    4
}

impl Default for ConnectorsConfig {
    fn default() -> Self {
        Self { connect_timeout: default_connect_timeout(), timeout: default_timeout(), per_host: default_per_host() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// How long a rotated-out version stays `previous` (and an Entra app keeps its old
    /// certificate) before it is retired: `24h` by default, `0s` retires at once.
    #[serde(default = "default_grace")]
    pub grace: String,
}

fn default_grace() -> String {
    "24h".into()
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self { grace: default_grace() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Time between passes of the scheduler, or `off`.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// How often each credential is checked against its target, or `off`.
    #[serde(default = "default_verify_every")]
    pub verify_every: String,
    /// Credentials worked on at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_interval() -> String {
    "60s".into()
}
fn default_verify_every() -> String {
    "24h".into()
}
fn default_concurrency() -> usize {
    16
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { interval: default_interval(), verify_every: default_verify_every(), concurrency: default_concurrency() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    /// Time between passes of the campaign workers when idle, or `off`.
    #[serde(default = "default_campaign_interval")]
    pub interval: String,
    /// Items worked on at once by this server.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Attempts of an item (and deliveries of a notice) before it fails for good.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; each further retry waits twice as long (at most 1h).
    #[serde(default = "default_retry_base")]
    pub retry_base: String,
    /// How long a worker holds an item before another server may take it.
    #[serde(default = "default_lease")]
    pub lease: String,
    /// Reminders go out this long before the deadline (halfway, for a shorter campaign).
    #[serde(default = "default_remind_before")]
    pub remind_before: String,
    /// The address tenants reach this server at, for reset links (`<public_url>/r/...`).
    /// Default: `http(s)://<listen>`.
    #[serde(default)]
    pub public_url: Option<String>,
}

fn default_campaign_interval() -> String {
    "2s".into()
}
fn default_max_attempts() -> u32 {
    5
}
fn default_retry_base() -> String {
    "30s".into()
}
fn default_lease() -> String {
    "5m".into()
}
fn default_remind_before() -> String {
    "48h".into()
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            interval: default_campaign_interval(),
            concurrency: default_concurrency(),
            max_attempts: default_max_attempts(),
            retry_base: default_retry_base(),
            lease: default_lease(),
            remind_before: default_remind_before(),
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The SMTP relay for email notices, as `smtp://host:port` (plain), `smtp://host:587?tls=required`
    /// (STARTTLS) or `smtps://host:465`; a user and password may be in the URL. Never logged.
    #[serde(default)]
    pub smtp_url: Option<Redacted>,
    /// The sender address of email notices.
    #[serde(default)]
    pub from: Option<String>,
    /// Where webhook notices are posted.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// A file holding the webhook signing secret (at least 16 bytes; surrounding whitespace is
    /// ignored).
    #[serde(default)]
    pub webhook_secret_file: Option<PathBuf>,
    /// An environment variable holding the webhook signing secret.
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// One delivery attempt (connect, send, answer).
    #[serde(default = "default_notify_timeout")]
    pub timeout: String,
}

fn default_notify_timeout() -> String {
    "10s".into()
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: None,
            webhook_url: None,
            webhook_secret_file: None,
            webhook_secret_env: None,
            timeout: default_notify_timeout(),
        }
    }
}

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
            ..Default::default()
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub format: String,
    /// A tracing filter, e.g. `info` or `rekey_server=debug,info`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: default_log_format(), level: default_log_level() }
    }
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8443".parse().expect("constant address parses")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_seal_kind() -> String {
    "dev".into()
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_max_import() -> usize {
    64 * 1024 * 1024
}
fn default_log_format() -> String {
    "text".into()
}
fn default_log_level() -> String {
    "info".into()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
}

impl Config {
    /// Defaults only.
    pub fn defaults() -> Self {
        toml::from_str("").expect("an empty config takes every default")
    }

    /// The defaults of `rekey serve --dev`: dev mode, port 8200.
    pub fn dev_defaults() -> Self {
        let mut config = Self::defaults();
        config.dev = true;
        config.listen = "127.0.0.1:8200".parse().expect("constant address parses");
        config
    }

    /// `base` (the defaults, or the dev defaults), then `path` if given, then the environment.
    pub fn load(base: Self, path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                let mut file: Self = toml::from_str(&text)
                    .map_err(|e| ConfigError::Parse { path: path.display().to_string(), message: e.to_string() })?;
                file.dev = base.dev;
                file
            }
            None => base,
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

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

    /// Checks what can be checked before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let seal = |message: &str| ConfigError::Invalid { field: "seal", message: message.to_owned() };
        match self.seal.kind.as_str() {
            "dev" | "shamir" => {}
            "pkcs11" => {
                if self.seal.module.is_none() || self.seal.token_label.is_none() {
                    return Err(seal("the pkcs11 seal needs module and token_label"));
                }
                if self.seal.pin_env.is_some() == self.seal.pin_file.is_some() {
                    return Err(seal("the pkcs11 seal needs the PIN from exactly one of pin_env or pin_file"));
                }
            }
            other => {
                return Err(ConfigError::Invalid {
                    field: "seal.kind",
                    message: format!("unknown seal {other:?}: use dev, shamir or pkcs11"),
                })
            }
        }

        if self.dev {
            if !self.listen.ip().is_loopback() {
                return Err(ConfigError::Invalid {
                    field: "listen",
                    message: format!("dev mode serves plain HTTP and only listens on loopback; {} is not", self.listen),
                });
            }
        } else if self.tls.is_none() {
            return Err(ConfigError::Invalid {
                field: "tls",
                message: "tls.cert_file and tls.key_file are required (plain HTTP is only for `rekey serve --dev` on loopback)".into(),
            });
        }
        if let Some(url) = &self.store.url {
            let u = url.expose();
            if !(u.starts_with("sqlite://") || u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return Err(ConfigError::Invalid {
                    field: "store.url",
                    message: "must start with sqlite:// or postgres://".into(),
                });
            }
        }
        self.certificates.lifetime_secs()?;
        self.vault_options()?;
        self.guard_limits()?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid { field: "log.format", message: "must be text or json".into() });
        }
        if self.limits.max_body_bytes < 1024 || self.limits.max_import_bytes < 1024 {
            return Err(ConfigError::Invalid {
                field: "limits",
                message: "body limits must be at least 1024 bytes".into(),
            });
        }
        Ok(())
    }

    pub fn store_url(&self) -> String {
        match &self.store.url {
            Some(u) => u.expose().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("rekey.db").display()),
        }
    }

    pub fn seal_key_file(&self) -> PathBuf {
        self.seal.key_file.clone().unwrap_or_else(|| self.data_dir.join("dev-root.key"))
    }

    pub fn root_token_file(&self) -> PathBuf {
        self.data_dir.join("root-token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn layers_defaults_file_env() {
        let mut c: Config = toml::from_str(
            "listen = \"127.0.0.1:9000\"\n[store]\nurl = \"postgres://u:pw@127.0.0.1/db\"\n[tls]\ncert_file = \"c\"\nkey_file = \"k\"\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.limits.max_body_bytes, 1024 * 1024);
        let env: HashMap<&str, &str> = [("REKEY_LISTEN", "127.0.0.1:9100"), ("REKEY_LOG_FORMAT", "json")].into();
        c.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.log.format, "json");
        c.validate().unwrap();
        // The password in the URL never shows in Debug output.
        assert!(!format!("{c:?}").contains("pw@"));
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        let err = toml::from_str::<Config>("listen = \"127.0.0.1:1\"\nlisten_addr = 1\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let err = toml::from_str::<Config>("[store]\nurll = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
        let mut c = Config::defaults();
        let err = c.apply_env(|k| (k == "REKEY_LISTEN").then(|| "nope".to_string())).unwrap_err();
        assert!(err.to_string().contains("REKEY_LISTEN"));
        // Production shape without TLS is refused; dev mode on a public address is refused.
        let c = Config::defaults();
        assert!(c.validate().unwrap_err().to_string().contains("tls"));
        let mut c = Config::defaults();
        c.dev = true;
        c.listen = "0.0.0.0:8443".parse().unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("loopback"));
        // Seals and certificate lifetimes are checked too.
        for (kind, lifetime, says) in [
            ("hsm", None, "unknown seal"),
            ("pkcs11", None, "module and token_label"),
            ("dev", Some("10m"), "certificates.lifetime"),
            ("dev", Some("soon"), "certificates.lifetime"),
        ] {
            let mut c = Config::dev_defaults();
            c.seal.kind = kind.into();
            c.certificates.lifetime = lifetime.map(str::to_owned);
            assert!(c.validate().unwrap_err().to_string().contains(says), "{kind} {lifetime:?}");
        }
        let mut c = Config::dev_defaults();
        c.seal = SealConfig {
            kind: "pkcs11".into(),
            module: Some("/m.so".into()),
            token_label: Some("t".into()),
            pin_env: Some("P".into()),
            pin_file: Some("/p".into()),
            ..SealConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("exactly one"));
    }
}
