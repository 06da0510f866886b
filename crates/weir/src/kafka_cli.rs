//! The Kafka commands of the CLI, in Kafka's vocabulary, against Weir or
//! any Kafka cluster (`--brokers`): `weir topic`, `weir produce`,
//! `weir consume`, `weir group`. They are librdkafka clients, like kcat.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the cluster is.
#[derive(Debug, Args, Clone)]
pub(crate) struct Conn {
    /// Bootstrap servers (host:port[,host:port...]).
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092", global = true)]
    brokers: String,
    /// Extra librdkafka setting, e.g. -X security.protocol=SASL_SSL (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE", global = true)]
    settings: Vec<String>,
}

/// A librdkafka config for `brokers` with `-X KEY=VALUE` settings.
pub(crate) fn client_config(brokers: &str, settings: &[String]) -> Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for kv in settings {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("-X {kv}: expected KEY=VALUE"))?;
        c.set(k, v);
    }
    Ok(c)
}

impl Conn {
    /// A connection to `brokers` with no extra settings.
    pub(crate) fn to(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            settings: Vec::new(),
        }
    }

    fn config(&self) -> Result<ClientConfig> {
        client_config(&self.brokers, &self.settings)
    }

    /// The bootstrap servers.
    pub(crate) fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The `-X` settings.
    pub(crate) fn settings(&self) -> &[String] {
        &self.settings
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        self.config()?.create().context("creating an admin client")
    }

    fn consumer(&self, group: &str) -> Result<BaseConsumer> {
        let mut c = self.config()?;
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        c.create().context("creating a consumer")
    }

    /// Metadata, with a clear error when the cluster does not answer.
    fn metadata(&self, topic: Option<&str>) -> Result<rdkafka::metadata::Metadata> {
        let c: BaseConsumer = self.config()?.create().context("creating a client")?;
        c.fetch_metadata(topic, TIMEOUT)
            .map_err(|e| anyhow::anyhow!("cannot reach a broker at {}: {e}", self.brokers))
    }
}

/// Sends a record, polling for `pause` and retrying while librdkafka's
/// queue is full; any other error is returned.
pub(crate) fn send_waiting<'a, K, P, C>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
    pause: Duration,
) -> Result<(), rdkafka::error::KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
    C: rdkafka::producer::ProducerContext,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, back))
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                producer.poll(pause);
                record = back;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f))
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(TIMEOUT))
}

/// `weir topic ...`
#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic: weir topic create oceanic -p 3 -c retention.ms=86400000
    Create {
        /// Name.
        name: String,
        /// Partitions.
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: i32,
        /// Replication factor (-1: the broker's default.replication.factor).
        #[arg(long, short = 'r', default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i32,
        /// A topic config (repeatable).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Succeed when the topic exists already.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics with their partition counts.
    List {
        /// Include internal topics (__consumer_offsets).
        #[arg(long)]
        internal: bool,
    },
    /// Partitions, leaders, offsets and configs, like kafka-topics.sh --describe.
    Describe {
        /// Name.
        name: String,
    },
    /// Delete a topic.
    Delete {
        /// Name.
        name: String,
    },
    /// Change topic configs: weir topic alter-config oceanic --set retention.ms=3600000
    AlterConfig {
        /// Name.
        name: String,
        /// A config to set (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", required = true)]
        set: Vec<String>,
    },
}

fn key_values(list: &[String], what: &str) -> Result<Vec<(String, String)>> {
    list.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("{what} {kv}: expected KEY=VALUE"))
        })
        .collect()
}

