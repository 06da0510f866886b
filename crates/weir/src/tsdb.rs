//! The embedded time-series store as `weir up` uses it (`weir-store`:
//! a write-ahead log, Arrow buffers, Parquet files, DataFusion). This
//! module turns pipeline events and line-protocol points into rows,
//! serves the `store` sink of pipelines (rows and source positions in
//! one durable write), answers SQL in the shapes `/api/v1/sql` has
//! always used (CSV, JSON; `time` in RFC 3339 with nanoseconds), and
//! takes CnosDB's own statements before DataFusion sees them:
//! `SHOW DATABASES`, `SHOW TABLES`, `DESCRIBE TABLE t`, `DESCRIBE
//! DATABASE d`, and (with `[console] admin = true`) `CREATE DATABASE [IF
//! NOT EXISTS] d [WITH TTL '30d']`, `ALTER DATABASE d SET TTL '7d'`,
//! `DROP DATABASE [IF EXISTS] d`.
//!
//! A store of the previous version (`store/<db>.sqlite`) is read into
//! the new one once, at start ([`Tsdb::import_sqlite`]).

use std::path::Path;
use std::sync::Arc;

use weir_pipeline::ack::Positions;
use weir_pipeline::event::{Event, Value as EventValue};
use weir_pipeline::sinks::{EmbeddedStore, Outcome};
use weir_pipeline::store::{Answer, Cell, rfc3339};
use weir_store::arrow::array::{Array, AsArray};
use weir_store::arrow::compute::cast;
use weir_store::arrow::datatypes::{
    DataType, Float64Type, Int64Type, TimeUnit, TimestampNanosecondType, UInt64Type,
};
use weir_store::arrow::util::display::{ArrayFormatter, FormatOptions};
use weir_store::{Batch, DatabaseOptions, Row, Store, StoreError, Value};

/// Why a statement gave no answer, with the HTTP status it maps to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TsdbError {
    /// No such database (404).
    #[error("database {0:?} not found")]
    NoDatabase(String),
    /// A change the configuration does not allow (403).
    #[error("{0}")]
    Denied(String),
    /// Bad SQL or a refused statement (422).
    #[error("{0}")]
    Invalid(String),
    /// The store could not answer (500; 507 for a full disk).
    #[error("{0}")]
    Failed(String, bool),
}

impl TsdbError {
    /// The HTTP status.
    pub(crate) fn status(&self) -> u16 {
        match self {
            TsdbError::NoDatabase(_) => 404,
            TsdbError::Denied(_) => 403,
            TsdbError::Invalid(_) => 422,
            TsdbError::Failed(_, true) => 507,
            TsdbError::Failed(_, false) => 500,
        }
    }
}

impl From<StoreError> for TsdbError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoDatabase(d) => TsdbError::NoDatabase(d),
            StoreError::BadName(_) | StoreError::Db(weir_store::DbError::Schema(_)) => {
                TsdbError::Invalid(e.to_string())
            }
            StoreError::Query(weir_store::QueryError::Invalid(_))
            | StoreError::Query(weir_store::QueryError::TooLarge(_))
            | StoreError::Query(weir_store::QueryError::Memory { .. })
            | StoreError::Query(weir_store::QueryError::Timeout(_)) => {
                TsdbError::Invalid(e.to_string())
            }
            other => {
                let full = other.is_full();
                TsdbError::Failed(other.to_string(), full)
            }
        }
    }
}

/// The store and whether statements may change it.
#[derive(Debug, Clone)]
pub(crate) struct Tsdb {
    store: Arc<Store>,
    admin: bool,
}

/// A pipeline's position key in the store: `pipeline/topic/partition`.
fn position_key(pipeline: &str, topic: &str, partition: i32) -> String {
    format!("{pipeline}/{topic}/{partition}")
}

