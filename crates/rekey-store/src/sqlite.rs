//! SQLite through `rusqlite`: one writer connection and a few readers, in WAL mode. Readers run
//! on a blocking thread (or inline, for a point read); the writer on a blocking thread, or on
//! the audit writer's own thread ([`SqliteWrites`]).
//!
//! Durability: the writer runs with `synchronous=NORMAL`, so a commit appends to the WAL without
//! waiting for the disk, and [`SqliteWrites::sync`] then flushes the WAL file. That is exactly
//! the sync `synchronous=FULL` adds after each commit, taken out of the commit so that the next
//! batch can be applied while the previous one reaches the disk. Every write of this module
//! syncs before it returns, except the two `write_unsynced` ([`SqlitePool::write_unsynced`],
//! [`SqliteWrites::write_unsynced`]), whose caller (the audit writer) answers nobody before its
//! sync. Checkpoints keep SQLite's own syncs.
//!
//! One server per file: the process holds an exclusive lock on `<file>.lock` while it has the
//! file open, so a second server on the same file refuses to start. This process's own writes
//! are therefore the only ones, which is what lets [`RevealCache`] serve reads from memory.
//!
//! A background thread per file keeps what the writer should not wait for: it checkpoints the
//! WAL into the database file, and fills the audit log's indexes by resource and principal,
//! which live in a second file (see [`crate::audit_index`]; readers attach it as `ix`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{ErrorCode, OpenFlags};

use crate::audit_index;
use crate::conn::{Arg, Conn, OwnedRow, Value};
use crate::reveal_cache::{Changes, RevealCache};
use crate::{Backend, StoreError};

type Shared = Arc<Mutex<rusqlite::Connection>>;

/// WAL pages after which the writer checkpoints by itself, should the background thread not
/// have (160 MB).
const CHECKPOINT_PAGES: u32 = 40_000;

/// How often the background thread checkpoints the WAL into the database file (see
/// [`checkpoint`]). A page that many commits change (the audit log's last page, say) is copied
/// once per checkpoint however many times the WAL holds it. Every 200 ms halved the p99 of puts
/// at a million credentials against every second, but cost 8–9 % more CPU per put at a thousand.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// A checkpoint that had to copy at most this many new frames is close enough to the writer
/// for the WAL to start again (the writer is held while the last few are copied and synced).
const RESTART_FRAMES: i64 = 128;

/// Passive rounds of one checkpoint at most, each copying what the writer added during the last.
const CHECKPOINT_ROUNDS: usize = 8;

/// The writer connection's page cache, in KiB (SQLite's default is 2 MiB). The writer's own
/// commits leave its cache valid (readers' caches are emptied by every commit), so it keeps the
/// interior pages of every B-tree a put walks and the pages it wrote last: with a million
/// credentials a put of a random one otherwise reads about twenty pages back from the kernel.
const WRITER_CACHE_KIB: u32 = 64 * 1024;

/// How long an open waits for this process's own closing state of the same file to release
/// its lock (see [`file_state`]).
const CLOSING_WAIT: Duration = Duration::from_secs(30);

/// How long a connection waits for a lock another holds before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the background thread looks for work.
const POLL: Duration = Duration::from_millis(200);

pub(crate) struct SqlitePool {
    writes: SqliteWrites,
    readers: Vec<Shared>,
    next: AtomicUsize,
    /// The audit index file's connection, until [`SqlitePool::start_background`] hands it to
    /// the background thread.
    index: Mutex<Option<rusqlite::Connection>>,
}

/// What every pool of one database file in this process shares: the one-server lock, the
/// write generation, the reveal cache, whether a flush failed, and the background thread. A process that opens the
/// same file twice (a server restarted in place, while tasks of the old one finish) thus
/// still has one writer's view of it; another process is refused.
struct FileState {
    /// Checkpoints and keeps the audit index; stopped (on drop) before the lock below is
    /// released.
    background: Mutex<Option<Background>>,
    /// Held (locked) while any pool of the file is open.
    _lock: std::fs::File,
    reveals: RevealCache,
    /// Set when a flush of the WAL failed: the disk may have dropped writes already committed,
    /// so no later write is accepted (see [`SqliteWrites::sync`]).
    flush_failed: std::sync::atomic::AtomicBool,
    /// Last, so that it counts the file as closed only once everything above is dropped.
    _open: OpenFile,
}

