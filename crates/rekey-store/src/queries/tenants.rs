//! Reads of tenants.

use rekey_types::{TenantId, Timestamp};

use super::keys::{kek_args, INSERT_KEK};
use super::{all, duplicate_as, id, insert_rows, json, json_of, state, ts};
use crate::conn::{args, Arg, Conn, OwnedRow};
use crate::model::{KekRow, TenantFilter, TenantRow};
use crate::StoreError;

fn tenant_row(row: &OwnedRow) -> Result<TenantRow, StoreError> {
    Ok(TenantRow {
        id: id(row, "id")?,
        name: row.text("name")?,
        region: row.text("region")?,
        contacts: json_of(row, "contacts")?,
        state: state(row, "state")?,
        created_at: ts(row, "created_at")?,
    })
}

pub(crate) async fn tenant_by<C: Conn>(
    c: &mut C,
    column: &'static str,
    value: String,
) -> Result<Option<TenantRow>, StoreError> {
    let sql = match column {
        "id" => "SELECT * FROM tenants WHERE id = $1",
        _ => "SELECT * FROM tenants WHERE name = $1",
    };
    c.query_opt(sql, args![value]).await?.map(|r| tenant_row(&r)).transpose()
}

pub(crate) async fn list_tenants<C: Conn>(c: &mut C, filter: TenantFilter) -> Result<Vec<TenantRow>, StoreError> {
    let mut sql = String::from("SELECT * FROM tenants WHERE 1=1");
    let mut a: Vec<Arg> = Vec::new();
    if let Some(region) = filter.region {
        a.push(region.into());
        sql.push_str(&format!(" AND region = ${}", a.len()));
    }
    if let Some(after) = filter.after {
        a.push(after.into());
        sql.push_str(&format!(" AND name > ${}", a.len()));
    }
    a.push(filter.limit.max(1).into());
    sql.push_str(&format!(" ORDER BY name LIMIT ${}", a.len()));
    all(c.query(&sql, a).await?, tenant_row)
}

pub(crate) async fn tenant_ids<C: Conn>(c: &mut C) -> Result<Vec<TenantId>, StoreError> {
    all(c.query("SELECT id FROM tenants WHERE state <> 'shredded' ORDER BY id", vec![]).await?, |r| id(r, "id"))
}

// Writes.

pub(super) const INSERT_TENANT: &str = "INSERT INTO tenants (id, name, region, contacts, state, created_at) VALUES ";

pub(super) fn tenant_args(tenant: &TenantRow) -> Vec<Arg> {
    args![
        tenant.id.to_string(),
        &tenant.name,
        &tenant.region,
        json(&tenant.contacts),
        tenant.state,
        tenant.created_at.as_micros()
    ]
}

pub(super) async fn create_tenant<C: Conn>(c: &mut C, tenant: &TenantRow, kek: &KekRow) -> Result<(), StoreError> {
    let exists = || StoreError::AlreadyExists { entity: "tenant", id: tenant.name.clone() };
    if c.query_opt("SELECT 1 AS one FROM tenants WHERE name = $1", args![&tenant.name]).await?.is_some() {
        return Err(exists());
    }
    insert_rows(c, INSERT_TENANT, "", 6, vec![tenant_args(tenant)]).await.map_err(|e| duplicate_as(e, exists()))?;
    insert_rows(c, INSERT_KEK, "", 6, vec![kek_args(kek)]).await
}

pub(super) async fn shred_tenant<C: Conn>(c: &mut C, tenant: &TenantId, at: &Timestamp) -> Result<(), StoreError> {
    let tenant = tenant.to_string();
    c.exec(
        "UPDATE tenant_keks SET state = 'destroyed', changed_at = $1, wrapped = $2 WHERE tenant_id = $3",
        args![at.as_micros(), Vec::<u8>::new(), tenant.clone()],
    )
    .await?;
    if c.exec("UPDATE tenants SET state = 'shredded' WHERE id = $1 AND state <> 'shredded'", args![tenant.clone()])
        .await?
        != 1
    {
        return Err(StoreError::NotFound { entity: "tenant", id: tenant });
    }
    Ok(())
}
