//! Rows as Arrow: a table's Arrow schema (`time` as a UTC nanosecond
//! timestamp, tags as dictionary-encoded strings, fields by type), rows
//! turned into a `RecordBatch` of that schema, and a batch of an older
//! schema widened to the current one (columns it lacks read as null).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampNanosecondBuilder, UInt64Builder, new_null_array,
};
use datafusion::arrow::datatypes::{
    DataType, Field, Int32Type, Schema as ArrowSchema, SchemaRef, TimeUnit,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::rows::{Row, Value};
use crate::schema::{ColumnType, TIME, TableSchema};

/// The time zone of every `time` column.
pub const UTC: &str = "UTC";

/// The Arrow type of `time`.
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some(UTC.into()))
}

/// The Arrow type of a column.
pub fn data_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Tag => {
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
        }
        ColumnType::Float => DataType::Float64,
        ColumnType::Int => DataType::Int64,
        ColumnType::UInt => DataType::UInt64,
        ColumnType::Str => DataType::Utf8,
        ColumnType::Bool => DataType::Boolean,
    }
}

/// A table's Arrow schema: `time` (never null), then its columns in the
/// order first written (nullable).
pub fn arrow_schema(table: &TableSchema) -> SchemaRef {
    let mut fields = Vec::with_capacity(table.columns.len() + 1);
    fields.push(Field::new(TIME, time_type(), false));
    for (name, ty) in &table.columns {
        fields.push(Field::new(name, data_type(*ty), true));
    }
    Arc::new(ArrowSchema::new(fields))
}

