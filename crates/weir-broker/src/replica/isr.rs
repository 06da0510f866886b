//! A leader's ISR changes go to the controller (AlterPartition): an
//! expansion when a follower caught up (from the replica fetch), a shrink
//! when one fell behind for `replica.lag.time.max.ms` (from the periodic
//! check here). The image the controller commits comes back through the
//! registry ([`super::Replica::follow_image`]); a refused or lost proposal
//! hands the leader the image's ISR again so it may propose anew.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info};
use uuid::Uuid;
use weir_meta::Answer;

use super::Proposal;
use crate::cluster::Cluster;
use crate::topics::{Partition, Registry};

/// Sends a leader's ISR proposal for partition `index` of topic `topic`.
pub(crate) fn propose(
    cluster: Arc<Cluster>,
    topic: Uuid,
    partition: Arc<Partition>,
    proposal: Proposal,
    leader_epoch: i32,
) {
    tokio::spawn(async move {
        let index = partition.index;
        let isr = proposal.isr.clone();
        let answer = cluster
            .alter_partition(topic, index, leader_epoch, proposal)
            .await;
        match answer {
            Ok(Answer::PartitionChanged { .. }) => {
                info!(%topic, partition = index, ?isr, "ISR changed");
            }
            other => {
                debug!(%topic, partition = index, ?isr, answer = ?other, "ISR change not made");
                let image = cluster.image();
                let info = image
                    .topics
                    .get(&topic)
                    .and_then(|t| t.partitions.get(usize::try_from(index).ok()?));
                if let Some(info) = info {
                    partition.replica.proposal_over(info, leader_epoch);
                }
            }
        }
    });
}

/// Checks every partition led here for followers that fell behind, as
/// often as a quarter of `replica.lag.time.max.ms` (at most every second).
pub(crate) async fn shrink_task(cluster: Arc<Cluster>, registry: Arc<Registry>) {
    let every =
        Duration::from_millis((registry.replication().lag_time_max_ms / 4).clamp(50, 1000) as u64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = crate::handlers::now_ms();
        for t in registry.all() {
            for p in &t.partitions {
                if let Some((proposal, epoch)) = p.replica.tick(now) {
                    propose(cluster.clone(), t.id, p.clone(), proposal, epoch);
                }
            }
        }
    }
}
