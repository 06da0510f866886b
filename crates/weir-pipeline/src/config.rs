//! Pipeline configuration: named `[sources.X]`, `[transforms.X]` and
//! `[sinks.X]` tables with a `type` and `inputs` (Vector's model), parsed
//! raw and validated into typed components before anything runs. Every
//! error names the component and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use toml::{Table, Value as Toml};

use crate::transforms::json::TimeFormat;

/// A configuration error, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file is not TOML.
    #[error("not valid TOML: {0}")]
    Toml(String),
    /// A problem in one component.
    #[error("{section}.{component}: {message}")]
    Component {
        /// `sources`, `transforms` or `sinks`.
        section: String,
        /// The component's name.
        component: String,
        /// What is wrong (naming the key).
        message: String,
    },
    /// A problem with the whole graph.
    #[error("{0}")]
    Graph(String),
}

/// What the generator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenFormat {
    /// Flow A JSON readings.
    Sensors,
    /// Flow B nginx lines.
    Nginx,
}

/// How events are written by `stdout` and `file` sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One JSON object per line.
    Json,
    /// InfluxDB line protocol.
    LineProtocol,
}

/// A filter condition on one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Field equals the string form of a value.
    Equals(String),
    /// Field differs.
    NotEquals(String),
    /// Field exists.
    Exists,
    /// Numeric comparison: field > value.
    Greater(f64),
    /// Numeric comparison: field < value.
    Less(f64),
}

/// A typed, validated component.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// Generated test data.
    Generator {
        /// What.
        format: GenFormat,
        /// Events per second (`None`: as fast as possible).
        rate: Option<f64>,
        /// Stop after this many (`None`: never).
        count: Option<u64>,
        /// Random seed.
        seed: u64,
    },
    /// Lines from standard input.
    Stdin,
    /// Files tailed like Filebeat.
    FileSource(crate::file::FileConfig),
    /// InfluxDB / CnosDB write endpoints.
    Http(crate::ingest::IngestConfig),
    /// A Kafka consumer group.
    Kafka {
        /// Connection, topics, group, start, extra librdkafka settings.
        source: crate::kafka::SourceConfig,
        /// `text`, `json` (Telegraf rules) or `influx` (line protocol).
        format: String,
    },
    /// Telegraf-style JSON parsing.
    ParseJson {
        /// Measurement name.
        name: String,
        /// Keys that become tags.
        tag_keys: Vec<String>,
        /// String keys kept as fields.
        string_fields: Vec<String>,
        /// Time key and format.
        time_key: Option<(String, TimeFormat)>,
        /// `host` tag value; `None` to omit.
        host: Option<String>,
    },
    /// InfluxDB line protocol.
    ParseInflux {
        /// Timestamp precision.
        precision: crate::transforms::influx::Precision,
    },
    /// nginx access lines.
    ParseNginx {
        /// `combined`, `main` or a `log_format` string.
        format: String,
        /// Event name.
        name: String,
    },
    /// IP -> geography.
    Geoip {
        /// Database file.
        database: PathBuf,
        /// Field holding the address.
        field: String,
        /// Prefix of the fields added (`province`, `isp`, ...).
        prefix: String,
    },
    /// Keeps events whose field matches.
    Filter {
        /// Field.
        field: String,
        /// Condition.
        condition: Condition,
    },
    /// Sets fields to constant strings.
    Set(BTreeMap<String, String>),
    /// Renames fields.
    Rename(BTreeMap<String, String>),
    /// Removes fields.
    Remove(Vec<String>),
    /// The embedded time-series store of `weir up` (rows and the source
    /// positions after them stored in one durable write: exactly once).
    Store {
        /// The database (created on first write).
        database: String,
        /// Events per write.
        batch: usize,
    },
    /// A SQLite file.
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// Events per transaction.
        batch: usize,
    },
    /// Standard output.
    Stdout(Encoding),
    /// A Kafka topic (idempotent producer, acks=all).
    KafkaSink {
        /// `bootstrap.servers`.
        brokers: String,
        /// Topic.
        topic: String,
        /// `none`, `gzip`, `snappy`, `lz4`, `zstd`.
        compression: String,
        /// Payload: the raw line (`text`), `json` or `line_protocol`.
        encoding: String,
        /// Field used as the message key.
        key_field: Option<String>,
        /// Extra librdkafka settings.
        extra: BTreeMap<String, String>,
        /// Origins in headers and a state file, so events a source sends
        /// again are not produced twice.
        exactly_once: bool,
    },
    /// InfluxDB / CnosDB write endpoint.
    LineProtocol(crate::sinks::line_protocol::LineProtocolConfig),
    /// MySQL or MariaDB.
    Mysql(crate::sinks::mysql::MysqlConfig),
    /// A file, appended.
    File {
        /// Path.
        path: PathBuf,
        /// Encoding.
        encoding: Encoding,
    },
}

