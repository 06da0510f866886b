//! The background flush policy runner: one thread that asks every
//! registered log whether `flush.ms` (or a roll) makes a flush due.
//! Usable without an async runtime; the broker may drive
//! [`Log::flush_if_due`] from its own task instead.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::warn;

use crate::log::Log;

/// Source of the current time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in ms.
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

#[derive(Debug, Default)]
struct Shared {
    logs: Mutex<(Vec<Weak<Log>>, bool)>,
    wake: Condvar,
}

/// Runs the flush policy of registered logs every `interval`.
#[derive(Debug)]
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the flusher thread.
    pub fn start(interval: Duration, clock: Arc<dyn Clock>) -> Self {
        let shared = Arc::new(Shared::default());
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("weir-log-flusher".into())
            .spawn(move || run(&worker, interval, &*clock))
            .expect("spawning the flusher thread");
        Self {
            shared,
            thread: Some(thread),
        }
    }

    /// Adds a log; it is dropped from the list once the log is dropped.
    pub fn register(&self, log: &Arc<Log>) {
        let mut g = self.shared.logs.lock().unwrap_or_else(|p| p.into_inner());
        g.0.push(Arc::downgrade(log));
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        {
            let mut g = self.shared.logs.lock().unwrap_or_else(|p| p.into_inner());
            g.1 = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(shared: &Shared, interval: Duration, clock: &dyn Clock) {
    loop {
        let logs: Vec<Arc<Log>> = {
            let mut g = shared.logs.lock().unwrap_or_else(|p| p.into_inner());
            let (g2, _) = shared
                .wake
                .wait_timeout_while(g, interval, |(_, stop)| !*stop)
                .unwrap_or_else(|p| p.into_inner());
            g = g2;
            if g.1 {
                return;
            }
            g.0.retain(|w| w.strong_count() > 0);
            g.0.iter().filter_map(Weak::upgrade).collect()
        };
        for log in logs {
            if let Err(e) = log.flush_if_due(clock.now_ms()) {
                warn!(dir = %log.dir().display(), error = %e, "background flush failed");
            }
        }
    }
}
