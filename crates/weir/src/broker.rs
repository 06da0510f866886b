//! `weir broker`: runs the Kafka-compatible broker until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use weir_broker::{BrokerConfig, RunningBroker};

/// Options of `weir broker`.
#[derive(Debug, Args)]
pub(crate) struct BrokerArgs {
    /// Where partitions live (Kafka's log.dirs).
    #[arg(long, default_value = "./weir-data")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// HOST:PORT given to clients in metadata (default: the listen address).
    #[arg(long)]
    advertised_listener: Option<String>,
    /// TOML config file; broker settings go in its [broker] table under
    /// Kafka's names (num.partitions, log.retention.ms, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one broker setting by its Kafka name, e.g.
    /// --set num.partitions=3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Builds the broker configuration: defaults, then the file, then `--set`,
/// then the explicit flags.
pub(crate) fn config(args: &BrokerArgs) -> Result<BrokerConfig> {
    let mut cfg = BrokerConfig::new(&args.data_dir, args.listen);
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        cfg.apply_toml(&text)
            .with_context(|| format!("in {}", path.display()))?;
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv}: expected KEY=VALUE"))?;
        cfg.set(k.trim(), v.trim())
            .with_context(|| format!("--set {kv}"))?;
    }
    cfg.data_dir.clone_from(&args.data_dir);
    cfg.listen = args.listen;
    if let Some(adv) = &args.advertised_listener {
        cfg.set("advertised.listeners", adv)?;
    }
    Ok(cfg)
}

pub(crate) fn run(args: BrokerArgs) -> Result<()> {
    let cfg = config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-broker")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let running = RunningBroker::bind(cfg).await?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
        running.serve(stop_rx).await?;
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
