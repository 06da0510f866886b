//! Consumer groups: the rebalance state machine, the coordinator that
//! parks and completes requests around it, committed offsets, and the
//! set of coordinators of one broker (one per `__consumer_offsets`
//! partition it leads).

pub mod coordinator;
pub mod coordinators;
pub mod machine;
pub mod offsets;