/// One component with its place in the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Unique name.
    pub id: String,
    /// Its inputs (empty for sources).
    pub inputs: Vec<String>,
    /// What it does.
    pub spec: Spec,
}

impl Spec {
    /// Sources produce events and have no inputs.
    pub fn is_source(&self) -> bool {
        matches!(
            self,
            Spec::Generator { .. }
                | Spec::Stdin
                | Spec::Kafka { .. }
                | Spec::FileSource(_)
                | Spec::Http(_)
        )
    }

    /// Sinks store events and feed nothing.
    pub fn is_sink(&self) -> bool {
        matches!(
            self,
            Spec::Sqlite { .. }
                | Spec::Store { .. }
                | Spec::Stdout(_)
                | Spec::File { .. }
                | Spec::KafkaSink { .. }
                | Spec::LineProtocol(_)
                | Spec::Mysql(_)
        )
    }

    /// The `type` this component has in a pipeline file.
    pub fn type_name(&self) -> &'static str {
        match self {
            Spec::Generator { .. } => "generator",
            Spec::Stdin => "stdin",
            Spec::FileSource(_) => "file",
            Spec::Http(_) => "http",
            Spec::Kafka { .. } | Spec::KafkaSink { .. } => "kafka",
            Spec::ParseJson { .. } => "parse_json",
            Spec::ParseInflux { .. } => "parse_influx",
            Spec::ParseNginx { .. } => "parse_nginx",
            Spec::Geoip { .. } => "geoip",
            Spec::Filter { .. } => "filter",
            Spec::Set(_) => "set",
            Spec::Rename(_) => "rename",
            Spec::Remove(_) => "remove",
            Spec::Sqlite { .. } => "sqlite",
            Spec::Store { .. } => "store",
            Spec::Stdout(_) => "stdout",
            Spec::LineProtocol(_) => "line_protocol",
            Spec::Mysql(_) => "mysql",
            Spec::File { .. } => "file",
        }
    }

    /// Components with an `.errors` output (what they reject): transforms
    /// and the sinks a server can refuse data to.
    pub fn has_errors_output(&self) -> bool {
        (!self.is_source() && !self.is_sink())
            || matches!(self, Spec::LineProtocol(_) | Spec::Mysql(_))
    }
}

/// A validated pipeline, components in topological order.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// Components; every input of one comes before it.
    pub components: Vec<Component>,
    /// Where sources and sinks keep their state (registries, positions):
    /// the top-level `data_dir` key, by default `weir-data`.
    pub data_dir: PathBuf,
}

struct Keys<'a> {
    section: &'a str,
    id: &'a str,
    table: &'a Table,
    used: BTreeSet<&'static str>,
}

