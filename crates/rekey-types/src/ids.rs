//! Typed ids. Every id is a UUIDv7 (time-ordered, so new rows land at the end of an index) in a
//! newtype, so that a tenant id can never be passed where a credential id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A text that is not an id: ids are UUIDs in their hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an id is a UUID, written 8-4-4-4-12 hex digits")]
pub struct IdError;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        crate::schema::to_schema!($name, stringify!($name), crate::schema::uuid(concat!("A ", stringify!($name), ": a UUID")));

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// The id with this UUID.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The id's UUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// The id's 16 bytes (what the envelope's associated data binds).
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            /// Only the hyphenated form (`8-4-4-4-12` hex digits), the one Rekey writes.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 36 {
                    return Err(IdError);
                }
                Uuid::try_parse(s).map(Self).map_err(|_| IdError)
            }
        }
    };
}

typed_id!(
    /// Identifies a tenant for its whole life; names can be reused after a shred, ids never.
    TenantId
);
typed_id!(
    /// Identifies one credential (all its versions). Bound into every ciphertext of it.
    CredentialId
);
typed_id!(
    /// The public half of an API token. The secret half is only ever stored as a hash.
    TokenId
);
typed_id!(
    /// A key job: a rotation or rewrap that runs in the server and survives restarts.
    JobId
);
typed_id!(
    /// One staged rotation of a credential at its target.
    RotationId
);
typed_id!(
    /// One incident: a declared exposure, its blast radius and what was done about it.
    IncidentId
);
typed_id!(
    /// One alert raised by a detection rule.
    AlertId
);
typed_id!(
    /// One rotation campaign: every credential of an incident driven to a verified new secret.
    CampaignId
);
typed_id!(
    /// The public half of a self-service reset link. The secret half is only ever stored as a hash.
    LinkId
);
typed_id!(
    /// One notification of a tenant (an email or a webhook call) and its delivery attempts.
    NoticeId
);
typed_id!(
    /// One HTTP request; returned to the client and written to the log and the audit event.
    RequestId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = TenantId::generate();
        assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
        assert!("not-a-uuid".parse::<TenantId>().is_err());
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = CredentialId::generate();
        let b = CredentialId::generate();
        assert!(a < b);
    }
}
