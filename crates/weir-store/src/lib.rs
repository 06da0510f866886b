//! The embedded time-series store (docs/design/store.md): rows made
//! durable in a write-ahead log before they are acknowledged, buffered as
//! Arrow, flushed to Parquet and queried with DataFusion. This first part
//! holds the write-ahead log, the rows it carries, the tables' schema and a
//! database's durable write side built on them.

pub mod database;
pub mod rows;
pub mod schema;
pub mod wal;

pub use database::{Database, DbError, Recovered};
pub use rows::{Batch, Row, Value};
pub use schema::{ColumnType, Schema, SchemaError};
pub use wal::{Position, Wal, WalError};
