//! The store's Parquet files: a flushed table's rows sorted by time, one
//! file per UTC day, zstd, row groups of 64 Ki rows with statistics.
//! A file is written under `tmp/`, fsynced and renamed into `data/`; the
//! caller fsyncs `data/` and lists the file in the manifest only then.
//! Compaction merges files of a table and day with [`merge_files`], a
//! streaming k-way merge by time read and written through [`Storage`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::{
    SortOptions, interleave_record_batch, sort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::temporal_conversions::timestamp_ns_to_datetime;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::{
    ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::errors::{ParquetError, Result as ParquetResult};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::reader::{ChunkReader, Length};
use weir_log::{Storage, StorageFile};

use crate::columns::widen;
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
            level: 0,
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

/// A file read through `storage` piece by piece (Parquet's footer, then
/// one column chunk at a time), so reading a file never holds it whole.
struct StorageChunks {
    file: Arc<dyn StorageFile>,
    len: u64,
}

/// A [`Read`] over part of a [`StorageChunks`].
struct StorageRead {
    file: Arc<dyn StorageFile>,
    pos: u64,
    end: u64,
}

impl Read for StorageRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.end - self.pos).min(buf.len() as u64) as usize;
        self.file.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Length for StorageChunks {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for StorageChunks {
    type T = StorageRead;

    fn get_read(&self, start: u64) -> ParquetResult<StorageRead> {
        Ok(StorageRead {
            file: self.file.clone(),
            pos: start.min(self.len),
            end: self.len,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> ParquetResult<Bytes> {
        if start.saturating_add(length as u64) > self.len {
            return Err(ParquetError::EOF(format!(
                "{length} bytes at {start} of a {} byte file",
                self.len
            )));
        }
        let mut buf = vec![0u8; length];
        self.file.read_exact_at(&mut buf, start)?;
        Ok(Bytes::from(buf))
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A reader of a file's rows through `storage`, `BATCH` rows at a time.
pub fn open_file(storage: &dyn Storage, path: &Path) -> io::Result<ParquetRecordBatchReader> {
    let file = storage.open(path, false)?;
    let len = file.len()?;
    ParquetRecordBatchReaderBuilder::try_new(StorageChunks { file, len })
        .and_then(|b| b.with_batch_size(BATCH).build())
        .map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// Reads a whole file back through `storage` (recovery checks and tests;
/// queries read files through DataFusion).
pub fn read_file(storage: &dyn Storage, path: &Path) -> io::Result<Vec<RecordBatch>> {
    open_file(storage, path)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)
}

/// Rows a merge reads and writes at a time.
pub const BATCH: usize = 8 * 1024;

/// Merges `inputs` (files of one table and day under `dir/data`, each
/// sorted by time) into one file `id`, sorted by time, in `schema` (the
/// table's current columns: those a file lacks are null). It streams: at
/// most a batch of each input and one row group of the output are in
/// memory. Rows of equal time keep the order of `inputs`. The file is in
/// `data/` when this returns (`data/` still has to be fsynced before it
/// is listed); on an error nothing is left.
pub fn merge_files(
    storage: &dyn Storage,
    dir: &Path,
    inputs: &[FileEntry],
    schema: &SchemaRef,
    id: u64,
    level: u32,
) -> io::Result<FileEntry> {
    let data = dir.join("data");
    let name = file_name(id);
    if inputs.is_empty() {
        return Err(io::Error::other("a merge of no files"));
    }
    let mut readers = Vec::with_capacity(inputs.len());
    for f in inputs {
        readers.push(open_file(storage, &data.join(f.file_name()))?);
    }
    let mut out = FileWriter::create(storage, dir, &name, schema)?;
    let merged = (|| {
        // Each input's current batch (empty once it is done) and row.
        let mut current: Vec<RecordBatch> = Vec::with_capacity(readers.len());
        let mut at = vec![0usize; readers.len()];
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            let b = next_batch(r, schema)?;
            if b.num_rows() > 0 {
                heap.push(Reverse((times(&b)[0], i)));
            }
            current.push(b);
        }
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(BATCH);
        while let Some(Reverse((_, i))) = heap.pop() {
            picks.push((i, at[i]));
            at[i] += 1;
            let done = at[i] == current[i].num_rows();
            if !done {
                heap.push(Reverse((times(&current[i])[at[i]], i)));
            }
            // The picks point into the current batches: they are written
            // out before a batch is replaced.
            if done || picks.len() == BATCH {
                write_picks(&mut out, &current, &mut picks)?;
            }
            if done {
                current[i] = next_batch(&mut readers[i], schema)?;
                at[i] = 0;
                if current[i].num_rows() > 0 {
                    heap.push(Reverse((times(&current[i])[0], i)));
                }
            }
        }
        write_picks(&mut out, &current, &mut picks)
    })();
    match merged {
        Ok(()) => {
            let (bytes, rows, min_time, max_time) = out.finish()?;
            Ok(FileEntry {
                id,
                table: inputs[0].table.clone(),
                day: inputs[0].day.clone(),
                min_time,
                max_time,
                rows,
                bytes,
                level,
            })
        }
        Err(e) => {
            out.abandon();
            Err(e)
        }
    }
}

/// The next rows of `reader` in `schema`; empty at its end.
fn next_batch(
    reader: &mut ParquetRecordBatchReader,
    schema: &SchemaRef,
) -> io::Result<RecordBatch> {
    for b in reader.by_ref() {
        let b = b.map_err(invalid)?;
        if b.num_rows() > 0 {
            return widen(&b, schema).map_err(invalid);
        }
    }
    Ok(RecordBatch::new_empty(schema.clone()))
}

fn write_picks(
    out: &mut FileWriter<'_>,
    current: &[RecordBatch],
    picks: &mut Vec<(usize, usize)>,
) -> io::Result<()> {
    if picks.is_empty() {
        return Ok(());
    }
    let refs: Vec<&RecordBatch> = current.iter().collect();
    let batch = interleave_record_batch(&refs, picks).map_err(invalid)?;
    picks.clear();
    out.write(&batch)
}

/// An [`io::Write`] appending to a file of a [`Storage`].
struct StorageWrite {
    file: Arc<dyn StorageFile>,
    pos: u64,
}

impl Write for StorageWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A Parquet file being written row group by row group under `tmp/`;
/// [`FileWriter::finish`] makes it durable and moves it into `data/`.
struct FileWriter<'a> {
    storage: &'a dyn Storage,
    tmp: PathBuf,
    dest: PathBuf,
    writer: Option<ArrowWriter<StorageWrite>>,
    file: Arc<dyn StorageFile>,
    rows: u64,
    min_time: i64,
    max_time: i64,
}

impl<'a> FileWriter<'a> {
    fn create(
        storage: &'a dyn Storage,
        dir: &Path,
        name: &str,
        schema: &SchemaRef,
    ) -> io::Result<Self> {
        let tmp = dir.join("tmp").join(name);
        let file = storage.open(&tmp, true)?;
        let started = file.set_len(0).and_then(|()| {
            let sink = StorageWrite {
                file: file.clone(),
                pos: 0,
            };
            ArrowWriter::try_new(sink, schema.clone(), Some(props())).map_err(io::Error::other)
        });
        let writer = match started {
            Ok(w) => w,
            Err(e) => {
                let _ = storage.remove(&tmp);
                return Err(e);
            }
        };
        Ok(Self {
            storage,
            tmp,
            dest: dir.join("data").join(name),
            writer: Some(writer),
            file,
            rows: 0,
            min_time: i64::MAX,
            max_time: i64::MIN,
        })
    }

    /// Appends rows (in time order after those before).
    fn write(&mut self, batch: &RecordBatch) -> io::Result<()> {
        let t = times(batch);
        if let (Some(first), Some(last)) = (t.first(), t.last()) {
            self.min_time = self.min_time.min(*first);
            self.max_time = self.max_time.max(*last);
        }
        self.rows += batch.num_rows() as u64;
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("closed"))?;
        w.write(batch).map_err(parquet_io)
    }

    /// Closes, fsyncs and renames the file into `data/`; returns its size,
    /// rows and time range.
    fn finish(mut self) -> io::Result<(u64, u64, i64, i64)> {
        let done = (|| {
            let w = self
                .writer
                .take()
                .ok_or_else(|| io::Error::other("closed"))?;
            w.close().map_err(parquet_io)?;
            self.file.sync_data()?;
            let bytes = self.file.len()?;
            self.storage.rename(&self.tmp, &self.dest)?;
            Ok(bytes)
        })();
        match done {
            Ok(bytes) => Ok((bytes, self.rows, self.min_time, self.max_time)),
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }

    /// Removes what was written.
    fn abandon(self) {
        drop(self.writer);
        let _ = self.storage.remove(&self.tmp);
    }
}

/// A Parquet error as an I/O error, keeping a full disk recognisable.
fn parquet_io(e: ParquetError) -> io::Error {
    match e {
        ParquetError::External(inner) => match inner.downcast::<io::Error>() {
            Ok(io) => *io,
            Err(other) => io::Error::other(other),
        },
        other => io::Error::other(other),
    }
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
