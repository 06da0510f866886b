//! Idempotent-producer state of one partition: per producer id, its epoch
//! and its last five batches (sequence range and offsets). An append is
//! checked against it: a batch already written is reported as a duplicate
//! with its original offsets; a gap in the sequence or an old epoch is
//! refused. The rules follow Kafka's producer state (KIP-98, KIP-360).
//!
//! The state is rebuilt on open from a snapshot written at each roll
//! (`<base offset>.snapshot`, the state as of that segment's first offset)
//! plus the batches after it.

use std::collections::{BTreeMap, VecDeque};

use crate::batch::BatchHeader;

/// Batches remembered per producer (Kafka's value: five in flight).
pub(crate) const REMEMBERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: u64,
    pub last_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
}

/// Outcome of checking one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Not from an idempotent producer, or the next batch in sequence.
    Append,
    /// Written before: these are its offsets.
    Duplicate { first_offset: u64, last_offset: u64 },
}

/// Why a batch from an idempotent producer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// OUT_OF_ORDER_SEQUENCE_NUMBER.
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrder {
        /// The producer.
        producer_id: i64,
        /// The sequence the broker expected.
        expected: i32,
        /// The batch's first sequence.
        got: i32,
    },
    /// DUPLICATE_SEQUENCE_NUMBER: a request of several batches repeats one
    /// already written (a single repeated batch is answered as a duplicate).
    #[error("producer {producer_id} repeats sequence {sequence} inside a multi-batch request")]
    DuplicateInRequest {
        /// The producer.
        producer_id: i64,
        /// The repeated first sequence.
        sequence: i32,
    },
    /// INVALID_PRODUCER_EPOCH: an older epoch than the producer's current one.
    #[error("producer {producer_id} epoch {got} is older than its current epoch {current}")]
    OldEpoch {
        /// The producer.
        producer_id: i64,
        /// Its current epoch.
        current: i16,
        /// The batch's epoch.
        got: i16,
    },
}

fn next_seq(last: i32) -> i32 {
    if last == i32::MAX { 0 } else { last + 1 }
}

/// `seq + delta`, wrapping from `i32::MAX` to 0 as producers do.
fn add_seq(seq: i32, delta: i32) -> i32 {
    if seq > i32::MAX - delta {
        delta - (i32::MAX - seq) - 1
    } else {
        seq + delta
    }
}

/// Producer states by producer id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerState {
    pub producers: BTreeMap<i64, Entry>,
}

