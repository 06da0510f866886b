//! The embedded time-series store (docs/design/store.md): rows made
//! durable in a write-ahead log before they are acknowledged, buffered as
//! Arrow, flushed to Parquet files listed in a manifest, and queried with
//! DataFusion.
//!
//! The parts, from the bottom: [`wal`] (frames, group commit, recovery),
//! [`rows`] (what a frame carries), [`schema`] (tables and columns),
//! [`database`] (a database's durable write side), [`columns`] (rows as
//! Arrow), [`files`] (Parquet files), [`manifest`] (which files are
//! live), [`compaction`] (the pure planner of merges and retention),
//! [`query`] and [`deadline`] (DataFusion over files and buffers,
//! bounded), and [`store`] (databases, buffers, flushes, merges: what
//! callers use).

//!
//! Without the default `engine` feature only the durable write side is
//! built ([`wal`], [`rows`], [`schema`], [`database`], [`manifest`],
//! [`compaction`]): what the fuzz targets need, without DataFusion.

/// The Arrow crates the store's answers are made of.
#[cfg(feature = "engine")]
pub use datafusion::arrow;

#[cfg(feature = "engine")]
pub mod columns;
pub mod compaction;
pub mod database;
#[cfg(feature = "engine")]
pub mod deadline;
#[cfg(feature = "engine")]
pub mod files;
pub mod manifest;
#[cfg(feature = "engine")]
pub mod query;
pub mod rows;
pub mod schema;
#[cfg(feature = "engine")]
pub mod store;
pub mod wal;

pub use compaction::Policy;
pub use database::{Database, DbError, Recovered};
pub use manifest::{FileEntry, Manifest};
#[cfg(feature = "engine")]
pub use query::{Answer, QueryError, QueryLimits};
pub use rows::{Batch, Row, Value};
pub use schema::{ColumnType, Schema, SchemaError};
#[cfg(feature = "engine")]
pub use store::{DatabaseOptions, Store, StoreConfig, StoreError, parse_ttl, valid_name};
pub use wal::{Position, Wal, WalError};
