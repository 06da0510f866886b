//! Helpers shared by the weir-log integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_log::batch::{self, Record};
use weir_log::{FaultStorage, Log, LogConfig, Storage};

pub const DIR: &str = "/data/topic-0";

pub fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

/// A batch of `n` records with values `"{tag}-{i}"` padded to `size` bytes
/// and timestamps `ts, ts+1, ...`.
pub fn batch(tag: &str, n: usize, size: usize, ts: i64) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let mut v = format!("{tag}-{i}").into_bytes();
            v.resize(size.max(v.len()), b'.');
            Record {
                timestamp: ts + i as i64,
                key: Some(format!("k{i}").into_bytes()),
                value: Some(v),
                headers: vec![],
            }
        })
        .collect();
    batch::encode_batch(&records)
}

pub fn config() -> LogConfig {
    LogConfig::default()
}

pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

pub fn open(storage: &FaultStorage, config: LogConfig) -> Log {
    Log::open(
        Arc::new(storage.clone()) as Arc<dyn Storage>,
        dir(),
        config,
        0,
    )
    .expect("open log")
}

/// Every record value in the log from `from`, with its offset, read with
/// small fetches so batch boundaries and segment hops are exercised.
pub fn values(log: &Log, from: u64) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let r = log.read(offset, 1000).expect("read");
        if r.records.is_empty() {
            assert_eq!(offset, r.log_end_offset, "empty read before the end");
            return out;
        }
        for (o, rec) in batches(&r.records)
            .iter()
            .flat_map(|b| batch::decode_records(b).unwrap())
        {
            if o as u64 >= offset {
                out.push((o, String::from_utf8(rec.value.unwrap()).unwrap()));
            }
        }
        assert!(r.next_offset > offset);
        offset = r.next_offset;
    }
}

/// Splits a read's bytes into batches, asserting they are whole.
pub fn batches(mut buf: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (_, len) =
            batch::check_batch(buf, batch::Strictness::Stored).expect("whole valid batch");
        out.push(&buf[..len]);
        buf = &buf[len..];
    }
    out
}

pub fn segment_path(dir: &Path, base: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}