/// How many SQLite files this process has open, for [`wait_until_closed`].
static OPEN_FILES: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

struct OpenFile;

impl OpenFile {
    fn new() -> Self {
        *OPEN_FILES.0.lock().expect("the open file count is never poisoned") += 1;
        Self
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        *OPEN_FILES.0.lock().expect("the open file count is never poisoned") -= 1;
        OPEN_FILES.1.notify_all();
    }
}

/// Waits, at most `timeout`, until every SQLite store this process opened is closed: its
/// connections closed (the last one checkpoints the WAL into the database file), its background
/// thread stopped and its lock released. Whoever still holds a store (the audit writer's
/// threads hold one until their queue closes) may let go of it just after the async runtime
/// is gone; a process calls this before it exits. Returns whether they all closed in time.
pub fn wait_until_closed(timeout: Duration) -> bool {
    let count = OPEN_FILES.0.lock().expect("the open file count is never poisoned");
    let (_count, waited) =
        OPEN_FILES.1.wait_timeout_while(count, timeout, |n| *n > 0).expect("the open file count is never poisoned");
    !waited.timed_out()
}

/// The files this process holds, by canonical path.
static FILES: std::sync::LazyLock<Mutex<HashMap<PathBuf, std::sync::Weak<FileState>>>> =
    std::sync::LazyLock::new(Default::default);

/// The writer connection of a file, used synchronously: by [`SqlitePool`] on a blocking thread
/// of tokio's pool, or by the audit writer on a thread of its own (see
/// [`crate::BlockingWrites`]).
#[derive(Clone)]
pub(crate) struct SqliteWrites {
    writer: Shared,
    /// The write-ahead log, which [`SqliteWrites::sync`] flushes.
    wal: Arc<Path>,
    file: Arc<FileState>,
}

impl SqliteWrites {
    /// Runs `f` on the writer connection; durable only after a later [`SqliteWrites::sync`].
    /// `changes` is what `f` may change of the rows the reveal cache keeps.
    pub(crate) fn write_unsynced<T>(
        &self,
        changes: Changes,
        f: impl FnOnce(&mut SqliteConn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.file.flush_failed.load(Ordering::SeqCst) {
            return Err(flush_refused());
        }
        let mut guard = self.writer.lock().expect("connection locks are never poisoned: no panics while held");
        let result = f(&mut SqliteConn(&mut guard));
        // Even a failed write may have committed part of itself.
        self.file.reveals.changed(if result.is_ok() { changes } else { Changes::Everything });
        result
    }

    /// Flushes the WAL file to disk (`fdatasync`): every commit that returned before this call
    /// is durable when it returns. After a failed flush the kernel may have dropped the dirty
    /// pages it could not write, so a retry that succeeds proves nothing: every later flush
    /// and write fails too, until the store is opened again. The file is opened by name each
    /// time, so that a log SQLite has replaced is never the one flushed.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        if self.file.flush_failed.load(Ordering::SeqCst) {
            return Err(flush_refused());
        }
        std::fs::File::open(&self.wal).and_then(|f| f.sync_data()).map_err(|e| {
            self.file.flush_failed.store(true, Ordering::SeqCst);
            StoreError::Backend(Box::new(e))
        })
    }
}

/// Runs `f` on a blocking thread of the async runtime.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Backend(Box::new(e)))?
}

/// Runs `f` on `conn` on a blocking thread.
async fn blocking<T: Send + 'static>(
    conn: Shared,
    f: impl FnOnce(&mut SqliteConn<'_>) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    off_runtime(move || {
        let mut guard = conn.lock().expect("connection locks are never poisoned: no panics while held");
        f(&mut SqliteConn(&mut guard))
    })
    .await
}

