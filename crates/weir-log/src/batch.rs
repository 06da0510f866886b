//! Kafka RecordBatch v2: header parsing, validation, the few in-place
//! patches the log makes (base offset, leader epoch, log-append time), and
//! a small encoder for uncompressed batches used by tests, benches and tools.
//!
//! Layout of a batch (big-endian), as in the Kafka protocol guide:
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset
//!      8     4  batchLength            bytes after this field
//!     12     4  partitionLeaderEpoch
//!     16     1  magic                  = 2
//!     17     4  crc                    CRC-32C of bytes 21..end
//!     21     2  attributes             bits 0-2 compression, 3 timestamp type,
//!                                      4 transactional, 5 control
//!     23     4  lastOffsetDelta
//!     27     8  baseTimestamp
//!     35     8  maxTimestamp
//!     43     8  producerId
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  recordsCount
//!     61     -  records (compressed as a whole when compression != 0)
//! ```

use thiserror::Error;

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before the part counted by `batchLength` (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// The only record-batch format Weir stores.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET: usize = 0;
const LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// Why a record batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// Fewer bytes than a batch header.
    #[error("batch truncated: {available} bytes, a header needs {HEADER_LEN}")]
    TruncatedHeader {
        /// Bytes that were there.
        available: usize,
    },
    /// `batchLength` is impossible or runs past the end of the input.
    #[error("batch length {length} is invalid ({available} bytes follow the length field)")]
    BadLength {
        /// The declared length.
        length: i32,
        /// Bytes available after the length field.
        available: usize,
    },
    /// Not a v2 batch.
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    BadMagic(i8),
    /// Checksum mismatch.
    #[error("CRC-32C mismatch: batch says {stored:#010x}, data gives {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the data.
        computed: u32,
    },
    /// `recordsCount` does not match `lastOffsetDelta`.
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    BadRecordCount {
        /// `recordsCount`.
        count: i32,
        /// `lastOffsetDelta`.
        last_offset_delta: i32,
    },
    /// Compression codec 5, 6 or 7.
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    /// The records of an uncompressed batch are malformed.
    #[error("malformed record {index}: {reason}")]
    BadRecord {
        /// Index of the record in the batch.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The input held no batch at all.
    #[error("no record batch in the request")]
    Empty,
    /// A compressed records section could not be decompressed.
    #[error(transparent)]
    Codec(crate::compression::CodecError),
    /// One append would take more offsets than a segment can hold.
    #[error("batches claim {offsets} offsets, more than one segment can hold")]
    TooManyOffsets {
        /// Offsets claimed.
        offsets: u64,
    },
}

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The attributes bits of the codec.
    pub fn bits(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// The codec of a `compression.type` value; `None` for `producer`.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "uncompressed" | "none" => Self::None,
            "gzip" => Self::Gzip,
            "snappy" => Self::Snappy,
            "lz4" => Self::Lz4,
            "zstd" => Self::Zstd,
            _ => return None,
        })
    }

    fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        Ok(match attributes & 0x07 {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            c => return Err(BatchError::UnknownCompression(c as u8)),
        })
    }
}

