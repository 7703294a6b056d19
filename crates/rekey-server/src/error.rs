//! The one place that turns an error into an HTTP response.

use std::error::Error as _;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rekey_core::CoreError;
use rekey_types::{ErrorCode, RequestId};
use serde::Serialize;

/// An error on its way to the client: `{code, message, request_id}` with the code's status.
#[derive(Debug)]
pub struct ApiError {
    /// The code (and so the status).
    pub code: ErrorCode,
    message: String,
    request_id: RequestId,
    /// Internal detail for the server log; never sent.
    internal: Option<String>,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

/// What an error answer told the client, kept on the response so that the request middleware
/// can give it Vault's shape on the Vault-compatible routes (`vault_api::vault_errors`).
#[derive(Clone)]
pub(crate) struct ShownError {
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    code: ErrorCode,
    message: &'a str,
    request_id: String,
}

impl ApiError {
    /// An error with `code` and a message for the client (never a secret).
    pub fn new(code: ErrorCode, message: impl Into<String>, request_id: RequestId) -> Self {
        Self { code, message: message.into(), request_id, internal: None, retry_after: None }
    }

    /// With a `Retry-After` header of `seconds`.
    pub fn retry_after(self, seconds: u64) -> Self {
        Self { retry_after: Some(seconds), ..self }
    }

    /// The one mapping of a core error to an answer: its code, its message, and the internal
    /// detail (the error's sources) for the server log only.
    pub fn from_core(e: CoreError, request_id: RequestId) -> Self {
        let internal = e.source().map(|_| error_chain(&e));
        let retry_after = match e {
            CoreError::TooManyAttempts(seconds) | CoreError::RateLimited(seconds) => Some(seconds),
            _ => None,
        };
        Self { code: e.code(), message: e.to_string(), request_id, internal, retry_after }
    }

    /// The HTTP status of the code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).expect("every error code has a valid status")
    }
}

/// `error: cause: cause` for the log. Store and crypto errors never contain secret values.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(request_id = %self.request_id, code = %self.code, detail = %self.internal.as_deref().unwrap_or(&self.message), "request failed");
            "internal error".to_owned()
        } else {
            if status.is_server_error() {
                tracing::warn!(request_id = %self.request_id, code = %self.code, detail = %self.internal.as_deref().unwrap_or(&self.message), "request refused");
            }
            self.message
        };
        let body = Body { code: self.code, message: &message, request_id: self.request_id.to_string() };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(ShownError { message });
        response
    }
}