fn open(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;").map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The shared state of the database at `path`, taking its one-server lock if this process
/// does not hold it yet.
fn file_state(path: &Path) -> Result<Arc<FileState>, StoreError> {
    let io = |e: std::io::Error| StoreError::Backend(Box::new(e));
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| StoreError::Corrupt(format!("{} is not a file", path.display())))?;
    let key = dir.canonicalize().map_err(io)?.join(name);
    let mut files = FILES.lock().expect("the file registry lock is never poisoned");
    if let Some(state) = files.get(&key).and_then(std::sync::Weak::upgrade) {
        return Ok(state);
    }
    let mut lock_name = key.as_os_str().to_owned();
    lock_name.push(".lock");
    let lock_path = PathBuf::from(lock_name);
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock_path).map_err(io)?;
    // A state of this file that is no longer in use may still be closing on another thread
    // (the audit writer's threads let go of it once their queue closes; its background thread
    // then stops before the lock is released): that is this process's own lock, so wait for
    // it, a little.
    let closing = files.contains_key(&key);
    let mut waited = Duration::ZERO;
    let mut locked = file.try_lock();
    while closing && waited < CLOSING_WAIT && matches!(locked, Err(std::fs::TryLockError::WouldBlock)) {
        std::thread::sleep(Duration::from_millis(5));
        waited += Duration::from_millis(5);
        locked = file.try_lock();
    }
    match locked {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(StoreError::InUse(format!(
                "another Rekey server is using the SQLite store {} (it holds {}): one server per SQLite file; \
                 use PostgreSQL to run several",
                key.display(),
                lock_path.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    let state = Arc::new(FileState {
        background: Mutex::new(None),
        _lock: file,
        reveals: RevealCache::new(crate::reveal_cache::DEFAULT_BYTES),
        flush_failed: Default::default(),
        _open: OpenFile::new(),
    });
    files.retain(|_, s| s.strong_count() > 0);
    files.insert(key, Arc::downgrade(&state));
    Ok(state)
}

fn flush_refused() -> StoreError {
    StoreError::Backend(
        "an earlier flush of the SQLite WAL failed: writes are refused until the store is reopened".into(),
    )
}

fn backend(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == ErrorCode::ConstraintViolation {
            // 2067 SQLITE_CONSTRAINT_UNIQUE, 1555 SQLITE_CONSTRAINT_PRIMARYKEY
            return if matches!(f.extended_code, 2067 | 1555) {
                StoreError::Duplicate
            } else {
                StoreError::Constraint(e.to_string())
            };
        }
    }
    StoreError::Backend(Box::new(e))
}

impl SqlitePool {
    /// Opens (creating if needed) the database file; the writer opens first so that the schema
    /// and WAL mode exist before any reader.
    pub(crate) fn open(path: &Path, readers: u32) -> Result<Self, StoreError> {
        let file = file_state(path)?;
        let writer = open(path)?;
        writer
            .execute_batch(&format!(
                "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}; \
                 PRAGMA cache_size=-{WRITER_CACHE_KIB};"
            ))
            .map_err(backend)?;
        // Creates the index file, so that readers can attach it.
        let index = audit_index::open(path).map_err(backend)?;
        let readers = (0..readers.max(1))
            .map(|_| {
                let c = open(path)?;
                audit_index::attach(&c, path).map_err(backend)?;
                Ok(Arc::new(Mutex::new(c)))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Self {
            writes: SqliteWrites { writer: Arc::new(Mutex::new(writer)), wal: PathBuf::from(wal).into(), file },
            readers,
            next: AtomicUsize::new(0),
            index: Mutex::new(Some(index)),
        })
    }

    /// Starts this file's background thread, unless another pool of it in this process already
    /// has. Call once the schema is up to date.
    pub(crate) fn start_background(&self) -> Result<(), StoreError> {
        let mut background = self.writes.file.background.lock().expect("the background slot is never poisoned");
        let conn = self.index.lock().expect("the index connection slot is never poisoned").take();
        if let (None, Some(conn)) = (background.as_ref(), conn) {
            *background = Some(Background::start(audit_index::Keeper::new(conn)?, self.writes.writer.clone())?);
        }
        Ok(())
    }

    /// The reveal cache of this file.
    pub(crate) fn reveals(&self) -> &RevealCache {
        &self.writes.file.reveals
    }

    /// Runs `f` on the writer connection on a blocking thread; durable when it returns. The reveal
    /// cache is emptied after it.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteConn<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with(Changes::Everything, f).await
    }

    /// [`SqlitePool::write`] for a write that changes no row a reveal reads (the audit log's
    /// checkpoints and tenant logs, system keys, leases): the reveal cache keeps its rows.
    pub(crate) async fn write_other<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteConn<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with(Changes::Nothing, f).await
    }

    /// [`SqlitePool::write`], telling the reveal cache what `f` may change.
    pub(crate) async fn write_with<T: Send + 'static>(
        &self,
        changes: Changes,
        f: impl FnOnce(&mut SqliteConn<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let writes = self.writes();
        off_runtime(move || {
            let value = writes.write_unsynced(changes, f)?;
            writes.sync()?;
            Ok(value)
        })
        .await
    }

    /// Runs `f` on the writer connection on a blocking thread; durable only after a later
    /// [`SqlitePool::sync`]. `changes` is what `f` may change of the rows the reveal cache keeps.
    pub(crate) async fn write_unsynced<T: Send + 'static>(
        &self,
        changes: Changes,
        f: impl FnOnce(&mut SqliteConn<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let writes = self.writes();
        off_runtime(move || writes.write_unsynced(changes, f)).await
    }

    /// Flushes the WAL file to disk on a blocking thread; see [`SqliteWrites::sync`].
    pub(crate) async fn sync(&self) -> Result<(), StoreError> {
        let writes = self.writes();
        off_runtime(move || writes.sync()).await
    }

    /// The writer connection, for a caller that runs writes on a thread of its own.
    pub(crate) fn writes(&self) -> SqliteWrites {
        self.writes.clone()
    }

    /// Runs a short point read (one indexed row) right here on the async thread when a reader is
    /// free: it takes microseconds from the page cache, less than handing it to another thread
    /// would cost. When every reader is busy it waits its turn on a blocking thread instead.
    pub(crate) async fn point<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteConn<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..self.readers.len() {
            if let Ok(mut guard) = self.readers[(start + k) % self.readers.len()].try_lock() {
                return f(&mut SqliteConn(&mut guard));
            }
        }
        self.read(f).await
    }

    /// Runs `f` on one of the readers on a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteConn<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        blocking(self.readers[i].clone(), f).await
    }
}

