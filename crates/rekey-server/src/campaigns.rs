//! Campaign routes: start, list, status, items, waive, hand out a reset link, report.

use std::str::FromStr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rekey_core::campaigns::{CampaignStatus, CampaignView, ItemView, LinkView, StartCampaign};
use rekey_store::ItemFilter;
use rekey_types::{AuditAction, CampaignId, CredRef, ErrorCode, IncidentId, ItemState, TenantName};
use serde::Deserialize;

use crate::extract::{body_bytes, parse_json, RawBody, ReqCtx};
use crate::routes::{audit_resource, core, query, ApiResult, AppState};
use crate::ApiError;

fn campaign_id(id: &str, ctx: &ReqCtx) -> ApiResult<CampaignId> {
    CampaignId::from_str(id)
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, "a campaign id is a UUID", ctx.request_id))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// The open incident whose credentials to rotate.
    #[schema(value_type = IncidentId)]
    incident: String,
    /// From now, 60 seconds to 365 days, e.g. `7d` (the default), `36h`.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::duration)]
    deadline: Option<String>,
    /// Channels to notify tenants by, each configured on the server.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::channels)]
    notify: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/v1/campaigns",
    operation_id = "start_campaign",
    tag = "campaigns",
    summary = "Start a rotation campaign for an open incident: one item per credential in scope",
    request_body = StartBody,
    responses((status = 200, description = "OK", body = CampaignView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn start(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Json<CampaignView>> {
    let session = s.session(&ctx, AuditAction::CampaignStart, String::new()).await?;
    let parsed = (|| {
        let b: StartBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        let bad = |m: String| ApiError::new(ErrorCode::BadRequest, m, ctx.request_id);
        let incident =
            IncidentId::from_str(&b.incident).map_err(|_| bad("incident: an incident id is a UUID".into()))?;
        let deadline_secs = b
            .deadline
            .as_deref()
            .map(|d| {
                rekey_types::time::parse_duration_secs(d)
                    .map_err(|e| bad(format!("deadline: {e}")))
                    .and_then(|s| u64::try_from(s).map_err(|_| bad("deadline: must be in the future".into())))
            })
            .transpose()?;
        Ok(StartCampaign { incident, deadline_secs, notify: b.notify })
    })();
    let input = session.input(parsed).await?;
    Ok(Json(session.vault.start_campaign(&session.caller, input).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    get,
    path = "/v1/campaigns",
    operation_id = "list_campaigns",
    tag = "campaigns",
    summary = "List campaigns, newest first",
    responses((status = 200, description = "OK", body = Vec<CampaignView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn list(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<Vec<CampaignView>>> {
    let session = s.session(&ctx, AuditAction::CampaignList, String::new()).await?;
    Ok(Json(session.vault.list_campaigns(&session.caller).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}",
    operation_id = "campaign_status",
    tag = "campaigns",
    summary = "A campaign's progress: items by state, overall and per tenant; notices",
    params(crate::openapi::IdPath),
    responses((status = 200, description = "OK", body = CampaignStatus), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn status(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<Json<CampaignStatus>> {
    let resource = audit_resource(&format!("campaign:{id}"));
    let session = s.session(&ctx, AuditAction::CampaignStatus, resource).await?;
    let id = session.input(campaign_id(&id, &ctx)).await?;
    Ok(Json(session.vault.campaign_status(&session.caller, id).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ItemsQuery {
    /// Only this tenant's items.
    #[param(value_type = Option<TenantName>)]
    tenant: Option<String>,
    /// Only items in this state.
    #[param(value_type = Option<ItemState>)]
    state: Option<String>,
    /// `tenant/name`: items after this one.
    #[param(value_type = Option<CredRef>)]
    after: Option<String>,
    /// Items per page, 1 to 10,000; default 1,000.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/items",
    operation_id = "campaign_items",
    tag = "campaigns",
    summary = "A campaign's items",
    params(crate::openapi::IdPath, ItemsQuery),
    responses((status = 200, description = "OK", body = Vec<ItemView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn items(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
    q: Result<Query<ItemsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<ItemView>>> {
    let resource = audit_resource(&format!("campaign:{id}"));
    let session = s.session(&ctx, AuditAction::CampaignItems, resource).await?;
    let parsed = (|| {
        let q = query(q, &ctx)?;
        let bad = |m: String| ApiError::new(ErrorCode::BadRequest, m, ctx.request_id);
        let after = q
            .after
            .as_deref()
            .map(CredRef::parse)
            .transpose()
            .map_err(|e| bad(format!("after: {e}")))?
            .map(|c| (c.tenant.to_string(), c.name.to_string()));
        let tenant = q.tenant.as_deref().map(TenantName::parse).transpose().map_err(|e| bad(format!("tenant: {e}")))?;
        let filter = ItemFilter {
            tenant: tenant.map(|t| t.to_string()),
            state: q
                .state
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e: rekey_types::UnknownState| bad(format!("state: {e}")))?,
            after,
            limit: crate::routes::page("limit", q.limit, 1000, &ctx)?,
        };
        Ok((campaign_id(&id, &ctx)?, filter))
    })();
    let (id, filter) = session.input(parsed).await?;
    Ok(Json(session.vault.campaign_items(&session.caller, id, filter).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WaiveBody {
    /// The item's credential, `tenant/name`.
    #[schema(value_type = CredRef)]
    credential: String,
    /// Why it is not rotated: one line, 1 to 500 characters.
    #[schema(schema_with = crate::openapi::reason)]
    reason: String,
}

#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/waive",
    operation_id = "waive_item",
    tag = "campaigns",
    summary = "Waive an item: it will not be rotated, for the reason given",
    params(crate::openapi::IdPath),
    request_body = WaiveBody,
    responses((status = 200, description = "OK", body = ItemView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn waive(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
    body: RawBody,
) -> ApiResult<Json<ItemView>> {
    let resource = audit_resource(&format!("campaign:{id}"));
    let session = s.session(&ctx, AuditAction::CampaignItemWaive, resource).await?;
    let parsed = (|| {
        let b: WaiveBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        let cref = CredRef::parse(&b.credential)
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("credential: {e}"), ctx.request_id))?;
        Ok((campaign_id(&id, &ctx)?, cref, b.reason))
    })();
    let (id, cref, reason) = session.input(parsed).await?;
    Ok(Json(session.vault.waive_item(&session.caller, id, &cref, &reason).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    /// The tenant whose self-service items the link resets.
    #[schema(value_type = TenantName)]
    tenant: String,
}

#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/links",
    operation_id = "issue_link",
    tag = "campaigns",
    summary = "A single-use reset link for one tenant's self-service items",
    params(crate::openapi::IdPath),
    request_body = LinkBody,
    responses((status = 200, description = "OK", body = LinkView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn link(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
    body: RawBody,
) -> ApiResult<Json<LinkView>> {
    let resource = audit_resource(&format!("campaign:{id}"));
    let session = s.session(&ctx, AuditAction::CampaignLinkIssue, resource).await?;
    let parsed = (|| {
        let b: LinkBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        let tenant = TenantName::parse(&b.tenant)
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("tenant: {e}"), ctx.request_id))?;
        Ok((campaign_id(&id, &ctx)?, tenant))
    })();
    let (id, tenant) = session.input(parsed).await?;
    Ok(Json(session.vault.issue_reset_link(&session.caller, id, &tenant).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    /// `json` (default), `csv` or `html`.
    #[param(schema_with = crate::openapi::report_format)]
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/report",
    operation_id = "campaign_report",
    tag = "campaigns",
    summary = "The campaign report per tenant, as JSON, CSV or HTML",
    params(crate::openapi::IdPath, ReportQuery),
    responses((status = 200, description = "The report", content((rekey_core::campaigns::CampaignReport = "application/json"), (String = "text/csv"), (String = "text/html"))), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn report(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let resource = audit_resource(&format!("campaign:{id}"));
    let session = s.session(&ctx, AuditAction::CampaignReport, resource).await?;
    let parsed = (|| {
        let q = query(q, &ctx)?;
        let format = q.format.unwrap_or_else(|| "json".into());
        if !matches!(format.as_str(), "json" | "csv" | "html") {
            return Err(ApiError::new(ErrorCode::BadRequest, "format: use json, csv or html", ctx.request_id));
        }
        Ok((campaign_id(&id, &ctx)?, format))
    })();
    let (id, format) = session.input(parsed).await?;
    let report = session.vault.campaign_report(&session.caller, id).await.map_err(core(&ctx))?;
    let (content_type, body) = match format.as_str() {
        "csv" => ("text/csv; charset=utf-8", crate::report::csv(&report)),
        "html" => ("text/html; charset=utf-8", crate::report::html(&report)),
        _ => return Ok(Json(report).into_response()),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if format == "html" {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(crate::pages::CSP_REPORT));
    }
    Ok(response)
}
