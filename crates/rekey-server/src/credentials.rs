//! Handlers for a tenant's credentials: put, show, delete, reveal, versions, rollback, promote,
//! retarget, verify, rotate, rotations, and the listing across tenants.

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use rekey_core::credentials::{PutInput, PutSecret};
use rekey_core::import::SecretText;
use rekey_core::views::*;
use rekey_types::{AuditAction, CredRef, CredentialKind, ErrorCode, Region, Secret, TenantName};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::extract::{body_bytes, parse_json, RawBody, ReqCtx};
use crate::routes::{audit_resource, core, cred_ref, name_error, no_store, page, query, ApiResult};
use crate::state::AppState;
use crate::ApiError;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PutBody {
    #[schema(value_type = CredentialKind)]
    kind: String,
    /// The target, as the kind takes it (docs/connectors.md): checked against the kind's
    /// fields and their syntax, which this document does not repeat.
    #[serde(default)]
    fields: BTreeMap<String, String>,
    /// Free labels (docs/cli.md).
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// The secret, when it is UTF-8 text.
    #[serde(default)]
    secret: Option<SecretText>,
    /// The secret, base64, when it is not.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::secret_base64)]
    secret_base64: Option<SecretText>,
    /// An `entra-app` credential's certificate (PEM), with its private key.
    #[serde(default)]
    certificate_pem: Option<String>,
    /// The certificate's private key (PEM).
    #[serde(default)]
    private_key_pem: Option<SecretText>,
}

impl PutBody {
    fn into_input(self, ctx: &ReqCtx) -> ApiResult<PutInput> {
        let kind = CredentialKind::from_str(&self.kind)
            .map_err(|e| ApiError::new(ErrorCode::InvalidField, e.to_string(), ctx.request_id))?;
        let secret = match (self.secret, self.secret_base64, self.certificate_pem, self.private_key_pem) {
            (Some(s), None, None, None) => PutSecret::Opaque(Secret::new(s.expose().as_bytes().to_vec())),
            (None, Some(b), None, None) => PutSecret::Opaque(Secret::new(
                base64::engine::general_purpose::STANDARD.decode(b.expose().as_bytes()).map_err(|_| {
                    ApiError::new(ErrorCode::BadRequest, "secret_base64 is not valid base64", ctx.request_id)
                })?,
            )),
            (None, None, Some(cert_pem), Some(key)) => {
                PutSecret::Certificate { cert_pem, key_pem: Secret::new(key.expose().as_bytes().to_vec()) }
            }
            _ => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "give exactly one of: secret, secret_base64, or certificate_pem with private_key_pem",
                    ctx.request_id,
                ))
            }
        };
        Ok(PutInput { kind, fields: self.fields, labels: self.labels, secret })
    }
}

