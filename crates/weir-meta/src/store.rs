//! The durable part of a metadata node: the Raft log, the vote and the
//! latest snapshot, in one directory, through `weir-log`'s storage seam
//! (so crash tests run on `FaultStorage`).
//!
//! * `log`: entries back to back, each `len u32 | crc32c u32 | index u64 |
//!   term u64 | payload`, big-endian, the CRC over everything after it.
//!   Appends are fsynced before they return. Opening scans the file,
//!   checks every entry and cuts a torn or corrupt tail (what a crash
//!   mid-append leaves); entries must have consecutive indexes.
//! * `purged`: the index and term of the last entry removed by a purge
//!   (entries at or below it live only in the snapshot). A purge rewrites
//!   `log` without them (temp file, fsync, rename, directory fsync), then
//!   writes `purged`.
//! * `vote` and `snapshot`: small files written atomically.
//!
//! The payload is opaque here: the Raft layer stores its entries in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_log::{Storage, StorageFile, frames};

const FRAME_HEAD: usize = frames::HEAD + 8 + 8;
/// Largest payload accepted (a metadata record batch is far smaller).
pub const MAX_PAYLOAD: usize = 64 << 20;

/// An I/O failure of the store, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct StoreError {
    /// The file.
    pub path: PathBuf,
    /// What failed.
    #[source]
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError {
        path: path.to_owned(),
        source,
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Raft log index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// The entry as the Raft layer encoded it.
    pub payload: Vec<u8>,
}

/// The log file and its in-memory index.
#[derive(Debug)]
pub struct MetaStore {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    log: Arc<dyn StorageFile>,
    /// (index, term, byte position) of every entry in the file.
    entries: Vec<(u64, u64, u64)>,
    size: u64,
    purged: Option<(u64, u64)>,
}

fn encode(e: &Entry) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + e.payload.len());
    body.extend_from_slice(&e.index.to_be_bytes());
    body.extend_from_slice(&e.term.to_be_bytes());
    body.extend_from_slice(&e.payload);
    frames::encode(&body)
}

fn read_all(file: &dyn StorageFile, path: &Path) -> Result<Vec<u8>, StoreError> {
    let len = file.len().map_err(err(path))?;
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).map_err(err(path))?;
    Ok(buf)
}

/// Parses whole, valid entries from the start of `data`; returns them as
/// (index, term, position) and the length of that valid prefix (entries
/// must have consecutive indexes).
fn scan(data: &[u8]) -> (Vec<(u64, u64, u64)>, u64) {
    let (found, mut valid) = frames::scan(data, 16, MAX_PAYLOAD + 16);
    let mut out: Vec<(u64, u64, u64)> = Vec::with_capacity(found.len());
    for (pos, body) in found {
        let body = &data[body];
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&body[at..at + 8]);
            u64::from_be_bytes(w)
        };
        let (index, term) = (word(0), word(8));
        if out.last().is_some_and(|&(i, _, _)| index != i + 1) {
            valid = pos;
            break;
        }
        out.push((index, term, pos));
    }
    (out, valid)
}

fn write_atomic(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    data: &[u8],
) -> Result<(), StoreError> {
    frames::write_atomic(storage, dir, name, data).map_err(err(&dir.join(name)))
}

fn read_small(storage: &dyn Storage, path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    if !storage.exists(path) {
        return Ok(None);
    }
    let f = storage.open(path, false).map_err(err(path))?;
    read_all(&*f, path).map(Some)
}

impl MetaStore {
    /// Opens (or creates) the store in `dir`, cutting a torn tail.
    pub fn open(storage: Arc<dyn Storage>, dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        storage.create_dir_all(&dir).map_err(err(&dir))?;
        for name in storage.list(&dir).map_err(err(&dir))? {
            if name.ends_with(".tmp") {
                let p = dir.join(name);
                storage.remove(&p).map_err(err(&p))?;
            }
        }
        let path = dir.join("log");
        let log = storage.open(&path, true).map_err(err(&path))?;
        let data = read_all(&*log, &path)?;
        let (entries, valid) = scan(&data);
        if valid < data.len() as u64 {
            tracing::warn!(path = %path.display(), at = valid, cut = data.len() as u64 - valid, "metadata log: cutting a torn or corrupt tail");
            log.set_len(valid).map_err(err(&path))?;
            log.sync_data().map_err(err(&path))?;
        }
        let purged = read_small(&*storage, &dir.join("purged"))?.and_then(|d| {
            let t = String::from_utf8(d).ok()?;
            let (i, term) = t.trim().split_once(' ')?;
            Some((i.parse().ok()?, term.parse().ok()?))
        });
        storage.sync_dir(&dir).map_err(err(&dir))?;
        Ok(Self {
            storage,
            dir,
            log,
            entries,
            size: valid,
            purged,
        })
    }

