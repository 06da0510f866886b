//! Per-log configuration under Kafka's topic-config names.

use crate::batch::{Compression, TimestampType};
use crate::error::LogError;

/// What happens to old data (`cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Whole old segments are deleted by retention.
    Delete,
    /// Keep the newest record per key: [`crate::Log::clean`] compacts the
    /// sealed segments (run by the broker's cleaner thread).
    Compact,
    /// Both.
    CompactDelete,
}

/// Settings of one partition log. Every field maps to a Kafka topic config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is older.
    pub segment_ms: i64,
    /// `retention.bytes`: delete old segments while the log is bigger (`None` = -1).
    pub retention_bytes: Option<u64>,
    /// `retention.ms`: delete segments whose newest record is older (`None` = -1).
    pub retention_ms: Option<i64>,
    /// `max.message.bytes`: largest batch accepted.
    pub max_message_bytes: usize,
    /// `index.interval.bytes`: bytes between offset-index entries.
    pub index_interval_bytes: u32,
    /// `flush.messages`: fsync after this many appended messages (`None`: never by count).
    pub flush_messages: Option<u64>,
    /// `flush.ms`: fsync data older than this (`None`: never by age).
    pub flush_ms: Option<i64>,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: create-time timestamps older than
    /// this before the append are refused (`None`: no limit).
    pub message_timestamp_before_max_ms: Option<i64>,
    /// `message.timestamp.after.max.ms`: create-time timestamps further
    /// than this in the future are refused (`None`: no limit).
    pub message_timestamp_after_max_ms: Option<i64>,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `compression.type`: `None` keeps each batch as the producer
    /// compressed it (`producer`); a codec makes the log store every batch
    /// in it, recompressing those that differ (`uncompressed` is
    /// `Compression::None`).
    pub compression: Option<Compression>,
    /// `compression.gzip.level` (`None`: the codec's default, Kafka's -1).
    pub compression_gzip_level: Option<i32>,
    /// `compression.lz4.level`.
    pub compression_lz4_level: i32,
    /// `compression.zstd.level`.
    pub compression_zstd_level: i32,
    /// `delete.retention.ms`: how long a tombstone outlives the cleaning
    /// pass that first compacted it (so a consumer reading from the start
    /// within that time sees the delete).
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`, in millionths: a compacted log is
    /// cleaned when this share of it is dirty (not yet compacted).
    pub min_cleanable_dirty_ratio_ppm: u32,
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a record is compacted within about this
    /// long whatever the dirty ratio, and an active segment holding older
    /// data rolls (`None`: Kafka's Long.MAX_VALUE, no limit).
    pub max_compaction_lag_ms: Option<i64>,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            retention_bytes: None,
            retention_ms: Some(7 * DAY_MS),
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            flush_messages: None,
            flush_ms: None,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: None,
            // Kafka 4's default: one hour into the future.
            message_timestamp_after_max_ms: Some(3_600_000),
            cleanup_policy: CleanupPolicy::Delete,
            compression: None,
            compression_gzip_level: None,
            compression_lz4_level: 9,
            compression_zstd_level: 3,
            delete_retention_ms: DAY_MS,
            min_cleanable_dirty_ratio_ppm: 500_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: None,
        }
    }
}

/// The config names [`LogConfig::set`] understands.
pub const CONFIG_NAMES: &[&str] = &[
    "cleanup.policy",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "delete.retention.ms",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
];

/// Largest segment: positions in the offset index are 32-bit, as in Kafka.
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;
/// Smallest segment Kafka accepts.
pub const MIN_SEGMENT_BYTES: u64 = 14;

fn invalid(key: &str, value: &str, reason: &'static str) -> LogError {
    LogError::InvalidConfig {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    }
}

fn parse_i64(key: &str, value: &str) -> Result<i64, LogError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| invalid(key, value, "not an integer"))
}

/// -1 means "no limit", as in Kafka; other negatives are refused.
fn parse_limit(key: &str, value: &str) -> Result<Option<i64>, LogError> {
    match parse_i64(key, value)? {
        -1 => Ok(None),
        v if v < 0 => Err(invalid(key, value, "must be -1 or at least 0")),
        v => Ok(Some(v)),
    }
}

impl LogConfig {
    /// The level `compression.*.level` gives `codec`.
    pub fn compression_level(&self, codec: Compression) -> Option<i32> {
        match codec {
            Compression::Gzip => self.compression_gzip_level,
            Compression::Lz4 => Some(self.compression_lz4_level),
            Compression::Zstd => Some(self.compression_zstd_level),
            Compression::None | Compression::Snappy => None,
        }
    }

    /// Sets one config by its Kafka name. Unknown names and bad values are
    /// refused with an error naming the key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), LogError> {
        match key {
            "segment.bytes" => {
                let v = parse_i64(key, value)?;
                if !(MIN_SEGMENT_BYTES as i64..=MAX_SEGMENT_BYTES as i64).contains(&v) {
                    return Err(invalid(key, value, "must be between 14 and 2147483647"));
                }
                self.segment_bytes = v as u64;
            }
            "segment.ms" => {
                let v = parse_i64(key, value)?;
                if v < 1 {
                    return Err(invalid(key, value, "must be at least 1"));
                }
                self.segment_ms = v;
            }
            "retention.bytes" => self.retention_bytes = parse_limit(key, value)?.map(|v| v as u64),
            "retention.ms" => self.retention_ms = parse_limit(key, value)?,
            "max.message.bytes" => {
                let v = parse_i64(key, value)?;
                if !(0..=i32::MAX as i64).contains(&v) {
                    return Err(invalid(key, value, "must be between 0 and 2147483647"));
                }
                self.max_message_bytes = v as usize;
            }
            "index.interval.bytes" => {
                let v = parse_i64(key, value)?;
                if !(0..=i32::MAX as i64).contains(&v) {
                    return Err(invalid(key, value, "must be between 0 and 2147483647"));
                }
                self.index_interval_bytes = v as u32;
            }
            // Kafka's "never" is Long.MAX_VALUE; accept it and -1 alike.
            "flush.messages" => {
                self.flush_messages = match parse_limit(key, value)? {
                    Some(i64::MAX) | None => None,
                    Some(0) => return Err(invalid(key, value, "must be at least 1")),
                    Some(v) => Some(v as u64),
                }
            }
            "flush.ms" => {
                self.flush_ms = match parse_limit(key, value)? {
                    Some(i64::MAX) | None => None,
                    v => v,
                }
            }
            "message.timestamp.before.max.ms" | "message.timestamp.after.max.ms" => {
                let v = parse_i64(key, value)?;
                if v < 0 {
                    return Err(invalid(key, value, "must be at least 0"));
                }
                let limit = (v != i64::MAX).then_some(v);
                if key.contains("before") {
                    self.message_timestamp_before_max_ms = limit;
                } else {
                    self.message_timestamp_after_max_ms = limit;
                }
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = match value.trim() {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(invalid(key, value, "must be CreateTime or LogAppendTime")),
                }
            }
            "compression.type" => {
                self.compression = match value.trim() {
                    "producer" => None,
                    other => Some(Compression::from_name(other).ok_or_else(|| {
                        invalid(
                            key,
                            value,
                            "must be uncompressed, zstd, lz4, snappy, gzip or producer",
                        )
                    })?),
                }
            }
            "compression.gzip.level" => {
                self.compression_gzip_level = match parse_i64(key, value)? {
                    -1 => None,
                    v @ 1..=9 => Some(v as i32),
                    _ => return Err(invalid(key, value, "must be -1 or between 1 and 9")),
                }
            }
            "compression.lz4.level" => {
                let v = parse_i64(key, value)?;
                if !(1..=17).contains(&v) {
                    return Err(invalid(key, value, "must be between 1 and 17"));
                }
                self.compression_lz4_level = v as i32;
            }
            "compression.zstd.level" => {
                let v = parse_i64(key, value)?;
                if !(-131_072..=22).contains(&v) {
                    return Err(invalid(key, value, "must be between -131072 and 22"));
                }
                self.compression_zstd_level = v as i32;
            }
            "delete.retention.ms" | "min.compaction.lag.ms" => {
                let v = parse_i64(key, value)?;
                if v < 0 {
                    return Err(invalid(key, value, "must be at least 0"));
                }
                if key == "delete.retention.ms" {
                    self.delete_retention_ms = v;
                } else {
                    self.min_compaction_lag_ms = v;
                }
            }
            "max.compaction.lag.ms" => {
                let v = parse_i64(key, value)?;
                if v < 1 {
                    return Err(invalid(key, value, "must be at least 1"));
                }
                self.max_compaction_lag_ms = (v != i64::MAX).then_some(v);
            }
            "min.cleanable.dirty.ratio" => {
                let v: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(key, value, "not a number"))?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(invalid(key, value, "must be between 0 and 1"));
                }
                self.min_cleanable_dirty_ratio_ppm = (v * 1e6).round() as u32;
            }
            "cleanup.policy" => {
                let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
                parts.sort_unstable();
                parts.dedup();
                self.cleanup_policy = match parts.as_slice() {
                    ["delete"] => CleanupPolicy::Delete,
                    ["compact"] => CleanupPolicy::Compact,
                    ["compact", "delete"] => CleanupPolicy::CompactDelete,
                    _ => {
                        return Err(invalid(
                            key,
                            value,
                            "must be delete, compact or compact,delete",
                        ));
                    }
                }
            }
            _ => {
                return Err(LogError::UnknownConfig {
                    key: key.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Every config as (Kafka name, value as Kafka prints it).
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let limit = |v: Option<i64>| v.unwrap_or(-1).to_string();
        let never = |v: Option<i64>| v.unwrap_or(i64::MAX).to_string();
        vec![
            (
                "cleanup.policy",
                match self.cleanup_policy {
                    CleanupPolicy::Delete => "delete",
                    CleanupPolicy::Compact => "compact",
                    CleanupPolicy::CompactDelete => "compact,delete",
                }
                .to_owned(),
            ),
            (
                "compression.gzip.level",
                self.compression_gzip_level.unwrap_or(-1).to_string(),
            ),
            (
                "compression.lz4.level",
                self.compression_lz4_level.to_string(),
            ),
            (
                "compression.type",
                match self.compression {
                    None => "producer",
                    Some(Compression::None) => "uncompressed",
                    Some(Compression::Gzip) => "gzip",
                    Some(Compression::Snappy) => "snappy",
                    Some(Compression::Lz4) => "lz4",
                    Some(Compression::Zstd) => "zstd",
                }
                .to_owned(),
            ),
            (
                "compression.zstd.level",
                self.compression_zstd_level.to_string(),
            ),
            ("delete.retention.ms", self.delete_retention_ms.to_string()),
            (
                "flush.messages",
                never(self.flush_messages.map(|v| v as i64)),
            ),
            ("flush.ms", never(self.flush_ms)),
            (
                "index.interval.bytes",
                self.index_interval_bytes.to_string(),
            ),
            ("max.compaction.lag.ms", never(self.max_compaction_lag_ms)),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            (
                "message.timestamp.after.max.ms",
                never(self.message_timestamp_after_max_ms),
            ),
            (
                "message.timestamp.before.max.ms",
                never(self.message_timestamp_before_max_ms),
            ),
            (
                "message.timestamp.type",
                match self.message_timestamp_type {
                    TimestampType::CreateTime => "CreateTime",
                    TimestampType::LogAppendTime => "LogAppendTime",
                }
                .to_owned(),
            ),
            (
                "min.cleanable.dirty.ratio",
                (f64::from(self.min_cleanable_dirty_ratio_ppm) / 1e6).to_string(),
            ),
            (
                "min.compaction.lag.ms",
                self.min_compaction_lag_ms.to_string(),
            ),
            (
                "retention.bytes",
                limit(self.retention_bytes.map(|v| v as i64)),
            ),
            ("retention.ms", limit(self.retention_ms)),
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", self.segment_ms.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_parses_back_to_the_same_config() {
        let mut c = LogConfig::default();
        c.set("retention.bytes", "1000").unwrap();
        c.set("cleanup.policy", "delete, compact").unwrap();
        c.set("message.timestamp.type", "LogAppendTime").unwrap();
        c.set("flush.messages", "10").unwrap();
        c.set("compression.type", "zstd").unwrap();
        c.set("compression.zstd.level", "-3").unwrap();
        c.set("compression.gzip.level", "4").unwrap();
        c.set("min.cleanable.dirty.ratio", "0.01").unwrap();
        c.set("delete.retention.ms", "0").unwrap();
        c.set("max.compaction.lag.ms", "60000").unwrap();
        c.set("min.compaction.lag.ms", "5").unwrap();
        let mut back = LogConfig::default();
        for (k, v) in c.entries() {
            back.set(k, &v).unwrap();
        }
        assert_eq!(back, c);
        assert_eq!(c.entries().len(), CONFIG_NAMES.len());
        for (k, _) in c.entries() {
            assert!(CONFIG_NAMES.contains(&k), "{k}");
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut c = LogConfig::default();
        for (k, v) in [
            ("segment.bytes", "10"),
            ("segment.bytes", "abc"),
            ("retention.ms", "-2"),
            ("cleanup.policy", "keep"),
            ("message.timestamp.type", "Now"),
            ("flush.messages", "0"),
            ("compression.type", "brotli"),
            ("compression.gzip.level", "0"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("max.compaction.lag.ms", "0"),
            ("delete.retention.ms", "-1"),
        ] {
            let err = c.set(k, v).unwrap_err().to_string();
            assert!(err.contains(k), "{err}");
        }
        assert!(matches!(
            c.set("no.such", "1"),
            Err(LogError::UnknownConfig { .. })
        ));
        assert_eq!(c, LogConfig::default());
    }

    #[test]
    fn minus_one_means_unlimited() {
        let mut c = LogConfig::default();
        c.set("retention.ms", "-1").unwrap();
        assert_eq!(c.retention_ms, None);
        c.set("flush.ms", "9223372036854775807").unwrap();
        assert_eq!(c.flush_ms, None);
    }
}
