//! Kafka's topic configs: every name a Kafka 3.x or 4.x broker accepts,
//! its type, the broker settings that give its default (Kafka's synonyms),
//! and what this broker does with it. CreateTopics, AlterConfigs and
//! IncrementalAlterConfigs validate against this table; DescribeConfigs
//! lists it whole.
//!
//! A config is either applied by the partition log (`weir_log::LogConfig`
//! knows it), kept for the broker to read (`min.insync.replicas` bounds
//! acks=all produces), accepted without effect where Kafka itself ignores
//! it or where it only concerns a feature absent here (the note says
//! which), or accepted only at its default (`remote.storage.enable`), with
//! the reason Kafka gives when the feature is off.

use std::collections::BTreeMap;

use weir_log::LogConfig;

/// Kafka's `ConfigType` in DescribeConfigs v3+.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// What the broker does with a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Support {
    /// Applied by the partition log.
    Log,
    /// Validated and kept; the broker reads it.
    Broker,
    /// Validated and accepted, with no effect here, for the reason given.
    Ignored(&'static str),
    /// Only the default is accepted; other values are refused with this.
    DefaultOnly(&'static str),
}

/// One topic config.
#[derive(Debug)]
pub(crate) struct Def {
    pub name: &'static str,
    pub kind: Kind,
    /// Kafka's default, as DescribeConfigs prints it. For `Log` configs the
    /// broker's own defaults (from its settings) are shown instead.
    pub default: &'static str,
    /// Broker settings that give the default, most specific first.
    pub synonyms: &'static [&'static str],
    pub support: Support,
    pub doc: &'static str,
    /// Smallest and largest value of a number.
    pub range: Option<(f64, f64)>,
    /// The only values a string may take.
    pub choices: &'static [&'static str],
}

const LONG_MAX: &str = "9223372036854775807";
const L: f64 = i64::MAX as f64;
const I: f64 = i32::MAX as f64;
const TIERED: &str = "applies to tiered storage only, which this broker does not have";

macro_rules! def {
    ($name:expr, $kind:ident, $default:expr, [$($syn:expr),*], $support:expr, $doc:expr) => {
        def!($name, $kind, $default, [$($syn),*], $support, $doc, None, &[])
    };
    ($name:expr, $kind:ident, $default:expr, [$($syn:expr),*], $support:expr, $doc:expr, $range:expr) => {
        def!($name, $kind, $default, [$($syn),*], $support, $doc, $range, &[])
    };
    ($name:expr, $kind:ident, $default:expr, [$($syn:expr),*], $support:expr, $doc:expr, $range:expr, $choices:expr) => {
        Def {
            name: $name,
            kind: Kind::$kind,
            default: $default,
            synonyms: &[$($syn),*],
            support: $support,
            doc: $doc,
            range: $range,
            choices: $choices,
        }
    };
}

use Support::{Broker, DefaultOnly, Ignored, Log};

