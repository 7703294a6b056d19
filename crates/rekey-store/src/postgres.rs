//! PostgreSQL through `sqlx`. Several Rekey servers may share one database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{Column, Executor, PgConnection, PgPool, Row, TypeInfo, ValueRef};

use crate::conn::{Arg, Conn, OwnedRow, Value};
use crate::{Backend, StoreError};

pub(crate) async fn pool(url: &str, max: u32) -> Result<PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(max.max(2))
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(backend)
}

pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Duplicate;
        }
        if db.is_foreign_key_violation() || db.is_check_violation() {
            return StoreError::Constraint(db.message().to_owned());
        }
    }
    StoreError::Backend(Box::new(e))
}

pub(crate) struct PgConn<'a>(pub(crate) &'a mut PgConnection);

fn bound<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::Int(i) => q.bind(i),
            Arg::Blob(b) => q.bind(b),
            Arg::OptText(s) => q.bind(s),
            Arg::OptInt(i) => q.bind(i),
            Arg::OptBlob(b) => q.bind(b),
        };
    }
    q
}

fn owned(row: &PgRow, columns: &Arc<HashMap<String, usize>>) -> Result<OwnedRow, StoreError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(backend)?;
        if raw.is_null() {
            values.push(Value::Null);
            continue;
        }
        values.push(match col.type_info().name() {
            "INT8" => Value::Int(row.try_get::<i64, _>(i).map_err(backend)?),
            "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(i).map_err(backend)?)),
            "INT2" => Value::Int(i64::from(row.try_get::<i16, _>(i).map_err(backend)?)),
            "BYTEA" => Value::Blob(row.try_get::<Vec<u8>, _>(i).map_err(backend)?),
            _ => Value::Text(row.try_get::<String, _>(i).map_err(backend)?),
        });
    }
    Ok(OwnedRow { columns: columns.clone(), values })
}

impl Conn for PgConn<'_> {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn exec(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        let done = bound(sqlx::query(sql), args).execute(&mut *self.0).await.map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn query(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<OwnedRow>, StoreError> {
        let rows = bound(sqlx::query(sql), args).fetch_all(&mut *self.0).await.map_err(backend)?;
        let Some(first) = rows.first() else { return Ok(Vec::new()) };
        let columns: Arc<HashMap<String, usize>> =
            Arc::new(first.columns().iter().enumerate().map(|(i, c)| (c.name().to_owned(), i)).collect());
        rows.iter().map(|r| owned(r, &columns)).collect()
    }

    async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.0.execute(sqlx::raw_sql(sql)).await.map_err(backend)?;
        Ok(())
    }
}
