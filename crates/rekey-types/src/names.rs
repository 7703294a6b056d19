//! Tenant names, credential names, regions and `tenant/name` references.
//!
//! Names are short lowercase slugs: they appear in URLs, command lines and audit events, so they
//! must be unambiguous, printable and free of anything a shell or a log parser would interpret.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a text is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty.
    #[error("{what} must not be empty")]
    Empty {
        /// What was being named (`a tenant name`, …).
        what: &'static str,
    },
    /// Too long.
    #[error("{what} is longer than {max} characters")]
    TooLong {
        /// What was being named.
        what: &'static str,
        /// The longest allowed.
        max: usize,
    },
    /// Not a slug.
    #[error(
        "{what} must start with a lowercase letter and contain only lowercase letters, digits and \
         single hyphens (not at the end): got {value:?}"
    )]
    Invalid {
        /// What was being named.
        what: &'static str,
        /// The text given (cut short).
        value: String,
    },
    /// Not `tenant/name`.
    #[error("a credential reference is written tenant/name: got {0:?}")]
    BadReference(String),
}

fn check_slug(what: &'static str, value: &str, max: usize) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { what });
    }
    if value.len() > max {
        return Err(NameError::TooLong { what, max });
    }
    let bytes = value.as_bytes();
    let valid = bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !value.ends_with('-')
        && !value.contains("--");
    if !valid {
        // Cut what we echo back so that a huge or hostile value does not end up in full in an
        // error message or a log line.
        let shown: String = value.chars().take(64).collect();
        return Err(NameError::Invalid { what, value: shown });
    }
    Ok(())
}

macro_rules! slug_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The longest name allowed.
            pub const MAX_LEN: usize = $max;

            /// The name, if `value` is a valid one.
            pub fn parse(value: &str) -> Result<Self, NameError> {
                check_slug($what, value, $max)?;
                Ok(Self(value.to_owned()))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        crate::schema::to_schema!($name, stringify!($name), crate::schema::slug($what, $max));
    };
}

slug_type!(
    /// A tenant's name, e.g. `acme`: a lowercase slug of at most 63 characters.
    TenantName,
    "a tenant name",
    63
);
slug_type!(
    /// A credential's name within its tenant, e.g. `directory`: a lowercase slug, at most 63.
    CredentialName,
    "a credential name",
    63
);
slug_type!(
    /// A data-residency region, e.g. `uk`, `us`, `eu-west`: a lowercase slug, at most 16.
    Region,
    "a region",
    16
);

/// `tenant/name`, the way people and the CLI refer to one credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredRef {
    /// The tenant.
    pub tenant: TenantName,
    /// The credential's name within the tenant.
    pub name: CredentialName,
}

impl CredRef {
    /// The reference written `tenant/name`.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let (tenant, name) =
            value.split_once('/').ok_or_else(|| NameError::BadReference(value.chars().take(64).collect()))?;
        Ok(Self { tenant: TenantName::parse(tenant)?, name: CredentialName::parse(name)? })
    }
}

crate::schema::to_schema!(CredRef, "CredRef", crate::schema::cred_ref());

impl fmt::Display for CredRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.name)
    }
}

impl FromStr for CredRef {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_slugs() {
        for ok in ["acme", "a", "acme-corp", "t1", "x-1-2"] {
            TenantName::parse(ok).unwrap();
        }
    }

    #[test]
    fn rejects_what_is_not_a_slug() {
        for bad in ["", "Acme", "1acme", "acme-", "ac--me", "ac me", "acme/x", "ac_me", "é"] {
            assert!(TenantName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(matches!(TenantName::parse(&"a".repeat(64)), Err(NameError::TooLong { max: 63, .. })));
        assert!(Region::parse("a-very-long-region").is_err());
    }

    #[test]
    fn cred_ref_needs_both_halves() {
        let r = CredRef::parse("acme/directory").unwrap();
        assert_eq!(r.tenant.as_str(), "acme");
        assert_eq!(r.name.as_str(), "directory");
        assert_eq!(r.to_string(), "acme/directory");
        assert!(CredRef::parse("acme").is_err());
        assert!(CredRef::parse("acme/").is_err());
        assert!(CredRef::parse("acme/dir/x").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_valid_names_round_trip(s in "\\PC{0,80}") {
            if let Ok(name) = TenantName::parse(&s) {
                prop_assert_eq!(name.as_str(), s.as_str());
                prop_assert!(name.as_str().len() <= 63);
            }
        }
    }
}