/// Timestamp type of a batch (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when appended.
    LogAppendTime,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The fixed header of a record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// First offset of the batch.
    pub base_offset: i64,
    /// Bytes after the length field.
    pub batch_length: i32,
    /// Leader epoch the batch was appended under.
    pub partition_leader_epoch: i32,
    /// Format version.
    pub magic: i8,
    /// Stored CRC-32C.
    pub crc: u32,
    /// Raw attributes.
    pub attributes: i16,
    /// Last offset minus base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, -1 when none.
    pub producer_id: i64,
    /// Idempotent producer epoch.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 when none.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the first [`HEADER_LEN`] bytes of `buf` without checking them.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::TruncatedHeader {
                available: buf.len(),
            });
        }
        Ok(Self {
            base_offset: be_i64(buf, BASE_OFFSET),
            batch_length: be_i32(buf, LENGTH),
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH),
            magic: buf[MAGIC] as i8,
            crc: be_i32(buf, CRC) as u32,
            attributes: be_i16(buf, ATTRIBUTES),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP),
            producer_id: be_i64(buf, PRODUCER_ID),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH),
            base_sequence: be_i32(buf, BASE_SEQUENCE),
            records_count: be_i32(buf, RECORDS_COUNT),
        })
    }

    /// Total size of the batch including the offset and length fields, if
    /// the length field is sane.
    pub fn total_len(&self) -> Option<usize> {
        let len = usize::try_from(self.batch_length).ok()?;
        if len < HEADER_LEN - LOG_OVERHEAD {
            return None;
        }
        Some(len + LOG_OVERHEAD)
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Compression codec.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    /// Timestamp type.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// A control batch (transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// What validation learned about one batch of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// Byte position of the batch in the input.
    pub position: usize,
    /// The header as received.
    pub header: BatchHeader,
    /// Total size in bytes.
    pub len: usize,
    /// The largest record timestamp, computed from the records of an
    /// uncompressed batch (`None` when compressed: the header is trusted).
    pub record_max_timestamp: Option<i64>,
    /// The smallest record timestamp, likewise.
    pub record_min_timestamp: Option<i64>,
}

impl BatchInfo {
    /// Number of offsets the batch takes.
    pub fn offset_count(&self) -> u64 {
        self.header.last_offset_delta as u64 + 1
    }
}

/// How strictly [`check_batch`] treats the count/offset relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// A producer's batch: `recordsCount == lastOffsetDelta + 1 >= 1`, and
    /// the records of an uncompressed batch are checked one by one.
    Producer,
    /// A stored batch during recovery: header, length and CRC only.
    Stored,
}

/// Validates the batch at the start of `buf` and returns its header and
/// length. `buf` may hold more bytes after the batch.
pub fn check_batch(buf: &[u8], strictness: Strictness) -> Result<(BatchHeader, usize), BatchError> {
    check_batch_full(buf, strictness).map(|(header, len, _)| (header, len))
}

/// [`check_batch`], also returning the smallest and largest record
/// timestamps of an uncompressed batch checked with [`Strictness::Producer`].
#[allow(clippy::type_complexity)]
fn check_batch_full(
    buf: &[u8],
    strictness: Strictness,
) -> Result<(BatchHeader, usize, Option<(i64, i64)>), BatchError> {
    let header = BatchHeader::parse(buf)?;
    let len = header.total_len().ok_or(BatchError::BadLength {
        length: header.batch_length,
        available: buf.len().saturating_sub(LOG_OVERHEAD),
    })?;
    if len > buf.len() {
        return Err(BatchError::BadLength {
            length: header.batch_length,
            available: buf.len() - LOG_OVERHEAD,
        });
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::BadMagic(header.magic));
    }
    let computed = crc32c::crc32c(&buf[ATTRIBUTES..len]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    let compression = header.compression()?;
    let count = header.records_count;
    let delta = header.last_offset_delta;
    let counts_ok = match strictness {
        Strictness::Producer => {
            count >= 1 && delta >= 0 && i64::from(count) == i64::from(delta) + 1
        }
        Strictness::Stored => count >= 0 && delta >= 0 && i64::from(count) <= i64::from(delta) + 1,
    };
    if !counts_ok {
        return Err(BatchError::BadRecordCount {
            count,
            last_offset_delta: delta,
        });
    }
    let mut max_timestamp = None;
    if strictness == Strictness::Producer && compression == Compression::None {
        let (min_delta, max_delta) = check_records(&buf[HEADER_LEN..len], count as usize)?;
        max_timestamp = Some((
            header.base_timestamp.saturating_add(min_delta),
            header.base_timestamp.saturating_add(max_delta),
        ));
    }
    Ok((header, len, max_timestamp))
}

