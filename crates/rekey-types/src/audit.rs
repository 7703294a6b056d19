//! The audit record and its canonical byte encoding, which the hash chain authenticates.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Done.
    Success,
    /// Refused: not authenticated, not allowed, or limited.
    Denied,
    /// Accepted but failed (the detail names the error code).
    Error,
}

impl AuditOutcome {
    /// The outcome as the log shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Error => "error",
        }
    }

    /// The outcome named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(AuditOutcome::Success),
            "denied" => Some(AuditOutcome::Denied),
            "error" => Some(AuditOutcome::Error),
            _ => None,
        }
    }
}

/// One audit event. Never holds a secret value: `detail` carries error codes and non-secret
/// facts (a version number, a count), written by Rekey itself, not copied from a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When the event was recorded.
    pub time: Timestamp,
    /// `token:<id>`, `anonymous`, or `system`.
    pub principal: String,
    /// e.g. `cred.reveal`, `tenant.create`.
    pub action: String,
    /// e.g. `acme/directory`, `token:<id>`, or empty.
    pub resource: String,
    /// How the request ended.
    pub outcome: AuditOutcome,
    /// The client's IP address, or empty for work the server does on its own.
    pub source: String,
    /// The request id (also in the server log and the answer).
    pub request_id: String,
    /// Non-secret facts written by Rekey: a version, a count, an error code.
    pub detail: String,
}

/// The tenant an event is about, by its resource: `tenant:<name>`, `<tenant>/<credential>`
/// with both parts names (a slug each), or `<tenant>@<version>` (one of its key versions; not
/// `root@<version>`, `root` being no tenant's name). Any other resource is about no tenant. The
/// tenant map of the audit checkpoints (docs/audit.md) and a tenant's evidence use this one rule.
pub fn tenant_of(resource: &str) -> Option<&str> {
    let slug = |s: &str| {
        s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if let Some(name) = resource.strip_prefix("tenant:") {
        return slug(name).then_some(name);
    }
    if let Some((tenant, version)) = resource.split_once('@') {
        let digits = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit());
        return (slug(tenant) && tenant != "root" && digits).then_some(tenant);
    }
    let (tenant, credential) = resource.split_once('/')?;
    (slug(tenant) && slug(credential)).then_some(tenant)
}

impl AuditRecord {
    /// The bytes the chain MAC covers: every field, each length-prefixed so that no two
    /// different records encode alike.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.detail.len());
        out.extend_from_slice(b"rekey-audit-v1");
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time.as_micros().to_be_bytes());
        for field in [
            self.principal.as_str(),
            self.action.as_str(),
            self.resource.as_str(),
            self.outcome.as_str(),
            self.source.as_str(),
            self.request_id.as_str(),
            self.detail.as_str(),
        ] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_about_a_tenant_by_their_resource() {
        assert_eq!(tenant_of("tenant:acme"), Some("acme"));
        assert_eq!(tenant_of("acme/ldap-1"), Some("acme"));
        assert_eq!(tenant_of("acme/a/b"), None);
        assert_eq!(tenant_of("incident:0190"), None);
        assert_eq!(tenant_of("token:acme/x"), None);
        assert_eq!(tenant_of("Acme/x"), None);
        assert_eq!(tenant_of("tenant:"), None);
        assert_eq!(tenant_of("acme@3"), Some("acme"));
        assert_eq!(tenant_of("root@3"), None);
        assert_eq!(tenant_of("acme@"), None);
        assert_eq!(tenant_of("acme"), None);
        assert_eq!(tenant_of(""), None);
    }

    fn record() -> AuditRecord {
        AuditRecord {
            seq: 1,
            time: Timestamp::from_micros(5),
            principal: "token:x".into(),
            action: "cred.reveal".into(),
            resource: "acme/dir".into(),
            outcome: AuditOutcome::Success,
            source: "127.0.0.1".into(),
            request_id: "r".into(),
            detail: String::new(),
        }
    }

    #[test]
    fn encoding_separates_fields() {
        let a = record();
        let mut b = record();
        b.principal = "token:xa".into();
        b.action = "cred.reveal".into();
        b.resource = "cme/dir".into();
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
    }
}
