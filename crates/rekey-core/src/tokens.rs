//! API tokens: create (shown once), list, revoke.

use ipnet::IpNet;
use rekey_crypto::token::{self, IssuedToken};
use rekey_store::{TokenRow, WriteOp};
use rekey_types::{AuditAction, CredentialName, Role, TenantName, Timestamp, TokenId};

use crate::kernel::policy::Action;
use crate::views::TokenView;
use crate::{Caller, CoreError, Vault};

/// Lifetime of a static token created without `--ttl`: a day. Static tokens are for bootstrap
/// and break-glass; workloads log in with a JWT for a token of minutes (`workloads`).
pub const DEFAULT_TTL_SECS: i64 = 86_400;

/// When a token expires.
pub enum Expiry {
    /// This many seconds after it is created.
    After(i64),
    /// Never (`rekey token create` warns).
    Never,
}

/// The longest token description, in characters.
pub const MAX_DESCRIPTION: usize = 256;

/// Most CIDRs a token may be bound to.
pub const MAX_CIDRS: usize = 64;

/// `token create`: what the token may do, where, and for how long.
pub struct TokenSpec {
    /// Its role.
    pub role: Role,
    /// Its tenant: required for `tenant-admin` and `connector`, refused for the others.
    pub tenant: Option<TenantName>,
    /// What a `connector` token may reveal (at least one); none for the others.
    pub credentials: Vec<CredentialName>,
    /// Where it may be used from (empty: anywhere).
    pub cidrs: Vec<IpNet>,
    /// When it expires.
    pub expiry: Expiry,
    /// What it is for.
    pub description: String,
}

impl Vault {
    /// `token create`: the token's view and its secret, which is shown once and stored only as a hash.
    pub async fn create_token(&self, caller: &Caller, spec: TokenSpec) -> Result<(TokenView, IssuedToken), CoreError> {
        let resource = spec.tenant.as_ref().map(|t| t.to_string()).unwrap_or_default();
        let prepared = async {
            self.authorize(caller, Action::ManageTokens, "tokens")?;
            let needs_tenant = matches!(spec.role, Role::Connector | Role::TenantAdmin);
            if needs_tenant != spec.tenant.is_some() {
                return Err(CoreError::BadRequest(if needs_tenant {
                    format!("a {} token needs --tenant", spec.role)
                } else {
                    format!("a {} token is not scoped to a tenant; drop --tenant", spec.role)
                }));
            }
            if (spec.role == Role::Connector) == spec.credentials.is_empty() {
                return Err(CoreError::BadRequest(if spec.role == Role::Connector {
                    "a connector token needs at least one --cred it may reveal".into()
                } else {
                    format!("only connector tokens are bound to credentials, not {}", spec.role)
                }));
            }
            rekey_types::text::text("the description", &spec.description, MAX_DESCRIPTION)
                .map_err(|e| CoreError::BadRequest(e.to_string()))?;
            if spec.cidrs.len() > MAX_CIDRS {
                return Err(CoreError::BadRequest(format!("at most {MAX_CIDRS} CIDRs")));
            }
            let tenant = match &spec.tenant {
                Some(t) => Some(self.tenant(t).await?),
                None => None,
            };
            if let Some(t) = &tenant {
                for c in &spec.credentials {
                    if self.store().credential(t.id, c.as_str()).await?.is_none() {
                        return Err(CoreError::NotFound(format!("credential {}/{c}", t.name)));
                    }
                }
            }
            let now = Timestamp::now();
            let expires_at = match spec.expiry {
                Expiry::After(secs) if secs > 0 => Some(now.add_seconds(secs)),
                Expiry::After(_) => return Err(CoreError::BadRequest("the ttl must be positive".into())),
                Expiry::Never => None,
            };
            let issued = token::issue().map_err(CoreError::Crypto)?;
            let row = TokenRow {
                id: issued.id,
                hash: issued.hash.to_vec(),
                role: spec.role,
                tenant_id: tenant.as_ref().map(|t| t.id),
                tenant_name: tenant.as_ref().map(|t| t.name.clone()),
                bound: spec.credentials.iter().map(|c| c.to_string()).collect(),
                cidrs: spec.cidrs.iter().map(|c| c.to_string()).collect(),
                description: spec.description.clone(),
                created_by: caller.principal.audit_name(),
                created_at: now,
                expires_at,
                max_expires_at: None,
                revoked_at: None,
                mac: None,
            };
            let row = TokenRow { mac: Some(crate::kernel::integrity::token_mac(self.integrity(), &row)), ..row };
            Ok((row, issued))
        }
        .await;
        let (row, issued) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::TokenCreate, &resource, Err(e)).await,
        };
        let view = TokenView::from(row.clone());
        let detail = format!("token={}; role={}", row.id, row.role);
        self.commit(caller, AuditAction::TokenCreate, &resource, WriteOp::CreateToken(row), &detail).await?;
        Ok((view, issued))
    }

    /// `token list`: every token, never a secret.
    pub async fn list_tokens(&self, caller: &Caller) -> Result<Vec<TokenView>, CoreError> {
        let result = async {
            self.authorize(caller, Action::ListTokens, "tokens")?;
            Ok(self.store().list_tokens().await?.into_iter().map(TokenView::from).collect())
        }
        .await;
        self.finish(caller, AuditAction::TokenList, "", result).await
    }

    /// What the caller's own token may do and until when (Vault's `auth/token/lookup-self`).
    /// Every token may read itself; audited.
    pub async fn lookup_self(&self, caller: &Caller) -> Result<TokenView, CoreError> {
        let id = caller.principal.token_id;
        let result = async {
            let row = self.store().token(id).await?.ok_or_else(|| CoreError::NotFound(format!("token {id}")))?;
            Ok(TokenView::from(row))
        }
        .await;
        self.finish(caller, AuditAction::TokenLookupSelf, &format!("token:{id}"), result).await
    }

    /// Records that the caller read the Vault-compatible mount table, which any token may read
    /// (it names one mount, nothing stored).
    pub async fn read_mounts(&self, caller: &Caller) -> Result<(), CoreError> {
        self.finish(caller, AuditAction::SysMounts, "", Ok(())).await
    }

    /// `token revoke`.
    pub async fn revoke_token(&self, caller: &Caller, id: TokenId) -> Result<(), CoreError> {
        let resource = format!("token:{id}");
        if let Err(e) = self.authorize(caller, Action::ManageTokens, "tokens") {
            return self.finish(caller, AuditAction::TokenRevoke, &resource, Err(e)).await;
        }
        let at = Timestamp::now();
        let row = match self.store().token(id).await {
            Ok(Some(row)) if row.revoked_at.is_none() => row,
            Ok(_) => {
                let err = CoreError::NotFound(format!("active token {id}"));
                return self.finish(caller, AuditAction::TokenRevoke, &resource, Err(err)).await;
            }
            Err(e) => return self.finish(caller, AuditAction::TokenRevoke, &resource, Err(e.into())).await,
        };
        let mac = crate::kernel::integrity::token_mac(self.integrity(), &TokenRow { revoked_at: Some(at), ..row });
        let result =
            self.commit(caller, AuditAction::TokenRevoke, &resource, WriteOp::RevokeToken { id, at, mac }, "").await;
        self.forget_token(id);
        result
    }
}
