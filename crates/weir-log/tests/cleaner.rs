//! Log compaction: what a cleaning pass keeps, what it removes, and that
//! a crash at any step of it loses nothing.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use weir_log::batch::{self, Record};
use weir_log::{CleanupPolicy, FaultStorage, Log, LogConfig, Storage};

/// (offset, key, value) of every record from the log start, read in small
/// fetches.
type Entry = (u64, String, Option<String>);

fn scan(log: &Log) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    loop {
        let r = log.read(offset, 700).expect("read");
        if r.records.is_empty() {
            assert_eq!(offset, r.log_end_offset, "empty read before the end");
            return out;
        }
        for b in batches(&r.records) {
            for (o, rec) in batch::decode_records(b).unwrap() {
                if o as u64 >= offset {
                    out.push((
                        o as u64,
                        String::from_utf8(rec.key.unwrap()).unwrap(),
                        rec.value.map(|v| String::from_utf8(v).unwrap()),
                    ));
                }
            }
        }
        assert!(r.next_offset > offset);
        offset = r.next_offset;
    }
}

fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        cleanup_policy: CleanupPolicy::Compact,
        min_cleanable_dirty_ratio_ppm: 0,
        message_timestamp_after_max_ms: None,
        ..LogConfig::default()
    }
}

/// Appends one batch of (key, value) updates; `None` is a tombstone.
fn put(log: &Log, updates: &[(String, Option<String>)], ts: i64) {
    let records: Vec<Record> = updates
        .iter()
        .map(|(k, v)| Record {
            timestamp: ts,
            key: Some(k.clone().into_bytes()),
            value: v.clone().map(String::into_bytes),
            headers: vec![],
        })
        .collect();
    let mut b = batch::encode_batch(&records);
    log.append(&mut b, ts).expect("append");
}

/// Writes `n` updates over `keys` keys, three per batch; returns every
/// record written, by offset.
fn fill(log: &Log, n: usize, keys: usize, ts: i64) -> BTreeMap<u64, (String, Option<String>)> {
    let mut all = BTreeMap::new();
    let mut i = 0;
    while i < n {
        let start = log.log_end_offset();
        let ups: Vec<(String, Option<String>)> = (i..(i + 3).min(n))
            .map(|j| (format!("k{}", (j * 7) % keys), Some(format!("v{j}"))))
            .collect();
        put(log, &ups, ts);
        for (d, u) in ups.into_iter().enumerate() {
            all.insert(start + d as u64, u);
        }
        i += 3;
    }
    all
}

/// The latest value of every key among `written`.
fn latest(written: &BTreeMap<u64, (String, Option<String>)>) -> BTreeMap<String, Option<String>> {
    written.values().cloned().collect()
}

/// Checks a cleaned log against everything written: each record is the
/// one written at its offset (nothing rewritten, no offset reused), and
/// the latest value of every key survives.
fn check(log: &Log, written: &BTreeMap<u64, (String, Option<String>)>) -> Vec<Entry> {
    let seen = scan(log);
    for (o, k, v) in &seen {
        assert_eq!(written.get(o), Some(&(k.clone(), v.clone())), "offset {o}");
    }
    let mut last: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
    for (o, k, v) in &seen {
        last.insert(k.clone(), (*o, v.clone()));
    }
    for (k, v) in latest(written) {
        match last.get(&k) {
            Some((_, got)) => assert_eq!(got, &v, "latest of {k}"),
            None => assert!(v.is_none(), "{k} lost its latest value"),
        }
    }
    seen
}

fn new_log(storage: &FaultStorage, cfg: LogConfig) -> Log {
    Log::open(Arc::new(storage.clone()) as Arc<dyn Storage>, dir(), cfg, 0).unwrap()
}

