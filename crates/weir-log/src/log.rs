//! The partition log: an ordered list of segments, the last one active.
//!
//! Concurrency: appends, roll, retention and deletes take the state lock
//! for writing; reads take it for reading only to find where the data is,
//! then copy the bytes without holding it. `flush_until` never holds the
//! state lock while it waits for the disk: one caller syncs while the others
//! are parked, and each sync wakes exactly the waiters whose data it covered
//! plus one to lead the next sync (group commit).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tracing::{info, warn};

use crate::batch::{self, BatchHeader, TimestampType};
use crate::config::{CleanupPolicy, LogConfig};
use crate::epochs::{EpochCache, LEADER_EPOCH_FILE};
use crate::error::{LogError, Result};
use crate::producer::{Check, ProducerState, SequenceError};
use crate::segment::{self, OpenMode, Segment};
use crate::storage::{FsStorage, Storage, StorageFile};

mod replicated;

/// "No timestamp" in `oldest_unflushed_ms`.
const NONE: i64 = i64::MIN;

/// Marker written by [`Log::close`]; its presence at open means the
/// indexes and the recovery point can be trusted.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Text file holding the recovery point: every offset below it is synced.
pub const RECOVERY_POINT_FILE: &str = "recovery-point";
/// Text file holding the log start offset set by `delete_records_before`.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the first record.
    pub base_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
    /// The broker time stamped on the batches with `LogAppendTime`, else -1
    /// (what a ProduceResponse's `log_append_time_ms` carries).
    pub log_append_time_ms: i64,
    /// Log start offset after the append.
    pub log_start_offset: u64,
    /// Bytes written (0 for a duplicate).
    pub bytes: usize,
    /// The batch was written before by the same idempotent producer (a
    /// retry); the offsets are the original ones and nothing was written.
    pub duplicate: bool,
}

/// Result of a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole record batches, as stored, ready to be sent as a Fetch
    /// response's `records`.
    pub records: Vec<u8>,
    /// Offset after the last returned batch (the requested offset when
    /// nothing was returned).
    pub next_offset: u64,
    /// Log start offset at the time of the read.
    pub log_start_offset: u64,
    /// Log end offset at the time of the read.
    pub log_end_offset: u64,
}

/// What retention removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// Log start offset afterwards.
    pub log_start_offset: u64,
}

/// Public view of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// First offset.
    pub base_offset: u64,
    /// Offset after the last batch.
    pub next_offset: u64,
    /// Bytes of data.
    pub size: u64,
    /// Largest timestamp, -1 when unknown.
    pub max_timestamp: i64,
    /// Still receiving appends.
    pub active: bool,
}

pub(crate) struct State {
    pub(crate) config: LogConfig,
    /// Sorted by base offset; never empty; the last one is active.
    pub(crate) segments: Vec<Segment>,
    pub(crate) log_start_offset: u64,
    /// Idempotent-producer state as of the log end.
    producers: ProducerState,
    /// Which leader epoch started where (`leader-epoch-checkpoint`).
    pub(crate) epochs: EpochCache,
}

impl State {
    fn active(&self) -> &Segment {
        self.segments.last().expect("a log always has a segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has a segment")
    }
    fn end(&self) -> u64 {
        self.active().next_offset
    }
    fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }
    /// Index of the segment that holds `offset` (the last with base <= offset).
    fn segment_for(&self, offset: u64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }
}

/// A durable, segmented partition log storing Kafka record batches.
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) state: RwLock<State>,
    /// Every offset below this is synced to disk (the recovery point).
    flushed: AtomicU64,
    /// Group-commit state: whether a sync is running, who waits, and the
    /// last checkpoint.
    flush_lock: Mutex<FlushState>,
    /// Set after an fsync failed: the state of the disk is unknown.
    pub(crate) failed: AtomicBool,
    /// The log cleaner's state; held for the whole of a pass.
    pub(crate) cleaner: Mutex<crate::cleaner::CleanerState>,
    /// Set by `stop_cleaning`: no pass starts, a running one stops.
    pub(crate) cleaning_stopped: AtomicBool,
    leader_epoch: AtomicI32,
    /// Mirror of the log end offset, readable without the state lock.
    end_offset: AtomicU64,
    /// When unsynced data was first appended (`NONE` when all is synced),
    /// for `flush.ms`.
    oldest_unflushed_ms: AtomicI64,
    /// How long each completed sync round took (metrics, `sync_stats`).
    sync_latency: crate::metrics::Histogram,
}

/// Counters of the log's syncs (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    /// Sync rounds completed (each may fsync several files).
    pub rounds: u64,
    /// Total time spent in them.
    pub total: std::time::Duration,
}

struct FlushState {
    /// A thread is syncing; others are parked in `waiters`.
    syncing: bool,
    waiters: Vec<Waiter>,
    next_waiter: u64,
    /// Base offset of the segment holding the last checkpointed recovery point.
    checkpointed_segment: u64,
}

/// A thread parked in `Log::sync`.
struct Waiter {
    id: u64,
    need: Need,
    thread: std::thread::Thread,
}

/// What a caller of `Log::sync` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Everything below this offset synced.
    Offset(u64),
    /// The recovery point checkpointed in the active segment.
    Checkpoint { active_base: u64 },
    /// One full sync with a checkpoint, led by this caller.
    Force,
}

impl Need {
    /// Whether a sync by another thread satisfied this need.
    /// `end` is the log end now: a log cut back (a follower truncated)
    /// meets a need above its new end with that end.
    fn met(self, flushed: u64, checkpointed_segment: u64, end: u64) -> bool {
        match self {
            Need::Offset(o) => flushed >= o.min(end),
            Need::Checkpoint { active_base } => checkpointed_segment >= active_base,
            Need::Force => false,
        }
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("flushed", &self.flushed)
            .finish_non_exhaustive()
    }
}

