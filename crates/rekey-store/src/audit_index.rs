//! The SQLite store's audit-log indexes (by resource and by principal), kept in a file of their
//! own beside the store and filled behind the writer, in sorted chunks.
//!
//! Why not ordinary indexes on `audit_events`: a commit of a few hundred events about as many
//! credentials changes one leaf page of a resource index per credential, and SQLite writes each
//! changed page whole into the WAL, so the index cost several times the events themselves. A
//! chunk of thousands of events, inserted in key order, changes each of those pages once. The
//! file of its own has its own write lock, so indexing never holds up the writer.
//!
//! Readers attach the file as `ix`. It holds the index entries of events `1..=W` and `W` (the
//! watermark) with the MAC of event `W`, changed together in one transaction; a query reads the
//! entries and scans the events after `W` (the log's key is `seq`, so that scan reads only the
//! tail). The file is derived data: when the store's event `W` is missing or carries another MAC
//! (the store was restored from a backup, or lost its last commits with the machine), or the
//! file's layout is not this version's, the index starts over from the first event.
//!
//! PostgreSQL keeps ordinary indexes: several servers write it, and it has no WAL page problem
//! of this size.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::StoreError;

/// Bumped whenever the layout below changes: a file of another version is rebuilt.
const LAYOUT: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS by_resource (
    resource TEXT NOT NULL, action TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (resource, action, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS by_principal (
    principal TEXT NOT NULL, action TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (principal, action, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS indexed (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    mac BLOB
);
INSERT OR IGNORE INTO indexed (id, seq, mac) VALUES (1, 0, NULL);
";

/// Events past the watermark that start a chunk at once.
const CHUNK: i64 = 16_384;
/// Events past the watermark are indexed after at most this long, however few.
const MAX_LAG: Duration = Duration::from_secs(1);
/// Events indexed in one transaction at most (a rebuild proceeds in steps of this size).
const MAX_STEP: i64 = 65_536;

/// The index file of the store at `store`: `<store>.audit-index`.
pub(crate) fn path_of(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".audit-index");
    PathBuf::from(name)
}

/// Opens the index file (creating it, in WAL mode, with the current layout) for the background
/// thread, with the store attached as `store`. A file SQLite cannot read is deleted and made
/// afresh.
pub(crate) fn open(store: &Path) -> Result<Connection, rusqlite::Error> {
    open_file(store).or_else(|e| {
        tracing::warn!(error = %e, "the audit index file is unreadable: rebuilding it from the first event");
        let index = path_of(store);
        for suffix in ["", "-wal", "-shm"] {
            let mut name = index.as_os_str().to_owned();
            name.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
        open_file(store)
    })
}

fn open_file(store: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path_of(store),
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // Derived data: a commit lost with the machine is indexed again (see `check`).
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")?;
    let layout: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if layout != LAYOUT {
        conn.execute_batch(
            "DROP TABLE IF EXISTS by_resource; DROP TABLE IF EXISTS by_principal; DROP TABLE IF EXISTS indexed;",
        )?;
    }
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "user_version", LAYOUT)?;
    conn.execute("ATTACH DATABASE ?1 AS store", [store.to_string_lossy()])?;
    Ok(conn)
}

/// Attaches the index file to a reader connection of the store as `ix`.
pub(crate) fn attach(reader: &Connection, store: &Path) -> Result<(), rusqlite::Error> {
    reader.execute("ATTACH DATABASE ?1 AS ix", [path_of(store).to_string_lossy()]).map(drop)
}

/// Starts the index over unless the store still holds the event it was built up to.
fn check(conn: &Connection) -> Result<(), rusqlite::Error> {
    let (seq, mac): (i64, Option<Vec<u8>>) =
        conn.query_row("SELECT seq, mac FROM indexed WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if seq == 0 {
        return Ok(());
    }
    let stored: Option<Vec<u8>> =
        conn.query_row("SELECT mac FROM store.audit_events WHERE seq = ?1", [seq], |r| r.get(0)).optional()?;
    if stored.is_some() && stored == mac {
        return Ok(());
    }
    tracing::warn!(
        indexed = seq,
        "the audit index does not match the store (restored from a backup?): rebuilding it from the first event"
    );
    conn.execute_batch(
        "BEGIN; DELETE FROM by_resource; DELETE FROM by_principal; \
         UPDATE indexed SET seq = 0, mac = NULL WHERE id = 1; COMMIT;",
    )
}

/// Indexes up to `max` events past the watermark in one transaction; returns how many.
fn step(conn: &mut Connection, max: i64) -> Result<i64, rusqlite::Error> {
    // Deferred, not IMMEDIATE: that would take the store's write lock too.
    let tx = conn.transaction()?;
    let from: i64 = tx.query_row("SELECT seq FROM indexed WHERE id = 1", [], |r| r.get(0))?;
    let head: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM store.audit_events", [], |r| r.get(0))?;
    let to = head.min(from + max);
    if to <= from {
        return Ok(0);
    }
    tx.execute(
        "INSERT INTO by_resource (resource, action, seq) SELECT resource, action, seq FROM store.audit_events \
         WHERE seq > ?1 AND seq <= ?2 ORDER BY resource, action, seq",
        [from, to],
    )?;
    tx.execute(
        "INSERT INTO by_principal (principal, action, seq) SELECT principal, action, seq FROM store.audit_events \
         WHERE seq > ?1 AND seq <= ?2 ORDER BY principal, action, seq",
        [from, to],
    )?;
    tx.execute(
        "UPDATE indexed SET seq = ?1, mac = (SELECT mac FROM store.audit_events WHERE seq = ?1) WHERE id = 1",
        [to],
    )?;
    tx.commit()?;
    Ok(to - from)
}

/// Events in the store past the watermark.
fn lag(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row(
        "SELECT COALESCE((SELECT MAX(seq) FROM store.audit_events), 0) - (SELECT seq FROM indexed WHERE id = 1)",
        [],
        |r| r.get(0),
    )
}

/// Keeps the index up with the store, from the store's background thread: indexes what is
/// waiting once there is a chunk of it or the oldest has waited long enough.
pub(crate) struct Keeper {
    conn: Connection,
    /// When the oldest event not yet indexed was first seen.
    pending_since: Option<Instant>,
    failing: bool,
}

impl Keeper {
    /// Checks the index against the store, starting it over if they disagree. The store's
    /// schema must be up to date.
    pub(crate) fn new(conn: Connection) -> Result<Self, StoreError> {
        check(&conn).map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Self { conn, pending_since: None, failing: false })
    }

    /// The connection (the index file, with the store attached as `store`).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Indexes what is due, in steps of their own short transactions, until `stop` says so.
    pub(crate) fn tick(&mut self, stop: impl Fn() -> bool) {
        let result = lag(&self.conn).and_then(|pending| {
            if pending <= 0 {
                self.pending_since = None;
                return Ok(());
            }
            let since = *self.pending_since.get_or_insert_with(Instant::now);
            if pending < CHUNK && since.elapsed() < MAX_LAG {
                return Ok(());
            }
            while step(&mut self.conn, MAX_STEP)? == MAX_STEP && !stop() {}
            self.pending_since = None;
            Ok(())
        });
        match result {
            Ok(()) if self.failing => {
                tracing::info!("the audit index is being kept again");
                self.failing = false;
            }
            Ok(()) => {}
            // Queries stay correct without the index (they scan the events past it), only
            // slower; so log once and keep trying.
            Err(e) if !self.failing => {
                tracing::error!(error = %e, "indexing the audit log failed; queries scan the unindexed events");
                self.failing = true;
            }
            Err(_) => {}
        }
    }
}
