//! The `mysql` sink (MySQL 8, MariaDB): rows inserted in batches through
//! a connection pool, with parameters (one multi-row `INSERT` per group of
//! events with the same columns).
//!
//! * Tables: one per event name, created when missing (`time DATETIME(6)`
//!   in UTC, an `id` key, tags as `VARCHAR(255)`, fields as `BIGINT`,
//!   `DOUBLE`, `BOOLEAN` or `TEXT`), columns added as new fields appear;
//!   or one existing `table` with a `columns` mapping (column -> field, or
//!   `time`), which is never altered.
//! * Exactly-once: the positions the batch's events came from (Kafka
//!   offsets, file byte offsets) are written to `_weir_offsets` in the same
//!   transaction as the rows; events at or below a stored position are
//!   skipped, so a source that sends them again (after a crash, before it
//!   committed) stores nothing twice. After a failed write the positions
//!   are read back from the database, since a connection lost during
//!   `COMMIT` may have stored the batch without saying so.
//! * A database that is down or answers with a transient error makes the
//!   write fail with [`Outcome::Retry`]: the runtime retries the same batch
//!   and nothing is acknowledged meanwhile. Errors about the data itself
//!   (value out of range, too long, wrong type) are [`Outcome::Rejected`].
//!   Schema changes run before the transaction (MySQL commits around DDL).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mysql::prelude::Queryable;
use mysql::{Opts, Pool, PooledConn, TxOpts, Value as My};

use super::Outcome;
use crate::event::{Event, Value};
use crate::transforms::time::unix_to_civil;

/// Settings of a `mysql` sink.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MysqlConfig {
    /// `mysql://user:password@host:port/database`.
    pub url: String,
    /// One existing table for every event, instead of one per event name.
    pub table: Option<String>,
    /// With `table`: column -> field (`time` for the timestamp).
    pub columns: BTreeMap<String, String>,
    /// Rows per transaction.
    pub batch: usize,
    /// How long a partial batch waits, in milliseconds.
    pub flush_ms: u64,
}

/// `name` quoted as a MySQL identifier.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn sql_type(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "BIGINT",
        Value::UInt(_) => "BIGINT UNSIGNED",
        Value::Float(_) => "DOUBLE",
        Value::Bool(_) => "BOOLEAN",
        Value::Str(_) => "TEXT",
    }
}

fn sql_value(v: &Value) -> My {
    match v {
        Value::Int(i) => My::Int(*i),
        Value::UInt(u) => My::UInt(*u),
        Value::Float(f) => My::Double(*f),
        Value::Bool(b) => My::Int(i64::from(*b)),
        Value::Str(s) => My::Bytes(s.as_bytes().to_vec()),
    }
}

/// The event time as a UTC `DATETIME(6)`.
fn datetime(ns: i64) -> My {
    let secs = ns.div_euclid(1_000_000_000);
    let micros = (ns.rem_euclid(1_000_000_000) / 1000) as u32;
    let (y, mo, d, h, mi, s) = unix_to_civil(secs);
    My::Date(
        y.clamp(0, 9999) as u16,
        mo as u8,
        d as u8,
        h as u8,
        mi as u8,
        s as u8,
        micros,
    )
}

/// MySQL errors about the data, which no retry fixes.
fn is_data_error(code: u16) -> bool {
    matches!(
        code,
        1048 // column cannot be null
            | 1264 // out of range
            | 1265 // data truncated
            | 1292 // incorrect datetime / value
            | 1366 // incorrect value for column
            | 1406 // data too long
            | 1367 // illegal value
    )
}

fn classify(e: &mysql::Error) -> Outcome {
    match e {
        mysql::Error::MySqlError(m) if is_data_error(m.code) => {
            Outcome::Rejected(format!("mysql {}: {}", m.code, m.message))
        }
        other => Outcome::Retry(format!("mysql: {other}")),
    }
}

/// Column names with the SQL type each would be created with.
type Columns = Vec<(String, &'static str)>;

/// The positions in one batch: (stream, partition) -> next.
type Positions = BTreeMap<(String, i32), i64>;

/// A pool and what it knows of the schema and stored positions.
pub struct MysqlSink {
    cfg: MysqlConfig,
    pipeline: String,
    pool: Option<Pool>,
    /// The connection writes go through, kept between batches (returning
    /// it to the pool would reset it and drop its prepared statements).
    held: Option<PooledConn>,
    opts: Opts,
    columns: HashMap<String, BTreeSet<String>>,
    stored: Option<Positions>,
}

impl std::fmt::Debug for MysqlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlSink")
            .field("table", &self.cfg.table)
            .finish_non_exhaustive()
    }
}

impl MysqlSink {
    /// Checks the URL; connects on the first write (the database may be
    /// down when the pipeline starts).
    pub fn new(cfg: MysqlConfig, pipeline: &str) -> Result<Self, String> {
        let opts = Opts::from_url(&cfg.url).map_err(|e| format!("key `url`: {e}"))?;
        Ok(Self {
            cfg,
            pipeline: pipeline.to_owned(),
            pool: None,
            held: None,
            opts,
            columns: HashMap::new(),
            stored: None,
        })
    }

