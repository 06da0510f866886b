//! Sinks: where events are stored.

pub mod line_protocol;
pub mod mysql;
pub mod sqlite;

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