impl<'a> Keys<'a> {
    fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Component {
            section: self.section.to_owned(),
            component: self.id.to_owned(),
            message: message.into(),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Toml> {
        self.used.insert(key);
        self.table.get(key)
    }

    fn string(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Toml::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.err(format!("key `{key}` must be a string"))),
        }
    }

    fn required(&mut self, key: &'static str) -> Result<String, ConfigError> {
        self.string(key)?
            .ok_or_else(|| self.err(format!("missing key `{key}`")))
    }

    fn strings(&mut self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Toml::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| self.err(format!("key `{key}` must be a list of strings")))
                })
                .collect(),
            Some(_) => Err(self.err(format!("key `{key}` must be a list of strings"))),
        }
    }

    fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Toml::Boolean(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(format!("key `{key}` must be true or false"))),
        }
    }

    fn number(&mut self, key: &'static str) -> Result<Option<f64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Toml::Integer(i)) => Ok(Some(*i as f64)),
            Some(Toml::Float(f)) => Ok(Some(*f)),
            Some(_) => Err(self.err(format!("key `{key}` must be a number"))),
        }
    }

    fn table(&mut self, key: &'static str) -> Result<BTreeMap<String, String>, ConfigError> {
        match self.get(key) {
            None => Ok(BTreeMap::new()),
            Some(Toml::Table(t)) => t
                .iter()
                .map(|(k, v)| match v {
                    Toml::String(s) => Ok((k.clone(), s.clone())),
                    other => Ok((k.clone(), other.to_string())),
                })
                .collect(),
            Some(_) => Err(self.err(format!("key `{key}` must be a table"))),
        }
    }

    /// Fails on any key that was not read.
    fn finish(self) -> Result<(), ConfigError> {
        let unknown: Vec<&String> = self
            .table
            .keys()
            .filter(|k| !self.used.contains(k.as_str()) && *k != "type" && *k != "inputs")
            .collect();
        match unknown.first() {
            Some(k) => Err(self.err(format!(
                "unknown key `{k}` (this component takes: {})",
                self.used.iter().copied().collect::<Vec<_>>().join(", ")
            ))),
            None => Ok(()),
        }
    }
}

fn encoding(k: &mut Keys<'_>) -> Result<Encoding, ConfigError> {
    match k.string("encoding")?.as_deref() {
        None | Some("json") => Ok(Encoding::Json),
        Some("line_protocol" | "influx") => Ok(Encoding::LineProtocol),
        Some(other) => Err(k.err(format!(
            "key `encoding`: unknown encoding {other:?} (json or line_protocol)"
        ))),
    }
}

