//! `weir pipeline check|run FILE`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use weir_pipeline::config::PipelineConfig;

fn load(path: &Path) -> Result<PipelineConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    PipelineConfig::parse(&text).with_context(|| format!("in {}", path.display()))
}

/// Validates a pipeline file and prints its components in order.
pub(crate) fn check(path: &Path, out: &mut impl std::io::Write) -> Result<()> {
    let cfg = load(path)?;
    for c in &cfg.components {
        let role = if c.spec.is_source() {
            "source"
        } else if c.spec.is_sink() {
            "sink"
        } else {
            "transform"
        };
        writeln!(out, "{role:9} {} <- [{}]", c.id, c.inputs.join(", "))?;
    }
    writeln!(out, "ok: {} components", cfg.components.len())?;
    Ok(())
}

/// Runs a pipeline until its sources end or SIGINT/SIGTERM, then drains.
pub(crate) fn run(path: &Path) -> Result<()> {
    let cfg = load(path)?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pipeline")
        .to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        });
        tracing::info!("stopping: draining in-flight events");
        flag.store(true, Ordering::Relaxed);
    });
    let running =
        weir_pipeline::runtime::start(&cfg, &name, stop).context("starting the pipeline")?;
    let counters = running.counters.clone();
    running.wait();
    for (id, c) in counters {
        tracing::info!(
            component = %id,
            events_in = c.events_in.load(Ordering::Relaxed),
            events_out = c.events_out.load(Ordering::Relaxed),
            errors = c.errors.load(Ordering::Relaxed),
            bytes = c.bytes.load(Ordering::Relaxed),
            lag = c.lag.load(Ordering::Relaxed),
            "finished"
        );
    }
    Ok(())
}
