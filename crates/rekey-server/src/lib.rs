//! The Rekey HTTP API (axum), its configuration, metrics and OpenAPI document.
//!
//! Handlers are thin: they authenticate, parse the request into validated types, call one use
//! case of `rekey-core`, and shape the answer. Every error goes through [`error::ApiError`], the
//! one place that maps errors to a status and a code; a 5xx body says only "internal error" and
//! the request id, and the detail goes to the server log.
//!
//! Must never: log a request body, a token or a secret; answer before the use case's audit
//! event is durable.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod alerts;
mod answers;
mod app;
mod campaigns;
mod checkpoints;
pub mod config;
mod credentials;
mod error;
mod extract;
mod guard;
mod incidents;
mod jwt_roles;
mod keys;
mod metrics;
mod openapi;
mod pages;
mod proxy;
mod report;
mod routes;
mod session;
mod state;
mod vault_api;
pub mod witness;

pub use app::{router, App, Started};
pub use config::Config;
pub use error::ApiError;
pub use rekey_connect::install_crypto_provider;
