//! Incident scope selectors, as responders type them: `key:acme@1`, `key:root@2`,
//! `cert:<sha1 or sha256 hex>`, `token:<id>`, `region:uk,us`, `tenant:acme,globex`,
//! `kind:ldap,pop3`, `cred:acme/directory`.
//!
//! A credential is in scope if any selector matches it; `kind:` narrows the others (alone, it
//! selects every credential of those kinds).

use std::fmt;
use std::str::FromStr;

use crate::{CredRef, CredentialKind, KeyRef, Region, TenantName, TokenId};

/// One way to say what an incident reaches (`docs/incidents.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `key:root@N` or `key:TENANT@N`: every live credential with a version that key wraps.
    Key(KeyRef),
    /// A certificate thumbprint, lowercase hex (SHA-1: 40 digits, SHA-256: 64).
    Cert(String),
    /// `token:ID`: every credential the token could reveal, and every one it did.
    Token(TokenId),
    /// `region:R,…`: every tenant of those regions.
    Region(Vec<Region>),
    /// `tenant:T,…`: those tenants.
    Tenant(Vec<TenantName>),
    /// `kind:K,…`: narrows the others to these kinds; alone, every credential of these kinds.
    Kind(Vec<CredentialKind>),
    /// `cred:T/N`: one credential.
    Cred(CredRef),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope {selector:?}: {reason}")]
/// Why a selector was refused.
pub struct SelectorError {
    /// The selector as given (cut short).
    pub selector: String,
    /// Why.
    pub reason: String,
}

const KINDS: &str = "key:, cert:, token:, region:, tenant:, kind: or cred:";

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shown: String = s.chars().take(80).collect();
        let err = |reason: String| SelectorError { selector: shown.clone(), reason };
        let (kind, value) =
            s.split_once(':').ok_or_else(|| err(format!("a selector is TYPE:VALUE, with TYPE one of {KINDS}")))?;
        let value = value.trim();
        if value.is_empty() {
            return Err(err("the value is empty".into()));
        }
        let list = || value.split(',').map(str::trim).filter(|v| !v.is_empty());
        match kind {
            "key" => value.parse().map(Selector::Key).map_err(|e| err(format!("{e}"))),
            "cert" => {
                let hex = value.to_ascii_lowercase().replace(':', "");
                if !matches!(hex.len(), 40 | 64) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(err(
                        "a certificate is named by its SHA-1 (40 hex digits) or SHA-256 (64) thumbprint".into()
                    ));
                }
                Ok(Selector::Cert(hex))
            }
            "token" => value.parse().map(Selector::Token).map_err(|_| err("not a token id".into())),
            "region" => list()
                .map(|r| Region::parse(r).map_err(|e| err(e.to_string())))
                .collect::<Result<_, _>>()
                .map(Selector::Region),
            "tenant" => list()
                .map(|t| TenantName::parse(t).map_err(|e| err(e.to_string())))
                .collect::<Result<_, _>>()
                .map(Selector::Tenant),
            "kind" => list()
                .map(|k| k.parse::<CredentialKind>().map_err(|e| err(e.to_string())))
                .collect::<Result<_, _>>()
                .map(Selector::Kind),
            "cred" => CredRef::parse(value).map(Selector::Cred).map_err(|e| err(e.to_string())),
            other => {
                Err(err(format!("unknown selector type {:?}: use {KINDS}", other.chars().take(20).collect::<String>())))
            }
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn join<T: fmt::Display>(items: &[T]) -> String {
            items.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        }
        match self {
            Selector::Key(k) => write!(f, "key:{k}"),
            Selector::Cert(c) => write!(f, "cert:{c}"),
            Selector::Token(t) => write!(f, "token:{t}"),
            Selector::Region(r) => write!(f, "region:{}", join(r)),
            Selector::Tenant(t) => write!(f, "tenant:{}", join(t)),
            Selector::Kind(k) => write!(f, "kind:{}", join(k)),
            Selector::Cred(c) => write!(f, "cred:{c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type_and_prints_it_back() {
        for s in [
            "key:acme@1",
            "key:root@2",
            "cert:0123456789abcdef0123456789abcdef01234567",
            "region:uk,us",
            "tenant:acme,globex",
            "kind:ldap,entra-app",
            "cred:acme/directory",
        ] {
            assert_eq!(s.parse::<Selector>().unwrap().to_string(), s);
        }
        let t: Selector = "token:01a216c4-2d50-732e-b628-52cac193c647".parse().unwrap();
        assert!(matches!(t, Selector::Token(_)));
    }

    #[test]
    fn refuses_with_a_reason() {
        for (bad, says) in [
            ("colour:red", "unknown selector type"),
            ("region", "TYPE:VALUE"),
            ("region:", "empty"),
            ("region:UK", "region"),
            ("kind:ftp", "unknown credential kind"),
            ("cert:xyz", "thumbprint"),
            ("key:acme", "root@N"),
            ("token:nope", "token id"),
            ("cred:acme", "tenant/name"),
        ] {
            let e = bad.parse::<Selector>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
