//! Transforms: parsers that turn raw lines into fields, and field edits.

pub mod influx;
pub mod json;
pub mod nginx;
pub mod time;

/// A line a parser could not read. Counted and sampled by the runtime,
/// never fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}
