//! Log compaction: Kafka's log cleaner, for one partition log.
//!
//! A compacted log (`cleanup.policy` `compact` or `compact,delete`) keeps
//! at least the latest record of every key. The log is split at the
//! *first dirty offset* (kept in the `cleaner-checkpoint` file): below it
//! the log was compacted by an earlier pass, from it on nothing was. The
//! active segment, and every segment from the first one holding a record
//! younger than `min.compaction.lag.ms`, is never cleaned. One pass
//! ([`crate::Log::clean`]):
//!
//! 1. maps the dirty part (from the first dirty offset to the end of the
//!    cleanable segments): key hash -> latest offset, stopping when the map
//!    is full (`log.cleaner.dedupe.buffer.size` bounds it);
//! 2. rewrites every cleanable segment up to where the map stops, in
//!    groups of consecutive segments that fit one segment, keeping a
//!    record unless the map knows a later offset for its key. Tombstones
//!    (null values) that are the latest of their key are kept until
//!    `delete.retention.ms` after the pass that first compacted them (the
//!    checkpoint remembers when each stretch of offsets was first
//!    cleaned); keyless records in a compacted log are dropped, as Kafka
//!    does; control batches are kept whole. A batch keeps its header
//!    (offsets, timestamps, producer fields), so offsets are never reused
//!    and an idempotent producer's state replays the same. A batch left
//!    with no record goes, except the last of a group, which stays as an
//!    empty batch (as Kafka's do) so the group ends where it ended;
//! 3. swaps each group in crash-safely: the new segment is written as
//!    `<base>.log.cleaned` (and its indexes), synced, then a `cleaner-swap`
//!    file naming the group is written atomically, the `.cleaned` files are
//!    renamed over the first segment's, the group's other segments are
//!    removed and the swap file is removed. Opening a log finishes a swap
//!    whose swap file exists ([`finish_swap`]) and otherwise discards
//!    `.cleaned` files, so a kill -9 at any step leaves the old segments or
//!    the new one, never a mix;
//! 4. moves the first dirty offset to where the map stopped.
//!
//! Readers are never blocked while a pass reads and writes; appends wait
//! only for the renames of each swap.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{debug, warn};

use crate::batch::{self, BatchHeader, BatchInfo, Filtered, KeyedRecord};
use crate::config::{CleanupPolicy, LogConfig};
use crate::error::{LogError, Result};
use crate::log::{Log, State};
use crate::segment::{self, OpenMode, Segment};
use crate::storage::{Storage, StorageFile};

/// Text file holding the first dirty offset and when each stretch of
/// offsets was first cleaned.
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-checkpoint";
/// Text file naming a swap in progress: the new segment's base, then the
/// bases of the segments it replaces.
pub const CLEANER_SWAP_FILE: &str = "cleaner-swap";
/// Suffix of a cleaned segment's files before the swap.
const CLEANED: &str = ".cleaned";
/// Bytes one offset-map entry takes, with the hash table's overhead.
pub const MAP_ENTRY_BYTES: u64 = 32;
/// Output bytes gathered before they are appended to the new segment.
const WRITE_CHUNK: usize = 1 << 20;

/// Why a log is worth cleaning now ([`Log::cleanable`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleanable {
    /// Bytes of the cleanable segments from the first dirty offset on.
    pub dirty_bytes: u64,
    /// Bytes of all cleanable segments.
    pub cleanable_bytes: u64,
    /// `dirty_bytes / cleanable_bytes`.
    pub dirty_ratio: f64,
    /// Due whatever the ratio: `max.compaction.lag.ms` passed for dirty
    /// data, or retained tombstones reached `delete.retention.ms`.
    pub urgent: bool,
}

