//! Idempotent producers: retried batches are not written twice, gaps and
//! old epochs are refused, and the state survives clean restarts, kills,
//! power cuts and rolls.

mod common;

use common::*;
use weir_log::batch::{self, BatchHeader};
use weir_log::{ErrorKind, FaultStorage, Log};

/// A batch of `n` records from producer `pid` / `epoch` starting at `seq`.
fn idem(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = batch(&format!("p{pid}s{seq}"), n, 50, 1000);
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    batch::reseal_crc(&mut b);
    b
}

fn send(
    log: &Log,
    pid: i64,
    epoch: i16,
    seq: i32,
    n: usize,
) -> weir_log::Result<weir_log::AppendInfo> {
    log.append(&mut idem(pid, epoch, seq, n), 1000)
}

#[test]
fn retries_are_answered_with_the_original_offsets() {
    let s = FaultStorage::new();
    let log = open(&s, small_config());
    let a = send(&log, 1, 0, 0, 3).unwrap();
    let b = send(&log, 1, 0, 3, 2).unwrap();
    assert_eq!((a.base_offset, b.base_offset), (0, 3));
    let size = log.size_bytes();
    // The same two batches again (a producer retrying after a lost answer).
    let a2 = send(&log, 1, 0, 0, 3).unwrap();
    let b2 = send(&log, 1, 0, 3, 2).unwrap();
    assert!(a2.duplicate && b2.duplicate);
    assert_eq!((a2.base_offset, a2.last_offset), (0, 2));
    assert_eq!((b2.base_offset, b2.last_offset), (3, 4));
    assert_eq!(log.size_bytes(), size, "a duplicate was written");
    // Gaps and old epochs are refused with Kafka's errors.
    assert_eq!(
        send(&log, 1, 0, 9, 1).unwrap_err().kind(),
        ErrorKind::OutOfOrderSequence
    );
    send(&log, 1, 1, 0, 1).unwrap();
    assert_eq!(
        send(&log, 1, 0, 5, 1).unwrap_err().kind(),
        ErrorKind::InvalidProducerEpoch
    );
    // Non-idempotent batches are never checked.
    log.append(&mut batch("plain", 1, 10, 0), 0).unwrap();
    log.append(&mut batch("plain", 1, 10, 0), 0).unwrap();
    assert_eq!(log.log_end_offset(), 8);
}

#[test]
fn a_repeat_inside_one_request_is_refused() {
    let s = FaultStorage::new();
    let log = open(&s, config());
    send(&log, 4, 0, 0, 1).unwrap();
    let mut two = idem(4, 0, 1, 1);
    two.extend_from_slice(&idem(4, 0, 2, 1));
    log.append(&mut two, 1000).unwrap();
    let mut again = idem(4, 0, 2, 1);
    again.extend_from_slice(&idem(4, 0, 3, 1));
    assert_eq!(
        log.append(&mut again, 1000).unwrap_err().kind(),
        ErrorKind::DuplicateSequence
    );
}

/// After every kind of restart a retry is still recognised.
#[test]
fn the_state_survives_restarts_kills_power_cuts_and_rolls() {
    let s = FaultStorage::new();
    let mut log = open(&s, small_config());
    let mut seq = 0;
    let mut sent = Vec::new();
    for round in 0..4 {
        for _ in 0..30 {
            let info = send(&log, 7, 0, seq, 2).unwrap();
            sent.push((seq, info.base_offset));
            seq += 2;
        }
        log.flush().unwrap();
        match round {
            0 => log.close().unwrap(),
            1 => drop(log),
            _ => {
                drop(log);
                s.crash();
            }
        }
        log = open(&s, small_config());
        assert!(log.segments().len() > 1, "rolls happened");
        // The last five batches are recognised as duplicates.
        for &(seq, offset) in &sent[sent.len() - 5..] {
            let info = send(&log, 7, 0, seq, 2).unwrap();
            assert!(info.duplicate, "round {round}: batch {seq} written twice");
            assert_eq!(info.base_offset, offset);
        }
        assert_eq!(
            send(&log, 7, 0, seq + 2, 2).unwrap_err().kind(),
            ErrorKind::OutOfOrderSequence
        );
    }
    // Each snapshot was written at a roll, named like its segment.
    let last = log.segments().last().unwrap().base_offset;
    assert!(
        s.contents(&segment_path(&dir(), last, "snapshot"))
            .is_some()
    );
    // A damaged snapshot falls back to replaying older segments.
    s.set_contents(&segment_path(&dir(), last, "snapshot"), b"junk".to_vec());
    drop(log);
    let log = open(&s, small_config());
    let &(seq, offset) = sent.last().unwrap();
    let info = send(&log, 7, 0, seq, 2).unwrap();
    assert!(info.duplicate);
    assert_eq!(info.base_offset, offset);
    let stored = log.read(offset, 1).unwrap().records;
    assert_eq!(BatchHeader::parse(&stored).unwrap().producer_id, 7);
}
