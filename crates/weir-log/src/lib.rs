//! `weir-log`: the durable partition log under Weir's broker.
//!
//! A partition is a directory of segments. Each segment is a `.log` file of
//! Kafka RecordBatch v2 bytes exactly as producers sent them (only the base
//! offset, leader epoch and, with `LogAppendTime`, the max timestamp are
//! patched), a sparse `.index` (relative offset -> byte position, an entry
//! about every `index.interval.bytes`) and a `.timeindex` (max timestamp ->
//! offset). The byte layouts are in `docs/log-format.md`.
//!
//! * [`Log::append`] validates every batch before a byte is written and
//!   assigns offsets; [`Log::read`] returns whole stored batches, found
//!   through the index, ready to be sent in a Fetch response.
//! * Durability: [`Log::flush_until`] is a group commit (concurrent
//!   waiters share one fsync); [`Flusher`] runs `flush.ms`, `append`
//!   honours `flush.messages`.
//! * Recovery: [`Log::open`] after a clean [`Log::close`] reads only the
//!   active segment's tail; after a crash it validates from the recovery
//!   point, cuts a torn or corrupt tail at the last whole batch and rebuilds
//!   indexes.
//! * [`compression`]: Kafka's codecs, for the few places that look inside
//!   or rewrite a compressed batch (per-record validation, the exact
//!   max-timestamp record, `compression.type`).
//! * Retention by `retention.ms` / `retention.bytes`, deleting whole
//!   inactive segments; [`Log::delete_records_before`] for DeleteRecords.
//! * Compaction: [`Log::clean`] is one pass of Kafka's log cleaner over a
//!   compacted log (the latest record per key, tombstones after
//!   `delete.retention.ms`, crash-safe swaps); [`Log::cleanable`] says
//!   when one is due. The broker's cleaner thread calls them.
//!
//! Architecture invariant: this crate knows nothing of Kafka requests,
//! sockets or async runtimes; time is passed in (`now_ms`) or comes from a
//! [`Clock`]; all file access goes through the [`Storage`] seam.

pub mod batch;
mod cleaner;
pub mod compression;
mod config;
pub mod epochs;
mod error;
mod flusher;
pub mod frames;
mod index;
mod log;
pub mod metrics;
mod producer;
mod segment;
pub mod storage;

pub use cleaner::{
    CLEANER_CHECKPOINT_FILE, CLEANER_SWAP_FILE, CleanStats, Cleanable, MAP_ENTRY_BYTES,
};
pub use config::{CONFIG_NAMES, CleanupPolicy, LogConfig};
pub use error::{ErrorKind, LogError, Result};
pub use flusher::{Clock, Flusher, SystemClock};
pub use log::{
    AppendInfo, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_FILE, Log, RECOVERY_POINT_FILE, ReadResult,
    RetentionOutcome, SegmentInfo, SyncStats,
};
pub use producer::SequenceError;
pub use storage::{FaultStorage, FsStorage, Storage, StorageFile};
