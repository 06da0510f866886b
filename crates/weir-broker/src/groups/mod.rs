//! Consumer groups: the rebalance state machine and committed offsets.

pub mod machine;
