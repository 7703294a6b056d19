//! Workload identity: a workload logs in with a JWT its platform issued (a Kubernetes service
//! account token, a CI job's OIDC token, a cloud instance identity) and gets a short-lived Rekey
//! token, instead of holding a long-lived static one.
//!
//! An auth role ([`role`]) names the issuer and how to find its keys, the audiences and
//! algorithms it accepts, the claims a token must carry, and what a login grants. A login
//! ([`login`]) checks the JWT's algorithm against the role's, its signature against the
//! issuer's key (kept by the kernel's `issuer_keys`), and its claims ([`claims`]), then mints a token that expires after
//! the role's TTL and can be renewed up to its maximum. Every login and refusal is audited with
//! the claims that decided it, never the JWT.
//!
//! Must never: accept an algorithm the role does not pin (`none` and HMAC are not algorithms
//! here), a key of another type than the algorithm's, or a token whose issuer, audience, time or
//! bound claims do not match; record or log a JWT; renew a token past its maximum.

pub mod claims;
pub mod login;
pub mod operator;
pub mod role;

pub use login::LoggedIn;
pub use role::{JwtRole, JwtRoleSpec, JwtRoleView};