/// What one cleaning pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Bytes of the segments rewritten.
    pub bytes_read: u64,
    /// Bytes of the segments that replaced them.
    pub bytes_written: u64,
    /// Records read while rewriting.
    pub records_read: u64,
    /// Records removed (superseded, tombstones past their time, keyless).
    pub records_removed: u64,
    /// Of those, tombstones.
    pub tombstones_removed: u64,
    /// Segments before and after the rewrite.
    pub segments_before: usize,
    /// See `segments_before`.
    pub segments_after: usize,
    /// Keys in the offset map.
    pub map_entries: usize,
    /// The map filled before the end of the dirty part (the next pass
    /// goes on from where this one stopped).
    pub map_full: bool,
    /// The first dirty offset afterwards.
    pub first_dirty: u64,
    /// The pass ended early: [`Log::stop_cleaning`] was called, or the
    /// segments changed under it (retention, DeleteRecords).
    pub stopped: bool,
}

/// The cleaner's memory of a log: where the dirty part starts and when
/// each stretch of offsets was first cleaned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub first_dirty: u64,
    /// (end offset, time): the offsets below `end` (and at or above the
    /// previous entry's end) were first cleaned by `time` at the latest.
    /// Both increase down the list.
    pub passes: Vec<(u64, i64)>,
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut s = format!("0\n{}\n", self.first_dirty);
        for (end, time) in &self.passes {
            s.push_str(&format!("{end} {time}\n"));
        }
        s.into_bytes()
    }

    fn decode(data: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(data).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "0" {
            return None;
        }
        let first_dirty = lines.next()?.trim().parse().ok()?;
        let mut passes = Vec::new();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let (end, time) = line.trim().split_once(' ')?;
            passes.push((end.parse().ok()?, time.parse().ok()?));
        }
        Some(Self {
            first_dirty,
            passes,
        })
    }

    /// When `offset` was first cleaned, if it was.
    fn cleaned_at(&self, offset: u64) -> Option<i64> {
        self.passes
            .iter()
            .find(|(end, _)| *end > offset)
            .map(|&(_, time)| time)
    }

    /// Records a pass that cleaned everything below `end` at `now_ms`.
    /// Entries closer together than a 64th of the tombstone retention are
    /// merged into the later one (which only makes tombstones stay
    /// longer), and entries whose tombstones are all due are merged into
    /// one, so the list stays short.
    fn record_pass(&mut self, end: u64, now_ms: i64, retention_ms: i64) {
        let close = (retention_ms / 64).max(1);
        match self.passes.last_mut() {
            Some(last) if last.0 >= end => {}
            Some(last) if now_ms.saturating_sub(last.1) < close => *last = (end, now_ms),
            _ => self.passes.push((end, now_ms)),
        }
        let due = self
            .passes
            .iter()
            .filter(|(_, t)| now_ms.saturating_sub(*t) >= retention_ms)
            .count();
        if due > 1 {
            self.passes.drain(..due - 1);
        }
    }
}

/// The cleaner's per-log state, behind `Log::cleaner` (which also keeps
/// two passes over one log from running at once).
#[derive(Debug, Default)]
pub(crate) struct CleanerState {
    pub checkpoint: Option<Checkpoint>,
    /// When the earliest retained tombstone reaches `delete.retention.ms`.
    pub tombstones_due_ms: Option<i64>,
}

