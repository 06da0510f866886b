//! Behaviour of the partition log through its public API.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use weir_log::batch::{self, BatchHeader, TimestampType};
use weir_log::{
    CLEAN_SHUTDOWN_FILE, CleanupPolicy, ErrorKind, FaultStorage, Flusher, Log, LogError, Storage,
    SystemClock,
};

#[test]
fn append_assigns_offsets_and_reads_back_whole_batches() {
    let s = FaultStorage::new();
    let log = open(&s, config());
    let a = log.append(&mut batch("a", 3, 10, 100), 1).unwrap();
    let b = log.append(&mut batch("b", 1, 10, 200), 2).unwrap();
    let c = log.append(&mut batch("c", 5, 10, 300), 3).unwrap();
    assert_eq!((a.base_offset, a.last_offset), (0, 2));
    assert_eq!((b.base_offset, b.last_offset), (3, 3));
    assert_eq!((c.base_offset, c.last_offset), (4, 8));
    assert_eq!(a.log_append_time_ms, -1);
    assert_eq!(log.log_end_offset(), 9);

    let all = log.read(0, 1 << 20).unwrap();
    let got = batches(&all.records);
    assert_eq!(got.len(), 3);
    assert_eq!(all.next_offset, 9);
    assert_eq!(all.log_end_offset, 9);
    let bases: Vec<i64> = got
        .iter()
        .map(|b| BatchHeader::parse(b).unwrap().base_offset)
        .collect();
    assert_eq!(bases, vec![0, 3, 4]);

    // An offset inside a batch returns that whole batch first.
    let mid = log.read(6, 1 << 20).unwrap();
    assert_eq!(BatchHeader::parse(&mid.records).unwrap().base_offset, 4);
    // The end reads nothing; past the end is out of range.
    assert!(log.read(9, 100).unwrap().records.is_empty());
    let err = log.read(10, 100).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OffsetOutOfRange);
    assert!(matches!(
        err,
        LogError::OffsetOutOfRange {
            offset: 10,
            start: 0,
            end: 9
        }
    ));

    let v = values(&log, 0);
    assert_eq!(v.len(), 9);
    assert_eq!(v[3], (3, "b-0..........".chars().take(10).collect()));
}

#[test]
fn read_returns_at_least_one_batch_and_only_whole_batches() {
    let s = FaultStorage::new();
    let log = open(&s, config());
    let first = log.append(&mut batch("big", 10, 100, 0), 0).unwrap();
    log.append(&mut batch("small", 1, 10, 0), 0).unwrap();
    // max_bytes smaller than the first batch: still that one batch.
    let r = log.read(0, 10).unwrap();
    assert_eq!(r.records.len(), first.bytes);
    assert_eq!(r.next_offset, 10);
    // Room for one and a half batches: one batch, never a partial one.
    let r = log.read(0, first.bytes + 20).unwrap();
    assert_eq!(batches(&r.records).len(), 1);
    // read_bounded stops below a high watermark.
    let r = log.read_bounded(0, 1 << 20, 10, true).unwrap();
    assert_eq!(batches(&r.records).len(), 1);
    // Without min_one, a first batch over the limit is not read at all;
    // one that fits is.
    let r = log
        .read_bounded(0, first.bytes - 1, u64::MAX, false)
        .unwrap();
    assert!(r.records.is_empty());
    assert_eq!(r.next_offset, 0);
    let r = log.read_bounded(0, first.bytes, u64::MAX, false).unwrap();
    assert_eq!(r.records.len(), first.bytes);
}

