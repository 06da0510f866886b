//! The `file` source: tails files matched by globs, the way Filebeat does.
//!
//! * A file's identity is its device and inode plus a CRC-32C fingerprint
//!   of its first line (at most `fingerprint_bytes` of it), so a file is
//!   identified as soon as its first line is complete, however short, and
//!   the same file gets the same id in every run (`<dev>-<ino>-<crc>-<len>`).
//!   Lines carry it in their origin (`file:<id>`), with the byte offset of
//!   the line and of the byte after it, which sinks use to store each line
//!   once.
//! * The registry (one JSON file per source) holds, per identity, the
//!   offset up to which every line has been stored by every sink. It is
//!   advanced only from the acknowledgement tracker and written atomically
//!   (temp file, fsync, rename, directory fsync), so a restart, even after
//!   SIGKILL, resumes at the first line not yet stored (at-least-once; sinks
//!   that keep positions make it exactly-once).
//! * Rotation: a renamed file keeps its identity and is read to its end
//!   through the open handle while the new file at the old path starts at
//!   0; a truncated file (copytruncate: size below the read position, or a
//!   changed fingerprint) starts again at 0 under a new id; a deleted or
//!   renamed-away file is closed once it has been idle at its end for
//!   `rotate_wait_ms`, its last unterminated line emitted.
//! * Files seen for the first time at start begin at `start_at`
//!   (`beginning` or `end`); files appearing later always begin at 0.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::ack::{AckRef, AckTracker, Origin, Positions};
use crate::event::{Event, Text, Value};

/// Settings of a `file` source.
#[derive(Debug, Clone, PartialEq)]
pub struct FileConfig {
    /// Globs of files to read (`*`, `?` and `[...]` within a path part).
    pub include: Vec<String>,
    /// Globs (matched against the file name or the whole path) to skip.
    pub exclude: Vec<String>,
    /// Where files seen at start begin: at their end instead of 0.
    pub start_at_end: bool,
    /// At most this many bytes of a file's first line identify it.
    pub fingerprint_bytes: usize,
    /// How often files are checked for growth and globs re-expanded.
    pub poll: Duration,
    /// How long a deleted or renamed-away file is kept open at its end.
    pub rotate_wait: Duration,
    /// Longer lines are cut into pieces of this size.
    pub max_line_bytes: usize,
    /// The registry file; `None` puts it in the pipeline's data directory.
    pub registry: Option<PathBuf>,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: ["*.gz", "*.bz2", "*.xz", "*.zip", "*.zst"]
                .map(str::to_owned)
                .to_vec(),
            start_at_end: false,
            fingerprint_bytes: 256,
            poll: Duration::from_millis(250),
            rotate_wait: Duration::from_secs(5),
            max_line_bytes: 1 << 20,
            registry: None,
        }
    }
}

/// Why the source cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// The registry exists but cannot be read or parsed.
    #[error("registry {path}: {why}")]
    Registry {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// One identity in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: String,
    path: PathBuf,
    dev: u64,
    ino: u64,
    fp_len: u64,
    fp_crc: u32,
    /// Every line before this offset is stored.
    offset: u64,
}

impl Entry {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "path": self.path.to_string_lossy(),
            "dev": self.dev,
            "ino": self.ino,
            "fingerprint_len": self.fp_len,
            "fingerprint_crc32c": self.fp_crc,
            "offset": self.offset,
        })
    }

    fn from_json(v: &serde_json::Value) -> Option<Self> {
        Some(Self {
            id: v["id"].as_str()?.to_owned(),
            path: PathBuf::from(v["path"].as_str()?),
            dev: v["dev"].as_u64()?,
            ino: v["ino"].as_u64()?,
            fp_len: v["fingerprint_len"].as_u64()?,
            fp_crc: u32::try_from(v["fingerprint_crc32c"].as_u64()?).ok()?,
            offset: v["offset"].as_u64()?,
        })
    }
}

