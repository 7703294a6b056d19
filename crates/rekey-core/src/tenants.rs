//! Tenants: each gets its own KEK (version 1) when it is created.

use std::sync::Arc;

use rekey_crypto::{Kek, KeyContext};
use rekey_store::{KekRow, TenantFilter, TenantRow, WriteOp};
use rekey_types::{AuditAction, KeyState, Region, TenantId, TenantName, TenantState, Timestamp};

use crate::kernel::policy::Action;
use crate::views::TenantView;
use crate::{Caller, CoreError, Vault};

/// Most contacts a tenant may list.
pub const MAX_CONTACTS: usize = 16;

/// `tenant create`: a name, a region, contacts.
pub struct NewTenant {
    /// The tenant's name (not `root`).
    pub name: TenantName,
    /// Its data-residency region.
    pub region: Region,
    /// E-mail addresses for its notices.
    pub contacts: Vec<String>,
}

impl Vault {
    /// Builds the rows of a new tenant and its first KEK, caching the KEK for immediate use.
    pub(crate) fn new_tenant_rows(&self, new: &NewTenant) -> Result<(TenantRow, KekRow), CoreError> {
        if new.name.as_str() == "root" {
            return Err(CoreError::BadRequest("\"root\" is reserved (root@N names a root key version)".into()));
        }
        if new.contacts.len() > MAX_CONTACTS {
            return Err(CoreError::BadRequest(format!("at most {MAX_CONTACTS} contacts")));
        }
        for c in &new.contacts {
            rekey_types::text::email("a contact", c).map_err(|e| CoreError::BadRequest(e.to_string()))?;
        }
        let id = TenantId::generate();
        let now = Timestamp::now();
        let kek = Kek::generate().map_err(CoreError::Crypto)?;
        let wrapped = self
            .seal()
            .wrap_kek(KeyContext::TenantKek { tenant: id, version: 1 }, &kek)
            .map_err(CoreError::from_seal)?;
        let root_version = rekey_crypto::kek_version_of(&wrapped).map_err(CoreError::Crypto)?;
        self.keks().insert(id, 1, Arc::new(kek), KeyState::Active, root_version);
        Ok((
            TenantRow {
                id,
                name: new.name.to_string(),
                region: new.region.to_string(),
                contacts: new.contacts.clone(),
                state: TenantState::Active,
                created_at: now,
            },
            KekRow { tenant_id: id, version: 1, state: KeyState::Active, wrapped, root_version, created_at: now },
        ))
    }

    /// `tenant create`: the tenant and its first key, with the audit event in the same write.
    pub async fn create_tenant(&self, caller: &Caller, new: NewTenant) -> Result<TenantView, CoreError> {
        let resource = format!("tenant:{}", new.name);
        let prepared = async {
            self.authorize(caller, Action::CreateTenant, "tenant")?;
            if self.store().tenant_by_name(&new.name).await?.is_some() {
                return Err(CoreError::Conflict(format!("tenant {} already exists", new.name)));
            }
            self.new_tenant_rows(&new)
        }
        .await;
        let (tenant, kek) = match prepared {
            Ok(rows) => rows,
            Err(e) => return self.finish(caller, AuditAction::TenantCreate, &resource, Err(e)).await,
        };
        let view = TenantView::from(tenant.clone());
        let detail = format!("region={}", tenant.region);
        self.commit(caller, AuditAction::TenantCreate, &resource, WriteOp::CreateTenant { tenant, kek }, &detail)
            .await?;
        Ok(view)
    }

    /// `tenant list`: tenants by name, one page.
    pub async fn list_tenants(
        &self,
        caller: &Caller,
        region: Option<Region>,
        after: Option<TenantName>,
        limit: u32,
    ) -> Result<Vec<TenantView>, CoreError> {
        let result = async {
            self.authorize(caller, Action::ListTenants, "tenants")?;
            let filter = TenantFilter {
                region: region.map(|r| r.to_string()),
                after: after.map(|a| a.to_string()),
                limit: limit.clamp(1, 10_000),
            };
            Ok(self.store().list_tenants(&filter).await?.into_iter().map(TenantView::from).collect())
        }
        .await;
        self.finish(caller, AuditAction::TenantList, "", result).await
    }

    /// `tenant show`.
    pub async fn show_tenant(&self, caller: &Caller, name: &TenantName) -> Result<TenantView, CoreError> {
        let what = format!("tenant {name}");
        let result = async {
            self.authorize(caller, Action::ReadTenant(name), &what)?;
            let tenant = self.store().tenant_by_name(name).await?.ok_or_else(|| CoreError::NotFound(what.clone()))?;
            Ok(TenantView::from(tenant))
        }
        .await;
        self.finish(caller, AuditAction::TenantShow, &format!("tenant:{name}"), result).await
    }

    /// The tenant row, or "tenant X not found".
    pub(crate) async fn tenant(&self, name: &TenantName) -> Result<TenantRow, CoreError> {
        self.store().tenant_by_name(name).await?.ok_or_else(|| CoreError::NotFound(format!("tenant {name}")))
    }

    /// The tenant of `cref` (or "tenant not found") and its live credential (or "credential not
    /// found").
    pub(crate) async fn tenant_credential(
        &self,
        cref: &rekey_types::CredRef,
    ) -> Result<(TenantRow, rekey_store::CredentialRow), CoreError> {
        let tenant = self.tenant(&cref.tenant).await?;
        let credential = self
            .store()
            .credential(tenant.id, cref.name.as_str())
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("credential {cref}")))?;
        Ok((tenant, credential))
    }
}
