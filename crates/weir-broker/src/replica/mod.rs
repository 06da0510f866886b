//! Partition replication (docs/design/replication.md). `machine` holds
//! the decisions as pure state machines, tested by a seeded simulation of
//! replicas under crashes, lost messages and successive failovers.

pub mod machine;

#[cfg(test)]
mod tests;
