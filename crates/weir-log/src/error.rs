//! Typed errors of the log, shaped for the broker: each variant maps to one
//! Kafka error code (see `LogError::kind`).

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::batch::BatchError;

/// An error from a log operation.
#[derive(Debug, Error)]
pub enum LogError {
    /// A batch of an append was malformed; nothing was written.
    #[error("corrupt record batch at byte {position}: {source}")]
    CorruptBatch {
        /// Byte position of the bad batch in the append's input.
        position: usize,
        /// What was wrong with it.
        source: BatchError,
    },
    /// A batch is larger than `max.message.bytes`; nothing was written.
    #[error("record batch of {size} bytes exceeds max.message.bytes = {max}")]
    BatchTooLarge {
        /// Size of the batch.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A create-time timestamp is outside `message.timestamp.before.max.ms`
    /// / `message.timestamp.after.max.ms` of the append time.
    #[error("timestamp {timestamp} is out of range: {reason}")]
    InvalidTimestamp {
        /// The offending timestamp.
        timestamp: i64,
        /// Which limit it breaks.
        reason: String,
    },
    /// Some records of an append are invalid (KIP-467): a record without a
    /// key on a compacted log, or a create time out of range. The whole
    /// append is refused; `records` names each culprit by its index among
    /// the append's records, with why.
    #[error("{message}")]
    InvalidRecords {
        /// `InvalidRecord` or `InvalidTimestamp`.
        kind: ErrorKind,
        /// What is wrong, for the partition's error message.
        message: String,
        /// (index of the record, why it is invalid).
        records: Vec<(usize, String)>,
    },
    /// An idempotent producer's batch is out of sequence, from an old epoch
    /// or a repeat inside one request; nothing was written.
    #[error(transparent)]
    Sequence(#[from] crate::producer::SequenceError),
    /// A read or delete asked for an offset the log does not hold.
    #[error("offset {offset} is out of range: the log holds [{start}, {end})")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: u64,
        /// Log start offset.
        start: u64,
        /// Log end offset.
        end: u64,
    },
    /// The disk is full; the log is unchanged and appends work again once
    /// space is freed.
    #[error("disk full writing {path}: {source}")]
    DiskFull {
        /// File being written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Any other I/O error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Stored data did not parse where the index said a batch starts.
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    CorruptSegment {
        /// Segment file.
        path: PathBuf,
        /// Byte position.
        position: u64,
        /// What was found.
        reason: String,
    },
    /// An fsync failed earlier. Whether the data reached the disk is
    /// unknown, so the log refuses writes until it is reopened (which
    /// revalidates the tail).
    #[error("log {path} stopped after a failed fsync; reopen it to recover")]
    Failed {
        /// Partition directory.
        path: PathBuf,
    },
    /// A config value is invalid.
    #[error("invalid value {value:?} for config {key}: {reason}")]
    InvalidConfig {
        /// Kafka config name.
        key: String,
        /// Offending value.
        value: String,
        /// What is expected.
        reason: &'static str,
    },
    /// A config name the log does not know.
    #[error("unknown config {key}")]
    UnknownConfig {
        /// The name.
        key: String,
    },
}

/// Coarse class of a [`LogError`], one per Kafka error code the broker sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `CORRUPT_MESSAGE` (2).
    CorruptMessage,
    /// `MESSAGE_TOO_LARGE` (10).
    MessageTooLarge,
    /// `OFFSET_OUT_OF_RANGE` (1).
    OffsetOutOfRange,
    /// `KAFKA_STORAGE_ERROR` (56).
    Storage,
    /// `INVALID_CONFIG` (40).
    InvalidConfig,
    /// `INVALID_TIMESTAMP` (32).
    InvalidTimestamp,
    /// `INVALID_RECORD` (87).
    InvalidRecord,
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER` (45).
    OutOfOrderSequence,
    /// `DUPLICATE_SEQUENCE_NUMBER` (46).
    DuplicateSequence,
    /// `INVALID_PRODUCER_EPOCH` (47).
    InvalidProducerEpoch,
}

impl LogError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::CorruptBatch { .. } => ErrorKind::CorruptMessage,
            Self::BatchTooLarge { .. } => ErrorKind::MessageTooLarge,
            Self::InvalidTimestamp { .. } => ErrorKind::InvalidTimestamp,
            Self::InvalidRecords { kind, .. } => *kind,
            Self::Sequence(e) => match e {
                crate::producer::SequenceError::OutOfOrder { .. } => ErrorKind::OutOfOrderSequence,
                crate::producer::SequenceError::DuplicateInRequest { .. } => {
                    ErrorKind::DuplicateSequence
                }
                crate::producer::SequenceError::OldEpoch { .. } => ErrorKind::InvalidProducerEpoch,
            },
            Self::OffsetOutOfRange { .. } => ErrorKind::OffsetOutOfRange,
            Self::DiskFull { .. }
            | Self::Io { .. }
            | Self::CorruptSegment { .. }
            | Self::Failed { .. } => ErrorKind::Storage,
            Self::InvalidConfig { .. } | Self::UnknownConfig { .. } => ErrorKind::InvalidConfig,
        }
    }

    /// Wraps an I/O error, telling a full disk apart from other failures.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge => Self::DiskFull { path, source },
            _ => Self::Io { path, source },
        }
    }
}

/// Result of a log operation.
pub type Result<T, E = LogError> = std::result::Result<T, E>;
