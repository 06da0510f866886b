//! Consumer groups: the rebalance state machine, the coordinator that
//! parks and completes requests around it, and committed offsets.

pub mod coordinator;
pub mod machine;
pub mod offsets;
