//! Model-based test: random sequences of append / read / roll / retention /
//! delete-records / flush / clean reopen / kill / power cut / timestamp
//! lookups run against the real log (on the fault-injecting store) and a
//! plain in-memory model; after every step the two must agree.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use weir_log::batch::{self, BatchHeader, Record};
use weir_log::{ErrorKind, FaultStorage, Log, LogConfig};

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        size: usize,
        jitter: Vec<i8>,
    },
    Read {
        at: Index,
        max_bytes: usize,
    },
    ReadOutOfRange,
    Roll,
    Tick {
        ms: i64,
    },
    Retention,
    DeleteRecords {
        at: Index,
    },
    Flush,
    FlushIfDue,
    CleanReopen,
    Kill,
    PowerCut,
    TimeLookup {
        at: Index,
        delta: i8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (1usize..6, 1usize..300, proptest::collection::vec(any::<i8>(), 6))
            .prop_map(|(records, size, jitter)| Op::Append { records, size, jitter }),
        6 => (any::<Index>(), 1usize..3000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => Just(Op::ReadOutOfRange),
        1 => Just(Op::Roll),
        2 => (0i64..3000).prop_map(|ms| Op::Tick { ms }),
        2 => Just(Op::Retention),
        1 => any::<Index>().prop_map(|at| Op::DeleteRecords { at }),
        2 => Just(Op::Flush),
        1 => Just(Op::FlushIfDue),
        1 => Just(Op::CleanReopen),
        1 => Just(Op::Kill),
        1 => Just(Op::PowerCut),
        2 => (any::<Index>(), any::<i8>()).prop_map(|(at, delta)| Op::TimeLookup { at, delta }),
    ]
}

fn model_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        segment_ms: 4000,
        index_interval_bytes: 256,
        retention_bytes: Some(6000),
        retention_ms: Some(8000),
        ..LogConfig::default()
    }
}

/// What the log should hold: every stored batch (exact bytes), the start.
#[derive(Debug, Default)]
struct Model {
    batches: Vec<Vec<u8>>,
    start: u64,
    end: u64,
    now: i64,
}

impl Model {
    fn batch_with(&self, offset: u64) -> usize {
        self.batches
            .iter()
            .position(|b| {
                let h = BatchHeader::parse(b).unwrap();
                h.base_offset as u64 <= offset && offset <= h.last_offset() as u64
            })
            .expect("model holds the offset")
    }
    fn truncate(&mut self, end: u64) {
        self.batches
            .retain(|b| (BatchHeader::parse(b).unwrap().base_offset as u64) < end);
        self.end = end;
    }
    fn drop_below(&mut self, start: u64) {
        self.batches
            .retain(|b| BatchHeader::parse(b).unwrap().last_offset() as u64 >= start);
        self.start = start;
    }
    /// First record at or after the start with a timestamp >= target.
    fn time_lookup(&self, target: i64) -> Option<(u64, i64)> {
        self.batches
            .iter()
            .flat_map(|b| batch::decode_records(b).unwrap())
            .find(|(o, r)| *o as u64 >= self.start && r.timestamp >= target)
            .map(|(o, r)| (o as u64, r.timestamp))
    }
}

fn reopen(storage: &FaultStorage, now: i64) -> Log {
    Log::open(
        std::sync::Arc::new(storage.clone()),
        dir(),
        model_config(),
        now,
    )
    .expect("reopen")
}

fn check_read(log: &Log, model: &Model, offset: u64, max_bytes: usize) {
    let r = log.read(offset, max_bytes).unwrap();
    assert_eq!(r.log_end_offset, model.end);
    assert_eq!(r.log_start_offset, model.start);
    if offset == model.end {
        assert!(r.records.is_empty());
        return;
    }
    let got = batches(&r.records);
    assert!(!got.is_empty(), "read at {offset} returned nothing");
    let first = model.batch_with(offset);
    for (i, b) in got.iter().enumerate() {
        assert_eq!(
            *b,
            &model.batches[first + i][..],
            "batch {i} of a read at {offset}"
        );
    }
    if got.len() > 1 {
        assert!(r.records.len() <= max_bytes, "more than max_bytes");
    }
    let last = BatchHeader::parse(got.last().unwrap()).unwrap();
    assert_eq!(r.next_offset, last.last_offset() as u64 + 1);
}

