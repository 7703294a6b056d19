//! The OpenAPI schema of each wire type of this crate, beside the type: a name with the pattern
//! and length its parser enforces, a state or kind with the words it accepts, an id as a UUID, a
//! time as RFC 3339. The server's document is generated from these and the types built on them,
//! so that what the document promises and what the parser accepts are the same rules.

use utoipa::openapi::schema::{AllOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;

/// A slug (see [`crate::names`]) as an anchored pattern: a lowercase letter, then lowercase
/// letters and digits, with single hyphens between them.
pub const SLUG_PATTERN: &str = "^[a-z][a-z0-9]*(-[a-z0-9]+)*$";

/// A string of one of `words`.
pub fn words(description: &str, words: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(words.iter().copied()))
        .into()
}

/// A slug of at most `max` characters.
pub fn slug(description: &str, max: usize) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(SLUG_PATTERN))
        .min_length(Some(1))
        .max_length(Some(max))
        .into()
}

/// One line of 1 to `max` printable characters (see [`crate::text::line`]).
pub fn line(description: &str, max: usize) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(crate::text::line_pattern()))
        .min_length(Some(1))
        .max_length(Some(max))
        .into()
}

/// `tenant/name`: two slugs of at most 63 characters each.
pub fn cred_ref() -> RefOr<Schema> {
    let slugs = format!("^{0}/{0}$", &SLUG_PATTERN[1..SLUG_PATTERN.len() - 1]);
    both("A credential, `tenant/name`", &slugs, "^[^/]{1,63}/[^/]{1,63}$")
}

/// `root@N` or `TENANT@N`, N from 1 without leading zeros, at most 9 digits.
pub fn key_ref() -> RefOr<Schema> {
    let shape = format!("^(root|{})@[1-9][0-9]{{0,8}}$", &SLUG_PATTERN[1..SLUG_PATTERN.len() - 1]);
    both("A key version, `root@N` or `TENANT@N`", &shape, "^[^@]{1,63}@")
}

/// A string matching both patterns (the second bounds the length of a part, which the first
/// cannot say).
fn both(description: &str, shape: &str, lengths: &str) -> RefOr<Schema> {
    let pattern = |p: &str| ObjectBuilder::new().schema_type(Type::String).pattern(Some(p)).build();
    AllOfBuilder::new().description(Some(description)).item(pattern(shape)).item(pattern(lengths)).into()
}

/// A duration (see [`crate::time::parse_duration_secs`]).
pub fn duration(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(crate::time::DURATION_PATTERN))
        .into()
}

/// A string in the given format.
pub fn formatted(description: &str, format: SchemaFormat) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).description(Some(description)).format(Some(format)).into()
}

/// A UUID.
pub fn uuid(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .format(Some(SchemaFormat::Custom("uuid".into())))
        .pattern(Some(UUID_PATTERN))
        .into()
}

/// The one form of a UUID that ids are read in (see [`crate::ids`]).
pub const UUID_PATTERN: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// An RFC 3339 time.
pub fn date_time(description: &str) -> RefOr<Schema> {
    formatted(description, SchemaFormat::KnownFormat(KnownFormat::DateTime))
}

/// Implements `ToSchema` for `$ty`, named `$name` in the document, with the schema `$schema`.
macro_rules! to_schema {
    ($ty:ty, $name:expr, $schema:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $schema
            }
        }

        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }
        }
    };
}
pub(crate) use to_schema;

to_schema!(crate::Timestamp, "Timestamp", date_time("RFC 3339, UTC"));
to_schema!(
    crate::CredentialKind,
    "CredentialKind",
    words(
        "What a credential connects to (see docs/connectors.md)",
        &crate::CredentialKind::ALL.map(crate::CredentialKind::as_str)
    )
);
to_schema!(
    crate::Role,
    "Role",
    words("What a token may do (see docs/threat-model.md)", &crate::Role::ALL.map(crate::Role::as_str))
);
to_schema!(
    crate::ErrorCode,
    "ErrorCode",
    words(
        "An error code; each has one HTTP status (docs/errors.md)",
        &crate::ErrorCode::ALL.map(crate::ErrorCode::as_str)
    )
);
to_schema!(crate::AuditOutcome, "AuditOutcome", words("How a request ended", &["success", "denied", "error"]));
