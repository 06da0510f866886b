//! A database's tables and their columns: `time`, then tags and fields in
//! the order they were first written. A column's kind (tag or field) and a
//! field's type are fixed once seen; new columns extend a table (older
//! files read them as null); a write that gives a known column another
//! kind or type is refused whole, naming the column, both types and the
//! row, as InfluxDB refuses it. Kept as `schema.json` beside the log,
//! written before the first frame that needs it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rows::{Batch, Value};

/// The name of every table's time column.
pub const TIME: &str = "time";

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    /// A tag: a dictionary-encoded string.
    Tag,
    /// A float field.
    Float,
    /// A signed integer field.
    Int,
    /// An unsigned integer field.
    UInt,
    /// A string field.
    Str,
    /// A boolean field.
    Bool,
}

impl ColumnType {
    fn of(v: &Value) -> Self {
        match v {
            Value::Float(_) => Self::Float,
            Value::Int(_) => Self::Int,
            Value::UInt(_) => Self::UInt,
            Value::Str(_) => Self::Str,
            Value::Bool(_) => Self::Bool,
        }
    }

    /// The name shown by `DESCRIBE TABLE` (CnosDB's).
    pub fn describe(self) -> &'static str {
        match self {
            Self::Tag => "STRING (TAG)",
            Self::Float => "DOUBLE",
            Self::Int => "BIGINT",
            Self::UInt => "BIGINT UNSIGNED",
            Self::Str => "STRING",
            Self::Bool => "BOOLEAN",
        }
    }
}

/// One table's columns after `time`, in the order first written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TableSchema {
    /// Name and type of each column.
    pub columns: Vec<(String, ColumnType)>,
}

impl TableSchema {
    /// The type of a column, if the table has it.
    pub fn get(&self, name: &str) -> Option<ColumnType> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
    }
}

/// Every table of a database.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schema {
    /// Tables by name.
    pub tables: BTreeMap<String, TableSchema>,
}

/// Why a write does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A column written as one type and now as another.
    #[error(
        "table {table:?}, column {column:?}: written as {had:?}, now as {now:?} (row {row}); the write is refused"
    )]
    Conflict {
        /// Table.
        table: String,
        /// Column.
        column: String,
        /// The type it has.
        had: ColumnType,
        /// The type this write gives it.
        now: ColumnType,
        /// The row of the batch (from 0).
        row: usize,
    },
    /// A name that cannot be a table or column.
    #[error("{what} name {name:?}: {why}")]
    BadName {
        /// "table" or "column".
        what: &'static str,
        /// The name.
        name: String,
        /// The reason.
        why: &'static str,
    },
}

