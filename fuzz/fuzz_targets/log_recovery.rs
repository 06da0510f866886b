//! The log's recovery path: a small closed log (several segments, indexes,
//! checkpoint files, producer snapshots) has one of its files damaged by the
//! input, with or without the clean-shutdown marker, and is opened again.
//! Opening either fails with an error or gives a log that can be read to
//! its end, searched by time, appended to and flushed; it never panics and
//! never serves an offset twice.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use weir_log::batch::{self, Record};
use weir_log::{FaultStorage, Log, LogConfig, Storage};

fn dir() -> &'static Path {
    Path::new("/log")
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn batch(tag: usize, n: usize, ts: i64) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            timestamp: ts + i as i64,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("{tag}-{i}.................................").into_bytes()),
            headers: vec![],
        })
        .collect();
    batch::encode_batch(&records)
}

/// The files of a cleanly closed log, built once.
fn closed_log() -> &'static Vec<(PathBuf, Vec<u8>)> {
    static FILES: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let s = FaultStorage::new();
        let log = Log::open(Arc::new(s.clone()), dir(), config(), 0).expect("a new log opens");
        for i in 0..30 {
            log.append(&mut batch(i, 3, i as i64 * 7), 0)
                .expect("appending to a fresh in-memory log");
        }
        log.close().expect("closing");
        let mut names = s.list(dir()).expect("listing");
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let path = dir().join(n);
                let data = s.contents(&path).unwrap_or_default();
                (path, data)
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let [which, flags, rest @ ..] = data else {
        return;
    };
    let files = closed_log();
    let s = FaultStorage::new();
    s.create_dir_all(dir()).expect("in-memory dir");
    for (path, content) in files {
        s.set_contents(path, content.clone());
    }
    let (path, original) = &files[*which as usize % files.len()];
    let damaged = if flags & 1 == 0 {
        // XOR over the original: zero bytes keep it, so small edits are
        // cheap for the fuzzer to find; the input's length cuts or extends.
        let mut d = original.clone();
        d.resize(rest.len().max(if flags & 4 == 0 { d.len() } else { 0 }), 0);
        for (b, x) in d.iter_mut().zip(rest) {
            *b ^= x;
        }
        d
    } else {
        rest.to_vec()
    };
    s.set_contents(path, damaged);
    if flags & 2 == 0 {
        let _ = s.remove(&dir().join(weir_log::CLEAN_SHUTDOWN_FILE));
    }
    let Ok(log) = Log::open(Arc::new(s.clone()), dir(), config(), 0) else {
        return;
    };
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    assert!(start <= end, "start {start} after end {end}");
    let mut offset = start;
    let mut last_seen: Option<i64> = None;
    while offset < end {
        match log.read(offset, 500) {
            Ok(r) if r.next_offset > offset => {
                if let Ok(batches) = batch::check_batches(&r.records) {
                    for b in batches {
                        let base = b.header.base_offset;
                        assert!(
                            last_seen.is_none_or(|l| base > l),
                            "offset {base} served after {last_seen:?}"
                        );
                        last_seen = Some(b.header.last_offset());
                    }
                }
                offset = r.next_offset;
            }
            _ => offset += 1,
        }
    }
    for ts in [-1, 0, 50, 100, 10_000] {
        let _ = log.offset_for_timestamp(ts);
    }
    let _ = log.max_timestamp();
    if let Ok(info) = log.append(&mut batch(99, 2, 0), 0) {
        assert_eq!(info.base_offset, end, "an append goes at the end");
    }
    let _ = log.flush();
});
