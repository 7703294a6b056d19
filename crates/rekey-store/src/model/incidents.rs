//! Rows of incidents: the incident, its scope and its reach.

use std::collections::BTreeMap;

use rekey_types::{CredentialId, CredentialKind, IncidentId, IncidentState, TenantId, Timestamp};

/// An incident. `scope` holds the selectors as typed; `reasons[i]` is what bit `i` of a
/// credential's reasons means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRow {
    /// Its id.
    pub id: IncidentId,
    /// Its title.
    pub title: String,
    /// Its scope selectors, as typed.
    pub scope: Vec<String>,
    /// What each reason bit means (a selector, as typed).
    pub reasons: Vec<String>,
    /// Only these kinds are in scope, if set.
    pub kinds: Option<Vec<CredentialKind>>,
    /// When the exposure began.
    pub since: Option<Timestamp>,
    /// `open` or `closed`.
    pub state: IncidentState,
    /// Whether reveals of its credentials are frozen.
    pub frozen: bool,
    /// Credentials in scope.
    pub affected: i64,
    /// The blast radius in numbers.
    pub counts: IncidentCounts,
    /// Who opened it.
    pub created_by: String,
    /// Credentials created after this are not in scope.
    pub created_at: Timestamp,
    /// When it was contained.
    pub contained_at: Option<Timestamp>,
    /// When it was closed.
    pub closed_at: Option<Timestamp>,
}

/// The blast radius in numbers, computed when the incident opens.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncidentCounts {
    /// Credentials in scope, by region.
    pub by_region: BTreeMap<String, i64>,
    /// Credentials in scope, by kind.
    pub by_kind: BTreeMap<String, i64>,
    /// The 50 largest tenants, largest first.
    pub by_tenant: Vec<(String, i64)>,
}

/// One way credentials enter an incident's scope, resolved to ids; `bit` is its reason's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeQuery {
    /// Every tenant, whole.
    AllTenants {
        /// The reason's bit.
        bit: u8,
    },
    /// Tenants of a region, whole.
    Region {
        /// The region.
        region: String,
        /// The reason's bit.
        bit: u8,
    },
    /// These tenants, whole.
    Tenants {
        /// The tenants.
        ids: Vec<TenantId>,
        /// The reason's bit.
        bit: u8,
    },
    /// The credential.
    /// Tenants with a KEK version wrapped by this root version, whole.
    /// Its tenant's name.
    RootKey {
        /// Its tenant's region.
        /// The root key version.
        /// Its name.
        version: u32,
        /// Its kind.
        /// The reason's bit.
        bit: u8,
    },
    /// These credentials.
    Credentials {
        /// The credentials.
        ids: Vec<CredentialId>,
        /// The reason's bit.
        bit: u8,
    },
    /// Credentials of the tenant with a version wrapped by this KEK version.
    TenantKek {
        /// The tenant.
        tenant: TenantId,
        /// Its key version.
        version: u32,
        /// The reason's bit.
        bit: u8,
    },
    /// The credential holding this certificate (SHA-1 or SHA-256, hex).
    Certificate {
        /// SHA-1 or SHA-256, hex.
        thumbprint: String,
        /// The reason's bit.
        bit: u8,
    },
}

/// A credential in an incident's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentItemRow {
    /// The credential.
    pub credential_id: CredentialId,
    /// Its tenant's name.
    pub tenant: String,
    /// Its tenant's region.
    pub region: String,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: CredentialKind,
    /// Bits into the incident's `reasons`.
    pub reasons: u64,
}

/// Where a principal acted from: one source address's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUse {
    /// The address.
    pub source: String,
    /// Its events, any action and outcome.
    pub events: i64,
    /// Its successful reveals.
    pub reveals: i64,
    /// The distinct credentials they read.
    pub credentials: i64,
    /// Its first event.
    pub first: Timestamp,
    /// Its last event.
    pub last: Timestamp,
}
