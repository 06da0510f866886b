//! One segment: a `.log` file of whole record batches and its two sparse
//! indexes, named by the segment's 20-digit base offset.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use crate::batch::{self, BatchHeader, BatchInfo, HEADER_LEN, Strictness};
use crate::error::{LogError, Result};
use crate::index::{Index, OffsetEntry, TimeEntry};
use crate::storage::{Storage, StorageFile};

/// Bytes read at a time when scanning headers near an index entry.
const SCAN_CHUNK: usize = 16 * 1024;
/// Bytes read at a time when validating a whole segment.
const RECOVERY_CHUNK: usize = 1 << 20;

pub(crate) fn file_name(base: u64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// Parses `00000000000000000123.log` into 123.
pub(crate) fn parse_log_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Reads a file in chunks and hands out slices by absolute position.
struct ChunkReader<'f> {
    file: &'f dyn StorageFile,
    end: u64,
    chunk: usize,
    buf: Vec<u8>,
    buf_pos: u64,
}

impl<'f> ChunkReader<'f> {
    fn new(file: &'f dyn StorageFile, end: u64, chunk: usize) -> Self {
        Self {
            file,
            end,
            chunk,
            buf: Vec::new(),
            buf_pos: 0,
        }
    }

    /// The `len` bytes at `pos`, or `None` when the file ends first.
    fn get(&mut self, pos: u64, len: usize) -> std::io::Result<Option<&[u8]>> {
        if pos + len as u64 > self.end {
            return Ok(None);
        }
        let have = pos >= self.buf_pos && pos + len as u64 <= self.buf_pos + self.buf.len() as u64;
        if !have {
            let want = (len.max(self.chunk) as u64).min(self.end - pos) as usize;
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.buf_pos = pos;
        }
        let at = (pos - self.buf_pos) as usize;
        Ok(Some(&self.buf[at..at + len]))
    }
}

/// Calls `f` with the position and bytes of every whole batch of the
/// first `size` bytes of a segment's data file, in order. The batches are
/// not validated beyond their length (the segment was when it was opened).
pub(crate) fn scan_batches(
    file: &dyn StorageFile,
    path: &Path,
    size: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut reader = ChunkReader::new(file, size, RECOVERY_CHUNK);
    let mut pos = 0;
    while pos < size {
        let corrupt = |reason: &str| LogError::CorruptSegment {
            path: path.to_owned(),
            position: pos,
            reason: reason.to_owned(),
        };
        let head = reader
            .get(pos, HEADER_LEN)
            .map_err(io_err(path))?
            .ok_or_else(|| corrupt("batch header runs past the end"))?;
        let header = BatchHeader::parse(head).map_err(|e| corrupt(&e.to_string()))?;
        let len = header
            .total_len()
            .ok_or_else(|| corrupt("invalid batch length"))?;
        let bytes = reader
            .get(pos, len)
            .map_err(io_err(path))?
            .ok_or_else(|| corrupt("batch runs past the end"))?;
        f(pos, bytes)?;
        pos += len as u64;
    }
    Ok(())
}

/// What recovery cut from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cut {
    pub position: u64,
    pub bytes: u64,
    pub reason: String,
}

/// How to open an existing segment.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OpenMode {
    /// After a clean shutdown: trust the indexes, check only the tail.
    /// `next_base` is the base offset of the following segment, if any.
    Trust { next_base: Option<u64> },
    /// After a crash: validate every batch and rebuild the indexes.
    Recover { active: bool },
}

pub(crate) struct Segment {
    pub base_offset: u64,
    pub log_path: PathBuf,
    pub log: Arc<dyn StorageFile>,
    pub index: Index<OffsetEntry>,
    pub time_index: Index<TimeEntry>,
    /// Bytes of whole batches.
    pub size: u64,
    /// Offset after the last batch (= base offset when empty).
    pub next_offset: u64,
    /// Largest batch max timestamp, -1 when none.
    pub max_timestamp: i64,
    /// Base offset of the batch holding `max_timestamp`.
    pub offset_of_max_timestamp: u64,
    bytes_since_index: u64,
    /// When the segment received its first batch (for `segment.ms`).
    pub roll_base_ms: Option<i64>,
    pub sealed: bool,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("base_offset", &self.base_offset)
            .field("size", &self.size)
            .field("next_offset", &self.next_offset)
            .field("sealed", &self.sealed)
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |e| LogError::io(path, e)
}

