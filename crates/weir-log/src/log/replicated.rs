//! The follower's side of a log (docs/design/replication.md): batches
//! copied from a leader keep the leader's offsets and leader epochs, and a
//! log cut back where the leader says it diverges.

use std::sync::atomic::Ordering;

use tracing::info;

use super::{
    LEADER_EPOCH_FILE, LOG_START_OFFSET_FILE, Log, RECOVERY_POINT_FILE, State, lock,
    rebuild_producers, write_file, write_lock, write_number,
};
use crate::batch;
use crate::epochs::EpochCache;
use crate::error::{LogError, Result};
use crate::segment::{OpenMode, Segment};

impl Log {
    /// The leader-epoch cache as it is now.
    pub fn epoch_cache(&self) -> EpochCache {
        super::read_lock(&self.state).epochs.clone()
    }

    /// Appends batches fetched from the leader as they are: their offsets
    /// and leader epochs are the leader's. Each batch is checked (lengths,
    /// CRC-32C) before anything is written; the first must start at or
    /// after this log's end and each after the one before (a compacted
    /// leader log may skip offsets). A new leader epoch among them is
    /// recorded in the checkpoint before its first batch is written. The
    /// idempotent-producer state follows the batches, so this replica
    /// rejects duplicates once it leads. Returns the new end.
    pub fn append_replicated(&self, records: &[u8], now_ms: i64) -> Result<u64> {
        let batches = batch::check_batches(records)
            .map_err(|(position, source)| LogError::CorruptBatch { position, source })?;
        if batches.is_empty() {
            return Ok(self.log_end_offset());
        }
        let mut st = write_lock(&self.state);
        self.check_failed()?;
        let mut next = st.end();
        let mut epochs = st.epochs.clone();
        let mut new_epoch = false;
        for b in &batches {
            let base = b.header.base_offset;
            if base < 0 || (base as u64) < next {
                return Err(LogError::OffsetOutOfRange {
                    offset: base.max(0) as u64,
                    start: st.log_start_offset,
                    end: next,
                });
            }
            new_epoch |= epochs.assign(b.header.partition_leader_epoch, base as u64);
            next = b.header.last_offset() as u64 + 1;
        }
        let offsets = next - st.end();
        self.maybe_roll(
            &mut st,
            records.len() as u64,
            offsets.min(u64::from(u32::MAX)),
            now_ms,
        )?;
        if new_epoch {
            write_file(
                &*self.storage,
                &self.dir,
                LEADER_EPOCH_FILE,
                epochs.encode().as_bytes(),
            )?;
            st.epochs = epochs;
        }
        self.write_batches(&mut st, records, &batches, next, now_ms)?;
        Ok(next)
    }

    /// Cuts the log back so that it ends at `offset` (or at the start of
    /// the batch holding it): a follower dropping what the leader says is
    /// not on its log. The recovery point moves back first, so a crash in
    /// the middle revalidates the cut segment at the next open; the
    /// idempotent-producer state and the epoch cache are rebuilt as of the
    /// new end. Returns the new end.
    pub fn truncate_to(&self, offset: u64) -> Result<u64> {
        self.exclusive(|st| {
            if offset >= st.end() {
                return Ok(st.end());
            }
            if offset <= st.log_start_offset {
                return self.restart_at(st, st.log_start_offset);
            }
            let i = st.segment_for(offset);
            let (pos, end) = match st.segments[i].locate(offset, st.segments[i].size)? {
                Some((pos, header, _)) => (pos, header.base_offset.max(0) as u64),
                None => (st.segments[i].size, st.segments[i].next_offset),
            };
            self.move_recovery_point(st, end)?;
            let gone: Vec<Segment> = st.segments.drain(i + 1..).collect();
            for seg in &gone {
                for p in seg.paths() {
                    self.storage.remove(&p).map_err(|e| LogError::io(&p, e))?;
                }
            }
            let seg = &st.segments[i];
            seg.log
                .set_len(pos)
                .and_then(|()| seg.log.sync_data())
                .map_err(|e| LogError::io(&seg.log_path, e))?;
            let base = seg.base_offset;
            let interval = st.config.index_interval_bytes;
            let (reopened, _) = Segment::open(
                &*self.storage,
                &self.dir,
                base,
                OpenMode::Recover { active: true },
                interval,
            )?;
            st.segments[i] = reopened;
            self.storage
                .sync_dir(&self.dir)
                .map_err(|e| LogError::io(&self.dir, e))?;
            self.after_cut(st, end)?;
            info!(dir = %self.dir.display(), end, "log truncated");
            Ok(end)
        })
    }

