//! `/v1/jwt-roles`: the auth roles that let workloads log in with a JWT (operators write them,
//! auditors read them). The login itself is Vault's `auth/jwt/login` (`vault_api::auth`).

use axum::extract::{Path, State};
use axum::Json;
use rekey_core::workloads::{JwtRoleSpec, JwtRoleView};
use rekey_types::AuditAction;
use serde::Serialize;
use utoipa::IntoParams;

use crate::extract::{body_bytes, parse_json, RawBody, ReqCtx};
use crate::routes::{audit_resource, core, ApiResult, AppState};

/// `{name}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documentation only
pub(crate) struct RolePath {
    /// The role's name: 1 to 64 of `a-z`, `0-9`, `-`, `_`.
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    name: String,
}

/// An auth role deleted.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RoleDeleted {
    /// Its name.
    deleted: String,
}

#[utoipa::path(
    get,
    path = "/v1/jwt-roles",
    operation_id = "list_jwt_roles",
    tag = "workloads",
    summary = "List the auth roles workloads log in with",
    responses((status = 200, description = "OK", body = Vec<JwtRoleView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn list(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<Vec<JwtRoleView>>> {
    let session = s.session(&ctx, AuditAction::AuthRoleRead, String::new()).await?;
    Ok(Json(session.vault.list_auth_roles(&session.caller).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    get,
    path = "/v1/jwt-roles/{name}",
    operation_id = "show_jwt_role",
    tag = "workloads",
    summary = "Show an auth role",
    params(RolePath),
    responses((status = 200, description = "OK", body = JwtRoleView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn show(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(name): Path<String>,
) -> ApiResult<Json<JwtRoleView>> {
    let session = s.session(&ctx, AuditAction::AuthRoleRead, audit_resource(&format!("auth-role:{name}"))).await?;
    Ok(Json(session.vault.show_auth_role(&session.caller, &name).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    put,
    path = "/v1/jwt-roles/{name}",
    operation_id = "put_jwt_role",
    tag = "workloads",
    summary = "Write an auth role: which issuer's JWTs a workload may log in with, and what a login grants",
    params(RolePath),
    request_body = JwtRoleSpec,
    responses((status = 200, description = "OK", body = JwtRoleView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn put(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(name): Path<String>,
    body: RawBody,
) -> ApiResult<Json<JwtRoleView>> {
    let session = s.session(&ctx, AuditAction::AuthRolePut, audit_resource(&format!("auth-role:{name}"))).await?;
    let spec = session.input(body_bytes(body, ctx.request_id).and_then(|b| parse_json(&b, ctx.request_id))).await?;
    Ok(Json(session.vault.put_auth_role(&session.caller, &name, spec).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    delete,
    path = "/v1/jwt-roles/{name}",
    operation_id = "delete_jwt_role",
    tag = "workloads",
    summary = "Delete an auth role (tokens it granted live until they expire)",
    params(RolePath),
    responses((status = 200, description = "OK", body = RoleDeleted), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn delete(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(name): Path<String>,
) -> ApiResult<Json<RoleDeleted>> {
    let session = s.session(&ctx, AuditAction::AuthRoleDelete, audit_resource(&format!("auth-role:{name}"))).await?;
    session.vault.delete_auth_role(&session.caller, &name).await.map_err(core(&ctx))?;
    Ok(Json(RoleDeleted { deleted: name }))
}
