//! `incident share`: an incident as a STIX 2.1 bundle for the community ([`crate::stix::bundle`]):
//! the addresses its stolen tokens were used from (from the audit log, since its `since`), its
//! stolen certificates, its counts and its timeline. No tenant is named unless asked (the counts
//! say how many; a title that names one of them is replaced), and no secret is ever in it.

use std::collections::BTreeMap;

use rekey_types::{AuditAction, IncidentId, Selector, Timestamp};

use crate::kernel::policy::Action;
use crate::stix::bundle::{self, Facts, Source, Tlp};
use crate::{Caller, CoreError, Vault};

/// How an incident is shared.
#[derive(Debug, Clone, Copy)]
pub struct ShareOptions {
    /// Its TLP 2.0 marking.
    pub tlp: Tlp,
    /// Name the tenants (their names are their customers').
    pub name_tenants: bool,
}

impl Vault {
    /// `incident share`: the bundle.
    pub async fn share_incident(
        &self,
        caller: &Caller,
        id: IncidentId,
        options: ShareOptions,
    ) -> Result<serde_json::Value, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadIncidents, "incidents")?;
            let report = self.report(id).await?;
            let incident = &report.incident;
            let since = incident.since.unwrap_or(Timestamp::from_micros(0));
            let mut by_address: BTreeMap<std::net::IpAddr, Source> = BTreeMap::new();
            let mut certificates = Vec::new();
            for s in &incident.scope {
                match s.parse::<Selector>() {
                    Ok(Selector::Token(t)) => {
                        for u in self.store().sources_of(&format!("token:{t}"), since).await? {
                            let Ok(address) = u.source.parse::<std::net::IpAddr>() else { continue };
                            let e = by_address.entry(address).or_insert(Source {
                                address,
                                events: 0,
                                reveals: 0,
                                credentials: 0,
                                first: u.first,
                                last: u.last,
                            });
                            e.events += u.events;
                            e.reveals += u.reveals;
                            e.credentials += u.credentials;
                            e.first = e.first.min(u.first);
                            e.last = e.last.max(u.last);
                        }
                    }
                    Ok(Selector::Cert(thumbprint)) => certificates.push(thumbprint.to_ascii_lowercase()),
                    _ => {}
                }
            }
            let tenants = &report.by_tenant;
            let named = |text: &str| {
                let lower = text.to_ascii_lowercase();
                tenants.iter().any(|(t, _)| lower.contains(t.as_str()))
            };
            let name = if options.name_tenants || !named(&incident.title) {
                incident.title.clone()
            } else {
                format!("Credential exposure opened {}", incident.created_at)
            };
            let regions: Vec<String> = report.by_region.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let kinds: Vec<String> = report.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let mut description = format!(
                "{} credentials held for customers by a multi-tenant service were exposed (by region: {}; by kind: {}).",
                incident.affected,
                regions.join(", "),
                kinds.join(", ")
            );
            if let Some(since) = incident.since {
                description.push_str(&format!(" The exposure began {since}."));
            }
            if let Some(r) = report.reveals_since {
                description.push_str(&format!(" {} reads of {} of them since.", r.reveals, r.credentials));
            }
            if let Some(t) = incident.contained_at {
                description.push_str(&format!(" Contained {t}."));
            }
            if options.name_tenants && !tenants.is_empty() {
                let list: Vec<String> = tenants.iter().map(|(t, n)| format!("{t} ({n})")).collect();
                description.push_str(&format!(" Tenants: {}.", list.join(", ")));
            }
            let timeline = report
                .timeline
                .iter()
                .filter(|e| e.action != AuditAction::IncidentShare.as_str())
                .map(|e| {
                    if options.name_tenants {
                        format!("{} {} {} {}", e.time, e.action, e.outcome, e.detail)
                    } else {
                        format!("{} {} {}", e.time, e.action, e.outcome)
                    }
                })
                .collect();
            let facts = Facts {
                publisher: self.options().detect.publisher.clone(),
                incident_id: incident.id.clone(),
                name,
                description,
                opened: incident.created_at,
                since: incident.since,
                sources: by_address.into_values().collect(),
                certificates,
                timeline,
                now: Timestamp::now(),
            };
            Ok(bundle::bundle(&facts, options.tlp))
        }
        .await;
        let detail =
            format!("tlp={}; tenants named: {}", options.tlp.word(), if options.name_tenants { "yes" } else { "no" });
        self.finish_with(caller, AuditAction::IncidentShare, &format!("incident:{id}"), result, |_| detail).await
    }
}