#[test]
fn a_pass_keeps_the_latest_record_of_each_key_and_never_moves_an_offset() {
    let storage = FaultStorage::new();
    let log = new_log(&storage, compact_config());
    let written = fill(&log, 3000, 40, 1_000);
    log.roll().unwrap();
    let end = log.log_end_offset();
    let before = log.segments().len();
    assert!(log.cleanable(2_000).is_some(), "all of it is dirty");
    let stats = log.clean(2_000, 1 << 20).unwrap();
    assert!(!stats.stopped && !stats.map_full, "{stats:?}");
    assert_eq!(stats.first_dirty, end);
    assert_eq!(stats.records_read, 3000);
    let seen = check(&log, &written);
    // One record per key.
    assert_eq!(seen.len(), 40);
    assert_eq!(stats.records_removed as usize, 3000 - seen.len());
    assert_eq!(log.log_end_offset(), end);
    // Nothing dirty is left: no pass is due. Another pass merges the
    // now small segments, keeping every record but the groups' ends.
    assert!(log.cleanable(2_000).is_none());
    let again = log.clean(2_000, 1 << 20).unwrap();
    assert!(
        log.segments().len() < before / 4,
        "small segments were merged"
    );
    assert_eq!(again.records_removed, 0);
    assert_eq!(check(&log, &written), seen);
    assert_eq!(log.log_end_offset(), end);
    // Appends go on after the last offset; the log reopens the same.
    put(&log, &[("k1".into(), Some("new".into()))], 3_000);
    assert_eq!(log.log_end_offset(), end + 1);
    let seen = scan(&log);
    log.close().unwrap();
    let log = new_log(&storage, compact_config());
    assert_eq!(scan(&log), seen);
    // Recovery that validates every segment accepts the gaps compaction
    // left between batches.
    log.flush().unwrap();
    drop(log);
    storage
        .remove(&dir().join(weir_log::RECOVERY_POINT_FILE))
        .unwrap();
    storage.sync_dir(&dir()).unwrap();
    storage.crash();
    let log = new_log(&storage, compact_config());
    assert_eq!(scan(&log), seen);
    assert_eq!(log.log_end_offset(), end + 1);
}

#[test]
fn a_small_map_cleans_in_several_passes_each_one_correct() {
    let storage = FaultStorage::new();
    let log = new_log(&storage, compact_config());
    let written = fill(&log, 3000, 300, 1_000);
    log.roll().unwrap();
    let end = log.log_end_offset();
    let mut passes = 0;
    loop {
        let stats = log.clean(2_000, 64).unwrap();
        passes += 1;
        check(&log, &written);
        assert!(stats.map_entries <= 64);
        if stats.first_dirty == end {
            break;
        }
        assert!(stats.map_full, "{stats:?}");
        assert!(passes < 100, "no progress: {stats:?}");
    }
    assert!(passes > 3, "{passes} passes");
    let final_pass = log.clean(2_000, 1 << 20);
    assert!(final_pass.is_ok());
    let seen = check(&log, &written);
    assert_eq!(seen.len(), 300);
}

#[test]
fn tombstones_stay_for_delete_retention_ms_after_their_first_pass() {
    let storage = FaultStorage::new();
    let cfg = LogConfig {
        delete_retention_ms: 10_000,
        ..compact_config()
    };
    let log = new_log(&storage, cfg.clone());
    let mut written = fill(&log, 600, 20, 1_000);
    // Delete half the keys, then roll past them.
    for k in 0..10 {
        let o = log.log_end_offset();
        put(&log, &[(format!("k{k}"), None)], 2_000);
        written.insert(o, (format!("k{k}"), None));
    }
    put(&log, &[("other".into(), Some("x".into()))], 2_000);
    written.insert(log.log_end_offset() - 1, ("other".into(), Some("x".into())));
    log.roll().unwrap();
    let t0 = 100_000;
    log.clean(t0, 1 << 20).unwrap();
    let tombs = |log: &Log| scan(log).iter().filter(|e| e.2.is_none()).count();
    assert_eq!(tombs(&log), 10, "a consumer can still see every delete");
    check(&log, &written);
    // Not yet due, however often it is cleaned; the deleted keys' older
    // values are gone already.
    log.clean(t0 + 5_000, 1 << 20).unwrap();
    assert_eq!(tombs(&log), 10);
    let live: Vec<String> = scan(&log)
        .into_iter()
        .filter(|e| e.1 == "k3")
        .map(|e| format!("{:?}", e.2))
        .collect();
    assert_eq!(live, ["None"]);
    assert!(log.cleanable(t0 + 9_999).is_none());
    // Due: the cleaner is told so, and the pass removes them.
    let due = log.cleanable(t0 + 10_000).expect("tombstones due");
    assert!(due.urgent);
    // The state survives a reopen (the checkpoint remembers the pass).
    log.close().unwrap();
    let log = new_log(&storage, cfg);
    let stats = log.clean(t0 + 10_000, 1 << 20).unwrap();
    assert_eq!(stats.tombstones_removed, 10, "{stats:?}");
    assert_eq!(tombs(&log), 0);
    let keys: Vec<String> = scan(&log).into_iter().map(|e| e.1).collect();
    for k in 0..10 {
        assert!(!keys.contains(&format!("k{k}")), "k{k} is deleted");
    }
    for k in 10..20 {
        assert!(keys.contains(&format!("k{k}")), "k{k} is live");
    }
}

