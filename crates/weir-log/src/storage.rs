//! The storage seam: the handful of file and directory operations the log
//! needs, so that the real file system, an in-memory store and a
//! fault-injecting store all run the same log code and the same tests.
//!
//! Every method is positional (`read_at` / `write_at`): a file handle is
//! shared between the appender, readers and the flusher without a cursor.
//! `write_at` writes the whole buffer or fails; after a failure some prefix
//! of the buffer may have reached the file, and the caller is expected to
//! cut it with `set_len` (see `Segment::append`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// An open file of the log (segment data or an index).
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; fails with `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`. On error a prefix may have been written.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
}

/// Directory-level operations and the opening of files.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Opens a file for reading and writing, creating it when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (not full paths).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Removes a file. Removing a missing file is not an error.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file, replacing the target.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Whether a file exists.
    fn exists(&self, path: &Path) -> bool;
    /// Makes the directory's entries (creations, removals, renames) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

#[derive(Debug)]
struct FsFile(File);

impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.0, buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for FsStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(FsFile(file)))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// An in-memory store that remembers what was written and what was synced,
/// and can fail on purpose. Used by the crash, disk-full and model tests.
///
/// * File contents: every file keeps its current bytes and the bytes as of
///   its last `sync_data`. [`FaultStorage::crash`] throws away everything
///   that was not synced, as a power cut would.
/// * Directory entries: a file created, removed or renamed is only durable
///   once its directory is synced; a crash restores the last synced listing.
/// * Capacity: with [`FaultStorage::set_capacity`] the store holds at most
///   that many bytes over all files; a write that does not fit writes what
///   fits and fails with `StorageFull` (ENOSPC), like a real file system.
/// * Failing fsync and slow fsync can be switched on.
#[derive(Debug, Clone, Default)]
pub struct FaultStorage {
    inner: Arc<Mutex<FaultState>>,
    stats: Arc<FaultStats>,
}

/// Counters of a [`FaultStorage`].
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Calls to `sync_data`.
    pub syncs: AtomicU64,
    /// Bytes returned by `read_exact_at`.
    pub bytes_read: AtomicU64,
    /// Bytes written by `write_all_at`.
    pub bytes_written: AtomicU64,
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Current directory entries.
    files: BTreeMap<PathBuf, Arc<Mutex<Inode>>>,
    /// Directory entries as of each directory's last sync.
    durable: BTreeMap<PathBuf, Arc<Mutex<Inode>>>,
    dirs: BTreeSet<PathBuf>,
    capacity: Option<u64>,
    fail_sync: bool,
    sync_delay: Option<Duration>,
    /// Changes (writes, syncs, creates, removes, renames) still allowed
    /// before every later one fails, as if the process had died there.
    changes_left: Option<u64>,
}