#[test]
fn bad_input_is_rejected_whole_and_nothing_is_written() {
    let s = FaultStorage::new();
    let log = open(&s, config());
    log.append(&mut batch("ok", 2, 10, 0), 0).unwrap();
    let before = s.contents(&segment_path(&dir(), 0, "log")).unwrap();

    let mut two = batch("x", 2, 10, 0);
    let mut bad = batch("y", 2, 10, 0);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    two.extend_from_slice(&bad);
    let err = log.append(&mut two, 0).unwrap_err();
    assert!(matches!(err, LogError::CorruptBatch { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::CorruptMessage);

    let mut cfg = config();
    cfg.max_message_bytes = 100;
    log.set_config(cfg);
    let err = log.append(&mut batch("z", 10, 100, 0), 0).unwrap_err();
    assert!(
        matches!(err, LogError::BatchTooLarge { max: 100, .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);

    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(s.contents(&segment_path(&dir(), 0, "log")).unwrap(), before);
}

#[test]
fn compressed_batches_are_stored_as_they_came() {
    let s = FaultStorage::new();
    let log = open(&s, config());
    let mut b = batch("z", 4, 10, 0);
    batch::set_compression_bits(&mut b, 4);
    let sent = b.clone();
    log.append(&mut b, 0).unwrap();
    let stored = log.read(0, 1 << 20).unwrap().records;
    // Only the base offset and leader epoch (outside the CRC) differ.
    assert_eq!(stored.len(), sent.len());
    assert_eq!(stored[16..], sent[16..]);
    assert_eq!(
        BatchHeader::parse(&stored).unwrap().compression().unwrap(),
        batch::Compression::Zstd
    );
}

#[test]
fn leader_epoch_and_log_append_time_are_stamped() {
    let s = FaultStorage::new();
    let mut cfg = config();
    cfg.message_timestamp_type = TimestampType::LogAppendTime;
    let log = open(&s, cfg);
    log.set_leader_epoch(7);
    let info = log.append(&mut batch("t", 3, 10, 5), 123_456).unwrap();
    assert_eq!(info.log_append_time_ms, 123_456);
    let r = log.read(0, 1 << 20).unwrap();
    let h = BatchHeader::parse(&r.records).unwrap();
    assert_eq!(h.partition_leader_epoch, 7);
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(h.max_timestamp, 123_456);
    batch::check_batch(&r.records, batch::Strictness::Producer).expect("CRC was recomputed");
    assert_eq!(
        log.offset_for_timestamp(123_456).unwrap(),
        Some((0, 123_456))
    );
}

#[test]
fn leader_epochs_are_kept_cut_on_a_crash_and_rebuilt_when_missing() {
    let s = FaultStorage::new();
    let log = open(&s, small_config());
    for (epoch, n) in [(0, 3), (2, 4), (5, 2)] {
        log.set_leader_epoch(epoch);
        for i in 0..n {
            log.append(&mut batch("e", 1, 50, i), 0).unwrap();
        }
    }
    assert_eq!(log.epochs(), vec![(0, 0), (2, 3), (5, 7)]);
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 3)));
    assert_eq!(log.end_offset_for_epoch(1), Some((0, 3)));
    assert_eq!(log.end_offset_for_epoch(3), Some((2, 7)));
    assert_eq!(log.end_offset_for_epoch(9), Some((5, 9)));
    assert_eq!(log.end_offset_for_epoch(-1), None);
    log.flush_until(9).unwrap();
    // Epoch 7 starts, its batch is never synced: a power cut takes both.
    log.set_leader_epoch(7);
    log.append(&mut batch("e", 1, 50, 99), 0).unwrap();
    assert_eq!(log.epochs().last(), Some(&(7, 9)));
    drop(log);
    s.crash();
    let log = open(&s, small_config());
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(
        log.epochs(),
        vec![(0, 0), (2, 3), (5, 7)],
        "epoch 7 is gone with its data"
    );
    log.close().unwrap();
    // A log written before epochs were kept (no checkpoint): rebuilt from
    // the batch headers.
    s.remove(&dir().join(weir_log::epochs::LEADER_EPOCH_FILE))
        .unwrap();
    let log = open(&s, small_config());
    assert_eq!(log.epochs(), vec![(0, 0), (2, 3), (5, 7)]);
    assert!(s.exists(&dir().join(weir_log::epochs::LEADER_EPOCH_FILE)));
    log.close().unwrap();
}

#[test]
fn segments_roll_by_size_by_age_and_on_demand() {
    let s = FaultStorage::new();
    let mut cfg = small_config();
    cfg.segment_ms = 1000;
    let log = open(&s, cfg);
    for i in 0..40 {
        log.append(&mut batch("r", 2, 100, i), 0).unwrap();
    }
    let segs = log.segments();
    assert!(segs.len() >= 3, "{segs:?}");
    for w in segs.windows(2) {
        assert_eq!(w[0].next_offset, w[1].base_offset);
        assert!(w[0].size <= 4096);
        assert!(!w[0].active);
    }
    assert!(segs.last().unwrap().active);
    let n = segs.len();
    // Age: the next append after segment.ms starts a new segment.
    log.append(&mut batch("late", 1, 10, 0), 999).unwrap();
    assert_eq!(log.segments().len(), n);
    log.append(&mut batch("late", 1, 10, 0), 5000).unwrap();
    assert_eq!(log.segments().len(), n + 1);
    log.roll().unwrap();
    assert_eq!(log.segments().len(), n + 2);
    // Rolling an empty active segment does nothing.
    log.roll().unwrap();
    assert_eq!(log.segments().len(), n + 2);
    assert_eq!(values(&log, 0).len(), 82);
    // The segment files exist under Kafka's names.
    for seg in log.segments() {
        for ext in ["log", "index", "timeindex"] {
            assert!(
                s.contents(&segment_path(&dir(), seg.base_offset, ext))
                    .is_some()
            );
        }
    }
}

#[test]
fn reads_go_through_the_index_not_a_scan() {
    let s = FaultStorage::new();
    let mut cfg = config();
    cfg.index_interval_bytes = 4096;
    let log = open(&s, cfg);
    for i in 0..20_000 {
        log.append(&mut batch("i", 1, 60, i), 0).unwrap();
    }
    let size = log.size_bytes();
    assert!(size > 2_000_000);
    let check = |log: &Log| {
        for offset in [0u64, 7_777, 19_999] {
            let before = s.stats().bytes_read.load(Ordering::Relaxed);
            let r = log.read(offset, 1000).unwrap();
            let read = s.stats().bytes_read.load(Ordering::Relaxed) - before;
            assert_eq!(
                BatchHeader::parse(&r.records).unwrap().base_offset as u64,
                offset
            );
            // One index interval of headers (read in one 16 KiB chunk) plus the data.
            assert!(
                read < 20 * 1024 + 1000 + 200,
                "read {read} bytes of a {size}-byte log"
            );
        }
    };
    check(&log);
    // The same from a sealed segment, whose index is searched on disk.
    log.roll().unwrap();
    check(&log);
}

#[test]
fn offsets_by_timestamp_are_exact() {
    let s = FaultStorage::new();
    let log = open(&s, small_config());
    // Batch i holds records with timestamps 1000*i .. 1000*i+4.
    for i in 0..50 {
        log.append(&mut batch("t", 5, 50, 1000 * i), 0).unwrap();
    }
    assert!(log.segments().len() > 3);
    let check = |log: &Log| {
        assert_eq!(log.offset_for_timestamp(-5).unwrap(), Some((0, 0)));
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 0)));
        assert_eq!(log.offset_for_timestamp(3).unwrap(), Some((3, 3)));
        assert_eq!(log.offset_for_timestamp(5).unwrap(), Some((5, 1000)));
        assert_eq!(
            log.offset_for_timestamp(17_002).unwrap(),
            Some((87, 17_002))
        );
        assert_eq!(
            log.offset_for_timestamp(49_004).unwrap(),
            Some((249, 49_004))
        );
        assert_eq!(log.offset_for_timestamp(49_005).unwrap(), None);
        // The record that holds it, not its batch (KIP-734).
        assert_eq!(log.max_timestamp(), Some((49_004, 249)));
    };
    check(&log);
    log.close().unwrap();
    let log = open(&s, small_config());
    check(&log);
    // Compressed create-time batches answer with the batch that reaches the time.
    let mut c = batch("c", 5, 10, 60_000);
    batch::set_compression_bits(&mut c, 1);
    log.append(&mut c, 0).unwrap();
    assert_eq!(
        log.offset_for_timestamp(60_002).unwrap(),
        Some((250, 60_004))
    );
}

