//! `GET /v1/auth/token/lookup-self`: the caller's own token, in the shape of Vault's token
//! store (renewable only when it came from a workload login). Differs from Vault in `id`: Rekey answers the token's public id, never its secret
//! (Vault echoes the token itself).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rekey_core::views::TokenView;
use rekey_types::{AuditAction, Timestamp};
use serde::Serialize;

use super::envelope::Envelope;
use crate::extract::ReqCtx;
use crate::routes::{core, ApiResult, AppState};

#[derive(Serialize)]
struct Meta {
    role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
}

/// Vault's `lookup-self` data.
#[derive(Serialize)]
struct Lookup {
    accessor: String,
    creation_time: i64,
    creation_ttl: i64,
    display_name: String,
    entity_id: &'static str,
    expire_time: Option<Timestamp>,
    explicit_max_ttl: i64,
    id: String,
    issue_time: Timestamp,
    meta: Meta,
    num_uses: u32,
    orphan: bool,
    path: &'static str,
    policies: [String; 1],
    renewable: bool,
    ttl: i64,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl From<TokenView> for Lookup {
    fn from(t: TokenView) -> Self {
        let seconds = |ts: Timestamp| ts.as_micros().div_euclid(1_000_000);
        let now = seconds(Timestamp::now());
        let role = t.role.to_string();
        Self {
            accessor: t.id.clone(),
            creation_time: seconds(t.created_at),
            creation_ttl: t.expires_at.map_or(0, |e| seconds(e) - seconds(t.created_at)),
            display_name: format!("token-{role}"),
            entity_id: "",
            expire_time: t.expires_at,
            explicit_max_ttl: t.renewable_until.map_or(0, |m| seconds(m) - seconds(t.created_at)),
            id: t.id,
            issue_time: t.created_at,
            meta: Meta { role: role.clone(), tenant: t.tenant },
            num_uses: 0,
            orphan: true,
            path: "auth/token/create",
            policies: [role],
            renewable: t.renewable_until.is_some(),
            ttl: t.expires_at.map_or(0, |e| (seconds(e) - now).max(0)),
            kind: "service",
        }
    }
}

pub(super) async fn lookup_self(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Response> {
    let session = s.session(&ctx, AuditAction::TokenLookupSelf, String::new()).await?;
    let view = session.vault.lookup_self(&session.caller).await.map_err(core(&ctx))?;
    Ok(Json(Envelope::new(ctx.request_id, "token", Lookup::from(view))).into_response())
}