/// A key's identity in the offset map: 128 bits of two differently seeded
/// SipHashes, so two keys collide with negligible probability.
fn key_hash(key: &[u8]) -> u128 {
    let mut a = DefaultHasher::new();
    a.write(key);
    let mut b = DefaultHasher::new();
    b.write_u8(0xa5);
    b.write(key);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Key hash -> the latest offset of that key in the mapped range.
struct OffsetMap {
    map: HashMap<u128, u64>,
    capacity: usize,
}

impl OffsetMap {
    /// Whether the record was mapped (false: the map is full).
    fn put(&mut self, key: &[u8], offset: u64) -> bool {
        let h = key_hash(key);
        if self.map.len() >= self.capacity && !self.map.contains_key(&h) {
            return false;
        }
        self.map.insert(h, offset);
        true
    }
    fn latest(&self, key: &[u8]) -> Option<u64> {
        self.map.get(&key_hash(key)).copied()
    }
}

/// A sealed segment as a pass sees it, read without the state lock.
#[derive(Clone)]
struct SegRef {
    base: u64,
    next: u64,
    size: u64,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
}

/// What a pass may touch, taken under the state lock.
struct Plan {
    config: LogConfig,
    /// The cleanable segments, oldest first.
    segments: Vec<SegRef>,
    first_dirty: u64,
}

fn compacted(cfg: &LogConfig) -> bool {
    cfg.cleanup_policy != CleanupPolicy::Delete
}

/// The cleanable segments: sealed, up to the first whose newest record is
/// younger than `min.compaction.lag.ms`.
fn cleanable_segments(st: &State, now_ms: i64) -> Vec<SegRef> {
    let lag = st.config.min_compaction_lag_ms;
    let sealed = &st.segments[..st.segments.len() - 1];
    sealed
        .iter()
        .take_while(|s| {
            lag == 0 || s.max_timestamp < 0 || now_ms.saturating_sub(s.max_timestamp) >= lag
        })
        .map(|s| SegRef {
            base: s.base_offset,
            next: s.next_offset,
            size: s.size,
            path: s.log_path.clone(),
            file: s.log.clone(),
        })
        .collect()
}

/// A small file's bytes; `None` when it does not exist. A read error is
/// an error (never taken for "absent").
pub(crate) fn read_file(storage: &dyn Storage, path: &Path) -> Result<Option<Vec<u8>>> {
    if !storage.exists(path) {
        return Ok(None);
    }
    let io = |e| LogError::io(path, e);
    let f = storage.open(path, false).map_err(io)?;
    let len = f.len().map_err(io)?;
    if len > 16 << 20 {
        return Err(LogError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "larger than 16 MiB"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, 0).map_err(io)?;
    Ok(Some(buf))
}

/// At open, before the segments are listed: finishes a swap whose swap
/// file was written (renames what is left of the `.cleaned` files into
/// place, removes the replaced segments), then removes every other
/// `.cleaned` file. Idempotent, so a crash during it is harmless too.
pub(crate) fn finish_swap(storage: &dyn Storage, dir: &Path) -> Result<()> {
    let swap = dir.join(CLEANER_SWAP_FILE);
    if let Some(data) = read_file(storage, &swap)? {
        let text = String::from_utf8_lossy(&data);
        let mut numbers = text.split_whitespace().map(str::parse::<u64>);
        if let Some(Ok(base)) = numbers.next() {
            for ext in ["index", "timeindex", "log"] {
                let from = dir.join(segment::file_name(base, ext) + CLEANED);
                if storage.exists(&from) {
                    let to = dir.join(segment::file_name(base, ext));
                    storage
                        .rename(&from, &to)
                        .map_err(|e| LogError::io(&to, e))?;
                }
            }
            for gone in numbers.flatten() {
                for ext in ["log", "index", "timeindex", "snapshot"] {
                    let p = dir.join(segment::file_name(gone, ext));
                    if storage.exists(&p) {
                        storage.remove(&p).map_err(|e| LogError::io(&p, e))?;
                    }
                }
            }
            warn!(dir = %dir.display(), base, "finished a log-cleaner swap interrupted by a crash");
        }
        storage.sync_dir(dir).map_err(|e| LogError::io(dir, e))?;
        storage.remove(&swap).map_err(|e| LogError::io(&swap, e))?;
    }
    let names = storage.list(dir).map_err(|e| LogError::io(dir, e))?;
    for n in names.iter().filter(|n| n.ends_with(CLEANED)) {
        let p = dir.join(n);
        storage.remove(&p).map_err(|e| LogError::io(&p, e))?;
    }
    storage.sync_dir(dir).map_err(|e| LogError::io(dir, e))
}

/// Groups of consecutive segments (indexes into `segs`) that fit one
/// segment of `max_bytes` and 2^32 offsets.
fn groups(segs: &[SegRef], max_bytes: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < segs.len() {
        let mut end = start + 1;
        let mut bytes = segs[start].size;
        while end < segs.len()
            && bytes + segs[end].size <= max_bytes
            && segs[end].next - segs[start].base <= u64::from(u32::MAX)
        {
            bytes += segs[end].size;
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

impl Log {
    /// Stops cleaning this log for good: a running pass ends at its next
    /// batch or swap, leaving the log whole, and no pass starts again (a
    /// topic being deleted, a log being closed).
    ///
    /// Waits for a running pass to end, so the caller may remove the
    /// directory afterwards.
    pub fn stop_cleaning(&self) {
        self.cleaning_stopped
            .store(true, std::sync::atomic::Ordering::Release);
        drop(crate::log::lock(&self.cleaner));
    }

    fn cleaning_stopped(&self) -> bool {
        self.cleaning_stopped
            .load(std::sync::atomic::Ordering::Acquire)
            || self.failed.load(std::sync::atomic::Ordering::Acquire)
    }

    fn load_checkpoint(&self, cs: &mut CleanerState) -> Checkpoint {
        if let Some(c) = &cs.checkpoint {
            return c.clone();
        }
        let path = self.dir.join(CLEANER_CHECKPOINT_FILE);
        let c = read_file(&*self.storage, &path)
            .unwrap_or_else(|e| {
                warn!(error = %e, "cleaner checkpoint unreadable; the whole log counts as dirty");
                None
            })
            .map(|d| {
                Checkpoint::decode(&d).unwrap_or_else(|| {
                    warn!(path = %path.display(), "unreadable cleaner checkpoint; the whole log counts as dirty");
                    Checkpoint::default()
                })
            })
            .unwrap_or_default();
        cs.checkpoint = Some(c.clone());
        c
    }

    /// Whether the log is worth a cleaning pass at `now_ms`, and how dirty
    /// it is: a compacted log whose cleanable segments are at least
    /// `min.cleanable.dirty.ratio` dirty, or any dirty bytes once
    /// `max.compaction.lag.ms` passed for the oldest of them, or retained
    /// tombstones that reached `delete.retention.ms`. `None` otherwise.
    pub fn cleanable(&self, now_ms: i64) -> Option<Cleanable> {
        if self.cleaning_stopped() {
            return None;
        }
        let mut cs = self.cleaner.try_lock().ok()?; // a pass is running
        let checkpoint = self.load_checkpoint(&mut cs);
        let st = crate::log::read_lock(&self.state);
        if !compacted(&st.config) {
            return None;
        }
        let segs = cleanable_segments(&st, now_ms);
        let cleanable_bytes: u64 = segs.iter().map(|s| s.size).sum();
        let dirty: Vec<&SegRef> = segs
            .iter()
            .filter(|s| s.next > checkpoint.first_dirty)
            .collect();
        let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
        let by_lag = st.config.max_compaction_lag_ms.is_some_and(|lag| {
            dirty.first().is_some_and(|s| {
                st.segments
                    .iter()
                    .find(|seg| seg.base_offset == s.base)
                    .and_then(|seg| {
                        seg.locate(checkpoint.first_dirty.max(s.base), seg.size)
                            .ok()
                            .flatten()
                    })
                    .is_some_and(|(_, h, _)| {
                        h.max_timestamp >= 0 && now_ms.saturating_sub(h.max_timestamp) >= lag
                    })
            })
        });
        let tombstones = cs.tombstones_due_ms.is_some_and(|t| now_ms >= t) && cleanable_bytes > 0;
        let ratio = if cleanable_bytes == 0 {
            0.0
        } else {
            dirty_bytes as f64 / cleanable_bytes as f64
        };
        let min_ratio = f64::from(st.config.min_cleanable_dirty_ratio_ppm) / 1e6;
        let by_ratio = dirty_bytes > 0 && ratio >= min_ratio;
        let urgent = (by_lag && dirty_bytes > 0) || tombstones;
        (by_ratio || urgent).then_some(Cleanable {
            dirty_bytes,
            cleanable_bytes,
            dirty_ratio: ratio,
            urgent,
        })
    }

    /// One cleaning pass (see the module docs), with an offset map of at
    /// most `map_entries` keys. Does nothing on a log that is not
    /// compacted. Safe to run beside appends, reads, retention and
    /// flushes; errors leave the log as it was (a half-written cleaned
    /// segment is removed, here or at the next open).
    pub fn clean(&self, now_ms: i64, map_entries: usize) -> Result<CleanStats> {
        self.clean_throttled(now_ms, map_entries, &mut |_| {})
    }

    /// [`Log::clean`], calling `throttle` with the size of every batch it
    /// reads (while mapping and while rewriting) before it goes on, so the
    /// caller can hold the pass to a rate (`log.cleaner.io.max.bytes.per.second`)
    /// by sleeping there.
    pub fn clean_throttled(
        &self,
        now_ms: i64,
        map_entries: usize,
        throttle: &mut dyn FnMut(u64),
    ) -> Result<CleanStats> {
        let mut cs = crate::log::lock(&self.cleaner);
        let mut checkpoint = self.load_checkpoint(&mut cs);
        let plan = {
            let st = crate::log::read_lock(&self.state);
            self.check_failed()?;
            let first = st.segments[0].base_offset;
            Plan {
                config: st.config.clone(),
                segments: cleanable_segments(&st, now_ms),
                first_dirty: checkpoint.first_dirty.max(first),
            }
        };
        let mut stats = CleanStats {
            first_dirty: plan.first_dirty,
            ..CleanStats::default()
        };
        if !compacted(&plan.config) || plan.segments.is_empty() || self.cleaning_stopped() {
            stats.stopped = self.cleaning_stopped();
            return Ok(stats);
        }
        // What is cleaned must be durable first: a new segment must never
        // replace records whose superseding ones a crash could still lose.
        let cleanable_end = plan.segments.last().map_or(plan.first_dirty, |s| s.next);
        self.flush_until(cleanable_end)?;
        // 1. The offset map over the dirty part.
        let mut map = OffsetMap {
            map: HashMap::new(),
            capacity: map_entries.max(1),
        };
        let mut map_end = cleanable_end.max(plan.first_dirty);
        'map: for seg in plan.segments.iter().filter(|s| s.next > plan.first_dirty) {
            let mut full_at = None;
            segment::scan_batches(&*seg.file, &seg.path, seg.size, |_, bytes| {
                if full_at.is_some() {
                    return Ok(());
                }
                throttle(bytes.len() as u64);
                let header = BatchHeader::parse(bytes).map_err(|e| corrupt(seg, e))?;
                if header.last_offset() < plan.first_dirty as i64 || header.is_control() {
                    return Ok(());
                }
                let mut unfit = None;
                batch::for_each_keyed_record(bytes, |r| {
                    if let Some(key) = r.key
                        && r.offset >= plan.first_dirty as i64
                        && unfit.is_none()
                        && !map.put(key, r.offset as u64)
                    {
                        unfit = Some(r.offset as u64);
                    }
                })
                .map_err(|e| corrupt(seg, e))?;
                // The map ends at the first record that did not fit: the
                // next pass maps from there (a record's granularity, as
                // Kafka's; the map holds at least one key, so every pass
                // progresses).
                if let Some(at) = unfit {
                    full_at = Some(at.max(plan.first_dirty.saturating_add(1)));
                }
                Ok(())
            })?;
            if let Some(at) = full_at {
                map_end = at;
                stats.map_full = true;
                break 'map;
            }
            if self.cleaning_stopped() {
                stats.stopped = true;
                return Ok(stats);
            }
        }
        stats.map_entries = map.map.len();
        // 2 and 3. Rewrite and swap, group by group, the segments that
        // start below where the map stops.
        let rewrite: Vec<SegRef> = plan
            .segments
            .iter()
            .filter(|s| s.base < map_end.max(plan.first_dirty.saturating_add(1)))
            .cloned()
            .collect();
        let retention = plan.config.delete_retention_ms;
        let mut retained_tombstone: Option<u64> = None;
        for range in groups(&rewrite, plan.config.segment_bytes) {
            if self.cleaning_stopped() {
                stats.stopped = true;
                break;
            }
            let group = &rewrite[range];
            let keep = |r: KeyedRecord<'_>, retained: &mut Option<u64>| -> (bool, bool) {
                let Some(key) = r.key else {
                    return (false, false);
                };
                let offset = r.offset as u64;
                if map.latest(key).is_some_and(|latest| latest > offset) {
                    return (false, r.tombstone);
                }
                if r.tombstone {
                    let due = checkpoint
                        .cleaned_at(offset)
                        .is_some_and(|t| now_ms.saturating_sub(t) >= retention);
                    if due {
                        return (false, true);
                    }
                    *retained = Some(retained.map_or(offset, |o: u64| o.min(offset)));
                }
                (true, false)
            };
            match self.rewrite_group(
                group,
                &plan.config,
                &mut stats,
                &keep,
                &mut retained_tombstone,
                throttle,
            )? {
                true => {}
                false => {
                    stats.stopped = true;
                    break;
                }
            }
        }
        // 4. The checkpoint (not for a log whose cleaning was stopped
        // meanwhile: it may be gone, or another log may own the directory).
        if self.cleaning_stopped() {
            stats.stopped = true;
        }
        if !stats.stopped {
            checkpoint.first_dirty = map_end;
            checkpoint.record_pass(map_end, now_ms, retention);
            checkpoint
                .passes
                .retain(|(end, _)| *end > plan.segments[0].base);
            crate::log::write_file(
                &*self.storage,
                &self.dir,
                CLEANER_CHECKPOINT_FILE,
                &checkpoint.encode(),
            )?;
            stats.first_dirty = map_end;
            cs.tombstones_due_ms = retained_tombstone.map(|o| {
                checkpoint
                    .cleaned_at(o)
                    .unwrap_or(now_ms)
                    .saturating_add(retention)
            });
            cs.checkpoint = Some(checkpoint);
        }
        debug!(dir = %self.dir.display(), ?stats, "cleaning pass done");
        Ok(stats)
    }

    /// Writes the cleaned copy of one group and swaps it in. Returns false
    /// when the pass must stop (cleaning stopped, or the group changed).
    #[allow(clippy::type_complexity)]
    fn rewrite_group(
        &self,
        group: &[SegRef],
        cfg: &LogConfig,
        stats: &mut CleanStats,
        keep: &dyn Fn(KeyedRecord<'_>, &mut Option<u64>) -> (bool, bool),
        retained: &mut Option<u64>,
        throttle: &mut dyn FnMut(u64),
    ) -> Result<bool> {
        let base = group[0].base;
        let end = group.last().map_or(base, |s| s.next);
        let st = &*self.storage;
        let mut out = Segment::create_with_suffix(st, &self.dir, base, CLEANED)?;
        let result = (|| {
            let mut pending: Vec<u8> = Vec::new();
            let mut infos: Vec<BatchInfo> = Vec::new();
            let level = |codec| cfg.compression_level(codec);
            let flush = |out: &mut Segment, pending: &mut Vec<u8>, infos: &mut Vec<BatchInfo>| {
                if pending.is_empty() {
                    return Ok::<_, LogError>(());
                }
                out.append(pending, infos, cfg.index_interval_bytes, 0)?;
                pending.clear();
                infos.clear();
                Ok(())
            };
            for (i, seg) in group.iter().enumerate() {
                let last_seg = i + 1 == group.len();
                let mut stopped = false;
                segment::scan_batches(&*seg.file, &seg.path, seg.size, |pos, bytes| {
                    if stopped {
                        return Ok(());
                    }
                    if self.cleaning_stopped() {
                        stopped = true;
                        return Ok(());
                    }
                    throttle(bytes.len() as u64);
                    let header = BatchHeader::parse(bytes).map_err(|e| corrupt(seg, e))?;
                    let codec = header.compression().map_err(|e| corrupt(seg, e))?;
                    let mut tombstones = 0u64;
                    let mut seen = 0u64;
                    let mut kept_tomb = *retained;
                    let filtered = batch::filter_records(bytes, level(codec), |r| {
                        seen += 1;
                        let (k, tomb) = keep(r, &mut kept_tomb);
                        if !k && tomb {
                            tombstones += 1;
                        }
                        k
                    })
                    .map_err(|e| corrupt(seg, e))?;
                    // The group's last batch stays, emptied if need be, so
                    // the group still ends at the offset it ended at; an
                    // emptied batch anywhere else goes.
                    let is_last = last_seg && pos + bytes.len() as u64 == seg.size;
                    let filtered = match filtered {
                        Filtered::Emptied if is_last => Filtered::Rebuilt(batch::empty_like(bytes)),
                        Filtered::Kept if header.records_count == 0 && !is_last => {
                            Filtered::Emptied
                        }
                        f => f,
                    };
                    *retained = kept_tomb;
                    stats.records_read += seen;
                    let kept: &[u8] = match &filtered {
                        Filtered::Kept => bytes,
                        Filtered::Rebuilt(b) => b,
                        Filtered::Emptied => &[],
                    };
                    let kept_records = match &filtered {
                        Filtered::Kept => header.records_count.max(0) as u64,
                        Filtered::Rebuilt(b) => BatchHeader::parse(b)
                            .map(|h| h.records_count.max(0) as u64)
                            .unwrap_or(0),
                        Filtered::Emptied => 0,
                    };
                    stats.records_removed += seen.saturating_sub(kept_records);
                    stats.tombstones_removed += tombstones;
                    if !kept.is_empty() {
                        let h = BatchHeader::parse(kept).map_err(|e| corrupt(seg, e))?;
                        infos.push(BatchInfo {
                            position: pending.len(),
                            header: h,
                            len: kept.len(),
                            record_max_timestamp: None,
                            record_min_timestamp: None,
                        });
                        pending.extend_from_slice(kept);
                        if pending.len() >= WRITE_CHUNK {
                            flush(&mut out, &mut pending, &mut infos)?;
                        }
                    }
                    Ok(())
                })?;
                if stopped {
                    return Ok(false);
                }
            }
            flush(&mut out, &mut pending, &mut infos)?;
            out.seal()?;
            out.sync_all()?;
            st.sync_dir(&self.dir)
                .map_err(|e| LogError::io(&self.dir, e))?;
            Ok(true)
        })();
        let discard = |out: &Segment| {
            for p in &out.paths()[..3] {
                let _ = st.remove(p);
            }
        };
        match result {
            Ok(true) => {}
            Ok(false) => {
                discard(&out);
                return Ok(false);
            }
            Err(e) => {
                discard(&out);
                return Err(e);
            }
        }
        let written = out.size;
        // The swap, under the state lock: the group must be as planned.
        let mut state = crate::log::write_lock(&self.state);
        let at = state.segments.iter().position(|s| s.base_offset == base);
        let unchanged = !self.cleaning_stopped()
            && at.is_some_and(|at| {
                let n = state.segments.len();
                at + group.len() < n
                    && group
                        .iter()
                        .zip(&state.segments[at..])
                        .all(|(g, s)| g.base == s.base_offset && g.next == s.next_offset)
            });
        let Some(at) = at.filter(|_| unchanged) else {
            drop(state);
            discard(&out);
            return Ok(false);
        };
        drop(out);
        let gone: Vec<u64> = group[1..].iter().map(|s| s.base).collect();
        let mut swap = base.to_string();
        for g in &gone {
            swap.push_str(&format!(" {g}"));
        }
        swap.push('\n');
        if let Err(e) = crate::log::write_file(st, &self.dir, CLEANER_SWAP_FILE, swap.as_bytes()) {
            // Whether the swap file reached the disk is unknown: a later
            // pass must not reuse its `.cleaned` names under it. The log
            // stops taking writes until reopened (the open decides).
            self.failed
                .store(true, std::sync::atomic::Ordering::Release);
            warn!(dir = %self.dir.display(), error = %e, "writing the log-cleaner swap file failed; the log stops taking writes until reopened");
            return Err(e);
        }
        // From here the swap is decided: a crash is finished by the next open.
        let done = (|| {
            for ext in ["index", "timeindex", "log"] {
                let from = self.dir.join(segment::file_name(base, ext) + CLEANED);
                let to = self.dir.join(segment::file_name(base, ext));
                st.rename(&from, &to).map_err(|e| LogError::io(&to, e))?;
            }
            for g in &gone {
                for ext in ["log", "index", "timeindex", "snapshot"] {
                    let p = self.dir.join(segment::file_name(*g, ext));
                    if st.exists(&p) {
                        st.remove(&p).map_err(|e| LogError::io(&p, e))?;
                    }
                }
            }
            st.sync_dir(&self.dir)
                .map_err(|e| LogError::io(&self.dir, e))?;
            let (seg, _) = Segment::open(
                st,
                &self.dir,
                base,
                OpenMode::Trust {
                    next_base: Some(end),
                },
                cfg.index_interval_bytes,
            )?;
            let swap = self.dir.join(CLEANER_SWAP_FILE);
            st.remove(&swap).map_err(|e| LogError::io(&swap, e))?;
            st.sync_dir(&self.dir)
                .map_err(|e| LogError::io(&self.dir, e))?;
            Ok::<_, LogError>(seg)
        })();
        match done {
            Ok(seg) => {
                stats.segments_before += group.len();
                stats.segments_after += 1;
                stats.bytes_read += group.iter().map(|s| s.size).sum::<u64>();
                stats.bytes_written += written;
                state.segments.splice(at..at + group.len(), [seg]);
                Ok(true)
            }
            Err(e) => {
                // The files on disk are half swapped: only the next open
                // (which finishes the swap) can be trusted.
                self.failed
                    .store(true, std::sync::atomic::Ordering::Release);
                warn!(dir = %self.dir.display(), error = %e, "log-cleaner swap failed; the log stops taking writes until reopened");
                Err(e)
            }
        }
    }
}

fn corrupt(seg: &SegRef, e: batch::BatchError) -> LogError {
    LogError::CorruptSegment {
        path: seg.path.clone(),
        position: 0,
        reason: format!("while cleaning: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_and_stays_short() {
        let mut c = Checkpoint::default();
        for i in 0..1000u64 {
            c.record_pass(i * 10 + 10, i as i64 * 1000, 64_000);
        }
        assert!(c.passes.len() <= 66, "{}", c.passes.len());
        let back = Checkpoint::decode(&c.encode()).unwrap();
        assert_eq!(back, c);
        // Offsets cleaned recently are not due; old ones are.
        let now = 999_000;
        let recent = c.cleaned_at(9_990).unwrap();
        assert!(now - recent < 64_000);
        let old = c.cleaned_at(5).unwrap();
        assert!(now - old >= 64_000);
        assert_eq!(c.cleaned_at(1_000_000), None);
        assert!(Checkpoint::decode(b"1\n5\n").is_none());
        assert!(Checkpoint::decode(b"0\nx\n").is_none());
    }

    #[test]
    fn merged_entries_never_make_a_tombstone_due_early() {
        // Offsets first cleaned at t must not look cleaned before t.
        let mut c = Checkpoint::default();
        let mut truth: Vec<(u64, i64)> = Vec::new();
        let mut end = 0;
        for step in 0..500i64 {
            end += (step as u64 % 7) + 1;
            let now = step * 300;
            c.record_pass(end, now, 10_000);
            truth.push((end, now));
            for o in (0..end).step_by(3) {
                let actual = truth.iter().find(|(e, _)| *e > o).unwrap().1;
                if let Some(seen) = c.cleaned_at(o) {
                    assert!(
                        seen >= actual || now - actual >= 10_000,
                        "offset {o} first cleaned at {actual}, seen as {seen}"
                    );
                }
            }
        }
    }

    #[test]
    fn keys_hash_apart() {
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
        assert_eq!(key_hash(b"k"), key_hash(b"k"));
        let mut m = OffsetMap {
            map: HashMap::new(),
            capacity: 2,
        };
        assert!(m.put(b"a", 1));
        assert!(m.put(b"b", 2));
        assert!(m.put(b"a", 3), "a known key always fits");
        assert!(!m.put(b"c", 4));
        assert_eq!(m.latest(b"a"), Some(3));
    }
}
