//! The embedded store behind `weir up`: one SQLite file per database
//! (`<dir>/<db>.sqlite`, `public` by default), written by the `sqlite`
//! sinks of pipelines and by line protocol POSTed to the HTTP write
//! endpoints, and queried with SQL (`weir sql`, `POST /api/v1/sql`).
//!
//! Query answers are CSV (with a header line, RFC 4180 quoting) or JSON
//! (an array of objects, as CnosDB answers); a `time` column of
//! nanoseconds is shown as an RFC 3339 UTC time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::types::ValueRef;

use crate::event::Event;
use crate::sinks::sqlite::{Offsets, SqliteSink};
use crate::transforms::time::unix_to_civil;

/// A value in a query answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// Text (or a blob, lossily).
    Text(String),
}

/// A query answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<Cell>>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such database.
    #[error("database {0:?} not found")]
    NoDatabase(String),
    /// A database name that is not a plain word.
    #[error("invalid database name {0:?} (letters, digits, _ and -)")]
    BadName(String),
    /// SQLite said no (bad SQL, ...).
    #[error("{0}")]
    Sql(String),
    /// A statement that would change the store.
    #[error(
        "the SQL endpoint only reads (SELECT, read-only PRAGMAs); data is written through the write endpoints and pipelines"
    )]
    ReadOnly,
}

/// RFC 3339 UTC text of nanoseconds since the epoch.
pub fn rfc3339(ns: i64) -> String {
    let (y, mo, d, h, mi, s) = unix_to_civil(ns.div_euclid(1_000_000_000));
    let frac = ns.rem_euclid(1_000_000_000);
    if frac == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:09}Z")
    }
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    writers: Arc<Mutex<HashMap<String, Arc<Mutex<SqliteSink>>>>>,
}

fn check_name(db: &str) -> Result<(), StoreError> {
    let ok = !db.is_empty()
        && db.len() <= 64
        && db
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(db.to_owned()))
    }
}

impl Store {
    /// A store in `dir` (created on first write).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            writers: Arc::default(),
        }
    }

    /// The file of database `db`.
    pub fn path(&self, db: &str) -> PathBuf {
        self.dir.join(format!("{db}.sqlite"))
    }

    /// Databases that exist.
    pub fn databases(&self) -> Vec<String> {
        let mut dbs: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".sqlite"))
                    .map(str::to_owned)
            })
            .collect();
        dbs.sort();
        dbs
    }

    /// Stores events in `db` (created if needed), in one transaction.
    pub fn write(&self, db: &str, events: &[Event]) -> Result<(), StoreError> {
        check_name(db)?;
        let sink = {
            let mut w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
            match w.get(db) {
                Some(s) => s.clone(),
                None => {
                    std::fs::create_dir_all(&self.dir).map_err(|e| {
                        StoreError::Sql(format!("creating {}: {e}", self.dir.display()))
                    })?;
                    let s = Arc::new(Mutex::new(
                        SqliteSink::open(&self.path(db))
                            .map_err(|e| StoreError::Sql(e.to_string()))?,
                    ));
                    w.insert(db.to_owned(), s.clone());
                    s
                }
            }
        };
        let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
        sink.write("http", events, &Offsets::new())
            .map_err(|e| StoreError::Sql(e.to_string()))
    }

    /// Runs one read-only SQL statement on `db`: the connection is opened
    /// read-only, may attach no other database, and refuses any statement
    /// SQLite does not call read-only.
    pub fn query(&self, db: &str, sql: &str) -> Result<Answer, StoreError> {
        use rusqlite::OpenFlags;
        check_name(db)?;
        let path = self.path(db);
        if !path.exists() {
            return Err(StoreError::NoDatabase(db.to_owned()));
        }
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Sql(e.to_string()))?;
        let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)
            .map_err(|e| StoreError::Sql(e.to_string()))?;
        let sql = sql.trim().trim_end_matches(';');
        let mut stmt = conn
            .prepare(sql)
            .map_err(|e| StoreError::Sql(e.to_string()))?;
        if !stmt.readonly() {
            return Err(StoreError::ReadOnly);
        }
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let time_col = columns.iter().position(|c| c == "time");
        let mut rows = Vec::new();
        let mut q = stmt.query([]).map_err(|e| StoreError::Sql(e.to_string()))?;
        while let Some(r) = q.next().map_err(|e| StoreError::Sql(e.to_string()))? {
            let mut row = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                let cell = match r.get_ref(i).map_err(|e| StoreError::Sql(e.to_string()))? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) if Some(i) == time_col => Cell::Text(rfc3339(n)),
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Real(f) => Cell::Float(f),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Cell::Text(String::from_utf8_lossy(t).into_owned())
                    }
                };
                row.push(cell);
            }
            rows.push(row);
        }
        Ok(Answer { columns, rows })
    }

    /// The user tables of `db`.
    pub fn tables(&self, db: &str) -> Result<Vec<String>, StoreError> {
        let a = self.query(
            db,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name",
        )?;
        Ok(a.rows
            .into_iter()
            .filter_map(|r| match r.into_iter().next() {
                Some(Cell::Text(t)) => Some(t),
                _ => None,
            })
            .collect())
    }
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Int(n) => n.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Text(t) => t.clone(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(n) => (*n).into(),
            Cell::Bool(b) => (*b).into(),
            Cell::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Cell::Text(t) => t.as_str().into(),
        }
    }
}

fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