/// Reads the registry; a missing file is an empty registry.
fn load_registry(path: &Path) -> Result<Vec<Entry>, FileSourceError> {
    let err = |why: String| FileSourceError::Registry {
        path: path.display().to_string(),
        why,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(e.to_string())),
    };
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    doc["files"]
        .as_array()
        .ok_or_else(|| err("no `files` list".to_owned()))?
        .iter()
        .map(|v| Entry::from_json(v).ok_or_else(|| err(format!("bad entry {v}"))))
        .collect()
}

/// Writes `bytes` to `path` atomically and durably: a temp file in the same
/// directory, fsync, rename over, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Does `name` match the glob `pat` (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`)?
pub fn glob_match(pat: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pat.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point for the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => class(&p[pi..], n[ni]).map(|len| pi + len),
            Some(&c) if c == n[ni] => Some(pi + 1),
            _ => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class at the start of `p` (`[...]`); the
/// class's length when it matches.
fn class(p: &[char], c: char) -> Option<usize> {
    let end = p.iter().skip(1).position(|&x| x == ']')? + 1;
    let body = &p[1..end];
    let (negate, body) = match body.first() {
        Some('!' | '^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut hit = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            hit |= (body[i]..=body[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= body[i] == c;
            i += 1;
        }
    }
    (hit != negate).then_some(end + 1)
}

/// The regular files matching a glob, sorted.
pub fn expand(pattern: &str) -> Vec<PathBuf> {
    let wild = |s: &str| s.contains(['*', '?', '[']);
    let mut found = vec![PathBuf::new()];
    let absolute = pattern.starts_with('/');
    if absolute {
        found = vec![PathBuf::from("/")];
    }
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for base in &found {
            if !wild(part) {
                next.push(base.join(part));
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if (!name.starts_with('.') || part.starts_with('.')) && glob_match(part, name) {
                    next.push(base.join(name));
                }
            }
        }
        found = next;
    }
    let mut files: Vec<PathBuf> = found
        .into_iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    files.sort();
    files
}

/// A file being read.
#[derive(Debug)]
struct Tracked {
    entry: Entry,
    file: File,
    /// Next byte to read.
    read_at: u64,
    /// Offset of the first byte of `partial`.
    line_start: u64,
    /// An unterminated line read so far.
    partial: Vec<u8>,
    /// Matched by a glob at the last scan (and not deleted).
    present: bool,
    /// When the file last had new data (or was opened).
    last_data: Instant,
}

