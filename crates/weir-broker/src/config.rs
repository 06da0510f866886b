//! Broker settings under Kafka's names, from a TOML file and `--set`
//! overrides. Raw settings are applied one key at a time onto defaults, so
//! an error names the key that is wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use weir_log::LogConfig;

use crate::error::ConfigError;

/// Everything the broker needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `log.dirs`: where partitions live.
    pub data_dir: PathBuf,
    /// `listeners`: the address to bind.
    pub listen: SocketAddr,
    /// `advertised.listeners`: host and port given to clients in Metadata.
    pub advertised: Option<(String, u16)>,
    /// `num.partitions`: partitions of auto-created topics and of
    /// CreateTopics requests that leave it to the broker.
    pub num_partitions: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `socket.request.max.bytes`: larger requests close the connection.
    pub socket_request_max_bytes: usize,
    /// Topic-config defaults (`log.*` and `message.max.bytes`).
    pub log_defaults: LogConfig,
    /// Settings given explicitly, as (Kafka name, value), for DescribeConfigs.
    pub explicit: BTreeMap<String, String>,
    /// `group.min.session.timeout.ms`, `group.max.session.timeout.ms`,
    /// `group.initial.rebalance.delay.ms`.
    pub group_limits: crate::groups::machine::Limits,
    /// `offsets.retention.minutes`, in ms: committed offsets of a group
    /// with no members are dropped this long after their last commit.
    pub offsets_retention_ms: i64,
    /// `log.cleaner.enable`, `log.cleaner.dedupe.buffer.size`,
    /// `log.cleaner.backoff.ms`.
    pub cleaner: crate::cleaner::CleanerConfig,
}

