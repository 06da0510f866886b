//! Producer ids for idempotent producers (InitProducerId). Ids come from
//! blocks the controller allocates through the metadata quorum, so no
//! two brokers (and no two runs of one) ever hand out the same id, as
//! Kafka's ProducerIdManager does.
//!
//! The one-node version reserved blocks in `<data-dir>/producer-ids`;
//! [`legacy_next`] reads it so the import of such a directory continues
//! after the last id it may have given.

use std::path::Path;

use weir_meta::controller::PRODUCER_ID_BLOCK;
use weir_meta::{Answer, Request};

use crate::cluster::Cluster;
use crate::error::BrokerError;
use crate::topics::TopicError;

const LEGACY_FILE: &str = "producer-ids";

/// The first producer id the one-node version never gave (0 if it kept
/// no file).
pub fn legacy_next(dir: &Path) -> Result<i64, BrokerError> {
    let path = dir.join(LEGACY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<i64>()
            .map_err(|_| BrokerError::Metadata {
                path: path.clone(),
                reason: format!("not a number: {:?}", text.trim()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(BrokerError::Io {
            what: "reading",
            path,
            source,
        }),
    }
}

/// Hands out producer ids from the current block.
#[derive(Debug, Default)]
pub struct ProducerIds {
    /// (next id to hand out, end of the block)
    state: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIds {
    /// The next unused producer id, asking the controller for a new block
    /// when this one is used up.
    pub async fn next(&self, cluster: &Cluster) -> Result<i64, TopicError> {
        let mut st = self.state.lock().await;
        if st.0 >= st.1 {
            let answer = cluster
                .request(Request::AllocateProducerIds {
                    broker: cluster.me(),
                    epoch: cluster.epoch(),
                })
                .await?;
            match answer {
                Answer::ProducerIds { first } => *st = (first, first + PRODUCER_ID_BLOCK),
                other => {
                    return Err(TopicError::Storage(format!(
                        "the controller gave no producer ids: {other:?}"
                    )));
                }
            }
        }
        let id = st.0;
        st.0 += 1;
        Ok(id)
    }
}
