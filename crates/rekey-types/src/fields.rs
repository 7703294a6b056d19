//! Credential kinds and the non-secret fields each kind takes.
//!
//! Each kind has a fixed set of required and optional fields; unknown fields are rejected, so a
//! typo (`bind-dn` for `bind_dn`) is caught when the credential is stored and not on the day a
//! connector first needs it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::dn::validate_dn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
/// What a credential connects to (see `docs/connectors.md`).
pub enum CredentialKind {
    /// An LDAP bind account.
    Ldap,
    /// An Azure AD / Entra application (client secret or certificate).
    EntraApp,
    /// A POP3 mailbox.
    Pop3,
    /// An SMTP-authenticated relay account.
    Smtp,
    /// Opaque bytes with no target.
    Generic,
}

impl CredentialKind {
    /// Every kind.
    pub const ALL: [CredentialKind; 5] = [
        CredentialKind::Ldap,
        CredentialKind::EntraApp,
        CredentialKind::Pop3,
        CredentialKind::Smtp,
        CredentialKind::Generic,
    ];

    /// The kind as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Ldap => "ldap",
            CredentialKind::EntraApp => "entra-app",
            CredentialKind::Pop3 => "pop3",
            CredentialKind::Smtp => "smtp",
            CredentialKind::Generic => "generic",
        }
    }

    /// `(required, optional)` field names of this kind.
    pub fn schema(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            CredentialKind::Ldap => (
                &["url", "bind_dn"],
                &[
                    "tls",
                    "ca_pem",
                    "rotator",
                    "subtrees",
                    "password_length",
                    "password_alphabet",
                    "max_age",
                    "danger_accept_invalid_certs",
                ],
            ),
            CredentialKind::EntraApp => (
                &["token_url", "client_id", "scope"],
                &[
                    "directory_id",
                    "auth",
                    "secret_method",
                    "jwks_url",
                    "ca_pem",
                    "app_object_id",
                    "graph_url",
                    "max_age",
                    "danger_accept_invalid_certs",
                ],
            ),
            CredentialKind::Pop3 | CredentialKind::Smtp => {
                (&["host", "port", "tls", "user"], &["ca_pem", "max_age", "danger_accept_invalid_certs"])
            }
            CredentialKind::Generic => (&[], &["description"]),
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialKind {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CredentialKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| FieldError::UnknownKind(s.chars().take(32).collect()))
    }
}

/// Why a credential's fields or labels were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    #[error("unknown credential kind {0:?}: expected ldap, entra-app, pop3, smtp or generic")]
    /// Not a kind.
    UnknownKind(String),
    /// A field the kind does not have.
    #[error("unknown field {field:?} for kind {kind}; allowed: {allowed}")]
    Unknown {
        /// The credential's kind.
        kind: CredentialKind,
        /// The field named.
        field: String,
        /// The fields the kind has.
        allowed: String,
    },
    /// A field the kind needs is missing.
    #[error("missing required field {field:?} for kind {kind}")]
    Missing {
        /// The credential's kind.
        kind: CredentialKind,
        /// The field missing.
        field: &'static str,
    },
    /// A field's value does not parse.
    #[error("field {field:?}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// A label is refused.
    #[error("labels: {0}")]
    Label(String),
}

fn invalid(field: &str, reason: impl Into<String>) -> FieldError {
    FieldError::Invalid { field: field.to_owned(), reason: reason.into() }
}

/// TLS mode of a connection: `none`, `starttls` or `implicit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text, no TLS.
    None,
    /// Upgraded with STARTTLS (or STLS) before anything else is sent.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

impl FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(TlsMode::None),
            "starttls" => Ok(TlsMode::StartTls),
            "implicit" => Ok(TlsMode::Implicit),
            _ => Err("must be one of none, starttls, implicit".into()),
        }
    }
}

/// The validated, non-secret fields of a credential.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fields(BTreeMap<String, String>);

impl Fields {
    /// The most a single field value may hold (a PEM CA bundle fits comfortably).
    pub const MAX_VALUE_LEN: usize = 16 * 1024;

    /// Validates `raw` against `kind`'s schema. Values are trimmed of surrounding whitespace.
    pub fn validate(kind: CredentialKind, raw: BTreeMap<String, String>) -> Result<Self, FieldError> {
        let (required, optional) = kind.schema();
        let mut out = BTreeMap::new();
        for (key, value) in raw {
            if !required.contains(&key.as_str()) && !optional.contains(&key.as_str()) {
                let allowed: Vec<&str> = required.iter().chain(optional).copied().collect();
                return Err(FieldError::Unknown {
                    kind,
                    field: key.chars().take(64).collect(),
                    allowed: if allowed.is_empty() { "none".into() } else { allowed.join(", ") },
                });
            }
            let value = value.trim().to_owned();
            if value.is_empty() {
                return Err(invalid(&key, "must not be empty"));
            }
            if value.len() > Self::MAX_VALUE_LEN {
                return Err(invalid(&key, format!("longer than {} bytes", Self::MAX_VALUE_LEN)));
            }
            if key != "ca_pem" && value.chars().any(char::is_control) {
                return Err(invalid(&key, "contains control characters"));
            }
            out.insert(key, value);
        }
        for field in required {
            if !out.contains_key(*field) {
                return Err(FieldError::Missing { kind, field });
            }
        }
        for (key, value) in &out {
            check_value(kind, key, value, &out)?;
        }
        Ok(Self(out))
    }