impl BrokerConfig {
    /// Defaults for a data directory and listen address.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen,
            advertised: None,
            num_partitions: 1,
            auto_create_topics: true,
            socket_request_max_bytes: 104_857_600,
            log_defaults: LogConfig::default(),
            explicit: BTreeMap::new(),
            group_limits: crate::groups::machine::Limits::default(),
            offsets_retention_ms: 7 * 24 * 3_600_000,
            cleaner: crate::cleaner::CleanerConfig::default(),
        }
    }

    /// Host and port clients should connect to.
    pub fn advertised(&self) -> (String, u16) {
        self.advertised
            .clone()
            .unwrap_or_else(|| (self.listen.ip().to_string(), self.listen.port()))
    }

    /// Applies one setting by its Kafka broker name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |reason: &str| ConfigError::Invalid {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let int = || {
            value
                .trim()
                .parse::<i64>()
                .map_err(|_| bad("not an integer"))
        };
        let topic = |cfg: &mut LogConfig, name: &str, v: &str| {
            cfg.set(name, v).map_err(|e| bad(&e.to_string()))
        };
        match key {
            "num.partitions" => {
                let v = int()?;
                if !(1..=i32::MAX as i64).contains(&v) {
                    return Err(bad("must be at least 1"));
                }
                self.num_partitions = v as i32;
            }
            "auto.create.topics.enable" => {
                self.auto_create_topics = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("must be true or false")),
                }
            }
            "socket.request.max.bytes" => {
                let v = int()?;
                if v < 1 {
                    return Err(bad("must be at least 1"));
                }
                self.socket_request_max_bytes = v as usize;
            }
            "advertised.listeners" => {
                // PLAINTEXT://host:port or host:port
                let addr = value.trim().rsplit("://").next().unwrap_or_default();
                let (host, port) = addr
                    .rsplit_once(':')
                    .ok_or_else(|| bad("expected host:port"))?;
                let port = port.parse().map_err(|_| bad("bad port"))?;
                self.advertised = Some((host.to_owned(), port));
            }
            "listeners" => {
                let addr = value.trim().rsplit("://").next().unwrap_or_default();
                self.listen = addr.parse().map_err(|_| bad("expected ip:port"))?;
            }
            "log.dirs" | "log.dir" => self.data_dir = PathBuf::from(value.trim()),
            "group.min.session.timeout.ms" => {
                self.group_limits.min_session_timeout_ms = int()?.clamp(0, i32::MAX as i64) as i32
            }
            "group.max.session.timeout.ms" => {
                self.group_limits.max_session_timeout_ms = int()?.clamp(0, i32::MAX as i64) as i32
            }
            "group.initial.rebalance.delay.ms" => {
                let v = int()?;
                if v < 0 {
                    return Err(bad("must be at least 0"));
                }
                self.group_limits.initial_rebalance_delay_ms = v as u64;
            }
            "offsets.retention.minutes" => {
                let v = int()?;
                if v < 1 {
                    return Err(bad("must be at least 1"));
                }
                self.offsets_retention_ms = v.saturating_mul(60_000);
            }
            "default.replication.factor" => {
                if int()? != 1 {
                    return Err(bad("this broker is a single node: only 1 is possible"));
                }
            }
            "message.max.bytes" => topic(&mut self.log_defaults, "max.message.bytes", value)?,
            "log.segment.bytes" => topic(&mut self.log_defaults, "segment.bytes", value)?,
            "log.roll.ms" => topic(&mut self.log_defaults, "segment.ms", value)?,
            "log.roll.hours" => topic(
                &mut self.log_defaults,
                "segment.ms",
                &(int()? * 3_600_000).to_string(),
            )?,
            "log.retention.bytes" => topic(&mut self.log_defaults, "retention.bytes", value)?,
            "log.retention.ms" => topic(&mut self.log_defaults, "retention.ms", value)?,
            "log.retention.minutes" => {
                let v = int()?;
                let ms = if v < 0 { -1 } else { v * 60_000 };
                topic(&mut self.log_defaults, "retention.ms", &ms.to_string())?
            }
            "log.retention.hours" => {
                let v = int()?;
                let ms = if v < 0 { -1 } else { v * 3_600_000 };
                topic(&mut self.log_defaults, "retention.ms", &ms.to_string())?
            }
            "log.index.interval.bytes" => {
                topic(&mut self.log_defaults, "index.interval.bytes", value)?
            }
            "log.flush.interval.messages" => {
                topic(&mut self.log_defaults, "flush.messages", value)?
            }
            "log.flush.interval.ms" => topic(&mut self.log_defaults, "flush.ms", value)?,
            "log.message.timestamp.type" => {
                topic(&mut self.log_defaults, "message.timestamp.type", value)?
            }
            "log.message.timestamp.before.max.ms" => topic(
                &mut self.log_defaults,
                "message.timestamp.before.max.ms",
                value,
            )?,
            "log.message.timestamp.after.max.ms" => topic(
                &mut self.log_defaults,
                "message.timestamp.after.max.ms",
                value,
            )?,
            "log.cleanup.policy" => topic(&mut self.log_defaults, "cleanup.policy", value)?,
            "log.cleaner.enable" => {
                self.cleaner.enable = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("must be true or false")),
                }
            }
            "log.cleaner.dedupe.buffer.size" => {
                let v = int()?;
                if v < 1 << 20 {
                    return Err(bad("must be at least 1048576"));
                }
                self.cleaner.dedupe_buffer_bytes = v as u64;
            }
            "log.cleaner.backoff.ms" => {
                let v = int()?;
                if v < 0 {
                    return Err(bad("must be at least 0"));
                }
                self.cleaner.backoff_ms = v as u64;
            }
            "log.cleaner.io.max.bytes.per.second" => {
                let v: f64 = value.trim().parse().map_err(|_| bad("not a number"))?;
                if v.is_nan() || v <= 0.0 {
                    return Err(bad("must be more than 0"));
                }
                // Kafka's default is Double.MAX_VALUE: no limit.
                self.cleaner.io_max_bytes_per_second = (v < 1e18).then_some(v as u64);
            }
            "log.cleaner.threads" => {
                if int()? < 1 {
                    return Err(bad("must be at least 1"));
                }
                tracing::warn!("log.cleaner.threads: this broker runs one cleaner thread");
            }
            "log.cleaner.delete.retention.ms" => {
                topic(&mut self.log_defaults, "delete.retention.ms", value)?
            }
            "log.cleaner.min.cleanable.ratio" => {
                topic(&mut self.log_defaults, "min.cleanable.dirty.ratio", value)?
            }
            "log.cleaner.min.compaction.lag.ms" => {
                topic(&mut self.log_defaults, "min.compaction.lag.ms", value)?
            }
            "log.cleaner.max.compaction.lag.ms" => {
                topic(&mut self.log_defaults, "max.compaction.lag.ms", value)?
            }
            "compression.type"
            | "compression.gzip.level"
            | "compression.lz4.level"
            | "compression.zstd.level" => topic(&mut self.log_defaults, key, value)?,
            _ => {
                return Err(ConfigError::Unknown {
                    key: key.to_owned(),
                });
            }
        }
        self.explicit
            .insert(key.to_owned(), value.trim().to_owned());
        Ok(())
    }

    /// Applies the `[broker]` table of a TOML config. Dotted Kafka names
    /// may be written bare (`num.partitions = 3`, which TOML nests) or quoted.
    pub fn apply_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        let Some(broker) = doc.get("broker") else {
            return Ok(());
        };
        let toml::Value::Table(table) = broker else {
            return Err(ConfigError::Parse("[broker] must be a table".to_owned()));
        };
        let mut flat = Vec::new();
        flatten("", table, &mut flat)?;
        for (k, v) in flat {
            self.set(&k, &v)?;
        }
        Ok(())
    }

    /// Broker-level configs for DescribeConfigs: (name, value, explicitly set).
    pub fn describe(&self) -> Vec<(String, String, bool)> {
        let (host, port) = self.advertised();
        let mut out = vec![
            (
                "advertised.listeners".to_owned(),
                format!("PLAINTEXT://{host}:{port}"),
            ),
            (
                "auto.create.topics.enable".to_owned(),
                self.auto_create_topics.to_string(),
            ),
            ("default.replication.factor".to_owned(), "1".to_owned()),
            (
                "listeners".to_owned(),
                format!("PLAINTEXT://{}", self.listen),
            ),
            ("log.dirs".to_owned(), self.data_dir.display().to_string()),
            (
                "log.cleaner.backoff.ms".to_owned(),
                self.cleaner.backoff_ms.to_string(),
            ),
            (
                "log.cleaner.dedupe.buffer.size".to_owned(),
                self.cleaner.dedupe_buffer_bytes.to_string(),
            ),
            (
                "log.cleaner.enable".to_owned(),
                self.cleaner.enable.to_string(),
            ),
            (
                "log.cleaner.io.max.bytes.per.second".to_owned(),
                self.cleaner
                    .io_max_bytes_per_second
                    .map_or_else(|| "1.7976931348623157E308".to_owned(), |v| v.to_string()),
            ),
            ("log.cleaner.threads".to_owned(), "1".to_owned()),
            ("num.partitions".to_owned(), self.num_partitions.to_string()),
            (
                "socket.request.max.bytes".to_owned(),
                self.socket_request_max_bytes.to_string(),
            ),
        ];
        for (name, value) in self.log_defaults.entries() {
            let broker_name = match name {
                "max.message.bytes" => "message.max.bytes".to_owned(),
                "segment.ms" => "log.roll.ms".to_owned(),
                "flush.messages" => "log.flush.interval.messages".to_owned(),
                "flush.ms" => "log.flush.interval.ms".to_owned(),
                "delete.retention.ms" => "log.cleaner.delete.retention.ms".to_owned(),
                "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio".to_owned(),
                "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms".to_owned(),
                "max.compaction.lag.ms" => "log.cleaner.max.compaction.lag.ms".to_owned(),
                other if other.starts_with("compression.") => other.to_owned(),
                other => format!("log.{other}"),
            };
            out.push((broker_name, value));
        }
        out.sort();
        out.into_iter()
            .map(|(k, v)| {
                let explicit = self.explicit.contains_key(&k);
                (k, v, explicit)
            })
            .collect()
    }
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out)?,
            toml::Value::String(s) => out.push((key, s.clone())),
            toml::Value::Integer(i) => out.push((key, i.to_string())),
            toml::Value::Boolean(b) => out.push((key, b.to_string())),
            toml::Value::Float(f) => out.push((key, f.to_string())),
            _ => {
                return Err(ConfigError::Invalid {
                    key,
                    value: v.to_string(),
                    reason: "expected a string, number or boolean".to_owned(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BrokerConfig {
        BrokerConfig::new("/d", "127.0.0.1:9092".parse().unwrap())
    }

    #[test]
    fn kafka_names_from_toml_and_overrides() {
        let mut c = cfg();
        c.apply_toml(
            r#"
            [broker]
            num.partitions = 3
            auto.create.topics.enable = false
            "log.retention.hours" = 2
            log.segment.bytes = 1048576
            message.max.bytes = 2000000
            "#,
        )
        .unwrap();
        assert_eq!(c.num_partitions, 3);
        assert!(!c.auto_create_topics);
        assert_eq!(c.log_defaults.retention_ms, Some(7_200_000));
        assert_eq!(c.log_defaults.segment_bytes, 1_048_576);
        assert_eq!(c.log_defaults.max_message_bytes, 2_000_000);
        c.set("advertised.listeners", "PLAINTEXT://kafka.example:19092")
            .unwrap();
        assert_eq!(c.advertised(), ("kafka.example".to_owned(), 19092));
        let described = c.describe();
        assert!(described.contains(&("num.partitions".to_owned(), "3".to_owned(), true)));
        assert!(described.contains(&("log.retention.ms".to_owned(), "7200000".to_owned(), false)));
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = cfg();
        let e = c.set("num.partitions", "zero").unwrap_err().to_string();
        assert!(e.contains("num.partitions"), "{e}");
        let e = c
            .apply_toml("[broker]\nlog.retention.ms = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.retention.ms"), "{e}");
        let e = c.set("no.such.thing", "1").unwrap_err().to_string();
        assert!(e.contains("no.such.thing"), "{e}");
        assert!(c.set("default.replication.factor", "3").is_err());
    }
}