pub(crate) fn topic(conn: &Conn, cmd: TopicCommand, out: &mut impl Write) -> Result<()> {
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            let configs = key_values(&configs, "--config")?;
            let mut t = NewTopic::new(
                &name,
                partitions,
                TopicReplication::Fixed(replication_factor),
            );
            for (k, v) in &configs {
                t = t.set(k, v);
            }
            let admin = conn.admin()?;
            let results = block_on(admin.create_topics([&t], &admin_options()))?
                .map_err(|e| anyhow::anyhow!("cannot reach a broker at {}: {e}", conn.brokers))?;
            for r in results {
                match r {
                    Ok(t) => writeln!(out, "Created topic {t}.")?,
                    Err((t, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))
                        if if_not_exists =>
                    {
                        writeln!(out, "Topic {t} exists already.")?;
                    }
                    Err((t, e)) => bail!("creating topic {t}: {e}"),
                }
            }
        }
        TopicCommand::List { internal } => {
            let md = conn.metadata(None)?;
            let mut topics: Vec<_> = md
                .topics()
                .iter()
                .filter(|t| internal || !t.name().starts_with("__"))
                .map(|t| (t.name().to_owned(), t.partitions().len()))
                .collect();
            topics.sort();
            for (name, parts) in topics {
                writeln!(
                    out,
                    "{name}\t{parts} partition{}",
                    if parts == 1 { "" } else { "s" }
                )?;
            }
        }
        TopicCommand::Describe { name } => describe_topic(conn, &name, out)?,
        TopicCommand::Delete { name } => {
            let admin = conn.admin()?;
            let results = block_on(admin.delete_topics(&[&name], &admin_options()))?
                .map_err(|e| anyhow::anyhow!("cannot reach a broker at {}: {e}", conn.brokers))?;
            for r in results {
                match r {
                    Ok(t) => writeln!(out, "Deleted topic {t}.")?,
                    Err((t, e)) => bail!("deleting topic {t}: {e}"),
                }
            }
        }
        TopicCommand::AlterConfig { name, set } => {
            let set = key_values(&set, "--set")?;
            let admin = conn.admin()?;
            // AlterConfigs replaces the topic's whole set of overrides: keep
            // the ones not being changed.
            let mut overrides: BTreeMap<String, String> = topic_overrides(&admin, &name, conn)?;
            for (k, v) in set {
                overrides.insert(k, v);
            }
            let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&name));
            for (k, v) in &overrides {
                alter = alter.set(k, v);
            }
            let results = block_on(admin.alter_configs([&alter], &admin_options()))?
                .map_err(|e| anyhow::anyhow!("cannot reach a broker at {}: {e}", conn.brokers))?;
            for r in results {
                if let Err((_, e)) = r {
                    bail!("changing the configs of {name}: {e}");
                }
            }
            writeln!(out, "Completed updating config for topic {name}.")?;
        }
    }
    Ok(())
}

/// A topic's non-default configs.
fn topic_overrides(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    conn: &Conn,
) -> Result<BTreeMap<String, String>> {
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(name)], &admin_options()))?
            .map_err(|e| anyhow::anyhow!("cannot reach a broker at {}: {e}", conn.brokers))?;
    let mut out = BTreeMap::new();
    for r in results {
        let r = r.map_err(|e| anyhow::anyhow!("topic {name}: {e}"))?;
        for e in r.entries {
            if !e.is_default
                && matches!(e.source, rdkafka::admin::ConfigSource::DynamicTopic)
                && let Some(v) = e.value
            {
                out.insert(e.name, v);
            }
        }
    }
    Ok(out)
}

fn describe_topic(conn: &Conn, name: &str, out: &mut impl Write) -> Result<()> {
    let md = conn.metadata(Some(name))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == name) else {
        bail!("unknown topic {name}");
    };
    if let Some(e) = t.error() {
        bail!(
            "topic {name}: {}",
            rdkafka::types::RDKafkaErrorCode::from(e)
        );
    }
    let admin = conn.admin()?;
    let overrides = topic_overrides(&admin, name, conn)?;
    let configs: Vec<String> = overrides.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let replication = t.partitions().first().map_or(0, |p| p.replicas().len());
    writeln!(
        out,
        "Topic: {name}\tPartitionCount: {}\tReplicationFactor: {replication}\tConfigs: {}",
        t.partitions().len(),
        configs.join(",")
    )?;
    let consumer = conn.consumer("weir-cli")?;
    for p in t.partitions() {
        // An offline partition (no leader) has no offsets to ask for.
        let (low, high) = if p.leader() < 0 {
            (-1, -1)
        } else {
            consumer
                .fetch_watermarks(name, p.id(), TIMEOUT)
                .unwrap_or((-1, -1))
        };
        let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        let leader = if p.leader() < 0 {
            "none".to_owned()
        } else {
            p.leader().to_string()
        };
        writeln!(
            out,
            "\tTopic: {name}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}\tStartOffset: {low}\tEndOffset: {high}",
            p.id(),
            list(p.replicas()),
            list(p.isr()),
        )?;
    }
    Ok(())
}

/// Options of `weir produce`.
#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// Topic.
    topic: String,
    /// Read lines from this file instead of stdin (with a progress bar).
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<String>,
    /// A header on every message (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, short = 'z', default_value = "none")]
    compression: String,
    /// Partition (default: by key, or spread).
    #[arg(long, short = 'p')]
    partition: Option<i32>,
}