/// An event as a row (`time` tags and fields are left out: `time` is the
/// row's own; a field named like a tag is left out, the tag wins).
pub(crate) fn row_of(e: &Event) -> Row {
    let tags: Vec<(String, String)> = e
        .tags
        .iter()
        .filter(|(k, _)| k.as_str() != "time")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let fields = e
        .fields
        .iter()
        .filter(|(k, _)| k.as_str() != "time" && !e.tags.contains_key(k))
        .map(|(k, v)| {
            let v = match v {
                EventValue::Int(i) => Value::Int(*i),
                EventValue::UInt(u) => Value::UInt(*u),
                EventValue::Float(f) => Value::Float(*f),
                EventValue::Bool(b) => Value::Bool(*b),
                EventValue::Str(s) => Value::Str(s.to_string()),
            };
            (k.to_string(), v)
        })
        .collect();
    Row {
        table: e.name.to_string(),
        time: e.timestamp_ns,
        tags,
        fields,
    }
}

impl Tsdb {
    /// The store itself.
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Opens the store in `dir`.
    pub(crate) fn open(
        dir: &Path,
        admin: bool,
        config: weir_store::StoreConfig,
    ) -> anyhow::Result<Self> {
        let store = Store::open(Arc::new(weir_log::FsStorage), dir, config)
            .map_err(|e| anyhow::anyhow!("opening the store in {}: {e}", dir.display()))?;
        // As in CnosDB, `public` is always there.
        store
            .create_database("public", DatabaseOptions::default())
            .map_err(|e| anyhow::anyhow!("creating database public in {}: {e}", dir.display()))?;
        Ok(Self { store, admin })
    }

    /// Stores points written over HTTP.
    pub(crate) fn write_events(&self, db: &str, events: &[Event]) -> Result<(), TsdbError> {
        let rows = events.iter().map(row_of).collect();
        self.store.write(
            db,
            Batch {
                rows,
                positions: Vec::new(),
            },
        )?;
        Ok(())
    }

    /// The databases, by name.
    pub(crate) fn databases(&self) -> Vec<String> {
        self.store.databases().into_iter().map(|(n, _)| n).collect()
    }

    /// Flushes the buffers (at shutdown).
    pub(crate) fn close(&self) {
        if let Err(e) = self.store.close() {
            tracing::warn!(error = %e, "flushing the store at shutdown (its log keeps the rows)");
        }
    }

