//! Operator login with OpenID Connect: the authorization code flow with PKCE, Vault's shape
//! (`auth/oidc/oidc/auth_url`, then `auth/oidc/oidc/callback`), for `rekey login --oidc`.
//!
//! The flow keeps no state on the server: the `state` parameter carries its expiry, a random
//! part, the role asked for and the redirect URI, under a MAC of the integrity key (shared by
//! every server of a PostgreSQL store) that also covers the CLI's `client_nonce`; the PKCE
//! verifier and the ID token's `nonce` are derived from the random part under the same key.
//! So the callback may reach any server, only the CLI that asked can finish the flow, and a
//! `state` is good for ten minutes. The redirect URI must be a loopback address (the CLI's own
//! listener, RFC 8252): a code is never sent anywhere else by Rekey's asking.
//!
//! Must never: accept an ID token whose issuer, audience, expiry or nonce do not match, or a
//! signature that does not check; grant a role no group of the user maps to; record a code, a
//! token or a verifier.

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rekey_crypto::integrity::canonical;
use rekey_crypto::jwt::UnverifiedJwt;
use rekey_crypto::token;
use rekey_store::TokenRow;
use rekey_types::{RequestId, Role, Timestamp};
use sha2::{Digest, Sha256};

use super::login::{LoggedIn, SignatureRefused};
use super::role::KeySource;
use crate::failures::AttemptKind;
use crate::options::OidcOptions;
use crate::{CoreError, Vault};

/// How long a login flow may take, from the URL to the callback.
pub const FLOW_SECS: i64 = 600;
/// The audit resource of operator logins.
const RESOURCE: &str = "auth:oidc";