pub(crate) fn produce(conn: &Conn, args: ProduceArgs, out: &mut impl Write) -> Result<()> {
    let headers = key_values(&args.headers, "--header")?;
    let mut c = conn.config()?;
    c.set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", "5");
    if args.acks == "all" || args.acks == "-1" {
        c.set("enable.idempotence", "true");
    }
    let producer: BaseProducer = c.create().context("creating a producer")?;
    conn.metadata(Some(&args.topic))?;
    let (reader, total): (Box<dyn BufRead>, Option<u64>) = match &args.file {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let len = f.metadata().map(|m| m.len()).ok();
            (Box::new(std::io::BufReader::new(f)), len)
        }
        None => (Box::new(std::io::stdin().lock()), None),
    };
    let mut owned_headers = OwnedHeaders::new();
    for (k, v) in &headers {
        owned_headers = owned_headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let (mut sent, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    let mut shown = Instant::now();
    for line in reader.lines() {
        let line = line.context("reading input")?;
        bytes += line.len() as u64 + 1;
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_owned()), v.to_owned()),
                None => (None, line.clone()),
            },
            None => (None, line.clone()),
        };
        let mut rec: BaseRecord<'_, String, String> = BaseRecord::to(&args.topic).payload(&value);
        if let Some(k) = &key {
            rec = rec.key(k);
        }
        if !headers.is_empty() {
            rec = rec.headers(owned_headers.clone());
        }
        if let Some(p) = args.partition {
            rec = rec.partition(p);
        }
        if let Err(e) = send_waiting(&producer, rec, Duration::from_millis(20)) {
            bail!("producing to {}: {e}", args.topic);
        }
        sent += 1;
        if let Some(total) = total
            && shown.elapsed() > Duration::from_millis(200)
        {
            progress(bytes, total, sent, started);
            shown = Instant::now();
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!("not every message was delivered: {e}"))?;
    if let Some(total) = total {
        progress(total, total, sent, started);
        let _ = writeln!(std::io::stderr());
    }
    writeln!(out, "produced {sent} messages to {}", args.topic)?;
    Ok(())
}

fn progress(done: u64, total: u64, messages: u64, started: Instant) {
    let frac = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let width = 30;
    let filled = (frac * width as f64) as usize;
    let rate = messages as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let _ = write!(
        std::io::stderr(),
        "\r[{}{}] {:5.1}% {messages} msgs {rate:.0} msg/s",
        "#".repeat(filled.min(width)),
        " ".repeat(width - filled.min(width)),
        frac * 100.0
    );
}

/// Options of `weir consume`.
#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// Topic.
    topic: String,
    /// Start at the beginning (default: the end, or the group's offsets).
    #[arg(long)]
    from_beginning: bool,
    /// Start at this offset in every partition (negative: from the end).
    #[arg(long, short = 'o', allow_hyphen_values = true)]
    offset: Option<i64>,
    /// Start at the first message at or after this time (ms since epoch).
    #[arg(long)]
    from_time: Option<i64>,
    /// Consume as a member of this group (committing offsets).
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Stop after this many messages.
    #[arg(long, short = 'c')]
    count: Option<u64>,
    /// Stop at the end of every partition instead of waiting.
    #[arg(long, short = 'e')]
    exit: bool,
    /// Output template (kcat's -f): %t topic, %p partition, %o offset,
    /// %k key, %s value, %T timestamp (ms), %h headers, \n \t.
    #[arg(long, short = 'f', default_value = "%s\\n")]
    format: String,
}

