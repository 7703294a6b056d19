//! Reads of tokens.

use std::str::FromStr;

use rekey_types::Role;

use super::{all, corrupt, id, json_of, opt_ts, ts};
use crate::conn::{args, Conn, OwnedRow};
use crate::model::TokenRow;
use crate::StoreError;

const TOKEN_SELECT: &str =
    "SELECT tk.*, t.name AS tenant_name FROM tokens tk LEFT JOIN tenants t ON t.id = tk.tenant_id";

fn token_row(row: &OwnedRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: id(row, "id")?,
        hash: row.blob("hash")?,
        role: Role::from_str(&row.text("role")?).map_err(|_| corrupt("role"))?,
        tenant_id: row.opt_text("tenant_id")?.map(|t| t.parse().map_err(|_| corrupt("tenant_id"))).transpose()?,
        tenant_name: row.opt_text("tenant_name")?,
        bound: json_of(row, "bound")?,
        cidrs: json_of(row, "cidrs")?,
        description: row.text("description")?,
        created_by: row.text("created_by")?,
        created_at: ts(row, "created_at")?,
        expires_at: opt_ts(row, "expires_at")?,
        revoked_at: opt_ts(row, "revoked_at")?,
        mac: row.opt_blob("mac")?,
    })
}

pub(crate) async fn token<C: Conn>(c: &mut C, id_text: String) -> Result<Option<TokenRow>, StoreError> {
    c.query_opt(&format!("{TOKEN_SELECT} WHERE tk.id = $1"), args![id_text]).await?.map(|r| token_row(&r)).transpose()
}

pub(crate) async fn list_tokens<C: Conn>(c: &mut C) -> Result<Vec<TokenRow>, StoreError> {
    all(c.query(&format!("{TOKEN_SELECT} ORDER BY tk.created_at, tk.id"), vec![]).await?, token_row)
}
