//! Decoy credentials: stored like real ones (a sealed random secret, fields and labels copied
//! from a real credential of the tenant with the account's name changed, a name made from a
//! real one), bound to no connector, listed apart only for operators. Their plant is recorded
//! as the ordinary `cred.put` of each, so that no other role can tell them from the rest; the
//! registry that tells them apart is a table only operators' routes read (docs/detection.md).

use std::collections::{BTreeMap, BTreeSet};

use rekey_store::{CredentialFilter, CredentialRow, WriteOp};
use rekey_types::{AuditAction, CredRef, CredentialKind, Secret, TenantName, Timestamp};
use serde::{Deserialize, Serialize};

use crate::credentials::put::{prepare, NextVersion, PutInput, PutSecret};
use crate::kernel::policy::Action;
use crate::{Caller, CoreError, Vault};

/// Decoys planted by one request, at most.
pub const MAX_PLANT: u32 = 20;

/// Endings that make a plausible sibling of a real credential's name.
const ENDINGS: &[&str] =
    &["backup", "sync", "legacy", "dr", "archive", "ro", "svc2", "migration", "reports", "old", "batch", "test"];

/// `decoy plant`: which tenant, which kind (default: the tenant's most common), how many.
#[derive(Debug, Clone, Deserialize)]
pub struct PlantDecoys {
    /// The tenant.
    pub tenant: TenantName,
    /// The kind; default the tenant's most common kind (`generic` for a tenant with none).
    pub kind: Option<CredentialKind>,
    /// 1 to [`MAX_PLANT`].
    pub count: u32,
}

/// A decoy, as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DecoyView {
    /// `tenant/name`.
    pub credential: String,
    /// Its kind.
    pub kind: CredentialKind,
    /// Who planted it.
    pub planted_by: String,
    /// When.
    pub planted_at: Timestamp,
}

impl Vault {
    /// `decoy plant`: stores `count` decoys in the tenant, each a `cred.put` of its own.
    pub async fn plant_decoys(&self, caller: &Caller, input: PlantDecoys) -> Result<Vec<DecoyView>, CoreError> {
        let resource = format!("tenant:{}", input.tenant);
        if let Err(e) = self.authorize(caller, Action::ManageDecoys, "decoys") {
            return self.finish(caller, AuditAction::DecoyPlant, &resource, Err(e)).await;
        }
        if input.count == 0 || input.count > MAX_PLANT {
            let e = CoreError::BadRequest(format!("plant 1 to {MAX_PLANT} decoys at a time"));
            return self.finish(caller, AuditAction::DecoyPlant, &resource, Err(e)).await;
        }
        let tenant = match self.tenant(&input.tenant).await {
            Ok(t) => t,
            Err(e) => return self.finish(caller, AuditAction::DecoyPlant, &resource, Err(e)).await,
        };
        let mut planted = Vec::new();
        // A failure before a decoy's own write is recorded as the plant's (a write records its
        // own failure); the decoys planted before it stay.
        let result = self.plant_each(caller, &input, &tenant, &mut planted).await;
        if let Err(e) = result {
            return self.finish(caller, AuditAction::DecoyPlant, &resource, Err(e)).await;
        }
        Ok(planted)
    }