fn render(format: &str, m: &rdkafka::message::BorrowedMessage<'_>) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(k)) => {
                chars.next();
                match k {
                    't' => out.push_str(m.topic()),
                    'p' => out.push_str(&m.partition().to_string()),
                    'o' => out.push_str(&m.offset().to_string()),
                    'k' => out.push_str(&String::from_utf8_lossy(m.key().unwrap_or_default())),
                    's' => out.push_str(&String::from_utf8_lossy(m.payload().unwrap_or_default())),
                    'T' => out.push_str(&m.timestamp().to_millis().unwrap_or(-1).to_string()),
                    'h' => {
                        let hs: Vec<String> = m
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|x| {
                                        format!(
                                            "{}={}",
                                            x.key,
                                            String::from_utf8_lossy(x.value.unwrap_or_default())
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        out.push_str(&hs.join(","));
                    }
                    '%' => out.push('%'),
                    other => {
                        out.push('%');
                        out.push(other);
                    }
                }
            }
            ('\\', Some(k)) => {
                chars.next();
                match k {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    '\\' => out.push('\\'),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

pub(crate) fn consume(conn: &Conn, args: ConsumeArgs, out: &mut impl Write) -> Result<()> {
    let group = args.group.clone().unwrap_or_else(|| "weir-cli".to_owned());
    let consumer = conn.consumer(&group)?;
    let md = conn.metadata(Some(&args.topic))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == args.topic && t.error().is_none() && !t.partitions().is_empty())
        .with_context(|| format!("unknown topic {}", args.topic))?;
    let mut tpl = TopicPartitionList::new();
    let start = if args.from_beginning {
        Offset::Beginning
    } else if let Some(o) = args.offset {
        if o < 0 {
            Offset::OffsetTail(-o)
        } else {
            Offset::Offset(o)
        }
    } else if args.group.is_some() {
        Offset::Stored
    } else {
        Offset::End
    };
    for p in t.partitions() {
        tpl.add_partition_offset(&args.topic, p.id(), start)?;
    }
    if let Some(ms) = args.from_time {
        let mut times = TopicPartitionList::new();
        for p in t.partitions() {
            times.add_partition_offset(&args.topic, p.id(), Offset::Offset(ms))?;
        }
        tpl = consumer
            .offsets_for_times(times, TIMEOUT)
            .context("looking up offsets by time")?;
    }
    if args.group.is_some() && start == Offset::Stored && args.from_time.is_none() {
        // The group's committed offsets, or the beginning for a new group.
        let committed = consumer.committed_offsets(tpl.clone(), TIMEOUT)?;
        tpl = TopicPartitionList::new();
        for e in committed.elements() {
            let o = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            tpl.add_partition_offset(e.topic(), e.partition(), o)?;
        }
    }
    consumer.assign(&tpl)?;
    let mut at_end: std::collections::BTreeSet<i32> = Default::default();
    let parts = t.partitions().len();
    let mut got = 0u64;
    let mut last_commit = Instant::now();
    while args.count.is_none_or(|c| got < c) {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                if args.exit && at_end.len() == parts {
                    break;
                }
            }
            Some(Err(e)) => bail!("consuming {}: {e}", args.topic),
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                write!(out, "{}", render(&args.format, &m))?;
                got += 1;
                if args.group.is_some() {
                    consumer.store_offset_from_message(&m).ok();
                    let mut c = TopicPartitionList::new();
                    c.add_partition_offset(
                        m.topic(),
                        m.partition(),
                        Offset::Offset(m.offset() + 1),
                    )?;
                    if last_commit.elapsed() > Duration::from_millis(500) {
                        consumer.commit(&c, CommitMode::Async).ok();
                        last_commit = Instant::now();
                    }
                }
            }
        }
    }
    out.flush()?;
    if args.group.is_some() {
        let position = consumer.position()?;
        let mut c = TopicPartitionList::new();
        for e in position.elements() {
            if let Offset::Offset(o) = e.offset() {
                c.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o))?;
            }
        }
        if c.count() > 0 {
            consumer
                .commit(&c, CommitMode::Sync)
                .context("committing offsets")?;
        }
    }
    Ok(())
}

/// `weir group ...`
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups.
    List,
    /// Members, and per partition the committed offset, end offset and lag.
    Describe {
        /// Group.
        group: String,
    },
    /// Move a group's committed offsets (the group must have no members).
    ResetOffsets {
        /// Group.
        group: String,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// To the beginning.
        #[arg(long, group = "to")]
        to_earliest: bool,
        /// To the end.
        #[arg(long, group = "to")]
        to_latest: bool,
        /// To this offset.
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
        /// To the first message at or after this time (ms since epoch).
        #[arg(long, group = "to")]
        to_time: Option<i64>,
    },
    /// Delete a group (it must have no members).
    Delete {
        /// Group.
        group: String,
    },
}