fn spec(section: &str, id: &str, table: &Table) -> Result<Spec, ConfigError> {
    let mut k = Keys {
        section,
        id,
        table,
        used: BTreeSet::new(),
    };
    let ty = match table.get("type") {
        Some(Toml::String(t)) => t.as_str(),
        Some(_) => return Err(k.err("key `type` must be a string")),
        None => return Err(k.err("missing key `type`")),
    };
    let allowed: &[&str] = match section {
        "sources" => &["generator", "stdin", "kafka", "file", "http"],
        "transforms" => &[
            "parse_json",
            "parse_influx",
            "parse_nginx",
            "geoip",
            "filter",
            "set",
            "rename",
            "remove",
        ],
        _ => &[
            "store",
            "sqlite",
            "stdout",
            "file",
            "kafka",
            "line_protocol",
            "mysql",
        ],
    };
    if !allowed.contains(&ty) {
        return Err(k.err(format!(
            "key `type`: unknown {section} type {ty:?} (one of: {})",
            allowed.join(", ")
        )));
    }
    let spec = match ty {
        "generator" => {
            let format = match k.required("format")?.as_str() {
                "sensors" => GenFormat::Sensors,
                "nginx" => GenFormat::Nginx,
                other => {
                    return Err(k.err(format!("key `format`: {other:?} is not sensors or nginx")));
                }
            };
            let rate = k.number("rate")?.filter(|r| *r > 0.0);
            let count = k.number("count")?.map(|c| c.max(0.0) as u64);
            let seed = k.number("seed")?.unwrap_or(1.0) as u64;
            Spec::Generator {
                format,
                rate,
                count,
                seed,
            }
        }
        "stdin" => Spec::Stdin,
        "http" => {
            let d = crate::ingest::IngestConfig::default();
            let address = k.string("address")?.unwrap_or(d.address);
            if address.parse::<std::net::SocketAddr>().is_err() {
                return Err(k.err(format!(
                    "key `address`: {address:?} is not host:port (an IP address and a port)"
                )));
            }
            let max_body = match k.number("max_body_bytes")? {
                None => d.max_body,
                Some(v) if v >= 1.0 => v as usize,
                Some(v) => return Err(k.err(format!("key `max_body_bytes`: {v} must be positive"))),
            };
            let ack_timeout = match k.number("ack_timeout_ms")? {
                None => d.ack_timeout,
                Some(v) if v >= 1.0 => Duration::from_millis(v as u64),
                Some(v) => return Err(k.err(format!("key `ack_timeout_ms`: {v} must be positive"))),
            };
            Spec::Http(crate::ingest::IngestConfig {
                address,
                username: k.string("username")?,
                password: k.string("password")?.unwrap_or_default(),
                max_body,
                ack_timeout,
            })
        }
        "file" if section == "sources" => {
            let mut f = crate::file::FileConfig {
                include: k.strings("include")?,
                ..Default::default()
            };
            if f.include.is_empty() {
                return Err(k.err("missing key `include` (a list of file globs)"));
            }
            if k.table.contains_key("exclude") {
                f.exclude = k.strings("exclude")?;
            }
            f.start_at_end = match k.string("start_at")?.as_deref() {
                None | Some("beginning") => false,
                Some("end") => true,
                Some(other) => {
                    return Err(k.err(format!("key `start_at`: {other:?} is not beginning or end")));
                }
            };
            let positive =
                |k: &mut Keys<'_>, key: &'static str, default: f64| match k.number(key)? {
                    None => Ok(default),
                    Some(v) if v > 0.0 => Ok(v),
                    Some(v) => Err(k.err(format!("key `{key}`: {v} must be positive"))),
                };
            f.fingerprint_bytes = positive(&mut k, "fingerprint_bytes", 256.0)? as usize;
            f.poll = Duration::from_millis(positive(&mut k, "poll_ms", 250.0)? as u64);
            f.rotate_wait =
                Duration::from_millis(positive(&mut k, "rotate_wait_ms", 5000.0)? as u64);
            f.max_line_bytes = positive(&mut k, "max_line_bytes", f64::from(1u32 << 20))? as usize;
            f.registry = k.string("registry")?.map(PathBuf::from);
            Spec::FileSource(f)
        }
        "kafka" if section == "sources" => {
            let brokers = k.required("brokers")?;
            let topics = k.strings("topics")?;
            if topics.is_empty() {
                return Err(k.err("missing key `topics`"));
            }
            let group = k.required("group")?;
            let start = k.string("start")?.unwrap_or_else(|| "earliest".to_owned());
            if start != "earliest" && start != "latest" {
                return Err(k.err(format!("key `start`: {start:?} is not earliest or latest")));
            }
            let format = k.string("format")?.unwrap_or_else(|| "text".to_owned());
            if !["text", "json", "influx"].contains(&format.as_str()) {
                return Err(k.err(format!(
                    "key `format`: {format:?} is not text, json or influx"
                )));
            }
            let extra = k.table("librdkafka")?;
            Spec::Kafka {
                source: crate::kafka::SourceConfig {
                    brokers,
                    topics,
                    group,
                    start,
                    extra,
                },
                format,
            }
        }
        "kafka" => {
            let compression = k
                .string("compression")?
                .unwrap_or_else(|| "none".to_owned());
            if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&compression.as_str()) {
                return Err(k.err(format!("key `compression`: unknown codec {compression:?}")));
            }
            let encoding = k.string("encoding")?.unwrap_or_else(|| "text".to_owned());
            if !["text", "json", "line_protocol"].contains(&encoding.as_str()) {
                return Err(k.err(format!(
                    "key `encoding`: {encoding:?} is not text, json or line_protocol"
                )));
            }
            Spec::KafkaSink {
                brokers: k.required("brokers")?,
                topic: k.required("topic")?,
                compression,
                encoding,
                key_field: k.string("key_field")?,
                extra: k.table("librdkafka")?,
                exactly_once: k.boolean("exactly_once")?.unwrap_or(true),
            }
        }
        "parse_json" => {
            let name = k
                .string("name")?
                .unwrap_or_else(|| "kafka_consumer".to_owned());
            let tag_keys = k.strings("tag_keys")?;
            let string_fields = k.strings("string_fields")?;
            let time_key = match k.string("time_key")? {
                None => None,
                Some(key) => {
                    let f = k
                        .string("time_format")?
                        .unwrap_or_else(|| "unix".to_owned());
                    let fmt = TimeFormat::parse(&f)
                        .ok_or_else(|| k.err(format!("key `time_format`: unknown format {f:?}")))?;
                    Some((key, fmt))
                }
            };
            let host = match k.string("host")?.as_deref() {
                None | Some("auto") => Some(hostname()),
                Some("") => None,
                Some(h) => Some(h.to_owned()),
            };
            Spec::ParseJson {
                name,
                tag_keys,
                string_fields,
                time_key,
                host,
            }
        }
        "parse_influx" => {
            let p = k.string("precision")?.unwrap_or_default();
            let precision = crate::transforms::influx::Precision::parse(&p).ok_or_else(|| {
                k.err(format!(
                    "key `precision`: {p:?} is not ns, us, ms, s, m or h"
                ))
            })?;
            Spec::ParseInflux { precision }
        }
        "parse_nginx" => {
            let format = k.string("format")?.unwrap_or_else(|| "combined".to_owned());
            crate::transforms::nginx::NginxParser::new(&format, "x")
                .map_err(|e| k.err(format!("key `format`: {e}")))?;
            Spec::ParseNginx {
                format,
                name: k.string("name")?.unwrap_or_else(|| "access_log".to_owned()),
            }
        }
        "geoip" => Spec::Geoip {
            database: PathBuf::from(k.required("database")?),
            field: k.string("field")?.unwrap_or_else(|| "client_ip".to_owned()),
            prefix: k.string("prefix")?.unwrap_or_default(),
        },
        "filter" => {
            let field = k.required("field")?;
            let given: Vec<&'static str> = [
                "equals",
                "not_equals",
                "exists",
                "greater_than",
                "less_than",
            ]
            .into_iter()
            .filter(|c| table.contains_key(*c))
            .collect();
            if given.len() != 1 {
                return Err(k.err("exactly one of `equals`, `not_equals`, `exists`, `greater_than`, `less_than` is needed"));
            }
            let condition = match given[0] {
                "equals" => Condition::Equals(k.get("equals").map(toml_text).unwrap_or_default()),
                "not_equals" => {
                    Condition::NotEquals(k.get("not_equals").map(toml_text).unwrap_or_default())
                }
                "exists" => {
                    k.get("exists");
                    Condition::Exists
                }
                "greater_than" => Condition::Greater(k.number("greater_than")?.unwrap_or_default()),
                _ => Condition::Less(k.number("less_than")?.unwrap_or_default()),
            };
            Spec::Filter { field, condition }
        }
        "set" => Spec::Set(k.table("fields")?),
        "rename" => Spec::Rename(k.table("fields")?),
        "remove" => Spec::Remove(k.strings("fields")?),
        "store" => Spec::Store {
            database: k.string("database")?.unwrap_or_else(|| "public".to_owned()),
            batch: k.number("batch")?.map_or(1000, |b| b.max(1.0) as usize),
        },
        "sqlite" => Spec::Sqlite {
            path: PathBuf::from(k.required("path")?),
            batch: k.number("batch")?.map_or(1000, |b| b.max(1.0) as usize),
        },
        "stdout" => Spec::Stdout(encoding(&mut k)?),
        "mysql" => {
            let url = k.required("url")?;
            mysql::Opts::from_url(&url).map_err(|e| k.err(format!("key `url`: {e}")))?;
            let table = k.string("table")?;
            let columns = k.table("columns")?;
            if !columns.is_empty() && table.is_none() {
                return Err(
                    k.err("key `columns` needs key `table` (the existing table they belong to)")
                );
            }
            let batch = match k.number("batch")? {
                None => 1000,
                Some(v) if v >= 1.0 => v as usize,
                Some(v) => return Err(k.err(format!("key `batch`: {v} must be positive"))),
            };
            let flush_ms = match k.number("flush_ms")? {
                None => 1000,
                Some(v) if v >= 1.0 => v as u64,
                Some(v) => return Err(k.err(format!("key `flush_ms`: {v} must be positive"))),
            };
            Spec::Mysql(crate::sinks::mysql::MysqlConfig {
                url,
                table,
                columns,
                batch,
                flush_ms,
            })
        }
        "line_protocol" => {
            let d = crate::sinks::line_protocol::LineProtocolConfig::default();
            let url = k.required("url")?;
            crate::http::Url::parse(&url).map_err(|e| k.err(format!("key `url`: {e}")))?;
            let positive = |k: &mut Keys<'_>, key: &'static str| match k.number(key)? {
                None => Ok(None),
                Some(v) if v >= 1.0 => Ok(Some(v)),
                Some(v) => Err(k.err(format!("key `{key}`: {v} must be positive"))),
            };
            Spec::LineProtocol(crate::sinks::line_protocol::LineProtocolConfig {
                url,
                username: k.string("username")?,
                password: k.string("password")?.unwrap_or_default(),
                batch: positive(&mut k, "batch")?.map_or(d.batch, |v| v as usize),
                gzip: k.boolean("gzip")?.unwrap_or(d.gzip),
                timeout: positive(&mut k, "timeout_ms")?
                    .map_or(d.timeout, |v| Duration::from_millis(v as u64)),
                flush: positive(&mut k, "flush_ms")?
                    .map_or(d.flush, |v| Duration::from_millis(v as u64)),
            })
        }
        _ => Spec::File {
            path: PathBuf::from(k.required("path")?),
            encoding: encoding(&mut k)?,
        },
    };
    k.finish()?;
    Ok(spec)
}

