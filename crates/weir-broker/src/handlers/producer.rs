//! InitProducerId: producer ids and epochs for idempotent producers.
//! Transactions are not supported: a transactional id is refused.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use tracing::warn;

use crate::Broker;

/// The message every transactional request is refused with.
pub(super) const TRANSACTIONS_UNSUPPORTED: &str =
    "transactions are not supported by this broker yet (idempotent producers are)";

pub(super) async fn init_producer_id(
    broker: &Broker,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if let Some(id) = &req.transactional_id {
        warn!(transactional_id = %id.as_str(), "{TRANSACTIONS_UNSUPPORTED}");
        resp.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return resp;
    }
    // KIP-360: a known producer asking again gets the next epoch.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch + 1;
        return resp;
    }
    match broker.producer_ids().next(broker.cluster()).await {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => {
            warn!(error = %e, "could not get producer ids from the controller");
            resp.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    resp
}