pub(crate) fn group(conn: &Conn, cmd: GroupCommand, out: &mut impl Write) -> Result<()> {
    match cmd {
        GroupCommand::List => {
            let c = conn.consumer("weir-cli")?;
            let list = c
                .fetch_group_list(None, TIMEOUT)
                .map_err(|e| anyhow::anyhow!("cannot reach a broker at {}: {e}", conn.brokers))?;
            let mut names: Vec<(String, String)> = list
                .groups()
                .iter()
                .map(|g| (g.name().to_owned(), g.state().to_owned()))
                .collect();
            names.sort();
            for (n, s) in names {
                writeln!(out, "{n}\t{s}")?;
            }
        }
        GroupCommand::Describe { group } => describe_group(conn, &group, out)?,
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_time,
        } => {
            ensure_empty(conn, &group)?;
            let c = conn.consumer(&group)?;
            let md = conn.metadata(Some(&topic))?;
            let t = md
                .topics()
                .iter()
                .find(|t| t.name() == topic && !t.partitions().is_empty())
                .with_context(|| format!("unknown topic {topic}"))?;
            let mut tpl = TopicPartitionList::new();
            if let Some(ms) = to_time {
                let mut times = TopicPartitionList::new();
                for p in t.partitions() {
                    times.add_partition_offset(&topic, p.id(), Offset::Offset(ms))?;
                }
                for e in c.offsets_for_times(times, TIMEOUT)?.elements() {
                    let o = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => c.fetch_watermarks(&topic, e.partition(), TIMEOUT)?.1,
                    };
                    tpl.add_partition_offset(&topic, e.partition(), Offset::Offset(o))?;
                }
            } else {
                for p in t.partitions() {
                    let (low, high) = c.fetch_watermarks(&topic, p.id(), TIMEOUT)?;
                    let o = if to_earliest {
                        low
                    } else if to_latest {
                        high
                    } else if let Some(o) = to_offset {
                        o.clamp(low, high)
                    } else {
                        bail!(
                            "say where to: --to-earliest, --to-latest, --to-offset N or --to-time MS"
                        );
                    };
                    tpl.add_partition_offset(&topic, p.id(), Offset::Offset(o))?;
                }
            }
            c.commit(&tpl, CommitMode::Sync)
                .with_context(|| format!("committing new offsets for {group}"))?;
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    writeln!(out, "{group}\t{}\t{}\t{o}", e.topic(), e.partition())?;
                }
            }
        }
        GroupCommand::Delete { group } => {
            ensure_empty(conn, &group)?;
            let admin = conn.admin()?;
            let results = block_on(admin.delete_groups(&[&group], &admin_options()))?
                .map_err(|e| anyhow::anyhow!("cannot reach a broker at {}: {e}", conn.brokers))?;
            for r in results {
                match r {
                    Ok(g) => writeln!(out, "Deleted group {g}.")?,
                    Err((g, e)) => bail!("deleting group {g}: {e}"),
                }
            }
        }
    }
    Ok(())
}

fn ensure_empty(conn: &Conn, group: &str) -> Result<()> {
    let c = conn.consumer("weir-cli")?;
    let list = c
        .fetch_group_list(Some(group), TIMEOUT)
        .map_err(|e| anyhow::anyhow!("cannot reach a broker at {}: {e}", conn.brokers))?;
    if let Some(g) = list.groups().iter().find(|g| g.name() == group)
        && !g.members().is_empty()
    {
        bail!(
            "group {group} has {} active member(s); stop them first",
            g.members().len()
        );
    }
    Ok(())
}

fn describe_group(conn: &Conn, group: &str, out: &mut impl Write) -> Result<()> {
    let c = conn.consumer(group)?;
    let list = c
        .fetch_group_list(Some(group), TIMEOUT)
        .map_err(|e| anyhow::anyhow!("cannot reach a broker at {}: {e}", conn.brokers))?;
    let info = list.groups().iter().find(|g| g.name() == group);
    let state = info.map_or("Dead".to_owned(), |g| g.state().to_owned());
    writeln!(
        out,
        "Group: {group}\tState: {state}\tMembers: {}",
        info.map_or(0, |g| g.members().len())
    )?;
    for m in info.map(|g| g.members()).unwrap_or_default() {
        writeln!(
            out,
            "\tMember: {}\tClient: {}\tHost: {}",
            m.id(),
            m.client_id(),
            m.client_host()
        )?;
    }
    // Committed offsets of every partition the group has offsets for.
    let md = conn.metadata(None)?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| !t.name().starts_with("__")) {
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    let committed = c
        .committed_offsets(tpl, TIMEOUT)
        .context("fetching committed offsets")?;
    writeln!(out, "TOPIC\tPARTITION\tCURRENT-OFFSET\tLOG-END-OFFSET\tLAG")?;
    let mut any = false;
    for e in committed.elements() {
        if let Offset::Offset(o) = e.offset() {
            let (_, high) = c.fetch_watermarks(e.topic(), e.partition(), TIMEOUT)?;
            writeln!(
                out,
                "{}\t{}\t{o}\t{high}\t{}",
                e.topic(),
                e.partition(),
                (high - o).max(0)
            )?;
            any = true;
        }
    }
    if !any && info.is_none_or(|g| g.members().is_empty() && g.state().is_empty()) {
        bail!("unknown group {group}");
    }
    Ok(())
}
