//! `[detect]`: the detection rules and where their alerts go (docs/detection.md), and the
//! settings as the vault takes them.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use rekey_core::options::{DetectOptions, FeedOptions, FeedSource};
use rekey_core::rules::{Rule, RuleConfig, Rules};
use rekey_types::RuleAction;
use serde::Deserialize;

use super::{Config, ConfigError};

/// `[detect]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Whether this server runs the rules.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Between passes when caught up: `250ms`, `1s`.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// A rule raises again for the same principal only after this long.
    #[serde(default = "default_repeat")]
    pub repeat_after: String,
    /// Post each alert to the `[notify]` webhook.
    #[serde(default)]
    pub webhook: bool,
    /// Mail each alert to these addresses through the `[notify]` relay.
    #[serde(default)]
    pub email: Vec<String>,
    /// Delivery attempts of an alert's notice.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// `[detect.rules.<name>]`.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleSection>,
    /// `[[detect.feeds]]`: threat feeds.
    #[serde(default)]
    pub feeds: Vec<FeedSection>,
    /// The name shared incidents are published under.
    #[serde(default)]
    pub publisher: Option<String>,
}

/// `[[detect.feeds]]`: one threat feed, a file or a TAXII 2.1 collection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSection {
    /// Its name: 1 to 64 of `a-z0-9-`.
    pub name: String,
    /// A STIX 2.1 bundle in a file, read whole at each interval.
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
    /// A TAXII 2.1 API root, e.g. `https://taxii.example.org/api1/`.
    #[serde(default)]
    pub taxii: Option<String>,
    /// The collection's id (with `taxii`).
    #[serde(default)]
    pub collection: Option<String>,
    /// The environment variables holding the basic-auth user and password (with `taxii`).
    #[serde(default)]
    pub user_env: Option<String>,
    /// See `user_env`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Between reads (default 5m).
    #[serde(default)]
    pub interval: Option<String>,
}

/// `[detect.rules.<name>]`: one rule's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// Whether the rule runs (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `none`, `revoke` or `freeze`.
    #[serde(default)]
    pub action: Option<String>,
    /// `bulk-read` only: more than this many distinct credentials...
    #[serde(default)]
    pub distinct: Option<usize>,
    /// `bulk-read` only: ... within this long.
    #[serde(default)]
    pub within: Option<String>,
    /// `baseline` only: how long a token's reads are learned before they are judged.
    #[serde(default)]
    pub learn: Option<String>,
    /// `baseline` only: a minute is unusual above this many times the token's busiest...
    #[serde(default)]
    pub factor: Option<u32>,
    /// `baseline` only: ... and at least this many reads.
    #[serde(default)]
    pub floor: Option<u32>,
}

fn yes() -> bool {
    true
}

fn default_interval() -> String {
    "250ms".into()
}

fn default_repeat() -> String {
    "10m".into()
}

fn default_attempts() -> u32 {
    5
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: default_interval(),
            repeat_after: default_repeat(),
            webhook: false,
            email: Vec::new(),
            max_attempts: default_attempts(),
            rules: BTreeMap::new(),
            feeds: Vec::new(),
            publisher: None,
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, message: message.into() }
}

/// A duration of whole seconds (`30s`, `10m`, `1d`) or milliseconds (`250ms`), within `range`.
fn duration(field: &'static str, text: &str, range: (Duration, Duration)) -> Result<Duration, ConfigError> {
    let text = text.trim();
    let d = match text.strip_suffix("ms") {
        Some(ms) if !ms.is_empty() && ms.len() <= 9 && ms.bytes().all(|b| b.is_ascii_digit()) => {
            Duration::from_millis(ms.parse().map_err(|_| invalid(field, "not a number of milliseconds"))?)
        }
        _ => Duration::from_secs(
            rekey_types::time::parse_duration_secs(text).map_err(|m| invalid(field, m))?.unsigned_abs(),
        ),
    };
    if d < range.0 || d > range.1 {
        return Err(invalid(field, format!("must be from {:?} to {:?}", range.0, range.1)));
    }
    Ok(d)
}

