//! The sections of the configuration file beyond the server's own: limits, certificates,
//! egress, connectors, rotation, scheduler, campaign and notify, each with its defaults.

use std::path::PathBuf;

use serde::Deserialize;

use super::{default_max_body, default_max_import, ConfigError, Redacted};

/// `[limits]` (see `docs/configuration.md`).
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
    /// Request rates per token, by role (`[limits.rate.connector]`); a role not named is not
    /// limited.
    #[serde(default)]
    pub rate: std::collections::BTreeMap<String, RateConfig>,
}

/// `[limits.rate.<role>]`: one role's request rate per token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Requests a token regains per second (above zero; fractions allowed).
    pub per_second: f64,
    /// Requests a token may make at once.
    pub burst: u32,
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
            rate: Default::default(),
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

/// `[certificates]` (see `docs/configuration.md`).
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
    /// The policy these settings describe.
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

/// `[rotation]` (see `docs/configuration.md`).
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

/// `[scheduler]` (see `docs/configuration.md`).
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

/// `[campaign]` (see `docs/configuration.md`).
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

/// `[notify]` (see `docs/configuration.md`).
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

/// `[audit]`: signed checkpoints of the audit log and where they go (see `docs/audit.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The log's origin line and key name. Default: `rekey/audit/<16 hex digits of the key>`.
    #[serde(default)]
    pub origin: Option<String>,
    /// A checkpoint is signed this often when events were added, or `off`.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: String,
    /// A checkpoint is also signed once this many events were added since the last one.
    #[serde(default)]
    pub checkpoint_events: Option<u64>,
    /// Append-only directories each checkpoint is written to (and read back at start).
    #[serde(default)]
    pub witness_dirs: Vec<PathBuf>,
    /// HTTP witnesses (C2SP tlog-witness).
    #[serde(default)]
    pub witnesses: Vec<WitnessConfig>,
    /// One request to a witness.
    #[serde(default = "default_witness_timeout")]
    pub witness_timeout: String,
}

/// One `[[audit.witnesses]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's submission prefix (`add-checkpoint` is appended).
    pub url: String,
    /// The witness's cosignature verifier key, `<name>+<key id>+<base64(0x04 ‖ key)>`.
    pub key: String,
}

fn default_checkpoint_every() -> String {
    "60s".into()
}
fn default_witness_timeout() -> String {
    "10s".into()
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            origin: None,
            checkpoint_every: default_checkpoint_every(),
            checkpoint_events: None,
            witness_dirs: Vec::new(),
            witnesses: Vec::new(),
            witness_timeout: default_witness_timeout(),
        }
    }
}

/// `[siem]`: the audit log pushed to SIEMs as OCSF (see `docs/audit.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiemConfig {
    /// Time between passes when caught up, and before a retry.
    #[serde(default = "default_siem_interval")]
    pub interval: String,
    /// The HOSTNAME of syslog messages; default: the machine's host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// One connection or request.
    #[serde(default = "default_witness_timeout")]
    pub timeout: String,
    /// Syslog receivers (RFC 5424 over TLS).
    #[serde(default)]
    pub syslog: Vec<SyslogConfig>,
    /// HTTP collectors (JSON lines).
    #[serde(default)]
    pub http: Vec<HttpSinkConfig>,
}

fn default_siem_interval() -> String {
    "1s".into()
}

impl Default for SiemConfig {
    fn default() -> Self {
        Self {
            interval: default_siem_interval(),
            hostname: None,
            timeout: default_witness_timeout(),
            syslog: Vec::new(),
            http: Vec::new(),
        }
    }
}

/// One `[[siem.syslog]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `host:port` of the receiver's TLS listener.
    pub address: String,
    /// PEM file of the CA that signed the receiver's certificate; default: the Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// One `[[siem.http]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// The collector's URL.
    pub url: String,
    /// An environment variable holding the `Authorization` header's value, if it needs one.
    #[serde(default)]
    pub authorization_env: Option<String>,
}

/// `[vault_api]`: the Vault-compatible read path (see `docs/vault-api.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultApiConfig {
    /// Serve it. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The KV v2 mount the credentials appear under: `<mount>/data/<tenant>/<name>`. Default
    /// `kv`.
    #[serde(default = "default_kv_mount")]
    pub mount: String,
}

impl Default for VaultApiConfig {
    fn default() -> Self {
        Self { enabled: true, mount: default_kv_mount() }
    }
}