    async fn plant_each(
        &self,
        caller: &Caller,
        input: &PlantDecoys,
        tenant: &rekey_store::TenantRow,
        planted: &mut Vec<DecoyView>,
    ) -> Result<(), CoreError> {
        let decoys: BTreeSet<String> =
            self.store().decoys(Some(tenant.id)).await?.into_iter().map(|d| d.name).collect();
        let mut real = Vec::new();
        let mut taken = BTreeSet::new();
        let mut after = None;
        loop {
            let filter = CredentialFilter { tenant: Some(tenant.id), kind: None, region: None, after, limit: 1000 };
            let page = self.store().list_credentials(&filter).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.tenant.clone(), last.credential.name.clone()));
            for row in page {
                taken.insert(row.credential.name.clone());
                if !decoys.contains(&row.credential.name) {
                    real.push(row.credential);
                }
            }
        }
        let kind = input.kind.unwrap_or_else(|| most_common_kind(&real));
        let templates: Vec<&CredentialRow> = real.iter().filter(|c| c.kind == kind).collect();
        let by = caller.principal.audit_name();
        for i in 0..input.count as usize {
            let template = (!templates.is_empty()).then(|| templates[(i + random_index()) % templates.len()]);
            let name = fresh_name(template.map_or(kind.as_str(), |t| t.name.as_str()), &mut taken)?;
            let fields = decoy_fields(kind, template, &name, &input.tenant);
            let labels = template.map(|t| t.labels.clone()).unwrap_or_default();
            let secret =
                rekey_crypto::password::generate(24, rekey_crypto::password::ALNUM).map_err(CoreError::Crypto)?;
            let secret = Secret::new(secret.to_vec());
            let cref = CredRef::parse(&format!("{}/{name}", tenant.name))?;
            let put = prepare(PutInput { kind, fields, labels, secret: PutSecret::Opaque(secret) })?;
            let next = NextVersion {
                tenant: tenant.id,
                name: &name,
                kind,
                fields: put.fields,
                labels: put.labels,
                existing: None,
                created_by: &by,
                kek_version: None,
                pending: false,
            };
            let (op, credential) = self.sealed_version(next, &put.secret).await?;
            let now = Timestamp::now();
            let plant = WriteOp::PlantDecoy { credential: credential.id, tenant: tenant.id, by: by.clone(), at: now };
            // The very event a real put writes.
            let detail = format!("kind={kind}; version={}", credential.current_version);
            // Counted before the plant is committed, so that the detector, reading the count
            // after any event that touches the decoy, reads the registry with it.
            self.decoys_planted().fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.commit(caller, AuditAction::CredPut, &cref.to_string(), WriteOp::All(vec![op, plant]), &detail)
                .await?;
            planted.push(DecoyView { credential: cref.to_string(), kind, planted_by: by.clone(), planted_at: now });
        }
        Ok(())
    }

    /// `decoy list`: a tenant's decoys, or every tenant's.
    pub async fn list_decoys(&self, caller: &Caller, tenant: Option<TenantName>) -> Result<Vec<DecoyView>, CoreError> {
        let resource = tenant.as_ref().map(|t| format!("tenant:{t}")).unwrap_or_default();
        let result = async {
            self.authorize(caller, Action::ManageDecoys, "decoys")?;
            let id = match &tenant {
                Some(t) => Some(self.tenant(t).await?.id),
                None => None,
            };
            Ok(self
                .store()
                .decoys(id)
                .await?
                .into_iter()
                .map(|d| DecoyView {
                    credential: format!("{}/{}", d.tenant, d.name),
                    kind: d.kind,
                    planted_by: d.planted_by,
                    planted_at: d.planted_at,
                })
                .collect())
        }
        .await;
        self.finish(caller, AuditAction::DecoyList, &resource, result).await
    }
}

fn most_common_kind(real: &[CredentialRow]) -> CredentialKind {
    let mut counts: BTreeMap<&'static str, (usize, CredentialKind)> = BTreeMap::new();
    for c in real {
        counts.entry(c.kind.as_str()).or_insert((0, c.kind)).0 += 1;
    }
    counts.into_values().max_by_key(|(n, _)| *n).map_or(CredentialKind::Generic, |(_, k)| k)
}

fn random_index() -> usize {
    rekey_crypto::keys::random_16().map(|b| b[0] as usize).unwrap_or(0)
}

/// A name made of a real one's first words and an ending, not taken yet.
fn fresh_name(base: &str, taken: &mut BTreeSet<String>) -> Result<String, CoreError> {
    let stem: String = base.split('-').take(2).collect::<Vec<_>>().join("-");
    let start = random_index();
    for i in 0..ENDINGS.len() * 10 {
        let ending = ENDINGS[(start + i) % ENDINGS.len()];
        let round = i / ENDINGS.len();
        let name = if round == 0 { format!("{stem}-{ending}") } else { format!("{stem}-{ending}{}", round + 1) };
        if name.len() <= 63 && !taken.contains(&name) {
            taken.insert(name.clone());
            return Ok(name);
        }
    }
    Err(CoreError::Conflict("no free plausible name is left for a decoy in this tenant".into()))
}