#[test]
fn the_active_segment_young_segments_and_delete_policies_are_left_alone() {
    let storage = FaultStorage::new();
    let cfg = LogConfig {
        min_compaction_lag_ms: 60_000,
        ..compact_config()
    };
    let log = new_log(&storage, cfg);
    let written = fill(&log, 600, 10, 1_000);
    log.roll().unwrap();
    let young = fill(&log, 600, 10, 50_000);
    let all: BTreeMap<_, _> = written
        .iter()
        .chain(young.iter())
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    // At 70 s only the first 600 updates are old enough.
    let stats = log.clean(70_000, 1 << 20).unwrap();
    let seen = check(&log, &all);
    let young_kept = seen.iter().filter(|e| young.contains_key(&e.0)).count();
    assert_eq!(young_kept, 600, "young records untouched");
    assert!(stats.records_removed > 500, "{stats:?}");
    // The active segment (the tail) is never cleaned.
    let active = log.segments().last().unwrap().clone();
    assert!(active.active);
    // A delete-policy log is never cleaned.
    let plain = Log::open(
        Arc::new(FaultStorage::new()) as Arc<dyn Storage>,
        dir(),
        LogConfig {
            cleanup_policy: CleanupPolicy::Delete,
            ..compact_config()
        },
        0,
    )
    .unwrap();
    let w = fill(&plain, 300, 5, 1_000);
    plain.roll().unwrap();
    assert!(plain.cleanable(1 << 40).is_none());
    assert_eq!(plain.clean(1 << 40, 1 << 20).unwrap().records_removed, 0);
    assert_eq!(scan(&plain).len(), w.len());
}

#[test]
fn stop_cleaning_ends_passes_and_keeps_the_log_whole() {
    let storage = FaultStorage::new();
    let log = new_log(&storage, compact_config());
    let written = fill(&log, 900, 10, 1_000);
    log.roll().unwrap();
    log.stop_cleaning();
    assert!(log.cleanable(2_000).is_none());
    let stats = log.clean(2_000, 1 << 20).unwrap();
    assert!(stats.stopped);
    assert_eq!(stats.records_removed, 0);
    assert_eq!(scan(&log).len(), written.len());
}

#[test]
fn a_crash_at_every_step_of_a_pass_leaves_a_whole_log() {
    // Build a log to clean, closed cleanly, as a template.
    let template = FaultStorage::new();
    let written = {
        let log = new_log(&template, compact_config());
        let mut w = fill(&log, 450, 12, 1_000);
        let o = log.log_end_offset();
        put(&log, &[("k2".into(), None)], 1_500);
        w.insert(o, ("k2".into(), None));
        log.roll().unwrap();
        log.close().unwrap();
        w
    };
    let mut step = 0u64;
    let mut crashed = 0;
    loop {
        assert!(step < 5_000, "the pass never finished");
        let storage = template.clone_deep();
        let log = new_log(&storage, compact_config());
        storage.fail_after_changes(Some(step));
        let finished = log.clean(2_000, 1 << 20).is_ok();
        storage.fail_after_changes(None);
        drop(log);
        storage.crash();
        let log = new_log(&storage, compact_config());
        check(&log, &written);
        // The recovered log cleans to the same result as an uninterrupted pass.
        log.clean(2_000, 1 << 20).unwrap();
        let seen = check(&log, &written);
        assert_eq!(seen.len(), 12, "step {step}");
        assert!(!storage.exists(&dir().join(weir_log::CLEANER_SWAP_FILE)));
        if finished {
            break;
        }
        crashed += 1;
        step += 1;
    }
    assert!(crashed > 10, "only {crashed} steps");
}