/// Every topic config, sorted by name.
pub(crate) const TOPIC_CONFIGS: &[Def] = &[
    def!(
        "cleanup.policy",
        List,
        "delete",
        ["log.cleanup.policy"],
        Log,
        "delete (old segments by retention), compact (the latest record per key), or both"
    ),
    def!(
        "compression.gzip.level",
        Int,
        "-1",
        ["compression.gzip.level"],
        Log,
        "gzip level when compression.type is gzip",
        Some((-1.0, 9.0))
    ),
    def!(
        "compression.lz4.level",
        Int,
        "9",
        ["compression.lz4.level"],
        Log,
        "lz4 level when compression.type is lz4",
        Some((1.0, 17.0))
    ),
    def!(
        "compression.type",
        String,
        "producer",
        ["compression.type"],
        Log,
        "the codec batches are stored in: producer keeps the producer's",
        None,
        &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]
    ),
    def!(
        "compression.zstd.level",
        Int,
        "3",
        ["compression.zstd.level"],
        Log,
        "zstd level when compression.type is zstd",
        Some((-131072.0, 22.0))
    ),
    def!(
        "delete.retention.ms",
        Long,
        "86400000",
        ["log.cleaner.delete.retention.ms"],
        Log,
        "how long tombstones are kept in a compacted topic",
        Some((0.0, L))
    ),
    def!(
        "file.delete.delay.ms",
        Long,
        "60000",
        ["log.segment.delete.delay.ms"],
        Ignored(
            "a cleaned or deleted segment is unlinked at once; readers holding it keep their open handle"
        ),
        "how long a deleted segment's file is kept for readers still holding it",
        Some((0.0, L))
    ),
    def!(
        "flush.messages",
        Long,
        LONG_MAX,
        ["log.flush.interval.messages"],
        Log,
        "fsync after this many messages",
        Some((1.0, L))
    ),
    def!(
        "flush.ms",
        Long,
        LONG_MAX,
        ["log.flush.interval.ms"],
        Log,
        "fsync data older than this",
        Some((0.0, L))
    ),
    def!(
        "follower.replication.throttled.replicas",
        List,
        "",
        [],
        Broker,
        "replicas throttled on the follower side (partition:broker, or *)"
    ),
    def!(
        "index.interval.bytes",
        Int,
        "4096",
        ["log.index.interval.bytes"],
        Log,
        "bytes between offset index entries",
        Some((0.0, I))
    ),
    def!(
        "leader.replication.throttled.replicas",
        List,
        "",
        [],
        Broker,
        "replicas throttled on the leader side (partition:broker, or *)"
    ),
    def!(
        "local.retention.bytes",
        Long,
        "-2",
        ["log.local.retention.bytes"],
        Ignored(TIERED),
        "local share of retention.bytes with tiered storage",
        Some((-2.0, L))
    ),
    def!(
        "local.retention.ms",
        Long,
        "-2",
        ["log.local.retention.ms"],
        Ignored(TIERED),
        "local share of retention.ms with tiered storage",
        Some((-2.0, L))
    ),
    def!(
        "max.compaction.lag.ms",
        Long,
        LONG_MAX,
        ["log.cleaner.max.compaction.lag.ms"],
        Log,
        "longest a record stays uncompacted",
        Some((1.0, L))
    ),
    def!(
        "max.message.bytes",
        Int,
        "1048588",
        ["message.max.bytes"],
        Log,
        "largest record batch accepted",
        Some((0.0, I))
    ),
    def!(
        "message.downconversion.enable",
        Boolean,
        "true",
        ["log.message.downconversion.enable"],
        Ignored("deprecated; this broker serves Fetch v4 and later only, which never down-convert"),
        "down-convert batches for old fetchers (removed in Kafka 4)"
    ),
    def!(
        "message.format.version",
        String,
        "3.0-IV1",
        ["log.message.format.version"],
        Ignored("deprecated; since Kafka 3.0 every batch is message format v2"),
        "message format of stored batches (removed in Kafka 4)"
    ),
    def!(
        "message.timestamp.after.max.ms",
        Long,
        LONG_MAX,
        ["log.message.timestamp.after.max.ms"],
        Log,
        "how far in the future a create time may be",
        Some((0.0, L))
    ),
    def!(
        "message.timestamp.before.max.ms",
        Long,
        LONG_MAX,
        ["log.message.timestamp.before.max.ms"],
        Log,
        "how far in the past a create time may be",
        Some((0.0, L))
    ),
    def!(
        "message.timestamp.difference.max.ms",
        Long,
        LONG_MAX,
        ["log.message.timestamp.difference.max.ms"],
        Broker,
        "deprecated: both of the two limits above, unless they are set (removed in Kafka 4)",
        Some((0.0, L))
    ),
    def!(
        "message.timestamp.type",
        String,
        "CreateTime",
        ["log.message.timestamp.type"],
        Log,
        "CreateTime (the producer's) or LogAppendTime (the broker's)",
        None,
        &["CreateTime", "LogAppendTime"]
    ),
    def!(
        "min.cleanable.dirty.ratio",
        Double,
        "0.5",
        ["log.cleaner.min.cleanable.ratio"],
        Log,
        "dirty share of a compacted log that starts a cleaning",
        Some((0.0, 1.0))
    ),
    def!(
        "min.compaction.lag.ms",
        Long,
        "0",
        ["log.cleaner.min.compaction.lag.ms"],
        Log,
        "shortest time a record stays uncompacted",
        Some((0.0, L))
    ),
    def!(
        "min.insync.replicas",
        Int,
        "1",
        ["min.insync.replicas"],
        Broker,
        "replicas that must hold an acks=all write (NOT_ENOUGH_REPLICAS otherwise)",
        Some((1.0, I))
    ),
    def!(
        "preallocate",
        Boolean,
        "false",
        ["log.preallocate"],
        Ignored("segment files grow as they are written"),
        "preallocate segment files"
    ),
    def!(
        "remote.log.copy.disable",
        Boolean,
        "false",
        [],
        Ignored(TIERED),
        "stop copying to tiered storage"
    ),
    def!(
        "remote.log.delete.on.disable",
        Boolean,
        "false",
        [],
        Ignored(TIERED),
        "delete tiered data when tiered storage is turned off"
    ),
    def!(
        "remote.storage.enable",
        Boolean,
        "false",
        [],
        DefaultOnly(
            "Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage."
        ),
        "tiered storage for this topic"
    ),
    def!(
        "retention.bytes",
        Long,
        "-1",
        ["log.retention.bytes"],
        Log,
        "delete old segments while the partition is larger (-1: no limit)",
        Some((-1.0, L))
    ),
    def!(
        "retention.ms",
        Long,
        "604800000",
        [
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours"
        ],
        Log,
        "delete segments older than this (-1: no limit)",
        Some((-1.0, L))
    ),
    def!(
        "segment.bytes",
        Int,
        "1073741824",
        ["log.segment.bytes"],
        Log,
        "roll a segment at this size",
        Some((14.0, I))
    ),
    def!(
        "segment.index.bytes",
        Int,
        "10485760",
        ["log.index.size.max.bytes"],
        Ignored(
            "offset indexes are not preallocated here; segments roll by segment.bytes and segment.ms"
        ),
        "largest offset index file",
        Some((4.0, I))
    ),
    def!(
        "segment.jitter.ms",
        Long,
        "0",
        ["log.roll.jitter.ms", "log.roll.jitter.hours"],
        Broker,
        "random jitter subtracted from segment.ms",
        Some((0.0, L))
    ),
    def!(
        "segment.ms",
        Long,
        "604800000",
        ["log.roll.ms", "log.roll.hours"],
        Log,
        "roll a segment this old",
        Some((1.0, L))
    ),
    def!(
        "unclean.leader.election.enable",
        Boolean,
        "false",
        ["unclean.leader.election.enable"],
        Broker,
        "let an out-of-sync replica become leader (data loss)"
    ),
];