#[test]
fn retention_by_size_and_time_deletes_whole_inactive_segments() {
    let s = FaultStorage::new();
    let mut cfg = small_config();
    cfg.retention_bytes = Some(10_000);
    cfg.retention_ms = None;
    let log = open(&s, cfg.clone());
    for i in 0..100 {
        log.append(&mut batch("r", 2, 100, i * 10), 0).unwrap();
    }
    let before = log.segments();
    let out = log.apply_retention(0).unwrap();
    assert!(out.segments > 0);
    let after = log.segments();
    assert_eq!(after.len(), before.len() - out.segments);
    assert_eq!(log.log_start_offset(), after[0].base_offset);
    assert_eq!(out.log_start_offset, after[0].base_offset);
    let total: u64 = after.iter().map(|s| s.size).sum();
    assert!(total - after[0].size < 10_000, "kept more than needed");
    assert!(total >= 10_000 || after.len() == 1);
    // Deleted files are gone; reads below the start are out of range.
    assert!(s.contents(&segment_path(&dir(), 0, "log")).is_none());
    assert_eq!(
        log.read(0, 10).unwrap_err().kind(),
        ErrorKind::OffsetOutOfRange
    );
    assert_eq!(
        values(&log, log.log_start_offset()).first().unwrap().0 as u64,
        log.log_start_offset()
    );

    // By time: segments whose newest record is older than retention.ms.
    cfg.retention_bytes = None;
    cfg.retention_ms = Some(100);
    log.set_config(cfg.clone());
    let oldest = log.segments()[0].max_timestamp;
    let newest_sealed = log.segments().iter().rev().nth(1).unwrap().max_timestamp;
    let out = log.apply_retention(oldest + 100).unwrap();
    assert_eq!(out.segments, 0, "nothing is older than retention.ms yet");
    let out = log.apply_retention(oldest + 101).unwrap();
    assert_eq!(out.segments, 1, "exactly the oldest segment expired");
    let out = log.apply_retention(newest_sealed + 101).unwrap();
    assert!(out.segments > 0);
    // Only the active segment is left; it is never deleted.
    assert_eq!(log.segments().len(), 1);
    assert_eq!(log.apply_retention(i64::MAX).unwrap().segments, 0);

    // compact-only logs keep their data.
    let s2 = FaultStorage::new();
    cfg.cleanup_policy = CleanupPolicy::Compact;
    let log2 = open(&s2, cfg);
    for i in 0..50 {
        log2.append(&mut batch("r", 2, 100, i), 0).unwrap();
    }
    assert_eq!(log2.apply_retention(i64::MAX).unwrap().segments, 0);
}

