//! The states of Rekey's state machines and the stages of a credential version, as types. Each
//! is turned into its text (the same words the API, the CLI and the database show) only at the
//! store and wire edges, with [`as_str`](Stage::as_str) and [`FromStr`](std::str::FromStr).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A text that names no value of the state type `what`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {text:?} (one of: {allowed})")]
pub struct UnknownState {
    /// What was being named (`item state`, …).
    pub what: &'static str,
    /// The text given.
    pub text: String,
    /// The values allowed, comma-separated.
    pub allowed: String,
}

macro_rules! states {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value, in the order of the state machine.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The value's text, as stored and shown.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)*
                    _ => Err(UnknownState {
                        what: $what,
                        text: s.to_owned(),
                        allowed: [$($text),*].join(", "),
                    }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        crate::schema::to_schema!($name, stringify!($name), crate::schema::words($what, &[$($text),*]));
    };
}

states! {
    /// The stage of a credential version.
    Stage, "version stage" {
        /// The version served.
        Current = "current",
        /// Stored beside the current version, not served yet (a rotation's new secret, or a put
        /// with `--pending`).
        Pending = "pending",
        /// The version before the current one, kept through a rotation's grace period.
        Previous = "previous",
        /// No longer served; kept for the record.
        Retired = "retired",
        /// A rotation's new version whose rotation failed; never served.
        Failed = "failed",
    }
}

states! {
    /// The state of a key version (a tenant KEK, or a root key).
    KeyState, "key state" {
        /// Wraps new keys.
        Active = "active",
        /// Still unwraps what it wrapped; wraps nothing new.
        Retired = "retired",
        /// Marked stolen: what it wraps is moved to a new version, and it wraps nothing new.
        Compromised = "compromised",
        /// Gone: what it wrapped can no longer be opened.
        Destroyed = "destroyed",
    }
}

states! {
    /// The state of a staged rotation.
    RotationState, "rotation state" {
        /// The new version is stored as `pending`; the target may or may not have it yet.
        Pending = "pending",
        /// The target took the new secret; it is not served yet.
        Applied = "applied",
        /// The new version is current; the old one is `previous` until the grace period ends.
        Promoted = "promoted",
        /// The old version is retired (and removed from the target where that is a step of its own).
        Retired = "retired",
        /// Stopped before the target took the new secret (or with neither secret working).
        Failed = "failed",
    }
}

impl RotationState {
    /// States in which a rotation still has work to do before promotion.
    pub const UNFINISHED: [RotationState; 2] = [RotationState::Pending, RotationState::Applied];
}

states! {
    /// The state of one credential of a rotation campaign.
    ItemState, "item state" {
        /// Nothing done yet.
        Pending = "pending",
        /// A rotation by the server is under way.
        Rotating = "rotating",
        /// The tenant admin was sent a reset link.
        Notified = "notified",
        /// A new secret is stored (by the server or through the link).
        Rotated = "rotated",
        /// The new secret was checked against its target.
        Verified = "verified",
        /// The old secret is retired: done.
        Retired = "retired",
        /// A step failed (retried while attempts remain).
        Failed = "failed",
        /// An operator decided this credential needs no rotation.
        Waived = "waived",
    }
}

impl ItemState {
    /// The one-element list of this state: the `from` of an update that keeps an item where it is.
    pub const fn only(self) -> &'static [ItemState] {
        match self {
            ItemState::Pending => &[ItemState::Pending],
            ItemState::Rotating => &[ItemState::Rotating],
            ItemState::Notified => &[ItemState::Notified],
            ItemState::Rotated => &[ItemState::Rotated],
            ItemState::Verified => &[ItemState::Verified],
            ItemState::Retired => &[ItemState::Retired],
            ItemState::Failed => &[ItemState::Failed],
            ItemState::Waived => &[ItemState::Waived],
        }
    }

    /// Where the campaign item that holds a rotation goes when the rotation reaches `rotation`:
    /// `None` for a rotation state that does not move it.
    pub const fn following(rotation: RotationState) -> Option<ItemState> {
        match rotation {
            RotationState::Applied => Some(ItemState::Rotated),
            RotationState::Promoted => Some(ItemState::Verified),
            RotationState::Retired => Some(ItemState::Retired),
            RotationState::Failed => Some(ItemState::Failed),
            RotationState::Pending => None,
        }
    }

    /// States in which an item is still to be done (failed items may still be retried).
    pub const OPEN: [ItemState; 5] =
        [ItemState::Pending, ItemState::Rotating, ItemState::Notified, ItemState::Rotated, ItemState::Verified];
}

