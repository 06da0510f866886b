//! Log hot-path benchmark: page-cache appends, group-committed (fsynced)
//! appends from 1, 8 and 64 writers, sequential reads, and beside them the
//! machine's own limits measured in the same run (`dd ... conv=fdatasync`
//! and an in-memory copy).
//!
//! Run: `cargo bench -p weir-log --bench log` (add `-- --quick` for a short
//! run; `-- --cleaner` runs only the compaction benchmark). `WEIR_BENCH_DIR` chooses the directory (default: a temporary
//! directory under `target/`), which should be on the disk being measured.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir_log::batch::{Record, encode_batch};
use weir_log::{Log, LogConfig};

const BATCH_BYTES: usize = 16 * 1024;
/// The broker time given to appends (the records are stamped just before it).
const NOW: i64 = 1_700_000_100_000;
const RECORD_VALUE: usize = 100;

/// An uncompressed batch of 100-byte values, about 16 KiB.
fn batch_16k() -> (Vec<u8>, usize) {
    let mut records = Vec::new();
    let mut size = 61;
    while size + RECORD_VALUE + 12 < BATCH_BYTES {
        records.push(Record {
            timestamp: 1_700_000_000_000 + records.len() as i64,
            key: None,
            value: Some(vec![b'x'; RECORD_VALUE]),
            headers: vec![],
        });
        size += RECORD_VALUE + 12;
    }
    let n = records.len();
    (encode_batch(&records), n)
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("WEIR_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-tmp")
        });
    std::fs::create_dir_all(&base).expect("bench dir");
    base
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn appends_page_cache(dir: &Path, total: u64) -> (f64, f64) {
    let path = fresh(dir, "append-0");
    let log = Log::open_dir(&path, LogConfig::default(), 0).unwrap();
    let (mut b, n) = batch_16k();
    let count = total / b.len() as u64;
    let start = Instant::now();
    for _ in 0..count {
        log.append(&mut b, NOW).unwrap();
    }
    let d = start.elapsed();
    let bytes = count * b.len() as u64;
    drop(log);
    let _ = std::fs::remove_dir_all(&path);
    (gbps(bytes, d), (count * n as u64) as f64 / d.as_secs_f64())
}