    fn conn(&mut self) -> Result<PooledConn, mysql::Error> {
        if let Some(c) = self.held.take() {
            return Ok(c);
        }
        let pool = match &mut self.pool {
            Some(p) => p,
            slot => slot.insert(Pool::new(self.opts.clone())?),
        };
        pool.get_conn()
    }

    fn prepare_offsets(&mut self, conn: &mut PooledConn) -> Result<(), mysql::Error> {
        if self.stored.is_some() {
            return Ok(());
        }
        conn.query_drop(
            "CREATE TABLE IF NOT EXISTS `_weir_offsets` (
                pipeline VARCHAR(191) NOT NULL, stream VARCHAR(191) NOT NULL,
                part INT NOT NULL, next_offset BIGINT NOT NULL,
                PRIMARY KEY (pipeline, stream, part)) ENGINE=InnoDB",
        )?;
        let rows: Vec<(String, i32, i64)> = conn.exec(
            "SELECT stream, part, next_offset FROM `_weir_offsets` WHERE pipeline = ?",
            (self.pipeline.as_str(),),
        )?;
        self.stored = Some(rows.into_iter().map(|(s, p, n)| ((s, p), n)).collect());
        Ok(())
    }

    fn known_columns(
        &mut self,
        conn: &mut PooledConn,
        table: &str,
    ) -> Result<BTreeSet<String>, mysql::Error> {
        if let Some(c) = self.columns.get(table) {
            return Ok(c.clone());
        }
        let cols: Vec<String> = conn.exec(
            "SELECT column_name FROM information_schema.columns
             WHERE table_schema = DATABASE() AND table_name = ?",
            (table,),
        )?;
        let set: BTreeSet<String> = cols.into_iter().collect();
        if !set.is_empty() {
            self.columns.insert(table.to_owned(), set.clone());
        }
        Ok(set)
    }

    /// Creates the table or adds the columns `row` needs.
    fn ensure_schema(
        &mut self,
        conn: &mut PooledConn,
        table: &str,
        row: &[(String, &'static str)],
    ) -> Result<(), mysql::Error> {
        let mut known = self.known_columns(conn, table)?;
        if known.is_empty() {
            let mut cols = vec![
                "`id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY".to_owned(),
                "`time` DATETIME(6) NOT NULL".to_owned(),
            ];
            cols.extend(
                row.iter()
                    .filter(|(c, _)| c != "time")
                    .map(|(c, ty)| format!("{} {ty} NULL", ident(c))),
            );
            cols.push("KEY (`time`)".to_owned());
            conn.query_drop(format!(
                "CREATE TABLE IF NOT EXISTS {} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
                ident(table),
                cols.join(", ")
            ))?;
            self.columns.remove(table);
            known = self.known_columns(conn, table)?;
        }
        for (c, ty) in row {
            if !known.contains(c) {
                conn.query_drop(format!(
                    "ALTER TABLE {} ADD COLUMN {} {ty} NULL",
                    ident(table),
                    ident(c)
                ))?;
                known.insert(c.clone());
            }
        }
        self.columns.insert(table.to_owned(), known);
        Ok(())
    }

    /// The table, columns and values of one event.
    fn row(&self, e: &Event) -> (String, Columns, Vec<My>) {
        if let Some(t) = &self.cfg.table
            && !self.cfg.columns.is_empty()
        {
            let (mut cols, mut vals) = (Vec::new(), Vec::new());
            for (col, field) in &self.cfg.columns {
                let v = if field == "time" {
                    datetime(e.timestamp_ns)
                } else if let Some(v) = e.fields.get(field) {
                    sql_value(v)
                } else if let Some(t) = e.tags.get(field) {
                    My::Bytes(t.as_bytes().to_vec())
                } else {
                    My::NULL
                };
                cols.push((col.clone(), "TEXT"));
                vals.push(v);
            }
            return (t.clone(), cols, vals);
        }
        let table = self.cfg.table.clone().unwrap_or_else(|| {
            if e.name.is_empty() {
                "events".to_owned()
            } else {
                e.name.to_string()
            }
        });
        let mut cols = vec![("time".to_owned(), "DATETIME(6)")];
        let mut vals = vec![datetime(e.timestamp_ns)];
        for (k, v) in &e.tags {
            if k != "time" && k != "id" {
                cols.push((k.to_string(), "VARCHAR(255)"));
                vals.push(My::Bytes(v.as_bytes().to_vec()));
            }
        }
        for (k, v) in &e.fields {
            if k != "time" && k != "id" && !e.tags.contains_key(k) {
                cols.push((k.to_string(), sql_type(v)));
                vals.push(sql_value(v));
            }
        }
        (table, cols, vals)
    }

    /// Stores a batch and its positions in one transaction.
    pub fn write(&mut self, events: &[Event]) -> Outcome {
        match self.try_write(events) {
            Ok(()) => Outcome::Stored,
            Err(e) => {
                if !matches!(e, mysql::Error::MySqlError(_)) {
                    self.pool = None; // reconnect next time
                }
                self.columns.clear();
                // A connection lost during COMMIT leaves it unknown whether
                // the batch was stored: the retry reads the positions back
                // from the database instead of trusting the cached ones.
                self.stored = None;
                classify(&e)
            }
        }
    }

    fn try_write(&mut self, events: &[Event]) -> Result<(), mysql::Error> {
        let mut conn = self.conn()?;
        self.prepare_offsets(&mut conn)?;
        let stored = self.stored.clone().unwrap_or_default();
        let fresh: Vec<&Event> = events
            .iter()
            .filter(|e| !crate::ack::stored_before(&stored, e))
            .collect();
        let positions = crate::ack::positions_after(events);
        // Group rows with the same table and columns, keeping order.
        let mut groups: Vec<(String, Columns, Vec<Vec<My>>)> = Vec::new();
        for e in fresh {
            let (table, cols, vals) = self.row(e);
            match groups
                .iter_mut()
                .find(|(t, c, _)| *t == table && *c == cols)
            {
                Some(g) => g.2.push(vals),
                None => groups.push((table, cols, vec![vals])),
            }
        }
        let managed = self.cfg.columns.is_empty();
        if managed {
            for (table, cols, _) in &groups {
                self.ensure_schema(&mut conn, table, cols)?;
            }
        }
        let mut tx = conn.start_transaction(TxOpts::default())?;
        for (table, cols, rows) in &groups {
            let names: Vec<String> = cols.iter().map(|(c, _)| ident(c)).collect();
            let one = format!("({})", vec!["?"; cols.len()].join(","));
            // MySQL takes at most 65,535 placeholders per statement.
            let per = (65_535 / cols.len().max(1)).clamp(1, 1000);
            for chunk in rows.chunks(per) {
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES {}",
                    ident(table),
                    names.join(","),
                    vec![one.as_str(); chunk.len()].join(",")
                );
                let params: Vec<My> = chunk.iter().flatten().cloned().collect();
                tx.exec_drop(sql, params)?;
            }
        }
        for ((stream, part), next) in &positions {
            tx.exec_drop(
                "INSERT INTO `_weir_offsets` (pipeline, stream, part, next_offset) VALUES (?, ?, ?, ?)
                 ON DUPLICATE KEY UPDATE next_offset = GREATEST(next_offset, VALUES(next_offset))",
                (self.pipeline.as_str(), stream.as_str(), *part, *next),
            )?;
        }
        tx.commit()?;
        self.held = Some(conn);
        if let Some(s) = self.stored.as_mut() {
            crate::ack::advance(s, positions);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_typed_columns_and_utc_times() {
        let sink = MysqlSink::new(
            MysqlConfig {
                url: "mysql://root@127.0.0.1:3306/weir".to_owned(),
                ..MysqlConfig::default()
            },
            "p",
        )
        .unwrap();
        let e = Event {
            name: "access_log".into(),
            timestamp_ns: 1_700_000_000_123_456_789,
            ..Event::default()
        }
        .with_tag("host", "web1")
        .with_field("bytes", 512i64)
        .with_field("province", "广东")
        .with_field("ok", true);
        let (table, cols, vals) = sink.row(&e);
        assert_eq!(table, "access_log");
        let names: Vec<&str> = cols.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["time", "host", "bytes", "province", "ok"]);
        assert_eq!(cols[2].1, "BIGINT");
        assert_eq!(vals[0], My::Date(2023, 11, 14, 22, 13, 20, 123_456));
        assert_eq!(vals[3], My::Bytes("广东".as_bytes().to_vec()));
        assert_eq!(ident("we`ird"), "`we``ird`");
        assert!(
            MysqlSink::new(
                MysqlConfig {
                    url: "postgres://x".to_owned(),
                    ..MysqlConfig::default()
                },
                "p"
            )
            .is_err()
        );
    }

    #[test]
    fn data_errors_are_rejected_and_the_rest_retried() {
        let data = mysql::Error::MySqlError(mysql::MySqlError {
            state: "22001".to_owned(),
            code: 1406,
            message: "Data too long".to_owned(),
        });
        assert!(matches!(classify(&data), Outcome::Rejected(_)));
        let gone = mysql::Error::MySqlError(mysql::MySqlError {
            state: "HY000".to_owned(),
            code: 1205,
            message: "Lock wait timeout".to_owned(),
        });
        assert!(matches!(classify(&gone), Outcome::Retry(_)));
        let io = mysql::Error::IoError(std::io::ErrorKind::ConnectionRefused.into());
        assert!(matches!(classify(&io), Outcome::Retry(_)));
    }
}
