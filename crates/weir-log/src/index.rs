//! Sparse segment indexes: `.index` (relative offset -> byte position) and
//! `.timeindex` (max timestamp so far -> relative offset). Both are flat
//! arrays of fixed-size big-endian entries sorted by key, Kafka's layout.
//!
//! The active segment keeps its entries in memory and writes them out when
//! it is sealed or the log is closed; a sealed segment's index is searched
//! on disk with positional reads, so memory does not grow with the log.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::{Storage, StorageFile};

/// A fixed-size index entry.
pub(crate) trait Entry: Copy + fmt::Debug + PartialEq {
    /// Encoded size.
    const SIZE: usize;
    /// Sort key.
    type Key: Ord + Copy;
    fn key(&self) -> Self::Key;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(b: &[u8]) -> Self;
}

/// `.index` entry: a batch starting at `position` has base offset
/// `segment base + relative_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;
    type Key = u32;
    fn key(&self) -> u32 {
        self.relative_offset
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// `.timeindex` entry: no batch before the one with base offset
/// `segment base + relative_offset` has a timestamp of `timestamp` or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;
    type Key = i64;
    fn key(&self) -> i64 {
        self.timestamp
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        Self {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// One index file.
pub(crate) struct Index<E: Entry> {
    pub path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    /// All entries while the segment is active; `None` once sealed.
    mem: Option<Vec<E>>,
    /// Number of entries.
    count: usize,
    /// Entries already written to the file.
    persisted: usize,
}

impl<E: Entry> fmt::Debug for Index<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("count", &self.count)
            .field("in_memory", &self.mem.is_some())
            .finish()
    }
}

impl<E: Entry> Index<E> {
    /// A new empty index for an active segment (truncating any old file).
    pub fn create(storage: &dyn Storage, path: &Path) -> io::Result<Self> {
        let file = storage.open(path, true)?;
        file.set_len(0)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            mem: Some(Vec::new()),
            count: 0,
            persisted: 0,
        })
    }

    /// Opens an existing index. `active` loads it into memory. Returns a
    /// reason when the file is missing or visibly damaged (the caller
    /// rebuilds it from the log).
    pub fn open(storage: &dyn Storage, path: &Path, active: bool) -> Result<Self, String> {
        if !storage.exists(path) {
            return Err("missing".to_owned());
        }
        let file = storage.open(path, false).map_err(|e| e.to_string())?;
        let len = file.len().map_err(|e| e.to_string())? as usize;
        if !len.is_multiple_of(E::SIZE) {
            return Err(format!("length {len} is not a multiple of {}", E::SIZE));
        }
        let count = len / E::SIZE;
        let mem = if active {
            let mut raw = vec![0u8; len];
            file.read_exact_at(&mut raw, 0).map_err(|e| e.to_string())?;
            let entries: Vec<E> = raw.chunks_exact(E::SIZE).map(E::decode).collect();
            if entries.windows(2).any(|w| w[0].key() >= w[1].key()) {
                return Err("entries out of order".to_owned());
            }
            Some(entries)
        } else {
            None
        };
        Ok(Self {
            path: path.to_owned(),
            file,
            mem,
            count,
            persisted: count,
        })
    }

    /// Whether entries are held in memory (the segment is active).
    pub fn in_memory(&self) -> bool {
        self.mem.is_some()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Adds an entry (active segments only). Keys must increase.
    /// Adds an entry. Ignored on a sealed index or out of order (neither
    /// happens: the log only appends to its active segment, with growing
    /// keys), so a bug here costs an index entry, never a panic.
    pub fn push(&mut self, e: E) {
        let Some(mem) = self.mem.as_mut() else {
            debug_assert!(false, "push on a sealed index");
            return;
        };
        if mem.last().is_some_and(|l| l.key() >= e.key()) {
            debug_assert!(false, "index entries out of order");
            return;
        }
        mem.push(e);
        self.count += 1;
    }

    pub fn get(&self, i: usize) -> io::Result<E> {
        match &self.mem {
            Some(mem) => Ok(mem[i]),
            None => {
                let mut buf = [0u8; 16];
                let buf = &mut buf[..E::SIZE];
                self.file.read_exact_at(buf, (i * E::SIZE) as u64)?;
                Ok(E::decode(buf))
            }
        }
    }

    pub fn last(&self) -> io::Result<Option<E>> {
        if self.count == 0 {
            return Ok(None);
        }
        self.get(self.count - 1).map(Some)
    }

    /// The entry with the largest key not above `key`.
    pub fn lookup(&self, key: E::Key) -> io::Result<Option<E>> {
        if let Some(mem) = &self.mem {
            let n = mem.partition_point(|e| e.key() <= key);
            return Ok(n.checked_sub(1).map(|i| mem[i]));
        }
        // Binary search on disk: about log2(count) positional reads.
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.get(mid)?.key() <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        match lo.checked_sub(1) {
            Some(i) => self.get(i).map(Some),
            None => Ok(None),
        }
    }

    /// Writes entries not yet on file. Does not sync.
    pub fn persist(&mut self) -> io::Result<()> {
        let Some(mem) = &self.mem else { return Ok(()) };
        if self.persisted == self.count {
            return Ok(());
        }
        let mut buf = Vec::with_capacity((self.count - self.persisted) * E::SIZE);
        for e in &mem[self.persisted..] {
            e.encode(&mut buf);
        }
        let at = (self.persisted * E::SIZE) as u64;
        if let Err(e) = self.file.write_all_at(&buf, at) {
            // Leave the file as it was; the entries stay in memory for a retry.
            let _ = self.file.set_len(at);
            return Err(e);
        }
        self.persisted = self.count;
        Ok(())
    }

    /// Writes everything out and drops the in-memory copy.
    #[cfg(test)]
    pub fn seal(&mut self) -> io::Result<()> {
        self.persist()?;
        self.drop_memory();
        Ok(())
    }

    /// Drops the in-memory copy; lookups then read the file. Only call once
    /// every entry is persisted.
    pub fn drop_memory(&mut self) {
        debug_assert_eq!(
            self.persisted, self.count,
            "dropping unpersisted index entries"
        );
        self.mem = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FaultStorage;

    fn setup() -> (FaultStorage, PathBuf) {
        let s = FaultStorage::new();
        s.create_dir_all(Path::new("/p")).unwrap();
        (s, PathBuf::from("/p/0.index"))
    }

    #[test]
    fn lookup_in_memory_and_on_disk_agree() {
        let (s, path) = setup();
        let mut idx = Index::<OffsetEntry>::create(&s, &path).unwrap();
        for i in 1..100u32 {
            idx.push(OffsetEntry {
                relative_offset: i * 10,
                position: i * 4096,
            });
        }
        let probes = [0u32, 9, 10, 11, 500, 990, 5000];
        let mem: Vec<_> = probes.iter().map(|&k| idx.lookup(k).unwrap()).collect();
        assert_eq!(mem[0], None);
        assert_eq!(mem[2].unwrap().position, 4096);
        assert_eq!(mem[4].unwrap().relative_offset, 500);
        assert_eq!(mem[6].unwrap().relative_offset, 990);
        idx.seal().unwrap();
        let disk: Vec<_> = probes.iter().map(|&k| idx.lookup(k).unwrap()).collect();
        assert_eq!(mem, disk);
        let reopened = Index::<OffsetEntry>::open(&s, &path, false).unwrap();
        assert_eq!(reopened.len(), 99);
        let again: Vec<_> = probes
            .iter()
            .map(|&k| reopened.lookup(k).unwrap())
            .collect();
        assert_eq!(mem, again);
    }

    #[test]
    fn damaged_files_are_reported() {
        let (s, path) = setup();
        assert!(Index::<TimeEntry>::open(&s, &path, true).is_err());
        let mut idx = Index::<TimeEntry>::create(&s, &path).unwrap();
        idx.push(TimeEntry {
            timestamp: 5,
            relative_offset: 1,
        });
        idx.push(TimeEntry {
            timestamp: 9,
            relative_offset: 2,
        });
        idx.persist().unwrap();
        let mut raw = s.contents(&path).unwrap();
        raw.truncate(20);
        s.set_contents(&path, raw.clone());
        assert!(
            Index::<TimeEntry>::open(&s, &path, true)
                .unwrap_err()
                .contains("multiple")
        );
        // Swap the two entries: out of order.
        let mut swapped = raw[..0].to_vec();
        let full = {
            let mut v = Vec::new();
            TimeEntry {
                timestamp: 9,
                relative_offset: 2,
            }
            .encode(&mut v);
            TimeEntry {
                timestamp: 5,
                relative_offset: 1,
            }
            .encode(&mut v);
            v
        };
        swapped.extend_from_slice(&full);
        s.set_contents(&path, swapped);
        assert!(
            Index::<TimeEntry>::open(&s, &path, true)
                .unwrap_err()
                .contains("order")
        );
    }

    #[test]
    fn persist_survives_disk_full_and_retries() {
        let (s, path) = setup();
        let mut idx = Index::<OffsetEntry>::create(&s, &path).unwrap();
        for i in 0..10u32 {
            idx.push(OffsetEntry {
                relative_offset: i,
                position: i,
            });
        }
        s.set_capacity(Some(20));
        assert!(idx.persist().is_err());
        assert_eq!(s.contents(&path).unwrap().len(), 0);
        s.set_capacity(None);
        idx.persist().unwrap();
        assert_eq!(s.contents(&path).unwrap().len(), 80);
    }
}