#[test]
fn delete_records_moves_the_start_durably() {
    let s = FaultStorage::new();
    let log = open(&s, small_config());
    for i in 0..60 {
        log.append(&mut batch("d", 2, 100, i), 0).unwrap();
    }
    let end = log.log_end_offset();
    assert_eq!(
        log.delete_records_before(end + 1).unwrap_err().kind(),
        ErrorKind::OffsetOutOfRange
    );
    let segs = log.segments().len();
    assert_eq!(log.delete_records_before(51).unwrap(), 51);
    assert!(log.segments().len() < segs);
    assert_eq!(log.log_start_offset(), 51);
    // Going back is a no-op.
    assert_eq!(log.delete_records_before(10).unwrap(), 51);
    assert_eq!(
        log.read(50, 10).unwrap_err().kind(),
        ErrorKind::OffsetOutOfRange
    );
    // Reading at the start returns the batch holding it (offsets 50-51).
    let r = log.read(51, 10).unwrap();
    assert_eq!(BatchHeader::parse(&r.records).unwrap().base_offset, 50);

    // Survives a crash (power cut) as well as a clean restart.
    drop(log);
    s.crash();
    let log = open(&s, small_config());
    assert_eq!(log.log_start_offset(), 51);
    assert!(log.log_end_offset() >= 51);
    log.close().unwrap();
    let log = open(&s, small_config());
    assert_eq!(log.log_start_offset(), 51);
    // Deleting everything keeps the active segment and an empty log.
    let end = log.log_end_offset();
    log.delete_records_before(end).unwrap();
    assert!(log.read(end, 100).unwrap().records.is_empty());
    log.append(&mut batch("after", 1, 10, 0), 0).unwrap();
    assert_eq!(
        values(&log, end),
        vec![(end as i64, "after-0...".to_owned())]
    );
}

