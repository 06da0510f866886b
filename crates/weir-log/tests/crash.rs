//! Crash and corruption: torn tails, flipped bytes, power cuts that lose
//! unsynced data, failing fsyncs, and acks=all-style waiters.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use weir_log::batch::BatchHeader;
use weir_log::{ErrorKind, FaultStorage, Log, LogError};

const SEGMENT: &str = "00000000000000000000.log";

/// Writes `n` batches of 3 records with the real file system and returns
/// the segment bytes and where the last batch starts.
fn written_segment(n: usize) -> (Vec<u8>, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::open_dir(tmp.path(), config(), 0).unwrap();
    let mut last_start = 0;
    for i in 0..n {
        last_start = log.size_bytes() as usize;
        log.append(&mut batch(&format!("b{i}"), 3, 20, i as i64), 0)
            .unwrap();
    }
    drop(log); // killed: no clean shutdown
    (std::fs::read(tmp.path().join(SEGMENT)).unwrap(), last_start)
}

/// Opens a directory holding only `segment` as its first segment (as left
/// by a crash before any index was written) and checks what survived.
fn reopen_expect(segment: &[u8], whole_batches: usize) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(SEGMENT), segment).unwrap();
    let log = Log::open_dir(tmp.path(), config(), 0).unwrap();
    let expected_end = 3 * whole_batches as u64;
    assert_eq!(log.log_end_offset(), expected_end);
    let got = values(&log, 0);
    assert_eq!(got.len(), 3 * whole_batches);
    for (i, (o, v)) in got.iter().enumerate() {
        assert_eq!(*o as usize, i);
        assert!(v.starts_with(&format!("b{}-{}", i / 3, i % 3)), "{v}");
    }
    // Appending continues right after the last whole batch.
    let info = log.append(&mut batch("next", 2, 20, 0), 0).unwrap();
    assert_eq!(info.base_offset, expected_end);
    assert_eq!(values(&log, expected_end).len(), 2);
    log.close().unwrap();
    let log = Log::open_dir(tmp.path(), config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), expected_end + 2);
}

#[test]
fn a_torn_last_batch_is_cut_at_every_byte_position() {
    let (seg, last_start) = written_segment(5);
    for cut in last_start..seg.len() {
        reopen_expect(&seg[..cut], 4);
    }
    reopen_expect(&seg, 5);
}

#[test]
fn a_flipped_byte_in_the_last_batch_is_cut() {
    let (seg, last_start) = written_segment(5);
    for pos in last_start..seg.len() {
        // partitionLeaderEpoch (bytes 12..16) is outside the CRC by the
        // format's design; a flip there cannot be seen by any Kafka log.
        if (12..16).contains(&(pos - last_start)) {
            continue;
        }
        for bit in [0u8, 7] {
            let mut damaged = seg.clone();
            damaged[pos] ^= 1 << bit;
            reopen_expect(&damaged, 4);
        }
    }
}

#[test]
fn zeroes_after_the_last_batch_are_cut() {
    // A crash can leave a file extended with zeroes (metadata synced before data).
    let (mut seg, _) = written_segment(3);
    seg.extend_from_slice(&[0u8; 4096]);
    reopen_expect(&seg, 3);
}

#[test]
fn damage_in_an_earlier_segment_drops_everything_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::open_dir(tmp.path(), small_config(), 0).unwrap();
    for i in 0..40 {
        log.append(&mut batch("s", 3, 100, i), 0).unwrap();
    }
    let segs = log.segments();
    assert!(segs.len() >= 3);
    drop(log);
    // Corrupt the first batch of the second segment and remove the
    // recovery point, so that recovery has to look at it.
    let second = segment_path(tmp.path(), segs[1].base_offset, "log");
    let mut data = std::fs::read(&second).unwrap();
    data[100] ^= 0x55;
    std::fs::write(&second, data).unwrap();
    let _ = std::fs::remove_file(tmp.path().join(weir_log::RECOVERY_POINT_FILE));
    let log = Log::open_dir(tmp.path(), small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), segs[1].base_offset);
    assert_eq!(log.segments().len(), 2, "{:?}", log.segments());
    assert!(!segment_path(tmp.path(), segs[2].base_offset, "log").exists());
    let info = log.append(&mut batch("new", 1, 10, 0), 0).unwrap();
    assert_eq!(info.base_offset, segs[1].base_offset);
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt_after_a_clean_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::open_dir(tmp.path(), small_config(), 0).unwrap();
    for i in 0..40 {
        log.append(&mut batch("x", 3, 100, i * 10), 0).unwrap();
    }
    let segs = log.segments();
    let expected = values(&log, 0);
    log.close().unwrap();
    std::fs::remove_file(segment_path(tmp.path(), segs[0].base_offset, "index")).unwrap();
    std::fs::write(
        segment_path(tmp.path(), segs[1].base_offset, "timeindex"),
        b"short",
    )
    .unwrap();
    let active = segs.last().unwrap().base_offset;
    std::fs::write(segment_path(tmp.path(), active, "index"), [0xffu8; 16]).unwrap();
    let log = Log::open_dir(tmp.path(), small_config(), 0).unwrap();
    assert_eq!(values(&log, 0), expected);
    assert_eq!(log.offset_for_timestamp(200).unwrap(), Some((60, 200)));
    for seg in &segs {
        for ext in ["index", "timeindex"] {
            assert!(segment_path(tmp.path(), seg.base_offset, ext).exists());
        }
    }
}

