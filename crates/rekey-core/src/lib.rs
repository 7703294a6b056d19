//! Rekey's use cases: tenants, credentials, tokens and their policy, the audit log, key custody,
//! and the connectors' verify and rotate with the scheduler that runs them.
//!
//! Every use case takes the [`Caller`] (who, from where, which request), asks [`policy`] whether
//! it may proceed, does its work, and records an audit event for every outcome, allowed or denied,
//! through the group-commit [`writer`]. A use case returns only after its audit event is durable;
//! if that fails, it returns [`CoreError::AuditUnavailable`] and nothing it produced (a secret
//! above all) leaves the server: the audit log fails closed.
//!
//! Must never: put a secret in an error, a log line or an audit event; decide a permission
//! anywhere but `policy`.
#![forbid(unsafe_code)]

pub mod audit;
pub mod campaigns;
pub mod certs;
pub mod connectors;
pub mod credentials;
pub mod custody;
mod error;
pub mod failures;
mod hints;
pub mod import;
pub mod incidents;
mod integrity;
mod jobs;
pub mod keeper;
mod keys;
mod locks;
pub mod policy;
pub mod scheduler;
mod target;
pub mod tenants;
pub mod tokens;
mod vault;
pub mod views;
pub mod writer;

pub use error::CoreError;
pub use keeper::Keeper;
pub use policy::{Caller, Principal};
pub use vault::{Vault, VaultOptions, TOKEN_CACHE_TTL};