/// The file's background thread: checkpoints the WAL and keeps the audit index. Stopped and
/// joined on drop, which waits for the work under way, if any (not interrupted: an interrupt
/// still pending when its connection closes would stop that close from checkpointing).
struct Background {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(mut keeper: audit_index::Keeper, writer: Shared) -> Result<Self, StoreError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rekey-sqlite-bg".into())
            .spawn(move || {
                let stopped = || *signal.0.lock().expect("the stop flag is never poisoned");
                let mut checkpointed = Instant::now();
                let mut failing = false;
                loop {
                    {
                        let flag = signal.0.lock().expect("the stop flag is never poisoned");
                        let (flag, _) = signal.1.wait_timeout(flag, POLL).expect("the stop flag is never poisoned");
                        if *flag {
                            return;
                        }
                    }
                    if checkpointed.elapsed() >= CHECKPOINT_EVERY {
                        checkpointed = Instant::now();
                        match checkpoint(keeper.conn(), &writer) {
                            Err(e) if !failing => {
                                // The writer still checkpoints by itself past CHECKPOINT_PAGES.
                                tracing::warn!(error = %e, "checkpointing the SQLite WAL failed");
                                failing = true;
                            }
                            Err(_) => {}
                            Ok(()) => failing = false,
                        }
                    }
                    keeper.tick(stopped);
                }
            })
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

/// Copies the WAL into the database file and lets it start again from its beginning, so that
/// it holds about a [`CHECKPOINT_EVERY`] of writes however busy the writer is.
///
/// A passive checkpoint copies what no reader still needs without holding anyone up, but under
/// a steady stream of commits it never catches up with the writer, and SQLite starts a WAL
/// again only once every frame in it was copied: left alone, the WAL grows to
/// [`CHECKPOINT_PAGES`] and the writer then copies up to a second of commits itself, holding
/// every write (and every audited answer) for hundreds of milliseconds. So passive rounds
/// follow each other until one had little left to copy; then the writer is held (its lock in
/// this process, so it waits on a mutex, not in SQLite's busy loop) while a `RESTART` checkpoint
/// copies and syncs those last frames and marks the WAL to start again. It never waits for a
/// reader while holding the writer: a reader still on the WAL makes it give up until next time.
fn checkpoint(keeper: &rusqlite::Connection, writer: &Shared) -> Result<(), rusqlite::Error> {
    // Frames in the WAL when the last round began, and how many the writer added since.
    let (mut seen, mut added) = (0, i64::MAX);
    for _ in 0..CHECKPOINT_ROUNDS {
        // Answers (busy, frames in the WAL when it began, frames copied so far).
        let log: i64 = keeper.query_row("PRAGMA store.wal_checkpoint(PASSIVE)", [], |r| r.get(1))?;
        (seen, added) = (log, log - seen);
        if added <= RESTART_FRAMES {
            break;
        }
    }
    if seen <= 0 || added > RESTART_FRAMES {
        // An empty WAL, or a writer too fast to catch up with this time.
        return Ok(());
    }
    let writer = writer.lock().expect("connection locks are never poisoned: no panics while held");
    writer.busy_timeout(Duration::ZERO)?;
    let restarted = writer.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
    writer.busy_timeout(BUSY_TIMEOUT)?;
    restarted
}

impl Drop for Background {
    fn drop(&mut self) {
        *self.stop.0.lock().expect("the stop flag is never poisoned") = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) struct SqliteConn<'a>(&'a mut rusqlite::Connection);

fn bind(args: &[Arg]) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as V;
    args.iter()
        .map(|a| match a {
            Arg::Text(s) => V::Text(s.clone()),
            Arg::Int(i) => V::Integer(*i),
            Arg::Blob(b) => V::Blob(b.clone()),
            Arg::OptText(s) => s.clone().map_or(V::Null, V::Text),
            Arg::OptInt(i) => i.map_or(V::Null, V::Integer),
            Arg::OptBlob(b) => b.clone().map_or(V::Null, V::Blob),
        })
        .collect()
}

impl Conn for SqliteConn<'_> {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn exec(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(backend)?;
        let n = stmt.execute(rusqlite::params_from_iter(bind(&args))).map_err(backend)?;
        Ok(n as u64)
    }

    async fn query(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<OwnedRow>, StoreError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(backend)?;
        let columns: Arc<HashMap<String, usize>> =
            Arc::new(stmt.column_names().iter().enumerate().map(|(i, c)| (c.to_string(), i)).collect());
        let width = columns.len();
        let mut rows = stmt.query(rusqlite::params_from_iter(bind(&args))).map_err(backend)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(backend)? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(match row.get_ref(i).map_err(backend)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Int(v as i64),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                });
            }
            out.push(OwnedRow { columns: columns.clone(), values });
        }
        Ok(out)
    }

    async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        if !sql.contains(';') {
            // One statement: a transaction or savepoint step, run several times for every
            // write, so taken from the statement cache rather than parsed each time.
            return self.0.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop).map_err(backend);
        }
        self.0.execute_batch(sql).map_err(backend)
    }
}