    /// (index, term) of the last entry, or of the last purged one.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.entries.last().map(|&(i, t, _)| (i, t)).or(self.purged)
    }

    /// (index, term) of the last purged entry.
    pub fn purged(&self) -> Option<(u64, u64)> {
        self.purged
    }

    /// Appends entries (their indexes must follow the last one) and syncs.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let path = self.dir.join("log");
        let first = self
            .last()
            .map_or(entries.first().map_or(0, |e| e.index), |(i, _)| i + 1);
        let mut buf = Vec::new();
        let mut added = Vec::new();
        for (expected, e) in (first..).zip(entries) {
            if e.index != expected || e.payload.len() > MAX_PAYLOAD {
                return Err(StoreError {
                    path,
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "entry {} does not follow {}",
                            e.index,
                            expected.saturating_sub(1)
                        ),
                    ),
                });
            }
            added.push((e.index, e.term, self.size + buf.len() as u64));
            buf.extend_from_slice(&encode(e));
        }
        if buf.is_empty() {
            return Ok(());
        }
        let written = self
            .log
            .write_all_at(&buf, self.size)
            .and_then(|()| self.log.sync_data());
        if let Err(e) = written {
            // Nothing after the old end counts; cut what may have landed.
            let _ = self.log.set_len(self.size);
            return Err(StoreError { path, source: e });
        }
        self.size += buf.len() as u64;
        self.entries.extend(added);
        Ok(())
    }

    /// Entries with indexes in `from..to` that are in the file.
    pub fn read(&self, from: u64, to: u64) -> Result<Vec<Entry>, StoreError> {
        let path = self.dir.join("log");
        let mut out = Vec::new();
        let start = self.entries.partition_point(|&(i, _, _)| i < from);
        for (k, &(index, term, pos)) in self.entries.iter().enumerate().skip(start) {
            if index >= to {
                break;
            }
            let end = self.entries.get(k + 1).map_or(self.size, |e| e.2);
            let mut buf = vec![0u8; (end - pos) as usize];
            self.log.read_exact_at(&mut buf, pos).map_err(err(&path))?;
            out.push(Entry {
                index,
                term,
                payload: buf[FRAME_HEAD..].to_vec(),
            });
        }
        Ok(out)
    }

    /// Removes the entries at `index` and after (a conflicting suffix).
    pub fn truncate(&mut self, index: u64) -> Result<(), StoreError> {
        let path = self.dir.join("log");
        let keep = self.entries.partition_point(|&(i, _, _)| i < index);
        if keep == self.entries.len() {
            return Ok(());
        }
        let at = self.entries[keep].2;
        self.log
            .set_len(at)
            .and_then(|()| self.log.sync_data())
            .map_err(err(&path))?;
        self.entries.truncate(keep);
        self.size = at;
        Ok(())
    }

    /// Removes the entries at or below `index` (they are in a snapshot).
    pub fn purge(&mut self, index: u64) -> Result<(), StoreError> {
        let cut = self.entries.partition_point(|&(i, _, _)| i <= index);
        let term = match cut.checked_sub(1).map(|k| self.entries[k].1) {
            Some(t) => t,
            None => return Ok(()),
        };
        let from = self.entries.get(cut).map_or(self.size, |e| e.2);
        let path = self.dir.join("log");
        let mut rest = vec![0u8; (self.size - from) as usize];
        self.log
            .read_exact_at(&mut rest, from)
            .map_err(err(&path))?;
        // `purged` first: if the rewrite does not happen, the entries it
        // names are still in the log and are skipped at the next purge.
        write_atomic(
            &*self.storage,
            &self.dir,
            "purged",
            format!("{index} {term}\n").as_bytes(),
        )?;
        write_atomic(&*self.storage, &self.dir, "log", &rest)?;
        self.log = self.storage.open(&path, false).map_err(err(&path))?;
        self.entries.drain(..cut);
        for e in &mut self.entries {
            e.2 -= from;
        }
        self.size -= from;
        self.purged = Some((index, term));
        Ok(())
    }

    /// Saves a small named file (`[a-z-]+`) durably and atomically.
    pub fn save_file(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        write_atomic(&*self.storage, &self.dir, name, data)
    }

    /// A small named file saved by [`MetaStore::save_file`].
    pub fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        read_small(&*self.storage, &self.dir.join(name))
    }

    /// Saves the vote (opaque bytes) durably.
    pub fn save_vote(&self, vote: &[u8]) -> Result<(), StoreError> {
        write_atomic(&*self.storage, &self.dir, "vote", vote)
    }

    /// The saved vote.
    pub fn vote(&self) -> Result<Option<Vec<u8>>, StoreError> {
        read_small(&*self.storage, &self.dir.join("vote"))
    }

    /// Saves the snapshot (opaque bytes) durably.
    pub fn save_snapshot(&self, snapshot: &[u8]) -> Result<(), StoreError> {
        write_atomic(&*self.storage, &self.dir, "snapshot", snapshot)
    }

    /// The saved snapshot.
    pub fn snapshot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        read_small(&*self.storage, &self.dir.join("snapshot"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_log::FaultStorage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            payload: format!("entry {index}")
                .repeat((index % 7) as usize + 1)
                .into_bytes(),
        }
    }

    fn open(s: &FaultStorage) -> MetaStore {
        MetaStore::open(Arc::new(s.clone()) as Arc<dyn Storage>, "/meta").unwrap()
    }

    #[test]
    fn append_read_truncate_purge_and_reopen() {
        let s = FaultStorage::new();
        let mut m = open(&s);
        assert_eq!(m.last(), None);
        m.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        assert!(m.append(&[entry(12, 1)]).is_err(), "a hole is refused");
        assert_eq!(
            m.read(3, 6).unwrap(),
            (3..6).map(|i| entry(i, 1)).collect::<Vec<_>>()
        );
        m.truncate(8).unwrap();
        m.append(&[entry(8, 2), entry(9, 2)]).unwrap();
        assert_eq!(m.last(), Some((9, 2)));
        m.purge(4).unwrap();
        assert_eq!(m.read(0, 100).unwrap().first().unwrap().index, 5);
        m.save_vote(b"term 2 voted 1").unwrap();
        m.save_snapshot(b"image").unwrap();
        drop(m);
        s.crash();
        let m = open(&s);
        assert_eq!(m.last(), Some((9, 2)));
        assert_eq!(m.purged(), Some((4, 1)));
        let all = m.read(0, 100).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[3], entry(8, 2));
        assert_eq!(m.vote().unwrap().unwrap(), b"term 2 voted 1");
        assert_eq!(m.snapshot().unwrap().unwrap(), b"image");
        // Purging everything leaves the last purged id as the last.
        let mut m = m;
        m.purge(9).unwrap();
        assert_eq!(m.last(), Some((9, 2)));
        m.append(&[entry(10, 3)]).unwrap();
        assert_eq!(m.read(0, 100).unwrap(), [entry(10, 3)]);
    }

    #[test]
    fn a_crash_at_every_step_keeps_every_synced_entry_and_a_valid_prefix() {
        // Template: 20 entries written; then append 10 more, truncate and
        // purge, with a crash after each possible number of changes.
        let template = FaultStorage::new();
        {
            let mut m = open(&template);
            m.append(&(1..=20).map(|i| entry(i, 1)).collect::<Vec<_>>())
                .unwrap();
        }
        let mut step = 0;
        loop {
            assert!(step < 1000);
            let s = template.clone_deep();
            let mut m = open(&s);
            s.fail_after_changes(Some(step));
            let mut done = Vec::new();
            let ok = (|| {
                m.append(&(21..=30).map(|i| entry(i, 1)).collect::<Vec<_>>())?;
                done.push("append");
                m.truncate(26)?;
                done.push("truncate");
                m.append(&(26..=28).map(|i| entry(i, 2)).collect::<Vec<_>>())?;
                done.push("append2");
                m.purge(10)?;
                done.push("purge");
                Ok::<_, StoreError>(())
            })()
            .is_ok();
            s.fail_after_changes(None);
            drop(m);
            s.crash();
            let m = open(&s);
            let all = m.read(0, 1000).unwrap();
            // Consecutive, each entry exactly as written at its index.
            for w in all.windows(2) {
                assert_eq!(w[1].index, w[0].index + 1);
            }
            for e in &all {
                assert!(e.term == 1 || (e.term == 2 && (26..=28).contains(&e.index)));
                assert_eq!(e.payload, entry(e.index, e.term).payload);
            }
            let last = m.last().unwrap().0;
            // What returned Ok is durable.
            if done.contains(&"append") && !done.contains(&"truncate") {
                assert!(last >= 30, "step {step}: {last}");
            }
            if done.contains(&"append2") {
                assert_eq!(m.last(), Some((28, 2)), "step {step}");
            }
            if done.contains(&"purge") {
                assert_eq!(m.purged(), Some((10, 1)));
                assert_eq!(all.first().unwrap().index, 11);
            }
            assert!(last >= 20, "step {step}: the template's entries survive");
            if ok {
                break;
            }
            step += 1;
        }
        assert!(step > 5, "{step}");
    }

    #[test]
    fn garbage_and_torn_tails_are_cut() {
        let s = FaultStorage::new();
        {
            let mut m = open(&s);
            m.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
                .unwrap();
        }
        let path = Path::new("/meta/log");
        let mut data = s.contents(path).unwrap();
        let whole = data.len();
        data.extend_from_slice(&[0xff; 9]);
        s.set_contents(path, data.clone());
        assert_eq!(open(&s).last(), Some((5, 1)));
        assert_eq!(s.contents(path).unwrap().len(), whole);
        // A flipped byte in the third entry cuts from there.
        let mut data = s.contents(path).unwrap();
        let third = scan(&data).0[2].2 as usize;
        data[third + 20] ^= 1;
        s.set_contents(path, data);
        assert_eq!(open(&s).last(), Some((2, 1)));
    }
}
