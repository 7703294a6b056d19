//! The OpenAPI 3.1 document served at `/v1/openapi.json`, generated from the code: each handler
//! carries its `#[utoipa::path]` (method, path, parameters, body, answers, roles), each type its
//! schema (names with their pattern and length, states with their words, from `rekey-types`),
//! and the router registers a handler only through its documentation (`app::api_routes`, which
//! hands the collected document to [`Document::new`]), so the document and the routes served
//! cannot drift apart.

use std::collections::BTreeMap;

use rekey_types::time::DURATION_PATTERN;
use rekey_types::{text, CredentialName, ErrorCode, Region, TenantName};
use serde_json::{json, Value};
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{
    ArrayBuilder, ArrayItems, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, Response};
use utoipa::{IntoParams, IntoResponses, OpenApi, ToSchema};

/// The document's head: title, licence, the bearer scheme and the error body.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rekey",
        description = "Breach-ready vault for the credentials a multi-tenant service holds for its customers. \
                       Every answer that is not 2xx is an `Error`; each error code has one status (docs/errors.md). \
                       `x-rekey-roles` names the roles an operation admits; the policy decides the rest (docs/threat-model.md).",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0")
    ),
    components(schemas(ErrorBody, TenantName, CredentialName, Region, rekey_types::KeyRef, rekey_core::import::ImportMode)),
    modifiers(&Bearer)
)]
pub(crate) struct Head;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token, `rk_<id>_<secret>`"))
                    .build(),
            ),
        );
    }
}

/// The body of every error answer.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // documents `error::Body`, which borrows its message
pub(crate) struct ErrorBody {
    code: ErrorCode,
    /// What went wrong, for a person; never a secret, never internal detail.
    message: String,
    /// The request's id, as in `x-request-id` and the server log.
    #[schema(format = "uuid")]
    request_id: String,
}

/// Every error answer an operation can give: each status an error code is sent with, and the
/// codes it carries. All of them are listed on every operation: the guard in front of every
/// route (limits, the token, the body's deadline) and the seal can answer any request with most
/// of them.
pub(crate) struct ApiErrors;

impl IntoResponses for ApiErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
        for code in ErrorCode::ALL {
            by_status.entry(code.http_status()).or_default().push(code.as_str());
        }
        let mut responses = ResponsesBuilder::new();
        for (status, codes) in by_status {
            let content = ContentBuilder::new().schema(Some(ErrorBody::schema_ref())).build();
            let answer = ResponseBuilder::new()
                .description(format!("`Error` with code {}", codes.join(", ")))
                .content("application/json", content);
            responses = responses.response(status.to_string(), answer);
        }
        responses.build().into()
    }
}

impl ErrorBody {
    fn schema_ref() -> RefOr<utoipa::openapi::schema::Schema> {
        RefOr::Ref(utoipa::openapi::Ref::from_schema_name(<Self as ToSchema>::name()))
    }
}

/// `{tenant}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documentation only: handlers take the raw text so that a bad name is audited
pub(crate) struct TenantPath {
    /// The tenant's name.
    tenant: TenantName,
}

/// `{tenant}/credentials/{name}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documentation only, as above
pub(crate) struct CredentialPath {
    /// The tenant's name.
    tenant: TenantName,
    /// The credential's name within the tenant.
    name: CredentialName,
}

/// `{id}` in a path: the UUID of an incident, a campaign or a key job.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documentation only, as above
pub(crate) struct IdPath {
    /// A UUID, hyphenated (`rekey_types::schema::UUID_PATTERN`).
    #[param(
        format = "uuid",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    id: String,
}

/// `{key}` in a path: a key version, `root@N` or `TENANT@N`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documentation only, as above
pub(crate) struct KeyPath {
    /// `root@N` or `TENANT@N`, N from 1.
    key: rekey_types::KeyRef,
}

/// `{thumbprint}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documentation only, as above
pub(crate) struct ThumbprintPath {
    /// The certificate's SHA-1 (40) or SHA-256 (64) thumbprint, hex.
    #[param(pattern = "^([0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")]
    thumbprint: String,
}

