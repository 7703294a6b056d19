//! Reads of tenants.

use rekey_types::TenantId;

use super::{all, id, json_of, ts};
use crate::conn::{args, Arg, Conn, OwnedRow};
use crate::model::{TenantFilter, TenantRow};
use crate::StoreError;

fn tenant_row(row: &OwnedRow) -> Result<TenantRow, StoreError> {
    Ok(TenantRow {
        id: id(row, "id")?,
        name: row.text("name")?,
        region: row.text("region")?,
        contacts: json_of(row, "contacts")?,
        state: row.text("state")?,
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
