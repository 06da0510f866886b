//! Sinks: where events are stored.

pub mod sqlite;