pub(crate) fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
pub(crate) fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads a small text file holding one number. `None` when missing or unreadable.
fn read_number(storage: &dyn Storage, path: &Path) -> Option<u64> {
    if !storage.exists(path) {
        return None;
    }
    let file = storage.open(path, false).ok()?;
    let len = file.len().ok()? as usize;
    if len > 64 {
        return None;
    }
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "0" {
        return None;
    }
    lines.next()?.trim().parse().ok()
}

/// Writes a small text file holding one number, atomically and durably.
fn write_number(storage: &dyn Storage, dir: &Path, name: &str, value: u64) -> Result<()> {
    write_file(storage, dir, name, format!("0\n{value}\n").as_bytes())
}

/// The leader-epoch cache at open: the checkpoint, or rebuilt from the
/// batch headers when it is missing or unreadable (a log written before
/// epochs were kept), cut back to the recovered end.
fn open_epochs(
    storage: &dyn Storage,
    dir: &Path,
    segments: &[Segment],
    end: u64,
) -> Result<EpochCache> {
    let path = dir.join(LEADER_EPOCH_FILE);
    let stored = crate::cleaner::read_file(storage, &path)?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| EpochCache::decode(&t));
    let (mut epochs, write) = match stored {
        Some(c) => (c, false),
        None => {
            let mut c = EpochCache::default();
            let mut header = [0u8; batch::HEADER_LEN];
            for seg in segments {
                let mut pos = 0u64;
                while pos + batch::HEADER_LEN as u64 <= seg.size {
                    seg.log
                        .read_exact_at(&mut header, pos)
                        .map_err(|e| LogError::io(&seg.log_path, e))?;
                    let Ok(h) = BatchHeader::parse(&header) else {
                        break;
                    };
                    c.assign(h.partition_leader_epoch, h.base_offset.max(0) as u64);
                    let Some(len) = h.total_len() else { break };
                    pos += len as u64;
                }
            }
            (c, end > 0)
        }
    };
    if epochs.truncate_to(end) || write {
        write_file(storage, dir, LEADER_EPOCH_FILE, epochs.encode().as_bytes())?;
    }
    Ok(epochs)
}

/// Writes a file atomically and durably: temp file, fsync, rename,
/// directory fsync.
pub(crate) fn write_file(storage: &dyn Storage, dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let file = storage
        .open(&tmp, true)
        .map_err(|e| LogError::io(&tmp, e))?;
    let written = file
        .set_len(0)
        .and_then(|()| file.write_all_at(data, 0))
        .and_then(|()| file.sync_data());
    if let Err(e) = written {
        let _ = storage.remove(&tmp);
        return Err(LogError::io(&tmp, e));
    }
    storage
        .rename(&tmp, &path)
        .map_err(|e| LogError::io(&path, e))?;
    storage.sync_dir(dir).map_err(|e| LogError::io(dir, e))
}

/// Checks the batches of one append against the producer state. Returns
/// the original offsets when the append is a single batch already written.
fn check_sequences(
    state: &ProducerState,
    batches: &[batch::BatchInfo],
) -> Result<Option<(u64, u64)>> {
    if let [only] = batches {
        return match state.check(&only.header)? {
            Check::Append => Ok(None),
            Check::Duplicate {
                first_offset,
                last_offset,
            } => Ok(Some((first_offset, last_offset))),
        };
    }
    // Several batches: each must follow the ones before it in this append.
    let mut scratch: Option<ProducerState> = None;
    for b in batches.iter().filter(|b| b.header.producer_id >= 0) {
        let s = scratch.get_or_insert_with(|| state.clone());
        match s.check(&b.header)? {
            Check::Append => s.record(&b.header),
            Check::Duplicate { .. } => {
                return Err(SequenceError::DuplicateInRequest {
                    producer_id: b.header.producer_id,
                    sequence: b.header.base_sequence,
                }
                .into());
            }
        }
    }
    Ok(None)
}

/// Rebuilds the idempotent-producer state: the newest readable snapshot
/// at or below the log end (written at each roll, as of its segment's
/// first offset, and at a clean close, as of the log end), then every batch
/// header after it. Without any snapshot, every segment is replayed.
/// Snapshots that are not at a segment's base are removed afterwards.
fn rebuild_producers(
    storage: &dyn Storage,
    dir: &Path,
    names: &[String],
    segments: &[Segment],
) -> Result<ProducerState> {
    let end = segments.last().map_or(0, |s| s.next_offset);
    let mut snapshots: Vec<u64> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".snapshot")?.parse().ok())
        .collect();
    snapshots.sort_unstable();
    let mut from = 0;
    let mut state = ProducerState::default();
    for &offset in snapshots.iter().rev().filter(|&&o| o <= end) {
        let path = dir.join(segment::file_name(offset, "snapshot"));
        let read = storage.open(&path, false).and_then(|f| {
            let mut buf = vec![0u8; f.len()? as usize];
            f.read_exact_at(&mut buf, 0)?;
            Ok(buf)
        });
        match read.ok().and_then(|data| ProducerState::decode(&data)) {
            Some(s) => {
                state = s;
                from = offset;
                break;
            }
            None => {
                warn!(path = %path.display(), "unreadable producer-state snapshot; replaying further back")
            }
        }
    }
    for seg in segments.iter().filter(|s| s.next_offset > from) {
        seg.for_each_header(|h| {
            if h.base_offset as u64 >= from {
                state.record(h);
            }
        })?;
    }
    for offset in snapshots {
        if !segments.iter().any(|s| s.base_offset == offset) {
            let _ = storage.remove(&dir.join(segment::file_name(offset, "snapshot")));
        }
    }
    Ok(state)
}

impl Log {
    /// Opens (or creates) the log in `dir` on the real file system.
    pub fn open_dir(dir: impl Into<PathBuf>, config: LogConfig, now_ms: i64) -> Result<Self> {
        Self::open(Arc::new(FsStorage), dir, config, now_ms)
    }

