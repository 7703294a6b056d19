//! The four roles of DESIGN.md. What each may do is decided in one place, `rekey-core`'s policy.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a token may do (see `docs/threat-model.md` and the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs Rekey: may do everything.
    Operator,
    /// Reads metadata and the audit log; never a secret.
    Auditor,
    /// A customer's administrator: writes its own tenant's credentials, never reads a secret back.
    TenantAdmin,
    /// A workload: reveals only the credentials it is bound to, from its allowed addresses.
    Connector,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Operator, Role::Auditor, Role::TenantAdmin, Role::Connector];

    /// The role as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::TenantAdmin => "tenant-admin",
            Role::Connector => "connector",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that names no role.
#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}: expected operator, auditor, tenant-admin or connector")]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.chars().take(32).collect()))
    }
}