    /// Empties the log and makes it start at `offset`: a follower whose
    /// log is wholly behind the leader's start (retention went past it) or
    /// holds nothing the leader has.
    pub fn truncate_fully_and_start_at(&self, offset: u64) -> Result<u64> {
        self.exclusive(|st| self.restart_at(st, offset))
    }

    fn restart_at(&self, st: &mut State, offset: u64) -> Result<u64> {
        self.move_recovery_point(st, 0)?;
        write_number(&*self.storage, &self.dir, LOG_START_OFFSET_FILE, offset)?;
        let fresh = Segment::create(&*self.storage, &self.dir, offset)?;
        let gone: Vec<Segment> = std::mem::replace(&mut st.segments, vec![fresh]);
        for seg in gone.iter().filter(|s| s.base_offset != offset) {
            for p in seg.paths() {
                self.storage.remove(&p).map_err(|e| LogError::io(&p, e))?;
            }
        }
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| LogError::io(&self.dir, e))?;
        st.log_start_offset = offset;
        st.epochs = EpochCache::default();
        self.after_cut(st, offset)?;
        info!(dir = %self.dir.display(), offset, "log emptied; it starts at the leader's start");
        Ok(offset)
    }

    /// Runs `f` on the state with no cleaning pass and no sync running
    /// and none starting: a pass could swap in segments the cut removed,
    /// a sync in flight would publish an end the cut removed.
    fn exclusive<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        // Taken first, never while holding the others (a pass syncs).
        let _cleaning = lock(&self.cleaner);
        loop {
            let mut g = lock(&self.flush_lock);
            if !g.syncing {
                g.syncing = true;
                break;
            }
            drop(g);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let result = {
            let mut st = write_lock(&self.state);
            self.check_failed().and_then(|()| f(&mut st))
        };
        let mut g = lock(&self.flush_lock);
        g.syncing = false;
        let flushed = self.flushed.load(Ordering::Acquire);
        let st = super::read_lock(&self.state);
        g.checkpointed_segment = st.segments[st.segment_for(flushed)].base_offset;
        drop(st);
        // Everyone re-checks (a need above the new end is met by it).
        self.wake_waiters(&mut g, true);
        result
    }

    /// Moves the recovery point back to `offset` if it is beyond.
    fn move_recovery_point(&self, _st: &State, offset: u64) -> Result<()> {
        if self.flushed.load(Ordering::Acquire) > offset {
            write_number(&*self.storage, &self.dir, RECOVERY_POINT_FILE, offset)?;
            self.flushed.store(offset, Ordering::Release);
        }
        Ok(())
    }

    /// After a cut at `end`: the producer state, the epochs and the end.
    fn after_cut(&self, st: &mut State, end: u64) -> Result<()> {
        let names = self
            .storage
            .list(&self.dir)
            .map_err(|e| LogError::io(&self.dir, e))?;
        st.producers = rebuild_producers(&*self.storage, &self.dir, &names, &st.segments)?;
        if st.epochs.truncate_to(end) || st.epochs.entries().is_empty() {
            write_file(
                &*self.storage,
                &self.dir,
                LEADER_EPOCH_FILE,
                st.epochs.encode().as_bytes(),
            )?;
        }
        self.end_offset.store(end, Ordering::SeqCst);
        Ok(())
    }
}