/// The template's target with the account's name changed; without a template, a target of the
/// tenant's own name under `.example` (a name that resolves nowhere).
fn decoy_fields(
    kind: CredentialKind,
    template: Option<&CredentialRow>,
    name: &str,
    tenant: &TenantName,
) -> BTreeMap<String, String> {
    let mut fields: BTreeMap<String, String> = match template {
        Some(t) => t.fields.clone(),
        None => match kind {
            CredentialKind::Ldap => [
                ("url", format!("ldaps://ldap.{tenant}.example:636")),
                ("bind_dn", format!("cn={name},ou=services,dc={tenant},dc=example")),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            CredentialKind::EntraApp => [
                ("token_url", "https://login.microsoftonline.com/common/oauth2/v2.0/token".to_owned()),
                ("client_id", String::new()),
                ("scope", "https://graph.microsoft.com/.default".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            CredentialKind::Pop3 | CredentialKind::Smtp => {
                let (host, port) = if kind == CredentialKind::Pop3 { ("pop", "995") } else { ("smtp", "465") };
                [
                    ("host", format!("{host}.{tenant}.example")),
                    ("port", port.to_owned()),
                    ("tls", "implicit".to_owned()),
                    ("user", String::new()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect()
            }
            CredentialKind::Generic => BTreeMap::new(),
        },
    };
    // A decoy rotates nothing and nobody: no rotator fields, no application object to roll.
    for key in ["rotator", "subtrees", "app_object_id", "max_age"] {
        fields.remove(key);
    }
    match kind {
        CredentialKind::Ldap => {
            if let Some(dn) = fields.get_mut("bind_dn") {
                *dn = match dn.split_once(',') {
                    Some((first, rest)) => {
                        let attr = first.split_once('=').map_or("cn", |(a, _)| a);
                        format!("{attr}={name},{rest}")
                    }
                    None => format!("cn={name}"),
                };
            }
        }
        CredentialKind::EntraApp => {
            let id = rekey_crypto::keys::random_16().unwrap_or_default();
            let h = hex::encode(id);
            fields.insert(
                "client_id".into(),
                format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32]),
            );
        }
        CredentialKind::Pop3 | CredentialKind::Smtp => {
            let user = fields.get("user").cloned().unwrap_or_default();
            let new = match user.split_once('@') {
                Some((_, domain)) => format!("{name}@{domain}"),
                None => name.to_owned(),
            };
            fields.insert("user".into(), new);
        }
        CredentialKind::Generic => {}
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_siblings_of_real_ones_and_never_taken() {
        let mut taken: BTreeSet<String> = ["mail-journal".to_owned()].into();
        let mut seen = BTreeSet::new();
        for _ in 0..30 {
            let n = fresh_name("mail-journal-eu", &mut taken).unwrap();
            assert!(n.starts_with("mail-journal-"), "{n}");
            assert!(seen.insert(n));
        }
    }

    #[test]
    fn fields_keep_the_target_and_change_the_account() {
        let tenant = TenantName::parse("acme").unwrap();
        let template = CredentialRow {
            id: rekey_types::CredentialId::generate(),
            tenant_id: rekey_types::TenantId::generate(),
            name: "directory".into(),
            kind: CredentialKind::Ldap,
            fields: [
                ("url".to_owned(), "ldaps://dc1.acme.com".to_owned()),
                ("bind_dn".to_owned(), "uid=svc-mail,ou=people,dc=acme,dc=com".to_owned()),
                ("subtrees".to_owned(), "ou=people,dc=acme,dc=com".to_owned()),
            ]
            .into(),
            labels: BTreeMap::new(),
            current_version: 1,
            latest_version: 1,
            frozen_by: None,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        };
        let f = decoy_fields(CredentialKind::Ldap, Some(&template), "directory-backup", &tenant);
        assert_eq!(f["url"], "ldaps://dc1.acme.com");
        assert_eq!(f["bind_dn"], "uid=directory-backup,ou=people,dc=acme,dc=com");
        assert!(!f.contains_key("subtrees"));
        let e = decoy_fields(CredentialKind::EntraApp, None, "graph-dr", &tenant);
        assert_eq!(e["client_id"].len(), 36);
        assert!(rekey_types::Fields::validate(CredentialKind::EntraApp, e).is_ok());
        let p = decoy_fields(CredentialKind::Pop3, None, "journal-old", &tenant);
        assert!(rekey_types::Fields::validate(CredentialKind::Pop3, p).is_ok());
        let l = decoy_fields(CredentialKind::Ldap, None, "ldap-sync", &tenant);
        assert!(rekey_types::Fields::validate(CredentialKind::Ldap, l).is_ok());
    }
}