/// Validates every batch of a produce payload (one or more batches back to
/// back). Nothing is accepted unless everything is valid.
pub fn check_batches(buf: &[u8]) -> Result<Vec<BatchInfo>, (usize, BatchError)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let (header, len, record_times) =
            check_batch_full(&buf[pos..], Strictness::Producer).map_err(|e| (pos, e))?;
        out.push(BatchInfo {
            record_min_timestamp: record_times.map(|t| t.0),
            record_max_timestamp: record_times.map(|t| t.1),
            position: pos,
            header,
            len,
        });
        pos += len;
    }
    if out.is_empty() {
        return Err((0, BatchError::Empty));
    }
    Ok(out)
}

/// Overwrites the base offset (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&offset.to_be_bytes());
}

/// Overwrites the partition leader epoch (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Sets `maxTimestamp` (keeping the timestamp type) and recomputes the
/// CRC. `batch` must be exactly one whole batch.
pub fn set_max_timestamp(batch: &mut [u8], timestamp: i64) {
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
    reseal_crc(batch);
}

/// Marks the batch as log-append-time stamped at `timestamp` and
/// recomputes the CRC. `batch` must be exactly one whole batch.
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) {
    let attributes = be_i16(batch, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Reads a zig-zag varint (Kafka's `varint`/`varlong`), returning the value
/// and the bytes used.
fn read_varlong(buf: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            return Some((value, i + 1));
        }
    }
    None
}

/// A cursor over the body of one record.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn varint(&mut self) -> Option<i64> {
        let (v, n) = read_varlong(&self.buf[self.pos..])?;
        self.pos += n;
        Some(v)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        if self.buf.len() - self.pos < n {
            return None;
        }
        self.pos += n;
        Some(())
    }
    /// A length-prefixed byte string, copied; `None` for null.
    fn take(&mut self, nullable: bool) -> Option<Vec<u8>> {
        let start = self.pos;
        self.bytes(nullable)?;
        let (len, n) = read_varlong(&self.buf[start..])?;
        if len < 0 {
            return None;
        }
        Some(self.buf[start + n..self.pos].to_vec())
    }
    /// A length-prefixed byte string; -1 is null when `nullable`.
    fn bytes(&mut self, nullable: bool) -> Option<()> {
        let len = self.varint()?;
        if len == -1 && nullable {
            return Some(());
        }
        self.skip(usize::try_from(len).ok()?)
    }
}

/// One record's position fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordMeta {
    timestamp_delta: i64,
    offset_delta: i64,
}

/// Parses the record at the start of `buf`; returns its fields and total size.
fn parse_record(buf: &[u8]) -> Result<(RecordMeta, usize), &'static str> {
    let (len, n) = read_varlong(buf).ok_or("bad length varint")?;
    let len = usize::try_from(len).map_err(|_| "negative length")?;
    let body = buf.get(n..n + len).ok_or("length runs past the batch")?;
    let mut c = Cursor { buf: body, pos: 0 };
    c.skip(1).ok_or("missing attributes")?;
    let timestamp_delta = c.varint().ok_or("bad timestamp delta")?;
    let offset_delta = c.varint().ok_or("bad offset delta")?;
    c.bytes(true).ok_or("bad key")?;
    c.bytes(true).ok_or("bad value")?;
    let headers = c.varint().ok_or("bad header count")?;
    if headers < 0 {
        return Err("negative header count");
    }
    for _ in 0..headers {
        c.bytes(false).ok_or("bad header key")?;
        c.bytes(true).ok_or("bad header value")?;
    }
    if c.pos != body.len() {
        return Err("record length does not match its fields");
    }
    Ok((
        RecordMeta {
            timestamp_delta,
            offset_delta,
        },
        n + len,
    ))
}

