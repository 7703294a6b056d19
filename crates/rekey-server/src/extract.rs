//! Request context: request id, client address and bearer token; and body parsing that turns
//! every malformed input into a clear 4xx.

use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::Extensions;
use axum::http::StatusCode;
use bytes::Bytes;
use rekey_types::{ErrorCode, RequestId};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::ApiError;

/// Who sent the request and under which id. The bearer token is zeroized on drop.
pub(crate) struct ReqCtx {
    pub request_id: RequestId,
    pub source: IpAddr,
    pub bearer: Option<Zeroizing<String>>,
    /// The vault and the caller, when the token was checked before the body was read (see
    /// `guard`).
    pub authenticated: Option<Authenticated>,
}

/// What the guard found before reading a body: the open vault it checked the token with, and
/// the caller. The request goes on with that vault (see `session`).
#[derive(Clone)]
pub(crate) struct Authenticated {
    pub vault: std::sync::Arc<rekey_core::Vault>,
    pub caller: rekey_core::policy::Caller,
}

impl<S: Send + Sync> FromRequestParts<S> for ReqCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts.extensions.get::<RequestId>().copied().unwrap_or_else(RequestId::generate);
        let source = source_of(&parts.extensions)
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "no client address", request_id))?;
        let bearer = bearer_of(&parts.headers);
        let authenticated = parts.extensions.remove::<Authenticated>();
        Ok(Self { request_id, source, bearer, authenticated })
    }
}

/// The client's address, as the request middleware decided it (`proxy`: the TCP peer, or whom
/// a trusted proxy forwards for).
pub(crate) fn source_of(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<crate::proxy::ClientAddr>().map(|c| c.0)
}

/// The TCP peer the server recorded, or the one a test gave with `MockConnectInfo`.
pub(crate) fn peer_of(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|m| m.0.ip()))
}

/// The token of a request, zeroized on drop: from its `Authorization: Bearer` header, or else
/// from `X-Vault-Token` (what Vault's clients send).
pub(crate) fn bearer_of(headers: &axum::http::HeaderMap) -> Option<Zeroizing<String>> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let vault = || headers.get("x-vault-token").and_then(|v| v.to_str().ok());
    bearer.or_else(vault).map(|t| Zeroizing::new(t.trim().to_owned()))
}

/// A body that was read (or failed to read: too large, broken connection). Reading is deferred
/// into the handler so that the failure is audited like any other.
pub(crate) type RawBody = Result<Bytes, BytesRejection>;

pub(crate) fn body_bytes(body: RawBody, request_id: RequestId) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::PayloadTooLarge, "the request body is larger than this server accepts", request_id)
        } else {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("cannot read the request body: {}", rejection.body_text()),
                request_id,
            )
        }
    })
}

/// Parses a JSON body, with the position and reason of the first problem in the message.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8], request_id: RequestId) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(ErrorCode::BadRequest, "the request needs a JSON body", request_id));
    }
    // Every body of the API is an object (serde would also read a struct from an array).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(ErrorCode::BadRequest, "the request body must be a JSON object", request_id));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(ErrorCode::BadRequest, format!("invalid JSON body: {}", sanitize_json_error(&e)), request_id)
    })
}

/// A serde_json error as shown to a client: position and reason, without the offending value.
pub(crate) fn sanitize_json_error(e: &serde_json::Error) -> String {
    without_values(&e.to_string())
}

/// serde's "invalid type: string \"hunter2\", expected ..." quotes the offending value, which
/// may be a secret sent in the wrong place. Keep the kind of value, drop the value.
fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(at) = rest.find(", expected") {
                let kind = rest[..at].split([' ', '`', '"']).next().unwrap_or("value");
                return format!("{prefix}{kind}{}", &rest[at..]);
            }
        }
    }
    message.to_owned()
}

/// An integer field as JSON Schema counts integers: `3` and `3.0` alike (the document says
/// `integer`, which admits both); a fraction, a sign where none fits or a value out of range is
/// refused.
pub(crate) fn whole_number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    let whole = match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => Some(u),
        (None, Some(f)) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Some(f as u64),
        _ => None,
    };
    whole
        .and_then(|u| T::try_from(u).ok())
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number in range")))
}

/// [`whole_number`] for an optional field (absent or `null` is `None`).
pub(crate) fn whole_number_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    #[derive(serde::Deserialize)]
    struct Wrap<T: TryFrom<u64>>(#[serde(deserialize_with = "whole_number")] T);
    Option::<Wrap<T>>::deserialize(d).map(|w| w.map(|Wrap(t)| t))
}

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn drops_quoted_values_from_serde_messages() {
        let m = without_values("invalid type: string \"hunter2\", expected u32 at line 1 column 10");
        assert_eq!(m, "invalid type: string, expected u32 at line 1 column 10");
        let m = without_values("invalid type: integer `1234`, expected a string at line 1 column 14");
        assert!(!m.contains("1234"), "{m}");
        assert_eq!(without_values("unknown field `x` at line 1"), "unknown field `x` at line 1");
    }

    #[test]
    fn whole_numbers_as_json_schema_counts_them() {
        #[derive(serde::Deserialize)]
        struct B {
            #[serde(deserialize_with = "super::whole_number")]
            n: u8,
            #[serde(default, deserialize_with = "super::whole_number_opt")]
            m: Option<u32>,
        }
        let b: B = serde_json::from_str(r#"{"n": 3.0, "m": 7}"#).unwrap();
        assert_eq!((b.n, b.m), (3, Some(7)));
        let b: B = serde_json::from_str(r#"{"n": 255, "m": null}"#).unwrap();
        assert_eq!((b.n, b.m), (255, None));
        for bad in [r#"{"n": 3.5}"#, r#"{"n": 256}"#, r#"{"n": -1}"#, r#"{"n": "3"}"#, r#"{"n": 1e300}"#] {
            assert!(serde_json::from_str::<B>(bad).is_err(), "{bad}");
        }
    }
}
