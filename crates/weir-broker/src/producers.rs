//! Producer ids for idempotent producers (InitProducerId). Ids are handed
//! out from blocks reserved durably in `<data-dir>/producer-ids`, so an id
//! is never given twice, even across restarts (Kafka's ProducerIdManager
//! reserves blocks the same way).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::BrokerError;
use crate::topics::write_atomic;

const FILE: &str = "producer-ids";
const BLOCK: i64 = 1000;

/// Allocates producer ids.
#[derive(Debug)]
pub struct ProducerIds {
    dir: PathBuf,
    /// (next id to hand out, end of the reserved block)
    state: Mutex<(i64, i64)>,
}

impl ProducerIds {
    /// Loads the reservation; the next id starts at the end of the last
    /// reserved block, skipping whatever a previous run did not use.
    pub fn open(dir: &Path) -> Result<Self, BrokerError> {
        let path = dir.join(FILE);
        let next = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<i64>()
                .map_err(|_| BrokerError::Metadata {
                    path: path.clone(),
                    reason: format!("not a number: {:?}", text.trim()),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => {
                return Err(BrokerError::Io {
                    what: "reading",
                    path,
                    source,
                });
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            state: Mutex::new((next, next)),
        })
    }

    /// The next unused producer id.
    pub fn next(&self) -> std::io::Result<i64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.0 >= st.1 {
            let end = st.1 + BLOCK;
            write_atomic(&self.dir, FILE, format!("{end}\n").as_bytes())?;
            st.1 = end;
        }
        let id = st.0;
        st.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_across_restarts() {
        let tmp = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(tmp.path()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| ids.next().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(ids);
        let ids = ProducerIds::open(tmp.path()).unwrap();
        assert_eq!(ids.next().unwrap(), 1000);
    }
}
