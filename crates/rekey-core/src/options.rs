//! How the vault and its background work behave: plain settings, read from the configuration
//! by the server, with the defaults a dev server runs on. Nothing here does any work.

use std::sync::Arc;
use std::time::Duration;

use rekey_connect::notify::{MailRelay, Webhook};
use rekey_connect::Limits;

use crate::failures::Failures;
use crate::throttle::Throttle;

/// Lifetime of an issued certificate unless the request or the config says otherwise: 90 days.
pub const DEFAULT_CERT_LIFETIME_SECS: u64 = 90 * 86_400;
/// How a vault runs: what the server's configuration says beyond the store and the seal.
#[derive(Clone)]
pub struct VaultOptions {
    /// Counters the audit writer updates; shared so metrics survive a seal and unseal.
    pub writer_stats: Option<Arc<crate::stats::WriterStats>>,
    /// Lifetime of an issued certificate when the request names none.
    pub cert_lifetime_secs: u64,
    /// How connectors behave.
    pub connect: ConnectOptions,
    /// How the scheduler runs.
    pub scheduler: SchedulerOptions,
    /// Connector counters; shared so metrics survive a seal and unseal.
    pub connector_stats: Option<Arc<crate::stats::ConnectorStats>>,
    /// How campaigns run.
    pub campaign: CampaignOptions,
    /// Failed attempts per source; shared so that a seal and unseal does not reset them.
    pub failures: Arc<Failures>,
    /// Request rates per principal; shared so that a seal and unseal does not reset them.
    pub throttle: Arc<Throttle>,
    /// Signed checkpoints of the audit log and where they go.
    pub checkpoints: CheckpointOptions,
    /// The audit log pushed to SIEMs.
    pub siem: crate::siem::SiemOptions,
    /// The detection rules and where their alerts go.
    pub detect: DetectOptions,
    /// Auth roles declared in the configuration (`[jwt_roles.NAME]`), checked by the server
    /// when it read them (`workloads::JwtRole::check_named`); they cannot be written or deleted
    /// through the API.
    pub jwt_roles: std::collections::BTreeMap<String, rekey_types::JwtRoleSpec>,
    /// Operator login with OpenID Connect (`[oidc]`); `None`: off.
    pub oidc: Option<OidcOptions>,
}

/// Operator login with OpenID Connect: the provider, this relying party, and which groups
/// become which role.
#[derive(Clone)]
pub struct OidcOptions {
    /// The provider's issuer identifier (its configuration is at
    /// `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// Rekey's client id at the provider.
    pub client_id: String,
    /// Its secret, for a confidential client; `None` for a public one (PKCE is used either way).
    pub client_secret: Option<zeroize::Zeroizing<String>>,
    /// Scopes asked for (`openid` always among them).
    pub scopes: Vec<String>,
    /// The ID token claim that lists the user's groups.
    pub groups_claim: String,
    /// Group → role (`operator` or `auditor`).
    pub roles: Vec<(String, rekey_types::Role)>,
    /// Lifetime of the token a login gets, in seconds.
    pub ttl_secs: i64,
}

impl Default for VaultOptions {
    fn default() -> Self {
        Self {
            writer_stats: None,
            cert_lifetime_secs: DEFAULT_CERT_LIFETIME_SECS,
            connect: Default::default(),
            scheduler: Default::default(),
            connector_stats: None,
            campaign: Default::default(),
            failures: Default::default(),
            throttle: Default::default(),
            checkpoints: Default::default(),
            siem: Default::default(),
            detect: Default::default(),
            jwt_roles: Default::default(),
            oidc: None,
        }
    }
}

/// How connectors behave; from the `[connectors]` and `[rotation]` config sections.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Time limits of one connection.
    pub limits: Limits,
    /// Connections to one `host:port` at once, across everything this server does.
    pub per_host: usize,
    /// How long the old version stays `previous` (and an Entra app keeps its old certificate)
    /// after a rotation is promoted.
    pub grace_secs: u64,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self { limits: Limits::default(), per_host: 4, grace_secs: 24 * 3600 }
    }
}

/// How the scheduler runs; from the `[scheduler]` config section.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Time between passes; `None` turns the scheduler off (rotations then finish only when asked).
    pub interval: Option<Duration>,
    /// Re-check each credential this often; `None` never re-checks.
    pub verify_every: Option<Duration>,
    /// Credentials worked on at once (the per-host limit still applies).
    pub concurrency: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(60)),
            verify_every: Some(Duration::from_secs(24 * 3600)),
            concurrency: 16,
        }
    }
}

