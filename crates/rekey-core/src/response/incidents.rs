//! Incidents: a declared exposure, its blast radius, and containment.
//!
//! `incident open` parses the scope selectors, resolves each to ids (an unknown key version,
//! certificate, token, tenant or credential is an error, not an empty result), and stores the
//! incident with every credential in scope and the reasons it is, in one write with its audit
//! event. The list is frozen at that moment: rotating a key afterwards does not shrink it.
//!
//! `incident contain` turns the scope into actions: key versions marked compromised (and
//! rotated off), tokens revoked, certificates revoked, and with `--freeze` every credential in
//! scope refused to connectors until a new version of it is current. Each action is audited
//! twice: by the use case that does it, and on the incident's timeline (resource
//! `incident:<id>`), which `incident show` reads back from the audit log.

use std::collections::{BTreeMap, HashMap};

use rekey_store::{IncidentItemRow, IncidentRow, ScopeQuery, WriteOp};
use rekey_types::{
    AuditAction, CredRef, CredentialKind, IncidentId, IncidentState, KeyRef, Role, Selector, TenantName, Timestamp,
    TokenId,
};
use serde::{Deserialize, Serialize};

use crate::kernel::policy::Action;
use crate::views::AuditEventView;
use crate::{Caller, CoreError, Vault};

/// Most selectors in one scope.
/// Most scope selectors an incident may have.
pub const MAX_SELECTORS: usize = 100;

/// `incident open`: a title, a scope, and when the exposure began.
#[derive(Debug, Clone, Deserialize)]
pub struct OpenIncident {
    /// One line, 1 to 200 characters.
    pub title: String,
    /// Scope selectors (docs/incidents.md).
    pub scope: Vec<String>,
    /// When the exposure began: reveals since then are counted.
    #[serde(default)]
    pub since: Option<Timestamp>,
}

/// An incident: a declared exposure, its blast radius, and what was done about it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncidentView {
    /// The incident's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its scope selectors.
    pub scope: Vec<String>,
    /// When the exposure began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// `open` or `closed`.
    pub state: IncidentState,
    /// Whether reveals of its credentials are frozen until each is rotated.
    pub frozen: bool,
    /// Credentials in scope.
    pub affected: i64,
    /// Who opened it.
    pub created_by: String,
    /// When it was opened.
    pub created_at: Timestamp,
    /// When it was contained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contained_at: Option<Timestamp>,
    /// When it was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
}

impl From<IncidentRow> for IncidentView {
    fn from(r: IncidentRow) -> Self {
        Self {
            id: r.id.to_string(),
            title: r.title,
            scope: r.scope,
            since: r.since,
            state: r.state,
            frozen: r.frozen,
            affected: r.affected,
            created_by: r.created_by,
            created_at: r.created_at,
            contained_at: r.contained_at,
            closed_at: r.closed_at,
        }
    }
}

/// `incident show`: the incident, its counts, the reveals of its credentials, its timeline.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncidentReport {
    /// The incident.
    pub incident: IncidentView,
    /// Credentials in scope, by region.
    pub by_region: BTreeMap<String, i64>,
    /// The largest tenants (up to 50), largest first.
    pub by_tenant: Vec<(String, i64)>,
    /// Credentials in scope, by kind.
    pub by_kind: BTreeMap<String, i64>,
    /// With `since`: successful reveals of credentials in scope since then, and of how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveals_since: Option<RevealCount>,
    /// Its audit events, oldest first.
    pub timeline: Vec<AuditEventView>,
}

/// Reveals of credentials in scope since the incident's `since`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RevealCount {
    /// Successful reveals.
    pub reveals: i64,
    /// Of how many credentials.
    pub credentials: i64,
}

/// One credential in scope.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct IncidentItemView {
    /// The credential's tenant.
    pub tenant: String,
    /// The tenant's region.
    pub region: String,
    /// The credential's name.
    pub name: String,
    /// Its kind.
    pub kind: CredentialKind,
    /// Why it is in scope: the selectors that match it.
    pub reasons: String,
    /// Successful reveals since the incident's `since` (0 without one).
    pub reveals_since: i64,
}

/// One containment action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ContainAction {
    /// `compromise-key`, `revoke-token`, `revoke-certificate` or `freeze`.
    pub action: String,
    /// What it acts on: a key version, a token id, a thumbprint, a credential.
    pub target: String,
    /// `planned` (dry run), `done`, `skipped` (nothing to do) or `failed`.
    pub outcome: String,
    /// What happened, for a person.
    pub detail: String,
}