states! {
    /// How a campaign rotates a credential.
    CampaignMode, "campaign mode" {
        /// The server rotates it where it holds the rights (LDAP, Entra apps).
        Automatic = "automatic",
        /// The tenant admin resets it through a single-use link.
        SelfService = "self-service",
        /// Nothing to rotate at a target (a `generic` credential): a person replaces the secret
        /// and puts the new one.
        Manual = "manual",
    }
}

states! {
    /// What holds the root key.
    SealKind, "seal kind" {
        /// A key file beside the database: for a quickstart only (the status says so).
        Dev = "dev",
        /// Shamir shares held by people; the server starts sealed.
        Shamir = "shamir",
        /// A PKCS#11 token (an HSM); the key never leaves it.
        Pkcs11 = "pkcs11",
    }
}

states! {
    /// The state of a tenant.
    TenantState, "tenant state" {
        /// In service.
        Active = "active",
        /// Crypto-shredded: its keys destroyed, its credentials unrecoverable.
        Shredded = "shredded",
    }
}

states! {
    /// The state of a token, as shown (derived from its expiry and revocation, never stored).
    TokenState, "token state" {
        /// Usable.
        Active = "active",
        /// Past its expiry.
        Expired = "expired",
        /// Revoked.
        Revoked = "revoked",
    }
}

states! {
    /// The state of a key job (a rotation or a rewrap after a compromise).
    JobState, "job state" {
        /// Under way (resumed after a restart).
        Running = "running",
        /// Every wrapped key moved.
        Done = "done",
        /// Stopped; the error says why.
        Failed = "failed",
    }
}

states! {
    /// The state of an issued certificate.
    CertState, "certificate state" {
        /// In service.
        Active = "active",
        /// Revoked (by an operator or an incident's containment).
        Revoked = "revoked",
        /// Shown only, never stored: an active certificate past its `not_after`.
        Expired = "expired",
    }
}

states! {
    /// The state of an incident (its containment is a time of its own).
    IncidentState, "incident state" {
        /// Open.
        Open = "open",
        /// Closed.
        Closed = "closed",
    }
}

states! {
    /// The state of a rotation campaign.
    CampaignState, "campaign state" {
        /// Items still to do.
        Running = "running",
        /// Every item done, waived or failed.
        Finished = "finished",
    }
}

states! {
    /// The state of a notice to a tenant.
    NoticeState, "notice state" {
        /// To be sent (again, at its `next_at`).
        Pending = "pending",
        /// Delivered.
        Sent = "sent",
        /// Given up on.
        Failed = "failed",
        /// Not sent: the campaign was over, its deadline had passed, or nothing was left to reset.
        Skipped = "skipped",
    }
}

states! {
    /// The state of an alert raised by a detection rule.
    AlertState, "alert state" {
        /// Raised; nobody has looked at it yet.
        Open = "open",
        /// An operator looked at it and judged it (the note says how).
        Acknowledged = "acknowledged",
        /// An incident was opened from it.
        Escalated = "escalated",
    }
}

states! {
    /// How urgent an alert is: a rule's severity.
    Severity, "severity" {
        /// Worth a look.
        Low = "low",
        /// Look today.
        Medium = "medium",
        /// Look now.
        High = "high",
        /// A theft is likely under way (a decoy was touched).
        Critical = "critical",
    }
}

states! {
    /// What a rule does on its own when it raises an alert (off unless configured).
    RuleAction, "rule action" {
        /// Nothing beyond the alert.
        None = "none",
        /// Revoke the token that raised it.
        Revoke = "revoke",
        /// Open an incident of the token and the credentials it read, revoke the token and
        /// freeze those credentials until each is rotated.
        Freeze = "freeze",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_with_the_allowed_values() {
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>(), Ok(*s));
        }
        for s in ItemState::ALL {
            assert_eq!(serde_json::from_str::<ItemState>(&serde_json::to_string(s).unwrap()).unwrap(), *s);
        }
        let e = "halfway".parse::<RotationState>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown rotation state \"halfway\" (one of: pending, applied, promoted, retired, failed)"
        );
        assert_eq!(CampaignMode::SelfService.as_str(), "self-service");
        assert_eq!(ItemState::following(RotationState::Pending), None);
        assert_eq!(ItemState::following(RotationState::Promoted), Some(ItemState::Verified));
    }
}
