//! `weir-pipeline`: the event model, component traits, topology runtime,
//! sources, transforms and sinks.
//!
//! Architecture invariant: this crate does not depend on `weir-broker`; it
//! reaches Kafka (Weir's broker or any cluster) over the wire protocol.

pub mod ack;
pub mod config;
pub mod event;
pub mod file;
pub mod generate;
pub mod geoip;
pub mod http;
pub mod ingest;
pub mod kafka;
pub mod runtime;
pub mod sinks;
pub mod store;
pub mod transforms;

pub use event::{Event, Value};
