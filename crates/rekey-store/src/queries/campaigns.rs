//! Statements of rotation campaigns: items, notices and reset links.

use rekey_types::{CampaignId, CredentialId, IncidentState, ItemState, LinkId, NoticeState, TenantId, Timestamp};

use super::{all, corrupt, id, json, json_of, kind, opt_ts, reach, state, ts, u32_of};
use crate::conn::{args, Conn, OwnedRow};
use crate::model::*;
use crate::{Backend, StoreError};

fn campaign_row(r: &OwnedRow) -> Result<CampaignRow, StoreError> {
    Ok(CampaignRow {
        id: id(r, "id")?,
        incident_id: id(r, "incident_id")?,
        state: state(r, "state")?,
        notify: json_of(r, "notify")?,
        deadline: ts(r, "deadline")?,
        remind_at: ts(r, "remind_at")?,
        reminded: r.int("reminded")? != 0,
        items: r.int("items")?,
        created_by: r.text("created_by")?,
        created_at: ts(r, "created_at")?,
        finished_at: opt_ts(r, "finished_at")?,
    })
}

fn opt_id<T: std::str::FromStr>(r: &OwnedRow, col: &str) -> Result<Option<T>, StoreError> {
    r.opt_text(col)?.map(|t| t.parse().map_err(|_| corrupt(col))).transpose()
}

fn item_row(r: &OwnedRow) -> Result<CampaignItemRow, StoreError> {
    Ok(CampaignItemRow {
        campaign_id: id(r, "campaign_id")?,
        credential_id: id(r, "credential_id")?,
        tenant_id: id(r, "tenant_id")?,
        tenant: r.text("tenant_name")?,
        region: r.text("region")?,
        name: r.text("name")?,
        kind: kind(r, "kind")?,
        mode: state(r, "mode")?,
        from_version: u32_of(r, "from_version")?,
        state: state(r, "state")?,
        rotation_id: opt_id(r, "rotation_id")?,
        attempts: u32_of(r, "attempts")?,
        next_at: opt_ts(r, "next_at")?,
        error: r.opt_text("error")?,
        done_by: r.opt_text("done_by")?,
        note: r.opt_text("note")?,
        notified_at: opt_ts(r, "notified_at")?,
        rotated_at: opt_ts(r, "rotated_at")?,
        verified_at: opt_ts(r, "verified_at")?,
        retired_at: opt_ts(r, "retired_at")?,
        changed_at: ts(r, "changed_at")?,
    })
}

fn notice_row(r: &OwnedRow) -> Result<NoticeRow, StoreError> {
    Ok(NoticeRow {
        id: id(r, "id")?,
        campaign_id: id(r, "campaign_id")?,
        tenant_id: id(r, "tenant_id")?,
        tenant: r.text("tenant_name")?,
        channel: r.text("channel")?,
        purpose: r.text("purpose")?,
        state: state(r, "state")?,
        attempts: u32_of(r, "attempts")?,
        next_at: opt_ts(r, "next_at")?,
        error: r.opt_text("error")?,
        link_id: opt_id(r, "link_id")?,
        created_at: ts(r, "created_at")?,
        sent_at: opt_ts(r, "sent_at")?,
    })
}

fn link_row(r: &OwnedRow) -> Result<LinkRow, StoreError> {
    Ok(LinkRow {
        id: id(r, "id")?,
        campaign_id: id(r, "campaign_id")?,
        tenant_id: id(r, "tenant_id")?,
        secret_hash: r.blob("secret_hash")?,
        expires_at: ts(r, "expires_at")?,
        used_at: opt_ts(r, "used_at")?,
        revoked_at: opt_ts(r, "revoked_at")?,
        created_by: r.text("created_by")?,
        created_at: ts(r, "created_at")?,
    })
}

/// `'a', 'b'` from states (never input).
fn quoted(states: &[ItemState]) -> String {
    states.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
}

/// Items still to be done: open states, and failed ones with a retry planned.
fn open_clause() -> String {
    format!("(state IN ({}) OR (state = 'failed' AND next_at IS NOT NULL))", quoted(&ItemState::OPEN))
}

// ---- reads ----------------------------------------------------------------------------------

pub(crate) async fn campaign<C: Conn>(c: &mut C, id_text: String) -> Result<Option<CampaignRow>, StoreError> {
    c.query_opt("SELECT * FROM campaigns WHERE id = $1", args![id_text]).await?.map(|r| campaign_row(&r)).transpose()
}

