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
#![warn(missing_docs)]

pub mod audit;
mod bucket;
pub mod checkpoints;
pub mod connectors;
pub mod credentials;
pub mod custody;
pub mod detect;
mod error;
pub mod evidence;
pub mod failures;
mod kernel;
pub mod options;
pub mod outbound;
pub mod response;
pub mod rules;
pub mod siem;
pub mod stats;
pub mod stix;
pub mod tenants;
pub mod throttle;
pub mod tokens;
pub mod tree;
pub mod views;
pub mod workloads;

pub use connectors::scheduler;
pub use credentials::{certs, import};
pub use custody::keeper::{self, Keeper};
pub use error::CoreError;
pub use kernel::policy::{self, Caller, Principal};
pub use kernel::writer;
pub use kernel::{Vault, TOKEN_CACHE_TTL};
pub use options::VaultOptions;
pub use response::{campaigns, incidents};