    /// Runs one statement against `db`.
    pub(crate) fn query(&self, db: &str, sql: &str) -> Result<Answer, TsdbError> {
        let text = sql.trim().trim_end_matches(';').trim();
        if let Some(answer) = self.statement(db, text)? {
            return Ok(answer);
        }
        if !self.databases().iter().any(|d| d == db) {
            return Err(TsdbError::NoDatabase(db.to_owned()));
        }
        match self.store.query_blocking(db, text) {
            Ok(answer) => Ok(cells(&answer)),
            Err(StoreError::Query(weir_store::QueryError::Invalid(why)))
                if [
                    "DDL not supported",
                    "DML not supported",
                    "Statement not supported",
                ]
                .iter()
                .any(|m| why.contains(m)) =>
            {
                Err(TsdbError::Denied(format!(
                    "the SQL endpoint only reads ({why}); data is written through the write endpoints and pipelines"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// CnosDB's statements; `None` for everything else (DataFusion's).
    fn statement(&self, db: &str, text: &str) -> Result<Option<Answer>, TsdbError> {
        let words = tokens(text);
        let w: Vec<String> = words.iter().map(|t| t.to_ascii_uppercase()).collect();
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        let one = |name: &str, values: Vec<String>| Answer {
            columns: vec![name.to_owned()],
            rows: values.into_iter().map(|v| vec![Cell::Text(v)]).collect(),
        };
        let name = |i: usize| -> Result<String, TsdbError> {
            words
                .get(i)
                .map(|t| unquote(t))
                .ok_or_else(|| TsdbError::Invalid(format!("{text}: a name is missing")))
        };
        match w.as_slice() {
            ["SHOW", "DATABASES"] => Ok(Some(one("database_name", self.databases()))),
            ["SHOW", "TABLES"] | ["SHOW", "TABLES", "ON", _] => {
                let db = if w.len() == 4 {
                    name(3)?
                } else {
                    db.to_owned()
                };
                let schema = self.store.schema(&db)?;
                Ok(Some(one("table_name", schema.tables.into_keys().collect())))
            }
            ["DESCRIBE" | "DESC", "TABLE", _] | ["DESCRIBE" | "DESC", _]
                if w.get(1) != Some(&"DATABASE") =>
            {
                let table = name(w.len() - 1)?;
                let schema = self.store.schema(db)?;
                let t = schema.tables.get(&table).ok_or_else(|| {
                    TsdbError::Invalid(format!("table {table:?} not found in database {db:?}"))
                })?;
                let mut rows = vec![vec![
                    Cell::Text("time".into()),
                    Cell::Text("TIMESTAMP(NANOSECOND)".into()),
                    Cell::Text("TIME".into()),
                ]];
                for (c, ty) in &t.columns {
                    let kind = if *ty == weir_store::ColumnType::Tag {
                        "TAG"
                    } else {
                        "FIELD"
                    };
                    let data = if *ty == weir_store::ColumnType::Tag {
                        "STRING"
                    } else {
                        ty.describe()
                    };
                    rows.push(vec![
                        Cell::Text(c.clone()),
                        Cell::Text(data.into()),
                        Cell::Text(kind.into()),
                    ]);
                }
                Ok(Some(Answer {
                    columns: vec![
                        "column_name".into(),
                        "data_type".into(),
                        "column_type".into(),
                    ],
                    rows,
                }))
            }
            ["DESCRIBE" | "DESC", "DATABASE", _] => {
                let d = name(2)?;
                let o = self
                    .store
                    .options(&d)
                    .ok_or(TsdbError::NoDatabase(d.clone()))?;
                Ok(Some(Answer {
                    columns: vec!["database_name".into(), "ttl".into()],
                    rows: vec![vec![Cell::Text(d), Cell::Text(ttl_text(o.ttl_ns))]],
                }))
            }
            ["CREATE", "DATABASE", ..] => {
                self.may_change(text)?;
                let (if_not, at) = if w.get(2..5) == Some(&["IF", "NOT", "EXISTS"][..]) {
                    (true, 5)
                } else {
                    (false, 2)
                };
                let d = name(at)?;
                let ttl = with_ttl(&words, &w, at + 1)?;
                if self.store.options(&d).is_some() {
                    if if_not {
                        return Ok(Some(Answer::default()));
                    }
                    return Err(TsdbError::Invalid(format!("database {d:?} already exists")));
                }
                self.store
                    .create_database(&d, DatabaseOptions { ttl_ns: ttl })?;
                Ok(Some(Answer::default()))
            }
            ["ALTER", "DATABASE", _, "SET", "TTL", _] => {
                self.may_change(text)?;
                let d = name(2)?;
                let ttl = weir_store::parse_ttl(&unquote(&words[5])).map_err(TsdbError::Invalid)?;
                self.store
                    .set_options(&d, DatabaseOptions { ttl_ns: ttl })?;
                Ok(Some(Answer::default()))
            }
            ["DROP", "DATABASE", ..] => {
                self.may_change(text)?;
                let if_exists = w.get(2..4) == Some(&["IF", "EXISTS"][..]);
                let d = name(if if_exists { 4 } else { 2 })?;
                match self.store.drop_database(&d) {
                    Err(StoreError::NoDatabase(_)) if if_exists => Ok(Some(Answer::default())),
                    r => r.map(|()| Some(Answer::default())).map_err(Into::into),
                }
            }
            _ => Ok(None),
        }
    }

    fn may_change(&self, text: &str) -> Result<(), TsdbError> {
        if self.admin {
            return Ok(());
        }
        Err(TsdbError::Denied(format!(
            "{text}: the SQL endpoint only reads; set admin = true in the [console] table of weir.toml to allow CREATE, ALTER and DROP DATABASE"
        )))
    }
}

/// `WITH TTL 'x'` and CnosDB's other options (accepted, without effect
/// on one node: SHARD, VNODE_DURATION, REPLICA, PRECISION).
fn with_ttl(words: &[String], upper: &[&str], from: usize) -> Result<Option<i64>, TsdbError> {
    let mut ttl = None;
    let mut i = from;
    if upper.get(i) == Some(&"WITH") {
        i += 1;
    } else if i < upper.len() {
        return Err(TsdbError::Invalid(format!(
            "unexpected {:?} (CREATE DATABASE name [WITH TTL '30d'])",
            words[i]
        )));
    }
    while i + 1 < upper.len() {
        match upper[i] {
            "TTL" => {
                ttl = weir_store::parse_ttl(&unquote(&words[i + 1])).map_err(TsdbError::Invalid)?
            }
            "SHARD" | "VNODE_DURATION" | "REPLICA" | "PRECISION" => {}
            other => {
                return Err(TsdbError::Invalid(format!(
                    "unknown database option {other}"
                )));
            }
        }
        i += 2;
    }
    if i < upper.len() {
        return Err(TsdbError::Invalid(format!(
            "option {} has no value",
            words[i]
        )));
    }
    Ok(ttl)
}

fn ttl_text(ttl: Option<i64>) -> String {
    match ttl {
        None => "INF".to_owned(),
        Some(ns) if ns % 86_400_000_000_000 == 0 => format!("{}d", ns / 86_400_000_000_000),
        Some(ns) if ns % 3_600_000_000_000 == 0 => format!("{}h", ns / 3_600_000_000_000),
        Some(ns) if ns % 60_000_000_000 == 0 => format!("{}m", ns / 60_000_000_000),
        Some(ns) => format!("{ns}ns"),
    }
}

/// Words of a statement; `'...'` and `"..."` stay one word with their
/// quotes.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                }
                cur.push(c);
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn unquote(t: &str) -> String {
    for q in ['\'', '"'] {
        if let Some(inner) = t.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.replace(&format!("{q}{q}"), &q.to_string());
        }
    }
    t.to_owned()
}

/// An Arrow answer as cells: times in RFC 3339 (nanoseconds), integers,
/// floats and booleans as themselves, everything else as text.
pub(crate) fn cells(a: &weir_store::Answer) -> Answer {
    let columns: Vec<String> = a.schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows: Vec<Vec<Cell>> = Vec::with_capacity(a.rows());
    let opts = FormatOptions::default();
    for b in &a.batches {
        let base = rows.len();
        rows.extend((0..b.num_rows()).map(|_| Vec::with_capacity(columns.len())));
        for col in b.columns() {
            let put = |rows: &mut Vec<Vec<Cell>>, f: &dyn Fn(usize) -> Cell| {
                for r in 0..col.len() {
                    let c = if col.is_null(r) { Cell::Null } else { f(r) };
                    rows[base + r].push(c);
                }
            };
            match col.data_type() {
                DataType::Null => put(&mut rows, &|_| Cell::Null),
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
                    let ns = cast(col, &DataType::Timestamp(TimeUnit::Nanosecond, None));
                    match ns {
                        Ok(ns) => {
                            let ns = ns.as_primitive::<TimestampNanosecondType>();
                            put(&mut rows, &|r| Cell::Text(rfc3339(ns.value(r))));
                        }
                        Err(_) => text(&mut rows, base, col, &opts),
                    }
                }
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32 => match cast(col, &DataType::Int64) {
                    Ok(v) => {
                        let v = v.as_primitive::<Int64Type>();
                        put(&mut rows, &|r| Cell::Int(v.value(r)));
                    }
                    Err(_) => text(&mut rows, base, col, &opts),
                },
                DataType::UInt64 => {
                    let v = col.as_primitive::<UInt64Type>();
                    put(&mut rows, &|r| match i64::try_from(v.value(r)) {
                        Ok(i) => Cell::Int(i),
                        Err(_) => Cell::Text(v.value(r).to_string()),
                    });
                }
                DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                    match cast(col, &DataType::Float64) {
                        Ok(v) => {
                            let v = v.as_primitive::<Float64Type>();
                            put(&mut rows, &|r| Cell::Float(v.value(r)));
                        }
                        Err(_) => text(&mut rows, base, col, &opts),
                    }
                }
                DataType::Boolean => {
                    let v = col.as_boolean();
                    put(&mut rows, &|r| Cell::Bool(v.value(r)));
                }
                _ => text(&mut rows, base, col, &opts),
            }
        }
    }
    Answer { columns, rows }
}

fn text(rows: &mut [Vec<Cell>], base: usize, col: &dyn Array, opts: &FormatOptions<'_>) {
    let f = ArrayFormatter::try_new(col, opts);
    for r in 0..col.len() {
        let c = match &f {
            _ if col.is_null(r) => Cell::Null,
            Ok(f) => Cell::Text(f.value(r).to_string()),
            Err(e) => Cell::Text(format!("({e})")),
        };
        rows[base + r].push(c);
    }
}

impl EmbeddedStore for Tsdb {
    fn write(
        &self,
        database: &str,
        pipeline: &str,
        events: &[Event],
        positions: &Positions,
    ) -> Outcome {
        let batch = Batch {
            rows: events.iter().map(row_of).collect(),
            positions: positions
                .iter()
                .map(|((topic, p), next)| (position_key(pipeline, topic, *p), *next))
                .collect(),
        };
        match self.store.write(database, batch) {
            Ok(_) => Outcome::Stored,
            Err(e @ (StoreError::Db(weir_store::DbError::Schema(_)) | StoreError::BadName(_))) => {
                Outcome::Rejected(e.to_string())
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    fn positions(&self, database: &str, pipeline: &str) -> Positions {
        let prefix = format!("{pipeline}/");
        self.store
            .positions(database)
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(&prefix)?;
                let (topic, partition) = rest.rsplit_once('/')?;
                Some(((topic.to_owned(), partition.parse().ok()?), v))
            })
            .collect()
    }
}

/// What a column of the previous version's SQLite tables becomes.
#[derive(Clone, Copy)]
enum Imported {
    Tag,
    Int,
    Float,
}

/// Reads the stores of the previous version (`<dir>/<db>.sqlite`, one
/// SQLite table per measurement, `time` in nanoseconds) into the store
/// once, then renames each file `<db>.sqlite.imported`. TEXT columns
/// become tags, INTEGER columns integer fields (booleans were stored as
/// 0/1), REAL columns float fields; the pipelines' stored offsets come
/// along, so they resume where they were. The import is resumable: each
/// batch records the last SQLite row it holds, and a restart goes on
/// from there, so nothing is imported twice.
pub(crate) fn import_sqlite(t: &Tsdb, dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sqlite"))
        .collect();
    files.sort();
    for path in files {
        let Some(db) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        if !weir_store::valid_name(&db) {
            tracing::warn!(file = %path.display(), "not imported: its name is not a database name");
            continue;
        }
        let rows = import_one(t, &db, &path)
            .with_context(|| format!("importing {} into the store", path.display()))?;
        t.store.flush(&db).ok();
        for suffix in ["", "-wal", "-shm"] {
            let from = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            if from.exists() {
                let to = format!("{}.imported{suffix}", path.display());
                std::fs::rename(&from, &to)
                    .with_context(|| format!("renaming {} to {to}", from.display()))?;
            }
        }
        tracing::info!(db, rows, file = %path.display(), "imported a SQLite store of the previous version (kept as .sqlite.imported)");
    }
    Ok(())
}

fn import_one(t: &Tsdb, db: &str, path: &Path) -> anyhow::Result<u64> {
    use rusqlite::types::ValueRef;
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    t.store.create_database(db, DatabaseOptions::default())?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut total = 0u64;
    for table in tables {
        let ident = format!("\"{}\"", table.replace('"', "\"\""));
        let columns: Vec<(String, Imported)> = conn
            .prepare(&format!("PRAGMA table_info({ident})"))?
            .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|(n, ty)| {
                let ty = ty.to_ascii_uppercase();
                let kind = if ty.contains("INT") {
                    Imported::Int
                } else if ty.contains("REAL") || ty.contains("FLOA") || ty.contains("DOUB") {
                    Imported::Float
                } else {
                    Imported::Tag
                };
                (n, kind)
            })
            .collect();
        let Some(time_at) = columns.iter().position(|(n, _)| n == "time") else {
            tracing::warn!(table, "not imported: the table has no time column");
            continue;
        };
        let key = format!("_import/{table}");
        let mut after = t.store.position(db, &key).unwrap_or(0);
        let mut stmt = conn.prepare(&format!(
            "SELECT rowid, * FROM {ident} WHERE rowid > ?1 ORDER BY rowid LIMIT 10000"
        ))?;
        loop {
            let mut rows = Vec::new();
            let mut last = after;
            let mut q = stmt.query([after])?;
            while let Some(r) = q.next()? {
                last = r.get(0)?;
                let ValueRef::Integer(time) = r.get_ref(time_at + 1)? else {
                    continue;
                };
                let mut row = Row {
                    table: table.clone(),
                    time,
                    tags: Vec::new(),
                    fields: Vec::new(),
                };
                for (i, (name, kind)) in columns.iter().enumerate() {
                    if i == time_at {
                        continue;
                    }
                    match (kind, r.get_ref(i + 1)?) {
                        (_, ValueRef::Null | ValueRef::Blob(_)) => {}
                        (Imported::Tag, ValueRef::Text(s)) => {
                            row.tags
                                .push((name.clone(), String::from_utf8_lossy(s).into_owned()));
                        }
                        (Imported::Tag, ValueRef::Integer(n)) => {
                            row.tags.push((name.clone(), n.to_string()))
                        }
                        (Imported::Tag, ValueRef::Real(f)) => {
                            row.tags.push((name.clone(), f.to_string()))
                        }
                        (Imported::Int, ValueRef::Integer(n)) => {
                            row.fields.push((name.clone(), Value::Int(n)))
                        }
                        (Imported::Float, ValueRef::Real(f)) => {
                            row.fields.push((name.clone(), Value::Float(f)))
                        }
                        (Imported::Float, ValueRef::Integer(n)) => {
                            row.fields.push((name.clone(), Value::Float(n as f64)));
                        }
                        (Imported::Int | Imported::Float, _) => {}
                    }
                }
                rows.push(row);
            }
            if last == after {
                break;
            }
            total += rows.len() as u64;
            t.store.write(
                db,
                Batch {
                    rows,
                    positions: vec![(key.clone(), last)],
                },
            )?;
            after = last;
        }
    }
    let offsets: Vec<(String, i64)> = conn
        .prepare("SELECT pipeline, topic, partition, next_offset FROM _weir_offsets")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    position_key(&r.get::<_, String>(0)?, &r.get::<_, String>(1)?, r.get(2)?),
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect()
        })
        .unwrap_or_default();
    if !offsets.is_empty() {
        t.store.write(
            db,
            Batch {
                rows: Vec::new(),
                positions: offsets,
            },
        )?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_into_words_keeping_quoted_names_and_ttls() {
        assert_eq!(
            tokens("CREATE DATABASE \"my db\" WITH TTL '30d'"),
            ["CREATE", "DATABASE", "\"my db\"", "WITH", "TTL", "'30d'"]
        );
        assert_eq!(unquote("'it''s'"), "it's");
        assert_eq!(ttl_text(Some(30 * 86_400_000_000_000)), "30d");
        assert_eq!(ttl_text(None), "INF");
    }
}