pub(crate) async fn campaigns<C: Conn>(
    c: &mut C,
    running_only: bool,
    limit: u32,
) -> Result<Vec<CampaignRow>, StoreError> {
    let filter = if running_only { "WHERE state = 'running'" } else { "" };
    let sql = format!("SELECT * FROM campaigns {filter} ORDER BY created_at DESC, id DESC LIMIT $1");
    all(c.query(&sql, args![limit]).await?, campaign_row)
}

/// Item counts by state, overall or by tenant.
pub(crate) async fn item_counts<C: Conn>(
    c: &mut C,
    campaign: String,
    by_tenant: bool,
) -> Result<Vec<ItemCount>, StoreError> {
    let sql = if by_tenant {
        "SELECT tenant_name, state, COUNT(*) AS n FROM campaign_items WHERE campaign_id = $1 \
         GROUP BY tenant_name, state ORDER BY tenant_name, state"
    } else {
        "SELECT state, COUNT(*) AS n FROM campaign_items WHERE campaign_id = $1 GROUP BY state ORDER BY state"
    };
    all(c.query(sql, args![campaign]).await?, |r| {
        Ok(ItemCount {
            tenant: if by_tenant { Some(r.text("tenant_name")?) } else { None },
            state: state(r, "state")?,
            count: r.int("n")?,
        })
    })
}

/// Open items of a campaign (still to be done, failed ones with a retry planned included).
pub(crate) async fn open_items<C: Conn>(c: &mut C, campaign: String) -> Result<i64, StoreError> {
    let sql = format!("SELECT COUNT(*) AS n FROM campaign_items WHERE campaign_id = $1 AND {}", open_clause());
    c.query_opt(&sql, args![campaign]).await?.map(|r| r.int("n")).transpose().map(|n| n.unwrap_or(0))
}

/// A page of items by tenant and name, after `(tenant, name)`; optionally one tenant or state.
pub(crate) async fn campaign_items<C: Conn>(
    c: &mut C,
    campaign: String,
    filter: ItemFilter,
) -> Result<Vec<CampaignItemRow>, StoreError> {
    let (after_tenant, after_name) = filter.after.unwrap_or_default();
    let sql = "SELECT * FROM campaign_items WHERE campaign_id = $1 AND (tenant_name > $2 OR (tenant_name = $2 AND name > $3)) \
         AND ($4 = '' OR tenant_name = $4) AND ($5 = '' OR state = $5) ORDER BY tenant_name, name LIMIT $6";
    let rows = c
        .query(
            sql,
            args![
                campaign,
                after_tenant,
                after_name,
                filter.tenant.unwrap_or_default(),
                filter.state.map_or("", ItemState::as_str),
                filter.limit.clamp(1, 10_000)
            ],
        )
        .await?;
    all(rows, item_row)
}

pub(crate) async fn campaign_item<C: Conn>(
    c: &mut C,
    campaign: String,
    credential: String,
) -> Result<Option<CampaignItemRow>, StoreError> {
    c.query_opt(
        "SELECT * FROM campaign_items WHERE campaign_id = $1 AND credential_id = $2",
        args![campaign, credential],
    )
    .await?
    .map(|r| item_row(&r))
    .transpose()
}

/// The self-service items of one tenant that are still to be reset.
pub(crate) async fn tenant_outstanding<C: Conn>(
    c: &mut C,
    campaign: String,
    tenant: String,
) -> Result<Vec<CampaignItemRow>, StoreError> {
    let rows = c
        .query(
            "SELECT * FROM campaign_items WHERE campaign_id = $1 AND tenant_id = $2 AND mode = 'self-service' \
             AND state IN ('pending', 'notified', 'failed') ORDER BY name",
            args![campaign, tenant],
        )
        .await?;
    all(rows, item_row)
}

pub(crate) async fn notices<C: Conn>(c: &mut C, campaign: String) -> Result<Vec<NoticeRow>, StoreError> {
    all(
        c.query(
            "SELECT * FROM campaign_notices WHERE campaign_id = $1 ORDER BY tenant_name, purpose, channel",
            args![campaign],
        )
        .await?,
        notice_row,
    )
}

pub(crate) async fn due_notices<C: Conn>(c: &mut C, now: i64, limit: u32) -> Result<Vec<NoticeRow>, StoreError> {
    all(
        c.query(
            "SELECT * FROM campaign_notices WHERE next_at IS NOT NULL AND next_at <= $1 ORDER BY next_at LIMIT $2",
            args![now, limit],
        )
        .await?,
        notice_row,
    )
}