impl ProducerState {
    /// Checks a batch (with its sequence range) before it is appended.
    pub fn check(&self, h: &BatchHeader) -> Result<Check, SequenceError> {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return Ok(Check::Append);
        }
        let pid = h.producer_id;
        let Some(entry) = self.producers.get(&pid) else {
            // Unknown producer (new, or its state is gone): any sequence.
            return Ok(Check::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(SequenceError::OldEpoch {
                producer_id: pid,
                current: entry.epoch,
                got: h.producer_epoch,
            });
        }
        let first = h.base_sequence;
        let last = add_seq(first, h.last_offset_delta.max(0));
        if h.producer_epoch > entry.epoch {
            // A new epoch starts its sequences again at 0.
            return if first == 0 {
                Ok(Check::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    producer_id: pid,
                    expected: 0,
                    got: first,
                })
            };
        }
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(Check::Duplicate {
                first_offset: b.first_offset,
                last_offset: b.last_offset,
            });
        }
        match entry.batches.back() {
            Some(b) if next_seq(b.last_seq) != first => Err(SequenceError::OutOfOrder {
                producer_id: pid,
                expected: next_seq(b.last_seq),
                got: first,
            }),
            _ => Ok(Check::Append),
        }
    }

    /// Records a batch that was appended (with its assigned offsets).
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return;
        }
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: add_seq(h.base_sequence, h.last_offset_delta.max(0)),
            first_offset: h.base_offset as u64,
            last_offset: h.last_offset() as u64,
        };
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| Entry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(meta);
        while entry.batches.len() > REMEMBERED {
            entry.batches.pop_front();
        }
    }

    /// Serialises the state: `WPS1`, entry count, entries, CRC-32C of all
    /// before it (big-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"WPS1".to_vec();
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (pid, e) in &self.producers {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses what [`ProducerState::encode`] wrote; `None` if damaged.
    pub fn decode(data: &[u8]) -> Option<Self> {
        let (body, crc) = data.split_at_checked(data.len().checked_sub(4)?)?;
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = body.strip_prefix(b"WPS1")?;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (a, b) = r.split_at_checked(n)?;
            r = b;
            Some(a)
        };
        let count = u32::from_be_bytes(take(4)?.try_into().ok()?);
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let pid = i64::from_be_bytes(take(8)?.try_into().ok()?);
            let epoch = i16::from_be_bytes(take(2)?.try_into().ok()?);
            let n = take(1)?[0] as usize;
            let mut batches = VecDeque::with_capacity(n.min(REMEMBERED));
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: i32::from_be_bytes(take(4)?.try_into().ok()?),
                    last_seq: i32::from_be_bytes(take(4)?.try_into().ok()?),
                    first_offset: u64::from_be_bytes(take(8)?.try_into().ok()?),
                    last_offset: u64::from_be_bytes(take(8)?.try_into().ok()?),
                });
            }
            producers.insert(pid, Entry { epoch, batches });
        }
        Some(Self { producers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, n: i32, offset: i64) -> BatchHeader {
        let mut b = crate::batch::encode_batch(&[crate::batch::Record::default()]);
        crate::batch::set_base_offset(&mut b, offset);
        let mut h = BatchHeader::parse(&b).unwrap();
        h.producer_id = pid;
        h.producer_epoch = epoch;
        h.base_sequence = seq;
        h.last_offset_delta = n - 1;
        h.records_count = n;
        h
    }

    /// One table: (batch, expected check) applied in order, recording
    /// every accepted batch at the offset given.
    fn run(steps: &[(BatchHeader, Result<Check, &str>)]) {
        let mut st = ProducerState::default();
        for (i, (b, want)) in steps.iter().enumerate() {
            let got = st.check(b);
            match (got.clone(), want) {
                (Ok(g), Ok(w)) => assert_eq!(g, *w, "step {i}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "step {i}: {e}"),
                (g, w) => panic!("step {i}: got {g:?}, want {w:?}"),
            }
            if got == Ok(Check::Append) {
                st.record(b);
            }
        }
        assert_eq!(ProducerState::decode(&st.encode()), Some(st.clone()));
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        run(&[
            (h(-1, -1, -1, 3, 0), Ok(Check::Append)),
            (h(7, 0, 0, 3, 3), Ok(Check::Append)),
            (h(7, 0, 3, 2, 6), Ok(Check::Append)),
            // A retry of either batch is a duplicate with its offsets.
            (
                h(7, 0, 0, 3, 99),
                Ok(Check::Duplicate {
                    first_offset: 3,
                    last_offset: 5,
                }),
            ),
            (
                h(7, 0, 3, 2, 99),
                Ok(Check::Duplicate {
                    first_offset: 6,
                    last_offset: 7,
                }),
            ),
            // A gap is refused.
            (h(7, 0, 9, 1, 99), Err("expected 5, got 9")),
            (h(7, 0, 5, 1, 8), Ok(Check::Append)),
            // An older epoch is fenced; a new epoch restarts at 0.
            (h(7, 1, 4, 1, 99), Err("expected 0, got 4")),
            (h(7, 1, 0, 1, 9), Ok(Check::Append)),
            (h(7, 0, 6, 1, 99), Err("older than its current epoch 1")),
            // An unknown producer may start anywhere.
            (h(8, 0, 42, 1, 10), Ok(Check::Append)),
            (h(8, 0, 43, 1, 11), Ok(Check::Append)),
            // Sequences wrap after i32::MAX, inside a batch too.
            (h(9, 0, i32::MAX, 1, 12), Ok(Check::Append)),
            (h(9, 0, 0, 1, 13), Ok(Check::Append)),
            (h(10, 0, i32::MAX - 1, 3, 14), Ok(Check::Append)),
            (h(10, 0, 1, 1, 17), Ok(Check::Append)),
        ]);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut st = ProducerState::default();
        for i in 0..7 {
            st.record(&h(1, 0, i, 1, i64::from(i)));
        }
        assert_eq!(
            st.check(&h(1, 0, 6, 1, 0)),
            Ok(Check::Duplicate {
                first_offset: 6,
                last_offset: 6
            })
        );
        assert_eq!(
            st.check(&h(1, 0, 2, 1, 0)),
            Ok(Check::Duplicate {
                first_offset: 2,
                last_offset: 2
            })
        );
        // Older than the remembered window: not a known duplicate, and out of order.
        assert!(st.check(&h(1, 0, 1, 1, 0)).is_err());
    }

    #[test]
    fn damaged_snapshots_are_rejected() {
        let mut st = ProducerState::default();
        st.record(&h(1, 0, 0, 1, 0));
        let mut data = st.encode();
        assert!(ProducerState::decode(&data).is_some());
        data[6] ^= 1;
        assert!(ProducerState::decode(&data).is_none());
        assert!(ProducerState::decode(&[]).is_none());
        assert!(ProducerState::decode(b"WPS1").is_none());
    }
}