/// `incident contain`: what was done, or with `dry_run` what would be.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContainReport {
    /// The incident's id.
    pub incident: String,
    /// Whether nothing was done.
    pub dry_run: bool,
    /// Each action and its outcome.
    pub actions: Vec<ContainAction>,
}

fn bad(e: impl std::fmt::Display) -> CoreError {
    CoreError::BadRequest(e.to_string())
}

/// The longest title, in characters.
pub const MAX_TITLE: usize = 200;

/// Most reasons an incident can tell apart (bits of a 64-bit integer, sign bit unused).
const MAX_REASONS: usize = 63;

/// A resolved scope: what to add, why (by bit), and which kinds to keep.
#[derive(Default)]
struct Scope {
    queries: Vec<ScopeQuery>,
    reasons: Vec<String>,
    kinds: Option<Vec<CredentialKind>>,
}

impl Scope {
    /// The bit of a reason, added if new.
    fn reason(&mut self, text: String) -> Result<u8, CoreError> {
        if let Some(i) = self.reasons.iter().position(|r| *r == text) {
            return Ok(i as u8);
        }
        if self.reasons.len() == MAX_REASONS {
            return Err(bad(format!("a scope tells apart at most {MAX_REASONS} reasons; split the incident")));
        }
        self.reasons.push(text);
        Ok((self.reasons.len() - 1) as u8)
    }
}

