//! One database's durable write side: its directory holds `schema.json`
//! and the write-ahead log (`wal/`). [`Database::write`] checks a batch
//! against the schema, records the columns it adds (atomically, before the
//! first frame that uses them), appends the frame and returns once it is
//! durable. [`Database::open`] gives back every batch of the log after a
//! position, so the write buffers can be rebuilt, and the writers' last
//! positions (a pipeline resumes its source from them: exactly once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use weir_log::{Storage, frames};

use crate::rows::{Batch, DecodeError};
use crate::schema::{Schema, SchemaError, TableSchema};
use crate::wal::{Position, Wal, WalError};

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The log.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The batch does not fit the schema (nothing was written).
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A file of the database.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A frame of the log or the schema file is not what this version
    /// writes.
    #[error("{path}: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// What `open` recovered.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every batch after the position asked for, in log order, with its
    /// position.
    pub batches: Vec<(Position, Batch)>,
}

#[derive(Debug)]
struct State {
    schema: Schema,
    positions: BTreeMap<String, i64>,
}

/// A database's schema and write-ahead log.
#[derive(Debug)]
pub struct Database {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    wal: Wal,
    /// Held while a write checks and extends the schema, so two writers
    /// never record conflicting columns; the append itself runs outside
    /// it (group commit).
    state: Mutex<State>,
}

const SCHEMA: &str = "schema.json";

impl Database {
    /// Opens (or creates) the database in `dir`, replaying its log from
    /// `from` (the position the flushed files cover).
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: impl Into<PathBuf>,
        from: Position,
    ) -> Result<(Self, Recovered), DbError> {
        let dir = dir.into();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DbError::Io { path, source }
        };
        storage.create_dir_all(&dir).map_err(io(&dir))?;
        let schema_path = dir.join(SCHEMA);
        let schema = if storage.exists(&schema_path) {
            let f = storage
                .open(&schema_path, false)
                .map_err(io(&schema_path))?;
            let len = f.len().map_err(io(&schema_path))?;
            let mut data = vec![0u8; len as usize];
            f.read_exact_at(&mut data, 0).map_err(io(&schema_path))?;
            serde_json::from_slice(&data).map_err(|e| DbError::Corrupt {
                path: schema_path.clone(),
                why: e.to_string(),
            })?
        } else {
            Schema::default()
        };
        let wal_dir = dir.join("wal");
        let (wal, replayed) = Wal::open(storage.clone(), &wal_dir, from)?;
        let mut positions = BTreeMap::new();
        let mut batches = Vec::with_capacity(replayed.len());
        for (pos, body) in replayed {
            let batch = Batch::decode(&body).map_err(|DecodeError(why)| DbError::Corrupt {
                path: wal_dir.clone(),
                why: format!("frame at {pos:?}: {why}"),
            })?;
            for (k, v) in &batch.positions {
                positions.insert(k.clone(), *v);
            }
            batches.push((pos, batch));
        }
        let db = Self {
            storage,
            dir,
            wal,
            state: Mutex::new(State { schema, positions }),
        };
        Ok((db, Recovered { batches }))
    }

    /// Makes `batch` durable: refused whole if it does not fit the
    /// schema; the columns it adds are recorded first. Returns the frame's
    /// position.
    pub fn write(&self, batch: &Batch) -> Result<Position, DbError> {
        let body = batch.encode();
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let added = st.schema.additions(batch)?;
            if !added.is_empty() {
                let mut next = st.schema.clone();
                next.extend(added);
                let text = serde_json::to_vec_pretty(&next).map_err(|e| DbError::Corrupt {
                    path: self.dir.join(SCHEMA),
                    why: e.to_string(),
                })?;
                frames::write_atomic(&*self.storage, &self.dir, SCHEMA, &text).map_err(
                    |source| DbError::Io {
                        path: self.dir.join(SCHEMA),
                        source,
                    },
                )?;
                st.schema = next;
            }
        }
        let at = self.wal.append(&body)?;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in &batch.positions {
            st.positions.insert(k.clone(), *v);
        }
        Ok(at)
    }

    /// The schema as it is now.
    pub fn schema(&self) -> Schema {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .schema
            .clone()
    }

    /// A writer's last durable position (`None`: it never wrote here).
    pub fn position(&self, key: &str) -> Option<i64> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .positions
            .get(key)
            .copied()
    }

    /// Every writer's last durable position.
    pub fn positions(&self) -> BTreeMap<String, i64> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .positions
            .clone()
    }

    /// Takes the positions a flush recorded (the manifest's) for writers
    /// the replayed log did not name: the log after a flush holds only
    /// the writers that wrote since.
    pub fn seed_positions(&self, flushed: &BTreeMap<String, i64>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in flushed {
            st.positions.entry(k.clone()).or_insert(*v);
        }
    }

    /// One table's schema as it is now.
    pub fn table(&self, name: &str) -> Option<TableSchema> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .schema
            .tables
            .get(name)
            .cloned()
    }

    /// The write-ahead log (a flush rolls it and drops covered segments).
    pub fn wal(&self) -> &Wal {
        &self.wal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{Row, Value};
    use weir_log::FaultStorage;

    fn batch(i: i64, value: Value) -> Batch {
        Batch {
            rows: vec![Row {
                table: "m".into(),
                time: i,
                tags: vec![("host".into(), format!("h{i}"))],
                fields: vec![(format!("f{}", i % 3), value)],
            }],
            positions: vec![("src".into(), i)],
        }
    }

    fn open(s: &FaultStorage) -> (Database, Recovered) {
        Database::open(Arc::new(s.clone()), "/store/public", Position::default()).unwrap()
    }

    #[test]
    fn a_power_cut_at_any_step_keeps_acknowledged_batches_their_columns_and_positions() {
        for changes in 0..30u64 {
            let s = FaultStorage::new();
            let (db, _) = open(&s);
            s.fail_after_changes(Some(changes));
            let mut acked = Vec::new();
            for i in 0..6 {
                if db.write(&batch(i, Value::Float(i as f64))).is_ok() {
                    acked.push(i);
                }
            }
            drop(db);
            s.fail_after_changes(None);
            s.crash();
            let (db, rec) = open(&s);
            let times: Vec<i64> = rec.batches.iter().map(|(_, b)| b.rows[0].time).collect();
            for a in &acked {
                assert!(times.contains(a), "{changes}: batch {a} lost: {times:?}");
            }
            // Every replayed row's columns are in the schema.
            let schema = db.schema();
            for (_, b) in &rec.batches {
                assert!(schema.additions(b).unwrap().is_empty(), "{changes}: {b:?}");
            }
            if let Some(&last) = times.last() {
                assert_eq!(db.position("src"), Some(last));
            }
            db.write(&batch(9, Value::Float(9.0))).unwrap();
        }
    }

    #[test]
    fn a_conflicting_write_is_refused_and_changes_nothing() {
        let s = FaultStorage::new();
        let (db, _) = open(&s);
        db.write(&batch(0, Value::Float(1.0))).unwrap();
        let before = db.wal().end();
        let e = db.write(&batch(3, Value::Str("x".into()))).unwrap_err();
        assert!(matches!(e, DbError::Schema(_)), "{e}");
        assert_eq!(db.wal().end(), before);
        assert_eq!(db.position("src"), Some(0));
        drop(db);
        let (_, rec) = open(&s);
        assert_eq!(rec.batches.len(), 1);
    }
}
