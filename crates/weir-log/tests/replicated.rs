//! A follower's log: batches copied from a leader keep their offsets,
//! epochs and bytes; truncation cuts exactly where asked, survives a power
//! cut, and leaves the producer state and epochs as of the new end.

mod common;

use common::*;
use weir_log::batch;
use weir_log::{ErrorKind, FaultStorage, Log, LogError};

/// A batch of `n` records from producer `pid` starting at sequence `seq`.
fn idem(pid: i64, seq: i32, n: usize) -> Vec<u8> {
    let mut b = batch(&format!("p{pid}s{seq}"), n, 50, 1000);
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&0i16.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    batch::reseal_crc(&mut b);
    b
}

/// Copies everything `leader` has past `follower`'s end, as a fetcher does.
fn catch_up(leader: &Log, follower: &Log) {
    for _ in 0..10_000 {
        let from = follower.log_end_offset();
        let r = leader.read(from, 1500).unwrap();
        if r.records.is_empty() {
            return;
        }
        follower.append_replicated(&r.records, 0).unwrap();
    }
    panic!("the follower never caught up");
}

fn all_bytes(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, 1 << 20).unwrap();
        out.extend_from_slice(&r.records);
        offset = r.next_offset;
    }
    out
}

#[test]
fn replicated_batches_keep_the_leaders_offsets_epochs_and_bytes() {
    let (ls, fs) = (FaultStorage::new(), FaultStorage::new());
    let leader = open(&ls, small_config());
    let follower = open(&fs, small_config());
    for (epoch, n) in [(0, 5), (3, 6), (4, 4)] {
        leader.set_leader_epoch(epoch);
        for i in 0..n {
            leader.append(&mut batch("r", 2, 300, i), 0).unwrap();
        }
        catch_up(&leader, &follower);
    }
    assert_eq!(follower.log_end_offset(), 30);
    assert_eq!(follower.epochs(), vec![(0, 0), (3, 10), (4, 22)]);
    assert_eq!(follower.epochs(), leader.epochs());
    assert_eq!(all_bytes(&follower), all_bytes(&leader));
    assert!(
        follower.segments().len() > 1,
        "the copy rolled segments too"
    );

    // Overlapping what it has, or a corrupt batch: refused, nothing written.
    let again = leader.read(28, 1).unwrap().records;
    let err = follower.append_replicated(&again, 0).unwrap_err();
    assert!(
        matches!(err, LogError::OffsetOutOfRange { offset: 28, .. }),
        "{err}"
    );
    let mut bad = batch("x", 1, 10, 0);
    batch::set_base_offset(&mut bad, 30);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        follower.append_replicated(&bad, 0).unwrap_err().kind(),
        ErrorKind::CorruptMessage
    );
    assert_eq!(follower.log_end_offset(), 30);

    // The copy survives a power cut once flushed, epochs included.
    follower.flush().unwrap();
    drop(follower);
    fs.crash();
    let follower = open(&fs, small_config());
    assert_eq!(follower.log_end_offset(), 30);
    assert_eq!(follower.epochs(), leader.epochs());
    assert_eq!(all_bytes(&follower), all_bytes(&leader));
}

#[test]
fn truncation_cuts_at_a_batch_boundary_and_survives_a_power_cut() {
    let s = FaultStorage::new();
    let log = open(&s, small_config());
    for (epoch, n) in [(1, 10), (2, 10)] {
        log.set_leader_epoch(epoch);
        for i in 0..n {
            log.append(&mut batch("t", 2, 300, i), 0).unwrap();
        }
    }
    log.flush().unwrap();
    let segments = log.segments().len();
    assert!(segments > 2);
    // Offset 27 is inside the batch 26-27: the cut is at 26.
    assert_eq!(log.truncate_to(27).unwrap(), 26);
    assert_eq!(log.log_end_offset(), 26);
    assert!(log.segments().len() < segments);
    assert_eq!(log.epochs(), vec![(1, 0), (2, 20)]);
    let kept = values(&log, 0);
    assert_eq!(kept.len(), 26);
    assert_eq!(kept.last().unwrap().0, 25);
    // Into epoch 1 only: epoch 2 is forgotten.
    assert_eq!(log.truncate_to(12).unwrap(), 12);
    assert_eq!(log.epochs(), vec![(1, 0)]);
    // A cut at or past the end changes nothing.
    assert_eq!(log.truncate_to(50).unwrap(), 12);

    // Written again after the cut (a new epoch), then a power cut before
    // any flush: the recovered log ends at the cut, with nothing of the
    // removed tail back.
    log.set_leader_epoch(5);
    log.append(&mut batch("new", 2, 60, 0), 0).unwrap();
    assert_eq!(log.epochs(), vec![(1, 0), (5, 12)]);
    drop(log);
    s.crash();
    let log = open(&s, small_config());
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(values(&log, 0), kept[..12].to_vec());
    assert_eq!(log.epochs(), vec![(1, 0)]);
    log.close().unwrap();
    let log = open(&s, small_config());
    assert_eq!(log.log_end_offset(), 12);
}

#[test]
fn truncation_rebuilds_the_producer_state() {
    let s = FaultStorage::new();
    let log = open(&s, small_config());
    for seq in 0..8 {
        log.append(&mut idem(9, seq, 1), 1000).unwrap();
    }
    assert_eq!(log.truncate_to(5).unwrap(), 5);
    // Sequence 5 was cut: as the new leader, this log takes it again
    // (not a duplicate), and refuses a gap.
    let info = log.append(&mut idem(9, 5, 1), 1000).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.base_offset, 5);
    let gap = log.append(&mut idem(9, 7, 1), 1000).unwrap_err();
    assert_eq!(gap.kind(), ErrorKind::OutOfOrderSequence);
    // And a retry of what it kept is still a duplicate.
    assert!(log.append(&mut idem(9, 4, 1), 1000).unwrap().duplicate);
}

#[test]
fn a_follower_behind_the_leaders_start_starts_over_there() {
    let s = FaultStorage::new();
    let log = open(&s, small_config());
    for i in 0..10 {
        log.append(&mut batch("old", 1, 60, i), 0).unwrap();
    }
    assert_eq!(log.truncate_fully_and_start_at(100).unwrap(), 100);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
    assert!(log.epochs().is_empty());
    let mut b = batch("leader", 3, 60, 0);
    batch::set_base_offset(&mut b, 100);
    batch::set_partition_leader_epoch(&mut b, 6);
    batch::reseal_crc(&mut b);
    assert_eq!(log.append_replicated(&b, 0).unwrap(), 103);
    assert_eq!(log.epochs(), vec![(6, 100)]);
    log.flush().unwrap();
    drop(log);
    s.crash();
    let log = open(&s, small_config());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 103));
    assert_eq!(values(&log, 100).len(), 3);
}