/// A power cut loses what was not synced; what `flush_until` confirmed
/// survives, and the log is always a prefix of what was appended.
#[test]
fn power_cut_keeps_every_flushed_batch() {
    for round in 0..20u64 {
        let s = FaultStorage::new();
        let log = open(&s, small_config());
        let mut confirmed = 0;
        for i in 0..(30 + round * 7) {
            let info = log.append(&mut batch("p", 2, 90, i as i64), 0).unwrap();
            if (i + round) % 4 == 0 {
                log.flush_until(info.last_offset + 1).unwrap();
                confirmed = info.last_offset + 1;
            }
            if (i + round) % 9 == 0 {
                log.flush_if_due(0).unwrap();
            }
        }
        let appended = log.log_end_offset();
        drop(log);
        s.crash();
        let log = open(&s, small_config());
        let end = log.log_end_offset();
        assert!(
            end >= confirmed && end <= appended,
            "round {round}: end {end}, confirmed {confirmed}"
        );
        let v = values(&log, 0);
        assert_eq!(v.len() as u64, end);
        for (i, (o, val)) in v.iter().enumerate() {
            assert_eq!(*o as usize, i);
            assert!(val.starts_with(&format!("p-{}", i % 2)));
        }
        let info = log.append(&mut batch("after", 1, 10, 0), 0).unwrap();
        assert_eq!(info.base_offset, end);
        // A second crash right after recovery loses nothing recovery kept.
        drop(log);
        s.crash();
        let log = open(&s, small_config());
        assert!(log.log_end_offset() >= end);
    }
}

