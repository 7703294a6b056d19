//! Auth roles: which issuer's JWTs a workload may log in with, and what a login grants.

use ipnet::IpNet;
use rekey_crypto::jws::{JwkSet, JwsAlg};
use rekey_types::time::parse_duration_secs;
pub use rekey_types::JwtRoleSpec;
use rekey_types::{Role, Timestamp};
use serde::{Deserialize, Serialize};

use crate::CoreError;

/// The TTL of a login's token when the role names none: 15 minutes.
pub const DEFAULT_TTL: &str = "15m";
/// The most a login's token can be renewed to, when the role names nothing: 1 hour.
pub const DEFAULT_MAX_TTL: &str = "1h";
/// The clock skew allowed on `exp`, `nbf` and `iat` when the role names none.
pub const DEFAULT_SKEW: &str = "30s";
/// The longest `max_ttl` a role may set: a day.
pub const LONGEST_MAX_TTL_SECS: i64 = 86_400;
/// The largest clock skew a role may allow: five minutes.
pub const LARGEST_SKEW_SECS: i64 = 300;
/// Most audiences, bound claims, values per claim, credentials and CIDRs a role may list.
const MOST: usize = 64;

/// Where a role's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Discovery at this URL, then the key set it names.
    Discovery(String),
    /// The key set at this URL.
    Url(String),
    /// Keys given in the role.
    Inline(JwkSet),
}

/// A role, checked: what a login is tested against.
#[derive(Debug, Clone)]
pub struct JwtRole {
    /// Its name.
    pub name: String,
    /// As written.
    pub spec: JwtRoleSpec,
    /// Its keys' source.
    pub keys: KeySource,
    /// The algorithms accepted.
    pub algorithms: Vec<JwsAlg>,
    /// The networks a token may be used from.
    pub cidrs: Vec<IpNet>,
    /// Seconds.
    pub ttl: i64,
    /// Seconds.
    pub max_ttl: i64,
    /// Seconds.
    pub skew: i64,
}

/// An auth role as listed: its name, its specification, who wrote it and when.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JwtRoleView {
    /// Its name.
    pub name: String,
    /// What it accepts and grants.
    pub spec: JwtRoleSpec,
    /// Who wrote it last.
    pub created_by: String,
    /// When it was first written.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
}

fn bad(message: impl Into<String>) -> CoreError {
    CoreError::BadRequest(message.into())
}