impl VaultApiConfig {
    /// The mount is one path segment of lower-case letters, digits, `-` and `_`, at most 64,
    /// and not one of the API's own (`sys`, `auth`, `tenants`, …).
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let m = self.mount.as_str();
        let shape = !m.is_empty()
            && m.len() <= 64
            && m.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !shape {
            return Err(ConfigError::Invalid {
                field: "vault_api.mount",
                message: "one path segment of a-z, 0-9, - and _ (at most 64)".into(),
            });
        }
        if crate::vault_api::RESERVED.contains(&m) {
            return Err(ConfigError::Invalid {
                field: "vault_api.mount",
                message: format!("{m} is a path of the API itself; choose another mount"),
            });
        }
        Ok(())
    }
}

fn default_true() -> bool {
    true
}

fn default_kv_mount() -> String {
    "kv".into()
}

/// `[server]`: how the server meets its clients beyond the address it listens on (`listen`,
/// which stays at the top of the file).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Proxies (CIDRs, or bare addresses) whose word on the client's address is taken
    /// (`X-Forwarded-For`, or the PROXY protocol header). Default: none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Connections from a trusted proxy start with a PROXY protocol v2 header. Default false.
    #[serde(default)]
    pub proxy_protocol: bool,
}

impl ServerConfig {
    /// The trusted proxies, parsed.
    pub(crate) fn proxies(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        let nets = self
            .trusted_proxies
            .iter()
            .map(|c| {
                c.parse::<ipnet::IpNet>().or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)).map_err(
                    |_| ConfigError::Invalid {
                        field: "server.trusted_proxies",
                        message: format!("{c:?} is not a CIDR or an address"),
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.proxy_protocol && nets.is_empty() {
            return Err(ConfigError::Invalid {
                field: "server.proxy_protocol",
                message: "name the proxies that send the header in trusted_proxies".into(),
            });
        }
        Ok(nets)
    }
}

/// `[oidc]`: operator login with OpenID Connect (`rekey login --oidc`; see `docs/workloads.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer identifier; its configuration is found by discovery.
    pub issuer: String,
    /// Rekey's client id at the provider.
    pub client_id: String,
    /// The environment variable holding the client secret, for a confidential client. Without
    /// it Rekey is a public client (PKCE is used either way).
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Scopes asked for. Default `["openid", "email", "groups"]`.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim listing the user's groups. Default `groups`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Group → `operator` or `auditor`.
    pub roles: std::collections::BTreeMap<String, String>,
    /// Lifetime of a login's token. Default `1h`, at most `12h`.
    #[serde(default = "default_oidc_ttl")]
    pub ttl: String,
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "groups".into()]
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_oidc_ttl() -> String {
    "1h".into()
}

impl OidcConfig {
    /// The options of the core, checked.
    pub(crate) fn options(&self) -> Result<rekey_core::options::OidcOptions, ConfigError> {
        let invalid = |field: &'static str, message: String| ConfigError::Invalid { field, message };
        let issuer = url::Url::parse(&self.issuer).map_err(|e| invalid("oidc.issuer", e.to_string()))?;
        if !matches!(issuer.scheme(), "http" | "https") {
            return Err(invalid("oidc.issuer", "an http or https URL".into()));
        }
        if self.client_id.is_empty() || self.client_id.len() > 256 {
            return Err(invalid("oidc.client_id", "1 to 256 characters".into()));
        }
        let client_secret = match &self.client_secret_env {
            Some(var) => Some(zeroize::Zeroizing::new(std::env::var(var).map_err(|_| {
                invalid("oidc.client_secret_env", format!("the environment variable {var} is not set"))
            })?)),
            None => None,
        };
        let mut scopes = self.scopes.clone();
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        if self.roles.is_empty() {
            return Err(invalid("oidc.roles", "map at least one group to operator or auditor".into()));
        }
        let roles = self
            .roles
            .iter()
            .map(|(group, role)| match role.as_str() {
                "operator" => Ok((group.clone(), rekey_types::Role::Operator)),
                "auditor" => Ok((group.clone(), rekey_types::Role::Auditor)),
                other => Err(invalid("oidc.roles", format!("{group} = {other:?}: operator or auditor"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ttl = rekey_types::time::parse_duration_secs(&self.ttl).map_err(|e| invalid("oidc.ttl", e))?;
        if ttl > 12 * 3600 {
            return Err(invalid("oidc.ttl", "at most 12h".into()));
        }
        Ok(rekey_core::options::OidcOptions {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            client_secret,
            scopes,
            groups_claim: self.groups_claim.clone(),
            roles,
            ttl_secs: ttl,
        })
    }
}
