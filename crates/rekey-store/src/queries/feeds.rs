//! Threat feeds: the indicators each lists, and how far each TAXII collection was read.

use std::collections::BTreeMap;

use rekey_types::Timestamp;

use super::{all, begin_write, finish, opt_ts, ts};
use crate::conn::{args, Conn, OwnedRow};
use crate::model::{FeedIndicatorRow, FeedUpdate};
use crate::StoreError;

fn row(r: &OwnedRow) -> Result<FeedIndicatorRow, StoreError> {
    Ok(FeedIndicatorRow {
        feed: r.text("feed")?,
        stix_id: r.text("stix_id")?,
        kind: r.text("kind")?,
        value: r.text("value")?,
        name: r.text("name")?,
        modified: ts(r, "modified")?,
        valid_from: ts(r, "valid_from")?,
        valid_until: opt_ts(r, "valid_until")?,
    })
}

/// Applies one read of a feed in one transaction; answers how many indicator versions it took.
pub(crate) async fn apply_feed<C: Conn>(c: &mut C, update: FeedUpdate, now: i64) -> Result<usize, StoreError> {
    begin_write(c).await?;
    let step = async {
        let feed = update.feed.clone();
        if update.replace {
            c.exec("DELETE FROM feed_indicators WHERE feed = $1", args![feed.clone()]).await?;
        }
        let mut by_id: BTreeMap<&str, Vec<&FeedIndicatorRow>> = BTreeMap::new();
        for l in &update.listed {
            by_id.entry(l.stix_id.as_str()).or_default().push(l);
        }
        let mut taken = 0;
        for (id, rows) in by_id {
            let modified = rows[0].modified.as_micros();
            let newer = c
                .query_opt(
                    "SELECT 1 AS n FROM feed_indicators WHERE feed = $1 AND stix_id = $2 AND modified > $3",
                    args![feed.clone(), id, modified],
                )
                .await?;
            if newer.is_some() {
                continue;
            }
            c.exec("DELETE FROM feed_indicators WHERE feed = $1 AND stix_id = $2", args![feed.clone(), id]).await?;
            for r in rows {
                c.exec(
                    "INSERT INTO feed_indicators (feed, stix_id, value, kind, name, modified, valid_from, valid_until) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (feed, stix_id, value) DO NOTHING",
                    args![
                        feed.clone(),
                        id,
                        r.value.clone(),
                        r.kind.clone(),
                        r.name.clone(),
                        modified,
                        r.valid_from.as_micros(),
                        r.valid_until.map(Timestamp::as_micros)
                    ],
                )
                .await?;
            }
            taken += 1;
        }
        for (id, modified) in &update.revoked {
            c.exec(
                "DELETE FROM feed_indicators WHERE feed = $1 AND stix_id = $2 AND modified <= $3",
                args![feed.clone(), id.clone(), modified.as_micros()],
            )
            .await?;
        }
        c.exec(
            "INSERT INTO feed_state (feed, added_after, polled_at) VALUES ($1, $2, $3) \
             ON CONFLICT (feed) DO UPDATE SET added_after = COALESCE(excluded.added_after, feed_state.added_after), \
             polled_at = excluded.polled_at",
            args![feed, update.added_after, now],
        )
        .await?;
        Ok(taken)
    }
    .await;
    finish(c, step).await
}

/// Every indicator of every feed.
pub(crate) async fn feed_indicators<C: Conn>(c: &mut C) -> Result<Vec<FeedIndicatorRow>, StoreError> {
    all(c.query("SELECT * FROM feed_indicators ORDER BY feed, stix_id, value", vec![]).await?, row)
}

/// Where the next read of `feed` starts (`added_after`), if it was read before.
pub(crate) async fn feed_cursor<C: Conn>(c: &mut C, feed: String) -> Result<Option<String>, StoreError> {
    Ok(c.query_opt("SELECT added_after FROM feed_state WHERE feed = $1", args![feed])
        .await?
        .map(|r| r.opt_text("added_after"))
        .transpose()?
        .flatten())
}