fn url(what: &str, value: &str) -> Result<String, CoreError> {
    let u = url::Url::parse(value).map_err(|e| bad(format!("{what}: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(bad(format!("{what}: an http or https URL with a host")));
    }
    Ok(value.to_owned())
}

fn text(what: &'static str, value: &str, max: usize) -> Result<(), CoreError> {
    rekey_types::text::text(what, value, max).map_err(|e| bad(e.to_string()))?;
    if value.is_empty() {
        return Err(bad(format!("{what} is empty")));
    }
    Ok(())
}

fn secs(what: &'static str, value: Option<&str>, default: &str) -> Result<i64, CoreError> {
    parse_duration_secs(value.unwrap_or(default)).map_err(|e| bad(format!("{what}: {e}")))
}

impl JwtRole {
    /// [`JwtRole::check`] with the role's name checked too (1 to 64 of `a-z`, `0-9`, `-`, `_`).
    pub fn check_named(name: &str, spec: JwtRoleSpec) -> Result<Self, CoreError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(bad("a role name is 1 to 64 of a-z, 0-9, - and _"));
        }
        Self::check(name, spec)
    }

    /// Checks a specification (everything but whether its tenant and credentials exist, which
    /// needs the store) and reads it into a role. Role names are checked by the caller.
    pub fn check(name: &str, spec: JwtRoleSpec) -> Result<Self, CoreError> {
        text("issuer", &spec.issuer, 512)?;
        let keys = match (&spec.discovery_url, &spec.jwks_url, &spec.jwks) {
            (Some(d), None, None) => KeySource::Discovery(url("discovery_url", d)?),
            (None, Some(u), None) => KeySource::Url(url("jwks_url", u)?),
            (None, None, Some(set)) => {
                let set: JwkSet = serde_json::from_value(set.clone())
                    .map_err(|_| bad("jwks: a JWK set, {\"keys\": [...]}, of public keys"))?;
                if set.keys.is_empty() || set.keys.len() > MOST {
                    return Err(bad(format!("jwks: 1 to {MOST} keys")));
                }
                if let Some(k) = set.keys.iter().find(|k| !JwsAlg::ALL.iter().any(|a| k.fits(*a))) {
                    return Err(bad(format!("jwks: key {:?} is not an RSA, P-256 or Ed25519 signing key", k.kid)));
                }
                KeySource::Inline(set)
            }
            _ => return Err(bad("give exactly one of discovery_url, jwks_url, jwks")),
        };
        if spec.audiences.is_empty() || spec.audiences.len() > MOST {
            return Err(bad(format!("audiences: 1 to {MOST}")));
        }
        for a in &spec.audiences {
            text("an audience", a, 512)?;
        }
        if spec.algorithms.is_empty() {
            return Err(bad("algorithms: at least one of RS256, ES256, EdDSA"));
        }
        let algorithms = spec
            .algorithms
            .iter()
            .map(|a| JwsAlg::parse(a).ok_or_else(|| bad(format!("algorithm {a:?}: only RS256, ES256 and EdDSA"))))
            .collect::<Result<Vec<_>, _>>()?;
        if spec.bound_subject.is_none() && spec.bound_claims.is_empty() {
            return Err(bad(
                "bind the role to a subject or to claims (bound_subject, bound_claims): an issuer signs tokens for \
                 every workload it knows, not only this one",
            ));
        }
        if let Some(s) = &spec.bound_subject {
            text("bound_subject", s, 512)?;
        }
        if spec.bound_claims.len() > MOST {
            return Err(bad(format!("bound_claims: at most {MOST}")));
        }
        for (claim, values) in &spec.bound_claims {
            text("a bound claim's name", claim, 256)?;
            if values.is_empty() || values.len() > MOST {
                return Err(bad(format!("bound claim {claim}: 1 to {MOST} values")));
            }
            for v in values {
                text("a bound claim's value", v, 512)?;
            }
        }
        match spec.role {
            Role::Connector | Role::TenantAdmin | Role::Auditor => {}
            Role::Operator => return Err(bad("a JWT login grants connector, tenant-admin or auditor, never operator")),
        }
        let needs_tenant = matches!(spec.role, Role::Connector | Role::TenantAdmin);
        if needs_tenant != spec.tenant.is_some() {
            return Err(bad(if needs_tenant {
                format!("a {} login needs a tenant", spec.role)
            } else {
                format!("an {} login is not scoped to a tenant", spec.role)
            }));
        }
        if (spec.role == Role::Connector) == spec.credentials.is_empty() {
            return Err(bad(if spec.role == Role::Connector {
                "a connector login needs at least one credential it may reveal".to_owned()
            } else {
                format!("only connector logins are bound to credentials, not {}", spec.role)
            }));
        }
        if spec.credentials.len() > MOST || spec.cidrs.len() > MOST {
            return Err(bad(format!("at most {MOST} credentials and {MOST} CIDRs")));
        }
        let cidrs = spec
            .cidrs
            .iter()
            .map(|c| c.parse::<IpNet>().map_err(|_| bad(format!("CIDR {c:?} does not parse"))))
            .collect::<Result<Vec<_>, _>>()?;
        let ttl = secs("ttl", spec.ttl.as_deref(), DEFAULT_TTL)?;
        let max_ttl = secs("max_ttl", spec.max_ttl.as_deref(), DEFAULT_MAX_TTL)?;
        let skew = secs("clock_skew", spec.clock_skew.as_deref(), DEFAULT_SKEW)?;
        if ttl > max_ttl {
            return Err(bad("ttl is longer than max_ttl"));
        }
        if max_ttl > LONGEST_MAX_TTL_SECS {
            return Err(bad("max_ttl: at most 24h (a longer-lived token is what logins replace)"));
        }
        if skew > LARGEST_SKEW_SECS {
            return Err(bad("clock_skew: at most 5m"));
        }
        Ok(Self { name: name.to_owned(), spec, keys, algorithms, cidrs, ttl, max_ttl, skew })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JwtRoleSpec {
        serde_json::from_value(serde_json::json!({
            "issuer": "https://issuer.example", "jwks_url": "https://issuer.example/keys",
            "audiences": ["rekey"], "bound_subject": "system:serviceaccount:mail:fetcher",
            "role": "connector", "tenant": "acme", "credentials": ["dir"],
        }))
        .unwrap()
    }

    #[test]
    fn defaults_and_refusals() {
        let r = JwtRole::check("k8s", spec()).unwrap();
        assert_eq!((r.ttl, r.max_ttl, r.skew), (900, 3600, 30));
        assert_eq!(r.algorithms, vec![JwsAlg::Rs256, JwsAlg::Es256]);
        type Change = Box<dyn Fn(&mut JwtRoleSpec)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|s| s.discovery_url = Some("https://issuer.example".into())), "exactly one"),
            (Box::new(|s| s.jwks_url = None), "exactly one"),
            (Box::new(|s| s.jwks_url = Some("file:///etc/keys".into())), "http or https"),
            (Box::new(|s| s.audiences.clear()), "audiences"),
            (Box::new(|s| s.algorithms = vec!["HS256".into()]), "only RS256"),
            (Box::new(|s| s.algorithms = vec!["none".into()]), "only RS256"),
            (Box::new(|s| s.bound_subject = None), "bind the role"),
            (Box::new(|s| s.role = Role::Operator), "never operator"),
            (Box::new(|s| s.tenant = None), "needs a tenant"),
            (Box::new(|s| s.credentials.clear()), "at least one credential"),
            (Box::new(|s| s.cidrs = vec!["10.0.0.0/33".into()]), "CIDR"),
            (Box::new(|s| s.ttl = Some("2h".into())), "longer than max_ttl"),
            (Box::new(|s| s.max_ttl = Some("2d".into())), "at most 24h"),
            (Box::new(|s| s.clock_skew = Some("1h".into())), "at most 5m"),
            (Box::new(|s| s.ttl = Some("soon".into())), "ttl"),
            (
                Box::new(|s| s.bound_claims = std::collections::BTreeMap::from([("repo".into(), vec![])])),
                "1 to 64 values",
            ),
        ];
        for (change, says) in cases {
            let mut s = spec();
            change(&mut s);
            let err = JwtRole::check("k8s", s).unwrap_err().to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
        let mut s = spec();
        s.jwks_url = None;
        s.jwks = Some(serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}));
        assert!(JwtRole::check("k8s", s).unwrap_err().to_string().contains("not an RSA, P-256 or Ed25519"));
    }
}