/// The config of that name.
pub(crate) fn find(name: &str) -> Option<&'static Def> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks a value of a config that the log does not parse itself.
pub(crate) fn validate(def: &Def, value: &str) -> Result<(), String> {
    let v = value.trim();
    let bad = |why: String| {
        Err(format!(
            "Invalid value {value} for configuration {}: {why}",
            def.name
        ))
    };
    match def.kind {
        Kind::Boolean => {
            if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                return bad("Expected value to be either true or false".to_owned());
            }
        }
        Kind::Int | Kind::Long => {
            let Ok(n) = v.parse::<i64>() else {
                return bad("Not a number of type LONG".to_owned());
            };
            if def.kind == Kind::Int && i32::try_from(n).is_err() {
                return bad("Not a number of type INT".to_owned());
            }
            if let Some((lo, hi)) = def.range
                && ((n as f64) < lo || (n as f64) > hi)
            {
                return bad(format!("Value must be in [{lo}, {hi}]"));
            }
        }
        Kind::Double => {
            let Ok(n) = v.parse::<f64>() else {
                return bad("Not a number of type DOUBLE".to_owned());
            };
            if let Some((lo, hi)) = def.range
                && !(lo..=hi).contains(&n)
            {
                return bad(format!("Value must be in [{lo}, {hi}]"));
            }
        }
        Kind::String => {
            if !def.choices.is_empty() && !def.choices.contains(&v) {
                return bad(format!("String must be one of: {}", def.choices.join(", ")));
            }
            if def.name == "message.format.version" && !is_version(v) {
                return bad("not a Kafka version".to_owned());
            }
        }
        Kind::List => {
            if def.name.ends_with(".replication.throttled.replicas") && !throttled_list(v) {
                return bad(
                    "must be * or a comma-separated list of partition:broker entries".to_owned(),
                );
            }
        }
    }
    if let DefaultOnly(reason) = def.support
        && !v.eq_ignore_ascii_case(def.default)
    {
        return Err(reason.to_owned());
    }
    Ok(())
}

/// `0.10.2`, `2.8`, `3.0-IV1` and the like.
fn is_version(v: &str) -> bool {
    let (numbers, iv) = v.split_once("-IV").unwrap_or((v, "0"));
    let parts: Vec<&str> = numbers.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && iv.bytes().all(|b| b.is_ascii_digit())
}

