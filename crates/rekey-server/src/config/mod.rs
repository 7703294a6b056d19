//! Configuration: defaults, then a TOML file, then `REKEY_…` environment variables. Unknown keys
//! are rejected; every value is checked at start-up and a bad one is named in the error.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod detect;
mod env;
mod options;
mod sections;

pub use detect::{DetectConfig, FeedSection, RuleSection};
pub use sections::*;

/// A value that must not be printed (a database URL may hold a password).
#[derive(Clone, Deserialize, Default)]
#[serde(transparent)]
pub struct Redacted(String);

impl Redacted {
    /// Wraps a value.
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// The server's configuration (see `docs/configuration.md`).
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
    /// `[store]`.
    pub store: StoreConfig,
    #[serde(default)]
    /// `[seal]`.
    pub seal: SealConfig,
    #[serde(default)]
    /// `[limits]`.
    pub limits: LimitsConfig,
    #[serde(default)]
    /// `[log]`.
    pub log: LogConfig,
    #[serde(default)]
    /// `[certificates]`.
    pub certificates: CertificatesConfig,
    #[serde(default)]
    /// `[connectors]`.
    pub connectors: ConnectorsConfig,
    #[serde(default)]
    /// `[egress]`.
    pub egress: EgressConfig,
    #[serde(default)]
    /// `[rotation]`.
    pub rotation: RotationConfig,
    #[serde(default)]
    /// `[scheduler]`.
    pub scheduler: SchedulerConfig,
    #[serde(default)]
    /// `[campaign]`.
    pub campaign: CampaignConfig,
    #[serde(default)]
    /// `[notify]`.
    pub notify: NotifyConfig,
    #[serde(default)]
    /// `[audit]`.
    pub audit: AuditConfig,
    #[serde(default)]
    /// `[siem]`.
    pub siem: SiemConfig,
    #[serde(default)]
    /// `[detect]`: the detection rules (`docs/detection.md`).
    pub detect: detect::DetectConfig,
    #[serde(default)]
    /// `[vault_api]`.
    pub vault_api: VaultApiConfig,
    #[serde(default)]
    /// `[server]`.
    pub server: ServerConfig,
    /// `[oidc]`: operator login with OpenID Connect.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    /// `[jwt_roles.NAME]`: auth roles declared in the file (see `docs/workloads.md`).
    #[serde(default)]
    pub jwt_roles: std::collections::BTreeMap<String, rekey_core::workloads::JwtRoleSpec>,
    /// Set only by `rekey serve --dev`: plain HTTP on loopback, dev seal.
    #[serde(skip)]
    pub dev: bool,
}

/// `[tls]`: the server's certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM.
    pub cert_file: PathBuf,
    /// Its private key, PEM.
    pub key_file: PathBuf,
}

/// `[store]`: where the data is.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`. Default: `<data_dir>/rekey.db`.
    #[serde(default)]
    pub url: Option<Redacted>,
    /// Connections in the pool (SQLite: readers; PostgreSQL: all). Default 8.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// SQLite: MiB of sealed reveal rows kept in memory (0: none). Default 256.
    #[serde(default)]
    pub reveal_cache_mb: Option<u64>,
}

/// `[seal]`: what holds the root key.
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

/// `[log]`.
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

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, and where.
        message: String,
    },
    /// A `REKEY_…` variable does not parse.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("{field}: {message}")]
    Invalid {
        /// The setting, as `section.key`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
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
        self.vault_api.check()?;
        self.server.proxies()?;
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

    /// The store's URL: the configured one, or the SQLite file in the data folder.
    pub fn store_url(&self) -> String {
        match &self.store.url {
            Some(u) => u.expose().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("rekey.db").display()),
        }
    }

    /// The dev seal's key file.
    pub fn seal_key_file(&self) -> PathBuf {
        self.seal.key_file.clone().unwrap_or_else(|| self.data_dir.join("dev-root.key"))
    }

    /// Where the root token is written at first start (mode 0600).
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
    fn rate_limits_name_a_role_and_a_positive_rate() {
        let c: Config =
            toml::from_str("[limits.rate.connector]\nper_second = 2.5\nburst = 50\n").expect("a rate limit parses");
        let limits = c.vault_options().unwrap().throttle.options();
        let connector = limits.limit(rekey_types::Role::Connector).unwrap();
        assert_eq!((connector.per_second, connector.burst), (2.5, 50));
        assert!(limits.limit(rekey_types::Role::Operator).is_none(), "a role not named is not limited");
        for (text, says) in [
            ("[limits.rate.admin]\nper_second = 1\nburst = 1\n", "not a role"),
            ("[limits.rate.connector]\nper_second = 0\nburst = 1\n", "per_second"),
            ("[limits.rate.connector]\nper_second = 1\nburst = 0\n", "burst"),
        ] {
            let c: Config = toml::from_str(text).unwrap();
            let err = c.vault_options().err().expect(text).to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(toml::from_str::<Config>("[limits.rate.connector]\nper_second = 1\n").is_err(), "burst is required");
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