fn toml_text(v: &Toml) -> String {
    match v {
        Toml::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// This machine's host name (Telegraf's `host` tag).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

impl PipelineConfig {
    /// Parses and validates a pipeline file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let doc: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Toml(e.to_string()))?;
        if let Some(k) = doc
            .keys()
            .find(|k| !["sources", "transforms", "sinks", "data_dir"].contains(&k.as_str()))
        {
            return Err(ConfigError::Graph(format!(
                "unknown top-level key `{k}` (expected data_dir, sources, transforms, sinks)"
            )));
        }
        let data_dir = match doc.get("data_dir") {
            None => PathBuf::from("weir-data"),
            Some(Toml::String(s)) => PathBuf::from(s),
            Some(_) => {
                return Err(ConfigError::Graph(
                    "top-level key `data_dir` must be a string".to_owned(),
                ));
            }
        };
        let mut comps: Vec<Component> = Vec::new();
        for section in ["sources", "transforms", "sinks"] {
            let Some(entries) = doc.get(section) else {
                continue;
            };
            let Toml::Table(entries) = entries else {
                return Err(ConfigError::Graph(format!(
                    "`{section}` must be a table of components"
                )));
            };
            for (id, v) in entries {
                let Toml::Table(t) = v else {
                    return Err(ConfigError::Graph(format!(
                        "{section}.{id} must be a table"
                    )));
                };
                if comps.iter().any(|c| c.id == *id) {
                    return Err(ConfigError::Graph(format!(
                        "component name `{id}` is used twice"
                    )));
                }
                let spec = spec(section, id, t)?;
                let err = |m: &str| ConfigError::Component {
                    section: section.to_owned(),
                    component: id.clone(),
                    message: m.to_owned(),
                };
                let inputs: Vec<String> = match t.get("inputs") {
                    None => Vec::new(),
                    Some(Toml::Array(a)) => a
                        .iter()
                        .map(|v| {
                            v.as_str().map(str::to_owned).ok_or_else(|| {
                                err("key `inputs` must be a list of component names")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(err("key `inputs` must be a list of component names")),
                };
                if section == "sources" && !inputs.is_empty() {
                    return Err(err("key `inputs`: a source takes no inputs"));
                }
                if section != "sources" && inputs.is_empty() {
                    return Err(err("missing key `inputs`"));
                }
                comps.push(Component {
                    id: id.clone(),
                    inputs,
                    spec,
                });
            }
        }
        if !comps.iter().any(|c| c.spec.is_sink()) {
            return Err(ConfigError::Graph("the pipeline has no sink".to_owned()));
        }
        for c in &comps {
            for i in &c.inputs {
                // `X.errors` is the dead-letter output of transform X.
                if let Some(base) = i.strip_suffix(".errors") {
                    match comps.iter().find(|x| x.id == base) {
                        Some(x) if x.spec.has_errors_output() => continue,
                        _ => {
                            return Err(ConfigError::Graph(format!(
                                "{}: input `{i}`: only transforms and database sinks have an `.errors` output",
                                c.id
                            )));
                        }
                    }
                }
                match comps.iter().find(|x| x.id == *i) {
                    None => {
                        return Err(ConfigError::Graph(format!(
                            "{}: input `{i}` is not a component of this pipeline",
                            c.id
                        )));
                    }
                    Some(x) if x.spec.is_sink() => {
                        return Err(ConfigError::Graph(format!(
                            "{}: input `{i}` is a sink, which has no output",
                            c.id
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        // Topological order (Kahn); anything left over is a cycle.
        let mut ordered: Vec<Component> = Vec::new();
        let mut rest = comps;
        while !rest.is_empty() {
            let ready = rest.iter().position(|c| {
                c.inputs.iter().all(|i| {
                    ordered
                        .iter()
                        .any(|o| o.id == *i || format!("{}.errors", o.id) == *i)
                })
            });
            match ready {
                Some(p) => ordered.push(rest.remove(p)),
                None => {
                    let names: Vec<&str> = rest.iter().map(|c| c.id.as_str()).collect();
                    return Err(ConfigError::Graph(format!(
                        "cycle among: {}",
                        names.join(", ")
                    )));
                }
            }
        }
        Ok(Self {
            data_dir,
            components: ordered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOW_A: &str = r#"
        [sources.sensors]
        type = "generator"
        format = "sensors"
        rate = 100

        [transforms.parse]
        type = "parse_json"
        inputs = ["sensors"]
        host = "web1"

        [sinks.store]
        type = "sqlite"
        inputs = ["parse"]
        path = "weir.db"
    "#;

    #[test]
    fn a_valid_pipeline_is_ordered() {
        let c = PipelineConfig::parse(FLOW_A).unwrap();
        let ids: Vec<&str> = c.components.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, vec!["sensors", "parse", "store"]);
        assert!(
            matches!(&c.components[1].spec, Spec::ParseJson { name, host: Some(h), .. } if name == "kafka_consumer" && h == "web1")
        );
    }

    /// (config, text the error must contain)
    fn check(text: &str, want: &str) {
        let err = PipelineConfig::parse(text).unwrap_err().to_string();
        assert!(err.contains(want), "expected {want:?} in: {err}");
    }

    #[test]
    fn errors_name_the_component_and_key() {
        check(
            "[sources.a]\ntype = \"generator\"\nformat = \"sensors\"\nspeed = 3\n[sinks.s]\ntype = \"stdout\"\ninputs = [\"a\"]",
            "sources.a: unknown key `speed`",
        );
        check(
            "[sources.a]\ntype = \"generatr\"\n",
            "sources.a: key `type`: unknown sources type \"generatr\"",
        );
        check(
            "[sources.a]\ntype = \"generator\"\n[sinks.s]\ntype = \"stdout\"\ninputs = [\"a\"]",
            "sources.a: missing key `format`",
        );
        check(
            "[sources.a]\ntype = \"generator\"\nformat = \"sensors\"\n[sinks.s]\ntype = \"stdout\"\ninputs = [\"b\"]",
            "s: input `b` is not a component",
        );
        check(
            "[sources.a]\ntype = \"generator\"\nformat = \"sensors\"\n[sinks.s]\ntype = \"stdout\"",
            "sinks.s: missing key `inputs`",
        );
        check(
            "[sources.a]\ntype = \"generator\"\nformat = \"sensors\"\n",
            "no sink",
        );
        check(
            "[sources.a]\ntype = \"generator\"\nformat = \"sensors\"\n[transforms.x]\ntype = \"set\"\ninputs = [\"y\"]\n[transforms.y]\ntype = \"set\"\ninputs = [\"x\"]\n[sinks.s]\ntype = \"stdout\"\ninputs = [\"a\"]",
            "cycle among: x, y",
        );
        check(
            "[sources.a]\ntype = \"stdin\"\n[transforms.p]\ntype = \"parse_nginx\"\ninputs = [\"a\"]\nformat = \"$a$b\"\n[sinks.s]\ntype = \"stdout\"\ninputs = [\"p\"]",
            "transforms.p: key `format`",
        );
        check(
            "[sources.a]\ntype = \"stdin\"\n[transforms.f]\ntype = \"filter\"\ninputs = [\"a\"]\nfield = \"x\"\n[sinks.s]\ntype = \"stdout\"\ninputs = [\"f\"]",
            "transforms.f: exactly one of",
        );
        check(
            "[sources.a]\ntype = \"stdin\"\n[sinks.s]\ntype = \"file\"\ninputs = [\"a\"]\npath = 3",
            "sinks.s: key `path` must be a string",
        );
        check("[pipeline]\nx = 1", "unknown top-level key `pipeline`");
        check(
            "[sources.a]\ntype = \"stdin\"\n[sinks.s]\ntype = \"stdout\"\ninputs = [\"a.errors\"]",
            "only transforms and database sinks have an `.errors` output",
        );
        check(
            "[sources.a]\ntype = \"stdin\"\n[transforms.p]\ntype = \"parse_influx\"\ninputs = [\"a\"]\nprecision = \"d\"\n[sinks.s]\ntype = \"stdout\"\ninputs = [\"p\"]",
            "transforms.p: key `precision`",
        );
        check("not toml [", "not valid TOML");
        let sink = "\n[sinks.s]\ntype = \"stdout\"\ninputs = [\"a\"]";
        check(
            &format!("[sources.a]\ntype = \"file\"{sink}"),
            "sources.a: missing key `include`",
        );
        check(
            &format!(
                "[sources.a]\ntype = \"file\"\ninclude = [\"*.log\"]\nstart_at = \"middle\"{sink}"
            ),
            "sources.a: key `start_at`",
        );
        check(
            &format!("[sources.a]\ntype = \"http\"\naddress = \"localhost\"{sink}"),
            "sources.a: key `address`",
        );
        let src = "[sources.a]\ntype = \"stdin\"\n";
        check(
            &format!("{src}[sinks.m]\ntype = \"mysql\"\ninputs = [\"a\"]\nurl = \"postgres://x\""),
            "sinks.m: key `url`",
        );
        check(
            &format!(
                "{src}[sinks.m]\ntype = \"mysql\"\ninputs = [\"a\"]\nurl = \"mysql://u@h/db\"\ncolumns = {{ c = \"f\" }}"
            ),
            "sinks.m: key `columns` needs key `table`",
        );
        check(
            &format!(
                "{src}[sinks.l]\ntype = \"line_protocol\"\ninputs = [\"a\"]\nurl = \"https://tsdb/write\""
            ),
            "sinks.l: key `url`",
        );
        check(
            &format!(
                "{src}[sinks.k]\ntype = \"kafka\"\ninputs = [\"a\"]\nbrokers = \"b\"\ntopic = \"t\"\nexactly_once = \"yes\""
            ),
            "sinks.k: key `exactly_once` must be true or false",
        );
        // Database sinks have a dead-letter output; other sinks do not.
        let lp = "[sinks.l]\ntype = \"line_protocol\"\ninputs = [\"a\"]\nurl = \"http://tsdb:8086/write?db=x\"\n";
        assert!(
            PipelineConfig::parse(&format!(
                "{src}{lp}[sinks.d]\ntype = \"stdout\"\ninputs = [\"l.errors\"]"
            ))
            .is_ok()
        );
        check(
            &format!(
                "{src}[sinks.o]\ntype = \"stdout\"\ninputs = [\"a\"]\n[sinks.d]\ntype = \"stdout\"\ninputs = [\"o.errors\"]"
            ),
            "only transforms and database sinks have an `.errors` output",
        );
    }
}