fn throttled_list(v: &str) -> bool {
    if v.is_empty() || v == "*" {
        return true;
    }
    v.split(',').all(|entry| {
        entry.trim().split_once(':').is_some_and(|(p, b)| {
            p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
        })
    })
}

/// The log config of a topic: the broker's defaults with the overrides
/// the log applies; every other override validated. Errors name the key.
pub(crate) fn effective(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut cfg = defaults.clone();
    for (k, v) in overrides {
        let def = find(k).ok_or_else(|| format!("Unknown topic config name: {k}"))?;
        if def.support == Log {
            cfg.set(k, v).map_err(|e| e.to_string())?;
        } else {
            validate(def, v)?;
        }
    }
    // The deprecated difference limit stands for both newer limits where
    // they are not set, as in Kafka 3.x.
    if let Some(v) = overrides.get("message.timestamp.difference.max.ms") {
        for key in [
            "message.timestamp.before.max.ms",
            "message.timestamp.after.max.ms",
        ] {
            if !overrides.contains_key(key) {
                cfg.set(key, v).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(cfg)
}

/// The value of a config the broker keeps (not a log one): the override,
/// else Kafka's default.
pub(crate) fn kept<'a>(overrides: &'a BTreeMap<String, String>, def: &'static Def) -> &'a str {
    overrides.get(def.name).map_or(def.default, |v| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_unique_and_covers_every_log_config() {
        for w in TOPIC_CONFIGS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for name in weir_log::CONFIG_NAMES {
            let def = find(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(def.support, Log, "{name}");
        }
        for def in TOPIC_CONFIGS.iter().filter(|d| d.support == Log) {
            assert!(weir_log::CONFIG_NAMES.contains(&def.name), "{}", def.name);
        }
        // Every default is a valid value of its own config.
        for def in TOPIC_CONFIGS.iter().filter(|d| d.support != Log) {
            validate(def, def.default).unwrap_or_else(|e| panic!("{}: {e}", def.name));
        }
    }

    #[test]
    fn values_are_checked_by_type_and_range() {
        let check = |k: &str, v: &str| validate(find(k).unwrap(), v);
        assert!(check("min.insync.replicas", "2").is_ok());
        assert!(check("min.insync.replicas", "0").is_err());
        assert!(check("min.cleanable.dirty.ratio", "0.1").is_ok());
        assert!(check("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(check("compression.type", "zstd").is_ok());
        assert!(check("compression.type", "brotli").is_err());
        assert!(check("unclean.leader.election.enable", "TRUE").is_ok());
        assert!(check("preallocate", "yes").is_err());
        assert!(check("message.format.version", "2.8").is_ok());
        assert!(check("message.format.version", "3.0-IV1").is_ok());
        assert!(check("message.format.version", "banana").is_err());
        assert!(check("leader.replication.throttled.replicas", "0:1,1:2").is_ok());
        assert!(check("leader.replication.throttled.replicas", "*").is_ok());
        assert!(check("leader.replication.throttled.replicas", "0-1").is_err());
        assert!(check("compression.zstd.level", "-5").is_ok());
        assert!(check("compression.zstd.level", "23").is_err());
        let tiered = check("remote.storage.enable", "true").unwrap_err();
        assert!(tiered.contains("Tiered Storage"), "{tiered}");
        assert!(check("remote.storage.enable", "false").is_ok());
    }

    #[test]
    fn the_deprecated_difference_stands_for_both_limits_unless_they_are_set() {
        let d = LogConfig::default();
        let mut o = BTreeMap::new();
        o.insert(
            "message.timestamp.difference.max.ms".to_owned(),
            "5000".to_owned(),
        );
        let c = effective(&d, &o).unwrap();
        assert_eq!(c.message_timestamp_before_max_ms, Some(5000));
        assert_eq!(c.message_timestamp_after_max_ms, Some(5000));
        o.insert("message.timestamp.after.max.ms".to_owned(), "10".to_owned());
        let c = effective(&d, &o).unwrap();
        assert_eq!(c.message_timestamp_after_max_ms, Some(10));
        o.insert("no.such.config".to_owned(), "1".to_owned());
        assert!(effective(&d, &o).unwrap_err().contains("no.such.config"));
    }
}