#[utoipa::path(
    put,
    path = "/v1/tenants/{tenant}/credentials/{name}",
    tag = "credentials",
    summary = "Store a new version of a credential (creates it if new)",
    params(crate::openapi::CredentialPath),
    request_body = PutBody,
    responses((status = 200, description = "OK", body = CredentialView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "tenant-admin"])))
)]
pub(crate) async fn put_credential(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
    body: RawBody,
) -> ApiResult<Json<CredentialView>> {
    let resource = audit_resource(&format!("{tenant}/{name}"));
    let session = s.session(&ctx, AuditAction::CredPut, resource).await?;
    let parsed = (|| {
        let cref = cred_ref(&tenant, &name, &ctx)?;
        let b: PutBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        Ok((cref, b.into_input(&ctx)?))
    })();
    let (cref, input) = session.input(parsed).await?;
    Ok(Json(session.vault.put_credential(&session.caller, &cref, input).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/credentials/{name}",
    tag = "credentials",
    summary = "Show a credential's metadata (never the secret)",
    params(crate::openapi::CredentialPath),
    responses((status = 200, description = "OK", body = CredentialView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor", "tenant-admin"])))
)]
pub(crate) async fn show_credential(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<CredentialView>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredShow, &tenant, &name).await?;
    Ok(Json(session.vault.show_credential(&session.caller, &cref).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/credentials/{name}",
    tag = "credentials",
    summary = "Delete a credential (its versions stay, unreadable)",
    params(crate::openapi::CredentialPath),
    responses((status = 200, description = "OK", body = crate::answers::Deleted), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn delete_credential(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<crate::answers::Deleted>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredDelete, &tenant, &name).await?;
    session.vault.delete_credential(&session.caller, &cref).await.map_err(core(&ctx))?;
    Ok(Json(crate::answers::Deleted { deleted: cref.to_string() }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevealQuery {
    /// A version other than the current one (operators only).
    #[param(minimum = 1)]
    version: Option<u32>,
}

/// A revealed secret: `secret` when it is UTF-8 text, `secret_base64` otherwise.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Revealed)]
struct RevealBody<'a> {
    tenant: &'a str,
    name: &'a str,
    kind: CredentialKind,
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_base64: Option<&'a str>,
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/credentials/{name}/reveal",
    operation_id = "reveal",
    tag = "credentials",
    summary = "Reveal the secret; audited before it leaves",
    params(crate::openapi::CredentialPath, RevealQuery),
    responses((status = 200, description = "OK", body = RevealBody), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "connector"])))
)]
pub(crate) async fn reveal(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
    q: Result<Query<RevealQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let revealed = reveal_for(&s, &ctx, &tenant, &name, || Ok(query(q, &ctx)?.version)).await?;
    let (text, b64) = secret_text(&revealed.secret);
    let body = RevealBody {
        tenant: &revealed.tenant,
        name: &revealed.name,
        kind: revealed.kind,
        version: revealed.version,
        secret: text,
        secret_base64: b64.as_deref().map(String::as_str),
    };
    let json =
        serde_json::to_vec(&body).map_err(|_| ApiError::new(ErrorCode::Internal, "encoding failed", ctx.request_id))?;
    Ok(no_store(([(header::CONTENT_TYPE, "application/json")], json).into_response()))
}

/// A reveal, whichever route asked (the native reveal, the Vault-compatible read): the session
/// under `cred.reveal`, the name and the version parsed (a failure audited as the reveal's), the
/// one use case.
pub(crate) async fn reveal_for(
    s: &AppState,
    ctx: &ReqCtx,
    tenant: &str,
    name: &str,
    version: impl FnOnce() -> ApiResult<Option<u32>>,
) -> ApiResult<rekey_core::views::Revealed> {
    let session = s.session(ctx, AuditAction::CredReveal, audit_resource(&format!("{tenant}/{name}"))).await?;
    let parsed = (|| Ok((cred_ref(tenant, name, ctx)?, version()?)))();
    let (cref, version) = session.input(parsed).await?;
    session.vault.reveal(&session.caller, &cref, version).await.map_err(core(ctx))
}

/// A secret as an answer carries it: as text when it is UTF-8, else as base64 (zeroized on drop).
pub(crate) fn secret_text(secret: &rekey_types::Secret) -> (Option<&str>, Option<Zeroizing<String>>) {
    match std::str::from_utf8(secret.expose()) {
        Ok(text) => (Some(text), None),
        Err(_) => (None, Some(Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(secret.expose())))),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListCredentialsQuery {
    /// Only this tenant's.
    #[param(value_type = Option<TenantName>)]
    tenant: Option<String>,
    /// Only this kind.
    #[param(value_type = Option<CredentialKind>)]
    kind: Option<String>,
    /// Only this region's.
    #[param(value_type = Option<Region>)]
    region: Option<String>,
    /// `tenant/name` to continue after.
    #[param(value_type = Option<CredRef>)]
    after: Option<String>,
    /// Credentials per page, 1 to 10,000; default 1,000.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/credentials",
    tag = "credentials",
    summary = "List credentials, by tenant and name",
    params(ListCredentialsQuery),
    responses((status = 200, description = "OK", body = Vec<CredentialView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor", "tenant-admin"])))
)]
pub(crate) async fn list_credentials(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<ListCredentialsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<CredentialView>>> {
    let session = s.session(&ctx, AuditAction::CredList, String::new()).await?;
    let parsed = (|| {
        let q = query(q, &ctx)?;
        let tenant = q.tenant.as_deref().map(TenantName::parse).transpose().map_err(name_error(&ctx))?;
        let kind = q
            .kind
            .as_deref()
            .map(CredentialKind::from_str)
            .transpose()
            .map_err(|e| ApiError::new(ErrorCode::InvalidField, e.to_string(), ctx.request_id))?;
        let region = q.region.as_deref().map(Region::parse).transpose().map_err(name_error(&ctx))?;
        let after = q.after.as_deref().map(CredRef::parse).transpose().map_err(name_error(&ctx))?;
        Ok((tenant, kind, region, after, page("limit", q.limit, 1000, &ctx)?))
    })();
    let (tenant, kind, region, after, limit) = session.input(parsed).await?;
    Ok(Json(
        session
            .vault
            .list_credentials(&session.caller, tenant, kind, region, after, limit)
            .await
            .map_err(core(&ctx))?,
    ))
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/credentials/{name}/versions",
    operation_id = "list_versions",
    tag = "credentials",
    summary = "List versions",
    params(crate::openapi::CredentialPath),
    responses((status = 200, description = "OK", body = Vec<VersionView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor", "tenant-admin"])))
)]
pub(crate) async fn versions(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<VersionView>>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredVersions, &tenant, &name).await?;
    Ok(Json(session.vault.versions(&session.caller, &cref).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// The version whose secret and target become current again.
    #[serde(deserialize_with = "crate::extract::whole_number")]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    to: u32,
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/credentials/{name}/rollback",
    operation_id = "rollback",
    tag = "credentials",
    summary = "Make an old version current again, as a new version",
    params(crate::openapi::CredentialPath),
    request_body = RollbackBody,
    responses((status = 200, description = "OK", body = CredentialView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "tenant-admin"])))
)]
pub(crate) async fn rollback(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
    body: RawBody,
) -> ApiResult<Json<CredentialView>> {
    let resource = audit_resource(&format!("{tenant}/{name}"));
    let session = s.session(&ctx, AuditAction::CredRollback, resource).await?;
    let parsed = (|| {
        let cref = cred_ref(&tenant, &name, &ctx)?;
        let b: RollbackBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        Ok((cref, b.to))
    })();
    let (cref, to) = session.input(parsed).await?;
    Ok(Json(session.vault.rollback(&session.caller, &cref, to).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RetargetBody {
    /// Fields to set, as the kind takes them (docs/connectors.md).
    #[serde(default)]
    set: std::collections::BTreeMap<String, String>,
    /// Fields to remove.
    #[serde(default)]
    unset: Vec<String>,
}

/// Sends the current secret to another target (an operator's act): a new version with the
/// changed fields and the same secret.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/credentials/{name}/retarget",
    operation_id = "retarget",
    tag = "credentials",
    summary = "Send the current secret to another target",
    params(crate::openapi::CredentialPath),
    request_body = RetargetBody,
    responses((status = 200, description = "OK", body = CredentialView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn retarget(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
    body: RawBody,
) -> ApiResult<Json<CredentialView>> {
    let resource = audit_resource(&format!("{tenant}/{name}"));
    let session = s.session(&ctx, AuditAction::CredRetarget, resource).await?;
    let parsed = (|| {
        let cref = cred_ref(&tenant, &name, &ctx)?;
        let b: RetargetBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        Ok((cref, b))
    })();
    let (cref, b) = session.input(parsed).await?;
    Ok(Json(session.vault.retarget(&session.caller, &cref, b.set, b.unset).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/credentials/{name}/promote",
    operation_id = "promote_version",
    tag = "credentials",
    summary = "Make the pending version current",
    params(crate::openapi::CredentialPath),
    responses((status = 200, description = "OK", body = CredentialView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "tenant-admin"])))
)]
pub(crate) async fn promote(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<CredentialView>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredPromote, &tenant, &name).await?;
    Ok(Json(session.vault.promote(&session.caller, &cref).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/credentials/{name}/verify",
    operation_id = "verify_credential",
    tag = "credentials",
    summary = "Check the current version against its target (the secret stays in the server)",
    params(crate::openapi::CredentialPath),
    responses((status = 200, description = "OK", body = rekey_core::connectors::HealthView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "tenant-admin"])))
)]
pub(crate) async fn verify(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<rekey_core::connectors::HealthView>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredVerify, &tenant, &name).await?;
    Ok(Json(session.vault.verify_credential(&session.caller, &cref).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/credentials/{name}/rotate",
    operation_id = "rotate_credential",
    tag = "credentials",
    summary = "Rotate at the target: pending, applied, verified, promoted",
    params(crate::openapi::CredentialPath),
    responses((status = 200, description = "OK", body = rekey_core::connectors::RotationView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "tenant-admin"])))
)]
pub(crate) async fn rotate(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<rekey_core::connectors::RotationView>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredRotateStart, &tenant, &name).await?;
    Ok(Json(session.vault.rotate_credential(&session.caller, &cref).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/credentials/{name}/rotations",
    operation_id = "list_rotations",
    tag = "credentials",
    summary = "The credential's rotations, newest first",
    params(crate::openapi::CredentialPath),
    responses((status = 200, description = "OK", body = Vec<rekey_core::connectors::RotationView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor", "tenant-admin"])))
)]
pub(crate) async fn rotations(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<rekey_core::connectors::RotationView>>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredRotations, &tenant, &name).await?;
    Ok(Json(session.vault.rotations(&session.caller, &cref).await.map_err(core(&ctx))?))
}
