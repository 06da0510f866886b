//! `weir-meta`: the cluster metadata of a Weir cluster, as Kafka's KRaft
//! mode keeps it.
//!
//! * [`record`]: the typed metadata records (broker registrations and
//!   fencing, topics, partitions with their replicas, ISR, leader and
//!   epochs, configs, producer-id blocks) and their encoding.
//! * [`image`]: the in-memory image the records replay into, the same on
//!   every node that applied the same log ([`Image::apply`] is pure and
//!   total).
//! * [`controller`]: the active controller's decisions as a pure state
//!   machine: registrations, heartbeats, fencing on missed heartbeats,
//!   leader elections, topic creation with replicas spread over brokers,
//!   producer-id blocks. Inputs and the time come in, records to propose
//!   and answers go out.
//!
//! * [`store`]: the durable Raft log, vote and snapshot of a node, with
//!   torn tails cut at open (through `weir-log`'s storage seam, so every
//!   crash test runs on its fault-injecting store).
//!
//! * [`raft`] and [`network`]: the Raft group (openraft, pinned) that
//!   orders the records, over the store and TCP; the only modules that
//!   know openraft, and this the only crate that imports it.
//! * [`node`]: a running node: Raft, the controller role while it leads,
//!   and [`node::MetaNode::request`], which finds the active controller.
//!
//! The design, with the invariants and the failure cases, is in
//! `docs/design/cluster.md`.

pub mod acl;
pub mod controller;
pub mod image;
pub mod network;
pub mod node;
pub mod raft;
pub mod record;
pub mod store;

pub use acl::{AclBinding, AclFilter};
pub use controller::{Answer, Controller, ControllerConfig, MetaError, Request};
pub use image::{BrokerInfo, Image, PartitionInfo, TopicInfo};
pub use record::{
    ConfigResource, Endpoint, MetaRecord, PartitionChange, PartitionRecord, ScramCredential,
};