/// The identity of a file from its first line (or its first `max` bytes
/// when that line is longer); `None` while the first line is incomplete.
fn first_line_identity(
    file: &File,
    dev: u64,
    ino: u64,
    max: u64,
) -> std::io::Result<Option<(String, u64, u32)>> {
    let mut buf = vec![0u8; max as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    let len = match buf[..got].iter().position(|&b| b == b'\n') {
        Some(nl) => nl + 1,
        None if got == buf.len() && got > 0 => got,
        None => return Ok(None),
    };
    let crc = crc32c::crc32c(&buf[..len]);
    Ok(Some((
        format!("{dev:x}-{ino:x}-{crc:08x}-{len:x}"),
        len as u64,
        crc,
    )))
}

impl Tracked {
    /// Makes the bytes read so far one line, ending `terminator` bytes
    /// after them (1 for its newline); returns the offset after it.
    fn take_line(
        &mut self,
        terminator: u64,
        path: &Text,
        stream: &str,
        batch: &mut Vec<Event>,
    ) -> u64 {
        let next = self.line_start + self.partial.len() as u64 + terminator;
        batch.push(line_event(
            &self.partial,
            path,
            stream,
            self.line_start,
            next,
        ));
        self.partial.clear();
        self.line_start = next;
        next
    }

    /// Cuts pieces of `max` bytes off a line longer than that; the offset
    /// after the last piece, if any.
    fn cut_long_line(
        &mut self,
        max: usize,
        path: &Text,
        stream: &str,
        batch: &mut Vec<Event>,
    ) -> Option<u64> {
        let mut end = None;
        while self.partial.len() > max {
            let piece: Vec<u8> = self.partial.drain(..max).collect();
            let next = self.line_start + piece.len() as u64;
            batch.push(line_event(&piece, path, stream, self.line_start, next));
            self.line_start = next;
            end = Some(next);
        }
        end
    }
}

fn fingerprint(file: &File, len: u64) -> std::io::Result<(u64, u32)> {
    let mut buf = vec![0u8; len as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok((got as u64, crc32c::crc32c(&buf[..got])))
}

/// The file source.
#[derive(Debug)]
pub struct FileSource {
    cfg: FileConfig,
    registry_path: PathBuf,
    /// Identities known from the registry but not open now.
    known: Vec<Entry>,
    files: Vec<Tracked>,
    tracker: Arc<AckTracker>,
    /// Positions already stored by exactly-once sinks.
    skip_below: Positions,
    first_scan: bool,
    registry_dirty: bool,
    last_save: Option<Instant>,
}

/// What one call to [`FileSource::step`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Lines handed on.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
}

impl FileSource {
    /// Loads the registry. `skip_below` holds positions already stored by
    /// exactly-once sinks (`file:<id>` streams).
    pub fn new(
        cfg: FileConfig,
        registry_path: PathBuf,
        skip_below: Positions,
    ) -> Result<Self, FileSourceError> {
        let known = load_registry(&registry_path)?;
        Ok(Self {
            cfg,
            registry_path,
            known,
            files: Vec::new(),
            tracker: Arc::new(AckTracker::default()),
            skip_below,
            first_scan: true,
            registry_dirty: false,
            last_save: None,
        })
    }

    fn excluded(&self, path: &Path) -> bool {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let full = path.to_string_lossy();
        self.cfg
            .exclude
            .iter()
            .any(|x| glob_match(x, name) || glob_match(x, &full))
    }

    /// Re-expands the globs: opens new files, notices renames and deletions.
    fn scan(&mut self) {
        for t in &mut self.files {
            t.present = false;
        }
        let mut paths: Vec<PathBuf> = self.cfg.include.iter().flat_map(|p| expand(p)).collect();
        paths.sort();
        paths.dedup();
        for path in paths {
            if self.excluded(&path) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if let Some(t) = self
                .files
                .iter_mut()
                .find(|t| t.entry.dev == meta.dev() && t.entry.ino == meta.ino())
            {
                t.present = true;
                if t.entry.path != path {
                    t.entry.path = path;
                    self.registry_dirty = true;
                }
                continue;
            }
            if let Err(e) = self.open(&path, true) {
                tracing::warn!(path = %path.display(), error = %e, "cannot open file");
            }
        }
        if self.first_scan {
            self.find_renamed_while_stopped();
        }
        self.first_scan = false;
    }

    /// A file rotated by renaming while the source was stopped no longer
    /// matches the globs (`access.log` became `access.log.1`): look for its
    /// inode next to its old path and read what is left of it.
    fn find_renamed_while_stopped(&mut self) {
        let pending: Vec<Entry> = self.known.clone();
        for e in pending {
            let Some(dir) = e.path.parent() else { continue };
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let found = entries.flatten().map(|d| d.path()).find(|p| {
                std::fs::metadata(p).is_ok_and(|m| {
                    m.is_file() && m.dev() == e.dev && m.ino() == e.ino && m.len() > e.offset
                })
            });
            let same = |p: &PathBuf| {
                File::open(p)
                    .and_then(|f| fingerprint(&f, e.fp_len))
                    .is_ok_and(|fp| fp == (e.fp_len, e.fp_crc))
            };
            if let Some(path) = found.filter(same)
                && !self.excluded(&path)
                && let Err(err) = self.open(&path, false)
            {
                tracing::warn!(path = %path.display(), error = %err, "cannot open file");
            }
        }
    }

    /// Opens `path`; `present`: matched by a glob (else it is read to its
    /// end and closed).
    fn open(&mut self, path: &Path, present: bool) -> std::io::Result<()> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let (dev, ino, size) = (meta.dev(), meta.ino(), meta.len());
        // A known identity: same device and inode, and the fingerprint it
        // had still matches the file's first bytes.
        let mut resumed = None;
        if let Some(i) = self.known.iter().position(|e| e.dev == dev && e.ino == ino) {
            let e = self.known.remove(i);
            let (len, crc) = fingerprint(&file, e.fp_len)?;
            if len == e.fp_len && crc == e.fp_crc && size >= e.offset {
                resumed = Some(e);
            } else {
                self.registry_dirty = true; // the old identity is gone
            }
        }
        let entry = match resumed {
            Some(mut e) => {
                e.path = path.to_owned();
                e
            }
            None => {
                // Not identified until its first line is complete (id "").
                let (id, fp_len, fp_crc) =
                    first_line_identity(&file, dev, ino, self.cfg.fingerprint_bytes as u64)?
                        .unwrap_or_default();
                self.registry_dirty = true;
                Entry {
                    id,
                    path: path.to_owned(),
                    dev,
                    ino,
                    fp_len,
                    fp_crc,
                    offset: if self.first_scan && self.cfg.start_at_end {
                        size
                    } else {
                        0
                    },
                }
            }
        };
        let stored = self
            .skip_below
            .get(&(format!("file:{}", entry.id), 0))
            .copied()
            .unwrap_or(0)
            .max(0) as u64;
        let start = entry.offset.max(stored.min(size));
        tracing::info!(path = %path.display(), id = %entry.id, offset = start, "reading file");
        self.files.push(Tracked {
            entry,
            file,
            read_at: start,
            line_start: start,
            partial: Vec::new(),
            present,
            last_data: Instant::now(),
        });
        Ok(())
    }

    /// Reads what is new in every file, handing batches of lines to `emit`
    /// (false: downstream is gone). Returns what was read.
    fn read_all(&mut self, emit: &mut impl FnMut(Vec<Event>) -> bool) -> Option<StepReport> {
        let mut report = StepReport::default();
        let mut buf = vec![0u8; 64 << 10];
        let mut i = 0;
        while i < self.files.len() {
            let t = &mut self.files[i];
            let size = t.file.metadata().map_or(0, |m| m.len());
            let deleted = t.file.metadata().is_ok_and(|m| m.nlink() == 0);
            if deleted {
                t.present = false;
            }
            if size < t.read_at || !fingerprint_holds(t) {
                restart_truncated(t);
                self.registry_dirty = true;
            }
            if t.entry.id.is_empty() {
                let gone = !t.present && t.last_data.elapsed() >= self.cfg.rotate_wait;
                // A file that is gone is identified by all it holds.
                let max = if gone {
                    size.max(1)
                } else {
                    self.cfg.fingerprint_bytes as u64
                };
                match first_line_identity(&t.file, t.entry.dev, t.entry.ino, max) {
                    Ok(Some((id, len, crc))) => {
                        let stored = self
                            .skip_below
                            .get(&(format!("file:{id}"), 0))
                            .map_or(0, |&s| s.max(0) as u64);
                        if stored > t.read_at && t.partial.is_empty() {
                            t.read_at = stored.min(size);
                            t.line_start = t.read_at;
                        }
                        (t.entry.id, t.entry.fp_len, t.entry.fp_crc) = (id, len, crc);
                        self.registry_dirty = true;
                    }
                    _ if gone => {
                        // Empty and gone: nothing to read.
                        let t = self.files.remove(i);
                        tracing::info!(path = %t.entry.path.display(), "done with empty file");
                        continue;
                    }
                    _ => {
                        i += 1;
                        continue; // the first line is not complete yet
                    }
                }
            }
            let mut budget = 4usize << 20;
            let mut batch: Vec<Event> = Vec::new();
            let stream = format!("file:{}", t.entry.id);
            let path_text = Text::from(t.entry.path.to_string_lossy().as_ref());
            let mut positions_end = None;
            while budget > 0 {
                let n = match t.file.read_at(&mut buf, t.read_at) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(path = %t.entry.path.display(), error = %e, "read failed");
                        break;
                    }
                };
                budget = budget.saturating_sub(n);
                report.bytes += n as u64;
                t.read_at += n as u64;
                t.last_data = Instant::now();
                let mut rest = &buf[..n];
                while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                    t.partial.extend_from_slice(&rest[..nl]);
                    rest = &rest[nl + 1..];
                    t.cut_long_line(self.cfg.max_line_bytes, &path_text, &stream, &mut batch);
                    positions_end = Some(t.take_line(1, &path_text, &stream, &mut batch));
                    if batch.len() >= 256 {
                        report.lines += batch.len() as u64;
                        if !self_emit(&self.tracker, &stream, positions_end, &mut batch, emit) {
                            return None;
                        }
                    }
                }
                t.partial.extend_from_slice(rest);
                if let Some(end) =
                    t.cut_long_line(self.cfg.max_line_bytes, &path_text, &stream, &mut batch)
                {
                    positions_end = Some(end);
                }
            }
            // A file that is gone (deleted, or renamed out of the globs) and
            // idle at its end: its last unterminated line is complete.
            let finished = !t.present && t.last_data.elapsed() >= self.cfg.rotate_wait;
            if finished && !t.partial.is_empty() {
                positions_end = Some(t.take_line(0, &path_text, &stream, &mut batch));
            }
            report.lines += batch.len() as u64;
            if !batch.is_empty()
                && !self_emit(&self.tracker, &stream, positions_end, &mut batch, emit)
            {
                return None;
            }
            if finished {
                let t = self.files.remove(i);
                tracing::info!(path = %t.entry.path.display(), id = %t.entry.id, "done with file");
                // Remembered (not open) until the registry drops it below.
                self.known.push(t.entry);
                self.registry_dirty = true;
                continue;
            }
            i += 1;
        }
        Some(report)
    }

    /// Advances the registry over what the sinks have stored and writes it
    /// when anything changed (at most once a second unless `now`).
    fn save_registry(&mut self, now: bool) {
        if !now
            && self
                .last_save
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last_save = Some(Instant::now());
        if let Some(done) = self.tracker.take_committable() {
            for ((stream, _), next) in done {
                let Some(id) = stream.strip_prefix("file:") else {
                    continue;
                };
                let next = next.max(0) as u64;
                for e in self
                    .files
                    .iter_mut()
                    .map(|t| &mut t.entry)
                    .chain(self.known.iter_mut())
                    .filter(|e| e.id == id)
                {
                    e.offset = e.offset.max(next);
                }
            }
            self.registry_dirty = true;
        }
        if !self.registry_dirty {
            return;
        }
        // Closed files are forgotten once everything read from them is
        // stored and the file no longer exists under its identity.
        self.known.retain(|e| {
            std::fs::metadata(&e.path).is_ok_and(|m| m.dev() == e.dev && m.ino() == e.ino)
        });
        let files: Vec<serde_json::Value> = self
            .files
            .iter()
            .filter(|t| !t.entry.id.is_empty())
            .map(|t| t.entry.to_json())
            .chain(self.known.iter().map(Entry::to_json))
            .collect();
        let doc = serde_json::json!({ "version": 1, "files": files });
        match write_atomically(&self.registry_path, doc.to_string().as_bytes()) {
            Ok(()) => self.registry_dirty = false,
            Err(e) => tracing::warn!(
                path = %self.registry_path.display(),
                error = %e,
                "writing the registry failed; retrying"
            ),
        }
    }

    /// One round: rescan globs (when `rescan`), read, save the registry.
    pub fn step(
        &mut self,
        rescan: bool,
        emit: &mut impl FnMut(Vec<Event>) -> bool,
    ) -> Option<StepReport> {
        if rescan || self.first_scan {
            self.scan();
        }
        let r = self.read_all(emit)?;
        self.save_registry(false);
        Some(r)
    }

    /// Runs until `stop`; on stop waits up to `drain` for in-flight lines to
    /// be stored and saves the registry.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        drain: Duration,
        counters: &crate::runtime::Counters,
        mut emit: impl FnMut(Vec<Event>) -> bool,
    ) {
        let mut last_scan = Instant::now();
        let mut first = true;
        while !stop.load(Ordering::Relaxed) {
            let rescan = first || last_scan.elapsed() >= self.cfg.poll.max(Duration::from_secs(1));
            if rescan {
                last_scan = Instant::now();
            }
            first = false;
            let Some(r) = self.step(rescan, &mut emit) else {
                break;
            };
            counters.bytes.fetch_add(r.bytes, Ordering::Relaxed);
            counters.events_out.fetch_add(r.lines, Ordering::Relaxed);
            if r.bytes == 0 {
                std::thread::sleep(self.cfg.poll);
            }
        }
        let until = Instant::now() + drain;
        while self.tracker.in_flight() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.save_registry(true);
    }

    /// Saves the registry now (tests; `run` does it on its own).
    pub fn flush_registry(&mut self) {
        self.save_registry(true);
    }
}

