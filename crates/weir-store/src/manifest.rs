//! A database's manifest (`manifest.json`): the Parquet files that are
//! live, the write-ahead log position they cover, and the writers'
//! positions as of that point. It is replaced atomically (a temporary
//! file, fsync, rename, fsync of the directory) and is the only thing
//! that makes a data file live: a file under `data/` it does not list is
//! a crash's leftover and is removed at open.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use weir_log::{Storage, frames};

use crate::wal::Position;

/// The file name.
pub const MANIFEST: &str = "manifest.json";

/// One live Parquet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Unique in the database; the file is `data/<id:012>.parquet`.
    pub id: u64,
    /// The table its rows belong to.
    pub table: String,
    /// The UTC day of its rows (`yyyy-mm-dd`).
    pub day: String,
    /// The smallest and largest `time` in it (nanoseconds).
    pub min_time: i64,
    /// See `min_time`.
    pub max_time: i64,
    /// Rows in it.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// The compaction tier a merge put it in (0: written by a flush).
    #[serde(default)]
    pub level: u32,
}

impl FileEntry {
    /// The file's name under `data/`.
    pub fn file_name(&self) -> String {
        file_name(self.id)
    }
}

/// The name under `data/` of file `id`.
pub fn file_name(id: u64) -> String {
    format!("{id:012}.parquet")
}

/// The id of a name under `data/`, if it is one of the store's.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".parquet")?;
    (stem.len() == 12 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// What `manifest.json` holds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// The format's version (1).
    pub version: u32,
    /// Every row of the log before this position is in the files.
    pub wal: Position,
    /// The writers' positions as of `wal`.
    pub positions: BTreeMap<String, i64>,
    /// The next file id.
    pub next_id: u64,
    /// The live files.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Reads `dir/manifest.json`; a database without one has flushed
    /// nothing yet.
    pub fn load(storage: &dyn Storage, dir: &Path) -> io::Result<Self> {
        let path = dir.join(MANIFEST);
        if !storage.exists(&path) {
            return Ok(Self {
                version: 1,
                ..Self::default()
            });
        }
        let f = storage.open(&path, false)?;
        let mut data = vec![0u8; f.len()? as usize];
        f.read_exact_at(&mut data, 0)?;
        let m: Self = serde_json::from_slice(&data).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        if m.version != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: version {} is not this store's",
                    path.display(),
                    m.version
                ),
            ));
        }
        Ok(m)
    }

    /// Replaces `dir/manifest.json` with this one, durably.
    pub fn save(&self, storage: &dyn Storage, dir: &Path) -> io::Result<()> {
        let text = serde_json::to_vec(self).map_err(io::Error::other)?;
        frames::write_atomic(storage, dir, MANIFEST, &text)
    }

    /// The rows the files hold.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_log::FaultStorage;

    #[test]
    fn a_manifest_survives_a_power_cut_whole_or_not_at_all() {
        let dir = Path::new("/db");
        for changes in 0..8 {
            let s = FaultStorage::new();
            s.create_dir_all(dir).unwrap();
            let mut old = Manifest::load(&s, dir).unwrap();
            old.next_id = 1;
            old.save(&s, dir).unwrap();
            let mut new = old.clone();
            new.next_id = 2;
            new.files.push(FileEntry {
                id: 1,
                table: "cpu".into(),
                day: "2026-12-07".into(),
                min_time: 1,
                max_time: 2,
                rows: 2,
                bytes: 100,
                level: 0,
            });
            s.fail_after_changes(Some(changes));
            let saved = new.save(&s, dir).is_ok();
            s.fail_after_changes(None);
            s.crash();
            let back = Manifest::load(&s, dir).unwrap();
            assert!(back == old || back == new, "{changes}: {back:?}");
            if saved {
                assert_eq!(back, new, "{changes}");
            }
        }
    }

    #[test]
    fn file_names_round_trip_and_others_are_not_ours() {
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name("42.parquet"), None);
        assert_eq!(parse_file_name("000000000042.parquet.tmp"), None);
    }
}
