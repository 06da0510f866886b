//! The embedded store: SQLite (WAL) with a table per event name, created on
//! first write from the event's tags and fields plus a `time` column
//! (nanoseconds since the epoch), and new columns added as new fields
//! appear. A batch is one transaction that also records the Kafka offsets
//! it consumed (table `_weir_offsets`), so a source that seeks to those
//! offsets on start gets exactly-once delivery.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use rusqlite::Connection;

use crate::event::{Event, Value};

/// A consumed position: (topic, partition) -> next offset to read.
pub type Offsets = BTreeMap<(String, i32), i64>;

/// Errors of the SQLite sink.
#[derive(Debug, thiserror::Error)]
#[error("sqlite: {0}")]
pub struct SqliteError(#[from] rusqlite::Error);

/// An open store.
#[derive(Debug)]
pub struct SqliteSink {
    conn: Connection,
    /// Known columns per table.
    columns: HashMap<String, BTreeSet<String>>,
}

/// `"name"` with quotes doubled: any event or field name is a safe identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One row's value for a column.
enum Column<'a> {
    Tag(&'a str),
    Field(&'a Value),
}

/// An event's columns besides `time`, in order: its tags, then its fields
/// (a field named like a tag is left out: the tag wins).
fn columns(e: &Event) -> impl Iterator<Item = (&str, Column<'_>)> {
    e.tags
        .iter()
        .filter(|(k, _)| k.as_str() != "time")
        .map(|(k, v)| (k.as_str(), Column::Tag(v.as_str())))
        .chain(
            e.fields
                .iter()
                .filter(|(k, _)| k.as_str() != "time" && !e.tags.contains_key(k))
                .map(|(k, v)| (k.as_str(), Column::Field(v))),
        )
}

/// A table, the columns of its rows (besides `time`) and the INSERT for them.
struct Shape {
    table: String,
    columns: Vec<String>,
    insert: String,
}

fn sql_type(v: &Value) -> &'static str {
    match v {
        Value::Int(_) | Value::UInt(_) | Value::Bool(_) => "INTEGER",
        Value::Float(_) => "REAL",
        Value::Str(_) => "TEXT",
    }
}

impl SqliteSink {
    /// Opens (or creates) the database file in WAL mode.
    pub fn open(path: &Path) -> Result<Self, SqliteError> {
        let conn = Connection::open(path)?;
        // Several writers share a store (pipelines, HTTP writes): wait for
        // the lock rather than fail.
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _weir_offsets (
                pipeline TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                next_offset INTEGER NOT NULL, PRIMARY KEY (pipeline, topic, partition))",
        )?;
        Ok(Self {
            conn,
            columns: HashMap::new(),
        })
    }

    /// The offsets a pipeline stored with its rows.
    pub fn offsets(&self, pipeline: &str) -> Result<Offsets, SqliteError> {
        let mut stmt = self.conn.prepare(
            "SELECT topic, partition, next_offset FROM _weir_offsets WHERE pipeline = ?1",
        )?;
        let rows = stmt.query_map([pipeline], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, i32>(1)?),
                r.get::<_, i64>(2)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn known_columns(&mut self, table: &str) -> Result<&mut BTreeSet<String>, SqliteError> {
        // Looked up without allocating: this runs for every row.
        if !self.columns.contains_key(table) {
            let mut cols = BTreeSet::new();
            let mut stmt = self
                .conn
                .prepare(&format!("PRAGMA table_info({})", ident(table)))?;
            let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
            for n in names {
                cols.insert(n?);
            }
            drop(stmt);
            return Ok(self.columns.entry(table.to_owned()).or_insert(cols));
        }
        self.columns
            .get_mut(table)
            .ok_or_else(|| SqliteError(rusqlite::Error::InvalidParameterName(table.to_owned())))
    }

    /// Writes events and the offsets they came from in one transaction.
    pub fn write(
        &mut self,
        pipeline: &str,
        events: &[Event],
        offsets: &Offsets,
    ) -> Result<(), SqliteError> {
        // One transaction for schema changes, rows and offsets (DDL is
        // transactional in SQLite).
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = self.write_in_tx(pipeline, events, offsets);
        match result {
            Ok(()) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(())
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                // The cached schema may name columns the rollback removed.
                self.columns.clear();
                Err(e)
            }
        }
    }

    fn write_in_tx(
        &mut self,
        pipeline: &str,
        events: &[Event],
        offsets: &Offsets,
    ) -> Result<(), SqliteError> {
        // The INSERT of the previous row, reused while rows keep its shape
        // (same table, same columns in the same order): the usual case,
        // which then costs no allocation and no schema lookup per row.
        let mut shape: Option<Shape> = None;
        for e in events {
            let table = if e.name.is_empty() {
                "events"
            } else {
                e.name.as_str()
            };
            let reuse = shape.as_ref().is_some_and(|s| {
                s.table == table
                    && columns(e)
                        .map(|(name, _)| name)
                        .eq(s.columns.iter().map(String::as_str))
            });
            if !reuse {
                shape = Some(self.shape_of(table, e)?);
            }
            let Some(s) = &shape else { continue };
            let mut stmt = self.conn.prepare_cached(&s.insert)?;
            stmt.raw_bind_parameter(1, e.timestamp_ns)?;
            for (i, (_, value)) in columns(e).enumerate() {
                let at = i + 2;
                match value {
                    Column::Tag(t) => stmt.raw_bind_parameter(at, t)?,
                    Column::Field(Value::Int(n)) => stmt.raw_bind_parameter(at, *n)?,
                    // SQLite's integers are signed: the largest go in as text.
                    Column::Field(Value::UInt(u)) => match i64::try_from(*u) {
                        Ok(n) => stmt.raw_bind_parameter(at, n)?,
                        Err(_) => stmt.raw_bind_parameter(at, u.to_string())?,
                    },
                    Column::Field(Value::Float(f)) => stmt.raw_bind_parameter(at, *f)?,
                    Column::Field(Value::Bool(b)) => stmt.raw_bind_parameter(at, i64::from(*b))?,
                    Column::Field(Value::Str(t)) => stmt.raw_bind_parameter(at, t.as_str())?,
                }
            }
            stmt.raw_execute()?;
        }
        for ((topic, partition), next) in offsets {
            self.conn.execute(
                "INSERT INTO _weir_offsets (pipeline, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (pipeline, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                rusqlite::params![pipeline, topic, partition, next],
            )?;
        }
        Ok(())
    }

    /// Creates the table or adds the columns `e` needs, and builds the
    /// INSERT for rows shaped like it.
    fn shape_of(&mut self, table: &str, e: &Event) -> Result<Shape, SqliteError> {
        if self.known_columns(table)?.is_empty() {
            self.conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (\"time\" INTEGER NOT NULL)",
                ident(table)
            ))?;
            self.known_columns(table)?.insert("time".to_owned());
        }
        let mut names = Vec::new();
        for (name, value) in columns(e) {
            if !self.known_columns(table)?.contains(name) {
                let ty = match value {
                    Column::Tag(_) => "TEXT",
                    Column::Field(v) => sql_type(v),
                };
                self.conn.execute_batch(&format!(
                    "ALTER TABLE {} ADD COLUMN {} {ty}",
                    ident(table),
                    ident(name)
                ))?;
                self.known_columns(table)?.insert(name.to_owned());
            }
            names.push(name.to_owned());
        }
        let insert = format!(
            "INSERT INTO {} (\"time\"{}) VALUES (?{})",
            ident(table),
            names
                .iter()
                .map(|n| format!(", {}", ident(n)))
                .collect::<String>(),
            ", ?".repeat(names.len())
        );
        Ok(Shape {
            table: table.to_owned(),
            columns: names,
            insert,
        })
    }

    /// The underlying connection (queries, tests).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(t: i64, temp: f64) -> Event {
        Event {
            timestamp_ns: t,
            name: "kafka_consumer".into(),
            ..Event::default()
        }
        .with_tag("host", "web1")
        .with_field("temperature", temp)
    }

    #[test]
    fn rows_of_changing_shapes_in_one_batch_land_in_their_columns() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = SqliteSink::open(&tmp.path().join("weir.db")).unwrap();
        let other = |t: i64| {
            Event {
                timestamp_ns: t,
                name: "other".into(),
                ..Event::default()
            }
            .with_field("n", t)
        };
        let batch = vec![
            reading(1, 1.0),
            other(2),
            reading(3, 3.0).with_field("extra", "x"),
            reading(4, 4.0),
            // A field named like a tag (the tag wins) and one named time.
            reading(5, 5.0)
                .with_field("host", "ignored")
                .with_field("time", 99i64),
            other(6),
        ];
        s.write("p", &batch, &Offsets::new()).unwrap();
        let c = s.connection();
        let rows: Vec<(i64, String, f64, Option<String>)> = c
            .prepare("SELECT time, host, temperature, extra FROM kafka_consumer ORDER BY time")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (1, "web1".into(), 1.0, None),
                (3, "web1".into(), 3.0, Some("x".into())),
                (4, "web1".into(), 4.0, None),
                (5, "web1".into(), 5.0, None),
            ]
        );
        let n: Vec<(i64, i64)> = c
            .prepare("SELECT time, n FROM other ORDER BY time")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(n, vec![(2, 2), (6, 6)]);
    }

    #[test]
    fn tables_grow_columns_and_offsets_commit_with_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("weir.db");
        let mut s = SqliteSink::open(&path).unwrap();
        let mut offs = Offsets::new();
        offs.insert(("oceanic".into(), 0), 2);
        s.write("a", &[reading(1, 20.5), reading(2, 21.0)], &offs)
            .unwrap();
        // A new field adds a column; odd names are quoted safely.
        let odd = reading(3, 22.0)
            .with_field("wei\"rd col", "x")
            .with_field("ok", true)
            .with_field("n", 5i64);
        offs.insert(("oceanic".into(), 0), 3);
        s.write("a", &[odd], &offs).unwrap();
        drop(s);
        let s = SqliteSink::open(&path).unwrap();
        let n: i64 = s
            .connection()
            .query_row("SELECT count(*) FROM kafka_consumer", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
        let (host, weird, ok): (String, Option<String>, Option<i64>) = s
            .connection()
            .query_row(
                "SELECT host, \"wei\"\"rd col\", ok FROM kafka_consumer WHERE time = 3",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (host.as_str(), weird.as_deref(), ok),
            ("web1", Some("x"), Some(1))
        );
        assert_eq!(
            s.offsets("a").unwrap().get(&("oceanic".to_owned(), 0)),
            Some(&3)
        );
        assert!(s.offsets("other").unwrap().is_empty());
        let mode: String = s
            .connection()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_failed_batch_leaves_neither_rows_nor_offsets() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = SqliteSink::open(&tmp.path().join("w.db")).unwrap();
        let mut offs = Offsets::new();
        offs.insert(("t".into(), 0), 1);
        s.write("p", &[reading(1, 1.0)], &offs).unwrap();
        // A view with the table's name makes the insert of the second
        // table fail after the first table's rows were written.
        s.connection()
            .execute_batch("CREATE VIEW broken AS SELECT 1 AS time")
            .unwrap();
        let bad = Event {
            name: "broken".into(),
            ..reading(2, 2.0)
        };
        offs.insert(("t".into(), 0), 3);
        assert!(s.write("p", &[reading(2, 2.0), bad], &offs).is_err());
        let n: i64 = s
            .connection()
            .query_row("SELECT count(*) FROM kafka_consumer", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "the whole batch rolled back");
        assert_eq!(s.offsets("p").unwrap().get(&("t".to_owned(), 0)), Some(&1));
        // And the sink still works.
        offs.insert(("t".into(), 0), 2);
        s.write("p", &[reading(2, 2.0)], &offs).unwrap();
    }
}