fn fingerprint_holds(t: &Tracked) -> bool {
    t.entry.id.is_empty()
        || fingerprint(&t.file, t.entry.fp_len)
            .is_ok_and(|(len, crc)| len == t.entry.fp_len && crc == t.entry.fp_crc)
}

/// copytruncate: the file starts again at 0 under a new identity.
fn restart_truncated(t: &mut Tracked) {
    tracing::info!(path = %t.entry.path.display(), "file truncated: reading from the start");
    t.entry.id = String::new(); // identified again by its new first line
    t.entry.offset = 0;
    t.entry.fp_len = 0;
    t.entry.fp_crc = 0;
    t.read_at = 0;
    t.line_start = 0;
    t.partial.clear();
}

fn line_event(bytes: &[u8], path: &Text, stream: &str, offset: u64, next: u64) -> Event {
    let line = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let mut e = Event::raw(String::from_utf8_lossy(line).into_owned(), now_ns());
    e.fields
        .insert(Text::new_static("file"), Value::Str(path.clone()));
    e.fields
        .insert(Text::new_static("offset"), Value::Int(offset as i64));
    e.origin = Some(Origin {
        topic: stream.to_owned(),
        partition: 0,
        offset: offset as i64,
        next: next as i64,
    });
    e
}

/// Registers `batch` (reaching `end` in `stream`) and hands it on.
fn self_emit(
    tracker: &Arc<AckTracker>,
    stream: &str,
    end: Option<u64>,
    batch: &mut Vec<Event>,
    emit: &mut impl FnMut(Vec<Event>) -> bool,
) -> bool {
    let mut positions = Positions::new();
    if let Some(end) = end {
        positions.insert((stream.to_owned(), 0), end as i64);
    }
    let ack = tracker.register(positions);
    for e in batch.iter_mut() {
        e.ack = Some(AckRef(ack.clone()));
    }
    drop(ack);
    emit(std::mem::take(batch))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn append(path: &Path, text: &str) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    struct Harness {
        dir: tempfile::TempDir,
        cfg: FileConfig,
        src: FileSource,
        /// Events handed on and not yet "stored".
        held: Vec<Event>,
    }

    impl Harness {
        fn new(pattern: &str, tweak: impl FnOnce(&mut FileConfig)) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = FileConfig {
                include: vec![dir.path().join(pattern).to_string_lossy().into_owned()],
                rotate_wait: Duration::ZERO,
                ..FileConfig::default()
            };
            tweak(&mut cfg);
            let src = FileSource::new(cfg.clone(), dir.path().join("reg.json"), Positions::new())
                .unwrap();
            Self {
                dir,
                cfg,
                src,
                held: Vec::new(),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// One step; the lines read, kept unacknowledged.
        fn step(&mut self) -> Vec<String> {
            let mut got = Vec::new();
            self.src
                .step(true, &mut |b: Vec<Event>| {
                    got.extend(b);
                    true
                })
                .unwrap();
            let lines = got.iter().map(|e| e.raw.clone().unwrap()).collect();
            self.held.extend(got);
            lines
        }

        /// Marks everything handed on as stored and saves the registry.
        fn ack(&mut self) {
            self.held.clear();
            self.src.flush_registry();
        }

        /// A new source over the same registry (a restart).
        fn restart(&mut self) {
            self.held.clear();
            self.src = FileSource::new(
                self.cfg.clone(),
                self.dir.path().join("reg.json"),
                Positions::new(),
            )
            .unwrap();
        }
    }

    #[test]
    fn globs_match_like_a_shell() {
        for (p, n, want) in [
            ("*.log", "access.log", true),
            ("*.log", "access.log.1", false),
            ("access.log*", "access.log.1", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[ab]*", "box", true),
            ("[!ab]*", "box", false),
            ("[a-c]x", "bx", true),
            ("*", "", true),
            ("*a*b", "xxaxxb", true),
            ("*a*b", "xxaxxbc", false),
        ] {
            assert_eq!(glob_match(p, n), want, "{p} vs {n}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for f in ["a.log", "b.log", "c.txt", "sub/d.log", ".hidden.log"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let found = expand(&format!("{}/*.log", dir.path().display()));
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.log", "b.log"]);
        assert_eq!(
            expand(&format!("{}/*/*.log", dir.path().display())).len(),
            1
        );
    }

    #[test]
    fn lines_are_read_as_they_are_completed() {
        let mut h = Harness::new("*.log", |_| {});
        let p = h.path("a.log");
        append(&p, "one\ntwo\r\nthr");
        assert_eq!(h.step(), ["one", "two"]);
        assert!(h.step().is_empty(), "a partial line waits");
        append(&p, "ee\n");
        assert_eq!(h.step(), ["three"]);
        let e = &h.held[2];
        assert_eq!(e.fields.get("offset"), Some(&Value::Int(9)));
        assert_eq!(
            e.fields.get("file"),
            Some(&Value::Str(p.to_string_lossy().as_ref().into()))
        );
        let o = e.origin.as_ref().unwrap();
        assert!(o.topic.starts_with("file:"));
        assert_eq!((o.offset, o.next), (9, 15));
        // A new file is picked up while running.
        append(&h.path("b.log"), "bee\n");
        assert_eq!(h.step(), ["bee"]);
    }

    #[test]
    fn a_restart_resumes_after_what_was_stored_only() {
        let mut h = Harness::new("*.log", |_| {});
        let p = h.path("a.log");
        append(&p, "1\n2\n");
        assert_eq!(h.step(), ["1", "2"]);
        h.ack();
        append(&p, "3\n4\n");
        assert_eq!(h.step(), ["3", "4"]);
        h.src.flush_registry(); // 3 and 4 are not stored yet
        h.restart();
        assert_eq!(h.step(), ["3", "4"], "unstored lines are read again");
        h.ack();
        h.restart();
        append(&p, "5\n");
        assert_eq!(h.step(), ["5"]);
    }

    #[test]
    fn rename_rotation_reads_the_old_file_to_its_end() {
        let mut h = Harness::new("access.log", |_| {});
        let (p, old) = (h.path("access.log"), h.path("access.log.1"));
        append(&p, "a1\na2\n");
        assert_eq!(h.step(), ["a1", "a2"]);
        std::fs::rename(&p, &old).unwrap();
        append(&old, "a3\n"); // the writer still had the old file open
        append(&p, "b1\n");
        let mut got = h.step();
        got.sort();
        assert_eq!(got, ["a3", "b1"]);
        assert!(h.step().is_empty());
        assert_eq!(h.src.files.len(), 1, "the rotated file was let go");
        h.ack();
        h.restart();
        append(&p, "b2\n");
        assert_eq!(h.step(), ["b2"]);
    }

    #[test]
    fn copytruncate_starts_again_from_zero() {
        let mut h = Harness::new("*.log", |_| {});
        let p = h.path("a.log");
        append(&p, "first line\nsecond line\n");
        assert_eq!(h.step().len(), 2);
        // Truncated and rewritten shorter.
        std::fs::write(&p, "x\n").unwrap();
        assert_eq!(h.step(), ["x"]);
        // Truncated and rewritten longer than the old position before the
        // source looked: the fingerprint tells.
        std::fs::write(&p, "a much longer first line than before\nand more\n").unwrap();
        assert_eq!(
            h.step(),
            ["a much longer first line than before", "and more"]
        );
        h.ack();
        h.restart();
        append(&p, "tail\n");
        assert_eq!(h.step(), ["tail"]);
    }

    #[test]
    fn short_files_are_read_and_recognised_after_a_restart() {
        let mut h = Harness::new("*.log", |c| c.fingerprint_bytes = 64);
        let p = h.path("a.log");
        append(&p, "s\n");
        assert_eq!(h.step(), ["s"]);
        h.ack();
        append(&p, &"long line\n".repeat(10));
        assert_eq!(h.step().len(), 10);
        h.ack();
        h.restart();
        append(&p, "after\n");
        assert_eq!(h.step(), ["after"]);
    }

    #[test]
    fn start_at_end_skips_existing_content_but_not_new_files() {
        let mut h = Harness::new("*.log", |c| c.start_at_end = true);
        append(&h.path("old.log"), "old\n");
        h.restart();
        assert!(h.step().is_empty());
        append(&h.path("old.log"), "new\n");
        append(&h.path("fresh.log"), "fresh\n");
        let mut got = h.step();
        got.sort();
        assert_eq!(got, ["fresh", "new"]);
    }

    #[test]
    fn a_deleted_file_gives_its_last_unterminated_line() {
        let mut h = Harness::new("*.log", |_| {});
        let p = h.path("a.log");
        append(&p, "done\nunterminated");
        assert_eq!(h.step(), ["done"]);
        std::fs::remove_file(&p).unwrap();
        assert_eq!(h.step(), ["unterminated"]);
        assert!(h.src.files.is_empty());
    }

    #[test]
    fn a_file_renamed_while_stopped_is_finished() {
        let mut h = Harness::new("access.log", |_| {});
        let (p, old) = (h.path("access.log"), h.path("access.log.1"));
        append(&p, "a1\n");
        assert_eq!(h.step(), ["a1"]);
        h.ack();
        // Stopped; meanwhile the writer adds a line and logrotate renames.
        append(&p, "a2\n");
        std::fs::rename(&p, &old).unwrap();
        append(&p, "b1\n");
        h.restart();
        let mut got = h.step();
        got.sort();
        assert_eq!(got, ["a2", "b1"]);
    }

    #[test]
    fn identities_are_the_same_in_every_run_and_wait_for_a_first_line() {
        let mut h = Harness::new("*.log", |_| {});
        let p = h.path("a.log");
        append(&p, "no newline yet");
        assert!(h.step().is_empty());
        append(&p, " done\nsecond\n");
        assert_eq!(h.step(), ["no newline yet done", "second"]);
        let id = h.held[0].origin.clone().unwrap().topic;
        // Killed before the registry was written: the same id again.
        h.restart();
        assert_eq!(h.step().len(), 2);
        assert_eq!(h.held[0].origin.clone().unwrap().topic, id);
        // Truncated and rewritten: a new first line, a new id.
        std::fs::write(&p, "other\n").unwrap();
        assert_eq!(h.step(), ["other"]);
        assert_ne!(h.held.last().unwrap().origin.clone().unwrap().topic, id);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut h = Harness::new("*.log", |c| c.max_line_bytes = 4);
        append(&h.path("a.log"), "abcdefghij\nxy\n");
        assert_eq!(h.step(), ["abcd", "efgh", "ij", "xy"]);
    }

    #[test]
    fn the_registry_is_written_atomically_and_read_back() {
        let mut h = Harness::new("*.log", |_| {});
        append(&h.path("a.log"), "1\n");
        h.step();
        h.ack();
        let reg = std::fs::read_to_string(h.path("reg.json")).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&reg).unwrap();
        assert_eq!(doc["files"][0]["offset"], 2);
        assert!(!h.path("reg.json.tmp").exists());
        std::fs::write(h.path("reg.json"), "{not json").unwrap();
        let err = FileSource::new(h.cfg.clone(), h.path("reg.json"), Positions::new()).unwrap_err();
        assert!(err.to_string().contains("reg.json"), "{err}");
    }
}
