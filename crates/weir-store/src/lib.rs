//! The embedded time-series store (docs/design/store.md): rows made
//! durable in a write-ahead log before they are acknowledged, buffered as
//! Arrow, flushed to Parquet and queried with DataFusion. This first part
//! holds the write-ahead log and the rows it carries.

pub mod rows;
pub mod wal;

pub use rows::{Batch, Row, Value};
pub use wal::{Position, Wal, WalError};
