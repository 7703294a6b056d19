//! Rows of incidents: the incident, its scope and its reach.

use std::collections::BTreeMap;

use rekey_types::{CredentialId, CredentialKind, IncidentId, IncidentState, TenantId, Timestamp};

/// An incident. `scope` holds the selectors as typed; `reasons[i]` is what bit `i` of a
/// credential's reasons means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRow {
    pub id: IncidentId,
    pub title: String,
    pub scope: Vec<String>,
    pub reasons: Vec<String>,
    /// Only these kinds are in scope, if set.
    pub kinds: Option<Vec<CredentialKind>>,
    pub since: Option<Timestamp>,
    /// `open` or `closed`.
    pub state: IncidentState,
    pub frozen: bool,
    pub affected: i64,
    pub counts: IncidentCounts,
    pub created_by: String,
    /// Credentials created after this are not in scope.
    pub created_at: Timestamp,
    pub contained_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
}

/// The blast radius in numbers, computed when the incident opens.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncidentCounts {
    pub by_region: BTreeMap<String, i64>,
    pub by_kind: BTreeMap<String, i64>,
    /// The 50 largest tenants, largest first.
    pub by_tenant: Vec<(String, i64)>,
}

/// One way credentials enter an incident's scope, resolved to ids; `bit` is its reason's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeQuery {
    /// Every tenant, whole.
    AllTenants { bit: u8 },
    /// Tenants of a region, whole.
    Region { region: String, bit: u8 },
    /// These tenants, whole.
    Tenants { ids: Vec<TenantId>, bit: u8 },
    /// Tenants with a KEK version wrapped by this root version, whole.
    RootKey { version: u32, bit: u8 },
    /// These credentials.
    Credentials { ids: Vec<CredentialId>, bit: u8 },
    /// Credentials of the tenant with a version wrapped by this KEK version.
    TenantKek { tenant: TenantId, version: u32, bit: u8 },
    /// The credential holding this certificate (SHA-1 or SHA-256, hex).
    Certificate { thumbprint: String, bit: u8 },
}

/// A credential in an incident's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentItemRow {
    pub credential_id: CredentialId,
    pub tenant: String,
    pub region: String,
    pub name: String,
    pub kind: CredentialKind,
    /// Bits into the incident's `reasons`.
    pub reasons: u64,
}