impl Answer {
    /// CSV with a header line.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, c);
        }
        out.push('\n');
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                csv_field(&mut out, &c.text());
            }
            out.push('\n');
        }
        out
    }

    /// An array of objects (column order kept).
    pub fn to_json(&self) -> String {
        // Written by hand: keys keep the statement's column order (a JSON
        // object map would sort them).
        let keys: Vec<String> = self
            .columns
            .iter()
            .map(|c| serde_json::Value::from(c.as_str()).to_string())
            .collect();
        let mut out = String::from("[");
        for (i, r) in self.rows.iter().enumerate() {
            out.push_str(if i == 0 { "{" } else { ",{" });
            for (j, (k, cell)) in keys.iter().zip(r).enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push(':');
                out.push_str(&cell.json().to_string());
            }
            out.push('}');
        }
        out.push(']');
        out
    }

    /// Parses CSV written by [`Answer::to_csv`] (all cells as text).
    pub fn from_csv(text: &str) -> Self {
        let mut records = parse_csv(text).into_iter();
        let columns = records.next().unwrap_or_default();
        let rows = records
            .map(|r| r.into_iter().map(Cell::Text).collect())
            .collect();
        Self { columns, rows }
    }

    /// A bordered table for a terminal.
    pub fn to_table(&self) -> String {
        let texts: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(Cell::text).collect())
            .collect();
        // Display columns: CJK characters take two.
        let width = |s: &str| unicode_width::UnicodeWidthStr::width(s);
        let mut widths: Vec<usize> = self.columns.iter().map(|c| width(c)).collect();
        for r in &texts {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(width(c));
            }
        }
        let line = || {
            let mut s = String::from("+");
            for w in &widths {
                s.push_str(&"-".repeat(w + 2));
                s.push('+');
            }
            s.push('\n');
            s
        };
        let row = |cells: &[String]| {
            let mut s = String::from("|");
            for (w, c) in widths.iter().zip(cells) {
                s.push(' ');
                s.push_str(c);
                s.push_str(&" ".repeat(w - width(c) + 1));
                s.push('|');
            }
            s.push('\n');
            s
        };
        let mut out = line();
        out.push_str(&row(&self.columns));
        out.push_str(&line());
        for r in &texts {
            out.push_str(&row(r));
        }
        out.push_str(&line());
        out.push_str(&format!(
            "({} row{})\n",
            self.rows.len(),
            if self.rows.len() == 1 { "" } else { "s" }
        ));
        out
    }
}

/// RFC 4180 records.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                any = false;
            }
            (false, c) => field.push(c),
        }
    }
    if any {
        record.push(field);
        records.push(record);
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_queries_and_answers_in_three_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let e = Event {
            name: "kafka_consumer".into(),
            timestamp_ns: 1_700_000_000_500_000_000,
            ..Event::default()
        }
        .with_tag("host", "web,1")
        .with_field("pressure", 3.4)
        .with_field("note", "say \"hi\"");
        store.write("public", &[e]).unwrap();
        assert_eq!(store.databases(), ["public"]);
        assert_eq!(store.tables("public").unwrap(), ["kafka_consumer"]);
        let a = store
            .query(
                "public",
                "select time, host, pressure, note from kafka_consumer;",
            )
            .unwrap();
        assert_eq!(a.columns, ["time", "host", "pressure", "note"]);
        assert_eq!(
            a.rows[0][0],
            Cell::Text("2023-11-14T22:13:20.500000000Z".to_owned())
        );
        let csv = a.to_csv();
        assert_eq!(
            csv,
            "time,host,pressure,note\n2023-11-14T22:13:20.500000000Z,\"web,1\",3.4,\"say \"\"hi\"\"\"\n"
        );
        let back = Answer::from_csv(&csv);
        assert_eq!(back.columns, a.columns);
        assert_eq!(back.rows[0][3], Cell::Text("say \"hi\"".to_owned()));
        let j: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(j[0]["pressure"], 3.4);
        // JSON keeps the statement's column order.
        let z = store
            .query("public", "select 1 as z, 2 as a, 3 as m")
            .unwrap();
        assert_eq!(z.to_json(), r#"[{"z":1,"a":2,"m":3}]"#);
        // The endpoint only reads.
        for write in [
            "drop table kafka_consumer",
            "delete from kafka_consumer",
            "insert into kafka_consumer (time) values (1)",
            "create table x (a)",
        ] {
            assert!(
                matches!(store.query("public", write), Err(StoreError::ReadOnly)),
                "{write}"
            );
        }
        let attach = format!(
            "attach database '{}' as x",
            dir.path().join("new.db").display()
        );
        assert!(store.query("public", &attach).is_err());
        assert!(!dir.path().join("new.db").exists());
        assert_eq!(store.tables("public").unwrap(), ["kafka_consumer"]);
        assert!(a.to_table().contains("| web,1 |"), "{}", a.to_table());
        let wide = Answer {
            columns: vec!["province".to_owned()],
            rows: vec![
                vec![Cell::Text("广东".to_owned())],
                vec![Cell::Text("x".to_owned())],
            ],
        };
        assert!(
            wide.to_table().contains("| 广东     |\n| x        |"),
            "{}",
            wide.to_table()
        );
        assert!(matches!(
            store.query("nope", "select 1"),
            Err(StoreError::NoDatabase(_))
        ));
        assert!(matches!(
            store.query("../x", "select 1"),
            Err(StoreError::BadName(_))
        ));
        assert!(matches!(
            store.query("public", "selec oops"),
            Err(StoreError::Sql(_))
        ));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