#[test]
fn clean_restart_reads_only_the_tail() {
    let s = FaultStorage::new();
    let mut cfg = config();
    cfg.segment_bytes = 1 << 20;
    let log = open(&s, cfg.clone());
    for i in 0..4000 {
        log.append(&mut batch("c", 4, 250, i), 0).unwrap();
    }
    let size = log.size_bytes();
    assert!(size > 4_000_000 && log.segments().len() >= 4);
    let end = log.log_end_offset();
    log.close().unwrap();
    assert!(s.contents(&dir().join(CLEAN_SHUTDOWN_FILE)).is_some());

    let before = s.stats().bytes_read.load(Ordering::Relaxed);
    let log = open(&s, cfg.clone());
    let read = s.stats().bytes_read.load(Ordering::Relaxed) - before;
    assert!(
        read < 64 * 1024,
        "clean open read {read} bytes of a {size}-byte log"
    );
    assert_eq!(log.log_end_offset(), end);
    // The marker is gone as soon as the log is open.
    assert!(s.contents(&dir().join(CLEAN_SHUTDOWN_FILE)).is_none());
    let info = log.append(&mut batch("next", 1, 10, 0), 0).unwrap();
    assert_eq!(info.base_offset, end);

    // Unclean (killed) with a recent recovery point: only the segments from
    // the recovery point on are validated.
    log.flush().unwrap();
    log.roll().unwrap();
    // The background policy moves the recovery point past the roll.
    assert!(log.flush_if_due(0).unwrap());
    assert!(
        !log.flush_if_due(0).unwrap(),
        "the recovery point is current"
    );
    log.append(&mut batch("tail", 1, 10, 0), 0).unwrap();
    drop(log);
    let before = s.stats().bytes_read.load(Ordering::Relaxed);
    let log = open(&s, cfg);
    let read = s.stats().bytes_read.load(Ordering::Relaxed) - before;
    assert!(
        read < 64 * 1024,
        "unclean open read {read} bytes of a {size}-byte log"
    );
    assert_eq!(log.log_end_offset(), end + 2);
}

#[test]
fn flush_policies_by_count_and_age() {
    let s = FaultStorage::new();
    let mut cfg = config();
    cfg.flush_messages = Some(5);
    let log = open(&s, cfg);
    log.append(&mut batch("f", 3, 10, 0), 0).unwrap();
    assert_eq!(log.flushed_offset(), 0);
    log.append(&mut batch("f", 2, 10, 0), 0).unwrap();
    assert_eq!(log.flushed_offset(), 5);
    assert_eq!(
        s.synced_len(&segment_path(&dir(), 0, "log")),
        Some(log.size_bytes())
    );

    let mut cfg = config();
    cfg.flush_ms = Some(1000);
    log.set_config(cfg);
    log.append(&mut batch("g", 1, 10, 0), 10_000).unwrap();
    assert!(!log.flush_if_due(10_999).unwrap());
    assert!(log.flush_if_due(11_000).unwrap());
    assert_eq!(log.flushed_offset(), 6);
    assert!(!log.flush_if_due(99_999).unwrap(), "nothing left to flush");
}

#[test]
fn background_flusher_runs_flush_ms() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.flush_ms = Some(0);
    let log = Arc::new(Log::open_dir(tmp.path().join("t-0"), cfg, 0).unwrap());
    let flusher = Flusher::start(Duration::from_millis(5), Arc::new(SystemClock));
    flusher.register(&log);
    log.append(&mut batch("bg", 3, 10, 0), 0).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.flushed_offset() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the flusher never flushed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    flusher.stop();
}

#[test]
fn works_on_the_real_file_system() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("orders-3");
    let log = Log::open_dir(&path, small_config(), 0).unwrap();
    for i in 0..30 {
        log.append(&mut batch("fs", 3, 100, i), 0).unwrap();
    }
    log.flush().unwrap();
    log.close().unwrap();
    let log = Log::open_dir(&path, small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 90);
    assert_eq!(values(&log, 0).len(), 90);
    let names: Vec<String> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.contains(&"00000000000000000000.log".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"00000000000000000000.index".to_owned()));
    assert!(names.contains(&"00000000000000000000.timeindex".to_owned()));
}