/// Checks the records of an uncompressed batch: `count` records, offset
/// deltas 0, 1, 2..., every field inside its record, nothing left over.
/// Returns the smallest and largest timestamp deltas.
fn check_records(records: &[u8], count: usize) -> Result<(i64, i64), BatchError> {
    let mut pos = 0;
    let mut max_delta = i64::MIN;
    let mut min_delta = i64::MAX;
    for index in 0..count {
        let (meta, len) = parse_record(&records[pos..])
            .map_err(|reason| BatchError::BadRecord { index, reason })?;
        if meta.offset_delta != index as i64 {
            return Err(BatchError::BadRecord {
                index,
                reason: "offset deltas are not 0, 1, 2...",
            });
        }
        max_delta = max_delta.max(meta.timestamp_delta);
        min_delta = min_delta.min(meta.timestamp_delta);
        pos += len;
    }
    if pos != records.len() {
        return Err(BatchError::BadRecord {
            index: count,
            reason: "bytes left after the last record",
        });
    }
    Ok((min_delta, max_delta))
}

/// In an uncompressed, stored batch, the offset and timestamp of the first
/// record at or after offset `min_offset` whose timestamp is at least
/// `target`. `None` when there is none or the batch is a compressed
/// create-time batch (its records cannot be read without decompressing).
pub fn first_record_at_or_after(batch: &[u8], target: i64, min_offset: i64) -> Option<(i64, i64)> {
    let header = BatchHeader::parse(batch).ok()?;
    // With log-append time every record carries the batch's max timestamp,
    // compressed or not.
    if header.timestamp_type() == TimestampType::LogAppendTime {
        let first = header.base_offset.max(min_offset);
        return (header.max_timestamp >= target && first <= header.last_offset())
            .then_some((first, header.max_timestamp));
    }
    if header.compression().ok()? != Compression::None {
        return None;
    }
    let len = header.total_len()?.min(batch.len());
    let records = &batch[HEADER_LEN..len];
    let mut pos = 0;
    for _ in 0..header.records_count.max(0) {
        let (meta, n) = parse_record(records.get(pos..)?).ok()?;
        let ts = header.base_timestamp.saturating_add(meta.timestamp_delta);
        let offset = header.base_offset + meta.offset_delta;
        if ts >= target && offset >= min_offset {
            return Some((offset, ts));
        }
        pos += n;
    }
    None
}

/// Largest records section a compressed batch may decompress to (the
/// broker's largest request is 100 MiB by default).
pub const MAX_DECOMPRESSED: usize = 256 << 20;

/// The records section of one whole batch, decompressed if it was
/// compressed (at most [`MAX_DECOMPRESSED`] bytes).
pub fn records_section(
    batch: &[u8],
) -> Result<(BatchHeader, std::borrow::Cow<'_, [u8]>), BatchError> {
    let header = BatchHeader::parse(batch)?;
    let len = header
        .total_len()
        .filter(|&l| l <= batch.len() && l >= HEADER_LEN)
        .ok_or(BatchError::BadLength {
            length: header.batch_length,
            available: batch.len().saturating_sub(LOG_OVERHEAD),
        })?;
    let body = &batch[HEADER_LEN..len];
    let section = match header.compression()? {
        Compression::None => std::borrow::Cow::Borrowed(body),
        codec => std::borrow::Cow::Owned(
            crate::compression::decompress(codec, body, MAX_DECOMPRESSED)
                .map_err(BatchError::Codec)?,
        ),
    };
    Ok((header, section))
}