impl FaultState {
    fn used(&self) -> u64 {
        self.files.values().map(|f| lock(f).data.len() as u64).sum()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
struct FaultFile {
    inode: Arc<Mutex<Inode>>,
    store: FaultStorage,
}

impl FaultStorage {
    /// A new, empty store with no capacity limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits the total bytes of all files (`None`: unlimited).
    pub fn set_capacity(&self, capacity: Option<u64>) {
        lock(&self.inner).capacity = capacity;
    }

    /// Bytes currently held over all files.
    pub fn used(&self) -> u64 {
        lock(&self.inner).used()
    }

    /// Makes every later `sync_data` fail with an I/O error.
    pub fn set_fail_sync(&self, fail: bool) {
        lock(&self.inner).fail_sync = fail;
    }

    /// After `changes` more changes (a write, truncate, fsync, file
    /// creation, removal, rename or directory sync), every change fails
    /// with an I/O error: the process "died" at that step. Follow with
    /// [`FaultStorage::crash`] and reopen to test recovery from every
    /// step of an operation. `None` lifts it.
    pub fn fail_after_changes(&self, changes: Option<u64>) {
        lock(&self.inner).changes_left = changes;
    }

    /// An independent copy of the store as it is now (current and durable
    /// contents alike), for running one scenario many times from the same
    /// starting point.
    pub fn clone_deep(&self) -> Self {
        let st = lock(&self.inner);
        type Shared = Arc<Mutex<Inode>>;
        let mut copies: Vec<(Shared, Shared)> = Vec::new();
        let mut copy = |inode: &Arc<Mutex<Inode>>| {
            if let Some((_, c)) = copies.iter().find(|(o, _)| Arc::ptr_eq(o, inode)) {
                return c.clone();
            }
            let i = lock(inode);
            let c = Arc::new(Mutex::new(Inode {
                data: i.data.clone(),
                synced: i.synced.clone(),
            }));
            copies.push((inode.clone(), c.clone()));
            c
        };
        let files = st.files.iter().map(|(p, i)| (p.clone(), copy(i))).collect();
        let durable = st
            .durable
            .iter()
            .map(|(p, i)| (p.clone(), copy(i)))
            .collect();
        Self {
            inner: Arc::new(Mutex::new(FaultState {
                files,
                durable,
                dirs: st.dirs.clone(),
                capacity: st.capacity,
                fail_sync: st.fail_sync,
                sync_delay: st.sync_delay,
                changes_left: None,
            })),
            stats: Arc::default(),
        }
    }

    /// Counts one change; fails once the budget of
    /// [`FaultStorage::fail_after_changes`] is spent.
    fn change(&self) -> io::Result<()> {
        let mut st = lock(&self.inner);
        match &mut st.changes_left {
            None => Ok(()),
            Some(0) => Err(io::Error::other("injected crash: no more changes")),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
        }
    }

    /// Makes every `sync_data` take at least this long.
    pub fn set_sync_delay(&self, delay: Option<Duration>) {
        lock(&self.inner).sync_delay = delay;
    }

    /// Counters of calls and bytes.
    pub fn stats(&self) -> &FaultStats {
        &self.stats
    }

    /// Simulates a power cut: every file returns to its last synced
    /// contents and every directory to its last synced listing.
    /// Open handles from before the crash must not be used afterwards.
    pub fn crash(&self) {
        let mut st = lock(&self.inner);
        let mut files = BTreeMap::new();
        for (path, inode) in &st.durable {
            let synced = lock(inode).synced.clone();
            files.insert(
                path.clone(),
                Arc::new(Mutex::new(Inode {
                    data: synced.clone(),
                    synced,
                })),
            );
        }
        st.durable = files.clone();
        st.files = files;
    }

    /// Length a file would have after a crash now, if it would survive.
    pub fn synced_len(&self, path: &Path) -> Option<u64> {
        let st = lock(&self.inner);
        let durable = st.durable.get(path)?;
        let current = st.files.get(path)?;
        if !Arc::ptr_eq(durable, current) {
            return None;
        }
        Some(lock(current).synced.len() as u64)
    }

    /// Current contents of a file.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = lock(&self.inner);
        st.files.get(path).map(|f| lock(f).data.clone())
    }

    /// Replaces the contents of a file (for corruption tests). The new
    /// contents count as synced.
    pub fn set_contents(&self, path: &Path, data: Vec<u8>) {
        let st = lock(&self.inner);
        if let Some(f) = st.files.get(path) {
            let mut f = lock(f);
            f.synced = data.clone();
            f.data = data;
        }
    }
}

fn storage_full() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "no space left on device")
}

impl StorageFile for FaultFile {
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.inode).data.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let inode = lock(&self.inode);
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        if end > inode.data.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "failed to fill whole buffer",
            ));
        }
        buf.copy_from_slice(&inode.data[start..end]);
        self.store
            .stats
            .bytes_read
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.store.change()?;
        let st = lock(&self.store.inner);
        let used = st.used();
        let capacity = st.capacity;
        drop(st);
        let mut inode = lock(&self.inode);
        let start = offset as usize;
        let end = start + buf.len();
        let grow = end.saturating_sub(inode.data.len()) as u64;
        let (fits, full) = match capacity {
            Some(cap) if used + grow > cap => {
                let room = cap.saturating_sub(used) as usize;
                // Write what fits (as a real file system does), then fail.
                let fits = (inode.data.len().saturating_sub(start) + room).min(buf.len());
                (fits, true)
            }
            _ => (buf.len(), false),
        };
        if inode.data.len() < start + fits {
            inode.data.resize(start + fits, 0);
        }
        inode.data[start..start + fits].copy_from_slice(&buf[..fits]);
        self.store
            .stats
            .bytes_written
            .fetch_add(fits as u64, Ordering::Relaxed);
        if full { Err(storage_full()) } else { Ok(()) }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.store.change()?;
        let mut inode = lock(&self.inode);
        let len = len as usize;
        if len > inode.data.len() {
            let st = lock(&self.store.inner);
            if let Some(cap) = st.capacity
                && st.used() + (len - inode.data.len()) as u64 > cap
            {
                return Err(storage_full());
            }
        }
        inode.data.resize(len, 0);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.store.change()?;
        let (fail, delay) = {
            let st = lock(&self.store.inner);
            (st.fail_sync, st.sync_delay)
        };
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        if fail {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.store.stats.syncs.fetch_add(1, Ordering::Relaxed);
        let mut inode = lock(&self.inode);
        inode.synced = inode.data.clone();
        Ok(())
    }
}