impl Segment {
    /// Creates an empty active segment.
    pub fn create(storage: &dyn Storage, dir: &Path, base: u64) -> Result<Self> {
        Self::create_with_suffix(storage, dir, base, "")
    }

    /// Creates an empty segment whose file names end in `suffix` after
    /// the usual ones (the log cleaner's `.cleaned` copies).
    pub fn create_with_suffix(
        storage: &dyn Storage,
        dir: &Path,
        base: u64,
        suffix: &str,
    ) -> Result<Self> {
        let log_path = dir.join(file_name(base, "log") + suffix);
        let index_path = dir.join(file_name(base, "index") + suffix);
        let time_path = dir.join(file_name(base, "timeindex") + suffix);
        let made = (|| {
            let log = storage.open(&log_path, true).map_err(io_err(&log_path))?;
            log.set_len(0).map_err(io_err(&log_path))?;
            let index = Index::create(storage, &index_path).map_err(io_err(&index_path))?;
            let time_index = Index::create(storage, &time_path).map_err(io_err(&time_path))?;
            Ok::<_, LogError>((log, index, time_index))
        })();
        let (log, index, time_index) = match made {
            Ok(parts) => parts,
            Err(e) => {
                for p in [&log_path, &index_path, &time_path] {
                    let _ = storage.remove(p);
                }
                return Err(e);
            }
        };
        Ok(Self {
            base_offset: base,
            log_path,
            log,
            index,
            time_index,
            size: 0,
            next_offset: base,
            max_timestamp: -1,
            offset_of_max_timestamp: base,
            bytes_since_index: 0,
            roll_base_ms: None,
            sealed: false,
        })
    }

    /// Opens an existing segment. Returns what recovery cut, if anything.
    pub fn open(
        storage: &dyn Storage,
        dir: &Path,
        base: u64,
        mode: OpenMode,
        index_interval: u32,
    ) -> Result<(Self, Option<Cut>)> {
        let log_path = dir.join(file_name(base, "log"));
        let index_path = dir.join(file_name(base, "index"));
        let time_path = dir.join(file_name(base, "timeindex"));
        let log = storage.open(&log_path, false).map_err(io_err(&log_path))?;
        let size = log.len().map_err(io_err(&log_path))?;
        if let OpenMode::Trust { next_base } = mode {
            let active = next_base.is_none();
            let index = Index::<OffsetEntry>::open(storage, &index_path, active);
            let time_index = Index::<TimeEntry>::open(storage, &time_path, active);
            match (index, time_index) {
                (Ok(index), Ok(time_index)) => {
                    let mut seg = Self {
                        base_offset: base,
                        log_path: log_path.clone(),
                        log: log.clone(),
                        index,
                        time_index,
                        size,
                        next_offset: next_base.unwrap_or(base),
                        max_timestamp: -1,
                        offset_of_max_timestamp: base,
                        bytes_since_index: 0,
                        roll_base_ms: None,
                        sealed: !active,
                    };
                    match seg.check_trusted(next_base, index_interval) {
                        Ok(()) => return Ok((seg, None)),
                        Err(reason) => {
                            warn!(segment = %log_path.display(), %reason, "index or tail inconsistent, revalidating the segment")
                        }
                    }
                }
                (Err(reason), _) | (_, Err(reason)) => {
                    warn!(segment = %log_path.display(), %reason, "index unusable, rebuilding it");
                }
            }
        }
        let active = match mode {
            OpenMode::Trust { next_base } => next_base.is_none(),
            OpenMode::Recover { active } => active,
        };
        Self::recover(
            storage,
            base,
            log_path,
            index_path,
            time_path,
            log,
            size,
            active,
            index_interval,
        )
    }