/// Decodes the records of one whole batch, compressed or not, into
/// (offset, [`Record`]) pairs, in batch order.
pub fn decode_records(batch: &[u8]) -> Result<Vec<(i64, Record)>, BatchError> {
    let (header, section) = records_section(batch)?;
    let mut rest: &[u8] = &section;
    // A record takes at least 7 bytes: never trust the count for capacity.
    let mut out = Vec::with_capacity((header.records_count.max(0) as usize).min(rest.len() / 7));
    for index in 0..header.records_count.max(0) as usize {
        let bad = |reason| BatchError::BadRecord { index, reason };
        let (meta, n) = parse_record(rest).map_err(bad)?;
        // parse_record validated the framing; walk it again for the bytes.
        let (_, hn) = read_varlong(rest).ok_or_else(|| bad("bad length"))?;
        let mut c = Cursor {
            buf: &rest[hn..n],
            pos: 1,
        };
        c.varint();
        c.varint();
        let key = c.take(true);
        let value = c.take(true);
        let mut headers = Vec::new();
        for _ in 0..c.varint().unwrap_or(0) {
            let k = c.take(false).unwrap_or_default();
            headers.push((k, c.take(true)));
        }
        let timestamp = if header.timestamp_type() == TimestampType::LogAppendTime {
            header.max_timestamp
        } else {
            header.base_timestamp.saturating_add(meta.timestamp_delta)
        };
        out.push((
            header.base_offset + meta.offset_delta,
            Record {
                timestamp,
                key,
                value,
                headers,
            },
        ));
        rest = &rest[n..];
    }
    Ok(out)
}

/// One record for [`encode_batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Timestamp in ms.
    pub timestamp: i64,
    /// Key, `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Value, `None` for a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Encodes an uncompressed v2 batch with base offset 0 and no producer id,
