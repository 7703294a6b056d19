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
use crate::routes::{audit_resource, core, cred_ref, name_error, no_store, query, ApiResult};
use crate::state::AppState;
use crate::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    kind: String,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    secret: Option<SecretText>,
    #[serde(default)]
    secret_base64: Option<SecretText>,
    #[serde(default)]
    certificate_pem: Option<String>,
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

pub(crate) async fn show_credential(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<CredentialView>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredShow, &tenant, &name).await?;
    Ok(Json(session.vault.show_credential(&session.caller, &cref).await.map_err(core(&ctx))?))
}

pub(crate) async fn delete_credential(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredDelete, &tenant, &name).await?;
    session.vault.delete_credential(&session.caller, &cref).await.map_err(core(&ctx))?;
    Ok(Json(serde_json::json!({ "deleted": cref.to_string() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevealQuery {
    version: Option<u32>,
}

#[derive(Serialize)]
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

pub(crate) async fn reveal(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
    q: Result<Query<RevealQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let resource = audit_resource(&format!("{tenant}/{name}"));
    let session = s.session(&ctx, AuditAction::CredReveal, resource).await?;
    let parsed = (|| Ok((cred_ref(&tenant, &name, &ctx)?, query(q, &ctx)?.version)))();
    let (cref, version) = session.input(parsed).await?;
    let revealed = session.vault.reveal(&session.caller, &cref, version).await.map_err(core(&ctx))?;
    let text = std::str::from_utf8(revealed.secret.expose()).ok();
    let b64 = match text {
        Some(_) => None,
        None => Some(Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(revealed.secret.expose()))),
    };
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListCredentialsQuery {
    tenant: Option<String>,
    kind: Option<String>,
    region: Option<String>,
    /// `tenant/name` to continue after.
    after: Option<String>,
    limit: Option<u32>,
}

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
        Ok((tenant, kind, region, after, q.limit.unwrap_or(1000)))
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

pub(crate) async fn versions(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<VersionView>>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredVersions, &tenant, &name).await?;
    Ok(Json(session.vault.versions(&session.caller, &cref).await.map_err(core(&ctx))?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    to: u32,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetargetBody {
    #[serde(default)]
    set: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    unset: Vec<String>,
}

/// Sends the current secret to another target (an operator's act): a new version with the
/// changed fields and the same secret.
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

pub(crate) async fn promote(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<CredentialView>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredPromote, &tenant, &name).await?;
    Ok(Json(session.vault.promote(&session.caller, &cref).await.map_err(core(&ctx))?))
}

pub(crate) async fn verify(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<rekey_core::connectors::HealthView>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredVerify, &tenant, &name).await?;
    Ok(Json(session.vault.verify_credential(&session.caller, &cref).await.map_err(core(&ctx))?))
}

pub(crate) async fn rotate(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<rekey_core::connectors::RotationView>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredRotateStart, &tenant, &name).await?;
    Ok(Json(session.vault.rotate_credential(&session.caller, &cref).await.map_err(core(&ctx))?))
}

pub(crate) async fn rotations(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<rekey_core::connectors::RotationView>>> {
    let (session, cref) = s.credential_session(&ctx, AuditAction::CredRotations, &tenant, &name).await?;
    Ok(Json(session.vault.rotations(&session.caller, &cref).await.map_err(core(&ctx))?))
}