    /// Checks a segment opened after a clean shutdown: the last index
    /// entries point inside the file, and the batches after the last offset
    /// index entry (at most about one index interval) are whole and valid.
    fn check_trusted(&mut self, next_base: Option<u64>, index_interval: u32) -> Result<(), String> {
        let io = |e: std::io::Error| e.to_string();
        let last = self.index.last().map_err(io)?;
        if let Some(e) = last
            && u64::from(e.position) >= self.size.max(1)
        {
            return Err(format!(
                "index entry points at byte {} of {}",
                e.position, self.size
            ));
        }
        if let Some(t) = self.time_index.last().map_err(io)? {
            self.max_timestamp = t.timestamp;
            self.offset_of_max_timestamp = self.base_offset + u64::from(t.relative_offset);
        }
        match next_base {
            Some(next) => {
                // Sealed: the indexes must stay inside the offset range.
                let span = next
                    .checked_sub(self.base_offset)
                    .ok_or("segments overlap")?;
                if last.is_some_and(|e| u64::from(e.relative_offset) >= span)
                    || self.offset_of_max_timestamp >= next.max(self.base_offset + 1)
                {
                    return Err("index entry beyond the segment's offsets".to_owned());
                }
                Ok(())
            }
            None => {
                // Active: walk the tail after the last index entry.
                let (mut pos, mut next) = match last {
                    Some(e) => (
                        u64::from(e.position),
                        self.base_offset + u64::from(e.relative_offset),
                    ),
                    None => (0, self.base_offset),
                };
                let start = pos;
                let file = self.log.clone();
                let mut reader = ChunkReader::new(&*file, self.size, SCAN_CHUNK);
                while pos < self.size {
                    let head = reader
                        .get(pos, HEADER_LEN)
                        .map_err(io)?
                        .ok_or("torn header at the tail")?;
                    let header = BatchHeader::parse(head).map_err(|e| e.to_string())?;
                    let len = header.total_len().ok_or("bad batch length at the tail")?;
                    let bytes = reader
                        .get(pos, len)
                        .map_err(io)?
                        .ok_or("torn batch at the tail")?;
                    batch::check_batch(bytes, Strictness::Stored).map_err(|e| e.to_string())?;
                    if header.base_offset != next as i64 {
                        return Err(format!(
                            "batch at byte {pos} has offset {} instead of {next}",
                            header.base_offset
                        ));
                    }
                    self.note_timestamp(&header);
                    next = header.last_offset() as u64 + 1;
                    pos += len as u64;
                    if pos - start > 2 * u64::from(index_interval) + len as u64 {
                        return Err(
                            "tail longer than the index interval: index incomplete".to_owned()
                        );
                    }
                }
                self.next_offset = next;
                self.bytes_since_index = self.size - start;
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn recover(
        storage: &dyn Storage,
        base: u64,
        log_path: PathBuf,
        index_path: PathBuf,
        time_path: PathBuf,
        log: Arc<dyn StorageFile>,
        file_len: u64,
        active: bool,
        index_interval: u32,
    ) -> Result<(Self, Option<Cut>)> {
        let index = Index::create(storage, &index_path).map_err(io_err(&index_path))?;
        let time_index = Index::create(storage, &time_path).map_err(io_err(&time_path))?;
        let mut seg = Self {
            base_offset: base,
            log_path,
            log,
            index,
            time_index,
            size: 0,
            next_offset: base,
            max_timestamp: -1,
            offset_of_max_timestamp: base,
            bytes_since_index: 0,
            roll_base_ms: None,
            sealed: false,
        };
        let mut cut = None;
        {
            let file = seg.log.clone();
            let mut reader = ChunkReader::new(&*file, file_len, RECOVERY_CHUNK);
            let mut pos = 0u64;
            while pos < file_len {
                let why = match reader.get(pos, HEADER_LEN).map_err(io_err(&seg.log_path))? {
                    None => Some("torn batch header".to_owned()),
                    Some(head) => {
                        let header =
                            BatchHeader::parse(head).map_err(|e| LogError::CorruptSegment {
                                path: seg.log_path.clone(),
                                position: pos,
                                reason: e.to_string(),
                            })?;
                        match header.total_len() {
                            None => Some(format!("invalid batch length {}", header.batch_length)),
                            Some(len) => {
                                match reader.get(pos, len).map_err(io_err(&seg.log_path))? {
                                    None => Some(format!(
                                        "torn batch: {len} bytes declared, {} present",
                                        file_len - pos
                                    )),
                                    Some(bytes) => {
                                        match batch::check_batch(bytes, Strictness::Stored) {
                                            Err(e) => Some(e.to_string()),
                                            // Offsets follow on; in a sealed
                                            // segment compaction may have left
                                            // gaps (never in the active one).
                                            Ok(_)
                                                if header.base_offset < seg.next_offset as i64
                                                    || (active
                                                        && header.base_offset
                                                            != seg.next_offset as i64) =>
                                            {
                                                Some(format!(
                                                    "batch offset {} where at least {} was expected",
                                                    header.base_offset, seg.next_offset
                                                ))
                                            }
                                            Ok(_)
                                                if header.last_offset() as u64 - base
                                                    > u64::from(u32::MAX) =>
                                            {
                                                Some(
                                                    "offset beyond the segment's 32-bit range"
                                                        .to_owned(),
                                                )
                                            }
                                            Ok(_) => {
                                                seg.track(pos, &header, len, index_interval);
                                                pos += len as u64;
                                                None
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                };
                if let Some(reason) = why {
                    cut = Some(Cut {
                        position: pos,
                        bytes: file_len - pos,
                        reason,
                    });
                    break;
                }
            }
        }
        if let Some(c) = &cut {
            seg.log.set_len(c.position).map_err(io_err(&seg.log_path))?;
        }
        if !active {
            seg.seal()?;
        }
        Ok((seg, cut))
    }

    /// Bookkeeping for a batch written at `pos`: index entries every
    /// `index_interval` bytes, max timestamp, size and next offset.
    fn track(&mut self, pos: u64, header: &BatchHeader, len: usize, index_interval: u32) {
        self.note_timestamp(header);
        if self.bytes_since_index >= u64::from(index_interval) && pos > 0 {
            let rel = (header.base_offset as u64 - self.base_offset) as u32;
            self.index.push(OffsetEntry {
                relative_offset: rel,
                position: pos as u32,
            });
            self.maybe_push_time_entry();
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len as u64;
        self.size = pos + len as u64;
        self.next_offset = header.last_offset() as u64 + 1;
    }

    fn note_timestamp(&mut self, header: &BatchHeader) {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset as u64;
        }
    }

    fn maybe_push_time_entry(&mut self) {
        let newer = match self.time_index.last() {
            Ok(Some(t)) => self.max_timestamp > t.timestamp,
            Ok(None) => self.max_timestamp >= 0,
            Err(_) => false,
        };
        if newer {
            self.time_index.push(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: (self.offset_of_max_timestamp - self.base_offset) as u32,
            });
        }
    }

    /// Appends validated, offset-patched batches. On error nothing is
    /// kept: partial bytes are cut and the bookkeeping is unchanged.
    pub fn append(
        &mut self,
        data: &[u8],
        batches: &[BatchInfo],
        index_interval: u32,
        now_ms: i64,
    ) -> Result<()> {
        let pos = self.size;
        if let Err(e) = self.log.write_all_at(data, pos) {
            if let Err(cut) = self.log.set_len(pos) {
                warn!(segment = %self.log_path.display(), error = %cut, "could not cut a failed write; the next append overwrites it");
            }
            return Err(LogError::io(&self.log_path, e));
        }
        if self.roll_base_ms.is_none() {
            self.roll_base_ms = Some(now_ms);
        }
        for b in batches {
            self.track(pos + b.position as u64, &b.header, b.len, index_interval);
        }
        Ok(())
    }

    /// Writes out the indexes (with a final time entry), syncs them and
    /// drops their in-memory copies. The segment takes no more appends.
    ///
    /// The sync is what lets a later open trust a sealed segment's indexes:
    /// a recovery point can lie beyond a segment whose data was synced
    /// before it was sealed, and nothing else would sync its indexes.
    ///
    /// If any step fails the segment stays active with its in-memory
    /// indexes, so appends can go on.
    pub fn seal(&mut self) -> Result<()> {
        self.persist_indexes()?;
        self.sync_indexes()?;
        self.finish_seal();
        Ok(())
    }

    /// Fsyncs both index files.
    pub fn sync_indexes(&self) -> Result<()> {
        for (path, file) in [
            (&self.index.path, &self.index.file),
            (&self.time_index.path, &self.time_index.file),
        ] {
            file.sync_data().map_err(io_err(path))?;
        }
        Ok(())
    }

    /// Drops the in-memory indexes of a segment whose indexes are persisted
    /// and synced; it takes no more appends.
    pub fn finish_seal(&mut self) {
        self.index.drop_memory();
        self.time_index.drop_memory();
        self.sealed = true;
    }

    /// Writes the indexes out (with a final time entry), keeping them active.
    pub fn persist_indexes(&mut self) -> Result<()> {
        if self.time_index.in_memory() {
            self.maybe_push_time_entry();
        }
        self.index.persist().map_err(io_err(&self.index.path))?;
        self.time_index
            .persist()
            .map_err(io_err(&self.time_index.path))?;
        Ok(())
    }

    /// Files to sync to make this segment durable: the data, and for a
    /// sealed segment its indexes too.
    pub fn files_to_sync(&self) -> Vec<(PathBuf, Arc<dyn StorageFile>)> {
        let mut files = vec![(self.log_path.clone(), self.log.clone())];
        if self.sealed {
            files.push((self.index.path.clone(), self.index.file.clone()));
            files.push((self.time_index.path.clone(), self.time_index.file.clone()));
        }
        files
    }

    /// Every file of the segment, including its producer-state snapshot.
    pub fn paths(&self) -> [PathBuf; 4] {
        [
            self.log_path.clone(),
            self.index.path.clone(),
            self.time_index.path.clone(),
            self.log_path.with_extension("snapshot"),
        ]
    }

    /// Syncs the data and both indexes (a segment written off to the side,
    /// before it replaces others).
    pub fn sync_all(&self) -> Result<()> {
        self.log.sync_data().map_err(io_err(&self.log_path))?;
        self.sync_indexes()
    }

    /// Calls `f` with the header of every batch, in order (bodies are not
    /// checked; the segment was validated when opened).
    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        let mut reader = ChunkReader::new(&*self.log, self.size, RECOVERY_CHUNK);
        let mut pos = 0;
        while pos < self.size {
            let corrupt = |reason: String| LogError::CorruptSegment {
                path: self.log_path.clone(),
                position: pos,
                reason,
            };
            let head = reader
                .get(pos, HEADER_LEN)
                .map_err(io_err(&self.log_path))?
                .ok_or_else(|| corrupt("batch header runs past the end".to_owned()))?;
            let header = BatchHeader::parse(head).map_err(|e| corrupt(e.to_string()))?;
            let len = header
                .total_len()
                .ok_or_else(|| corrupt("invalid batch length".to_owned()))?;
            f(&header);
            pos += len as u64;
        }
        Ok(())
    }

    /// Position and header of the first batch whose last offset is at
    /// least `offset`, looking no further than byte `limit`. Starts from
    /// the index entry at or below `offset`, so at most about one index
    /// interval of headers is read.
    pub fn locate(&self, offset: u64, limit: u64) -> Result<Option<(u64, BatchHeader, usize)>> {
        let rel = offset
            .saturating_sub(self.base_offset)
            .min(u64::from(u32::MAX)) as u32;
        let start = self
            .index
            .lookup(rel)
            .map_err(io_err(&self.index.path))?
            .map_or(0, |e| u64::from(e.position));
        let mut reader = ChunkReader::new(&*self.log, limit, SCAN_CHUNK);
        let mut pos = start;
        while pos < limit {
            let corrupt = |reason: &str| LogError::CorruptSegment {
                path: self.log_path.clone(),
                position: pos,
                reason: reason.to_owned(),
            };
            let head = reader
                .get(pos, HEADER_LEN)
                .map_err(io_err(&self.log_path))?
                .ok_or_else(|| corrupt("batch header runs past the end"))?;
            let header = BatchHeader::parse(head).map_err(|e| corrupt(&e.to_string()))?;
            let len = header
                .total_len()
                .ok_or_else(|| corrupt("invalid batch length"))?;
            if pos + len as u64 > limit {
                return Err(corrupt("batch runs past the end"));
            }
            if header.last_offset() >= offset as i64 {
                return Ok(Some((pos, header, len)));
            }
            pos += len as u64;
        }
        Ok(None)
    }

    /// The first record at or after `min_offset` with a timestamp at least
    /// `target`, as (offset, timestamp). Exact for uncompressed and log-append-time batches; for
    /// compressed create-time batches, the first batch whose max timestamp
    /// reaches `target` (its base offset and max timestamp).
    pub fn find_by_timestamp(
        &self,
        target: i64,
        limit: u64,
        min_offset: u64,
    ) -> Result<Option<(u64, i64)>> {
        if self.max_timestamp < target {
            return Ok(None);
        }
        let from = self
            .time_index
            .lookup(target)
            .map_err(io_err(&self.time_index.path))?
            .map_or(self.base_offset, |t| {
                self.base_offset + u64::from(t.relative_offset)
            })
            .max(min_offset);
        let Some((mut pos, _, _)) = self.locate(from, limit)? else {
            return Ok(None);
        };
        let mut reader = ChunkReader::new(&*self.log, limit, SCAN_CHUNK);
        while pos < limit {
            let head = reader
                .get(pos, HEADER_LEN)
                .map_err(io_err(&self.log_path))?;
            let Some(head) = head else { break };
            let header = BatchHeader::parse(head).map_err(|e| LogError::CorruptSegment {
                path: self.log_path.clone(),
                position: pos,
                reason: e.to_string(),
            })?;
            let Some(len) = header.total_len() else { break };
            if header.max_timestamp >= target {
                let bytes = reader.get(pos, len).map_err(io_err(&self.log_path))?;
                let compressed = header.compression() != Ok(batch::Compression::None);
                if compressed && header.timestamp_type() == batch::TimestampType::CreateTime {
                    let offset = (header.base_offset as u64).max(min_offset);
                    return Ok(Some((offset, header.max_timestamp)));
                }
                let found = bytes
                    .and_then(|b| batch::first_record_at_or_after(b, target, min_offset as i64));
                if let Some((offset, ts)) = found {
                    return Ok(Some((offset as u64, ts)));
                }
            }
            pos += len as u64;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Record, check_batches, encode_batch};
    use crate::storage::FaultStorage;

    #[test]
    fn segment_names_are_20_digits() {
        assert_eq!(file_name(123, "log"), "00000000000000000123.log");
        assert_eq!(parse_log_name("00000000000000000123.log"), Some(123));
        for bad in [
            "123.log",
            "0000000000000000012x.log",
            "00000000000000000123.index",
            "00000000000000000123.log.tmp",
        ] {
            assert_eq!(parse_log_name(bad), None, "{bad}");
        }
    }

    fn append(seg: &mut Segment, n: usize) {
        for i in 0..n {
            let rec = Record {
                timestamp: i as i64,
                value: Some(vec![b'v'; 100]),
                ..Record::default()
            };
            let mut b = encode_batch(&[rec]);
            crate::batch::set_base_offset(&mut b, seg.next_offset as i64);
            let infos: Vec<_> = check_batches(&b)
                .unwrap()
                .into_iter()
                .map(|mut info| {
                    info.header.base_offset = seg.next_offset as i64;
                    info
                })
                .collect();
            seg.append(&b, &infos, 512, 0).unwrap();
        }
    }

    #[test]
    fn locate_and_index_agree_before_and_after_sealing() {
        let s = FaultStorage::new();
        let dir = Path::new("/p");
        s.create_dir_all(dir).unwrap();
        let mut seg = Segment::create(&s, dir, 1000).unwrap();
        append(&mut seg, 50);
        assert_eq!(seg.next_offset, 1050);
        assert!(seg.index.len() >= 5, "an entry every ~512 bytes");
        let before: Vec<_> = (1000..1050)
            .map(|o| seg.locate(o, seg.size).unwrap().unwrap().0)
            .collect();
        assert_eq!(seg.locate(1050, seg.size).unwrap(), None);
        seg.seal().unwrap();
        let after: Vec<_> = (1000..1050)
            .map(|o| seg.locate(o, seg.size).unwrap().unwrap().0)
            .collect();
        assert_eq!(before, after);
        assert_eq!(
            seg.find_by_timestamp(10, seg.size, 0).unwrap(),
            Some((1010, 10))
        );
        assert_eq!(
            seg.find_by_timestamp(10, seg.size, 1020).unwrap(),
            Some((1020, 20))
        );
    }

    #[test]
    fn trusted_open_of_a_sealed_segment_checks_its_index() {
        let s = FaultStorage::new();
        let dir = Path::new("/p");
        s.create_dir_all(dir).unwrap();
        let mut seg = Segment::create(&s, dir, 0).unwrap();
        append(&mut seg, 20);
        seg.seal().unwrap();
        let trust = OpenMode::Trust {
            next_base: Some(20),
        };
        let (ok, cut) = Segment::open(&s, dir, 0, trust, 512).unwrap();
        assert!(cut.is_none());
        assert_eq!((ok.size, ok.max_timestamp), (seg.size, 19));
        // A next segment that starts before this one's index ends is caught,
        // and the segment is revalidated instead of trusted.
        let (re, _) =
            Segment::open(&s, dir, 0, OpenMode::Trust { next_base: Some(3) }, 512).unwrap();
        assert_eq!(re.next_offset, 20);
    }
}
