//! Who may do what: the one place that decides every permission.
//!
//! | role | may |
//! |---|---|
//! | operator | everything |
//! | auditor | status, metadata (tenants, credentials, versions, tokens, keys, certificates, incidents) and the audit log; never a secret, never a write |
//! | tenant-admin | for its own tenant: show the tenant, put, show, list, versions, rollback, verify, rotate; write a secret but never read one back |
//! | connector | reveal the credentials it is bound to, of its own tenant, from its allowed networks; nothing else |
//!
//! A connector or tenant-admin asking about another tenant's credential is told "not found",
//! exactly as if it did not exist: a denial must not confirm that a name exists.

use std::net::IpAddr;

use ipnet::IpNet;
use rekey_types::{CredRef, RequestId, Role, TenantId, TenantName, TokenId};

/// An authenticated token's powers.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's id.
    pub token_id: TokenId,
    /// Its role.
    pub role: Role,
    /// Its tenant, for `tenant-admin` and `connector` tokens.
    pub tenant: Option<(TenantId, TenantName)>,
    /// What a `connector` token may reveal (credential names in its tenant).
    pub bound: Vec<String>,
    /// Where it may be used from (empty: anywhere).
    pub cidrs: Vec<IpNet>,
    /// The server's own work acting with an operator's powers (a detection rule's automatic
    /// action), under this name; never a token.
    pub system: Option<&'static str>,
}

impl Principal {
    /// How the audit log names it: `token:<id>`, or the server's own name for its work.
    pub fn audit_name(&self) -> String {
        match self.system {
            Some(name) => name.to_owned(),
            None => format!("token:{}", self.token_id),
        }
    }
}

impl Caller {
    /// The server's own work, acting as an operator under `name` (e.g. `system:detector`),
    /// from no address. Only the core builds one; no request can.
    pub(crate) fn system(name: &'static str) -> Self {
        Caller {
            principal: Principal {
                token_id: "00000000-0000-0000-0000-000000000000".parse().expect("the nil UUID"),
                role: Role::Operator,
                tenant: None,
                bound: Vec::new(),
                cidrs: Vec::new(),
                system: Some(name),
            },
            source: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            request_id: RequestId::generate(),
        }
    }

    /// The source as the audit log records it: empty for the server's own work.
    pub fn audit_source(&self) -> String {
        if self.principal.system.is_some() {
            String::new()
        } else {
            self.source.to_string()
        }
    }
}

/// Who is asking, from where, in which request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's powers.
    pub principal: Principal,
    /// The request's source address.
    pub source: IpAddr,
    /// The request's id.
    pub request_id: RequestId,
}