    /// Opens (or creates) the log in `dir`. After a clean shutdown only the
    /// tail of the active segment is read. After a crash every segment from
    /// the recovery point on is validated batch by batch, a torn or corrupt
    /// tail is cut at the last whole batch (later segments are dropped), and
    /// indexes are rebuilt; what was cut is logged.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: impl Into<PathBuf>,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self> {
        let dir = dir.into();
        let st = &*storage;
        st.create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        // A cleaning pass killed mid-swap is finished first.
        crate::cleaner::finish_swap(st, &dir)?;
        let names = st.list(&dir).map_err(|e| LogError::io(&dir, e))?;
        let mut bases: Vec<u64> = names
            .iter()
            .filter_map(|n| segment::parse_log_name(n))
            .collect();
        bases.sort_unstable();
        for n in names.iter().filter(|n| n.ends_with(".tmp")) {
            let _ = st.remove(&dir.join(n));
        }

        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let marked = st.exists(&marker);
        // A new log has nothing to recover.
        let clean = marked || bases.is_empty();
        if marked {
            // From here on a crash must be seen as unclean.
            st.remove(&marker).map_err(|e| LogError::io(&marker, e))?;
            st.sync_dir(&dir).map_err(|e| LogError::io(&dir, e))?;
        }
        let saved_start = read_number(st, &dir.join(LOG_START_OFFSET_FILE));
        let recovery_point = read_number(st, &dir.join(RECOVERY_POINT_FILE));
        if !clean && recovery_point.is_none() && !bases.is_empty() {
            warn!(dir = %dir.display(), "no recovery point: validating every segment");
        }
        let interval = config.index_interval_bytes;

        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        // Segments at or after this index are validated batch by batch.
        let recover_from = if clean {
            bases.len()
        } else {
            let rp = recovery_point.unwrap_or(0);
            bases.partition_point(|&b| b <= rp).saturating_sub(1)
        };
        let mut dropped_from = None;
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let mode = if i >= recover_from {
                OpenMode::Recover { active: last }
            } else {
                OpenMode::Trust {
                    next_base: bases.get(i + 1).copied(),
                }
            };
            let (seg, cut) = Segment::open(st, &dir, base, mode, interval)?;
            if let Some(prev) = segments.last()
                && prev.next_offset != seg.base_offset
            {
                warn!(dir = %dir.display(), expected = prev.next_offset, found = seg.base_offset, "offset gap between segments: dropping the later segments");
                dropped_from = Some(i);
                break;
            }
            let truncated = cut.is_some();
            if let Some(cut) = cut {
                warn!(segment = %seg.log_path.display(), position = cut.position, bytes = cut.bytes, reason = %cut.reason, "recovery cut the segment's tail");
            }
            segments.push(seg);
            if truncated && !last {
                dropped_from = Some(i + 1);
                break;
            }
        }
        if let Some(from) = dropped_from {
            for &base in &bases[from..] {
                warn!(dir = %dir.display(), base, "removing segment after the recovered end of the log");
                for ext in ["log", "index", "timeindex", "snapshot"] {
                    let p = dir.join(segment::file_name(base, ext));
                    st.remove(&p).map_err(|e| LogError::io(&p, e))?;
                }
            }
            // The last kept segment becomes active again.
            if let Some(last) = segments.last_mut() {
                let base = last.base_offset;
                let (seg, _) =
                    Segment::open(st, &dir, base, OpenMode::Recover { active: true }, interval)?;
                *last = seg;
            }
        }
        if segments.is_empty() {
            let base = saved_start.unwrap_or(0);
            segments.push(Segment::create(st, &dir, base)?);
        }
        st.sync_dir(&dir).map_err(|e| LogError::io(&dir, e))?;
        if let Some(active) = segments.last_mut()
            && active.size > 0
        {
            active.roll_base_ms = Some(now_ms);
        }

        let first_base = segments[0].base_offset;
        let producers = rebuild_producers(st, &dir, &names, &segments)?;
        let end = segments.last().map_or(0, |s| s.next_offset);
        let epochs = open_epochs(st, &dir, &segments, end)?;
        let log_start_offset = saved_start.unwrap_or(0).max(first_base).min(end);
        let flushed = if clean {
            end
        } else {
            recovery_point.unwrap_or(0).min(end)
        };
        let checkpointed_segment = segments[segments
            .partition_point(|s| s.base_offset <= flushed)
            .saturating_sub(1)]
        .base_offset;
        let log = Self {
            dir,
            storage,
            state: RwLock::new(State {
                config,
                segments,
                log_start_offset,
                producers,
                epochs,
            }),
            flushed: AtomicU64::new(flushed),
            flush_lock: Mutex::new(FlushState {
                syncing: false,
                waiters: Vec::new(),
                next_waiter: 0,
                checkpointed_segment,
            }),
            failed: AtomicBool::new(false),
            cleaner: Mutex::new(crate::cleaner::CleanerState::default()),
            cleaning_stopped: AtomicBool::new(false),
            leader_epoch: AtomicI32::new(0),
            end_offset: AtomicU64::new(end),
            oldest_unflushed_ms: AtomicI64::new(NONE),
            sync_latency: crate::metrics::Histogram::default(),
        };
        if !clean {
            // What recovery kept is now made durable, so a second crash
            // does not have to validate it again.
            log.flush()?;
            info!(dir = %log.dir.display(), end, "log recovered");
        }
        Ok(log)
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// OffsetForLeaderEpoch: the largest epoch of this log not above
    /// `epoch` and the offset where the next one starts (the log end for
    /// the latest); `None` when every epoch here is larger, or none is
    /// known.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, u64)> {
        let st = read_lock(&self.state);
        st.epochs.end_offset_for(epoch, st.end())
    }

    /// The leader epochs of this log and the offsets they start at.
    pub fn epochs(&self) -> Vec<(i32, u64)> {
        read_lock(&self.state).epochs.entries().to_vec()
    }

    /// Sets the leader epoch stamped on appended batches.
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.store(epoch, Ordering::Relaxed);
    }

    /// Current configuration.
    pub fn config(&self) -> LogConfig {
        read_lock(&self.state).config.clone()
    }

    /// Replaces the configuration (AlterConfigs); takes effect on the next
    /// append, roll or retention pass.
    pub fn set_config(&self, config: LogConfig) {
        write_lock(&self.state).config = config;
    }

    /// Stops the log for good before its directory is removed (its topic
    /// was deleted): a running cleaning pass ends, an append or a sync in
    /// progress finishes, and every later append, sync, roll, retention
    /// pass or close fails with `Failed`, so nothing is written into a
    /// directory re-created under the same name.
    pub fn retire(&self) {
        self.stop_cleaning();
        drop(write_lock(&self.state));
        self.failed.store(true, Ordering::Release);
        // Taken one after the other, never nested (a sync may hold this
        // one while it reads the state).
        drop(write_lock(&self.state));
        drop(lock(&self.flush_lock));
    }

    pub(crate) fn check_failed(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(LogError::Failed {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Validates and appends one or more record batches (a produce
    /// request's `records` for this partition). Every batch is checked
    /// (magic 2, lengths, CRC-32C, record count vs last offset delta, the
    /// records of uncompressed batches, `max.message.bytes`) before any
    /// byte is written; a bad input is rejected whole. Offsets are assigned
    /// by patching base offsets in `records`, which then holds exactly what
    /// was stored. Returns once the bytes are written to the OS; call
    /// [`Log::flush_until`] to wait for the disk.
    pub fn append(&self, records: &mut [u8], now_ms: i64) -> Result<AppendInfo> {
        let mut batches = batch::check_batches(records)
            .map_err(|(position, source)| LogError::CorruptBatch { position, source })?;
        // compression.type names a codec: batches in another one are
        // stored recompressed (their records' bytes unchanged).
        let codec = read_lock(&self.state).config.compression;
        let mut recompressed;
        let records: &mut [u8] = match codec {
            Some(codec)
                if batches
                    .iter()
                    .any(|b| b.header.compression().ok() != Some(codec)) =>
            {
                let level = read_lock(&self.state).config.compression_level(codec);
                recompressed = Vec::with_capacity(records.len());
                for b in &batches {
                    let bytes = &records[b.position..b.position + b.len];
                    let out = batch::recompress(bytes, codec, level).map_err(|source| {
                        LogError::CorruptBatch {
                            position: b.position,
                            source,
                        }
                    })?;
                    recompressed.extend_from_slice(&out);
                }
                batches = batch::check_batches(&recompressed)
                    .map_err(|(position, source)| LogError::CorruptBatch { position, source })?;
                &mut recompressed
            }
            _ => records,
        };
        let epoch = self.leader_epoch.load(Ordering::Relaxed);
        let offsets: u64 = batches.iter().map(|b| b.offset_count()).sum();
        // Relative offsets in a segment are 32-bit: one append must fit an
        // empty segment. Only compressed batches can claim this many.
        if offsets > u64::from(u32::MAX) {
            return Err(LogError::CorruptBatch {
                position: 0,
                source: batch::BatchError::TooManyOffsets { offsets },
            });
        }

        let mut st = write_lock(&self.state);
        self.check_failed()?;
        let max = st.config.max_message_bytes;
        if let Some(big) = batches.iter().find(|b| b.len > max) {
            return Err(LogError::BatchTooLarge { size: big.len, max });
        }
        check_records(&st.config, records, &batches, now_ms)?;
        // Idempotent producers: a retried batch is answered with its
        // original offsets, a gap or an old epoch is refused; nothing is
        // written in either case.
        if let Some((first, last)) = check_sequences(&st.producers, &batches)? {
            return Ok(AppendInfo {
                base_offset: first,
                last_offset: last,
                log_append_time_ms: -1,
                log_start_offset: st.log_start_offset,
                bytes: 0,
                duplicate: true,
            });
        }
        self.maybe_roll(&mut st, records.len() as u64, offsets, now_ms)?;
        let log_append = st.config.message_timestamp_type == TimestampType::LogAppendTime;
        let base_offset = st.end();
        if st.epochs.latest().is_none_or(|l| l < epoch) {
            // A new epoch starts here: recorded before its first batch is
            // written (a crash in between is cut back at the next open).
            let mut next_epochs = st.epochs.clone();
            next_epochs.assign(epoch, base_offset);
            write_file(
                &*self.storage,
                &self.dir,
                LEADER_EPOCH_FILE,
                next_epochs.encode().as_bytes(),
            )?;
            st.epochs = next_epochs;
        }
        let mut next = base_offset;
        for b in &mut batches {
            let bytes = &mut records[b.position..b.position + b.len];
            batch::set_base_offset(bytes, next as i64);
            batch::set_partition_leader_epoch(bytes, epoch);
            if log_append {
                batch::set_log_append_time(bytes, now_ms);
            } else if let Some(max) = b.record_max_timestamp
                && max != b.header.max_timestamp
            {
                // The header's maxTimestamp drives retention and time
                // lookups: take the records' word for it, as Kafka does.
                batch::set_max_timestamp(bytes, max);
            }
            b.header = BatchHeader::parse(bytes).map_err(|source| LogError::CorruptBatch {
                position: b.position,
                source,
            })?;
            next += b.offset_count();
        }
        self.write_batches(&mut st, records, &batches, next, now_ms)?;
        let info = AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time_ms: if log_append { now_ms } else { -1 },
            log_start_offset: st.log_start_offset,
            bytes: records.len(),
            duplicate: false,
        };
        let flush_by_count = st
            .config
            .flush_messages
            .is_some_and(|n| next - self.flushed.load(Ordering::Acquire) >= n);
        drop(st);
        if flush_by_count {
            self.flush_until(next)?;
        }
        Ok(info)
    }

    /// Writes checked batches at the active segment's end, follows their
    /// producers, and publishes `next` as the log end.
    fn write_batches(
        &self,
        st: &mut State,
        records: &[u8],
        batches: &[batch::BatchInfo],
        next: u64,
        now_ms: i64,
    ) -> Result<()> {
        let interval = st.config.index_interval_bytes;
        st.active_mut().append(records, batches, interval, now_ms)?;
        for b in batches {
            st.producers.record(&b.header);
        }
        // Publish the end before arming the flush.ms timer; see sync_files.
        self.end_offset.store(next, Ordering::SeqCst);
        let _ = self.oldest_unflushed_ms.compare_exchange(
            NONE,
            now_ms,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        Ok(())
    }

    /// Rolls to a new segment when the next append of `bytes` bytes and
    /// `offsets` offsets would not fit the active one.
    fn maybe_roll(&self, st: &mut State, bytes: u64, offsets: u64, now_ms: i64) -> Result<()> {
        let cfg = &st.config;
        let active = st.active();
        if active.size == 0 {
            return Ok(());
        }
        let too_big = active.size + bytes > cfg.segment_bytes.min(crate::config::MAX_SEGMENT_BYTES);
        let too_old = active
            .roll_base_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= cfg.segment_ms);
        let too_many = active.next_offset + offsets - active.base_offset > u64::from(u32::MAX);
        // A compacted log compacts nothing in its active segment: one whose
        // data passed max.compaction.lag.ms rolls so the cleaner can have it.
        let too_dirty = cfg.cleanup_policy != CleanupPolicy::Delete
            && cfg.max_compaction_lag_ms.is_some_and(|lag| {
                active
                    .roll_base_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) >= lag)
            });
        if too_big || too_old || too_many || too_dirty {
            self.roll_locked(st)?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one. The new segment's
    /// files are created first and the old segment is only marked sealed
    /// once its indexes are synced, so any failure leaves the old segment
    /// active and appendable.
    fn roll_locked(&self, st: &mut State) -> Result<()> {
        let base = st.end();
        let seg = Segment::create(&*self.storage, &self.dir, base)?;
        let undo = |e: LogError| {
            for p in seg.paths() {
                let _ = self.storage.remove(&p);
            }
            e
        };
        st.active_mut().persist_indexes().map_err(undo)?;
        if let Err(e) = st.active().sync_indexes() {
            // As for data: after a failed fsync nothing about the file can
            // be trusted, so the log stops taking writes.
            self.failed.store(true, Ordering::Release);
            return Err(undo(e));
        }
        // The producer state as of the new segment's first offset, so that
        // opening the log replays only the active segment.
        let snapshot = segment::file_name(base, "snapshot");
        write_file(&*self.storage, &self.dir, &snapshot, &st.producers.encode()).map_err(undo)?;
        st.active_mut().finish_seal();
        st.segments.push(seg);
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| LogError::io(&self.dir, e))?;
        Ok(())
    }

    /// Starts a new segment now if the active one holds data.
    pub fn roll(&self) -> Result<()> {
        let mut st = write_lock(&self.state);
        self.check_failed()?;
        if st.active().size == 0 {
            return Ok(());
        }
        self.roll_locked(&mut st)
    }

    /// Reads whole batches starting with the one holding `offset`, up to
    /// `max_bytes` but always at least one batch. An offset equal to the log
    /// end offset reads nothing; outside [log start, log end] is an error.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadResult> {
        self.read_bounded(offset, max_bytes, u64::MAX, true)
    }

    /// Like [`Log::read`], but returns no batch starting at or after
    /// `upper` (a high watermark). With `min_one` false, a first batch
    /// larger than `max_bytes` is not returned either (the read is empty):
    /// a Fetch gives the one oversized batch it may send (KIP-74) only to
    /// the first partition that has data.
    pub fn read_bounded(
        &self,
        offset: u64,
        max_bytes: usize,
        upper: u64,
        min_one: bool,
    ) -> Result<ReadResult> {
        let (file, path, pos, first_len, limit, start, end) = {
            let st = read_lock(&self.state);
            let (start, end) = (st.log_start_offset, st.end());
            if offset < start || offset > end {
                return Err(LogError::OffsetOutOfRange { offset, start, end });
            }
            let mut found = None;
            for seg in &st.segments[st.segment_for(offset)..] {
                if let Some((pos, _, len)) = seg.locate(offset, seg.size)? {
                    found = Some((seg.log.clone(), seg.log_path.clone(), pos, len, seg.size));
                    break;
                }
            }
            let Some((file, path, pos, len, limit)) = found else {
                return Ok(ReadResult {
                    records: Vec::new(),
                    next_offset: offset,
                    log_start_offset: start,
                    log_end_offset: end,
                });
            };
            if !min_one && len as u64 > max_bytes as u64 {
                return Ok(ReadResult {
                    records: Vec::new(),
                    next_offset: offset,
                    log_start_offset: start,
                    log_end_offset: end,
                });
            }
            (file, path, pos, len, limit, start, end)
        };
        // Copy outside the lock. The file handle stays valid even if
        // retention deletes the segment meanwhile.
        let want = (max_bytes as u64).clamp(first_len as u64, limit - pos) as usize;
        let mut records = vec![0u8; want];
        file.read_exact_at(&mut records, pos)
            .map_err(|e| LogError::io(&path, e))?;
        let (keep, next_offset) = whole_batches(&records, upper, offset);
        records.truncate(keep);
        Ok(ReadResult {
            records,
            next_offset,
            log_start_offset: start,
            log_end_offset: end,
        })
    }

    /// Earliest offset still held.
    pub fn log_start_offset(&self) -> u64 {
        read_lock(&self.state).log_start_offset
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> u64 {
        self.end_offset.load(Ordering::Acquire)
    }

    /// Every offset below this is synced (the recovery point).
    pub fn flushed_offset(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        read_lock(&self.state).size()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let st = read_lock(&self.state);
        let n = st.segments.len();
        st.segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentInfo {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
                max_timestamp: s.max_timestamp,
                active: i + 1 == n,
            })
            .collect()
    }

    /// The first offset whose record timestamp is at least `timestamp`, and
    /// that record's timestamp (ListOffsets by time), among the records at
    /// or after the log start offset. `None` when every record is older. Exact for uncompressed and log-append-time batches;
    /// inside a compressed create-time batch, the batch's first offset.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(u64, i64)>> {
        let st = read_lock(&self.state);
        for seg in &st.segments {
            if seg.max_timestamp < timestamp {
                continue;
            }
            if seg.next_offset <= st.log_start_offset {
                continue;
            }
            if let Some(found) = seg.find_by_timestamp(timestamp, seg.size, st.log_start_offset)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset of the first record
    /// that carries it (ListOffsets `MAX_TIMESTAMP`, KIP-734). Segments
    /// know the batch holding their maximum; that batch is read (and
    /// decompressed) to find the record.
    pub fn max_timestamp(&self) -> Option<(i64, u64)> {
        let (ts, batch_offset) = {
            let st = read_lock(&self.state);
            st.segments
                .iter()
                .filter(|s| s.max_timestamp >= 0 && s.next_offset > st.log_start_offset)
                .max_by_key(|s| s.max_timestamp)
                .map(|s| {
                    (
                        s.max_timestamp,
                        s.offset_of_max_timestamp.max(st.log_start_offset),
                    )
                })?
        };
        let exact = self.read(batch_offset, 1).ok().and_then(|r| {
            let header = BatchHeader::parse(&r.records).ok()?;
            if header.timestamp_type() == TimestampType::LogAppendTime {
                return Some(batch_offset.max(header.base_offset as u64));
            }
            let records = batch::decode_records(&r.records).ok()?;
            records
                .iter()
                .find(|(o, rec)| rec.timestamp == ts && *o as u64 >= batch_offset)
                .map(|(o, _)| *o as u64)
        });
        Some((ts, exact.unwrap_or(batch_offset)))
    }

    /// Makes everything appended before `offset` durable. Concurrent
    /// callers share fsyncs (group commit): one caller at a time syncs
    /// everything appended so far while the others are parked; when it
    /// finishes it wakes those whose data it covered, and one of the rest
    /// to lead the next sync. Returns the new flushed offset.
    pub fn flush_until(&self, offset: u64) -> Result<u64> {
        self.check_failed()?;
        // Nothing past the end can be flushed: asking for more means "all".
        let offset = offset.min(self.end_offset.load(Ordering::Acquire));
        let done = self.flushed.load(Ordering::Acquire);
        if done >= offset {
            return Ok(done);
        }
        self.sync(Need::Offset(offset))
    }

    /// Waits until `need` is met, leading a sync when nobody else is.
    fn sync(&self, need: Need) -> Result<u64> {
        let mut g = lock(&self.flush_lock);
        let mut led = false;
        let mut registered: Option<u64> = None;
        loop {
            let met = match need {
                Need::Force => led,
                _ => need.met(
                    self.flushed.load(Ordering::Acquire),
                    g.checkpointed_segment,
                    self.end_offset.load(Ordering::Acquire),
                ),
            };
            if met || self.failed.load(Ordering::Acquire) {
                if let Some(id) = registered {
                    g.waiters.retain(|w| w.id != id);
                }
                self.check_failed()?;
                return Ok(self.flushed.load(Ordering::Acquire));
            }
            if !g.syncing {
                if let Some(id) = registered.take() {
                    g.waiters.retain(|w| w.id != id);
                }
                g.syncing = true;
                let checkpointed = g.checkpointed_segment;
                drop(g);
                let result = self.sync_files(checkpointed, need == Need::Force);
                g = lock(&self.flush_lock);
                g.syncing = false;
                if let Ok((_, Some(segment))) = result {
                    g.checkpointed_segment = segment;
                }
                self.wake_waiters(&mut g, result.is_err());
                result?;
                led = true;
                continue;
            }
            if registered.is_none() {
                let id = g.next_waiter;
                g.next_waiter += 1;
                g.waiters.push(Waiter {
                    id,
                    need,
                    thread: std::thread::current(),
                });
                registered = Some(id);
            }
            drop(g);
            // Woken by the syncing thread when our need is met or when we
            // are to lead the next sync; a spurious wake just loops.
            std::thread::park();
            g = lock(&self.flush_lock);
        }
    }

    /// After a sync: wakes exactly the waiters it satisfied, plus the first
    /// unsatisfied one to lead the next sync (or everyone after a failure).
    /// Waking only these keeps a 64-writer group commit from waking 64
    /// threads per fsync.
    fn wake_waiters(&self, g: &mut FlushState, failed: bool) {
        let flushed = self.flushed.load(Ordering::Acquire);
        let checkpointed = g.checkpointed_segment;
        let end = self.end_offset.load(Ordering::Acquire);
        let mut leader = failed;
        g.waiters.retain(|w| {
            if w.need.met(flushed, checkpointed, end) {
                w.thread.unpark();
                return false;
            }
            if !leader || failed {
                w.thread.unpark();
                leader = true;
            }
            true
        });
    }

    /// The sync itself, run by one thread at a time without any lock held:
    /// every segment holding unsynced data and every segment sealed since
    /// the last recovery-point checkpoint (whose indexes were written at
    /// seal time), then the recovery point if it moved into a newer segment
    /// or `force` is set. Returns the flushed offset and the segment of a
    /// newly written checkpoint.
    fn sync_files(&self, checkpointed: u64, force: bool) -> Result<(u64, Option<u64>)> {
        let started = std::time::Instant::now();
        let done = self.flushed.load(Ordering::Acquire);
        let (end, files, end_segment) = {
            let st = read_lock(&self.state);
            let files: Vec<(PathBuf, Arc<dyn StorageFile>)> = st
                .segments
                .iter()
                .filter(|s| s.next_offset > done || (s.sealed && s.base_offset >= checkpointed))
                .flat_map(Segment::files_to_sync)
                .collect();
            (st.end(), files, st.active().base_offset)
        };
        for (path, file) in files {
            if let Err(e) = file.sync_data() {
                // After a failed fsync the kernel may have dropped the dirty
                // pages: retrying could falsely succeed. Stop taking writes.
                self.failed.store(true, Ordering::Release);
                warn!(path = %path.display(), error = %e, "fsync failed; the log stops taking writes until reopened");
                return Err(LogError::io(path, e));
            }
        }
        self.flushed.fetch_max(end, Ordering::AcqRel);
        // Disarm the flush.ms timer if everything is synced. An append
        // publishes its end before arming the timer, so re-reading the end
        // after disarming (all SeqCst) either sees that append, and re-arms
        // with the older time, or that append arms the timer itself.
        let armed = self.oldest_unflushed_ms.load(Ordering::SeqCst);
        if armed != NONE
            && end >= self.end_offset.load(Ordering::SeqCst)
            && self
                .oldest_unflushed_ms
                .compare_exchange(armed, NONE, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            && self.end_offset.load(Ordering::SeqCst) > end
        {
            let _ = self.oldest_unflushed_ms.compare_exchange(
                NONE,
                armed,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        self.sync_latency.observe(started.elapsed());
        if force || end_segment > checkpointed {
            write_number(&*self.storage, &self.dir, RECOVERY_POINT_FILE, end)?;
            return Ok((end, Some(end_segment)));
        }
        Ok((end, None))
    }

    /// How many sync rounds ran and how long they took.
    pub fn sync_stats(&self) -> SyncStats {
        let s = self.sync_latency.snapshot();
        SyncStats {
            rounds: s.count(),
            total: std::time::Duration::from_secs_f64(s.sum_seconds),
        }
    }

    /// The latency of every sync round (fsync of the data files) so far.
    pub fn sync_latency(&self) -> crate::metrics::Snapshot {
        self.sync_latency.snapshot()
    }

    /// Syncs everything appended so far.
    pub fn flush(&self) -> Result<u64> {
        let end = self.log_end_offset();
        self.flush_until(end)
    }

    /// The background flush policy: syncs when `flush.ms` has passed since
    /// unsynced data was first appended, or when a roll left the recovery
    /// point behind the active segment (so that a crash revalidates only
    /// the active segment). Returns whether it synced.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<bool> {
        let (by_age, active_base) = {
            let st = read_lock(&self.state);
            let flushed = self.flushed.load(Ordering::Acquire);
            let oldest = self.oldest_unflushed_ms.load(Ordering::Acquire);
            let by_age = match st.config.flush_ms {
                Some(ms) if oldest != NONE => {
                    now_ms.saturating_sub(oldest) >= ms && flushed < st.end()
                }
                _ => false,
            };
            (by_age, st.active().base_offset)
        };
        if by_age {
            self.flush()?;
            return Ok(true);
        }
        let lagging = lock(&self.flush_lock).checkpointed_segment < active_base;
        if lagging {
            self.sync(Need::Checkpoint { active_base })?;
        }
        Ok(lagging)
    }

    /// Syncs everything and writes the recovery point now (it is otherwise
    /// written when a flush crosses into a new segment and on close).
    pub fn checkpoint(&self) -> Result<u64> {
        self.sync(Need::Force)
    }

    /// Deletes whole sealed segments that retention no longer keeps:
    /// `retention.ms` (by their newest timestamp), `retention.bytes`, and
    /// segments entirely below the log start offset. The active segment is
    /// never deleted. Only applies with a `delete` cleanup policy, except
    /// segments below the log start offset which always go.
    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let mut st = write_lock(&self.state);
        self.check_failed()?;
        let deletes = st.config.cleanup_policy != CleanupPolicy::Compact;
        let sealed = st.segments.len() - 1;
        let mut total = st.size();
        let mut n = 0;
        while n < sealed {
            let seg = &st.segments[n];
            let below_start = seg.next_offset <= st.log_start_offset;
            let by_time = deletes
                && st.config.retention_ms.is_some_and(|ms| {
                    seg.max_timestamp >= 0 && now_ms.saturating_sub(seg.max_timestamp) > ms
                });
            let by_size = deletes
                && st
                    .config
                    .retention_bytes
                    .is_some_and(|max| total - seg.size >= max);
            if !(below_start || by_time || by_size) {
                break;
            }
            total -= seg.size;
            n += 1;
        }
        let removed = self.remove_segments(&mut st, n)?;
        Ok(RetentionOutcome {
            segments: n,
            bytes: removed,
            log_start_offset: st.log_start_offset,
        })
    }

    /// Removes the `n` oldest segments (never the active one).
    fn remove_segments(&self, st: &mut State, n: usize) -> Result<u64> {
        if n == 0 {
            return Ok(0);
        }
        let gone: Vec<Segment> = st.segments.drain(..n).collect();
        let new_start = st.segments[0].base_offset;
        st.log_start_offset = st.log_start_offset.max(new_start);
        let mut bytes = 0;
        for seg in &gone {
            bytes += seg.size;
            for p in seg.paths() {
                self.storage.remove(&p).map_err(|e| LogError::io(&p, e))?;
            }
            info!(segment = %seg.log_path.display(), size = seg.size, "deleted segment");
        }
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| LogError::io(&self.dir, e))?;
        Ok(bytes)
    }

    /// DeleteRecords: moves the log start offset to `offset` (which must be
    /// at most the log end offset) and deletes the segments wholly below it.
    /// The records below `offset` and then the new start offset are made
    /// durable before anything is deleted.
    pub fn delete_records_before(&self, offset: u64) -> Result<u64> {
        // The records below the new start must be durable first: a crash
        // must not leave a start offset beyond the recovered end.
        self.flush_until(offset.min(self.log_end_offset()))?;
        let mut st = write_lock(&self.state);
        self.check_failed()?;
        let end = st.end();
        if offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: st.log_start_offset,
                end,
            });
        }
        if offset <= st.log_start_offset {
            return Ok(st.log_start_offset);
        }
        write_number(&*self.storage, &self.dir, LOG_START_OFFSET_FILE, offset)?;
        st.log_start_offset = offset;
        let sealed = st.segments.len() - 1;
        let n = st.segments[..sealed]
            .iter()
            .take_while(|s| s.next_offset <= offset)
            .count();
        self.remove_segments(&mut st, n)?;
        Ok(st.log_start_offset)
    }

    /// Shuts the log down cleanly: writes the active segment's indexes,
    /// syncs everything, records the recovery point and writes the
    /// clean-shutdown marker so the next open skips validation.
    pub fn close(self) -> Result<()> {
        self.check_failed()?;
        {
            let mut st = write_lock(&self.state);
            st.active_mut().persist_indexes()?;
            let active = st.active();
            for (path, file) in [
                (&active.index.path, &active.index.file),
                (&active.time_index.path, &active.time_index.file),
            ] {
                file.sync_data().map_err(|e| LogError::io(path, e))?;
            }
        }
        let end = self.checkpoint()?;
        // The producer state as of the end, so the next open replays nothing.
        {
            let st = read_lock(&self.state);
            write_file(
                &*self.storage,
                &self.dir,
                &segment::file_name(end, "snapshot"),
                &st.producers.encode(),
            )?;
        }
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        let file = self
            .storage
            .open(&marker, true)
            .map_err(|e| LogError::io(&marker, e))?;
        file.sync_data().map_err(|e| LogError::io(&marker, e))?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| LogError::io(&self.dir, e))?;
        Ok(())
    }
}

