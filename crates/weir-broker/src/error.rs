//! Broker errors, and the one place where storage errors become Kafka
//! error codes.

use std::io;
use std::path::PathBuf;

use kafka_protocol::ResponseError;
use thiserror::Error;
use weir_log::{ErrorKind, LogError};

/// A setting that cannot be applied.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Not a setting the broker knows.
    #[error("unknown broker setting {key}")]
    Unknown {
        /// The name.
        key: String,
    },
    /// A bad value.
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        /// The name.
        key: String,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The config file is not valid TOML.
    #[error("config file: {0}")]
    Parse(String),
}

/// Why the broker could not start or stopped.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A partition log failed to open or close.
    #[error(transparent)]
    Log(#[from] LogError),
    /// File or socket trouble.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// File or address.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The metadata quorum could not start.
    #[error("cluster metadata: {0}")]
    Cluster(String),
    /// Broker metadata on disk is damaged.
    #[error("corrupt broker metadata in {path}: {reason}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The Kafka error code for a storage error.
pub fn log_error_code(e: &LogError) -> ResponseError {
    match e.kind() {
        ErrorKind::CorruptMessage => ResponseError::CorruptMessage,
        ErrorKind::MessageTooLarge => ResponseError::MessageTooLarge,
        ErrorKind::OffsetOutOfRange => ResponseError::OffsetOutOfRange,
        ErrorKind::Storage => ResponseError::KafkaStorageError,
        ErrorKind::InvalidConfig => ResponseError::InvalidConfig,
        ErrorKind::InvalidTimestamp => ResponseError::InvalidTimestamp,
        ErrorKind::InvalidRecord => ResponseError::InvalidRecord,
        ErrorKind::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber,
        ErrorKind::DuplicateSequence => ResponseError::DuplicateSequenceNumber,
        ErrorKind::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
    }
}
