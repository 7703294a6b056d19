//! The use cases: write, read and delete auth roles (operators); log in with a JWT (anyone
//! holding one); renew, look up and revoke one's own token (its holder).

use std::net::IpAddr;

use rekey_crypto::jwt::UnverifiedJwt;
use rekey_crypto::token::{self, IssuedToken};
use rekey_store::{AuthRoleRow, TokenRow, WriteOp, WriteRequest};
use rekey_types::{AuditAction, AuditOutcome, RequestId, TenantName, Timestamp};

use super::claims;
use super::role::{JwtRole, JwtRoleSpec, JwtRoleView, KeySource};
use crate::failures::AttemptKind;
use crate::kernel::integrity::{auth_role_mac, auth_role_ok, token_mac};
use crate::kernel::issuer_keys::KeyLocation;
use crate::kernel::policy::Action;
use crate::kernel::record;
use crate::views::TokenView;
use crate::{Caller, CoreError, Vault};

/// A login's result: the token (shown once) and what it may do.
pub struct LoggedIn {
    /// The new token.
    pub token: IssuedToken,
    /// Its view.
    pub view: TokenView,
    /// Seconds until it expires.
    pub ttl: i64,
    /// The auth role it logged in with.
    pub auth_role: String,
}

/// A value chosen by a token's issuer (or its holder), as it may go into an audit event:
/// printable ASCII, cut at 160 characters.
pub(super) fn clean(value: &str) -> String {
    value.chars().take(160).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

/// Why a JWT's signature did not check against an issuer's keys.
pub(super) enum SignatureRefused {
    /// No key of the token's `kid` and of its algorithm's type, even after fetching again.
    NoKey,
    /// The keys that fit do not check the signature.
    Mismatch,
    /// The keys could not be had.
    Keys(String),
}

/// Who wrote a role declared in the configuration file.
const FROM_CONFIG: &str = "config";

fn resource(name: &str) -> String {
    format!("auth-role:{}", clean(name))
}

fn seconds(t: Timestamp) -> i64 {
    t.as_micros().div_euclid(1_000_000)
}

/// A role of the configuration file, as listed.
fn config_view(name: &str, spec: &JwtRoleSpec) -> JwtRoleView {
    let start = Timestamp::from_micros(0);
    JwtRoleView {
        name: name.to_owned(),
        spec: spec.clone(),
        created_by: FROM_CONFIG.into(),
        created_at: start,
        updated_at: start,
    }
}

impl Vault {
    /// `jwt-role put`: writes an auth role (replacing the one of that name).
    pub async fn put_auth_role(
        &self,
        caller: &Caller,
        name: &str,
        spec: JwtRoleSpec,
    ) -> Result<JwtRoleView, CoreError> {
        let prepared = async {
            self.authorize(caller, Action::ManageAuthRoles, "auth roles")?;
            let role = JwtRole::check_named(name, spec)?;
            if self.options().jwt_roles.contains_key(name) {
                return Err(CoreError::Conflict(format!(
                    "auth role {name} is declared in the configuration file; change it there"
                )));
            }
            if let Some(t) = &role.spec.tenant {
                let tenant = self.tenant(&TenantName::parse(t)?).await?;
                for c in &role.spec.credentials {
                    if self.store().credential(tenant.id, c).await?.is_none() {
                        return Err(CoreError::NotFound(format!("credential {t}/{c}")));
                    }
                }
            }
            let spec_json = serde_json::to_string(&role.spec).expect("a role specification serializes");
            let now = Timestamp::now();
            let created_at = self.store().auth_role(name).await?.map_or(now, |r| r.created_at);
            let row = AuthRoleRow {
                name: name.to_owned(),
                mac: auth_role_mac(self.integrity(), name, &spec_json),
                spec: spec_json,
                created_by: caller.principal.audit_name(),
                created_at,
                updated_at: now,
            };
            Ok((row, role))
        }
        .await;
        let (row, role) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::AuthRolePut, &resource(name), Err(e)).await,
        };
        let view = JwtRoleView {
            name: row.name.clone(),
            spec: role.spec.clone(),
            created_by: row.created_by.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        };
        let detail = format!(
            "issuer={}; grants={}{}",
            clean(&role.spec.issuer),
            role.spec.role,
            role.spec.tenant.as_deref().map(|t| format!(" of {t}")).unwrap_or_default()
        );
        self.commit(caller, AuditAction::AuthRolePut, &resource(name), WriteOp::PutAuthRole(row), &detail).await?;
        Ok(view)
    }

    /// `jwt-role delete`. Tokens it granted stay valid until they expire (revoke them by id).
    pub async fn delete_auth_role(&self, caller: &Caller, name: &str) -> Result<(), CoreError> {
        if let Err(e) = self.authorize(caller, Action::ManageAuthRoles, "auth roles") {
            return self.finish(caller, AuditAction::AuthRoleDelete, &resource(name), Err(e)).await;
        }
        if self.options().jwt_roles.contains_key(name) {
            let e =
                CoreError::Conflict(format!("auth role {name} is declared in the configuration file; remove it there"));
            return self.finish(caller, AuditAction::AuthRoleDelete, &resource(name), Err(e)).await;
        }
        if self.store().auth_role(name).await?.is_none() {
            let e = CoreError::NotFound(format!("auth role {}", clean(name)));
            return self.finish(caller, AuditAction::AuthRoleDelete, &resource(name), Err(e)).await;
        }
        let op = WriteOp::DeleteAuthRole { name: name.to_owned() };
        self.commit(caller, AuditAction::AuthRoleDelete, &resource(name), op, "").await
    }

    /// `jwt-role list`.
    pub async fn list_auth_roles(&self, caller: &Caller) -> Result<Vec<JwtRoleView>, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadAuthRoles, "auth roles")?;
            let mut out: Vec<JwtRoleView> =
                self.options().jwt_roles.iter().map(|(name, spec)| config_view(name, spec)).collect();
            for row in self.store().list_auth_roles().await? {
                if !self.options().jwt_roles.contains_key(&row.name) {
                    out.push(self.role_view(row).await?);
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        }
        .await;
        self.finish(caller, AuditAction::AuthRoleRead, "", result).await
    }

    /// `jwt-role show`.
    pub async fn show_auth_role(&self, caller: &Caller, name: &str) -> Result<JwtRoleView, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadAuthRoles, "auth roles")?;
            if let Some(spec) = self.options().jwt_roles.get(name) {
                return Ok(config_view(name, spec));
            }
            let row = self
                .store()
                .auth_role(name)
                .await?
                .ok_or_else(|| CoreError::NotFound(format!("auth role {}", clean(name))))?;
            self.role_view(row).await
        }
        .await;
        self.finish(caller, AuditAction::AuthRoleRead, &resource(name), result).await
    }

    async fn role_view(&self, row: AuthRoleRow) -> Result<JwtRoleView, CoreError> {
        let role = self.believe_role(row.clone()).await?;
        Ok(JwtRoleView {
            name: row.name,
            spec: role.spec,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    /// A stored role, if its MAC holds (a row written with SQL is refused, counted and
    /// audited) and it still reads as a valid role.
    async fn believe_role(&self, row: AuthRoleRow) -> Result<JwtRole, CoreError> {
        if !auth_role_ok(self.integrity(), &row) {
            self.integrity_failure(&resource(&row.name), "auth role row failed its integrity check").await?;
            return Err(CoreError::Forbidden(format!("auth role {} failed its integrity check", clean(&row.name))));
        }
        let spec: JwtRoleSpec = serde_json::from_str(&row.spec)
            .map_err(|_| CoreError::Store(rekey_store::StoreError::Corrupt("auth role".into())))?;
        JwtRole::check(&row.name, spec)
    }

    /// `POST /v1/auth/jwt/login`: a workload's JWT, checked against the auth role it names,
    /// for a token that expires after the role's TTL. Every refusal is audited with its reason
    /// and counted against the source's failed attempts, like a bad token.
    pub async fn login_jwt(
        &self,
        role_name: &str,
        jwt: &str,
        source: IpAddr,
        request_id: RequestId,
    ) -> Result<LoggedIn, CoreError> {
        self.options().failures.admit(AttemptKind::Token, source).map_err(CoreError::TooManyAttempts)?;
        let res = resource(role_name);
        let checked = match self.check_login(role_name, jwt).await {
            Ok((role, checked)) => match &role.spec.tenant {
                // The tenant a role grants (a role of the configuration file is not checked
                // against the store when it is read): gone or never there is a refusal too.
                Some(t) => match self.tenant(&TenantName::parse(t)?).await {
                    Ok(tenant) => Ok((role, checked, Some(tenant))),
                    Err(CoreError::NotFound(_)) => {
                        Err(("the auth role's tenant does not exist".to_owned(), checked.subject.clone()))
                    }
                    Err(e) => return Err(e),
                },
                None => Ok((role, checked, None)),
            },
            Err(refused) => Err(refused),
        };
        let (role, checked, tenant) = match checked {
            Ok(done) => done,
            Err((why, subject)) => {
                let detail = match subject {
                    Some(sub) => format!("{why}; sub={}", clean(&sub)),
                    None => why.clone(),
                };
                return Err(self.refuse_login(&res, source, request_id, why, &detail).await?);
            }
        };
        let now = Timestamp::now();
        let issued = token::issue().map_err(CoreError::Crypto)?;
        let description = clean(&format!(
            "login with auth role {} as {}",
            role.name,
            checked.subject.as_deref().unwrap_or("(no sub)")
        ));
        let row = TokenRow {
            id: issued.id,
            hash: issued.hash.to_vec(),
            role: role.spec.role,
            tenant_id: tenant.as_ref().map(|t| t.id),
            tenant_name: tenant.as_ref().map(|t| t.name.clone()),
            bound: role.spec.credentials.clone(),
            cidrs: role.cidrs.iter().map(ToString::to_string).collect(),
            description,
            created_by: format!("auth-role:{}", role.name),
            created_at: now,
            expires_at: Some(now.add_seconds(role.ttl)),
            max_expires_at: Some(now.add_seconds(role.max_ttl)),
            revoked_at: None,
            mac: None,
        };
        let detail = format!(
            "token={}; iss={}; sub={}; aud={}; exp={}; grants={}; ttl={}s; max_ttl={}s",
            row.id,
            clean(&role.spec.issuer),
            clean(checked.subject.as_deref().unwrap_or("")),
            clean(&checked.audience),
            checked.expires,
            role.spec.role,
            role.ttl,
            role.max_ttl
        );
        let view = self.store_login(row, &res, source, request_id, &detail).await?;
        Ok(LoggedIn { token: issued, view, ttl: role.ttl, auth_role: role.name })
    }

    /// Records a refused login (`auth.login`, denied, with `detail`) as a failed attempt of its
    /// source, and gives the error to answer; the audit log's failure if it cannot be recorded.
    pub(super) async fn refuse_login(
        &self,
        resource: &str,
        source: IpAddr,
        request_id: RequestId,
        why: String,
        detail: &str,
    ) -> Result<CoreError, CoreError> {
        let event = record(
            "anonymous",
            &source.to_string(),
            &request_id,
            AuditAction::AuthLogin,
            resource,
            AuditOutcome::Denied,
            detail,
        );
        self.failed_attempt(AttemptKind::Token, source, event).await?;
        Ok(CoreError::LoginRefused(why))
    }

    /// Stores the token a login issued (its row MAC'd here) with its `auth.login` event, the new
    /// token as principal; its view once the event is durable.
    pub(super) async fn store_login(
        &self,
        row: TokenRow,
        resource: &str,
        source: IpAddr,
        request_id: RequestId,
        detail: &str,
    ) -> Result<TokenView, CoreError> {
        let row = TokenRow { mac: Some(token_mac(self.integrity(), &row)), ..row };
        let audit = record(
            &format!("token:{}", row.id),
            &source.to_string(),
            &request_id,
            AuditAction::AuthLogin,
            resource,
            AuditOutcome::Success,
            detail,
        );
        let view = TokenView::from(row.clone());
        self.submit(WriteRequest { op: Some(WriteOp::CreateToken(row)), audit }).await?;
        Ok(view)
    }

    /// Checks a JWT's signature (its header's algorithm `alg`) against the issuer's keys at
    /// `source`: the keys of that algorithm's type under the token's `kid` (any, without one),
    /// the set fetched again once when none fits (an issuer that rotated its keys; how often is
    /// limited by the kernel's `issuer_keys`).
    pub(super) async fn check_issuer_signature(
        &self,
        jwt: &UnverifiedJwt,
        alg: rekey_crypto::jws::JwsAlg,
        source: &KeySource,
    ) -> Result<(), SignatureRefused> {
        let kid = jwt.kid();
        let limits = &self.options().connect.limits;
        for refresh in [false, true] {
            let keys = match source {
                KeySource::Inline(_) if refresh => break,
                KeySource::Inline(set) => Ok(std::sync::Arc::new(set.clone())),
                KeySource::Discovery(u) => self.issuer_keys().keys(KeyLocation::Discovery(u), refresh, limits).await,
                KeySource::Url(u) => self.issuer_keys().keys(KeyLocation::Url(u), refresh, limits).await,
            }
            .map_err(SignatureRefused::Keys)?;
            let candidates: Vec<_> =
                keys.keys.iter().filter(|k| k.fits(alg) && (kid.is_none() || k.kid.as_deref() == kid)).collect();
            if !candidates.is_empty() {
                return match candidates.iter().any(|k| jwt.verify_with(alg, k)) {
                    true => Ok(()),
                    false => Err(SignatureRefused::Mismatch),
                };
            }
        }
        Err(SignatureRefused::NoKey)
    }

    /// The checks of a login, in order; a refusal comes with its reason and, once the signature
    /// checked, the token's subject.
    async fn check_login(
        &self,
        role_name: &str,
        jwt: &str,
    ) -> Result<(JwtRole, claims::Accepted), (String, Option<String>)> {
        if let Some(spec) = self.options().jwt_roles.get(role_name) {
            let role = JwtRole::check(role_name, spec.clone()).map_err(|e| (e.to_string(), None))?;
            return self.check_token_for(role, jwt).await;
        }
        let row = match self.store().auth_role(role_name).await {
            Ok(Some(row)) => row,
            Ok(None) => return Err(("no such auth role".into(), None)),
            Err(_) => return Err(("the auth role could not be read".into(), None)),
        };
        let role = self.believe_role(row).await.map_err(|e| (e.to_string(), None))?;
        self.check_token_for(role, jwt).await
    }

    /// The checks of a login's JWT against its role.
    async fn check_token_for(
        &self,
        role: JwtRole,
        jwt: &str,
    ) -> Result<(JwtRole, claims::Accepted), (String, Option<String>)> {
        let jwt = UnverifiedJwt::parse(jwt)
            .ok_or(("not a JWT (header.claims.signature, base64url JSON)".to_owned(), None))?;
        let alg = jwt
            .alg()
            .ok_or(("the token's algorithm is not one Rekey accepts (RS256, ES256, EdDSA)".to_owned(), None))?;
        if !role.algorithms.contains(&alg) {
            return Err((format!("the auth role does not accept {}", alg.as_str()), None));
        }
        match self.check_issuer_signature(&jwt, alg, &role.keys).await {
            Ok(()) => {}
            Err(SignatureRefused::Keys(why)) => return Err((why, None)),
            Err(SignatureRefused::Mismatch) => {
                return Err(("the signature does not check against the issuer's key".into(), None))
            }
            Err(SignatureRefused::NoKey) => {
                return Err(("no key of the issuer has the token's key id (kid) and algorithm".into(), None))
            }
        }
        let claims = jwt.claims.as_object().ok_or(("the token's claims are not a JSON object".to_owned(), None))?;
        let subject = claims.get("sub").and_then(|s| s.as_str()).map(str::to_owned);
        let now = seconds(Timestamp::now());
        let accepted = claims::check(&role, claims, now).map_err(|why| (why, subject))?;
        Ok((role, accepted))
    }

    /// `auth/token/renew-self`: moves the caller's token's expiry to `increment` seconds from
    /// now (by default the lifetime it was issued with), never past the maximum its login set.
    /// Only tokens from a login can be renewed.
    pub async fn renew_self(&self, caller: &Caller, increment: Option<i64>) -> Result<(TokenView, i64), CoreError> {
        let id = caller.principal.token_id;
        let res = format!("token:{id}");
        let prepared = async {
            let row = self.store().token(id).await?.ok_or_else(|| CoreError::NotFound(format!("token {id}")))?;
            let (Some(max), Some(expires)) = (row.max_expires_at, row.expires_at) else {
                return Err(CoreError::BadRequest(
                    "this token cannot be renewed: only tokens from a login can (create another one)".into(),
                ));
            };
            let lifetime = increment.unwrap_or(seconds(expires) - seconds(row.created_at));
            if lifetime <= 0 {
                return Err(CoreError::BadRequest("the increment must be positive".into()));
            }
            let now = Timestamp::now();
            let wanted = now.add_seconds(lifetime.min(86_400));
            let new = if wanted > max { max } else { wanted };
            if new <= now {
                return Err(CoreError::BadRequest("this token is at the end of its maximum lifetime".into()));
            }
            let renewed = TokenRow { expires_at: Some(new), ..row };
            let mac = token_mac(self.integrity(), &renewed);
            Ok((renewed, mac, seconds(new) - seconds(now)))
        }
        .await;
        let (row, mac, ttl) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::TokenRenew, &res, Err(e)).await,
        };
        let expires_at = row.expires_at.expect("set above");
        let detail = format!("expires_at={expires_at}; max_expires_at={}", row.max_expires_at.expect("checked above"));
        self.commit(caller, AuditAction::TokenRenew, &res, WriteOp::RenewToken { id, expires_at, mac }, &detail)
            .await?;
        self.forget_token(id);
        Ok((TokenView::from(row), ttl))
    }

    /// `auth/token/revoke-self`: the caller gives up its token.
    pub async fn revoke_self(&self, caller: &Caller) -> Result<(), CoreError> {
        let id = caller.principal.token_id;
        let res = format!("token:{id}");
        let at = Timestamp::now();
        let row = match self.store().token(id).await {
            Ok(Some(row)) if row.revoked_at.is_none() => row,
            Ok(_) => {
                let e = CoreError::NotFound(format!("active token {id}"));
                return self.finish(caller, AuditAction::TokenRevokeSelf, &res, Err(e)).await;
            }
            Err(e) => return self.finish(caller, AuditAction::TokenRevokeSelf, &res, Err(e.into())).await,
        };
        let mac = token_mac(self.integrity(), &TokenRow { revoked_at: Some(at), ..row });
        let result =
            self.commit(caller, AuditAction::TokenRevokeSelf, &res, WriteOp::RevokeToken { id, at, mac }, "").await;
        self.forget_token(id);
        result
    }
}