/// acks=all: a producer is released only once its batch is synced, and
/// concurrent producers share fsyncs (group commit).
#[test]
fn acks_all_waiters_are_released_only_after_their_data_is_synced() {
    let s = FaultStorage::new();
    s.set_sync_delay(Some(Duration::from_millis(20)));
    let log = Arc::new(open(&s, config()));
    let one = batch("w", 1, 100, 0).len() as u64;
    let writers = 16;
    let rounds = 5;
    let barrier = Arc::new(Barrier::new(writers));
    let path = segment_path(&dir(), 0, "log");
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (log, s, barrier, path) = (log.clone(), s.clone(), barrier.clone(), path.clone());
            std::thread::spawn(move || {
                for r in 0..rounds {
                    barrier.wait();
                    let info = log
                        .append(&mut batch(&format!("w{w}r{r}"), 1, 100, 0), 0)
                        .unwrap();
                    log.flush_until(info.last_offset + 1).unwrap();
                    // Every batch is the same size, so offset o ends at (o+1)*one.
                    let synced = s.synced_len(&path).unwrap_or(0);
                    assert!(
                        synced >= (info.last_offset + 1) * one,
                        "released before its data was synced"
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let syncs = s.stats().syncs.load(Ordering::Relaxed);
    let waiters = (writers * rounds) as u64;
    assert!(
        syncs < waiters / 2,
        "{syncs} fsyncs for {waiters} waiters: no group commit"
    );
    let end = log.log_end_offset();
    drop(log);
    s.crash();
    let log = open(&s, config());
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn a_failed_fsync_stops_writes_until_reopened() {
    let s = FaultStorage::new();
    let log = open(&s, config());
    log.append(&mut batch("a", 2, 10, 0), 0).unwrap();
    log.flush().unwrap();
    log.append(&mut batch("b", 2, 10, 0), 0).unwrap();
    s.set_fail_sync(true);
    let err = log.flush().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage);
    s.set_fail_sync(false);
    assert!(matches!(
        log.append(&mut batch("c", 1, 10, 0), 0),
        Err(LogError::Failed { .. })
    ));
    assert!(matches!(log.flush(), Err(LogError::Failed { .. })));
    // Reads still work.
    assert_eq!(values(&log, 0).len(), 4);
    assert!(log.close().is_err());
    // Reopening revalidates; the synced batch is certainly there.
    let log = open(&s, config());
    assert!(log.log_end_offset() >= 2);
    log.append(&mut batch("d", 1, 10, 0), 0).unwrap();
}

#[test]
fn recovery_reports_nothing_lost_for_a_killed_process() {
    // kill -9 loses nothing that reached the OS: every acks=1 append survives.
    let tmp = tempfile::tempdir().unwrap();
    let p: &Path = tmp.path();
    let log = Log::open_dir(p, small_config(), 0).unwrap();
    for i in 0..100 {
        log.append(&mut batch("k", 2, 50, i), 0).unwrap();
    }
    drop(log);
    let log = Log::open_dir(p, small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 200);
    let r = log.read(199, 10).unwrap();
    assert_eq!(BatchHeader::parse(&r.records).unwrap().base_offset, 198);
}

mod damaged_files {
    use super::*;
    use proptest::prelude::*;
    use weir_log::Storage;

    /// A small closed log: three segments, all files present.
    fn closed_log() -> (FaultStorage, Vec<std::path::PathBuf>) {
        let s = FaultStorage::new();
        let log = open(&s, small_config());
        for i in 0..30 {
            log.append(&mut batch("d", 3, 100, i * 7), 0).unwrap();
        }
        log.close().unwrap();
        let mut files: Vec<_> = s
            .list(&dir())
            .unwrap()
            .into_iter()
            .map(|n| dir().join(n))
            .collect();
        files.sort();
        (s, files)
    }

    /// Reads everything it can; errors are fine, panics are not.
    fn exercise(log: &Log) {
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        let mut offset = start;
        while offset < end {
            match log.read(offset, 500) {
                Ok(r) if r.next_offset > offset => offset = r.next_offset,
                _ => offset += 1,
            }
        }
        for ts in [-1, 0, 50, 100, 10_000] {
            let _ = log.offset_for_timestamp(ts);
        }
        let _ = log.max_timestamp();
        let _ = log.append(&mut batch("after", 1, 10, 0), 0);
        let _ = log.flush();
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/damaged-files.txt"),
            )),
            ..ProptestConfig::default()
        })]

        /// Random damage to any file of a cleanly closed log (segment data,
        /// indexes, checkpoint files), with or without the clean marker:
        /// opening and using the log never panics.
        #[test]
        fn damaged_files_never_panic(
            file in any::<proptest::sample::Index>(),
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
            cut in proptest::option::of(any::<proptest::sample::Index>()),
            keep_marker in any::<bool>(),
        ) {
            let (s, files) = closed_log();
            let path = file.get(&files).clone();
            let mut data = s.contents(&path).unwrap();
            if !data.is_empty() {
                for (at, byte) in &edits {
                    let i = at.index(data.len());
                    data[i] = *byte;
                }
                if let Some(c) = cut {
                    data.truncate(c.index(data.len()));
                }
            } else {
                data = edits.iter().map(|(_, b)| *b).collect();
            }
            s.set_contents(&path, data);
            if !keep_marker {
                s.remove(&dir().join(weir_log::CLEAN_SHUTDOWN_FILE)).unwrap();
            }
            if let Ok(log) = Log::open(std::sync::Arc::new(s.clone()), dir(), small_config(), 0) {
                exercise(&log);
            }
        }

        /// Arbitrary bytes as a segment after a crash: recovery keeps a
        /// valid prefix (here: nothing) and the log works.
        #[test]
        fn garbage_segment_is_recovered(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let s = FaultStorage::new();
            s.create_dir_all(&dir()).unwrap();
            let f = s.open(&segment_path(&dir(), 0, "log"), true).unwrap();
            f.write_all_at(&data, 0).unwrap();
            let log = open(&s, small_config());
            exercise(&log);
        }
    }
}