/// Tenants with self-service items still to be reset and no notice of this purpose yet.
pub(crate) async fn tenants_to_notify<C: Conn>(
    c: &mut C,
    campaign: String,
    purpose: String,
    limit: u32,
) -> Result<Vec<(TenantId, String)>, StoreError> {
    let states = if purpose == "initial" { "('pending')" } else { "('pending', 'notified')" };
    let sql = format!(
        "SELECT DISTINCT i.tenant_id, i.tenant_name FROM campaign_items i WHERE i.campaign_id = $1 \
         AND i.mode = 'self-service' AND i.state IN {states} AND NOT EXISTS (SELECT 1 FROM campaign_notices n \
         WHERE n.campaign_id = i.campaign_id AND n.tenant_id = i.tenant_id AND n.purpose = $2) \
         ORDER BY i.tenant_name LIMIT $3"
    );
    all(c.query(&sql, args![campaign, purpose, limit]).await?, |r| Ok((id(r, "tenant_id")?, r.text("tenant_name")?)))
}

pub(crate) async fn link<C: Conn>(c: &mut C, id_text: String) -> Result<Option<LinkRow>, StoreError> {
    c.query_opt("SELECT * FROM reset_links WHERE id = $1", args![id_text]).await?.map(|r| link_row(&r)).transpose()
}

/// Takes up to `limit` due items, leasing them until `until`; the caller works on them.
pub(crate) async fn claim_items<C: Conn>(
    c: &mut C,
    now: i64,
    until: i64,
    limit: u32,
) -> Result<Vec<CampaignItemRow>, StoreError> {
    let lock = match c.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    // The outer condition is checked again on the row as it is when locked, so that two servers
    // cannot both take an item.
    let sql = format!(
        "UPDATE campaign_items SET lease_until = $1 WHERE (campaign_id, credential_id) IN \
         (SELECT campaign_id, credential_id FROM campaign_items WHERE next_at IS NOT NULL AND next_at <= $2 \
         AND (lease_until IS NULL OR lease_until < $2) ORDER BY next_at LIMIT $3{lock}) \
         AND next_at <= $2 AND (lease_until IS NULL OR lease_until < $2) RETURNING *"
    );
    all(c.query(&sql, args![until, now, limit]).await?, item_row)
}

/// Ends every lease (a server that is the only one using its database, starting up).
pub(crate) async fn release_leases<C: Conn>(c: &mut C) -> Result<(), StoreError> {
    c.exec("UPDATE campaign_items SET lease_until = NULL WHERE lease_until IS NOT NULL", vec![]).await.map(drop)
}

// ---- writes ---------------------------------------------------------------------------------

pub(crate) async fn start_campaign<C: Conn>(c: &mut C, campaign: &CampaignRow) -> Result<(), StoreError> {
    let incident = super::incident(c, campaign.incident_id.to_string()).await?;
    let Some(incident) = incident else {
        return Err(StoreError::NotFound { entity: "incident", id: campaign.incident_id.to_string() });
    };
    if incident.state != IncidentState::Open {
        return Err(StoreError::Conflict);
    }
    c.exec(
        "INSERT INTO campaigns (id, incident_id, state, notify, deadline, remind_at, reminded, items, created_by, created_at) \
         VALUES ($1, $2, 'running', $3, $4, $5, 0, 0, $6, $7)",
        args![
            campaign.id.to_string(),
            campaign.incident_id.to_string(),
            json(&campaign.notify),
            campaign.deadline.as_micros(),
            campaign.remind_at.as_micros(),
            &campaign.created_by,
            campaign.created_at.as_micros()
        ],
    )
    .await
    .map_err(|e| match e {
        StoreError::Duplicate => {
            StoreError::AlreadyExists { entity: "running campaign of incident", id: campaign.incident_id.to_string() }
        }
        other => other,
    })?;
    // Decoys are left out: no target knows their secrets, and a rotation of one would be a
    // login attempt at a real target under a made-up name.
    // The campaign id and time are typed values written into the text (the reach clause takes
    // `$1` and `$2`, and SQLite numbers parameters in order of first use).
    let at = campaign.created_at.as_micros();
    let sql = format!(
        "INSERT INTO campaign_items (campaign_id, credential_id, tenant_id, tenant_name, region, name, kind, mode, \
         from_version, state, next_at, changed_at) \
         SELECT '{cid}', c.id, c.tenant_id, it.tenant_name, it.region, c.name, c.kind, \
         CASE WHEN c.kind = 'ldap' THEN 'automatic' \
              WHEN c.kind = 'entra-app' AND c.fields LIKE '%\"app_object_id\":%' THEN 'automatic' \
              WHEN c.kind = 'generic' THEN 'manual' ELSE 'self-service' END, \
         c.current_version, 'pending', \
         CASE WHEN c.kind = 'ldap' OR (c.kind = 'entra-app' AND c.fields LIKE '%\"app_object_id\":%') THEN {at} ELSE NULL END, \
         {at} {} AND NOT EXISTS (SELECT 1 FROM decoys d WHERE d.credential_id = c.id)",
        reach(&incident.kinds),
        cid = campaign.id,
    );
    c.exec(&sql, args![incident.id.to_string(), incident.created_at.as_micros()]).await?;
    c.exec(
        "UPDATE campaigns SET items = (SELECT COUNT(*) FROM campaign_items WHERE campaign_id = $1) WHERE id = $1",
        args![campaign.id.to_string()],
    )
    .await
    .map(drop)
}

