//! The embedded time-series store (docs/design/store.md): rows made
//! durable in a write-ahead log before they are acknowledged, buffered as
//! Arrow, flushed to Parquet and queried with DataFusion. This first part
//! holds the write-ahead log, the rows it carries and the tables' schema.

pub mod rows;
pub mod schema;
pub mod wal;

pub use rows::{Batch, Row, Value};
pub use schema::{ColumnType, Schema, SchemaError};
pub use wal::{Position, Wal, WalError};