enum Builder {
    Tag(StringDictionaryBuilder<Int32Type>),
    Float(Float64Builder),
    Int(Int64Builder),
    UInt(UInt64Builder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
}

/// What a row gives one column.
#[derive(Clone, Copy)]
enum Slot<'a> {
    Tag(&'a str),
    Field(&'a Value),
}

impl Builder {
    fn new(ty: ColumnType, rows: usize) -> Self {
        match ty {
            ColumnType::Tag => Self::Tag(StringDictionaryBuilder::new()),
            ColumnType::Float => Self::Float(Float64Builder::with_capacity(rows)),
            ColumnType::Int => Self::Int(Int64Builder::with_capacity(rows)),
            ColumnType::UInt => Self::UInt(UInt64Builder::with_capacity(rows)),
            ColumnType::Str => Self::Str(StringBuilder::with_capacity(rows, rows * 8)),
            ColumnType::Bool => Self::Bool(BooleanBuilder::with_capacity(rows)),
        }
    }

    /// Appends what the row gives, or null where it gives nothing of this
    /// column's type (the schema check makes that only "nothing").
    fn push(&mut self, slot: Option<Slot<'_>>) {
        match (self, slot) {
            (Self::Tag(b), Some(Slot::Tag(s))) => {
                b.append_value(s);
            }
            (Self::Float(b), Some(Slot::Field(Value::Float(v)))) => b.append_value(*v),
            (Self::Int(b), Some(Slot::Field(Value::Int(v)))) => b.append_value(*v),
            (Self::UInt(b), Some(Slot::Field(Value::UInt(v)))) => b.append_value(*v),
            (Self::Str(b), Some(Slot::Field(Value::Str(v)))) => b.append_value(v),
            (Self::Bool(b), Some(Slot::Field(Value::Bool(v)))) => b.append_value(*v),
            (Self::Tag(b), _) => b.append_null(),
            (Self::Float(b), _) => b.append_null(),
            (Self::Int(b), _) => b.append_null(),
            (Self::UInt(b), _) => b.append_null(),
            (Self::Str(b), _) => b.append_null(),
            (Self::Bool(b), _) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Tag(mut b) => Arc::new(b.finish()),
            Self::Float(mut b) => Arc::new(b.finish()),
            Self::Int(mut b) => Arc::new(b.finish()),
            Self::UInt(mut b) => Arc::new(b.finish()),
            Self::Str(mut b) => Arc::new(b.finish()),
            Self::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The rows (all of `table`) as one batch of its schema. A column named
/// twice in a row takes the last value (as InfluxDB's line protocol
/// does); a column the schema lacks is left out.
pub fn to_batch<'a>(
    table: &TableSchema,
    rows: impl ExactSizeIterator<Item = &'a Row>,
) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let index: HashMap<&str, usize> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), i))
        .collect();
    let mut time = TimestampNanosecondBuilder::with_capacity(n);
    let mut builders: Vec<Builder> = table
        .columns
        .iter()
        .map(|(_, ty)| Builder::new(*ty, n))
        .collect();
    let mut slots: Vec<Option<Slot<'_>>> = vec![None; builders.len()];
    for row in rows {
        time.append_value(row.time);
        for (name, value) in &row.tags {
            if let Some(&i) = index.get(name.as_str()) {
                slots[i] = Some(Slot::Tag(value));
            }
        }
        for (name, value) in &row.fields {
            if let Some(&i) = index.get(name.as_str()) {
                slots[i] = Some(Slot::Field(value));
            }
        }
        for (b, slot) in builders.iter_mut().zip(slots.iter_mut()) {
            b.push(slot.take());
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(builders.len() + 1);
    columns.push(Arc::new(time.finish().with_timezone(UTC)));
    columns.extend(builders.into_iter().map(Builder::finish));
    RecordBatch::try_new(arrow_schema(table), columns)
}

/// `batch` with exactly `schema`'s columns, by name: a column it lacks
/// is all null (it was added after the batch was made).
pub fn widen(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    let n = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => c.clone(),
            _ => new_null_array(f.data_type(), n),
        })
        .collect();
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, TimestampNanosecondType};

    fn table() -> TableSchema {
        TableSchema {
            columns: vec![
                ("host".into(), ColumnType::Tag),
                ("usage".into(), ColumnType::Float),
                ("up".into(), ColumnType::Bool),
            ],
        }
    }

    fn row(time: i64, host: Option<&str>, fields: Vec<(&str, Value)>) -> Row {
        Row {
            table: "cpu".into(),
            time,
            tags: host
                .map(|h| ("host".to_owned(), h.to_owned()))
                .into_iter()
                .collect(),
            fields: fields.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
        }
    }

    #[test]
    fn rows_become_columns_with_nulls_where_a_row_is_silent_and_the_last_duplicate_wins() {
        let rows = [
            row(1, Some("a"), vec![("usage", Value::Float(0.5))]),
            row(2, None, vec![("up", Value::Bool(true))]),
            row(
                3,
                Some("a"),
                vec![("usage", Value::Float(1.0)), ("usage", Value::Float(2.0))],
            ),
        ];
        let b = to_batch(&table(), rows.iter()).unwrap();
        assert_eq!(b.num_rows(), 3);
        let time = b.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!(time.values().to_vec(), vec![1, 2, 3]);
        let host = b.column(1).as_dictionary::<Int32Type>();
        assert_eq!(host.null_count(), 1);
        assert_eq!(
            host.values().len(),
            1,
            "one dictionary entry for a repeated tag"
        );
        let usage = b.column(2).as_primitive::<Float64Type>();
        assert!(usage.is_null(1));
        assert_eq!(usage.value(2), 2.0);
        let up = b.column(3).as_boolean();
        assert!(up.is_null(0) && up.value(1));
    }

    #[test]
    fn an_older_batch_widens_to_the_current_schema_with_nulls() {
        let old = TableSchema {
            columns: table().columns[..2].to_vec(),
        };
        let b = to_batch(
            &old,
            [row(1, Some("a"), vec![("usage", Value::Float(0.5))])].iter(),
        )
        .unwrap();
        let now = arrow_schema(&table());
        let w = widen(&b, &now).unwrap();
        assert_eq!(w.schema(), now);
        assert!(w.column(3).is_null(0));
        assert_eq!(w.column(2).as_primitive::<Float64Type>().value(0), 0.5);
    }
}