#[test]
fn compressed_log_append_time_batches_are_found_by_time() {
    let s = FaultStorage::new();
    let mut cfg = config();
    cfg.message_timestamp_type = TimestampType::LogAppendTime;
    let log = open(&s, cfg);
    for (i, now) in [1000i64, 2000, 3000].iter().enumerate() {
        let mut b = batch(&format!("z{i}"), 4, 10, 0);
        batch::set_compression_bits(&mut b, 1);
        log.append(&mut b, *now).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 1000)));
    assert_eq!(log.offset_for_timestamp(1500).unwrap(), Some((4, 2000)));
    assert_eq!(log.offset_for_timestamp(3000).unwrap(), Some((8, 3000)));
    assert_eq!(log.offset_for_timestamp(3001).unwrap(), None);
    log.delete_records_before(5).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((5, 2000)));
}

/// A compressed batch claiming `delta + 1` records (its body is opaque).
fn claiming(delta: i32) -> Vec<u8> {
    let mut b = batch("huge", 1, 10, 0);
    b[23..27].copy_from_slice(&delta.to_be_bytes());
    b[57..61].copy_from_slice(&(delta + 1).to_be_bytes());
    batch::set_compression_bits(&mut b, 1);
    b
}

#[test]
fn one_append_never_spans_more_offsets_than_a_segment_holds() {
    let s = FaultStorage::new();
    let log = open(&s, config());
    let mut three = claiming(i32::MAX - 1);
    three.extend_from_slice(&claiming(i32::MAX - 1));
    three.extend_from_slice(&claiming(i32::MAX - 1));
    let err = log.append(&mut three, 0).unwrap_err();
    assert!(err.to_string().contains("offsets"), "{err}");
    assert_eq!(log.log_end_offset(), 0);
    // Batches that fit are accepted; the log rolls before 32-bit relative
    // offsets would overflow, and a restart keeps everything.
    for _ in 0..3 {
        log.append(&mut claiming(i32::MAX - 1), 0).unwrap();
    }
    let end = log.log_end_offset();
    assert_eq!(end, 3 * (i32::MAX as u64));
    assert!(log.segments().len() >= 2);
    log.flush().unwrap();
    drop(log);
    let log = open(&s, config());
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn create_time_timestamps_outside_the_limits_are_refused() {
    let s = FaultStorage::new();
    let mut cfg = config();
    cfg.message_timestamp_before_max_ms = Some(60_000);
    let log = open(&s, cfg);
    let now = 10_000_000;
    log.append(&mut batch("ok", 2, 10, now - 60_000), now)
        .unwrap();
    let err = log
        .append(&mut batch("old", 2, 10, now - 60_001), now)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidTimestamp, "{err}");
    // The default after-limit is one hour, as in Kafka 4.
    log.append(&mut batch("soon", 1, 10, now + 3_600_000), now)
        .unwrap();
    let err = log
        .append(&mut batch("future", 1, 10, now + 3_600_001), now)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidTimestamp, "{err}");
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn max_timestamp_comes_from_the_records() {
    let s = FaultStorage::new();
    let mut cfg = small_config();
    cfg.retention_ms = Some(1000);
    let log = open(&s, cfg);
    // The header claims 0; the records say 1_000_000.
    let mut b = batch("t", 3, 10, 1_000_000);
    b[35..43].copy_from_slice(&0i64.to_be_bytes());
    batch::reseal_crc(&mut b);
    log.append(&mut b, 1_000_000).unwrap();
    let stored = log.read(0, 1 << 20).unwrap().records;
    assert_eq!(
        BatchHeader::parse(&stored).unwrap().max_timestamp,
        1_000_002
    );
    batch::check_batch(&stored, batch::Strictness::Producer).unwrap();
    log.roll().unwrap();
    log.append(&mut batch("u", 1, 10, 1_000_010), 1_000_010)
        .unwrap();
    assert_eq!(
        log.apply_retention(1_000_020).unwrap().segments,
        0,
        "fresh data kept"
    );
    assert_eq!(
        log.offset_for_timestamp(1_000_000).unwrap(),
        Some((0, 1_000_000))
    );
}