/// as a non-idempotent producer sends it. `records` must not be empty.
pub fn encode_batch(records: &[Record]) -> Vec<u8> {
    let base_ts = records.first().map_or(0, |r| r.timestamp);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(base_ts);
    let mut out = vec![0u8; HEADER_LEN];
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        body.clear();
        body.push(0);
        put_varlong(&mut body, r.timestamp - base_ts);
        put_varlong(&mut body, i as i64);
        put_bytes(&mut body, r.key.as_deref());
        put_bytes(&mut body, r.value.as_deref());
        put_varlong(&mut body, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes(&mut body, Some(k));
            put_bytes(&mut body, v.as_deref());
        }
        put_varlong(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
    }
    let len = (out.len() - LOG_OVERHEAD) as i32;
    out[LENGTH..LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    out[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
    out[MAGIC] = MAGIC_V2 as u8;
    let delta = records.len().saturating_sub(1) as i32;
    out[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&delta.to_be_bytes());
    out[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&base_ts.to_be_bytes());
    out[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&max_ts.to_be_bytes());
    out[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
    out[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&(-1i16).to_be_bytes());
    out[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
    out[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&(records.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES..]);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The same batch with its records section stored in `codec` (`level`
/// as in [`crate::compression::compress`]): the records' bytes are kept,
/// only the section's encoding, the length, the compression bits and the
/// CRC change. A batch already in `codec` is returned as it is.
pub fn recompress(
    batch: &[u8],
    codec: Compression,
    level: Option<i32>,
) -> Result<Vec<u8>, BatchError> {
    let (header, section) = records_section(batch)?;
    if header.compression()? == codec {
        let len = header.total_len().unwrap_or(batch.len()).min(batch.len());
        return Ok(batch[..len].to_vec());
    }
    let packed = crate::compression::compress(codec, &section, level).map_err(BatchError::Codec)?;
    let out = with_section(batch, &packed, |out| {
        let attributes = (be_i16(out, ATTRIBUTES) & !0x07) | codec.bits();
        out[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    })?;
    Ok(out)
}

/// One record of a stored batch as the log cleaner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedRecord<'a> {
    /// The record's offset.
    pub offset: i64,
    /// Its key, `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Its value is null (a tombstone).
    pub tombstone: bool,
}

/// The records of a decompressed records section: each as (its bytes,
/// what the cleaner needs to know of it). Every record's framing is checked.
fn keyed_records<'a>(
    header: &BatchHeader,
    section: &'a [u8],
) -> Result<Vec<(&'a [u8], KeyedRecord<'a>)>, BatchError> {
    let count = header.records_count.max(0) as usize;
    let mut out = Vec::with_capacity(count.min(section.len() / 7));
    let mut pos = 0;
    for index in 0..count {
        let bad = |reason| BatchError::BadRecord { index, reason };
        let rest = section
            .get(pos..)
            .ok_or_else(|| bad("records run past the batch"))?;
        let (meta, n) = parse_record(rest).map_err(bad)?;
        let (_, hn) = read_varlong(rest).ok_or_else(|| bad("bad length"))?;
        // parse_record validated the framing: attributes, two varints, key.
        let body = &rest[hn..n];
        let mut c = Cursor { buf: body, pos: 1 };
        c.varint();
        c.varint();
        let key_at = c.pos;
        let (key_len, kn) = read_varlong(&body[key_at..]).ok_or_else(|| bad("bad key"))?;
        let key = usize::try_from(key_len)
            .ok()
            .map(|l| &body[key_at + kn..key_at + kn + l]);
        c.bytes(true).ok_or_else(|| bad("bad key"))?;
        let (value_len, _) = read_varlong(&body[c.pos..]).ok_or_else(|| bad("bad value"))?;
        out.push((
            &rest[..n],
            KeyedRecord {
                offset: header.base_offset.saturating_add(meta.offset_delta),
                key,
                tombstone: value_len < 0,
            },
        ));
        pos += n;
    }
    Ok(out)
}

/// Calls `f` with every record of one whole stored batch (decompressed if
/// it is compressed), in order.
pub fn for_each_keyed_record(
    batch: &[u8],
    mut f: impl FnMut(KeyedRecord<'_>),
) -> Result<(), BatchError> {
    let (header, section) = records_section(batch)?;
    for (_, r) in keyed_records(&header, &section)? {
        f(r);
    }
    Ok(())
}

/// What [`filter_records`] made of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every record is kept: the batch is unchanged.
    Kept,
    /// Some records are kept: the batch rebuilt with only those.
    Rebuilt(Vec<u8>),
    /// No record is kept.
    Emptied,
}

/// The batch with only the records `keep` accepts, as the log cleaner
/// rewrites it: the header is kept (base offset, last offset delta, base
/// timestamp, producer fields and attributes), so offsets, timestamps and
/// an idempotent producer's sequence stay what they were; only the record
/// count, the length, the records section (recompressed in the batch's own
/// codec, at `level`) and the CRC change. Control batches are never
/// filtered.
pub fn filter_records(
    batch: &[u8],
    level: Option<i32>,
    mut keep: impl FnMut(KeyedRecord<'_>) -> bool,
) -> Result<Filtered, BatchError> {
    let (header, section) = records_section(batch)?;
    if header.is_control() {
        return Ok(Filtered::Kept);
    }
    let records = keyed_records(&header, &section)?;
    let total = records.len();
    let mut body = Vec::with_capacity(section.len());
    let mut kept = 0i32;
    for (bytes, r) in records {
        if keep(r) {
            body.extend_from_slice(bytes);
            kept += 1;
        }
    }
    if kept as usize == total {
        return Ok(Filtered::Kept);
    }
    if kept == 0 {
        return Ok(Filtered::Emptied);
    }
    let packed = match header.compression()? {
        Compression::None => body,
        codec => crate::compression::compress(codec, &body, level).map_err(BatchError::Codec)?,
    };
    let out = with_section(batch, &packed, |out| {
        out[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&kept.to_be_bytes());
    })?;
    Ok(Filtered::Rebuilt(out))
}

/// `batch`'s header followed by a new records section `packed`: the
/// length set, `edit` applied to the header, the CRC resealed.
fn with_section(
    batch: &[u8],
    packed: &[u8],
    edit: impl FnOnce(&mut [u8]),
) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::with_capacity(HEADER_LEN + packed.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(packed);
    let len = i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| BatchError::BadLength {
        length: i32::MAX,
        available: out.len(),
    })?;
    out[LENGTH..LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    edit(&mut out);
    reseal_crc(&mut out);
    Ok(out)
}

/// The batch's header with no records: what the log cleaner keeps of the
/// last batch of a segment it emptied, so the segment still ends at that
/// batch's last offset (Kafka keeps such empty batches too). Uncompressed.
pub fn empty_like(batch: &[u8]) -> Vec<u8> {
    let mut out = batch[..HEADER_LEN].to_vec();
    let len = (HEADER_LEN - LOG_OVERHEAD) as i32;
    out[LENGTH..LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    out[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&0i32.to_be_bytes());
    let attributes = be_i16(&out, ATTRIBUTES) & !0x07;
    out[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    reseal_crc(&mut out);
    out
}

/// Recomputes the CRC of a whole batch after its covered bytes were
/// changed (tests and tools that build unusual batches).
pub fn reseal_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the compression bits and reseals (tests: a "compressed" batch whose
/// body the log must store untouched).
pub fn set_compression_bits(batch: &mut [u8], codec: u8) {
    let attributes = (be_i16(batch, ATTRIBUTES) & !0x07) | i16::from(codec & 0x07);
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    reseal_crc(batch);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ts: i64, v: &str) -> Record {
        Record {
            timestamp: ts,
            key: None,
            value: Some(v.as_bytes().to_vec()),
            headers: vec![],
        }
    }

    fn batch3() -> Vec<u8> {
        encode_batch(&[
            rec(1000, "a"),
            Record {
                timestamp: 1005,
                key: Some(b"k".to_vec()),
                value: None,
                headers: vec![(b"h".to_vec(), Some(b"v".to_vec())), (b"n".to_vec(), None)],
            },
            rec(1002, ""),
        ])
    }

    /// One table of (mutation, expected outcome) for producer validation.
    fn check(mutate: impl FnOnce(&mut Vec<u8>), expected: Result<(), fn(&BatchError) -> bool>) {
        let mut b = batch3();
        mutate(&mut b);
        let got = check_batches(&b);
        match (got, expected) {
            (Ok(_), Ok(())) => {}
            (Err((_, e)), Err(pred)) => assert!(pred(&e), "unexpected error {e:?}"),
            (got, _) => panic!("unexpected outcome {got:?}"),
        }
    }

    #[test]
    fn producer_validation_table() {
        check(|_| {}, Ok(()));
        check(
            |b| b.truncate(40),
            Err(|e| matches!(e, BatchError::TruncatedHeader { .. })),
        );
        check(
            |b| b.truncate(b.len() - 1),
            Err(|e| matches!(e, BatchError::BadLength { .. })),
        );
        check(
            |b| b[8..12].copy_from_slice(&10i32.to_be_bytes()),
            Err(|e| matches!(e, BatchError::BadLength { .. })),
        );
        check(
            |b| b[8..12].copy_from_slice(&(-5i32).to_be_bytes()),
            Err(|e| matches!(e, BatchError::BadLength { .. })),
        );
        check(|b| b[16] = 1, Err(|e| matches!(e, BatchError::BadMagic(1))));
        check(
            |b| *b.last_mut().unwrap() ^= 1,
            Err(|e| matches!(e, BatchError::CrcMismatch { .. })),
        );
        check(
            |b| {
                b[57..61].copy_from_slice(&2i32.to_be_bytes());
                reseal_crc(b);
            },
            Err(|e| matches!(e, BatchError::BadRecordCount { .. })),
        );
        check(
            |b| {
                b[23..27].copy_from_slice(&5i32.to_be_bytes());
                reseal_crc(b);
            },
            Err(|e| matches!(e, BatchError::BadRecordCount { .. })),
        );
        check(
            |b| set_compression_bits(b, 6),
            Err(|e| matches!(e, BatchError::UnknownCompression(6))),
        );
        // A "compressed" body is opaque: stored as it came.
        check(|b| set_compression_bits(b, 4), Ok(()));
        // A record length that lies is caught for uncompressed batches.
        check(
            |b| {
                b[HEADER_LEN] = 0x7e;
                reseal_crc(b);
            },
            Err(|e| matches!(e, BatchError::BadRecord { index: 0, .. })),
        );
        // Two batches back to back are fine; garbage after them is not.
        check(|b| b.extend_from_slice(&batch3()), Ok(()));
        check(
            |b| b.extend_from_slice(&[0u8; 3]),
            Err(|e| matches!(e, BatchError::TruncatedHeader { .. })),
        );
        check(|b| b.clear(), Err(|e| matches!(e, BatchError::Empty)));
    }

    #[test]
    fn header_fields_round_trip() {
        let b = batch3();
        let (h, len) = check_batch(&b, Strictness::Producer).unwrap();
        assert_eq!(len, b.len());
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 1000);
        assert_eq!(h.max_timestamp, 1005);
        assert_eq!(h.producer_id, -1);
        assert_eq!(h.compression().unwrap(), Compression::None);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
    }

    #[test]
    fn patches_keep_the_batch_valid() {
        let mut b = batch3();
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 7);
        set_log_append_time(&mut b, 99_999);
        let (h, _) = check_batch(&b, Strictness::Producer).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.last_offset(), 44);
        assert_eq!(h.partition_leader_epoch, 7);
        assert_eq!(h.max_timestamp, 99_999);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    }

    #[test]
    fn finds_first_record_by_timestamp() {
        let mut b = batch3();
        set_base_offset(&mut b, 10);
        assert_eq!(first_record_at_or_after(&b, 0, 0), Some((10, 1000)));
        assert_eq!(first_record_at_or_after(&b, 1001, 0), Some((11, 1005)));
        assert_eq!(first_record_at_or_after(&b, 1005, 0), Some((11, 1005)));
        assert_eq!(first_record_at_or_after(&b, 1006, 0), None);
        assert_eq!(first_record_at_or_after(&b, 0, 11), Some((11, 1005)));
        assert_eq!(first_record_at_or_after(&b, 1002, 12), Some((12, 1002)));
        set_compression_bits(&mut b, 1);
        assert_eq!(first_record_at_or_after(&b, 0, 0), None);
    }

    #[test]
    fn decode_returns_what_was_encoded() {
        let records = vec![
            rec(1000, "a"),
            Record {
                timestamp: 1005,
                key: Some(b"k".to_vec()),
                value: None,
                headers: vec![(b"h".to_vec(), Some(b"v".to_vec())), (b"n".to_vec(), None)],
            },
        ];
        let mut b = encode_batch(&records);
        set_base_offset(&mut b, 7);
        let decoded = decode_records(&b).unwrap();
        assert_eq!(
            decoded,
            vec![(7, records[0].clone()), (8, records[1].clone())]
        );
        set_log_append_time(&mut b, 5);
        assert!(
            decode_records(&b)
                .unwrap()
                .iter()
                .all(|(_, r)| r.timestamp == 5)
        );
    }

    #[test]
    fn decode_never_trusts_the_record_count() {
        let mut b = batch3();
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        reseal_crc(&mut b);
        assert!(decode_records(&b).is_err());
    }

    #[test]
    fn varints_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(read_varlong(&out), Some((v, out.len())));
        }
        assert_eq!(read_varlong(&[0x80; 11]), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = check_batches(&data);
            let _ = check_batch(&data, Strictness::Stored);
            let _ = first_record_at_or_after(&data, 0, 0);
        }

        #[test]
        fn flipped_byte_in_crc_region_is_always_caught(pos in 17usize..80, bit in 0u8..8) {
            let mut b = batch3();
            let pos = pos.min(b.len() - 1);
            b[pos] ^= 1 << bit;
            proptest::prop_assert!(check_batches(&b).is_err());
        }
    }
}