#[test]
fn compact_delete_also_applies_retention_and_control_batches_stay_whole() {
    let storage = FaultStorage::new();
    let cfg = LogConfig {
        cleanup_policy: CleanupPolicy::CompactDelete,
        retention_ms: Some(10_000),
        ..compact_config()
    };
    let log = new_log(&storage, cfg);
    let mut written = fill(&log, 600, 10, 1_000);
    // A transaction marker (a control batch) whose key a later record
    // shares: the cleaner never looks inside it.
    let marker_offset = log.log_end_offset();
    let mut marker = batch::encode_batch(&[Record {
        timestamp: 50_000,
        key: Some(vec![0, 0, 0, 1]),
        value: Some(vec![0, 0, 0, 0, 0, 0]),
        headers: vec![],
    }]);
    let attributes = i16::from_be_bytes([marker[21], marker[22]]) | 0x30;
    marker[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch::reseal_crc(&mut marker);
    log.append(&mut marker, 50_000).unwrap();
    let newer = fill(&log, 300, 10, 50_000);
    written.extend(newer.clone());
    log.roll().unwrap();
    log.clean(60_000, 1 << 20).unwrap();
    let r = log.read(marker_offset, 1).unwrap();
    let header = weir_log::batch::BatchHeader::parse(&r.records).unwrap();
    assert!(header.is_control(), "the marker is kept");
    assert_eq!(header.base_offset as u64, marker_offset);
    // Retention by time drops the old segments of the same log.
    let before = log.log_start_offset();
    let out = log.apply_retention(1_000 + 10_001).unwrap();
    assert!(out.segments > 0, "{out:?}");
    assert!(log.log_start_offset() > before);
    // What is left is still compacted: one record per key among the newer
    // updates (the marker is not a record of a key here).
    let seen: Vec<Entry> = {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let r = log.read(offset, 1 << 20).unwrap();
            for b in batches(&r.records) {
                let h = weir_log::batch::BatchHeader::parse(b).unwrap();
                if h.is_control() {
                    continue;
                }
                for (o, rec) in batch::decode_records(b).unwrap() {
                    out.push((
                        o as u64,
                        String::from_utf8(rec.key.unwrap()).unwrap(),
                        rec.value.map(|v| String::from_utf8(v).unwrap()),
                    ));
                }
            }
            offset = r.next_offset;
        }
        out
    };
    assert_eq!(seen.len(), 10, "{seen:?}");
    for (o, k, v) in &seen {
        assert_eq!(newer.get(o), Some(&(k.clone(), v.clone())));
    }
}

#[test]
fn the_throttle_hook_sees_every_byte_the_pass_reads() {
    let storage = FaultStorage::new();
    let log = new_log(&storage, compact_config());
    let written = fill(&log, 900, 30, 1_000);
    log.roll().unwrap();
    let size: u64 = log
        .segments()
        .iter()
        .filter(|s| !s.active)
        .map(|s| s.size)
        .sum();
    let mut seen = 0u64;
    let mut calls = 0;
    let stats = log
        .clean_throttled(2_000, 1 << 20, &mut |b| {
            seen += b;
            calls += 1;
        })
        .unwrap();
    // Mapped once and rewritten once: all of it, twice.
    assert_eq!(seen, 2 * size, "{stats:?}");
    assert_eq!(calls, 2 * 300);
    check(&log, &written);
}

#[test]
fn a_map_that_fills_inside_a_batch_never_brings_a_deleted_key_back() {
    let storage = FaultStorage::new();
    let cfg = LogConfig {
        delete_retention_ms: 0,
        segment_bytes: 1 << 20,
        ..compact_config()
    };
    let log = new_log(&storage, cfg);
    let mut written = BTreeMap::new();
    // 100 keys, then one batch: 200 other keys and deletes of the 100.
    let first: Vec<(String, Option<String>)> = (0..100)
        .map(|k| (format!("k{k}"), Some(format!("old{k}"))))
        .collect();
    put(&log, &first, 1_000);
    let mut second: Vec<(String, Option<String>)> = (100..300)
        .map(|k| (format!("k{k}"), Some(format!("v{k}"))))
        .collect();
    second.extend((0..100).map(|k| (format!("k{k}"), None)));
    put(&log, &second, 1_000);
    for (o, u) in first.into_iter().chain(second).enumerate() {
        written.insert(o as u64, u);
    }
    log.roll().unwrap();
    let end = log.log_end_offset();
    // A map of 64 keys fills inside the big batch, pass after pass; time
    // moves on so tombstones become due as soon as they are cleaned.
    let mut now = 10_000;
    for _ in 0..30 {
        let stats = log.clean(now, 64).unwrap();
        check(&log, &written);
        now += 1_000;
        if stats.first_dirty == end && !stats.map_full {
            break;
        }
    }
    for _ in 0..3 {
        log.clean(now, 64).unwrap();
        now += 1_000;
    }
    let seen = check(&log, &written);
    assert!(
        seen.iter()
            .all(|e| !e.2.as_deref().unwrap_or("").starts_with("old")),
        "an old value of a deleted key came back"
    );
}
