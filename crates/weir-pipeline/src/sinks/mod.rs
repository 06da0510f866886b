//! Sinks: where events are stored.

pub mod line_protocol;
pub mod sqlite;
