//! Every action the audit log records, in one table: its name (what the log and every export
//! show), the permission that gates it (a variant of the core's `policy::Action`, or who acts
//! when no caller's permission is involved), and what it means. The name is turned into text
//! only where a record is written or shown; everywhere else an action is an [`AuditAction`].
//!
//! `docs/audit.md` lists the same table for readers; a test keeps the two in step.

macro_rules! audit_actions {
    ($($variant:ident = $name:literal, $gate:literal, $what:literal;)*) => {
        /// An action of the audit log. See the module documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $(#[doc = $what] $variant,)*
        }

        impl AuditAction {
            /// Every action, in the order of the table.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            /// The name the audit log records, e.g. `cred.reveal`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $name,)*
                }
            }

            /// The permission that gates the action: a variant of `policy::Action`, or `system`
            /// (the server's own work), `link` (a reset link's holder), `token` (anyone who
            /// presents a token, before any permission is looked at), `unseal` (a share holder).
            pub const fn gate(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $gate,)*
                }
            }

            /// What the action means, in one sentence.
            pub const fn description(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $what,)*
                }
            }
        }
    };
}

audit_actions! {
    SysInit = "system.init", "system", "The audit chain key was created (first start of a database).";
    SysStatus = "sys.status", "ReadStatus", "A caller read the server's status.";
    SysMounts = "sys.mounts", "token", "A caller read the Vault-compatible mount table (its one KV mount; no name, no secret).";
    SysSeal = "sys.seal", "ManageKeys", "The vault was sealed: keys wiped from memory, requests refused until unsealed.";
    SysUnseal = "sys.unseal", "unseal", "The vault was unsealed with Shamir shares (with the sources of the shares).";
    HttpAuth = "http.auth", "token", "A request with a body was refused before its body was read: no valid token, or a source its token may not use.";
    AuthFailures = "auth.failures", "token", "The refused requests of one source over a failure window, counted in one event.";
    AuthThrottled = "auth.throttled", "token", "The requests of one token refused over its role's rate limit in one window, after the first (audited as itself), counted in one event.";
    AuditRead = "audit.read", "ReadAudit", "A caller read audit events.";
    AuditVerify = "audit.verify", "ReadAudit", "A caller checked the audit chain.";
    AuditTree = "audit.tree", "ReadAudit", "A caller read the head of the audit log's Merkle tree.";
    AuditProve = "audit.prove", "ReadAudit", "A caller asked for an inclusion or consistency proof.";
    AuditCheckpoint = "audit.checkpoint", "ReadAudit", "A caller read the latest signed checkpoint, or had one signed now.";
    AuditRollback = "audit.rollback", "system", "The log was found shorter than, or inconsistent with, a signed checkpoint: writes are refused until an operator accepts it.";
    AuditAccept = "audit.accept", "AcceptAuditLog", "An operator accepted the audit log as it is after a rollback was found (with the reason given).";
    IntegrityFail = "integrity.fail", "system", "A row failed its integrity check (a token row or a version's target fields changed outside Rekey).";
    IntegritySeal = "integrity.seal", "system", "Token rows stored before integrity MACs were given theirs.";
    TenantCreate = "tenant.create", "CreateTenant", "A tenant was created with its first key-encryption key.";
    TenantList = "tenant.list", "ListTenants", "A caller listed tenants.";
    TenantShow = "tenant.show", "ReadTenant", "A caller read one tenant.";
    TenantShred = "tenant.shred", "ManageKeys", "A tenant was crypto-shredded: its key-encryption keys destroyed.";
    TokenCreate = "token.create", "ManageTokens", "A token was created (its secret is shown once, never recorded).";
    TokenList = "token.list", "ListTokens", "A caller listed tokens.";
    TokenRevoke = "token.revoke", "ManageTokens", "A token was revoked.";
    TokenRenew = "token.renew", "token", "A token's holder renewed it (never past the limit its login set).";
    TokenRevokeSelf = "token.revoke-self", "token", "A token's holder revoked it.";
    AuthRolePut = "auth.role.put", "ManageAuthRoles", "An auth role was written: which issuer's JWTs a workload may log in with, and what a login grants.";
    AuthRoleDelete = "auth.role.delete", "ManageAuthRoles", "An auth role was deleted.";
    AuthRoleRead = "auth.role.read", "ReadAuthRoles", "A caller listed auth roles or read one.";
    AuthLogin = "auth.login", "jwt", "A workload logged in with a JWT, or was refused (with the claims that decided, never the JWT).";
    TokenLookupSelf = "token.lookup-self", "token", "A token's holder read what the token may do and until when.";
    CredPut = "cred.put", "PutCredential", "A new version of a credential was stored.";
    CredImport = "cred.import", "Import", "Credentials were imported in bulk.";
    CredShow = "cred.show", "ReadCredentialMeta", "A caller read a credential's metadata (never its secret).";
    CredList = "cred.list", "ReadCredentialMeta", "A caller listed credentials.";
    CredVersions = "cred.versions", "ReadCredentialMeta", "A caller listed a credential's versions.";
    CredReveal = "cred.reveal", "RevealCredential", "A credential's secret was revealed to a caller.";
    CredRollback = "cred.rollback", "RollbackCredential", "A credential was rolled back to an earlier version (as a new version).";
    CredRetarget = "cred.retarget", "RetargetCredential", "A credential's target fields were changed (as a new version).";
    CredPromote = "cred.promote", "PutCredential", "A pending version was made current.";
    CredDelete = "cred.delete", "DeleteCredential", "A credential was deleted.";
    CredBind = "cred.bind", "system", "Versions stored before target binding were bound to their targets.";
    CredSend = "cred.send", "system", "A secret is about to be sent to its target (who, which version, which target, why); recorded before it is decrypted.";
    CredVerify = "cred.verify", "UseConnector", "A credential was checked against its target.";
    CredRotations = "cred.rotations", "ReadCredentialMeta", "A caller listed a credential's rotations.";
    CredRotateStart = "cred.rotate.start", "UseConnector", "A rotation started: a new secret stored as pending.";
    CredRotateApply = "cred.rotate.apply", "system", "The target took the new secret.";
    CredRotatePromote = "cred.rotate.promote", "system", "A rotation's new version became current.";
    CredRotateRetire = "cred.rotate.retire", "system", "A rotation's old version was retired (and removed at the target where that is a step).";
    CredRotateWait = "cred.rotate.wait", "system", "A rotation could not reach its target and waits for the scheduler.";
    CredRotateFail = "cred.rotate.fail", "system", "A rotation failed.";
    CertIssue = "cert.issue", "ManageKeys", "A certificate was issued for a tenant's application.";
    CertList = "cert.list", "ReadKeys", "A caller listed certificates.";
    CertRevoke = "cert.revoke", "ManageKeys", "A certificate was revoked.";
    KeyList = "key.list", "ReadKeys", "A caller listed keys.";
    KeyShow = "key.show", "ReadKeys", "A caller read which data keys a key wraps.";
    KeyCreate = "key.create", "system", "A key job made a new key version.";
    KeyRegister = "key.register", "system", "A root key version held by the seal was registered with the store.";
    KeyRotate = "key.rotate", "ManageKeys", "A key rotation was asked for (a job records the work).";
    KeyRotatePrepare = "key.rotate.prepare", "ManageKeys", "New Shamir shares of a root key split were prepared.";
    KeyRewrap = "key.rewrap", "system", "A batch of wrapped keys was moved under a new key version.";
    KeyCompromise = "key.compromise", "ManageKeys", "A key was marked compromised (its data keys are rewrapped).";
    KeyDestroy = "key.destroy", "ManageKeys", "A key version was destroyed.";
    KeyJobs = "key.jobs", "ReadKeys", "A caller listed key jobs.";
    KeyJob = "key.job", "ReadKeys", "A caller read one key job.";
    KeyJobFinish = "key.job.finish", "system", "A key job finished (done or failed).";
    IncidentOpen = "incident.open", "ManageIncidents", "An incident was opened with its scope.";
    IncidentList = "incident.list", "ReadIncidents", "A caller listed incidents.";
    IncidentShow = "incident.show", "ReadIncidents", "A caller read an incident.";
    IncidentItems = "incident.items", "ReadIncidents", "A caller listed the credentials an incident reaches.";
    IncidentContain = "incident.contain", "ManageIncidents", "Containment of an incident was asked for.";
    IncidentContainPlan = "incident.contain.plan", "ManageIncidents", "The plan of a containment was shown (a dry run).";
    IncidentContained = "incident.contained", "ManageIncidents", "An incident's containment was carried out (tokens and certificates revoked, keys marked, reads frozen).";
    IncidentShare = "incident.share", "ReadIncidents", "A caller had an incident written as a STIX 2.1 bundle to share (with its TLP, and whether it names tenants).";
    IncidentClose = "incident.close", "ManageIncidents", "An incident was closed.";
    CampaignStart = "campaign.start", "ManageIncidents", "A rotation campaign started for an incident.";
    CampaignList = "campaign.list", "ReadIncidents", "A caller listed campaigns.";
    CampaignStatus = "campaign.status", "ReadIncidents", "A caller read a campaign's progress.";
    CampaignItems = "campaign.items", "ReadIncidents", "A caller listed a campaign's items.";
    CampaignReport = "campaign.report", "ReadIncidents", "A caller read a campaign's report.";
    CampaignFinish = "campaign.finish", "system", "A campaign finished: every item done, waived or failed.";
    CampaignItemWaive = "campaign.item.waive", "ManageIncidents", "An operator waived a campaign item.";
    CampaignItemWait = "campaign.item.wait", "system", "A campaign item waits (for the tenant admin, or for its target).";
    CampaignItemRetry = "campaign.item.retry", "system", "A campaign item failed a step and will be retried.";
    CampaignItemFail = "campaign.item.fail", "system", "A campaign item failed for good.";
    CampaignItemRetire = "campaign.item.retire", "system", "A campaign item's old version was retired: the item is done.";
    CampaignLinkIssue = "campaign.link.issue", "system", "A single-use reset link was issued to a tenant admin.";
    CampaignNotifyQueue = "campaign.notify.queue", "system", "Notices of a campaign were queued.";
    CampaignNotify = "campaign.notify", "system", "A notice was delivered (or its delivery failed).";
    CampaignRemind = "campaign.remind", "system", "Reminders were queued before a campaign's deadline.";
    DecoyPlant = "decoy.plant", "ManageDecoys", "A plant of decoy credentials was refused or failed (a plant that succeeds is recorded as the ordinary `cred.put` of each decoy).";
    DecoyList = "decoy.list", "ManageDecoys", "An operator listed a tenant's decoy credentials (decoys are planted as ordinary `cred.put` events, so that only operators can tell them apart).";
    AlertRaise = "alert.raise", "system", "A detection rule raised an alert (its rule and severity; the alert itself names the principal and what it touched).";
    AlertAct = "alert.act", "system", "A rule's automatic action on an alert was carried out (a token revoked, an incident opened and its credentials frozen), or failed.";
    FeedRead = "feed.read", "system", "A threat feed was read and what it lists changed (indicators taken, revoked, not understood).";
    AlertList = "alert.list", "ManageAlerts", "An operator listed alerts.";
    AlertShow = "alert.show", "ManageAlerts", "An operator read an alert.";
    AlertAck = "alert.ack", "ManageAlerts", "An operator acknowledged an alert (with a note).";
    AlertEscalate = "alert.escalate", "ManageAlerts", "An operator turned an alert into an incident with its scope filled in.";
    LinkView = "link.view", "link", "A reset link's page was opened.";
    LinkSubmit = "link.submit", "link", "A new secret was submitted through a reset link.";
    LinkFailures = "link.failures", "link", "The refused reset-link attempts of one source over a failure window, counted in one event.";
    TestDowngrade = "test.downgrade", "system", "Versions were rewritten to the format before target binding (a tool of the tests and benchmarks; the server never calls it).";
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuditAction {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|a| a.as_str() == s).ok_or(UnknownAction)
    }
}

/// A name that is no action of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownAction;

impl std::fmt::Display for UnknownAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not an audit action")
    }
}

impl std::error::Error for UnknownAction {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for a in AuditAction::ALL {
            assert!(seen.insert(a.as_str()), "{} twice", a.as_str());
            assert_eq!(a.as_str().parse::<AuditAction>(), Ok(*a));
            assert!(!a.description().is_empty() && !a.gate().is_empty());
        }
        assert_eq!("cred.nothing".parse::<AuditAction>(), Err(UnknownAction));
    }

    /// `docs/audit.md` lists every action with its gate and description, as the table says.
    #[test]
    fn the_docs_list_every_action() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/audit.md"))
            .expect("docs/audit.md");
        for a in AuditAction::ALL {
            let row = format!("| `{}` | {} | {} |", a.as_str(), a.gate(), a.description());
            assert!(doc.contains(&row), "docs/audit.md lacks the row:\n{row}");
        }
    }
}
