//! An auth role's specification as written (API, CLI, configuration file): plain data, checked
//! by the core (`rekey_core::workloads::role`), which also says what each field means at login.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Role;

/// An auth role as written through the API, the CLI or the configuration (and stored as such).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtRoleSpec {
    /// The `iss` a token must carry, exactly.
    pub issuer: String,
    /// Where the issuer's OpenID configuration is (`<url>/.well-known/openid-configuration`,
    /// which names `jwks_uri`). One of `discovery_url`, `jwks_url`, `jwks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    /// The issuer's JWK set URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// The issuer's keys, as a JWK set (`{"keys": [...]}`), for an issuer that publishes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// A token's `aud` must hold one of these.
    pub audiences: Vec<String>,
    /// The algorithms accepted: `RS256`, `ES256`, `EdDSA`. Default `["RS256", "ES256"]`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The `sub` a token must carry (`*` matches any run of characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_subject: Option<String>,
    /// Claims a token must carry, each with the values (globs with `*`) one of which it must
    /// match; a claim holding a list matches if one of its items does. A name starting with `/`
    /// is a JSON pointer into nested claims (`/kubernetes.io/namespace`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bound_claims: BTreeMap<String, Vec<String>>,
    /// The role of the token a login gets: `connector`, `tenant-admin` or `auditor`.
    pub role: Role,
    /// Its tenant (connector and tenant-admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// What a connector token may reveal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// Where the token may be used from (empty: anywhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<String>,
    /// The token's lifetime: `15m` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// The most it can be renewed to, from the login: `1h` by default, at most `24h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ttl: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`: `30s` by default, at most `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
