//! Sinks: where events are stored.

pub mod line_protocol;
pub mod mysql;
pub mod sqlite;

use crate::ack::Positions;
use crate::event::Event;

/// A store the program running the pipeline provides (`weir up`'s
/// time-series store); the `store` sink writes into it.
pub trait EmbeddedStore: Send + Sync + std::fmt::Debug {
    /// Stores `events` and `positions` (the pipeline's source positions
    /// after them) in one durable write.
    fn write(
        &self,
        database: &str,
        pipeline: &str,
        events: &[Event],
        positions: &Positions,
    ) -> Outcome;
    /// The positions an earlier run of `pipeline` stored.
    fn positions(&self, database: &str, pipeline: &str) -> Positions;
}

/// What writing a batch to a database came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored.
    Stored,
    /// The database refused the data itself, with why: retrying cannot
    /// help (the batch is halved until the bad events are alone).
    Rejected(String),
    /// Try again later (unreachable, overloaded, a transient error), with why.
    Retry(String),
}
