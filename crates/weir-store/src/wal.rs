//! A database's write-ahead log: segments `<seq:020>.wal` in one
//! directory, each a run of `weir_log::frames` (length, CRC-32C, body).
//! [`Wal::append`] returns once its frame is on disk; appenders that
//! arrive while a sync runs share the next one (group commit), so many
//! small writers cost one fsync. A flush of the write buffers ends with
//! [`Wal::roll`] (later frames go to a new segment) and, once the files
//! are in the manifest, [`Wal::remove_before`] drops the segments they
//! cover. [`Wal::open`] replays every frame from a position, cutting a
//! torn or corrupt tail (a crash mid-append) with a warning, never
//! refusing to start because of one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use weir_log::{Storage, StorageFile, frames};

/// Largest frame body (one write request's rows).
pub const MAX_BODY: usize = 256 << 20;

/// A place in the log: the segment and the byte offset in it; replay from
/// a position starts with the frame there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Position {
    /// Segment sequence number (from 1).
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

/// A failure of the log, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The disk said no (a full disk is `StorageFull`).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A body over [`MAX_BODY`].
    #[error("a write of {0} bytes is larger than the log takes ({MAX_BODY})")]
    TooLarge(usize),
}

impl WalError {
    /// Whether the disk is full.
    pub fn is_full(&self) -> bool {
        matches!(self, WalError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

fn name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

fn parse(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

#[derive(Debug)]
struct Inner {
    file: Arc<dyn StorageFile>,
    segment: u64,
    /// Bytes in the current segment.
    written: u64,
    /// Bytes appended since open, over all segments (the group commit's
    /// clock), and how many of them are synced.
    appended: u64,
    synced: u64,
    syncing: bool,
}

/// The write-ahead log of one database.
#[derive(Debug)]
pub struct Wal {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    inner: Mutex<Inner>,
    synced: Condvar,
}

/// A frame read back at open: where it starts and its body.
pub type Replayed = (Position, Vec<u8>);

impl Wal {
    /// Opens (or creates) the log in `dir`; returns it and every frame
    /// from `from` on, in order. Appends continue at the end of the last
    /// segment.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: impl Into<PathBuf>,
        from: Position,
    ) -> Result<(Self, Vec<Replayed>), WalError> {
        let dir = dir.into();
        storage.create_dir_all(&dir).map_err(io(&dir))?;
        let mut segments: Vec<u64> = storage
            .list(&dir)
            .map_err(io(&dir))?
            .iter()
            .filter_map(|n| parse(n))
            .collect();
        segments.sort_unstable();
        let mut replayed = Vec::new();
        let mut last: Option<(u64, Arc<dyn StorageFile>, u64)> = None;
        for &seq in &segments {
            let path = dir.join(name(seq));
            let file = storage.open(&path, false).map_err(io(&path))?;
            let len = file.len().map_err(io(&path))?;
            let mut data = vec![0u8; len as usize];
            file.read_exact_at(&mut data, 0).map_err(io(&path))?;
            let (found, valid) = frames::scan(&data, 0, MAX_BODY);
            if valid < len {
                tracing::warn!(path = %path.display(), at = valid, cut = len - valid, "store write-ahead log: cutting a torn or corrupt tail");
                file.set_len(valid).map_err(io(&path))?;
                file.sync_data().map_err(io(&path))?;
            }
            if seq >= from.segment {
                for (pos, body) in found {
                    if seq == from.segment && pos < from.offset {
                        continue;
                    }
                    replayed.push((
                        Position {
                            segment: seq,
                            offset: pos,
                        },
                        data[body].to_vec(),
                    ));
                }
            }
            last = Some((seq, file, valid));
        }
        let (segment, file, written) = match last {
            Some(l) => l,
            None => {
                let seq = from.segment.max(1);
                let path = dir.join(name(seq));
                let file = storage.open(&path, true).map_err(io(&path))?;
                storage.sync_dir(&dir).map_err(io(&dir))?;
                (seq, file, 0)
            }
        };
        let wal = Self {
            storage,
            dir,
            inner: Mutex::new(Inner {
                file,
                segment,
                written,
                appended: 0,
                synced: 0,
                syncing: false,
            }),
            synced: Condvar::new(),
        };
        Ok((wal, replayed))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The position the next frame will get.
    pub fn end(&self) -> Position {
        let g = self.lock();
        Position {
            segment: g.segment,
            offset: g.written,
        }
    }

    /// Appends one frame and returns its position once it is durable. On
    /// an error the frame is not in the log (a partial write is cut back).
    pub fn append(&self, body: &[u8]) -> Result<Position, WalError> {
        if body.len() > MAX_BODY {
            return Err(WalError::TooLarge(body.len()));
        }
        let frame = frames::encode(body);
        let mut g = self.lock();
        let at = Position {
            segment: g.segment,
            offset: g.written,
        };
        let path = self.dir.join(name(g.segment));
        if let Err(e) = g.file.write_all_at(&frame, g.written) {
            let _ = g.file.set_len(g.written);
            return Err(io(&path)(e));
        }
        g.written += frame.len() as u64;
        g.appended += frame.len() as u64;
        let mine = g.appended;
        loop {
            if g.synced >= mine {
                return Ok(at);
            }
            if g.syncing {
                g = self.synced.wait(g).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // This appender syncs for everyone written so far.
            g.syncing = true;
            let target = g.appended;
            let file = g.file.clone();
            drop(g);
            let done = file.sync_data();
            g = self.lock();
            g.syncing = false;
            if done.is_ok() {
                g.synced = g.synced.max(target);
            }
            self.synced.notify_all();
            done.map_err(io(&path))?;
        }
    }

    /// Starts a new segment: later frames go there. Returns its first
    /// position (a flush of the write buffers covers everything before).
    pub fn roll(&self) -> Result<Position, WalError> {
        let mut g = self.lock();
        let old = self.dir.join(name(g.segment));
        g.file.sync_data().map_err(io(&old))?;
        g.synced = g.appended;
        let seq = g.segment + 1;
        let path = self.dir.join(name(seq));
        let file = self.storage.open(&path, true).map_err(io(&path))?;
        self.storage.sync_dir(&self.dir).map_err(io(&self.dir))?;
        g.file = file;
        g.segment = seq;
        g.written = 0;
        self.synced.notify_all();
        Ok(Position {
            segment: seq,
            offset: 0,
        })
    }

    /// Removes the segments wholly before `pos` (their frames are in
    /// files the manifest lists).
    pub fn remove_before(&self, pos: Position) -> Result<(), WalError> {
        for n in self.storage.list(&self.dir).map_err(io(&self.dir))? {
            if parse(&n).is_some_and(|seq| seq < pos.segment) {
                let path = self.dir.join(&n);
                self.storage.remove(&path).map_err(io(&path))?;
            }
        }
        self.storage.sync_dir(&self.dir).map_err(io(&self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_log::FaultStorage;

    fn open(s: &FaultStorage, from: Position) -> (Wal, Vec<Replayed>) {
        Wal::open(Arc::new(s.clone()), "/db/wal", from).unwrap()
    }

    fn bodies(r: &[Replayed]) -> Vec<Vec<u8>> {
        r.iter().map(|(_, b)| b.clone()).collect()
    }

    #[test]
    fn frames_replay_in_order_across_segments_and_from_a_position() {
        let s = FaultStorage::new();
        let (wal, none) = open(&s, Position::default());
        assert!(none.is_empty());
        let a = wal.append(b"a").unwrap();
        wal.append(b"b").unwrap();
        let next = wal.roll().unwrap();
        let c = wal.append(b"c").unwrap();
        assert_eq!(c, next);
        drop(wal);
        let (wal, all) = open(&s, Position::default());
        assert_eq!(bodies(&all), [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(all[0].0, a);
        let (_, later) = open(&s, next);
        assert_eq!(bodies(&later), [b"c".to_vec()]);
        // Appends go on after the last frame; old segments go.
        wal.append(b"d").unwrap();
        wal.remove_before(next).unwrap();
        drop(wal);
        let (_, rest) = open(&s, Position::default());
        assert_eq!(bodies(&rest), [b"c".to_vec(), b"d".to_vec()]);
    }

    #[test]
    fn a_power_cut_keeps_every_acknowledged_frame_and_cuts_a_torn_one() {
        for changes in 0..12u64 {
            let s = FaultStorage::new();
            let (wal, _) = open(&s, Position::default());
            let mut acked = Vec::new();
            s.fail_after_changes(Some(changes));
            for i in 0..6u8 {
                if wal.append(&[i; 100]).is_ok() {
                    acked.push(vec![i; 100]);
                }
                if i == 2 {
                    let _ = wal.roll();
                }
            }
            drop(wal);
            s.fail_after_changes(None);
            s.crash();
            let (wal, got) = open(&s, Position::default());
            let got = bodies(&got);
            // Everything acknowledged survived, in order; at most frames
            // whose append failed come on top (written, not known synced).
            let mut it = got.iter();
            for a in &acked {
                assert!(it.any(|g| g == a), "{changes}: lost {:?}", a[0]);
            }
            // The log takes writes again.
            wal.append(b"after").unwrap();
        }
    }

    #[test]
    fn a_full_disk_fails_the_write_and_leaves_the_log_whole() {
        let s = FaultStorage::new();
        let (wal, _) = open(&s, Position::default());
        wal.append(&[1; 100]).unwrap();
        s.set_capacity(Some(s.used() + 50));
        let e = wal.append(&[2; 100]).unwrap_err();
        assert!(e.is_full(), "{e}");
        s.set_capacity(None);
        wal.append(&[3; 100]).unwrap();
        drop(wal);
        let (_, got) = open(&s, Position::default());
        assert_eq!(bodies(&got), [vec![1; 100], vec![3; 100]]);
    }

    #[test]
    fn concurrent_appenders_share_syncs() {
        let s = FaultStorage::new();
        s.set_sync_delay(Some(std::time::Duration::from_millis(5)));
        let (wal, _) = open(&s, Position::default());
        let wal = Arc::new(wal);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    for i in 0..20u8 {
                        wal.append(&[t, i]).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let syncs = s.stats().syncs.load(std::sync::atomic::Ordering::Relaxed);
        assert!(syncs < 160, "{syncs} syncs for 160 appends");
        drop(wal);
        let (_, got) = open(&s, Position::default());
        assert_eq!(got.len(), 160);
    }
}
