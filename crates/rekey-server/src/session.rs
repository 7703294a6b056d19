//! One way into the core per request. [`AppState::session`] takes the open vault once,
//! authenticates the caller (or takes the one the guard authenticated before reading a body),
//! and remembers the action and resource, so that a failure to parse the input is audited under
//! them ([`Session::input`]) before the handler calls its one use case on [`Session::vault`].

use std::sync::Arc;

use rekey_core::{Caller, Vault};
use rekey_types::{AuditAction, CredRef, RequestId};

use crate::extract::ReqCtx;
use crate::routes::{audit_resource, core, cred_ref, ApiResult};
use crate::state::AppState;
use crate::ApiError;

/// An authenticated request on its way into the core.
pub(crate) struct Session {
    pub vault: Arc<Vault>,
    pub caller: Caller,
    action: AuditAction,
    resource: String,
    request_id: RequestId,
}

impl AppState {
    /// The open vault (`503 sealed` otherwise) and the authenticated caller; every refusal is
    /// audited under `action` and `resource`.
    pub(crate) async fn session(&self, ctx: &ReqCtx, action: AuditAction, resource: String) -> ApiResult<Session> {
        // Authenticated already, before its body was read (see `guard`): the same vault.
        if let Some(a) = &ctx.authenticated {
            let (vault, caller) = (a.vault.clone(), a.caller.clone());
            return Ok(Session { vault, caller, action, resource, request_id: ctx.request_id });
        }
        let vault = self.keeper.vault().map_err(core(ctx))?;
        let caller = vault
            .authenticate(ctx.bearer.as_deref().map(String::as_str), ctx.source, ctx.request_id, action, &resource)
            .await
            .map_err(core(ctx))?;
        Ok(Session { vault, caller, action, resource, request_id: ctx.request_id })
    }

    /// The session of a request about the credential `tenant/name` (the resource it is audited
    /// under), and the reference, parsed: a bad name is audited as a rejection.
    pub(crate) async fn credential_session(
        &self,
        ctx: &ReqCtx,
        action: AuditAction,
        tenant: &str,
        name: &str,
    ) -> ApiResult<(Session, CredRef)> {
        let session = self.session(ctx, action, audit_resource(&format!("{tenant}/{name}"))).await?;
        let cref = session.input(cred_ref(tenant, name, ctx)).await?;
        Ok((session, cref))
    }
}

impl Session {
    /// Passes parsed input through; a failure is audited first (and if that cannot be, the
    /// request fails as the audit log's failure).
    pub(crate) async fn input<T>(&self, parsed: ApiResult<T>) -> ApiResult<T> {
        let Err(e) = parsed else { return parsed };
        match self.vault.record_rejection(&self.caller, self.action, &self.resource, e.code).await {
            Ok(()) => Err(e),
            Err(audit) => Err(ApiError::from_core(audit, self.request_id)),
        }
    }
}