/// How campaigns run; from the `[campaign]` and `[notify]` config sections.
#[derive(Clone)]
pub struct CampaignOptions {
    /// Items worked on at once by this server (the per-host limit still applies).
    pub concurrency: usize,
    /// Time between passes when there is nothing to do; `None` turns the workers off.
    pub interval: Option<Duration>,
    /// Attempts of an item (and deliveries of a notice) before it is `failed` for good.
    pub max_attempts: u32,
    /// The first retry waits this long; each further one twice as long (at most an hour).
    pub retry_base: Duration,
    /// How long a worker holds an item before another may take it (a crashed server's items).
    pub lease: Duration,
    /// Reminders go out this long before the deadline (halfway, for a shorter campaign).
    pub remind_before: Duration,
    /// Where tenants open their reset links: `<public_url>/r/<link>`. Set from the
    /// configuration, or by the server once it knows the address it listens on.
    pub public_url: Arc<std::sync::OnceLock<String>>,
    /// The SMTP relay for e-mail notices, if configured.
    pub mail: Option<MailRelay>,
    /// The webhook for notices, if configured.
    pub webhook: Option<Webhook>,
}

impl Default for CampaignOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            interval: Some(Duration::from_secs(2)),
            max_attempts: 5,
            retry_base: Duration::from_secs(30),
            lease: Duration::from_secs(300),
            remind_before: Duration::from_secs(48 * 3600),
            public_url: Default::default(),
            mail: None,
            webhook: None,
        }
    }
}

/// Signed checkpoints of the audit log; from the `[audit]` config section.
#[derive(Clone)]
pub struct CheckpointOptions {
    /// The log's origin line and key name; `None`: `rekey/audit/<16 hex digits of the public
    /// key's SHA-256>`.
    pub origin: Option<String>,
    /// A checkpoint is signed this often when events were added; `None`: only on demand (and
    /// after `events`).
    pub every: Option<Duration>,
    /// A checkpoint is signed once this many events were added since the last one.
    pub events: Option<u64>,
    /// Append-only directories each checkpoint is written to, and read back at start.
    pub dirs: Vec<std::path::PathBuf>,
    /// Witnesses each checkpoint is sent to, for their cosignatures.
    pub witnesses: Vec<rekey_connect::witness::HttpWitness>,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        Self {
            origin: None,
            every: Some(Duration::from_secs(60)),
            events: None,
            dirs: Vec::new(),
            witnesses: Vec::new(),
        }
    }
}

/// How detection runs; from the `[detect]` config section.
#[derive(Clone)]
pub struct DetectOptions {
    /// Whether the detector runs on this server.
    pub enabled: bool,
    /// The rules and their settings.
    pub rules: crate::rules::Rules,
    /// Time between passes when caught up.
    pub interval: Duration,
    /// Post each alert to the `[notify]` webhook.
    pub webhook: bool,
    /// Mail each alert to these addresses through the `[notify]` relay.
    pub email: Vec<String>,
    /// Delivery attempts of an alert's notice.
    pub max_attempts: u32,
    /// Threat feeds whose listed addresses the `feed-address` rule looks for.
    pub feeds: Vec<FeedOptions>,
    /// The name a shared incident is published under (its STIX `identity`).
    pub publisher: String,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            rules: crate::rules::Rules::default(),
            interval: Duration::from_millis(250),
            webhook: false,
            email: Vec::new(),
            max_attempts: 5,
            feeds: Vec::new(),
            publisher: "Rekey operator".into(),
        }
    }
}

/// Where a feed's indicators come from.
#[derive(Clone)]
pub enum FeedSource {
    /// A STIX 2.1 bundle in a file, read whole at each pass.
    File(std::path::PathBuf),
    /// A TAXII 2.1 collection, read from where the last pass ended.
    Taxii(rekey_connect::taxii::Collection),
}

/// One threat feed; from `[[detect.feeds]]`.
#[derive(Clone)]
pub struct FeedOptions {
    /// Its name (in alerts, metrics and the store).
    pub name: String,
    /// Where from.
    pub source: FeedSource,
    /// Between reads.
    pub interval: Duration,
}