fn bad(why: &str) -> CoreError {
    CoreError::BadRequest(why.to_owned())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What a `state` carries.
struct Flow {
    expires: i64,
    random: [u8; 16],
    role: Option<Role>,
    redirect_uri: String,
}

fn role_byte(role: Option<Role>) -> u8 {
    match role {
        None => 0,
        Some(Role::Operator) => 1,
        Some(Role::Auditor) => 2,
        Some(Role::TenantAdmin) => 3,
        Some(Role::Connector) => 4,
    }
}

/// A redirect URI on a loopback address, as a CLI's listener has.
fn check_redirect(uri: &str) -> Result<(), CoreError> {
    let u = url::Url::parse(uri).map_err(|_| bad("redirect_uri does not parse"))?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if u.scheme() != "http" || !loopback || uri.len() > 512 || u.fragment().is_some() {
        return Err(bad("redirect_uri must be an http URL on a loopback address (the CLI's own listener)"));
    }
    Ok(())
}

fn seconds(t: Timestamp) -> i64 {
    t.as_micros().div_euclid(1_000_000)
}

impl Vault {
    fn oidc(&self) -> Result<&OidcOptions, CoreError> {
        self.options().oidc.as_ref().ok_or_else(|| bad("operator login with OIDC is not configured ([oidc])"))
    }

    fn flow_mac(&self, body: &[u8], client_nonce: &str) -> [u8; 32] {
        self.integrity().row_mac("oidc-state", &canonical(&[body, client_nonce.as_bytes()]))
    }

    fn derived(&self, what: &str, random: &[u8; 16]) -> String {
        b64(&self.integrity().row_mac(what, random))
    }

    fn seal_flow(&self, flow: &Flow, client_nonce: &str) -> String {
        let mut body = Vec::with_capacity(25 + flow.redirect_uri.len());
        body.extend_from_slice(&flow.expires.to_be_bytes());
        body.extend_from_slice(&flow.random);
        body.push(role_byte(flow.role));
        body.extend_from_slice(flow.redirect_uri.as_bytes());
        let mac = self.flow_mac(&body, client_nonce);
        body.extend_from_slice(&mac);
        b64(&body)
    }

    fn open_flow(&self, state: &str, client_nonce: &str) -> Result<Flow, &'static str> {
        let bytes = URL_SAFE_NO_PAD.decode(state).map_err(|_| "the state does not parse")?;
        if bytes.len() < 25 + 32 {
            return Err("the state does not parse");
        }
        let (body, mac) = bytes.split_at(bytes.len() - 32);
        if !self.integrity().row_ok("oidc-state", &canonical(&[body, client_nonce.as_bytes()]), mac) {
            return Err("the state is not one this vault issued for this client");
        }
        let expires = i64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
        if expires < seconds(Timestamp::now()) {
            return Err("the login took too long; start again");
        }
        let role = match body[24] {
            1 => Some(Role::Operator),
            2 => Some(Role::Auditor),
            _ => None,
        };
        let redirect_uri = String::from_utf8(body[25..].to_vec()).map_err(|_| "the state does not parse")?;
        Ok(Flow { expires, random: body[8..24].try_into().expect("16 bytes"), role, redirect_uri })
    }

    /// `auth/oidc/oidc/auth_url`: where to send the operator's browser. `role` asks for
    /// `operator` or `auditor` (default: the most the user's groups grant); `redirect_uri` is the
    /// CLI's loopback listener; `client_nonce` binds the flow to the CLI that asked.
    pub async fn oidc_auth_url(
        &self,
        role: Option<Role>,
        redirect_uri: &str,
        client_nonce: &str,
    ) -> Result<String, CoreError> {
        let o = self.oidc()?;
        if matches!(role, Some(Role::TenantAdmin | Role::Connector)) {
            return Err(bad("an operator login grants operator or auditor"));
        }
        check_redirect(redirect_uri)?;
        if !(16..=128).contains(&client_nonce.len()) || !client_nonce.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("client_nonce: 16 to 128 printable characters"));
        }
        let provider = rekey_connect::oidc::discover(&o.issuer, &self.options().connect.limits)
            .await
            .map_err(|e| CoreError::BadRequest(format!("the OpenID provider: {e}")))?;
        let random = rekey_crypto::keys::random_16().map_err(CoreError::Crypto)?;
        let flow = Flow {
            expires: seconds(Timestamp::now()) + FLOW_SECS,
            random,
            role,
            redirect_uri: redirect_uri.to_owned(),
        };
        let verifier = self.derived("oidc-pkce", &flow.random);
        let challenge = b64(&Sha256::digest(verifier.as_bytes()));
        let endpoint = provider
            .authorization_endpoint
            .ok_or_else(|| bad("the OpenID provider's configuration names no authorization_endpoint"))?;
        let mut url =
            url::Url::parse(&endpoint).map_err(|_| bad("the provider's authorization_endpoint does not parse"))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &o.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &o.scopes.join(" "))
            .append_pair("state", &self.seal_flow(&flow, client_nonce))
            .append_pair("nonce", &self.derived("oidc-nonce", &flow.random))
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// `auth/oidc/oidc/callback`: the code the provider sent the CLI's listener, for a token.
    /// Audited as `auth.login`, refusals counted against the source like bad tokens.
    pub async fn oidc_callback(
        &self,
        state: &str,
        code: &str,
        client_nonce: &str,
        source: IpAddr,
        request_id: RequestId,
    ) -> Result<LoggedIn, CoreError> {
        let o = self.oidc()?.clone();
        self.options().failures.admit(AttemptKind::Token, source).map_err(CoreError::TooManyAttempts)?;
        let (role, subject, detail) = match self.check_callback(&o, state, code, client_nonce).await {
            Ok(done) => done,
            Err((why, subject)) => {
                let detail = match subject {
                    Some(s) => format!("method=oidc; {why}; sub={}", super::login::clean(&s)),
                    None => format!("method=oidc; {why}"),
                };
                return Err(self.refuse_login(RESOURCE, source, request_id, why, &detail).await?);
            }
        };
        let now = Timestamp::now();
        let issued = token::issue().map_err(CoreError::Crypto)?;
        let row = TokenRow {
            id: issued.id,
            hash: issued.hash.to_vec(),
            role,
            tenant_id: None,
            tenant_name: None,
            bound: vec![],
            cidrs: vec![],
            description: super::login::clean(&format!("operator login (OIDC) as {subject}")),
            created_by: "auth:oidc".into(),
            created_at: now,
            expires_at: Some(now.add_seconds(o.ttl_secs)),
            max_expires_at: None,
            revoked_at: None,
            mac: None,
        };
        let detail = format!("method=oidc; token={}; {detail}; grants={role}; ttl={}s", row.id, o.ttl_secs);
        let view = self.store_login(row, RESOURCE, source, request_id, &detail).await?;
        Ok(LoggedIn { token: issued, view, ttl: o.ttl_secs, auth_role: "oidc".into() })
    }

    /// The role a callback grants, the user's subject, and the claims that decided (for the
    /// audit event); or why not.
    async fn check_callback(
        &self,
        o: &OidcOptions,
        state: &str,
        code: &str,
        client_nonce: &str,
    ) -> Result<(Role, String, String), (String, Option<String>)> {
        let refuse = |why: &str| (why.to_owned(), None);
        let flow = self.open_flow(state, client_nonce).map_err(refuse)?;
        if code.is_empty() || code.len() > 4096 {
            return Err(refuse("the code is missing"));
        }
        let limits = &self.options().connect.limits;
        let provider = rekey_connect::oidc::discover(&o.issuer, limits).await.map_err(|e| (e.to_string(), None))?;
        let verifier = self.derived("oidc-pkce", &flow.random);
        let token_endpoint = provider
            .token_endpoint
            .ok_or_else(|| refuse("the OpenID provider's configuration names no token_endpoint"))?;
        let id_token = rekey_connect::oidc::exchange_code(
            &token_endpoint,
            &o.client_id,
            o.client_secret.as_deref().map(String::as_str),
            code,
            &flow.redirect_uri,
            &verifier,
            limits,
        )
        .await
        .map_err(|e| (e.to_string(), None))?;
        let jwt = UnverifiedJwt::parse(&id_token).ok_or_else(|| refuse("the ID token is not a JWT"))?;
        let alg = jwt.alg().ok_or_else(|| refuse("the ID token's algorithm is not one Rekey accepts"))?;
        match self.check_issuer_signature(&jwt, alg, &KeySource::Url(provider.jwks_uri.clone())).await {
            Ok(()) => {}
            Err(SignatureRefused::Keys(why)) => return Err((why, None)),
            Err(SignatureRefused::Mismatch | SignatureRefused::NoKey) => {
                return Err(refuse("the ID token's signature does not check against the provider's keys"))
            }
        }
        let claims = jwt.claims.as_object().ok_or_else(|| refuse("the ID token's claims are not an object"))?;
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let subject = text("sub").ok_or_else(|| refuse("the ID token has no subject"))?;
        let with_sub = |why: &str| (why.to_owned(), Some(subject.clone()));
        if text("iss").as_deref() != Some(o.issuer.trim_end_matches('/'))
            && text("iss").as_deref() != Some(o.issuer.as_str())
        {
            return Err(with_sub("the ID token's issuer is not the configured one"));
        }
        let audience_ok = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => a == &o.client_id,
            Some(serde_json::Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(o.client_id.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err(with_sub("the ID token is not for this client (aud)"));
        }
        let now = seconds(Timestamp::now());
        let exp = claims.get("exp").and_then(|v| v.as_i64()).ok_or_else(|| with_sub("the ID token has no expiry"))?;
        if exp + 30 <= now {
            return Err(with_sub("the ID token expired"));
        }
        if text("nonce") != Some(self.derived("oidc-nonce", &flow.random)) {
            return Err(with_sub("the ID token's nonce is not this login's"));
        }
        let groups: Vec<String> = match claims.get(&o.groups_claim) {
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect()
            }
            Some(serde_json::Value::String(g)) => vec![g.clone()],
            _ => vec![],
        };
        let mapped: Vec<(&String, Role)> =
            o.roles.iter().filter(|(g, _)| groups.contains(g)).map(|(g, r)| (g, *r)).collect();
        let best = if mapped.iter().any(|(_, r)| *r == Role::Operator) {
            Some(Role::Operator)
        } else if mapped.iter().any(|(_, r)| *r == Role::Auditor) {
            Some(Role::Auditor)
        } else {
            None
        };
        let granted = match (best, flow.role) {
            (None, _) => return Err(with_sub("no group of the user maps to a Rekey role")),
            (Some(b), None) => b,
            (Some(Role::Operator), Some(asked)) => asked,
            (Some(Role::Auditor), Some(Role::Auditor)) => Role::Auditor,
            (Some(_), Some(asked)) => return Err(with_sub(&format!("the user's groups do not grant {asked}"))),
        };
        let matched: Vec<&str> = mapped.iter().map(|(g, _)| g.as_str()).collect();
        let detail = format!(
            "iss={}; sub={}; email={}; groups={}",
            super::login::clean(&o.issuer),
            super::login::clean(&subject),
            super::login::clean(&text("email").unwrap_or_default()),
            super::login::clean(&matched.join(","))
        );
        Ok((granted, subject, detail))
    }
}