pub(crate) async fn start_item_rotation<C: Conn>(
    c: &mut C,
    campaign: CampaignId,
    credential: rekey_types::CredentialId,
    rotation: rekey_types::RotationId,
    by: String,
    at: Timestamp,
) -> Result<(), StoreError> {
    let n = c
        .exec(
            "UPDATE campaign_items SET state = 'rotating', rotation_id = $1, attempts = attempts + 1, error = NULL, \
             done_by = $2, changed_at = $3 WHERE campaign_id = $4 AND credential_id = $5 AND state IN ('pending', 'failed')",
            args![rotation.to_string(), by, at.as_micros(), campaign.to_string(), credential.to_string()],
        )
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict)
    }
}

/// The columns a state change stamps (with the time in `$at`, where still empty).
const STAMPS: &str = "notified_at = CASE WHEN $7 = 'notified' THEN COALESCE(notified_at, $6) ELSE notified_at END, \
     rotated_at = CASE WHEN $7 IN ('rotated', 'verified', 'retired') THEN COALESCE(rotated_at, $6) ELSE rotated_at END, \
     verified_at = CASE WHEN $7 IN ('verified', 'retired') THEN COALESCE(verified_at, $6) ELSE verified_at END, \
     retired_at = CASE WHEN $7 = 'retired' THEN COALESCE(retired_at, $6) ELSE retired_at END";

pub(crate) async fn set_item<C: Conn>(c: &mut C, u: &ItemUpdate) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE campaign_items SET state = $1, error = $2, next_at = $3, lease_until = NULL, \
         done_by = COALESCE($4, done_by), note = COALESCE($5, note), changed_at = $6, {STAMPS}, \
         attempts = attempts + {} WHERE campaign_id = $8 AND credential_id = $9 AND state IN ({})",
        i64::from(u.attempt),
        quoted(u.from)
    );
    let n = c
        .exec(
            &sql,
            args![
                u.state,
                u.error.clone(),
                u.next_at.map(Timestamp::as_micros),
                u.done_by.clone(),
                u.note.clone(),
                u.at.as_micros(),
                u.stamp.map_or("", ItemState::as_str),
                u.campaign.to_string(),
                u.credential.to_string()
            ],
        )
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict)
    }
}

/// See [`WriteOp::FollowRotation`](crate::WriteOp::FollowRotation).
pub(super) async fn follow_rotation<C: Conn>(
    c: &mut C,
    rotation: &rekey_types::RotationId,
    state: &ItemState,
    error: &Option<String>,
    at: &Timestamp,
) -> Result<(), StoreError> {
    let state = *state;
    let terminal = i64::from(state == ItemState::Retired);
    let sql = format!(
        "UPDATE campaign_items SET state = $1, error = $2, \
         next_at = CASE WHEN $3 = 1 THEN NULL ELSE next_at END, \
         lease_until = CASE WHEN $3 = 1 THEN NULL ELSE lease_until END, \
         changed_at = $4, {} WHERE rotation_id = $5 AND state IN ('rotating', 'rotated', 'verified')",
        STAMPS.replace("$6", "$4").replace("$7", "$1")
    );
    c.exec(&sql, args![state, error.clone(), terminal, at.as_micros(), rotation.to_string()]).await.map(drop)
}

/// A new current version stored by anyone (an operator, a tenant administrator) moves the
/// credential's items that were waiting for one to `rotated`, for a worker to verify, unless
/// its secret is one an earlier version held (see [`super::fresh`]).
pub(crate) async fn follow_put<C: Conn>(
    c: &mut C,
    credential: String,
    version: u32,
    fingerprint: Vec<u8>,
    by: String,
    at: Timestamp,
) -> Result<(), StoreError> {
    c.exec(
        concat!(
            "UPDATE campaign_items SET state = 'rotated', rotated_at = $1, changed_at = $1, next_at = $1, \
             lease_until = NULL, error = NULL, done_by = $2 WHERE credential_id = $3 \
             AND state IN ('pending', 'notified', 'failed') AND ",
            super::fresh!("campaign_items.credential_id", "$4", "$5")
        ),
        args![at.as_micros(), by, credential, version, fingerprint],
    )
    .await
    .map(drop)
}