fn check_name(what: &'static str, name: &str) -> Result<(), SchemaError> {
    let bad = |why| {
        Err(SchemaError::BadName {
            what,
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    if name.chars().any(char::is_control) {
        return bad("has control characters");
    }
    if what == "column" && name == TIME {
        return bad("`time` is the time column");
    }
    Ok(())
}

impl Schema {
    /// The columns `batch` adds (table, column, type), in the order it
    /// first uses them, or why it does not fit. Nothing changes here.
    pub fn additions(
        &self,
        batch: &Batch,
    ) -> Result<Vec<(String, String, ColumnType)>, SchemaError> {
        let mut added: Vec<(String, String, ColumnType)> = Vec::new();
        for (i, row) in batch.rows.iter().enumerate() {
            // Names already in the schema were checked when they joined it.
            let table = self.tables.get(&row.table);
            if table.is_none() {
                check_name("table", &row.table)?;
            }
            let columns = row
                .tags
                .iter()
                .map(|(n, _)| (n, ColumnType::Tag))
                .chain(row.fields.iter().map(|(n, v)| (n, ColumnType::of(v))));
            for (name, now) in columns {
                let had = match table.and_then(|t| t.get(name)) {
                    Some(had) => Some(had),
                    None => {
                        check_name("column", name)?;
                        added
                            .iter()
                            .find(|(t, c, _)| *t == row.table && c == name)
                            .map(|(_, _, ty)| *ty)
                    }
                };
                match had {
                    Some(had) if had != now => {
                        return Err(SchemaError::Conflict {
                            table: row.table.clone(),
                            column: name.clone(),
                            had,
                            now,
                            row: i,
                        });
                    }
                    Some(_) => {}
                    None => added.push((row.table.clone(), name.clone(), now)),
                }
            }
        }
        Ok(added)
    }

    /// Moves string values to the kind their column has: a tag written
    /// to a string field column becomes that field, a string field
    /// written to a tag column becomes that tag (both are strings; a
    /// store imported from SQLite, where the two looked alike, keeps
    /// taking the pipelines' rows).
    pub fn coerce(&self, batch: &mut Batch) {
        for row in &mut batch.rows {
            let Some(table) = self.tables.get(&row.table) else {
                continue;
            };
            if row
                .tags
                .iter()
                .any(|(n, _)| table.get(n) == Some(ColumnType::Str))
            {
                let (fields, tags): (Vec<_>, Vec<_>) = std::mem::take(&mut row.tags)
                    .into_iter()
                    .partition(|(n, _)| table.get(n) == Some(ColumnType::Str));
                row.tags = tags;
                row.fields
                    .extend(fields.into_iter().map(|(n, v)| (n, Value::Str(v))));
            }
            if row
                .fields
                .iter()
                .any(|(n, v)| matches!(v, Value::Str(_)) && table.get(n) == Some(ColumnType::Tag))
            {
                let fields = std::mem::take(&mut row.fields);
                for (n, v) in fields {
                    match v {
                        Value::Str(s) if table.get(&n) == Some(ColumnType::Tag) => {
                            row.tags.push((n, s));
                        }
                        v => row.fields.push((n, v)),
                    }
                }
            }
        }
    }

    /// Takes the additions of [`Schema::additions`].
    pub fn extend(&mut self, added: Vec<(String, String, ColumnType)>) {
        for (table, column, ty) in added {
            self.tables
                .entry(table)
                .or_default()
                .columns
                .push((column, ty));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Row;

    fn row(table: &str, tags: &[(&str, &str)], fields: Vec<(&str, Value)>) -> Row {
        Row {
            table: table.to_owned(),
            time: 1,
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    fn batch(rows: Vec<Row>) -> Batch {
        Batch {
            rows,
            positions: vec![],
        }
    }

    #[test]
    fn new_columns_extend_a_table_in_the_order_written() {
        let mut s = Schema::default();
        let b = batch(vec![
            row(
                "air",
                &[("station", "a")],
                vec![("temp", Value::Float(1.0))],
            ),
            row(
                "air",
                &[("station", "b"), ("city", "x")],
                vec![("temp", Value::Float(2.0))],
            ),
        ]);
        let add = s.additions(&b).unwrap();
        assert_eq!(add.len(), 3);
        s.extend(add);
        assert_eq!(
            s.tables["air"].columns,
            [
                ("station".to_owned(), ColumnType::Tag),
                ("temp".to_owned(), ColumnType::Float),
                ("city".to_owned(), ColumnType::Tag),
            ]
        );
        // Known columns add nothing; a new field does.
        let b = batch(vec![row(
            "air",
            &[("station", "c")],
            vec![("rh", Value::Int(3))],
        )]);
        assert_eq!(
            s.additions(&b).unwrap(),
            [("air".to_owned(), "rh".to_owned(), ColumnType::Int)]
        );
    }

    #[test]
    fn a_type_or_kind_conflict_refuses_the_write_and_names_it() {
        let mut s = Schema::default();
        let first = batch(vec![row(
            "t",
            &[("host", "a")],
            vec![("v", Value::Float(1.0))],
        )]);
        let add = s.additions(&first).unwrap();
        s.extend(add);
        let e = s
            .additions(&batch(vec![
                row("t", &[], vec![("v", Value::Float(2.0))]),
                row("t", &[], vec![("v", Value::Str("x".into()))]),
            ]))
            .unwrap_err();
        assert_eq!(
            e,
            SchemaError::Conflict {
                table: "t".into(),
                column: "v".into(),
                had: ColumnType::Float,
                now: ColumnType::Str,
                row: 1
            }
        );
        assert!(e.to_string().contains("refused"));
        // A tag written as a field, and a conflict inside one batch.
        assert!(
            s.additions(&batch(vec![row(
                "t",
                &[],
                vec![("host", Value::Bool(true))]
            )]))
            .is_err()
        );
        assert!(
            s.additions(&batch(vec![
                row("u", &[], vec![("n", Value::Int(1))]),
                row("u", &[], vec![("n", Value::UInt(1))]),
            ]))
            .is_err()
        );
        // Names that cannot be.
        assert!(s.additions(&batch(vec![row("", &[], vec![])])).is_err());
        assert!(
            s.additions(&batch(vec![row("t", &[("time", "x")], vec![])]))
                .is_err()
        );
        assert!(s.additions(&batch(vec![row("a\nb", &[], vec![])])).is_err());
        // The schema round-trips through its file.
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Schema>(&text).unwrap(), s);
    }
}