fn run(ops: Vec<Op>) {
    let storage = FaultStorage::new();
    let mut log = reopen(&storage, 0);
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Append {
                records,
                size,
                jitter,
            } => {
                let recs: Vec<Record> = (0..records)
                    .map(|i| Record {
                        timestamp: m.now + i64::from(jitter[i]),
                        key: None,
                        value: Some(vec![b'v'; size]),
                        headers: vec![],
                    })
                    .collect();
                let mut b = batch::encode_batch(&recs);
                let info = log.append(&mut b, m.now).unwrap();
                assert_eq!(info.base_offset, m.end);
                assert_eq!(info.last_offset, m.end + records as u64 - 1);
                m.batches.push(b);
                m.end += records as u64;
            }
            Op::Read { at, max_bytes } => {
                let offset = m.start + at.index((m.end - m.start + 1) as usize) as u64;
                check_read(&log, &m, offset, max_bytes);
            }
            Op::ReadOutOfRange => {
                assert_eq!(
                    log.read(m.end + 1, 100).unwrap_err().kind(),
                    ErrorKind::OffsetOutOfRange
                );
                if m.start > 0 {
                    assert_eq!(
                        log.read(m.start - 1, 100).unwrap_err().kind(),
                        ErrorKind::OffsetOutOfRange
                    );
                }
            }
            Op::Roll => log.roll().unwrap(),
            Op::Tick { ms } => m.now += ms,
            Op::Retention => {
                let before = log.segments();
                let out = log.apply_retention(m.now).unwrap();
                let after = log.segments();
                assert!(out.log_start_offset >= m.start);
                assert_eq!(after.len(), before.len() - out.segments);
                assert!(after.last().unwrap().active);
                assert_eq!(
                    after.last(),
                    before.last(),
                    "the active segment is never deleted"
                );
                if out.segments > 0 {
                    assert_eq!(out.log_start_offset, after[0].base_offset.max(m.start));
                }
                m.drop_below(out.log_start_offset);
            }
            Op::DeleteRecords { at } => {
                let offset = m.start + at.index((m.end - m.start + 1) as usize) as u64;
                assert_eq!(log.delete_records_before(offset).unwrap(), offset);
                m.drop_below(offset);
            }
            Op::Flush => {
                assert_eq!(log.flush().unwrap(), m.end);
                assert_eq!(log.flushed_offset(), m.end);
            }
            Op::FlushIfDue => {
                log.flush_if_due(m.now).unwrap();
            }
            Op::CleanReopen => {
                log.close().unwrap();
                log = reopen(&storage, m.now);
            }
            Op::Kill => {
                drop(log);
                log = reopen(&storage, m.now);
            }
            Op::PowerCut => {
                let flushed = log.flushed_offset();
                drop(log);
                storage.crash();
                log = reopen(&storage, m.now);
                let end = log.log_end_offset();
                assert!(
                    end >= flushed && end <= m.end,
                    "end {end} outside [{flushed}, {}]",
                    m.end
                );
                m.truncate(end);
                assert!(log.log_start_offset() >= m.start);
                m.drop_below(log.log_start_offset());
            }
            Op::TimeLookup { at, delta } => {
                let probe = if m.batches.is_empty() {
                    m.now
                } else {
                    let b = &m.batches[at.index(m.batches.len())];
                    BatchHeader::parse(b).unwrap().base_timestamp + i64::from(delta)
                };
                assert_eq!(
                    log.offset_for_timestamp(probe).unwrap(),
                    m.time_lookup(probe),
                    "timestamp {probe}"
                );
            }
        }
        assert_eq!(log.log_end_offset(), m.end);
        assert_eq!(log.log_start_offset(), m.start);
        if m.end > m.start {
            check_read(&log, &m, m.start, 1 << 20);
        }
        let segs = log.segments();
        for w in segs.windows(2) {
            assert_eq!(
                w[0].next_offset, w[1].base_offset,
                "segments are contiguous"
            );
        }
    }
    // Everything still reads back after a final clean restart.
    log.close().unwrap();
    let log = reopen(&storage, m.now);
    assert_eq!(log.log_end_offset(), m.end);
    let all = values(&log, m.start);
    let expected: usize = m
        .batches
        .iter()
        .flat_map(|b| batch::decode_records(b).unwrap())
        .filter(|(o, _)| *o as u64 >= m.start)
        .count();
    assert_eq!(all.len(), expected);
}

proptest! {
    // PROPTEST_CASES (default 256) sets how many sequences run.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/model.txt"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_the_model(ops in proptest::collection::vec(op(), 1..250)) {
        run(ops);
    }
}
