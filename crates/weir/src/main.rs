//! The `weir` binary: command-line interface over Weir's crates. It holds
//! no business logic of its own.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod broker;
mod logtool;

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
enum Command {
    /// Run the Kafka-compatible broker.
    Broker(broker::BrokerArgs),
    /// Inspect partition logs on disk.
    #[command(subcommand)]
    Log(LogCommand),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Broker(args) => broker::run(args),
        Command::Log(LogCommand::Dump { dir, batches }) => logtool::dump(&dir, batches, &mut out)
            .with_context(|| format!("dumping {}", dir.display())),
        Command::Log(LogCommand::Check { dir }) => {
            logtool::check(&dir, &mut out).with_context(|| format!("checking {}", dir.display()))
        }
    }
}
