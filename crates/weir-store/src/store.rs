//! The store: databases under one directory, each with its durable write
//! side ([`Database`]: schema and write-ahead log), its write buffers
//! (Arrow batches by table, visible to queries at once), its manifest of
//! Parquet files, a flush that moves the buffers into files, and the
//! maintenance that carries out [`compaction::plan`] (merging small files,
//! dropping those past the TTL). A file out of the manifest is deleted
//! only once no query snapshot taken before could read it (each snapshot
//! holds its epoch; see `sweep`).
//!
//! Locks, in the order they are taken: a database's `flushing` (one flush
//! at a time), its `gate` (writers share it from the log append to the
//! buffer insert; a flush takes it alone only to roll the log and freeze
//! the buffers, so no acknowledged row is ever in neither a live segment
//! nor a buffer), then its `state` (manifest and buffers, under which a
//! query takes its snapshot: it sees the frozen buffer or the files that
//! replace it, never both), then `touched`, then the `Database`'s own.
//! Maintenance takes `flushing`, so it never runs beside a flush.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use weir_log::{Storage, frames};

use crate::columns::{arrow_schema, to_batch, widen};
use crate::compaction::{self, Action, Policy};
use crate::database::{Database, DbError};
use crate::files::{merge_files, write_table};
use crate::manifest::{FileEntry, Manifest, parse_file_name};
use crate::query::{Answer, Engine, QueryError, QueryLimits, TableSnapshot};
use crate::rows::{Batch, Row, Value};
use crate::schema::Schema;
use crate::wal::Position;

/// Planning rounds of one maintenance at most.
const MAINTAIN_ROUNDS: usize = 16;

/// Rows a table's buffer gathers before it turns them into one Arrow
/// batch (a query turns fewer into one too).
const CHUNK_ROWS: usize = 8192;

/// The catalog file at the store's root: the databases and their
/// settings. A database exists once the catalog lists it.
const CATALOG: &str = "catalog.json";

/// How the store flushes and queries.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// A database's buffers are flushed past this many bytes...
    pub flush_bytes: usize,
    /// ...or when their oldest row has waited this long.
    pub flush_age: Duration,
    /// How often files past their database's TTL are dropped and small
    /// files are merged (also right after each flush).
    pub maintain_every: Duration,
    /// When files are merged.
    pub compaction: Policy,
    /// Query bounds.
    pub query: QueryLimits,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            flush_bytes: 64 << 20,
            flush_age: Duration::from_secs(60),
            maintain_every: Duration::from_secs(60),
            compaction: Policy::default(),
            query: QueryLimits::default(),
        }
    }
}

