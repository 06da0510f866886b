//! The store's Parquet files: a flushed table's rows sorted by time, one
//! file per UTC day, zstd, row groups of 64 Ki rows with statistics.
//! A file is written under `tmp/`, fsynced and renamed into `data/`; the
//! caller fsyncs `data/` and lists the file in the manifest only then.

use std::io;
use std::path::Path;

use bytes::Bytes;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::{SortOptions, sort_to_indices, take_record_batch};
use datafusion::arrow::datatypes::TimestampNanosecondType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::temporal_conversions::timestamp_ns_to_datetime;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use weir_log::Storage;

use crate::manifest::{FileEntry, file_name};

/// Rows per row group.
pub const ROW_GROUP: usize = 64 * 1024;

const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// The UTC day (`yyyy-mm-dd`) of a time in nanoseconds.
pub fn day_of(ns: i64) -> String {
    let start = ns.div_euclid(DAY_NS) * DAY_NS;
    timestamp_ns_to_datetime(start)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("day{}", ns.div_euclid(DAY_NS)))
}

fn props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .build()
}

fn times(batch: &RecordBatch) -> &[i64] {
    batch
        .column(0)
        .as_primitive::<TimestampNanosecondType>()
        .values()
}

/// Writes `batch` (one table's rows, its first column `time`) as one
/// file per day into `data/`, taking ids from `next_id`. Returns the
/// entries; `data/` still has to be fsynced before they are listed.
pub fn write_table(
    storage: &dyn Storage,
    dir: &Path,
    table: &str,
    batch: &RecordBatch,
    next_id: &mut u64,
) -> io::Result<Vec<FileEntry>> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let order = sort_to_indices(batch.column(0), Some(SortOptions::default()), None)
        .map_err(io::Error::other)?;
    let sorted = take_record_batch(batch, &order).map_err(io::Error::other)?;
    let t = times(&sorted);
    let mut out = Vec::new();
    let mut start = 0;
    while start < t.len() {
        let day = t[start].div_euclid(DAY_NS);
        let end = start + t[start..].partition_point(|x| x.div_euclid(DAY_NS) == day);
        let part = sorted.slice(start, end - start);
        let id = *next_id;
        *next_id += 1;
        let bytes = write_file(storage, dir, &file_name(id), &part)?;
        out.push(FileEntry {
            id,
            table: table.to_owned(),
            day: day_of(t[start]),
            min_time: t[start],
            max_time: t[end - 1],
            rows: part.num_rows() as u64,
            bytes,
        });
        start = end;
    }
    Ok(out)
}

/// Encodes `batch` as Parquet into `tmp/<name>`, fsyncs it and renames
/// it to `data/<name>`. Returns its size.
pub fn write_file(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    batch: &RecordBatch,
) -> io::Result<u64> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4 + 1024);
    let mut w =
        ArrowWriter::try_new(&mut buf, batch.schema(), Some(props())).map_err(io::Error::other)?;
    w.write(batch).map_err(io::Error::other)?;
    w.close().map_err(io::Error::other)?;
    let tmp = dir.join("tmp").join(name);
    let written = storage.open(&tmp, true).and_then(|f| {
        f.set_len(0)?;
        f.write_all_at(&buf, 0)?;
        f.sync_data()?;
        storage.rename(&tmp, &dir.join("data").join(name))
    });
    if written.is_err() {
        let _ = storage.remove(&tmp);
    }
    written.map(|()| buf.len() as u64)
}

/// Reads a whole file back through `storage` (recovery checks and
/// compaction; queries read files through DataFusion).
pub fn read_file(storage: &dyn Storage, path: &Path) -> io::Result<Vec<RecordBatch>> {
    let f = storage.open(path, false)?;
    let mut data = vec![0u8; f.len()? as usize];
    f.read_exact_at(&mut data, 0)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(data))
        .and_then(|b| b.build())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Whether a column of a batch read back is the time column in order.
pub fn is_sorted_by_time(batches: &[RecordBatch]) -> bool {
    let mut last = i64::MIN;
    for b in batches {
        let col = b.column(0).as_primitive::<TimestampNanosecondType>();
        if col.null_count() > 0 {
            return false;
        }
        for &t in col.values() {
            if t < last {
                return false;
            }
            last = t;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::to_batch;
    use crate::rows::{Row, Value};
    use crate::schema::{ColumnType, TableSchema};
    use weir_log::FaultStorage;

    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(-1), "1969-12-31");
        assert_eq!(day_of(1_796_601_600 * 1_000_000_000), "2026-12-07");
    }

    #[test]
    fn a_table_is_written_sorted_one_file_per_day_and_reads_back() {
        let s = FaultStorage::new();
        let dir = Path::new("/db");
        s.create_dir_all(&dir.join("tmp")).unwrap();
        s.create_dir_all(&dir.join("data")).unwrap();
        let table = TableSchema {
            columns: vec![("v".into(), ColumnType::Int)],
        };
        // Three days, written out of order.
        let rows: Vec<Row> = [2 * DAY_NS + 5, 7, DAY_NS, 3, 2 * DAY_NS]
            .iter()
            .map(|&time| Row {
                table: "t".into(),
                time,
                tags: vec![],
                fields: vec![("v".into(), Value::Int(time))],
            })
            .collect();
        let batch = to_batch(&table, rows.iter()).unwrap();
        let mut next = 7;
        let files = write_table(&s, dir, "t", &batch, &mut next).unwrap();
        assert_eq!(next, 10);
        let shape: Vec<(u64, &str, i64, i64, u64)> = files
            .iter()
            .map(|f| (f.id, f.day.as_str(), f.min_time, f.max_time, f.rows))
            .collect();
        assert_eq!(
            shape,
            [
                (7, "1970-01-01", 3, 7, 2),
                (8, "1970-01-02", DAY_NS, DAY_NS, 1),
                (9, "1970-01-03", 2 * DAY_NS, 2 * DAY_NS + 5, 2)
            ]
        );
        let back = read_file(&s, &dir.join("data").join(files[0].file_name())).unwrap();
        assert!(is_sorted_by_time(&back));
        assert_eq!(back[0].schema(), batch.schema());
        assert!(s.list(&dir.join("tmp")).unwrap().is_empty());
    }
}