/// Refuses create-time timestamps too far before or after `now_ms`
/// (`message.timestamp.before.max.ms` / `after.max.ms`). Uncompressed
/// batches are checked record by record (their smallest and largest
/// timestamps); compressed ones by their header's base and max timestamps.
/// Why a create time is out of range, if it is.
fn timestamp_problem(cfg: &LogConfig, ts: i64, now_ms: i64) -> Option<String> {
    if let Some(before) = cfg.message_timestamp_before_max_ms
        && ts >= 0
        && ts < now_ms.saturating_sub(before)
    {
        return Some(format!(
            "timestamp {ts} is more than message.timestamp.before.max.ms = {before} before the broker time {now_ms}"
        ));
    }
    if let Some(after) = cfg.message_timestamp_after_max_ms
        && ts > now_ms.saturating_add(after)
    {
        return Some(format!(
            "timestamp {ts} is more than message.timestamp.after.max.ms = {after} after the broker time {now_ms}"
        ));
    }
    None
}

/// Record-level validation of an append (Kafka's LogValidator): on a
/// compacted log every record needs a key; with CreateTime every record's
/// timestamp must be inside `message.timestamp.before/after.max.ms`. Any
/// culprit refuses the whole append, naming every culprit (KIP-467).
///
/// Cheap when nothing is wrong: timestamps are first checked from the
/// batch headers (and the records of uncompressed batches, already parsed
/// by `check_batches`); records are decoded only on a compacted log, when
/// that first check fails, or when a compressed batch's first timestamp
/// cannot vouch for a `before` limit.
fn check_records(
    cfg: &LogConfig,
    records: &[u8],
    batches: &[batch::BatchInfo],
    now_ms: i64,
) -> Result<()> {
    let create_time = cfg.message_timestamp_type == TimestampType::CreateTime;
    let compacted = cfg.cleanup_policy != CleanupPolicy::Delete;
    let mut first_index = 0usize;
    let mut culprits: Vec<(usize, String)> = Vec::new();
    let (mut keyless, mut bad_time) = (false, false);
    for b in batches {
        let header_ok = !create_time || {
            let low = b.record_min_timestamp.unwrap_or(b.header.base_timestamp);
            let high = b.record_max_timestamp.unwrap_or(b.header.max_timestamp);
            timestamp_problem(cfg, low, now_ms).is_none()
                && timestamp_problem(cfg, high, now_ms).is_none()
        };
        let exact_low =
            b.record_min_timestamp.is_some() || cfg.message_timestamp_before_max_ms.is_none();
        let control = b.header.is_control();
        let count = b.header.records_count.max(0) as usize;
        if !control && (compacted || !header_ok || (create_time && !exact_low)) {
            let bytes = &records[b.position..b.position + b.len];
            let decoded =
                batch::decode_records(bytes).map_err(|source| LogError::CorruptBatch {
                    position: b.position,
                    source,
                })?;
            for (i, (_, r)) in decoded.iter().enumerate() {
                if compacted && r.key.is_none() {
                    keyless = true;
                    culprits.push((
                        first_index + i,
                        "Compacted topic cannot accept message without key".to_owned(),
                    ));
                } else if create_time && let Some(why) = timestamp_problem(cfg, r.timestamp, now_ms)
                {
                    bad_time = true;
                    culprits.push((first_index + i, why));
                }
            }
        }
        first_index += count;
    }
    if culprits.is_empty() {
        return Ok(());
    }
    // Kafka answers INVALID_RECORD when a key is missing, INVALID_TIMESTAMP
    // when only timestamps are wrong.
    let (kind, message) = if keyless {
        (
            crate::error::ErrorKind::InvalidRecord,
            format!(
                "{} of the records have no key, which a compacted topic needs; the whole batch was refused",
                culprits
                    .iter()
                    .filter(|(_, w)| w.starts_with("Compacted"))
                    .count()
            ),
        )
    } else {
        debug_assert!(bad_time);
        (
            crate::error::ErrorKind::InvalidTimestamp,
            format!(
                "{} of the records have a timestamp out of range; the whole batch was refused: {}",
                culprits.len(),
                culprits[0].1
            ),
        )
    };
    Err(LogError::InvalidRecords {
        kind,
        message,
        records: culprits,
    })
}

/// Length of the longest prefix of `buf` made of whole batches that start
/// below `upper` (at least the first batch, which the caller sized the
/// buffer for), and the offset after the last kept batch.
fn whole_batches(buf: &[u8], upper: u64, requested: u64) -> (usize, u64) {
    let mut pos = 0;
    let mut next = requested;
    while let Ok(h) = BatchHeader::parse(&buf[pos..]) {
        let Some(len) = h.total_len() else { break };
        if pos + len > buf.len() || h.base_offset as u64 >= upper {
            break;
        }
        pos += len;
        next = (h.last_offset() as u64).saturating_add(1);
    }
    (pos, next)
}
