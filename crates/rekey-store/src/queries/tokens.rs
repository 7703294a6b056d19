//! Reads of tokens.

use std::str::FromStr;

use rekey_types::{Role, Timestamp, TokenId};

use super::{all, corrupt, id, json, json_of, opt_ts, ts};
use crate::conn::{args, Conn, OwnedRow};
use crate::model::{AuthRoleRow, TokenRow};
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
        max_expires_at: opt_ts(row, "max_expires_at")?,
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

// Writes.

pub(super) async fn seal_tokens<C: Conn>(c: &mut C, macs: &[(TokenId, Vec<u8>)]) -> Result<(), StoreError> {
    for (id, mac) in macs {
        c.exec("UPDATE tokens SET mac = $1 WHERE id = $2 AND mac IS NULL", args![mac.clone(), id.to_string()]).await?;
    }
    c.exec("DELETE FROM integrity_pending WHERE what = 'tokens'", vec![]).await.map(drop)
}

pub(super) async fn create_token<C: Conn>(c: &mut C, t: &TokenRow) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO tokens (id, hash, role, tenant_id, bound, cidrs, description, created_by, created_at, expires_at, \
         max_expires_at, revoked_at, mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12)",
        args![
            t.id.to_string(),
            t.hash.clone(),
            t.role.as_str(),
            t.tenant_id.map(|id| id.to_string()),
            json(&t.bound),
            json(&t.cidrs),
            &t.description,
            &t.created_by,
            t.created_at.as_micros(),
            t.expires_at.map(Timestamp::as_micros),
            t.max_expires_at.map(Timestamp::as_micros),
            t.mac.clone().unwrap_or_default()
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn revoke_token<C: Conn>(
    c: &mut C,
    id: &TokenId,
    at: &Timestamp,
    mac: &[u8],
) -> Result<(), StoreError> {
    let n = c
        .exec(
            "UPDATE tokens SET revoked_at = $1, mac = $2 WHERE id = $3 AND revoked_at IS NULL",
            args![at.as_micros(), mac.to_vec(), id.to_string()],
        )
        .await?;
    if n != 1 {
        return Err(StoreError::NotFound { entity: "active token", id: id.to_string() });
    }
    Ok(())
}

/// Moves an active, renewable token's expiry; `mac` is the row's MAC with it moved.
pub(super) async fn renew_token<C: Conn>(
    c: &mut C,
    id: &TokenId,
    expires_at: &Timestamp,
    mac: &[u8],
) -> Result<(), StoreError> {
    let n = c
        .exec(
            "UPDATE tokens SET expires_at = $1, mac = $2 \
             WHERE id = $3 AND revoked_at IS NULL AND max_expires_at IS NOT NULL AND max_expires_at >= $1",
            args![expires_at.as_micros(), mac.to_vec(), id.to_string()],
        )
        .await?;
    if n != 1 {
        return Err(StoreError::NotFound { entity: "renewable token", id: id.to_string() });
    }
    Ok(())
}

fn auth_role_row(row: &OwnedRow) -> Result<AuthRoleRow, StoreError> {
    Ok(AuthRoleRow {
        name: row.text("name")?,
        spec: row.text("spec")?,
        created_by: row.text("created_by")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
        mac: row.blob("mac")?,
    })
}

pub(crate) async fn auth_role<C: Conn>(c: &mut C, name: String) -> Result<Option<AuthRoleRow>, StoreError> {
    c.query_opt("SELECT * FROM auth_roles WHERE name = $1", args![name]).await?.map(|r| auth_role_row(&r)).transpose()
}

pub(crate) async fn list_auth_roles<C: Conn>(c: &mut C) -> Result<Vec<AuthRoleRow>, StoreError> {
    all(c.query("SELECT * FROM auth_roles ORDER BY name", vec![]).await?, auth_role_row)
}

/// Writes an auth role, keeping its first `created_at`.
pub(super) async fn put_auth_role<C: Conn>(c: &mut C, r: &AuthRoleRow) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO auth_roles (name, spec, created_by, created_at, updated_at, mac) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, created_by = excluded.created_by, \
         updated_at = excluded.updated_at, mac = excluded.mac",
        args![&r.name, &r.spec, &r.created_by, r.created_at.as_micros(), r.updated_at.as_micros(), r.mac.clone()],
    )
    .await
    .map(drop)
}

pub(super) async fn delete_auth_role<C: Conn>(c: &mut C, name: &str) -> Result<(), StoreError> {
    if c.exec("DELETE FROM auth_roles WHERE name = $1", args![name]).await? != 1 {
        return Err(StoreError::NotFound { entity: "auth role", id: name.to_owned() });
    }
    Ok(())
}