// ---- field schemas the derive cannot infer from a field's Rust type (each names its rule) ----

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn nullable(inner: ObjectBuilder) -> RefOr<Schema> {
    let mut schema = inner.build();
    schema.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
    schema.into()
}

fn list(item: impl Into<RefOr<Schema>>, max: usize) -> RefOr<Schema> {
    ArrayBuilder::new().items(ArrayItems::RefOrSchema(Box::new(item.into()))).max_items(Some(max)).into()
}

/// A tenant's contacts (`rekey_types::text::email`), at most `tenants::MAX_CONTACTS`.
pub(crate) fn contacts() -> RefOr<Schema> {
    let email = string().pattern(Some(text::email_pattern())).max_length(Some(text::MAX_EMAIL));
    list(email, rekey_core::tenants::MAX_CONTACTS)
}

/// A duration in a body, or `null` (`rekey_types::time::parse_duration_secs`).
pub(crate) fn duration() -> RefOr<Schema> {
    nullable(string().pattern(Some(DURATION_PATTERN)))
}

/// A duration in a query.
pub(crate) fn duration_param() -> RefOr<Schema> {
    string().pattern(Some(DURATION_PATTERN)).into()
}

/// A token's lifetime: a duration or `never`, or `null` for the default.
pub(crate) fn ttl() -> RefOr<Schema> {
    let rule = DURATION_PATTERN.trim_start_matches('^').trim_end_matches('$');
    nullable(string().pattern(Some(format!("^(never|{rule})$"))))
}

/// A token's description (`rekey_types::text::text`).
pub(crate) fn description() -> RefOr<Schema> {
    string().pattern(Some(text::text_pattern())).max_length(Some(rekey_core::tokens::MAX_DESCRIPTION)).into()
}

/// The addresses a token may be used from: CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single
/// addresses, at most `tokens::MAX_CIDRS`.
pub(crate) fn cidrs() -> RefOr<Schema> {
    let item = OneOfBuilder::new()
        .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Ipv4))))
        .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Ipv6))))
        .item(string().pattern(Some(format!("^{IPV4}/(3[0-2]|[12][0-9]|[0-9])$"))))
        .item(string().pattern(Some(format!("^{IPV6}/(12[0-8]|1[01][0-9]|[1-9][0-9]|[0-9])$"))));
    list(item, rekey_core::tokens::MAX_CIDRS)
}

/// An IPv4 address as `std::net::Ipv4Addr` reads it (no leading zeros).
const IPV4: &str =
    r"((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]|[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]|[0-9])";

/// An IPv6 address in its hexadecimal forms (full and `::`-compressed).
const IPV6: &str = concat!(
    r"(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}",
    r"|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}",
    r"|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}",
    r"|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))"
);

/// A secret in base64 (standard alphabet, padded), at least one byte.
pub(crate) fn secret_base64() -> RefOr<Schema> {
    let b64 = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)$";
    nullable(
        string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Password))).write_only(true).pattern(Some(b64)),
    )
}

/// An incident's title (`rekey_types::text::line`).
pub(crate) fn title() -> RefOr<Schema> {
    let max = rekey_core::incidents::MAX_TITLE;
    string().pattern(Some(text::line_pattern())).min_length(Some(1)).max_length(Some(max)).into()
}

/// A waiver's reason (`rekey_types::text::line`).
pub(crate) fn reason() -> RefOr<Schema> {
    let max = rekey_core::campaigns::MAX_REASON;
    string().pattern(Some(text::line_pattern())).min_length(Some(1)).max_length(Some(max)).into()
}

/// An operator's note on an alert (`rekey_types::text::line`).
pub(crate) fn note() -> RefOr<Schema> {
    let max = rekey_core::detect::alerts::MAX_NOTE;
    string().pattern(Some(text::line_pattern())).min_length(Some(1)).max_length(Some(max)).into()
}