impl Storage for FaultStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        if create && !self.exists(path) {
            self.change()?;
        }
        let mut st = lock(&self.inner);
        let parent = path.parent().unwrap_or(Path::new(""));
        if !st.dirs.contains(parent) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        let inode = match st.files.get(path) {
            Some(inode) => inode.clone(),
            None if create => {
                let inode = Arc::new(Mutex::new(Inode::default()));
                st.files.insert(path.to_owned(), inode.clone());
                inode
            }
            None => return Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        };
        Ok(Arc::new(FaultFile {
            inode,
            store: self.clone(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = lock(&self.inner);
        for ancestor in path.ancestors() {
            st.dirs.insert(ancestor.to_owned());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = lock(&self.inner);
        if !st.dirs.contains(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(st
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.change()?;
        lock(&self.inner).files.remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.change()?;
        let mut st = lock(&self.inner);
        let inode = st
            .files
            .remove(from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
        st.files.insert(to.to_owned(), inode);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        lock(&self.inner).files.contains_key(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.change()?;
        let mut st = lock(&self.inner);
        let FaultState { files, durable, .. } = &mut *st;
        durable.retain(|p, _| p.parent() != Some(dir));
        for (p, inode) in files.iter() {
            if p.parent() == Some(dir) {
                durable.insert(p.clone(), inode.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (FaultStorage, PathBuf) {
        let s = FaultStorage::new();
        let dir = PathBuf::from("/d");
        s.create_dir_all(&dir).unwrap();
        (s, dir)
    }

    #[test]
    fn crash_keeps_only_synced_bytes_and_synced_entries() {
        let (s, dir) = store();
        let a = dir.join("a");
        let f = s.open(&a, true).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b" world", 5).unwrap();
        // The entry itself was never made durable: a crash loses the file.
        s.crash();
        assert!(!s.exists(&a));

        let f = s.open(&a, true).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        s.sync_dir(&dir).unwrap();
        f.write_all_at(b" world", 5).unwrap();
        assert_eq!(s.synced_len(&a), Some(5));
        s.crash();
        assert_eq!(s.contents(&a).unwrap(), b"hello");
    }

    #[test]
    fn unsynced_removal_comes_back_after_crash() {
        let (s, dir) = store();
        let a = dir.join("a");
        let f = s.open(&a, true).unwrap();
        f.write_all_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        s.sync_dir(&dir).unwrap();
        s.remove(&a).unwrap();
        assert!(!s.exists(&a));
        s.crash();
        assert_eq!(s.contents(&a).unwrap(), b"x");
    }

    #[test]
    fn capacity_writes_a_prefix_then_fails() {
        let (s, dir) = store();
        s.set_capacity(Some(8));
        let f = s.open(&dir.join("a"), true).unwrap();
        f.write_all_at(b"12345", 0).unwrap();
        let err = f.write_all_at(b"67890", 5).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(f.len().unwrap(), 8);
        f.set_len(5).unwrap();
        s.set_capacity(None);
        f.write_all_at(b"67890", 5).unwrap();
        assert_eq!(s.contents(&dir.join("a")).unwrap(), b"1234567890");
    }

    #[test]
    fn failing_sync_keeps_nothing_new_durable() {
        let (s, dir) = store();
        let a = dir.join("a");
        let f = s.open(&a, true).unwrap();
        s.sync_dir(&dir).unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        s.set_fail_sync(true);
        assert!(f.sync_data().is_err());
        assert_eq!(s.synced_len(&a), Some(0));
    }

    #[test]
    fn fs_storage_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let s = FsStorage;
        let p = tmp.path().join("f");
        let f = s.open(&p, true).unwrap();
        f.write_all_at(b"abcdef", 0).unwrap();
        let mut buf = [0u8; 3];
        f.read_exact_at(&mut buf, 2).unwrap();
        assert_eq!(&buf, b"cde");
        assert_eq!(
            f.read_exact_at(&mut buf, 5).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        f.sync_data().unwrap();
        s.sync_dir(tmp.path()).unwrap();
        assert_eq!(s.list(tmp.path()).unwrap(), vec!["f".to_owned()]);
        s.remove(&p).unwrap();
        s.remove(&p).unwrap();
        assert!(!s.exists(&p));
    }
}
