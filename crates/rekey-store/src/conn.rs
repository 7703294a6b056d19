//! The seam between the shared SQL (in `queries`) and the two drivers: a connection that runs a
//! statement with positional arguments and hands back owned rows.
//!
//! SQLite runs through `rusqlite` on blocking threads: its futures complete in one poll, and
//! [`ready`] drives them. PostgreSQL runs through `sqlx`. Both see the same SQL text; numbered
//! `$n` parameters work in both (SQLite numbers named parameters in order of first use).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::{Backend, StoreError};

/// A bind value. Nulls carry their type, which PostgreSQL needs.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
    Blob(Vec<u8>),
    OptText(Option<String>),
    OptInt(Option<i64>),
    OptBlob(Option<Vec<u8>>),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Text(s.to_owned())
    }
}
impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Text(s)
    }
}
impl From<&String> for Arg {
    fn from(s: &String) -> Self {
        Arg::Text(s.clone())
    }
}
impl From<i64> for Arg {
    fn from(i: i64) -> Self {
        Arg::Int(i)
    }
}
impl From<u32> for Arg {
    fn from(i: u32) -> Self {
        Arg::Int(i64::from(i))
    }
}
impl From<Vec<u8>> for Arg {
    fn from(b: Vec<u8>) -> Self {
        Arg::Blob(b)
    }
}
impl From<Option<String>> for Arg {
    fn from(s: Option<String>) -> Self {
        Arg::OptText(s)
    }
}
impl From<Option<Vec<u8>>> for Arg {
    fn from(b: Option<Vec<u8>>) -> Self {
        Arg::OptBlob(b)
    }
}
/// The states and stages (`rekey_types::states`) are bound as their text.
macro_rules! state_args {
    ($($t:ty),*) => {$(
        impl From<$t> for Arg {
            fn from(s: $t) -> Self {
                Arg::Text(s.as_str().to_owned())
            }
        }
        impl From<Option<$t>> for Arg {
            fn from(s: Option<$t>) -> Self {
                Arg::OptText(s.map(|s| s.as_str().to_owned()))
            }
        }
    )*};
}
state_args!(
    rekey_types::Stage,
    rekey_types::KeyState,
    rekey_types::RotationState,
    rekey_types::ItemState,
    rekey_types::CampaignMode,
    rekey_types::TenantState,
    rekey_types::JobState,
    rekey_types::CertState,
    rekey_types::IncidentState,
    rekey_types::CampaignState,
    rekey_types::NoticeState
);
impl From<Option<i64>> for Arg {
    fn from(i: Option<i64>) -> Self {
        Arg::OptInt(i)
    }
}

/// Builds a `Vec<Arg>` from values of mixed types.
macro_rules! args {
    ($($v:expr),* $(,)?) => { vec![$($crate::conn::Arg::from($v)),*] };
}
pub(crate) use args;

/// A column value read back.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// A row detached from its driver, with columns looked up by name.
pub(crate) struct OwnedRow {
    pub(crate) columns: Arc<HashMap<String, usize>>,
    pub(crate) values: Vec<Value>,
}

fn missing(col: &str) -> StoreError {
    StoreError::Corrupt(format!("column {col} missing or of the wrong type"))
}

impl OwnedRow {
    fn value(&self, col: &str) -> Result<&Value, StoreError> {
        self.columns.get(col).and_then(|i| self.values.get(*i)).ok_or_else(|| missing(col))
    }

    pub(crate) fn text(&self, col: &str) -> Result<String, StoreError> {
        match self.value(col)? {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(missing(col)),
        }
    }

    pub(crate) fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        match self.value(col)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            _ => Err(missing(col)),
        }
    }

    pub(crate) fn int(&self, col: &str) -> Result<i64, StoreError> {
        match self.value(col)? {
            Value::Int(i) => Ok(*i),
            _ => Err(missing(col)),
        }
    }

    pub(crate) fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        match self.value(col)? {
            Value::Null => Ok(None),
            Value::Int(i) => Ok(Some(*i)),
            _ => Err(missing(col)),
        }
    }

    pub(crate) fn opt_blob(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.value(col)? {
            Value::Null => Ok(None),
            Value::Blob(b) => Ok(Some(b.clone())),
            _ => Err(missing(col)),
        }
    }

    pub(crate) fn blob(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        match self.value(col)? {
            Value::Blob(b) => Ok(b.clone()),
            _ => Err(missing(col)),
        }
    }
}

/// One database connection, as the shared SQL uses it.
pub(crate) trait Conn: Send {
    fn backend(&self) -> Backend;
    /// Runs a statement; returns the number of rows it changed.
    fn exec(&mut self, sql: &str, args: Vec<Arg>) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Runs a query; returns every row.
    fn query(&mut self, sql: &str, args: Vec<Arg>) -> impl Future<Output = Result<Vec<OwnedRow>, StoreError>> + Send;
    /// Runs several statements without arguments (migrations).
    fn batch(&mut self, sql: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn query_opt(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> impl Future<Output = Result<Option<OwnedRow>, StoreError>> + Send {
        async move { Ok(self.query(sql, args).await?.into_iter().next()) }
    }
}

/// Drives a future that never waits (the SQLite path) to completion in one poll.
pub(crate) fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("SQLite statements run synchronously and never wait"),
    }
}