pub(crate) async fn finish_campaign<C: Conn>(c: &mut C, id_text: String, at: Timestamp) -> Result<(), StoreError> {
    if open_items(c, id_text.clone()).await? > 0 {
        return Err(StoreError::Conflict);
    }
    let n = c
        .exec(
            "UPDATE campaigns SET state = 'finished', finished_at = $1 WHERE id = $2 AND state = 'running'",
            args![at.as_micros(), id_text.clone()],
        )
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound { entity: "running campaign", id: id_text })
    }
}

pub(crate) async fn queue_notices<C: Conn>(c: &mut C, notices: &[NoticeRow]) -> Result<(), StoreError> {
    for n in notices {
        c.exec(
            "INSERT INTO campaign_notices (id, campaign_id, tenant_id, tenant_name, channel, purpose, state, attempts, \
             next_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8) \
             ON CONFLICT (campaign_id, tenant_id, channel, purpose) DO NOTHING",
            args![
                n.id.to_string(),
                n.campaign_id.to_string(),
                n.tenant_id.to_string(),
                &n.tenant,
                &n.channel,
                &n.purpose,
                n.next_at.map(Timestamp::as_micros),
                n.created_at.as_micros()
            ],
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn set_notice<C: Conn>(c: &mut C, u: &NoticeUpdate) -> Result<(), StoreError> {
    let row = c
        .query_opt("SELECT * FROM campaign_notices WHERE id = $1", args![u.id.to_string()])
        .await?
        .map(|r| notice_row(&r))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound { entity: "notice", id: u.id.to_string() })?;
    c.exec(
        "UPDATE campaign_notices SET state = $1, attempts = attempts + 1, next_at = $2, error = $3, \
         link_id = COALESCE($4, link_id), sent_at = CASE WHEN $1 = 'sent' THEN $5 ELSE sent_at END WHERE id = $6",
        args![
            u.state,
            u.next_at.map(Timestamp::as_micros),
            u.error.clone(),
            u.link_id.map(|l| l.to_string()),
            u.at.as_micros(),
            u.id.to_string()
        ],
    )
    .await?;
    if u.state == NoticeState::Sent {
        c.exec(
            "UPDATE campaign_items SET state = 'notified', notified_at = $1, changed_at = $1 WHERE campaign_id = $2 \
             AND tenant_id = $3 AND mode = 'self-service' AND state = 'pending'",
            args![u.at.as_micros(), row.campaign_id.to_string(), row.tenant_id.to_string()],
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn insert_link<C: Conn>(c: &mut C, l: &LinkRow) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO reset_links (id, campaign_id, tenant_id, secret_hash, expires_at, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        args![
            l.id.to_string(),
            l.campaign_id.to_string(),
            l.tenant_id.to_string(),
            l.secret_hash.clone(),
            l.expires_at.as_micros(),
            &l.created_by,
            l.created_at.as_micros()
        ],
    )
    .await
    .map(drop)
}

pub(crate) async fn use_link<C: Conn>(c: &mut C, id: LinkId, at: Timestamp) -> Result<(), StoreError> {
    let n = c
        .exec(
            "UPDATE reset_links SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL \
             AND expires_at > $1",
            args![at.as_micros(), id.to_string()],
        )
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict)
    }
}

pub(crate) async fn revoke_link<C: Conn>(c: &mut C, id: LinkId, at: Timestamp) -> Result<(), StoreError> {
    c.exec(
        "UPDATE reset_links SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        args![at.as_micros(), id.to_string()],
    )
    .await
    .map(drop)
}

// Writes.

pub(super) async fn items_rotated<C: Conn>(
    c: &mut C,
    credential: &CredentialId,
    version: &u32,
    fingerprint: &[u8],
    by: &str,
    at: &Timestamp,
) -> Result<(), StoreError> {
    follow_put(c, credential.to_string(), *version, fingerprint.to_vec(), by.to_owned(), *at).await
}

pub(super) async fn set_reminded<C: Conn>(c: &mut C, id: &CampaignId) -> Result<(), StoreError> {
    c.exec("UPDATE campaigns SET reminded = 1 WHERE id = $1", args![id.to_string()]).await.map(drop)
}
