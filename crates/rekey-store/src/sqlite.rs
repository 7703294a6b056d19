//! SQLite through `rusqlite`: one writer connection and a few readers, each used on a blocking
//! thread. WAL mode with `synchronous=FULL`: a commit is on disk when it returns.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::types::ValueRef;
use rusqlite::{ErrorCode, OpenFlags};

use crate::conn::{Arg, Conn, OwnedRow, Value};
use crate::{Backend, StoreError};

type Shared = Arc<Mutex<rusqlite::Connection>>;

pub(crate) struct SqlitePool {
    writer: Shared,
    readers: Vec<Shared>,
    next: AtomicUsize,
}

/// Runs `f` on `conn` on a blocking thread.
async fn blocking<T: Send + 'static>(
    conn: Shared,
    f: impl FnOnce(&mut SqliteConn<'_>) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(move || {
        let mut guard = conn.lock().expect("connection locks are never poisoned: no panics while held");
        f(&mut SqliteConn(&mut guard))
    })
    .await
    .map_err(|e| StoreError::Backend(Box::new(e)))?
}

fn open(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(backend)?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;").map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
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
        let writer = open(path)?;
        let readers =
            (0..readers.max(1)).map(|_| open(path).map(|c| Arc::new(Mutex::new(c)))).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { writer: Arc::new(Mutex::new(writer)), readers, next: AtomicUsize::new(0) })
    }

    /// Runs `f` on the writer connection on a blocking thread.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteConn<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        blocking(self.writer.clone(), f).await
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
        self.0.execute_batch(sql).map_err(backend)
    }
}