    /// Wraps fields read back from storage, which were validated when they were written.
    pub fn from_stored(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }

    /// The value of field `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Every field, by name.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Every field, by name, owned.
    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

fn check_value(kind: CredentialKind, key: &str, value: &str, all: &BTreeMap<String, String>) -> Result<(), FieldError> {
    match key {
        "url" => {
            let url = url::Url::parse(value).map_err(|e| invalid(key, format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "ldap" | "ldaps") {
                return Err(invalid(key, "scheme must be ldap:// or ldaps://"));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(invalid(key, "has no host"));
            }
            if let Some(tls) = all.get("tls") {
                let tls: TlsMode = tls.parse().map_err(|e: String| invalid("tls", e))?;
                let ok = match url.scheme() {
                    "ldaps" => tls == TlsMode::Implicit,
                    _ => tls != TlsMode::Implicit,
                };
                if !ok {
                    return Err(invalid("tls", "ldaps:// means implicit TLS; ldap:// takes starttls or none"));
                }
            }
        }
        "token_url" | "graph_url" | "jwks_url" => {
            let url = url::Url::parse(value).map_err(|e| invalid(key, format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "https" | "http") {
                return Err(invalid(key, "scheme must be https:// (http:// only for loopback tests)"));
            }
            if url.scheme() == "http" && !is_loopback_host(url.host_str().unwrap_or("")) {
                return Err(invalid(key, "http:// is only accepted for loopback addresses; use https://"));
            }
        }
        "bind_dn" => validate_dn(value).map_err(|e| invalid(key, e.to_string()))?,
        // A rotator's subtrees: the base DNs whose accounts it may reset, separated by `;`.
        "subtrees" => {
            let bases: Vec<&str> = value.split(';').map(str::trim).filter(|b| !b.is_empty()).collect();
            if bases.is_empty() {
                return Err(invalid(key, "must name at least one base DN (separate several with ;)"));
            }
            for base in bases {
                validate_dn(base).map_err(|e| invalid(key, format!("{base:?}: {e}")))?;
            }
        }
        "tls" => {
            value.parse::<TlsMode>().map_err(|e| invalid(key, e))?;
        }
        "port" => {
            let port: u32 = value.parse().map_err(|_| invalid(key, "must be a number"))?;
            if !(1..=65535).contains(&port) {
                return Err(invalid(key, "must be between 1 and 65535"));
            }
        }
        "host" => check_host(value).map_err(|e| invalid(key, e))?,
        "ca_pem" if !value.contains("-----BEGIN CERTIFICATE-----") => {
            return Err(invalid(key, "must be a PEM certificate (-----BEGIN CERTIFICATE-----)"));
        }
        "client_id" | "directory_id" | "app_object_id"
            if (value.len() > 128 || value.contains(char::is_whitespace)) =>
        {
            return Err(invalid(key, "must be an identifier without spaces, at most 128 characters"));
        }
        "auth" if !matches!(value, "secret" | "certificate") => {
            return Err(invalid(key, "must be secret or certificate"));
        }
        "secret_method" if !matches!(value, "basic" | "post") => {
            return Err(invalid(key, "must be basic (client_secret_basic) or post (client_secret_post)"));
        }
        "danger_accept_invalid_certs" if value != "true" => {
            return Err(invalid(key, "may only be true (leave it out to check certificates)"));
        }
        "password_alphabet" if !matches!(value, "alnum" | "alnum-symbols") => {
            return Err(invalid(key, "must be alnum or alnum-symbols"));
        }
        "password_length" => {
            let n: u32 = value.parse().map_err(|_| invalid(key, "must be a number"))?;
            if !(12..=256).contains(&n) {
                return Err(invalid(key, "must be between 12 and 256"));
            }
        }
        "max_age" => {
            crate::time::parse_duration_secs(value).map_err(|e| invalid(key, e))?;
        }
        "rotator" => {
            crate::names::CredentialName::parse(value).map_err(|e| invalid(key, e.to_string()))?;
        }
        "user" | "scope" | "description" if value.len() > 1024 => {
            return Err(invalid(key, "longer than 1024 characters"));
        }
        _ => {}
    }
    let _ = kind;
    Ok(())
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if host.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if labels_ok {
        Ok(())
    } else {
        Err("must be a host name or an IP address".into())
    }
}

/// Free-form labels on a credential: `key=value`, keys are slugs (dots allowed), values short.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if labels.len() > 32 {
        return Err(FieldError::Label("at most 32 labels".into()));
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_');
        if !key_ok {
            return Err(FieldError::Label(format!(
                "label key {:?} must be lowercase letters, digits, '-', '_' or '.'",
                k.chars().take(64).collect::<String>()
            )));
        }
        if v.len() > 256 || v.chars().any(char::is_control) {
            return Err(FieldError::Label(format!("label {k:?}: value must be at most 256 printable characters")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ldap_fields() {
        Fields::validate(
            CredentialKind::Ldap,
            map(&[("url", "ldaps://dc1.acme.example:636"), ("bind_dn", "cn=svc,dc=acme,dc=example")]),
        )
        .unwrap();
        let err = Fields::validate(CredentialKind::Ldap, map(&[("url", "ldaps://dc1")])).unwrap_err();
        assert!(matches!(err, FieldError::Missing { field: "bind_dn", .. }));
        let err =
            Fields::validate(CredentialKind::Ldap, map(&[("url", "http://dc1"), ("bind_dn", "cn=x")])).unwrap_err();
        assert!(err.to_string().contains("ldap://"));
        let err = Fields::validate(
            CredentialKind::Ldap,
            map(&[("url", "ldaps://dc1"), ("bind_dn", "cn=x"), ("tls", "starttls")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("implicit"));
        let err = Fields::validate(
            CredentialKind::Ldap,
            map(&[("url", "ldap://dc1"), ("bind_dn", "cn=x"), ("bind-dn", "cn=y")]),
        )
        .unwrap_err();
        assert!(matches!(err, FieldError::Unknown { .. }), "{err}");
    }

    #[test]
    fn rotator_subtrees() {
        let base = [("url", "ldaps://dc1"), ("bind_dn", "cn=admin,dc=acme,dc=example")];
        let mut ok = map(&base);
        ok.insert("subtrees".into(), "ou=people,dc=acme,dc=example; ou=svc,dc=acme,dc=example".into());
        Fields::validate(CredentialKind::Ldap, ok).unwrap();
        let mut bad = map(&base);
        bad.insert("subtrees".into(), " ; ".into());
        assert!(Fields::validate(CredentialKind::Ldap, bad).is_err());
        let mut bad = map(&base);
        bad.insert("subtrees".into(), "not a dn".into());
        assert!(Fields::validate(CredentialKind::Ldap, bad).is_err());
    }

    #[test]
    fn pop3_and_smtp_fields() {
        let ok = map(&[("host", "mail.acme.example"), ("port", "995"), ("tls", "implicit"), ("user", "j@acme")]);
        Fields::validate(CredentialKind::Pop3, ok.clone()).unwrap();
        Fields::validate(CredentialKind::Smtp, ok.clone()).unwrap();
        let mut bad = ok.clone();
        bad.insert("port".into(), "70000".into());
        assert!(Fields::validate(CredentialKind::Pop3, bad).is_err());
        let mut bad = ok.clone();
        bad.insert("tls".into(), "ssl".into());
        assert!(Fields::validate(CredentialKind::Smtp, bad).is_err());
        let mut bad = ok;
        bad.insert("host".into(), "bad host".into());
        assert!(Fields::validate(CredentialKind::Smtp, bad).is_err());
    }

    #[test]
    fn entra_fields() {
        let ok = map(&[
            ("token_url", "https://login.microsoftonline.com/x/oauth2/v2.0/token"),
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("scope", "https://outlook.office365.com/.default"),
        ]);
        Fields::validate(CredentialKind::EntraApp, ok.clone()).unwrap();
        let mut bad = ok.clone();
        bad.insert("token_url".into(), "http://login.example/token".into());
        assert!(Fields::validate(CredentialKind::EntraApp, bad).is_err());
        let mut loopback = ok;
        loopback.insert("token_url".into(), "http://127.0.0.1:3000/token".into());
        Fields::validate(CredentialKind::EntraApp, loopback).unwrap();
    }

    #[test]
    fn generic_takes_no_target_fields() {
        Fields::validate(CredentialKind::Generic, map(&[])).unwrap();
        assert!(Fields::validate(CredentialKind::Generic, map(&[("host", "x")])).is_err());
    }

    #[test]
    fn labels() {
        validate_labels(&map(&[("env", "prod"), ("team.mail", "x")])).unwrap();
        assert!(validate_labels(&map(&[("Env", "prod")])).is_err());
    }
}
