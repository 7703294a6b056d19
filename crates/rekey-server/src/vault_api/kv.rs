//! `GET /v1/<mount>/data/<tenant>/<name>`: a credential as a KV v2 secret. The same use case as
//! the native reveal (`Vault::reveal`): the same policy, the same fail-closed audit event
//! (`cred.reveal`), the same refusals.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rekey_types::{ErrorCode, Timestamp};
use serde::{Deserialize, Serialize};

use super::envelope::Envelope;
use crate::extract::ReqCtx;
use crate::routes::{no_store, query, ApiResult, AppState};
use crate::ApiError;

/// Vault's read parameters; any other is ignored, as Vault ignores it.
#[derive(Deserialize)]
pub(super) struct KvQuery {
    /// A version to read (operators only, as `cred reveal --version`); `0` or absent: the
    /// current one.
    #[serde(default)]
    version: Option<u32>,
}

/// `data.data`: the secret beside the non-secret target fields.
#[derive(Serialize)]
struct Data<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_base64: Option<&'a str>,
    #[serde(flatten)]
    fields: &'a BTreeMap<String, String>,
}

/// `data.metadata`, as KV v2 shapes it. Nothing is ever deleted or destroyed through this path.
#[derive(Serialize)]
struct Metadata {
    created_time: Timestamp,
    custom_metadata: BTreeMap<&'static str, &'static str>,
    deletion_time: &'static str,
    destroyed: bool,
    version: u32,
}

#[derive(Serialize)]
struct Secret<'a> {
    data: Data<'a>,
    metadata: Metadata,
}

pub(super) async fn read(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
    q: Result<Query<KvQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let version = || Ok(query(q, &ctx)?.version.filter(|v| *v > 0));
    let revealed = crate::credentials::reveal_for(&s, &ctx, &tenant, &name, version).await?;
    let (text, b64) = crate::credentials::secret_text(&revealed.secret);
    let secret = Secret {
        data: Data { secret: text, secret_base64: b64.as_deref().map(String::as_str), fields: &revealed.fields },
        metadata: Metadata {
            created_time: revealed.created_at,
            custom_metadata: BTreeMap::from([("kind", revealed.kind.as_str())]),
            deletion_time: "",
            destroyed: false,
            version: revealed.version,
        },
    };
    let json = serde_json::to_vec(&Envelope::new(ctx.request_id, "kv", secret))
        .map_err(|_| ApiError::new(ErrorCode::Internal, "encoding failed", ctx.request_id))?;
    Ok(no_store(([(header::CONTENT_TYPE, "application/json")], json).into_response()))
}
