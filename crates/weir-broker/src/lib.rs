//! `weir-broker`: the Kafka wire-protocol server on top of `weir-log`.
//!
//! It will own framing, one handler module per Kafka API area, the topic
//! registry, the group coordinator, committed offsets and producer state.
//!
//! Architecture invariant: no pipeline or SQL code lives here; storage is
//! reached only through `weir-log`.