impl Config {
    /// The detection settings, checked: rule names, actions, ranges, and that a notice has
    /// somewhere to go.
    pub(crate) fn detect_options(
        &self,
        egress: &std::sync::Arc<rekey_connect::EgressPolicy>,
    ) -> Result<DetectOptions, ConfigError> {
        let d = &self.detect;
        let interval = duration("detect.interval", &d.interval, (Duration::from_millis(10), Duration::from_secs(60)))?;
        let repeat_after = duration(
            "detect.repeat_after",
            &d.repeat_after,
            (Duration::from_secs(1), Duration::from_secs(7 * 86_400)),
        )?;
        if d.webhook && self.notify.webhook_url.is_none() {
            return Err(invalid("detect.webhook", "needs notify.webhook_url and its secret"));
        }
        if !d.email.is_empty() && (self.notify.smtp_url.is_none() || self.notify.from.is_none()) {
            return Err(invalid("detect.email", "needs notify.smtp_url and notify.from"));
        }
        for address in &d.email {
            if !address.contains('@') || address.len() > 254 || address.chars().any(char::is_whitespace) {
                return Err(invalid("detect.email", format!("not an e-mail address: {address:?}")));
            }
        }
        if d.max_attempts == 0 || d.max_attempts > 100 {
            return Err(invalid("detect.max_attempts", "must be from 1 to 100"));
        }
        let mut rules = Rules { repeat_after, ..Rules::default() };
        for (name, section) in &d.rules {
            let rule = Rule::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
                invalid("detect.rules", format!("no rule is named {name:?} (the rules: {})", known.join(", ")))
            })?;
            let action = match &section.action {
                Some(a) => {
                    RuleAction::from_str(a).map_err(|e| invalid("detect.rules.action", format!("{name}: {e}")))?
                }
                None => RuleAction::None,
            };
            rules.set(rule, RuleConfig { enabled: section.enabled.unwrap_or(true), action });
            if rule != Rule::BulkRead && (section.distinct.is_some() || section.within.is_some()) {
                return Err(invalid("detect.rules", format!("{name}: only bulk-read takes distinct and within")));
            }
            if rule != Rule::Baseline
                && (section.learn.is_some() || section.factor.is_some() || section.floor.is_some())
            {
                return Err(invalid("detect.rules", format!("{name}: only baseline takes learn, factor and floor")));
            }
            if let Some(l) = &section.learn {
                rules.baseline_learn =
                    duration("detect.rules.learn", l, (Duration::from_secs(1), Duration::from_secs(90 * 86_400)))?;
            }
            if let Some(f) = section.factor {
                if !(2..=1000).contains(&f) {
                    return Err(invalid("detect.rules.factor", "must be from 2 to 1000"));
                }
                rules.baseline_factor = f;
            }
            if let Some(f) = section.floor {
                if !(1..=1_000_000).contains(&f) {
                    return Err(invalid("detect.rules.floor", "must be from 1 to 1000000"));
                }
                rules.baseline_floor = f;
            }
            if let Some(n) = section.distinct {
                if n == 0 || n > 100_000 {
                    return Err(invalid("detect.rules.distinct", "must be from 1 to 100000"));
                }
                rules.bulk_distinct = n;
            }
            if let Some(w) = &section.within {
                rules.bulk_within =
                    duration("detect.rules.within", w, (Duration::from_secs(1), Duration::from_secs(86_400)))?;
            }
        }
        let publisher = d.publisher.clone().unwrap_or_else(|| "Rekey operator".into());
        if publisher.trim().is_empty() || publisher.len() > 200 || publisher.chars().any(char::is_control) {
            return Err(invalid("detect.publisher", "one line of 1 to 200 characters"));
        }
        Ok(DetectOptions {
            enabled: d.enabled,
            rules,
            interval,
            webhook: d.webhook,
            email: d.email.clone(),
            max_attempts: d.max_attempts,
            feeds: self.feeds(egress)?,
            publisher,
        })
    }

    /// The threat feeds, checked; a TAXII feed's credentials read from their variables now.
    fn feeds(&self, egress: &std::sync::Arc<rekey_connect::EgressPolicy>) -> Result<Vec<FeedOptions>, ConfigError> {
        let mut out: Vec<FeedOptions> = Vec::new();
        for f in &self.detect.feeds {
            let name = &f.name;
            if name.is_empty()
                || name.len() > 64
                || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(invalid("detect.feeds.name", format!("{name:?}: 1 to 64 of a-z, 0-9 and -")));
            }
            if out.iter().any(|o| &o.name == name) {
                return Err(invalid("detect.feeds.name", format!("{name} twice")));
            }
            let interval = duration(
                "detect.feeds.interval",
                f.interval.as_deref().unwrap_or("5m"),
                (Duration::from_secs(1), Duration::from_secs(86_400)),
            )?;
            let var = |field: &'static str, v: &Option<String>| -> Result<String, ConfigError> {
                let v = v.as_ref().ok_or_else(|| invalid(field, format!("{name}: needed with taxii")))?;
                std::env::var(v).map_err(|_| invalid(field, format!("{name}: the environment variable {v} is not set")))
            };
            let source = match (&f.file, &f.taxii) {
                (Some(path), None) => FeedSource::File(path.clone()),
                (None, Some(root)) => {
                    let collection = f
                        .collection
                        .as_deref()
                        .ok_or_else(|| invalid("detect.feeds.collection", format!("{name}: needed with taxii")))?;
                    let user = var("detect.feeds.user_env", &f.user_env)?;
                    let password = var("detect.feeds.password_env", &f.password_env)?;
                    let c = rekey_connect::taxii::Collection::new(
                        root,
                        collection,
                        user,
                        password,
                        Duration::from_secs(30),
                        egress.clone(),
                    )
                    .map_err(|e| invalid("detect.feeds.taxii", format!("{name}: {e}")))?;
                    FeedSource::Taxii(c)
                }
                _ => return Err(invalid("detect.feeds", format!("{name}: give exactly one of file and taxii"))),
            };
            out.push(FeedOptions { name: name.clone(), source, interval });
        }
        Ok(out)
    }
}