/// What a caller wants to do.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// `sys status`.
    ReadStatus,
    /// Create a tenant.
    CreateTenant,
    /// List tenants.
    ListTenants,
    /// Show a tenant.
    ReadTenant(&'a TenantName),
    /// Store a credential version in a tenant.
    PutCredential(&'a TenantName),
    /// Show, list within a tenant, versions.
    ReadCredentialMeta(&'a TenantName),
    /// List across tenants.
    ListAllCredentials,
    /// Reveal a credential's secret.
    RevealCredential(&'a CredRef),
    /// Roll a credential back.
    RollbackCredential(&'a TenantName),
    /// Delete a credential.
    DeleteCredential(&'a TenantName),
    /// Import credentials.
    Import,
    /// Create or revoke tokens.
    ManageTokens,
    /// List tokens.
    ListTokens,
    /// Write or delete the auth roles that let workloads log in with a JWT.
    ManageAuthRoles,
    /// List and show auth roles.
    ReadAuthRoles,
    /// Read or verify the audit log.
    ReadAudit,
    /// Key list, key jobs, the certificate inventory.
    ReadKeys,
    /// Rotate, compromise, destroy, shred, seal, issue and revoke certificates.
    ManageKeys,
    /// Verify a credential against its target, or rotate it there (the secret stays inside).
    UseConnector(&'a TenantName),
    /// Incidents: show, list, their credentials.
    ReadIncidents,
    /// Open, contain, close incidents.
    ManageIncidents,
    /// Change where an existing secret goes without a new secret (`cred retarget`).
    RetargetCredential(&'a TenantName),
    /// Name a rotator or the subtrees it may reset, or write a rotator credential.
    ManageRotators(&'a TenantName),
    /// Reveal a version other than the current one (after `RevealCredential` was allowed).
    RevealVersion(&'a CredRef),
    /// Reveal a credential that an incident froze (after `RevealCredential` was allowed).
    RevealFrozen(&'a CredRef),
    /// End a freeze by putting a new secret of a `generic` credential (there is no target to
    /// verify it at, so the word of whoever puts it must do).
    LiftFreezeByPut,
    /// Accept the audit log as it is after it was found shorter than, or inconsistent with, a
    /// signed checkpoint.
    AcceptAuditLog,
    /// Plant and list decoy credentials (only operators may tell a decoy from a real one).
    ManageDecoys,
    /// List, read, acknowledge and escalate alerts (an alert of the decoy rule names a decoy).
    ManageAlerts,
}

impl Action<'_> {
    /// The variant's name: what the audit action table (`rekey_types::AuditAction::gate`) names.
    pub fn name(&self) -> &'static str {
        use Action::*;
        match self {
            ReadStatus => "ReadStatus",
            CreateTenant => "CreateTenant",
            ListTenants => "ListTenants",
            ReadTenant(_) => "ReadTenant",
            PutCredential(_) => "PutCredential",
            ReadCredentialMeta(_) => "ReadCredentialMeta",
            ListAllCredentials => "ListAllCredentials",
            RevealCredential(_) => "RevealCredential",
            RollbackCredential(_) => "RollbackCredential",
            DeleteCredential(_) => "DeleteCredential",
            Import => "Import",
            ManageTokens => "ManageTokens",
            ListTokens => "ListTokens",
            ManageAuthRoles => "ManageAuthRoles",
            ReadAuthRoles => "ReadAuthRoles",
            ReadAudit => "ReadAudit",
            ReadKeys => "ReadKeys",
            ManageKeys => "ManageKeys",
            UseConnector(_) => "UseConnector",
            ReadIncidents => "ReadIncidents",
            ManageIncidents => "ManageIncidents",
            RetargetCredential(_) => "RetargetCredential",
            ManageRotators(_) => "ManageRotators",
            AcceptAuditLog => "AcceptAuditLog",
            RevealVersion(_) => "RevealVersion",
            RevealFrozen(_) => "RevealFrozen",
            LiftFreezeByPut => "LiftFreezeByPut",
            ManageDecoys => "ManageDecoys",
            ManageAlerts => "ManageAlerts",
        }
    }
}

/// What every role but the operator is told about `RevealVersion`.
const OLD_VERSIONS: &str = "only operators may reveal a version other than the current one";

/// Why a request was refused. `Hidden` is answered as "not found".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Refused, with the reason the caller is told.
    Forbidden(&'static str),
    /// Refused as "not found", so as not to confirm that the resource exists.
    Hidden,
}

/// The policy. Pure: no I/O, so it can be tested over the whole matrix.
pub fn check(p: &Principal, action: Action<'_>) -> Result<(), Denial> {
    use Action::*;
    let own_tenant = |t: &TenantName| p.tenant.as_ref().is_some_and(|(_, name)| name == t);
    match p.role {
        Role::Operator => Ok(()),
        Role::Auditor | Role::TenantAdmin | Role::Connector if matches!(action, RevealVersion(_)) => {
            Err(Denial::Forbidden(OLD_VERSIONS))
        }
        Role::Auditor => match action {
            ReadStatus
            | ListTenants
            | ReadTenant(_)
            | ReadCredentialMeta(_)
            | ListAllCredentials
            | ListTokens
            | ReadAuthRoles
            | ReadAudit
            | ReadKeys
            | ReadIncidents => Ok(()),
            RevealCredential(_) => Err(Denial::Forbidden("auditors never read secrets")),
            _ => Err(Denial::Forbidden("auditors have read-only access to metadata and the audit log")),
        },
        Role::TenantAdmin => match action {
            ReadTenant(t) | PutCredential(t) | ReadCredentialMeta(t) | RollbackCredential(t) | UseConnector(t) => {
                if own_tenant(t) {
                    Ok(())
                } else {
                    Err(Denial::Hidden)
                }
            }
            RevealCredential(r) => {
                if own_tenant(&r.tenant) {
                    Err(Denial::Forbidden("tenant admins may write a secret but not read one back"))
                } else {
                    Err(Denial::Hidden)
                }
            }
            DeleteCredential(t) if !own_tenant(t) => Err(Denial::Hidden),
            RetargetCredential(t) | ManageRotators(t) if !own_tenant(t) => Err(Denial::Hidden),
            RetargetCredential(_) => {
                Err(Denial::Forbidden("only an operator may send a stored secret to another target"))
            }
            ManageRotators(_) => Err(Denial::Forbidden(
                "only an operator may name a rotator, set the subtrees it resets, or change a rotator credential",
            )),
            _ => Err(Denial::Forbidden("tenant admins manage only their own tenant's credentials")),
        },
        Role::Connector => match action {
            RevealCredential(r) => {
                if own_tenant(&r.tenant) && p.bound.iter().any(|b| b == r.name.as_str()) {
                    Ok(())
                } else {
                    Err(Denial::Hidden)
                }
            }
            RevealFrozen(_) => Err(Denial::Forbidden("connectors get a frozen credential again once it is rotated")),
            _ => Err(Denial::Forbidden("connector tokens may only reveal their bound credentials")),
        },
    }
}

/// Whether `source` is inside the principal's allowed networks (any, if none are set).
pub fn source_allowed(p: &Principal, source: IpAddr) -> bool {
    // An IPv4 client reached over an IPv6 socket shows up as ::ffff:a.b.c.d.
    let source = match source {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(source),
        v4 => v4,
    };
    p.cidrs.is_empty() || p.cidrs.iter().any(|net| net.contains(&source))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every gate of the audit action table is a permission of this policy or one of the
    /// principals that act without one.
    #[test]
    fn every_audit_action_is_gated_by_a_known_permission() {
        let t = TenantName::parse("acme").unwrap();
        let c = CredRef::parse("acme/ldap").unwrap();
        use Action::*;
        let all = [
            ReadStatus,
            CreateTenant,
            ListTenants,
            ReadTenant(&t),
            PutCredential(&t),
            ReadCredentialMeta(&t),
            ListAllCredentials,
            RevealCredential(&c),
            RollbackCredential(&t),
            DeleteCredential(&t),
            Import,
            ManageTokens,
            ListTokens,
            ManageAuthRoles,
            ReadAuthRoles,
            ReadAudit,
            ReadKeys,
            ManageKeys,
            UseConnector(&t),
            ReadIncidents,
            ManageIncidents,
            RetargetCredential(&t),
            ManageRotators(&t),
            RevealVersion(&c),
            RevealFrozen(&c),
            LiftFreezeByPut,
            AcceptAuditLog,
            ManageDecoys,
            ManageAlerts,
        ];
        let names: Vec<&str> = all.iter().map(Action::name).collect();
        for a in rekey_types::AuditAction::ALL {
            let gate = a.gate();
            assert!(
                names.contains(&gate) || ["system", "link", "token", "unseal", "jwt"].contains(&gate),
                "{} is gated by {gate}, which the policy does not know",
                a.as_str()
            );
        }
    }

    fn principal(role: Role, tenant: Option<&str>, bound: &[&str]) -> Principal {
        Principal {
            token_id: TokenId::generate(),
            role,
            tenant: tenant.map(|t| (TenantId::generate(), TenantName::parse(t).unwrap())),
            bound: bound.iter().map(|s| s.to_string()).collect(),
            cidrs: vec![],
            system: None,
        }
    }

    /// Decoys and alerts (an alert of the decoy rule names a decoy) are the operators' alone.
    #[test]
    fn only_operators_tell_decoys_apart() {
        let operator = principal(Role::Operator, None, &[]);
        assert_eq!(check(&operator, Action::ManageDecoys), Ok(()));
        assert_eq!(check(&operator, Action::ManageAlerts), Ok(()));
        for p in [
            principal(Role::Auditor, None, &[]),
            principal(Role::TenantAdmin, Some("acme"), &[]),
            principal(Role::Connector, Some("acme"), &["directory"]),
        ] {
            assert!(matches!(check(&p, Action::ManageDecoys), Err(Denial::Forbidden(_))), "{:?}", p.role);
            assert!(matches!(check(&p, Action::ManageAlerts), Err(Denial::Forbidden(_))), "{:?}", p.role);
        }
    }

    #[test]
    fn cidrs() {
        let mut p = principal(Role::Connector, Some("acme"), &["dir"]);
        assert!(source_allowed(&p, "10.1.2.3".parse().unwrap()));
        p.cidrs = vec!["127.0.0.1/32".parse().unwrap()];
        assert!(source_allowed(&p, "127.0.0.1".parse().unwrap()));
        assert!(source_allowed(&p, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!source_allowed(&p, "127.0.0.2".parse().unwrap()));
        assert!(!source_allowed(&p, "::1".parse().unwrap()));
    }

    #[test]
    fn connector_sees_only_bound_credentials_of_its_tenant() {
        let p = principal(Role::Connector, Some("acme"), &["directory"]);
        let mine = CredRef::parse("acme/directory").unwrap();
        let other_cred = CredRef::parse("acme/relay").unwrap();
        let other_tenant = CredRef::parse("globex/directory").unwrap();
        assert_eq!(check(&p, Action::RevealCredential(&mine)), Ok(()));
        assert_eq!(check(&p, Action::RevealCredential(&other_cred)), Err(Denial::Hidden));
        assert_eq!(check(&p, Action::RevealCredential(&other_tenant)), Err(Denial::Hidden));
        assert!(matches!(check(&p, Action::ReadCredentialMeta(&mine.tenant)), Err(Denial::Forbidden(_))));
    }

    #[test]
    fn old_versions_frozen_credentials_and_freeze_lifting_by_role() {
        let cref = CredRef::parse("acme/directory").unwrap();
        let operator = principal(Role::Operator, None, &[]);
        let auditor = principal(Role::Auditor, None, &[]);
        let admin = principal(Role::TenantAdmin, Some("acme"), &[]);
        let connector = principal(Role::Connector, Some("acme"), &["directory"]);
        assert_eq!(check(&operator, Action::RevealVersion(&cref)), Ok(()));
        for p in [&auditor, &admin, &connector] {
            assert_eq!(check(p, Action::RevealVersion(&cref)), Err(Denial::Forbidden(OLD_VERSIONS)), "{:?}", p.role);
            assert!(check(p, Action::LiftFreezeByPut).is_err(), "{:?}", p.role);
        }
        assert_eq!(check(&operator, Action::LiftFreezeByPut), Ok(()));
        assert_eq!(check(&operator, Action::RevealFrozen(&cref)), Ok(()));
        assert!(matches!(check(&connector, Action::RevealFrozen(&cref)), Err(Denial::Forbidden(_))));
    }
}