/// An incident's scope: 1 to `incidents::MAX_SELECTORS` selectors, each `TYPE:VALUE` (the
/// value's grammar is in docs/incidents.md).
pub(crate) fn scope() -> RefOr<Schema> {
    let selector: RefOr<Schema> = string().pattern(Some("^(key|cert|token|region|tenant|kind|cred):")).into();
    ArrayBuilder::new()
        .items(ArrayItems::RefOrSchema(Box::new(selector)))
        .min_items(Some(1))
        .max_items(Some(rekey_core::incidents::MAX_SELECTORS))
        .into()
}

/// The channels a campaign notifies by.
pub(crate) fn channels() -> RefOr<Schema> {
    list(string().enum_values(Some(["email", "webhook"])), 2 * 16)
}

/// A campaign report's format.
pub(crate) fn report_format() -> RefOr<Schema> {
    string().enum_values(Some(["json", "csv", "html"])).into()
}

/// The rules between fields, which a field's own schema cannot state, added to the generated
/// schemas. Each names the server's check it mirrors.
fn rules_between_fields(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    let absent = json!({ "type": "null" });
    let text = json!({ "type": "string" });
    // `tenants`: `root` names the root key (`root@N`), so no tenant may be called that.
    schemas["CreateTenantBody"]["properties"]["name"] =
        json!({ "allOf": [{ "$ref": "#/components/schemas/TenantName" }, { "not": { "const": "root" } }] });
    // `credentials::PutBody::into_input`: exactly one of secret, secret_base64, or
    // certificate_pem with private_key_pem (absent and `null` are the same).
    schemas["PutBody"]["properties"]["secret"]["minLength"] = json!(1);
    schemas["PutBody"]["anyOf"] = json!([
        { "required": ["secret"], "properties": {
            "secret": text, "secret_base64": absent, "certificate_pem": absent, "private_key_pem": absent } },
        { "required": ["secret_base64"], "properties": {
            "secret_base64": text, "secret": absent, "certificate_pem": absent, "private_key_pem": absent } },
        { "required": ["certificate_pem", "private_key_pem"], "properties": {
            "certificate_pem": text, "private_key_pem": text, "secret": absent, "secret_base64": absent } },
    ]);
    // `keys::rotate`: exactly one of tenant, all, root.
    schemas["RotateBody"]["anyOf"] = json!([
        { "required": ["tenant"], "properties": { "tenant": text, "all": { "const": false }, "root": { "const": false } } },
        { "required": ["all"], "properties": { "all": { "const": true }, "root": { "const": false }, "tenant": absent } },
        { "required": ["root"], "properties": { "root": { "const": true }, "all": { "const": false }, "tenant": absent } },
    ]);
    // `tokens::create_token`: a tenant for tenant-admin and connector tokens only, bound
    // credentials (at least one) for connector tokens only.
    schemas["TokenBody"]["anyOf"] = json!([
        { "properties": { "role": { "enum": ["operator", "auditor"] }, "tenant": absent, "credentials": { "maxItems": 0 } } },
        { "required": ["tenant"], "properties": {
            "role": { "const": "tenant-admin" }, "tenant": text, "credentials": { "maxItems": 0 } } },
        { "required": ["tenant", "credentials"], "properties": {
            "role": { "const": "connector" }, "tenant": text, "credentials": { "minItems": 1 } } },
    ]);
}

/// The document the router's annotations make, with the rules between fields, as the JSON the
/// server serves.
#[derive(Clone)]
pub(crate) struct Document(pub(crate) std::sync::Arc<[u8]>);

impl Document {
    /// Finishes the document the router collected.
    pub(crate) fn new(generated: utoipa::openapi::OpenApi) -> Self {
        let mut doc = serde_json::to_value(generated).expect("the document serializes");
        rules_between_fields(&mut doc);
        Self(serde_json::to_vec(&doc).expect("the document serializes").into())
    }
}

#[cfg(test)]
mod tests {
    use utoipa::IntoParams;

    #[test]
    fn the_id_parameter_says_the_rule_ids_are_read_by() {
        let json = serde_json::to_string(&super::IdPath::into_params(|| None)).unwrap();
        assert!(json.contains(rekey_types::schema::UUID_PATTERN), "{json}");
    }
}