/// `writers` threads each append a 16 KiB batch and wait for it to be
/// synced (acks=all), for `duration`. Returns (MB/s, fsyncs per second,
/// mean waiters per fsync).
fn group_commit(dir: &Path, writers: usize, duration: Duration) -> (f64, f64, f64) {
    let path = fresh(dir, &format!("group-{writers}"));
    let log = Arc::new(Log::open_dir(&path, LogConfig::default(), 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (log, stop, acked) = (log.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let (mut b, _) = batch_16k();
                while !stop.load(Ordering::Relaxed) {
                    let info = log.append(&mut b, NOW).unwrap();
                    log.flush_until(info.last_offset + 1).unwrap();
                    acked.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let d = start.elapsed();
    let bytes = acked.load(Ordering::Relaxed);
    let batches = bytes / BATCH_BYTES as u64;
    let sync = log.sync_stats();
    let changes = sync.rounds;
    drop(log);
    let _ = std::fs::remove_dir_all(&path);
    (
        bytes as f64 / d.as_secs_f64() / 1e6,
        changes as f64 / d.as_secs_f64(),
        batches as f64 / changes.max(1) as f64,
    )
}

/// Sequential read throughput, then the time to reopen the same log after
/// a clean close and after a kill (no close: the active segment is
/// validated batch by batch).
fn sequential_read_and_reopen(dir: &Path, total: u64) -> (f64, Duration, Duration, Duration) {
    let path = fresh(dir, "read-0");
    let log = Log::open_dir(&path, LogConfig::default(), 0).unwrap();
    let (mut b, _) = batch_16k();
    for _ in 0..total / b.len() as u64 {
        log.append(&mut b, NOW).unwrap();
    }
    let end = log.log_end_offset();
    let start = Instant::now();
    let (mut offset, mut bytes) = (0, 0u64);
    while offset < end {
        let r = log.read(offset, 1 << 20).unwrap();
        bytes += r.records.len() as u64;
        offset = r.next_offset;
    }
    let d = start.elapsed();
    log.close().unwrap();
    let t = Instant::now();
    let log = Log::open_dir(&path, LogConfig::default(), 0).unwrap();
    let clean = t.elapsed();
    assert_eq!(log.log_end_offset(), end);
    log.checkpoint().unwrap();
    drop(log);
    let t = Instant::now();
    let log = Log::open_dir(&path, LogConfig::default(), 0).unwrap();
    let killed = t.elapsed();
    assert_eq!(log.log_end_offset(), end);
    log.checkpoint().unwrap();
    drop(log);
    // Worst case: no recovery point, every segment validated.
    std::fs::remove_file(path.join(weir_log::RECOVERY_POINT_FILE)).unwrap();
    let t = Instant::now();
    let log = Log::open_dir(&path, LogConfig::default(), 0).unwrap();
    let full = t.elapsed();
    assert_eq!(log.log_end_offset(), end);
    drop(log);
    let _ = std::fs::remove_dir_all(&path);
    (gbps(bytes, d), clean, killed, full)
}

fn dd_fdatasync(dir: &Path, mib: u64) -> Option<f64> {
    let file = dir.join("dd.bin");
    let start = Instant::now();
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args([
            "bs=1M",
            &format!("count={mib}"),
            "conv=fdatasync",
            "status=none",
        ])
        .status()
        .ok()?;
    let d = start.elapsed();
    let _ = std::fs::remove_file(&file);
    status
        .success()
        .then(|| (mib << 20) as f64 / d.as_secs_f64() / 1e6)
}

/// The disk's rate for the group-commit pattern without the log: one
/// thread appending `chunk` bytes with pwrite and fdatasync-ing after each,
/// for `total` bytes. This is the ceiling for a group commit that syncs
/// `chunk` bytes per round.
fn raw_write_sync(dir: &Path, chunk: usize, total: u64) -> f64 {
    use std::os::unix::fs::FileExt;
    let path = dir.join("raw-sync.bin");
    let file = std::fs::File::create(&path).unwrap();
    let buf = vec![b'x'; chunk];
    let start = Instant::now();
    let mut pos = 0u64;
    while pos < total {
        file.write_all_at(&buf, pos).unwrap();
        file.sync_data().unwrap();
        pos += chunk as u64;
    }
    let d = start.elapsed();
    drop(file);
    let _ = std::fs::remove_file(&path);
    pos as f64 / d.as_secs_f64() / 1e6
}

fn memcpy_gbps() -> f64 {
    let src = vec![7u8; 256 << 20];
    let mut dst = vec![0u8; 256 << 20];
    let start = Instant::now();
    for _ in 0..8 {
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
    }
    gbps(8 * (256 << 20), start.elapsed())
}

/// Peak resident memory of this process, in MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Log compaction: `records` updates of 100-byte values over `keys` keys
/// in ~16 KiB batches, sealed, then one `Log::clean` pass; beside it a
/// sequential read of the same log (the pass reads it twice: map, rewrite).
fn cleaner(dir: &Path, records: usize, keys: usize) {
    let path = fresh(dir, "cleaner");
    let cfg = LogConfig {
        segment_bytes: 64 << 20,
        cleanup_policy: weir_log::CleanupPolicy::Compact,
        message_timestamp_after_max_ms: None,
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open_dir(&path, cfg, NOW).expect("open"));
    updates(&log, 0, records, keys);
    log.roll().expect("roll");
    log.flush().expect("flush");
    let size = log.size_bytes();
    let start = Instant::now();
    let mut offset = 0;
    while offset < log.log_end_offset() {
        let r = log.read(offset, 1 << 20).expect("read");
        std::hint::black_box(&r.records);
        offset = r.next_offset;
    }
    let read = start.elapsed();
    let rss_before = peak_rss_mib();
    let entries = (128u64 << 20) / weir_log::MAP_ENTRY_BYTES;
    let start = Instant::now();
    let stats = log.clean(NOW, entries as usize).expect("clean");
    let took = start.elapsed();
    let rss_after = peak_rss_mib();
    println!(
        "log cleaner: {records} records over {keys} keys, {:.0} MB in {} segments",
        size as f64 / 1e6,
        stats.segments_before
    );
    println!(
        "  one pass                  {:8.0} ms  {:6.0} MB/s of log  {:5.2} M records/s  kept {} records in {:.1} MB, {} segments",
        took.as_secs_f64() * 1e3,
        size as f64 / 1e6 / took.as_secs_f64(),
        stats.records_read as f64 / 1e6 / took.as_secs_f64(),
        stats.records_read - stats.records_removed,
        stats.bytes_written as f64 / 1e6,
        stats.segments_after
    );
    println!(
        "  sequential read, same log {:8.0} ms  {:6.0} MB/s",
        read.as_secs_f64() * 1e3,
        size as f64 / 1e6 / read.as_secs_f64()
    );
    println!(
        "  memory: {} map entries, peak RSS {rss_before:.0} MiB before the pass, {rss_after:.0} MiB after",
        stats.map_entries
    );
    beside_the_cleaner(dir, &log, keys);
}

/// Appends updates `from..from + n` (keys spread over `keys`) in batches
/// of 140 records (about 16 KiB).
fn updates(log: &Log, from: usize, n: usize, keys: usize) {
    let per_batch = 140;
    let mut i = from;
    while i < from + n {
        let batch: Vec<Record> = (i..(i + per_batch).min(from + n))
            .map(|j| Record {
                timestamp: NOW - 1000,
                key: Some(format!("key-{:08}", (j * 7919) % keys).into_bytes()),
                value: Some(vec![b'v'; RECORD_VALUE]),
                headers: vec![],
            })
            .collect();
        let mut b = encode_batch(&batch);
        log.append(&mut b, NOW).expect("append");
        i += per_batch;
    }
}

/// Appends to page cache and 8-writer group commit on another log, first
/// alone, then while a thread keeps the compacted `log` dirty and cleans
/// it pass after pass, unthrottled and then held to 50 MB/s the way the
/// broker's `log.cleaner.io.max.bytes.per.second` does.
fn beside_the_cleaner(dir: &Path, log: &Arc<Log>, keys: usize) {
    let total = 512u64 << 20;
    let (alone, _) = appends_page_cache(dir, total);
    let (alone_gc, _, _) = group_commit(dir, 8, Duration::from_secs(5));
    for rate in [None, Some(50_000_000u64)] {
        busy_cleaner(dir, log, keys, rate, alone, alone_gc);
    }
}

fn busy_cleaner(
    dir: &Path,
    log: &Arc<Log>,
    keys: usize,
    rate: Option<u64>,
    alone: f64,
    alone_gc: f64,
) {
    let total = 512u64 << 20;
    let stop = Arc::new(AtomicBool::new(false));
    let passes = Arc::new(AtomicU64::new(0));
    let busy = {
        let (log, stop, passes) = (log.clone(), stop.clone(), passes.clone());
        std::thread::spawn(move || {
            let mut next = 10_000_000;
            while !stop.load(Ordering::Relaxed) {
                updates(&log, next, 50_000, keys);
                next += 50_000;
                log.roll().expect("roll");
                let started = Instant::now();
                let mut read = 0u64;
                let mut throttle = |b: u64| {
                    if let Some(rate) = rate {
                        read += b;
                        let due = Duration::from_secs_f64(read as f64 / rate as f64);
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                };
                log.clean_throttled(NOW, 1 << 22, &mut throttle)
                    .expect("clean");
                passes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let (beside, _) = appends_page_cache(dir, total);
    let (beside_gc, _, _) = group_commit(dir, 8, Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    busy.join().expect("cleaner thread");
    let how = rate.map_or_else(
        || "unthrottled".to_owned(),
        |r| format!("at {} MB/s", r / 1_000_000),
    );
    println!(
        "  append to page cache: alone {alone:.2} GB/s, beside the cleaner ({how}) {beside:.2} GB/s ({:.0}%)",
        100.0 * beside / alone
    );
    println!(
        "  group commit, 8 writers: alone {alone_gc:.0} MB/s, beside the cleaner ({how}) {beside_gc:.0} MB/s ({:.0}%); {} cleaning passes ran meanwhile",
        100.0 * beside_gc / alone_gc,
        passes.load(Ordering::Relaxed)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let dir = bench_dir();
    if args.iter().any(|a| a == "--cleaner") {
        if quick {
            cleaner(&dir, 200_000, 20_000);
        } else {
            cleaner(&dir, 2_000_000, 200_000);
        }
        return;
    }
    // `--group N`: only the group-commit run with N writers (for profiling).
    if let Some(n) = args
        .iter()
        .position(|a| a == "--group")
        .and_then(|i| args.get(i + 1))
    {
        let writers = n.parse().expect("--group takes a number of writers");
        let (mbps, fsyncs, per) = group_commit(&dir, writers, Duration::from_secs(5));
        println!(
            "group commit, {writers} writers: {mbps:.0} MB/s, {fsyncs:.0} syncs/s, {per:.1} batches/sync"
        );
        return;
    }
    let (total, dd_mib, secs) = if quick {
        (256u64 << 20, 256, 2)
    } else {
        (2u64 << 30, 1024, 5)
    };
    let (_, n) = batch_16k();
    println!(
        "weir-log benchmark: 16 KiB batches of {n} x {RECORD_VALUE}-byte records, dir {}",
        dir.display()
    );
    println!("machine limits (same run):");
    let mem = memcpy_gbps();
    println!("  memory copy                 {mem:8.2} GB/s");
    let dd = dd_fdatasync(&dir, dd_mib);
    match dd {
        Some(v) => println!("  dd bs=1M count={dd_mib} conv=fdatasync {v:8.0} MB/s"),
        None => println!("  dd: not available"),
    }
    let raw = raw_write_sync(&dir, 512 << 10, total / 4);
    println!(
        "  pwrite 512 KiB + fdatasync  {raw:8.0} MB/s  (one thread, no log: the group-commit ceiling at ~32 batches/fsync)"
    );
    let (app, msgs) = appends_page_cache(&dir, total);
    println!(
        "append to page cache          {app:8.2} GB/s  ({:.2} M records/s)",
        msgs / 1e6
    );
    for writers in [1, 8, 64] {
        let (mbps, fsyncs, per) = group_commit(&dir, writers, Duration::from_secs(secs));
        let ratio = dd.map_or(String::new(), |dd| {
            format!("  {:.0}% of dd", 100.0 * mbps / dd)
        });
        println!(
            "group commit, {writers:2} writers      {mbps:8.0} MB/s  {fsyncs:6.0} fsyncs/s  {per:5.1} batches/fsync{ratio}"
        );
    }
    let (read, clean, killed, full) = sequential_read_and_reopen(&dir, total);
    println!("sequential read (1 MiB reads) {read:8.2} GB/s");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "reopen {} MiB log: after close {:.1} ms; after kill {:.1} ms (active segment validated); \
         with no recovery point {:.0} ms ({:.2} GB/s validated)",
        total >> 20,
        ms(clean),
        ms(killed),
        ms(full),
        gbps(total, full)
    );
}
