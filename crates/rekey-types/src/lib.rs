//! Ids, validated names and fields, roles and error codes shared by every Rekey crate.
//!
//! This crate does no I/O and holds no key material: it is the vocabulary the other crates
//! agree on. Everything that comes from outside (a name, a field, a CIDR) is parsed here into a
//! type that can only hold a valid value.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod action;
pub mod audit;
pub mod auth_role;
pub mod dn;
pub mod error;
pub mod fields;
pub mod ids;
pub mod keyref;
pub mod names;
pub mod role;
pub mod schema;
pub mod secret;
pub mod selector;
pub mod states;
pub mod text;
pub mod time;

pub use action::AuditAction;
pub use audit::{AuditOutcome, AuditRecord};
pub use auth_role::JwtRoleSpec;
pub use error::ErrorCode;
pub use fields::{CredentialKind, FieldError, Fields};
pub use ids::{
    AlertId, CampaignId, CredentialId, IdError, IncidentId, JobId, LinkId, NoticeId, RequestId, RotationId, TenantId,
    TokenId,
};
pub use keyref::KeyRef;
pub use names::{CredRef, CredentialName, NameError, Region, TenantName};
pub use role::Role;
pub use secret::Secret;
pub use selector::{Selector, SelectorError};
pub use states::{
    AlertState, CampaignMode, CampaignState, CertState, IncidentState, ItemState, JobState, KeyState, NoticeState,
    RotationState, RuleAction, SealKind, Severity, Stage, TenantState, TokenState, UnknownState,
};
pub use time::Timestamp;