#[test]
fn flush_past_the_end_flushes_everything_and_returns() {
    let s = FaultStorage::new();
    let log = open(&s, config());
    log.append(&mut batch("a", 1, 10, 0), 0).unwrap();
    assert_eq!(log.flush_until(5).unwrap(), 1);
    assert_eq!(log.flush_until(u64::MAX).unwrap(), 1);
}

#[test]
fn a_failed_roll_leaves_the_active_segment_usable() {
    let s = FaultStorage::new();
    let log = open(&s, small_config());
    for i in 0..5 {
        log.append(&mut batch("r", 2, 100, i), 0).unwrap();
    }
    // No room to write the indexes out: the roll fails, nothing changes.
    s.set_capacity(Some(s.used()));
    assert!(matches!(log.roll(), Err(LogError::DiskFull { .. })));
    assert_eq!(log.segments().len(), 1);
    s.set_capacity(None);
    log.append(&mut batch("r", 2, 100, 9), 0).unwrap();
    log.roll().unwrap();
    log.append(&mut batch("r", 2, 100, 9), 0).unwrap();
    assert_eq!(log.segments().len(), 2);
    assert_eq!(values(&log, 0).len(), 14);
    // A failed index fsync while sealing stops the log, like any fsync.
    s.set_fail_sync(true);
    assert!(log.roll().is_err());
    s.set_fail_sync(false);
    assert!(matches!(
        log.append(&mut batch("x", 1, 1, 0), 0),
        Err(LogError::Failed { .. })
    ));
}

fn keyed(keys: &[Option<&str>], ts: &[i64]) -> Vec<u8> {
    let records: Vec<batch::Record> = keys
        .iter()
        .zip(ts)
        .map(|(k, &t)| batch::Record {
            timestamp: t,
            key: k.map(|k| k.as_bytes().to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![],
        })
        .collect();
    batch::encode_batch(&records)
}

#[test]
fn invalid_records_are_named_and_refuse_the_whole_append() {
    use batch::Compression;
    let s = FaultStorage::new();
    let mut cfg = config();
    cfg.cleanup_policy = CleanupPolicy::Compact;
    let log = open(&s, cfg.clone());
    let now = 1_000_000;
    for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let plain = keyed(&[Some("a"), None, Some("c"), None], &[now; 4]);
        let mut b = batch::recompress(&plain, codec, None).unwrap();
        let err = log.append(&mut b, now).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRecord, "{codec:?}: {err}");
        let LogError::InvalidRecords { records, .. } = &err else {
            panic!("{err:?}");
        };
        let culprits: Vec<usize> = records.iter().map(|(i, _)| *i).collect();
        assert_eq!(culprits, vec![1, 3], "{codec:?}");
        assert!(records[0].1.contains("without key"), "{records:?}");
    }
    assert_eq!(log.log_end_offset(), 0, "nothing was written");
    log.append(&mut keyed(&[Some("a"), Some("b")], &[now; 2]), now)
        .unwrap();

    // Timestamps: only the records out of range are named, in every codec.
    let mut cfg = config();
    cfg.message_timestamp_before_max_ms = Some(60_000);
    let log = open(&FaultStorage::new(), cfg);
    for codec in [Compression::None, Compression::Lz4, Compression::Snappy] {
        let plain = keyed(&[None; 4], &[now, now - 60_001, now, now + 3_600_001]);
        let mut b = batch::recompress(&plain, codec, None).unwrap();
        let err = log.append(&mut b, now).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidTimestamp, "{codec:?}: {err}");
        let LogError::InvalidRecords { records, .. } = &err else {
            panic!("{err:?}");
        };
        let culprits: Vec<usize> = records.iter().map(|(i, _)| *i).collect();
        assert_eq!(culprits, vec![1, 3], "{codec:?}");
        assert!(records[0].1.contains("before.max.ms"), "{records:?}");
        assert!(records[1].1.contains("after.max.ms"), "{records:?}");
        // A compressed batch whose first record is fine but a later one is
        // too old is caught too (its header cannot vouch for the minimum).
        let plain = keyed(&[None; 2], &[now, now - 70_000]);
        let mut b = batch::recompress(&plain, codec, None).unwrap();
        assert!(log.append(&mut b, now).is_err(), "{codec:?}");
    }
    assert_eq!(log.log_end_offset(), 0);
}
