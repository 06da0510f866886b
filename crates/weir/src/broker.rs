//! `weir broker`: runs the Kafka-compatible broker until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Args;
use weir_broker::{BrokerConfig, RunningBroker};

/// Options of `weir broker`.
#[derive(Debug, Args)]
pub(crate) struct BrokerArgs {
    /// Where partitions live (Kafka's log.dirs; default ./weir-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (Kafka's listeners; default 127.0.0.1:9092).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// HOST:PORT given to clients in metadata (default: the listen address).
    #[arg(long)]
    advertised_listener: Option<String>,
    /// Config file: TOML with broker settings in its [broker] table under
    /// Kafka's names (num.partitions, log.retention.ms, ...), or a Kafka
    /// `server.properties` (a file ending in .properties) as it is.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one broker setting by its Kafka name, e.g.
    /// --set num.partitions=3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Serve the web console (/console/) and Prometheus metrics (/metrics)
    /// on this address, e.g. 127.0.0.1:9644 (off by default).
    #[arg(long)]
    http: Option<String>,
    /// Let the console create and delete topics and reset group offsets.
    #[arg(long)]
    console_admin: bool,
    /// This node's id (Kafka's node.id).
    #[arg(long)]
    node_id: Option<i32>,
    /// The metadata quorum's voters, `1@host:port,2@host:port,...` (Kafka's
    /// controller.quorum.voters); each node also needs a
    /// CONTROLLER://host:port entry in `listeners`.
    #[arg(long)]
    controller_quorum: Option<String>,
}

/// Builds the broker configuration: defaults, then the file, then `--set`,
/// then the explicit flags.
pub(crate) fn config(args: &BrokerArgs) -> Result<BrokerConfig> {
    let mut cfg = BrokerConfig::new("./weir-data", "127.0.0.1:9092".parse()?);
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "properties") {
            for (line, (k, v)) in properties(&text) {
                cfg.set(&k, &v)
                    .with_context(|| format!("{}:{line}", path.display()))?;
            }
        } else {
            cfg.apply_toml(&text)
                .with_context(|| format!("in {}", path.display()))?;
        }
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv}: expected KEY=VALUE"))?;
        cfg.set(k.trim(), v.trim())
            .with_context(|| format!("--set {kv}"))?;
    }
    if let Some(id) = args.node_id {
        cfg.set("node.id", &id.to_string())?;
    }
    if let Some(voters) = &args.controller_quorum {
        cfg.set("controller.quorum.voters", voters)?;
    }
    if let Some(dir) = &args.data_dir {
        cfg.data_dir.clone_from(dir);
    }
    if let Some(listen) = args.listen {
        cfg.listen = listen;
    }
    if let Some(adv) = &args.advertised_listener {
        cfg.set("advertised.listeners", adv)?;
    }
    Ok(cfg)
}

/// The settings of a Java properties file, with their line numbers: `key=value`
/// or `key: value` (or `key value`), `#` and `!` comments, a trailing `\`
/// continuing a line.
fn properties(text: &str) -> Vec<(usize, (String, String))> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if pending.is_empty() {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            start = i + 1;
        }
        if let Some(more) = line.strip_suffix('\\') {
            pending.push_str(more);
            continue;
        }
        pending.push_str(line);
        let entry = std::mem::take(&mut pending);
        let cut = entry.find(['=', ':', ' ', '\t']).unwrap_or(entry.len());
        let key = entry[..cut].trim().to_owned();
        let value = entry[cut..]
            .trim_start_matches([' ', '\t'])
            .trim_start_matches(['=', ':'])
            .trim()
            .to_owned();
        out.push((start, (key, value)));
    }
    out
}

pub(crate) fn run(args: BrokerArgs) -> Result<()> {
    let cfg = config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-broker")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        if !cfg.kraft.is_broker() {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                wait_for_signal().await;
                let _ = stop_tx.send(true);
            });
            return Ok(weir_broker::cluster::run_controller(cfg, stop_rx).await?);
        }
        let running = RunningBroker::bind(cfg).await?;
        let sampling = Arc::new(AtomicBool::new(false));
        let _http = match &args.http {
            Some(addr) => {
                let console = crate::console::Console::new(
                    running.broker().clone(),
                    running.addr.to_string(),
                    args.console_admin,
                    false,
                );
                console.start_sampler(sampling.clone());
                let handler: weir_pipeline::http::Handler = Arc::new(move |req| {
                    if req.path == "/health" {
                        return weir_pipeline::http::Response::new(200, "text/plain", "ok\n");
                    }
                    crate::console::guarded(&console, &req, None).unwrap_or_else(|| {
                        let message = if req.path.starts_with("/api/v1/sql")
                            || req.path.starts_with("/api/v1/databases")
                        {
                            "no embedded store in weir broker: SQL and the console's Data view come with weir up"
                        } else {
                            "not found; the console is at /console/"
                        };
                        weir_pipeline::http::Response::json(
                            404,
                            &serde_json::json!({"error_code": "404", "error_message": message}),
                        )
                    })
                });
                let server = weir_pipeline::http::Server::start(addr, 1 << 20, handler)
                    .with_context(|| format!("starting the HTTP server on {addr}"))?;
                tracing::info!(address = %server.local_addr(), "console at /console/, metrics at /metrics");
                Some(server)
            }
            None => None,
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
        running.serve(stop_rx).await?;
        sampling.store(true, Ordering::Relaxed);
        Ok(())
    })
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::properties;

    #[test]
    fn java_properties_parse_as_kafka_writes_them() {
        let text = "# comment\n! also\n\nnode.id=1\nlisteners = PLAINTEXT://:9092,\\\n  CONTROLLER://:9093\nlog.dirs: /tmp/x\nnum.partitions 3\n";
        let p: Vec<(String, String)> = properties(text).into_iter().map(|(_, kv)| kv).collect();
        assert_eq!(
            p,
            [
                ("node.id".to_owned(), "1".to_owned()),
                (
                    "listeners".to_owned(),
                    "PLAINTEXT://:9092,CONTROLLER://:9093".to_owned()
                ),
                ("log.dirs".to_owned(), "/tmp/x".to_owned()),
                ("num.partitions".to_owned(), "3".to_owned()),
            ]
        );
        assert_eq!(properties(text)[1].0, 5);
    }
}