/// Parses a retention period as CnosDB writes it (`'30d'`, `'12h'`,
/// `'90m'`, `'INF'`; units ns, us, ms, s, m, h, d, w): `None` is forever.
pub fn parse_ttl(text: &str) -> Result<Option<i64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinite") {
        return Ok(None);
    }
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("TTL {text:?}: a number and a unit, such as '30d', or 'INF'"))?;
    let per: i64 = match unit.trim().to_ascii_lowercase().as_str() {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" | "" => 86_400_000_000_000,
        "w" => 7 * 86_400_000_000_000,
        other => {
            return Err(format!(
                "TTL {text:?}: unknown unit {other:?} (ns, us, ms, s, m, h, d, w)"
            ));
        }
    };
    match n.checked_mul(per) {
        Some(0) => Err(format!("TTL {text:?} must be positive")),
        Some(ns) => Ok(Some(ns)),
        None => Err(format!("TTL {text:?} is too long")),
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database's write side (log, schema).
    #[error(transparent)]
    Db(#[from] DbError),
    /// A query.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A file of the store.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// No such database.
    #[error("database {0:?} not found")]
    NoDatabase(String),
    /// A name that cannot be a database.
    #[error("database name {0:?}: use 1 to 64 letters, digits, '_' or '-'")]
    BadName(String),
    /// A buffer could not become Arrow (a bug: the schema check admits
    /// only rows that can).
    #[error("buffering rows: {0}")]
    Arrow(String),
}

impl StoreError {
    /// Whether the disk is full (the write changed nothing; it works
    /// again once space returns).
    pub fn is_full(&self) -> bool {
        match self {
            StoreError::Db(DbError::Wal(w)) => w.is_full(),
            StoreError::Db(DbError::Io { source, .. }) | StoreError::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::StorageFull
            }
            _ => false,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Whether `name` can be a database (it is also its directory's name).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A database's settings, as the catalog keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DatabaseOptions {
    /// Rows older than this are dropped (none: kept forever).
    pub ttl_ns: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Catalog {
    databases: BTreeMap<String, DatabaseOptions>,
}

/// A table's unflushed rows.
#[derive(Debug, Default)]
struct TableBuffer {
    /// Rows already in Arrow, each batch in the schema of its time.
    chunks: Vec<RecordBatch>,
    /// Rows not yet in Arrow.
    pending: Vec<Row>,
}

#[derive(Debug, Default)]
struct DbState {
    manifest: Manifest,
    active: BTreeMap<String, TableBuffer>,
    /// The buffers a running flush is writing out (still visible).
    frozen: Option<Arc<BTreeMap<String, Vec<RecordBatch>>>>,
    /// Estimated bytes of `active`.
    bytes: usize,
    /// When `active` got its first row.
    since: Option<Instant>,
    /// Shared by the snapshots taken since the manifest last lost files.
    epoch: Arc<()>,
    /// Files out of the manifest, each batch with the epoch of the
    /// snapshots that may still read it, oldest first.
    graveyard: Vec<(Arc<()>, Vec<FileEntry>)>,
}

/// One open database.
#[derive(Debug)]
struct Db {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    database: Database,
    flushing: Mutex<()>,
    gate: RwLock<()>,
    state: Mutex<DbState>,
    /// When each table and day last got a file from a flush (a day not
    /// here counts from the open).
    touched: Mutex<HashMap<(String, String), Instant>>,
    opened: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn row_bytes(r: &Row) -> usize {
    let fields: usize = r
        .fields
        .iter()
        .map(|(k, v)| {
            k.len()
                + 24
                + match v {
                    Value::Str(s) => s.len(),
                    _ => 8,
                }
        })
        .sum();
    let tags: usize = r.tags.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
    r.table.len() + 64 + tags + fields
}

impl Db {
    fn open(storage: Arc<dyn Storage>, dir: PathBuf) -> Result<Self, StoreError> {
        for sub in ["tmp", "data"] {
            let d = dir.join(sub);
            storage.create_dir_all(&d).map_err(io_err(&d))?;
        }
        let manifest = Manifest::load(&*storage, &dir).map_err(io_err(&dir))?;
        // What a crash left: files being written, files never listed.
        let tmp = dir.join("tmp");
        for name in storage.list(&tmp).map_err(io_err(&tmp))? {
            let p = tmp.join(&name);
            if name.ends_with(".parquet") {
                storage.remove(&p).map_err(io_err(&p))?;
            }
        }
        let data = dir.join("data");
        for name in storage.list(&data).map_err(io_err(&data))? {
            if let Some(id) = parse_file_name(&name)
                && !manifest.files.iter().any(|f| f.id == id)
            {
                let p = data.join(&name);
                tracing::info!(file = %p.display(), "removing a file no manifest lists (left by a crash)");
                storage.remove(&p).map_err(io_err(&p))?;
            }
        }
        for f in &manifest.files {
            let p = data.join(f.file_name());
            if !storage.exists(&p) {
                tracing::warn!(file = %p.display(), table = %f.table, rows = f.rows, "a file the manifest lists is missing");
            }
        }
        let (database, recovered) = Database::open(storage.clone(), &dir, manifest.wal)?;
        database.seed_positions(&manifest.positions);
        let db = Self {
            dir,
            storage,
            database,
            flushing: Mutex::new(()),
            gate: RwLock::new(()),
            state: Mutex::new(DbState {
                manifest,
                ..DbState::default()
            }),
            touched: Mutex::new(HashMap::new()),
            opened: Instant::now(),
        };
        {
            let mut st = lock(&db.state);
            for (_, batch) in recovered.batches {
                db.buffer(&mut st, batch.rows)?;
            }
        }
        Ok(db)
    }

    /// Puts rows (already durable) into the buffers.
    fn buffer(&self, st: &mut DbState, rows: Vec<Row>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        st.since.get_or_insert_with(Instant::now);
        for row in rows {
            st.bytes += row_bytes(&row);
            let t = st.active.entry(row.table.clone()).or_default();
            t.pending.push(row);
            if t.pending.len() >= CHUNK_ROWS {
                let name = t.pending[0].table.clone();
                self.seal(t, &name)?;
            }
        }
        Ok(())
    }

    /// Turns a table's pending rows into one Arrow batch.
    fn seal(&self, t: &mut TableBuffer, table: &str) -> Result<(), StoreError> {
        if t.pending.is_empty() {
            return Ok(());
        }
        let schema = self.database.table(table).unwrap_or_default();
        let batch =
            to_batch(&schema, t.pending.iter()).map_err(|e| StoreError::Arrow(e.to_string()))?;
        t.pending.clear();
        t.chunks.push(batch);
        Ok(())
    }

    fn write(&self, mut batch: Batch) -> Result<(Position, usize), StoreError> {
        self.database.schema().coerce(&mut batch);
        let _writers = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let at = self.database.write(&batch)?;
        let mut st = lock(&self.state);
        self.buffer(&mut st, batch.rows)?;
        Ok((at, st.bytes))
    }

    fn snapshot(&self) -> Result<Vec<TableSnapshot>, StoreError> {
        let mut st = lock(&self.state);
        // Read under `state`: every buffered row's columns are in it.
        let schema = self.database.schema();
        let mut out = Vec::with_capacity(schema.tables.len());
        let names: Vec<String> = st.active.keys().cloned().collect();
        for name in names {
            if let Some(t) = st.active.get_mut(&name) {
                self.seal(t, &name)?;
            }
        }
        for (name, table) in &schema.tables {
            let arrow = arrow_schema(table);
            let mut buffer = Vec::new();
            let frozen = st.frozen.as_ref().and_then(|f| f.get(name));
            let active = st.active.get(name).map(|t| &t.chunks);
            for b in frozen
                .into_iter()
                .flatten()
                .chain(active.into_iter().flatten())
            {
                buffer.push(widen(b, &arrow).map_err(|e| StoreError::Arrow(e.to_string()))?);
            }
            out.push(TableSnapshot {
                name: name.clone(),
                schema: arrow,
                files: st
                    .manifest
                    .files
                    .iter()
                    .filter(|f| f.table == *name)
                    .cloned()
                    .collect(),
                buffer,
                data_dir: self.dir.join("data"),
                files_in_use: st.epoch.clone(),
            });
        }
        Ok(out)
    }

    /// Whether the buffers are due for a flush.
    fn due(&self, config: &StoreConfig) -> bool {
        let st = lock(&self.state);
        st.bytes >= config.flush_bytes || st.since.is_some_and(|s| s.elapsed() >= config.flush_age)
    }

    /// Writes the buffers out as Parquet files and lists them.
    fn flush(&self) -> Result<(), StoreError> {
        let _one = lock(&self.flushing);
        let (frozen, from, positions) = {
            let _alone = self.gate.write().unwrap_or_else(|p| p.into_inner());
            let mut st = lock(&self.state);
            if st.active.is_empty() {
                return Ok(());
            }
            let from = self.database.wal().roll().map_err(DbError::from)?;
            let mut frozen = BTreeMap::new();
            for (name, mut t) in std::mem::take(&mut st.active) {
                self.seal(&mut t, &name)?;
                frozen.insert(name, t.chunks);
            }
            let frozen = Arc::new(frozen);
            st.frozen = Some(frozen.clone());
            st.bytes = 0;
            st.since = None;
            (frozen, from, self.database.positions())
        };
        match self.write_out(&frozen, from, positions) {
            Ok(next) => {
                let mut st = lock(&self.state);
                let old = std::mem::replace(&mut st.manifest, next);
                st.frozen = None;
                let now = Instant::now();
                let mut touched = lock(&self.touched);
                for f in &st.manifest.files {
                    if !old.files.iter().any(|o| o.id == f.id) {
                        touched.insert((f.table.clone(), f.day.clone()), now);
                    }
                }
                drop(touched);
                drop(st);
                // The segments before `from` are all in listed files now.
                if let Err(e) = self.database.wal().remove_before(from) {
                    tracing::warn!(error = %e, "removing flushed log segments (retried at the next flush)");
                }
                Ok(())
            }
            Err(e) => {
                // Nothing is listed: the rows stay buffered (and in the
                // log) and the next flush takes them again.
                let mut st = lock(&self.state);
                if let Some(frozen) = st.frozen.take() {
                    let frozen = Arc::try_unwrap(frozen).unwrap_or_else(|a| (*a).clone());
                    st.bytes += frozen
                        .values()
                        .flatten()
                        .map(RecordBatch::get_array_memory_size)
                        .sum::<usize>();
                    for (name, chunks) in frozen {
                        let t = st.active.entry(name).or_default();
                        let newer = std::mem::replace(&mut t.chunks, chunks);
                        t.chunks.extend(newer);
                    }
                    st.since.get_or_insert_with(Instant::now);
                }
                Err(e)
            }
        }
    }

    /// Writes the frozen buffers' files, then the manifest that lists
    /// them; returns that manifest.
    fn write_out(
        &self,
        frozen: &BTreeMap<String, Vec<RecordBatch>>,
        from: Position,
        positions: BTreeMap<String, i64>,
    ) -> Result<Manifest, StoreError> {
        let schema: Schema = self.database.schema();
        let mut next = lock(&self.state).manifest.clone();
        let data = self.dir.join("data");
        let mut written: Vec<FileEntry> = Vec::new();
        let result = (|| {
            for (name, chunks) in frozen {
                let table = schema.tables.get(name).cloned().unwrap_or_default();
                let arrow = arrow_schema(&table);
                let widened = chunks
                    .iter()
                    .map(|b| widen(b, &arrow))
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|bs| concat_batches(&arrow, &bs))
                    .map_err(|e| StoreError::Arrow(e.to_string()))?;
                let files =
                    write_table(&*self.storage, &self.dir, name, &widened, &mut next.next_id)
                        .map_err(io_err(&data))?;
                written.extend(files);
            }
            self.storage.sync_dir(&data).map_err(io_err(&data))?;
            next.files.extend(written.iter().cloned());
            next.wal = from;
            next.positions.extend(positions);
            next.save(&*self.storage, &self.dir)
                .map_err(io_err(&self.dir))?;
            Ok(())
        })();
        match result {
            Ok(()) => Ok(next),
            Err(e) => {
                for f in &written {
                    let _ = self.storage.remove(&data.join(f.file_name()));
                }
                Err(e)
            }
        }
    }
}

impl Db {
    /// Carries out what the planner asks now: drops the files past the
    /// TTL, merges small files. Returns the rows dropped and the merges
    /// done. A merge that fails (a full disk, a damaged file) is logged
    /// and the others go on; it is planned again next time.
    fn maintain(
        &self,
        ttl_ns: Option<i64>,
        now_ns: i64,
        policy: &Policy,
    ) -> Result<(u64, usize), StoreError> {
        let _one = lock(&self.flushing);
        let settled = |table: &str, day: &str| {
            let touched = lock(&self.touched);
            let at = touched
                .get(&(table.to_owned(), day.to_owned()))
                .copied()
                .unwrap_or(self.opened);
            at.elapsed() >= policy.settle
        };
        let (mut dropped, mut merged) = (0, 0);
        // A plan merges once per table and day; a few rounds catch up
        // after many flushes (each round merges at least two files into
        // one, so they end).
        for _ in 0..MAINTAIN_ROUNDS {
            let files = lock(&self.state).manifest.files.clone();
            let actions = compaction::plan(&files, now_ns, ttl_ns, policy, &settled);
            let mut progress = false;
            for action in actions {
                match action {
                    Action::Drop { ids } => {
                        dropped += self.replace_files(&ids, None)?;
                    }
                    Action::Merge {
                        table, ids, level, ..
                    } => match self.merge(&table, &ids, level) {
                        Ok(()) => {
                            merged += 1;
                            progress = true;
                        }
                        Err(e) => {
                            tracing::warn!(db = %self.dir.display(), %table, error = %e, "merging files (retried later)");
                        }
                    },
                }
            }
            if !progress {
                break;
            }
        }
        self.sweep();
        Ok((dropped, merged))
    }

    /// Merges files `ids` of `table` into one and lists it instead.
    fn merge(&self, table: &str, ids: &[u64], level: u32) -> Result<(), StoreError> {
        let (inputs, id) = {
            let mut st = lock(&self.state);
            let inputs: Vec<FileEntry> = st
                .manifest
                .files
                .iter()
                .filter(|f| ids.contains(&f.id))
                .cloned()
                .collect();
            // The id is taken for good: a file a crash leaves under it is
            // not listed and is removed at open.
            let id = st.manifest.next_id;
            st.manifest.next_id += 1;
            (inputs, id)
        };
        let schema = arrow_schema(&self.database.table(table).unwrap_or_default());
        let data = self.dir.join("data");
        let entry = merge_files(&*self.storage, &self.dir, &inputs, &schema, id, level)
            .map_err(io_err(&data))?;
        let listed = self
            .storage
            .sync_dir(&data)
            .map_err(io_err(&data))
            .and_then(|()| self.replace_files(ids, Some(entry.clone())));
        if listed.is_err() {
            let _ = self.storage.remove(&data.join(entry.file_name()));
        }
        listed.map(|_| ())
    }

    /// Takes files `ids` out of the manifest (putting `with` in their
    /// place), saves it, and sends them to the graveyard. Returns their
    /// rows.
    fn replace_files(&self, ids: &[u64], with: Option<FileEntry>) -> Result<u64, StoreError> {
        let mut next = lock(&self.state).manifest.clone();
        let (gone, kept): (Vec<FileEntry>, Vec<FileEntry>) =
            next.files.into_iter().partition(|f| ids.contains(&f.id));
        next.files = kept;
        next.files.extend(with);
        next.save(&*self.storage, &self.dir)
            .map_err(io_err(&self.dir))?;
        let mut st = lock(&self.state);
        // `next_id` may have moved on (a merge took one) since the clone.
        next.next_id = next.next_id.max(st.manifest.next_id);
        st.manifest = next;
        let epoch = std::mem::replace(&mut st.epoch, Arc::new(()));
        let rows = gone.iter().map(|f| f.rows).sum();
        st.graveyard.push((epoch, gone));
        Ok(rows)
    }

    /// Deletes the files out of the manifest that no query can read any
    /// more: those of every epoch, oldest first, that no snapshot holds.
    fn sweep(&self) {
        let ready: Vec<FileEntry> = {
            let mut st = lock(&self.state);
            let free = st
                .graveyard
                .iter()
                .take_while(|(epoch, _)| Arc::strong_count(epoch) == 1)
                .count();
            st.graveyard.drain(..free).flat_map(|(_, f)| f).collect()
        };
        let data = self.dir.join("data");
        for f in ready {
            // A file left here (a failed removal, a crash) is not listed
            // and is removed at open.
            if let Err(e) = self.storage.remove(&data.join(f.file_name())) {
                tracing::warn!(file = %f.file_name(), error = %e, "removing a file the manifest no longer lists");
            }
        }
    }

    /// Removes every file of the database (it was dropped).
    fn remove_all(&self) {
        let _one = lock(&self.flushing);
        let _alone = self.gate.write().unwrap_or_else(|p| p.into_inner());
        for sub in ["wal", "data", "tmp", ""] {
            let d = self.dir.join(sub);
            for name in self.storage.list(&d).unwrap_or_default() {
                let _ = self.storage.remove(&d.join(name));
            }
        }
        *lock(&self.state) = DbState::default();
    }
}

/// The embedded time-series store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    storage: Arc<dyn Storage>,
    config: StoreConfig,
    catalog: Mutex<Catalog>,
    dbs: RwLock<BTreeMap<String, Arc<Db>>>,
    engine: Engine,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Store {
    /// Opens (or creates) the store in `root`: every database's buffers
    /// are rebuilt from its log, and a thread flushes them when due.
    pub fn open(
        storage: Arc<dyn Storage>,
        root: impl Into<PathBuf>,
        config: StoreConfig,
    ) -> Result<Arc<Self>, StoreError> {
        // Absolute: queries read files by URL.
        let root = root.into();
        let root = std::path::absolute(&root).map_err(io_err(&root))?;
        storage.create_dir_all(&root).map_err(io_err(&root))?;
        let path = root.join(CATALOG);
        let catalog: Catalog = if storage.exists(&path) {
            let f = storage.open(&path, false).map_err(io_err(&path))?;
            let mut data = vec![0u8; f.len().map_err(io_err(&path))? as usize];
            f.read_exact_at(&mut data, 0).map_err(io_err(&path))?;
            serde_json::from_slice(&data).map_err(|e| StoreError::Io {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?
        } else {
            Catalog::default()
        };
        let mut dbs = BTreeMap::new();
        for name in catalog.databases.keys() {
            dbs.insert(
                name.clone(),
                Arc::new(Db::open(storage.clone(), root.join(name))?),
            );
        }
        // Operators spill inside the store (never elsewhere); what a crash
        // left there is removed.
        let spill = (config.query.spill_bytes > 0).then(|| root.join("tmp").join("spill"));
        if let Some(dir) = &spill {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let engine = Engine::new(config.query.clone(), spill)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name("weir-query")
            .enable_time()
            .build()
            .map_err(io_err(&root))?;
        let store = Arc::new(Self {
            root,
            storage,
            config,
            catalog: Mutex::new(catalog),
            dbs: RwLock::new(dbs),
            engine,
            runtime: Mutex::new(Some(runtime)),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
        });
        let weak = Arc::downgrade(&store);
        let stop = store.stop.clone();
        std::thread::Builder::new()
            .name("weir-store-flush".into())
            .spawn(move || flusher(weak, stop))
            .map_err(io_err(&store.root))?;
        Ok(store)
    }

    /// The databases, by name.
    pub fn databases(&self) -> Vec<(String, DatabaseOptions)> {
        lock(&self.catalog)
            .databases
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn db(&self, name: &str) -> Option<Arc<Db>> {
        self.dbs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Creates a database (no change if it exists).
    pub fn create_database(&self, name: &str, options: DatabaseOptions) -> Result<(), StoreError> {
        self.db_or_create(name, Some(options)).map(|_| ())
    }

    fn db_or_create(
        &self,
        name: &str,
        options: Option<DatabaseOptions>,
    ) -> Result<Arc<Db>, StoreError> {
        if let Some(db) = self.db(name) {
            return Ok(db);
        }
        if !valid_name(name) {
            return Err(StoreError::BadName(name.to_owned()));
        }
        let mut dbs = self.dbs.write().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = dbs.get(name) {
            return Ok(db.clone());
        }
        let db = Arc::new(Db::open(self.storage.clone(), self.root.join(name))?);
        let mut catalog = lock(&self.catalog);
        let mut next = catalog.clone();
        next.databases
            .insert(name.to_owned(), options.unwrap_or_default());
        self.save_catalog(&next)?;
        *catalog = next;
        dbs.insert(name.to_owned(), db.clone());
        Ok(db)
    }

    fn save_catalog(&self, next: &Catalog) -> Result<(), StoreError> {
        let text = serde_json::to_vec_pretty(next).map_err(|e| StoreError::Arrow(e.to_string()))?;
        frames::write_atomic(&*self.storage, &self.root, CATALOG, &text)
            .map_err(io_err(&self.root.join(CATALOG)))
    }

    /// Changes a database's options (its TTL).
    pub fn set_options(&self, name: &str, options: DatabaseOptions) -> Result<(), StoreError> {
        let mut catalog = lock(&self.catalog);
        if !catalog.databases.contains_key(name) {
            return Err(StoreError::NoDatabase(name.to_owned()));
        }
        let mut next = catalog.clone();
        next.databases.insert(name.to_owned(), options);
        self.save_catalog(&next)?;
        *catalog = next;
        Ok(())
    }

    /// A database's options.
    pub fn options(&self, name: &str) -> Option<DatabaseOptions> {
        lock(&self.catalog).databases.get(name).cloned()
    }

    /// Drops a database and every row in it.
    pub fn drop_database(&self, name: &str) -> Result<(), StoreError> {
        let mut dbs = self.dbs.write().unwrap_or_else(|p| p.into_inner());
        let mut catalog = lock(&self.catalog);
        if !catalog.databases.contains_key(name) {
            return Err(StoreError::NoDatabase(name.to_owned()));
        }
        let mut next = catalog.clone();
        next.databases.remove(name);
        self.save_catalog(&next)?;
        *catalog = next;
        if let Some(db) = dbs.remove(name) {
            db.remove_all();
        }
        Ok(())
    }

    /// Drops what is past every database's TTL now and merges small
    /// files; returns the rows dropped and the merges done.
    pub fn maintain(&self) -> Result<(u64, usize), StoreError> {
        let (mut rows, mut merges) = (0, 0);
        for (name, options) in self.databases() {
            if let Some(db) = self.db(&name) {
                let (r, m) = db.maintain(options.ttl_ns, now_ns(), &self.config.compaction)?;
                rows += r;
                merges += m;
            }
        }
        Ok((rows, merges))
    }

    /// Every writer's last durable position in `db`.
    pub fn positions(&self, db: &str) -> BTreeMap<String, i64> {
        self.db(db)
            .map(|d| d.database.positions())
            .unwrap_or_default()
    }

    /// Makes `batch` durable in database `db` (created if new) and
    /// visible to queries; returns once it is on disk.
    pub fn write(&self, db: &str, batch: Batch) -> Result<Position, StoreError> {
        let d = self.db_or_create(db, None)?;
        let (at, bytes) = d.write(batch)?;
        if bytes >= self.config.flush_bytes.saturating_mul(2) {
            // The flusher is behind: this writer helps, which bounds memory.
            d.flush()?;
        } else if bytes >= self.config.flush_bytes {
            self.stop.1.notify_all();
        }
        Ok(at)
    }

    /// A writer's last durable position in `db` (a pipeline resumes its
    /// source after it).
    pub fn position(&self, db: &str, key: &str) -> Option<i64> {
        self.db(db)?.database.position(key)
    }

    /// The tables of `db` and their schema.
    pub fn schema(&self, db: &str) -> Result<Schema, StoreError> {
        Ok(self
            .db(db)
            .ok_or_else(|| StoreError::NoDatabase(db.to_owned()))?
            .database
            .schema())
    }

    /// The live files of `db`.
    pub fn files(&self, db: &str) -> Result<Vec<FileEntry>, StoreError> {
        let d = self
            .db(db)
            .ok_or_else(|| StoreError::NoDatabase(db.to_owned()))?;
        Ok(lock(&d.state).manifest.files.clone())
    }

    /// Flushes `db`'s buffers now.
    pub fn flush(&self, db: &str) -> Result<(), StoreError> {
        match self.db(db) {
            Some(d) => d.flush(),
            None => Err(StoreError::NoDatabase(db.to_owned())),
        }
    }

    /// Flushes every database (at shutdown).
    pub fn flush_all(&self) -> Result<(), StoreError> {
        let dbs: Vec<Arc<Db>> = self
            .dbs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for d in dbs {
            d.flush()?;
        }
        Ok(())
    }

    /// Runs a query over `db`.
    pub async fn query(&self, db: &str, sql: &str) -> Result<Answer, StoreError> {
        let d = self
            .db(db)
            .ok_or_else(|| StoreError::NoDatabase(db.to_owned()))?;
        let tables = d.snapshot()?;
        Ok(self.engine.run(tables, sql).await?)
    }

    /// [`Store::query`] for a caller outside any async runtime: runs on the
    /// store's own query threads and waits.
    pub fn query_blocking(self: &Arc<Self>, db: &str, sql: &str) -> Result<Answer, StoreError> {
        let handle = lock(&self.runtime)
            .as_ref()
            .map(|r| r.handle().clone())
            .ok_or_else(|| StoreError::Query(QueryError::Failed("the store is closed".into())))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let me = self.clone();
        let (db, sql) = (db.to_owned(), sql.to_owned());
        handle.spawn(async move {
            let _ = tx.send(me.query(&db, &sql).await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Query(QueryError::Failed(
                "the query stopped".into(),
            )))
        })
    }

    /// Flushes everything and stops the flusher.
    pub fn close(&self) -> Result<(), StoreError> {
        {
            let (m, c) = &*self.stop;
            *lock(m) = true;
            c.notify_all();
        }
        self.flush_all()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let (m, c) = &*self.stop;
        *lock(m) = true;
        c.notify_all();
        if let Some(rt) = lock(&self.runtime).take() {
            rt.shutdown_background();
        }
    }
}

/// Flushes databases when due, until the store closes or goes away.
fn flusher(store: Weak<Store>, stop: Arc<(Mutex<bool>, Condvar)>) {
    let mut maintained_at = Instant::now();
    loop {
        {
            let (m, c) = &*stop;
            let g = lock(m);
            if *g {
                return;
            }
            let (g, _) = c
                .wait_timeout(g, Duration::from_millis(250))
                .unwrap_or_else(|p| p.into_inner());
            if *g {
                return;
            }
        }
        let Some(store) = store.upgrade() else {
            return;
        };
        let dbs: Vec<Arc<Db>> = store
            .dbs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut flushed = false;
        for d in &dbs {
            if d.due(&store.config) {
                flushed = true;
                if let Err(e) = d.flush() {
                    tracing::warn!(db = %d.dir.display(), error = %e, "flushing the store's buffers (retried)");
                }
            }
            d.sweep();
        }
        if flushed || maintained_at.elapsed() >= store.config.maintain_every {
            maintained_at = Instant::now();
            match store.maintain() {
                Ok((0, 0)) => {}
                Ok((rows, merges)) => {
                    tracing::info!(
                        rows,
                        merges,
                        "dropped rows past their TTL, merged small files"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "store maintenance (retried)"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{is_sorted_by_time, read_file};
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::TimestampNanosecondType;
    use weir_log::FaultStorage;

    fn config() -> StoreConfig {
        StoreConfig {
            // Flushes only when a test asks.
            flush_bytes: usize::MAX / 4,
            flush_age: Duration::from_secs(3600),
            maintain_every: Duration::from_secs(3600),
            compaction: Policy::default(),
            query: QueryLimits {
                spill_bytes: 0,
                ..QueryLimits::default()
            },
        }
    }

    fn open(s: &FaultStorage) -> Arc<Store> {
        Store::open(Arc::new(s.clone()), "/store", config()).unwrap()
    }

    fn batch(i: i64, fields: Vec<(&str, Value)>) -> Batch {
        Batch {
            rows: vec![Row {
                table: "m".into(),
                time: i,
                tags: vec![("host".into(), format!("h{}", i % 2))],
                fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            }],
            positions: vec![("src".into(), i)],
        }
    }

    /// Every time in `db`'s table `m`: its files read through the storage,
    /// then its buffers (as a query sees them).
    fn times(store: &Store, s: &FaultStorage) -> Vec<i64> {
        let d = store.db("public").unwrap();
        let mut out = Vec::new();
        for t in d.snapshot().unwrap() {
            for f in &t.files {
                let back = read_file(s, &t.data_dir.join(f.file_name())).unwrap();
                assert!(is_sorted_by_time(&back));
                for b in back {
                    out.extend(
                        b.column(0)
                            .as_primitive::<TimestampNanosecondType>()
                            .values(),
                    );
                }
            }
            for b in &t.buffer {
                out.extend(
                    b.column(0)
                        .as_primitive::<TimestampNanosecondType>()
                        .values(),
                );
            }
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn a_power_cut_anywhere_in_writes_and_flushes_keeps_every_acknowledged_row_once() {
        for changes in 0..60u64 {
            let s = FaultStorage::new();
            let store = open(&s);
            store
                .create_database("public", DatabaseOptions::default())
                .unwrap();
            s.fail_after_changes(Some(changes));
            let mut acked = Vec::new();
            for i in 0..12 {
                if store
                    .write("public", batch(i, vec![("v", Value::Int(i))]))
                    .is_ok()
                {
                    acked.push(i);
                }
                if i % 4 == 3 {
                    let _ = store.flush("public");
                }
            }
            drop(store);
            s.fail_after_changes(None);
            s.crash();
            let store = open(&s);
            let got = times(&store, &s);
            let mut dedup = got.clone();
            dedup.dedup();
            assert_eq!(dedup, got, "{changes}: a row twice");
            for a in &acked {
                assert!(got.contains(a), "{changes}: row {a} lost: {got:?}");
            }
            // The writer's position is its last durable row's.
            assert_eq!(
                store.position("public", "src"),
                got.last().copied(),
                "{changes}"
            );
            // The store works on.
            store
                .write("public", batch(100, vec![("v", Value::Int(1))]))
                .unwrap();
            store.flush("public").unwrap();
            assert!(times(&store, &s).contains(&100));
        }
    }

    /// Eight flushes of one row each (the later ones with a new column),
    /// then maintenance, with a power cut after each of its storage
    /// changes in turn: every row is there once, every listed file reads,
    /// and without a cut the eight files are two (tier 0, then tier 1).
    #[test]
    fn compaction_keeps_every_row_once_through_a_power_cut_anywhere() {
        let times_written: Vec<i64> = (0..8).map(|i| (i * 5) % 8).collect();
        let mut cut_somewhere = false;
        for changes in 0..40u64 {
            let s = FaultStorage::new();
            let store = open(&s);
            for (n, &t) in times_written.iter().enumerate() {
                let mut fields = vec![("v", Value::Int(t))];
                if n >= 4 {
                    fields.push(("w", Value::Float(0.5)));
                }
                store.write("public", batch(t, fields)).unwrap();
                store.flush("public").unwrap();
            }
            assert_eq!(store.files("public").unwrap().len(), 8);
            s.fail_after_changes(Some(changes));
            let done = store.maintain();
            s.fail_after_changes(None);
            drop(store);
            s.crash();
            let store = open(&s);
            assert_eq!(times(&store, &s), (0..8).collect::<Vec<_>>(), "{changes}");
            let files = store.files("public").unwrap();
            if done.is_ok_and(|(_, merges)| merges == 2) {
                assert_eq!(files.len(), 2, "{changes}: {files:?}");
                assert!(files.iter().all(|f| f.level == 1 && f.rows == 4));
            } else {
                cut_somewhere = true;
            }
            // Nothing but listed files is left in data/.
            let listed: Vec<String> = files.iter().map(FileEntry::file_name).collect();
            let mut on_disk = s.list(Path::new("/store/public/data")).unwrap();
            on_disk.sort();
            let mut listed_sorted = listed.clone();
            listed_sorted.sort();
            assert_eq!(on_disk, listed_sorted, "{changes}");
            // It goes on merging after the cut.
            store.maintain().unwrap();
            assert_eq!(store.files("public").unwrap().len(), 2, "{changes}");
            assert_eq!(times(&store, &s), (0..8).collect::<Vec<_>>(), "{changes}");
        }
        assert!(cut_somewhere, "no cut fell inside the maintenance");
    }

    /// A query's snapshot keeps the files it may read: compaction takes
    /// them out of the manifest at once but deletes them only after the
    /// snapshot is gone.
    #[test]
    fn merged_files_are_deleted_only_after_the_queries_that_hold_them() {
        let s = FaultStorage::new();
        let store = open(&s);
        for t in 0..4 {
            store
                .write("public", batch(t, vec![("v", Value::Int(t))]))
                .unwrap();
            store.flush("public").unwrap();
        }
        let d = store.db("public").unwrap();
        let held = d.snapshot().unwrap();
        let old: Vec<PathBuf> = held[0]
            .files
            .iter()
            .map(|f| held[0].data_dir.join(f.file_name()))
            .collect();
        assert_eq!(store.maintain().unwrap(), (0, 1));
        assert_eq!(store.files("public").unwrap().len(), 1);
        assert!(old.iter().all(|p| s.exists(p)), "deleted under a query");
        // A snapshot taken after the merge does not hold them.
        let later = d.snapshot().unwrap();
        drop(held);
        d.sweep();
        assert!(old.iter().all(|p| !s.exists(p)), "kept after the query");
        assert_eq!(later[0].files.len(), 1);
        assert_eq!(times(&store, &s), vec![0, 1, 2, 3]);
    }

    /// A full disk during a merge fails that merge and changes nothing;
    /// with space back it goes through.
    #[test]
    fn a_full_disk_during_a_merge_changes_nothing_and_the_next_one_works() {
        let s = FaultStorage::new();
        let store = open(&s);
        for t in 0..4 {
            store
                .write("public", batch(t, vec![("v", Value::Int(t))]))
                .unwrap();
            store.flush("public").unwrap();
        }
        let before = store.files("public").unwrap();
        s.set_capacity(Some(s.used() + 100));
        assert_eq!(store.maintain().unwrap(), (0, 0));
        assert_eq!(store.files("public").unwrap(), before);
        assert!(s.list(Path::new("/store/public/tmp")).unwrap().is_empty());
        s.set_capacity(None);
        assert_eq!(store.maintain().unwrap(), (0, 1));
        assert_eq!(times(&store, &s), vec![0, 1, 2, 3]);
    }

    #[test]
    fn positions_and_rows_survive_a_flush_and_a_restart_and_the_log_is_trimmed() {
        let s = FaultStorage::new();
        let store = open(&s);
        for i in 0..5 {
            store
                .write("public", batch(i, vec![("v", Value::Int(i))]))
                .unwrap();
        }
        store.flush("public").unwrap();
        store
            .write("public", batch(5, vec![("v", Value::Int(5))]))
            .unwrap();
        let segments = s.list(Path::new("/store/public/wal")).unwrap();
        assert_eq!(segments.len(), 1, "flushed segments removed: {segments:?}");
        drop(store);
        s.crash();
        let store = open(&s);
        assert_eq!(times(&store, &s), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(store.position("public", "src"), Some(5));
        assert_eq!(store.files("public").unwrap().len(), 1);
    }

    #[test]
    fn a_failed_flush_lists_nothing_keeps_the_rows_and_the_next_one_works() {
        let s = FaultStorage::new();
        let store = open(&s);
        for i in 0..3 {
            store
                .write("public", batch(i, vec![("v", Value::Int(i))]))
                .unwrap();
        }
        s.set_capacity(Some(s.used() + 10));
        let e = store.flush("public").unwrap_err();
        assert!(e.is_full(), "{e}");
        assert!(store.files("public").unwrap().is_empty());
        assert_eq!(times(&store, &s), vec![0, 1, 2]);
        let e = store.write("public", batch(7, vec![("v", Value::Int(7))]));
        assert!(e.as_ref().is_err_and(StoreError::is_full), "{e:?}");
        s.set_capacity(None);
        store
            .write("public", batch(3, vec![("v", Value::Int(3))]))
            .unwrap();
        store.flush("public").unwrap();
        assert_eq!(times(&store, &s), vec![0, 1, 2, 3]);
        assert!(s.list(Path::new("/store/public/tmp")).unwrap().is_empty());
        drop(store);
        s.crash();
        assert_eq!(times(&open(&s), &s), vec![0, 1, 2, 3]);
    }

    #[test]
    fn leftover_files_of_a_crash_are_removed_at_open() {
        let s = FaultStorage::new();
        let store = open(&s);
        store
            .write("public", batch(1, vec![("v", Value::Int(1))]))
            .unwrap();
        store.flush("public").unwrap();
        drop(store);
        for p in [
            "/store/public/data/000000000099.parquet",
            "/store/public/tmp/000000000100.parquet",
        ] {
            s.set_contents(Path::new(p), b"half a file".to_vec());
        }
        let store = open(&s);
        assert_eq!(s.list(Path::new("/store/public/data")).unwrap().len(), 1);
        assert!(s.list(Path::new("/store/public/tmp")).unwrap().is_empty());
        assert_eq!(times(&store, &s), vec![1]);
    }

    #[test]
    fn ttls_parse_as_cnosdb_writes_them() {
        assert_eq!(parse_ttl("30d"), Ok(Some(30 * 86_400_000_000_000)));
        assert_eq!(parse_ttl("90m"), Ok(Some(90 * 60_000_000_000)));
        assert_eq!(parse_ttl("INF"), Ok(None));
        assert!(parse_ttl("0d").is_err());
        assert!(parse_ttl("3y").unwrap_err().contains("unit"));
        assert!(parse_ttl("999999999999d").is_err());
    }

    #[test]
    fn retention_drops_only_whole_files_past_the_ttl_and_a_dropped_database_is_gone() {
        let s = FaultStorage::new();
        let store = open(&s);
        let day = 86_400_000_000_000i64;
        let now = now_ns();
        for age in [10, 3, 0] {
            store
                .write(
                    "public",
                    batch(now - age * day, vec![("v", Value::Int(age))]),
                )
                .unwrap();
            store.flush("public").unwrap();
        }
        store
            .set_options(
                "public",
                DatabaseOptions {
                    ttl_ns: Some(5 * day),
                },
            )
            .unwrap();
        assert_eq!(store.maintain().unwrap(), (1, 0));
        assert_eq!(times(&store, &s), vec![now - 3 * day, now]);
        assert_eq!(s.list(Path::new("/store/public/data")).unwrap().len(), 2);
        drop(store);
        s.crash();
        let store = open(&s);
        assert_eq!(store.options("public").unwrap().ttl_ns, Some(5 * day));
        assert_eq!(times(&store, &s).len(), 2);
        store.drop_database("public").unwrap();
        assert!(store.databases().is_empty());
        assert!(s.list(Path::new("/store/public/data")).unwrap().is_empty());
        drop(store);
        let store = open(&s);
        assert!(store.databases().is_empty());
        assert!(matches!(
            store.drop_database("public"),
            Err(StoreError::NoDatabase(_))
        ));
    }

    #[test]
    fn bad_database_names_are_refused() {
        let s = FaultStorage::new();
        let store = open(&s);
        for name in ["", "a/b", "..", &"x".repeat(65)] {
            let e = store.write(name, batch(1, vec![])).unwrap_err();
            assert!(matches!(e, StoreError::BadName(_)), "{name}: {e}");
        }
        assert!(store.databases().is_empty());
    }
}