/// The reasons a credential is in scope, from its bits.
fn reason_text(reasons: &[String], bits: u64) -> String {
    reasons
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, r)| r.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Vault {
    async fn incident_row(&self, id: IncidentId) -> Result<IncidentRow, CoreError> {
        self.store().incident(id).await?.ok_or_else(|| CoreError::NotFound(format!("incident {id}")))
    }

    /// Turns parsed selectors into scope queries and their reasons (bit `i` of a credential's
    /// reasons is `reasons[i]`); anything named that does not exist is an error.
    async fn resolve_scope(&self, selectors: &[Selector]) -> Result<Scope, CoreError> {
        let mut scope = Scope::default();
        for selector in selectors {
            match selector {
                Selector::Key(KeyRef::Root(v)) => {
                    if !self.store().root_keys().await?.iter().any(|r| r.version == *v) {
                        return Err(bad(format!("scope key:root@{v}: there is no root key version {v}")));
                    }
                    let bit = scope.reason(format!("key:root@{v}"))?;
                    scope.queries.push(ScopeQuery::RootKey { version: *v, bit });
                }
                Selector::Key(KeyRef::Tenant(t, v)) => {
                    let tenant = self.scope_tenant(t, selector).await?;
                    if self.store().kek(tenant, *v).await?.is_none() {
                        return Err(bad(format!("scope {selector}: tenant {t} has no key version {v}")));
                    }
                    let bit = scope.reason(format!("key:{t}@{v}"))?;
                    scope.queries.push(ScopeQuery::TenantKek { tenant, version: *v, bit });
                }
                Selector::Cert(hex) => {
                    let cert = self.store().certificate(hex).await?.ok_or_else(|| {
                        bad(format!("scope {selector}: no certificate in the inventory has this thumbprint"))
                    })?;
                    let bit = scope.reason(format!("cert:{}", cert.sha1))?;
                    scope.queries.push(ScopeQuery::Certificate { thumbprint: cert.sha256, bit });
                }
                Selector::Token(id) => self.token_scope(*id, selector, &mut scope).await?,
                Selector::Region(regions) => {
                    for region in regions {
                        let bit = scope.reason(format!("region:{region}"))?;
                        scope.queries.push(ScopeQuery::Region { region: region.to_string(), bit });
                    }
                }
                Selector::Tenant(names) => {
                    for name in names {
                        let id = self.scope_tenant(name, selector).await?;
                        let bit = scope.reason(format!("tenant:{name}"))?;
                        scope.queries.push(ScopeQuery::Tenants { ids: vec![id], bit });
                    }
                }
                Selector::Kind(list) => scope.kinds.get_or_insert_with(Vec::new).extend(list.iter().copied()),
                Selector::Cred(cref) => {
                    let id = self.scope_credential(cref, selector).await?;
                    let bit = scope.reason(format!("cred:{cref}"))?;
                    scope.queries.push(ScopeQuery::Credentials { ids: vec![id], bit });
                }
            }
        }
        if scope.queries.is_empty() {
            // Only kinds: every credential of those kinds.
            let names: Vec<&str> = scope.kinds.iter().flatten().map(|k| k.as_str()).collect();
            let bit = scope.reason(format!("kind:{}", names.join(",")))?;
            scope.queries.push(ScopeQuery::AllTenants { bit });
        }
        Ok(scope)
    }

    async fn scope_tenant(&self, name: &TenantName, selector: &Selector) -> Result<rekey_types::TenantId, CoreError> {
        Ok(self
            .store()
            .tenant_by_name(name)
            .await?
            .ok_or_else(|| bad(format!("scope {selector}: there is no tenant {name}")))?
            .id)
    }

    async fn scope_credential(
        &self,
        cref: &CredRef,
        selector: &Selector,
    ) -> Result<rekey_types::CredentialId, CoreError> {
        let tenant = self.scope_tenant(&cref.tenant, selector).await?;
        Ok(self
            .store()
            .credential(tenant, cref.name.as_str())
            .await?
            .ok_or_else(|| bad(format!("scope {selector}: there is no credential {cref}")))?
            .id)
    }

    /// What a token could reveal (by its role and bindings), and what it did reveal (audit log).
    async fn token_scope(&self, id: TokenId, selector: &Selector, scope: &mut Scope) -> Result<(), CoreError> {
        let token =
            self.store().token(id).await?.ok_or_else(|| bad(format!("scope {selector}: there is no token {id}")))?;
        let could = scope.reason(format!("token:{id} could reveal it"))?;
        match token.role {
            Role::Operator => scope.queries.push(ScopeQuery::AllTenants { bit: could }),
            Role::Connector => {
                if let Some(tenant) = token.tenant_id {
                    let mut ids = Vec::new();
                    for name in &token.bound {
                        if let Some(c) = self.store().credential(tenant, name).await? {
                            ids.push(c.id);
                        }
                    }
                    scope.queries.push(ScopeQuery::Credentials { ids, bit: could });
                }
            }
            Role::Auditor | Role::TenantAdmin => {}
        }
        let mut revealed = Vec::new();
        for (resource, _) in self.store().reveals_by(&format!("token:{id}")).await? {
            let Ok(cref) = CredRef::parse(&resource) else { continue };
            let Some(tenant) = self.store().tenant_by_name(&cref.tenant).await? else { continue };
            if let Some(c) = self.store().credential(tenant.id, cref.name.as_str()).await? {
                revealed.push(c.id);
            }
        }
        if !revealed.is_empty() {
            let bit = scope.reason(format!("token:{id} revealed it"))?;
            scope.queries.push(ScopeQuery::Credentials { ids: revealed, bit });
        }
        Ok(())
    }

    /// `rekey incident open`.
    pub async fn open_incident(&self, caller: &Caller, input: OpenIncident) -> Result<IncidentReport, CoreError> {
        let id = IncidentId::generate();
        let resource = format!("incident:{id}");
        let op = match self.incident_to_open(caller, id, input).await {
            Ok(op) => op,
            Err(e) => return self.finish(caller, AuditAction::IncidentOpen, &resource, Err(e)).await,
        };
        let detail = opened_detail(&op);
        self.commit(caller, AuditAction::IncidentOpen, &resource, op, &detail).await?;
        self.report(id).await
    }

    /// The write that opens incident `id`, its scope resolved, if the caller may open it.
    pub(crate) async fn incident_to_open(
        &self,
        caller: &Caller,
        id: IncidentId,
        input: OpenIncident,
    ) -> Result<WriteOp, CoreError> {
        {
            self.authorize(caller, Action::ManageIncidents, "incidents")?;
            let title = rekey_types::text::line("the title", &input.title, MAX_TITLE).map_err(bad)?.to_owned();
            if input.scope.is_empty() {
                return Err(bad("an incident needs a scope: at least one --scope selector"));
            }
            if input.scope.len() > MAX_SELECTORS {
                return Err(bad(format!("at most {MAX_SELECTORS} scope selectors")));
            }
            let selectors: Vec<Selector> =
                input.scope.iter().map(|s| s.parse::<Selector>().map_err(bad)).collect::<Result<_, _>>()?;
            let scope = self.resolve_scope(&selectors).await?;
            let row = IncidentRow {
                id,
                title,
                scope: selectors.iter().map(ToString::to_string).collect(),
                reasons: scope.reasons,
                kinds: scope.kinds,
                since: input.since,
                state: IncidentState::Open,
                frozen: false,
                affected: 0,
                counts: Default::default(),
                created_by: caller.principal.audit_name(),
                created_at: Timestamp::now(),
                contained_at: None,
                closed_at: None,
            };
            Ok(WriteOp::OpenIncident { incident: row, scope: scope.queries })
        }
    }

    pub(crate) async fn report(&self, id: IncidentId) -> Result<IncidentReport, CoreError> {
        let incident = self.incident_row(id).await?;
        let reveals_since = match incident.since {
            Some(since) => {
                let (reveals, credentials) = self.store().incident_reveals(&incident, since).await?;
                Some(RevealCount { reveals, credentials })
            }
            None => None,
        };
        // What was done, not who looked at it.
        let timeline = self
            .store()
            .audit_of(&format!("incident:{id}"), 1000)
            .await?
            .into_iter()
            .filter(|e| !matches!(e.record.action.parse(), Ok(AuditAction::IncidentShow | AuditAction::IncidentItems)))
            .map(crate::audit::view)
            .collect();
        let counts = incident.counts.clone();
        Ok(IncidentReport {
            incident: incident.into(),
            by_region: counts.by_region,
            by_tenant: counts.by_tenant,
            by_kind: counts.by_kind,
            reveals_since,
            timeline,
        })
    }

    /// `rekey incident show`.
    pub async fn show_incident(&self, caller: &Caller, id: IncidentId) -> Result<IncidentReport, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadIncidents, "incidents")?;
            self.report(id).await
        }
        .await;
        self.finish(caller, AuditAction::IncidentShow, &format!("incident:{id}"), result).await
    }

    /// `rekey incident list`.
    pub async fn list_incidents(&self, caller: &Caller) -> Result<Vec<IncidentView>, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadIncidents, "incidents")?;
            Ok(self.store().incidents(1000).await?.into_iter().map(IncidentView::from).collect())
        }
        .await;
        self.finish(caller, AuditAction::IncidentList, "", result).await
    }

    /// A page of the credentials in scope, with their reveals since the incident's `since`.
    pub async fn incident_items(
        &self,
        caller: &Caller,
        id: IncidentId,
        after: Option<CredRef>,
        limit: u32,
    ) -> Result<Vec<IncidentItemView>, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadIncidents, "incidents")?;
            let incident = self.incident_row(id).await?;
            let after = after.map(|a| (a.tenant.to_string(), a.name.to_string()));
            self.incident_item_page(&incident, after, limit).await
        }
        .await;
        self.finish(caller, AuditAction::IncidentItems, &format!("incident:{id}"), result).await
    }

    /// A page of an incident's credentials after `(tenant, name)`, with their reasons and reveals.
    pub(crate) async fn incident_item_page(
        &self,
        incident: &IncidentRow,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<IncidentItemView>, CoreError> {
        let rows: Vec<IncidentItemRow> = self.store().incident_items(incident, after, limit.clamp(1, 10_000)).await?;
        let mut reveals: HashMap<String, i64> = HashMap::new();
        if let Some(since) = incident.since {
            let resources = rows.iter().map(|r| format!("{}/{}", r.tenant, r.name)).collect();
            reveals.extend(self.store().reveal_counts(resources, since).await?);
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                let key = format!("{}/{}", r.tenant, r.name);
                IncidentItemView {
                    reveals_since: reveals.get(&key).copied().unwrap_or(0),
                    tenant: r.tenant,
                    region: r.region,
                    name: r.name,
                    kind: r.kind,
                    reasons: reason_text(&incident.reasons, r.reasons),
                }
            })
            .collect())
    }

    /// `rekey incident contain`: compromise the key versions, revoke the tokens and
    /// certificates in scope, and with `freeze` refuse the credentials in scope to connectors.
    pub async fn contain_incident(
        &self,
        caller: &Caller,
        id: IncidentId,
        freeze: bool,
        dry_run: bool,
    ) -> Result<ContainReport, CoreError> {
        let resource = format!("incident:{id}");
        let planned = async {
            self.authorize(caller, Action::ManageIncidents, "incidents")?;
            let incident = self.incident_row(id).await?;
            if incident.state != IncidentState::Open {
                return Err(CoreError::Conflict(format!("incident {id} is closed")));
            }
            let mut plan = Vec::new();
            for s in &incident.scope {
                let Ok(selector) = s.parse::<Selector>() else { continue };
                let (action, target) = match selector {
                    Selector::Key(k) => ("compromise-key", k.to_string()),
                    Selector::Token(t) => ("revoke-token", t.to_string()),
                    Selector::Cert(c) => ("revoke-certificate", c),
                    _ => continue,
                };
                plan.push(ContainAction {
                    action: action.into(),
                    target,
                    outcome: "planned".into(),
                    detail: String::new(),
                });
            }
            if freeze {
                plan.push(ContainAction {
                    action: "freeze".into(),
                    target: format!("{} credentials", incident.affected),
                    outcome: "planned".into(),
                    detail: "connectors may not reveal them until each is rotated".into(),
                });
            }
            Ok(plan)
        }
        .await;
        let plan = match planned {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::IncidentContain, &resource, Err(e)).await,
        };
        if dry_run {
            let report = ContainReport { incident: id.to_string(), dry_run: true, actions: plan };
            return self
                .finish_with(caller, AuditAction::IncidentContainPlan, &resource, Ok(report), |r| {
                    format!("{} actions planned", r.actions.len())
                })
                .await;
        }
        let mut done = Vec::new();
        for mut step in plan {
            let result: Result<String, CoreError> = match step.action.as_str() {
                "compromise-key" => match step.target.parse::<KeyRef>() {
                    Ok(key) => self.compromise(caller, &key).await.map(|job| format!("rotation job {}", job.id)),
                    Err(e) => Err(bad(e)),
                },
                "revoke-token" => match step.target.parse::<TokenId>() {
                    Ok(t) => self.revoke_token(caller, t).await.map(|()| "revoked".to_owned()),
                    Err(_) => Err(bad("not a token id")),
                },
                "revoke-certificate" => self
                    .revoke_certificate(caller, &step.target)
                    .await
                    .map(|c| format!("revoked {}/{}", c.tenant, c.credential)),
                _ => {
                    // The freeze is its own timeline event, written with the freeze itself.
                    let op = WriteOp::ContainIncident { id, freeze: true, at: Timestamp::now() };
                    let detail = format!("freeze {}: done", step.target);
                    self.commit(caller, AuditAction::IncidentContain, &resource, op, &detail).await?;
                    step.outcome = "done".into();
                    step.detail = "frozen".into();
                    done.push(step);
                    continue;
                }
            };
            match result {
                Ok(detail) => {
                    step.outcome = "done".into();
                    step.detail = detail;
                }
                Err(CoreError::Conflict(why) | CoreError::KeyDestroyed(why)) => {
                    step.outcome = "skipped".into();
                    step.detail = why;
                }
                Err(e) => {
                    step.outcome = "failed".into();
                    step.detail = e.to_string();
                }
            }
            let event = self.event(
                caller,
                AuditAction::IncidentContain,
                &resource,
                rekey_types::AuditOutcome::Success,
                &format!("{} {}: {}: {}", step.action, step.target, step.outcome, step.detail),
            );
            self.audit_event(event).await?;
            done.push(step);
        }
        if !freeze {
            let op = WriteOp::ContainIncident { id, freeze: false, at: Timestamp::now() };
            self.commit(caller, AuditAction::IncidentContained, &resource, op, &format!("{} actions", done.len()))
                .await?;
        }
        Ok(ContainReport { incident: id.to_string(), dry_run: false, actions: done })
    }

    /// `rekey incident close`.
    pub async fn close_incident(&self, caller: &Caller, id: IncidentId) -> Result<IncidentView, CoreError> {
        let resource = format!("incident:{id}");
        if let Err(e) = self.authorize(caller, Action::ManageIncidents, "incidents") {
            return self.finish(caller, AuditAction::IncidentClose, &resource, Err(e)).await;
        }
        let op = WriteOp::CloseIncident { id, at: Timestamp::now() };
        self.commit(caller, AuditAction::IncidentClose, &resource, op, "").await?;
        Ok(self.incident_row(id).await?.into())
    }
}

/// The detail of an `incident.open` event: its title and scope.
pub(crate) fn opened_detail(op: &WriteOp) -> String {
    match op {
        WriteOp::OpenIncident { incident, .. } => {
            format!("title={:?}; scope={}", incident.title, incident.scope.join(" "))
        }
        _ => String::new(),
    }
}
