//! Rows as writers give them (a table, a time, tags, fields) and the body
//! of a write-ahead log frame: a batch of rows plus the writer's source
//! positions (a pipeline's consumed offsets, stored with the rows they
//! produced so delivery is exactly once).
//!
//! The encoding, big-endian: `version u8 (1)`, `rows u32`, each row
//! `table str | time i64 | tags u16 (name str, value str)* | fields u16
//! (name str, kind u8, value)*`, then `positions u16 (key str, value
//! i64)*`; a `str` is `u32 length | UTF-8`. Decoding checks every length
//! against what is left and answers garbage with an error, never a panic.

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A float.
    Float(f64),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
}

/// One row of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The table (measurement).
    pub table: String,
    /// Nanoseconds since the Unix epoch, UTC.
    pub time: i64,
    /// Tag names and values.
    pub tags: Vec<(String, String)>,
    /// Field names and values.
    pub fields: Vec<(String, Value)>,
}

/// What one frame holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    /// The rows.
    pub rows: Vec<Row>,
    /// The writer's positions after these rows (key, value).
    pub positions: Vec<(String, i64)>,
}

/// Why a frame body does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable write-ahead log frame: {0}")]
pub struct DecodeError(pub String);

const VERSION: u8 = 1;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Batch {
    /// The frame body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * self.rows.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&(self.rows.len() as u32).to_be_bytes());
        for r in &self.rows {
            put_str(&mut out, &r.table);
            out.extend_from_slice(&r.time.to_be_bytes());
            out.extend_from_slice(&(r.tags.len() as u16).to_be_bytes());
            for (k, v) in &r.tags {
                put_str(&mut out, k);
                put_str(&mut out, v);
            }
            out.extend_from_slice(&(r.fields.len() as u16).to_be_bytes());
            for (k, v) in &r.fields {
                put_str(&mut out, k);
                match v {
                    Value::Float(f) => {
                        out.push(0);
                        out.extend_from_slice(&f.to_bits().to_be_bytes());
                    }
                    Value::Int(i) => {
                        out.push(1);
                        out.extend_from_slice(&i.to_be_bytes());
                    }
                    Value::UInt(u) => {
                        out.push(2);
                        out.extend_from_slice(&u.to_be_bytes());
                    }
                    Value::Str(s) => {
                        out.push(3);
                        put_str(&mut out, s);
                    }
                    Value::Bool(b) => {
                        out.push(4);
                        out.push(u8::from(*b));
                    }
                }
            }
        }
        out.extend_from_slice(&(self.positions.len() as u16).to_be_bytes());
        for (k, v) in &self.positions {
            put_str(&mut out, k);
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    /// Reads a frame body back.
    pub fn decode(mut buf: &[u8]) -> Result<Self, DecodeError> {
        let b = &mut buf;
        let version = take::<1>(b)?[0];
        if version != VERSION {
            return Err(DecodeError(format!("version {version}")));
        }
        let n = u32::from_be_bytes(take::<4>(b)?) as usize;
        // Each row takes at least 16 bytes: a count cannot promise more.
        if n > b.len() / 16 {
            return Err(DecodeError(format!("{n} rows in {} bytes", b.len())));
        }
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let table = take_str(b)?;
            let time = i64::from_be_bytes(take::<8>(b)?);
            let nt = u16::from_be_bytes(take::<2>(b)?);
            let mut tags = Vec::with_capacity(usize::from(nt).min(b.len() / 8));
            for _ in 0..nt {
                tags.push((take_str(b)?, take_str(b)?));
            }
            let nf = u16::from_be_bytes(take::<2>(b)?);
            let mut fields = Vec::with_capacity(usize::from(nf).min(b.len() / 6));
            for _ in 0..nf {
                let name = take_str(b)?;
                let value = match take::<1>(b)?[0] {
                    0 => Value::Float(f64::from_bits(u64::from_be_bytes(take::<8>(b)?))),
                    1 => Value::Int(i64::from_be_bytes(take::<8>(b)?)),
                    2 => Value::UInt(u64::from_be_bytes(take::<8>(b)?)),
                    3 => Value::Str(take_str(b)?),
                    4 => Value::Bool(take::<1>(b)?[0] != 0),
                    k => return Err(DecodeError(format!("field kind {k}"))),
                };
                fields.push((name, value));
            }
            rows.push(Row {
                table,
                time,
                tags,
                fields,
            });
        }
        let np = u16::from_be_bytes(take::<2>(b)?);
        let mut positions = Vec::with_capacity(usize::from(np).min(b.len() / 12));
        for _ in 0..np {
            positions.push((take_str(b)?, i64::from_be_bytes(take::<8>(b)?)));
        }
        if !b.is_empty() {
            return Err(DecodeError(format!("{} bytes after the batch", b.len())));
        }
        Ok(Batch { rows, positions })
    }
}

fn take<const N: usize>(b: &mut &[u8]) -> Result<[u8; N], DecodeError> {
    if b.len() < N {
        return Err(DecodeError("ends early".to_owned()));
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    *b = &b[N..];
    Ok(out)
}

fn take_str(b: &mut &[u8]) -> Result<String, DecodeError> {
    let len = u32::from_be_bytes(take::<4>(b)?) as usize;
    if b.len() < len {
        return Err(DecodeError(format!(
            "a string of {len} bytes in {}",
            b.len()
        )));
    }
    let s = std::str::from_utf8(&b[..len])
        .map_err(|e| DecodeError(e.to_string()))?
        .to_owned();
    *b = &b[len..];
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<f64>()
                .prop_filter("NaN != NaN", |f| !f.is_nan())
                .prop_map(Value::Float),
            any::<i64>().prop_map(Value::Int),
            any::<u64>().prop_map(Value::UInt),
            ".{0,12}".prop_map(Value::Str),
            any::<bool>().prop_map(Value::Bool),
        ]
    }

    fn batch() -> impl Strategy<Value = Batch> {
        let row = (
            "[a-z]{1,8}",
            any::<i64>(),
            proptest::collection::vec(("[a-z]{1,6}", ".{0,8}"), 0..4),
            proptest::collection::vec(("[a-z]{1,6}", value()), 0..4),
        )
            .prop_map(|(table, time, tags, fields)| Row {
                table,
                time,
                tags,
                fields,
            });
        (
            proptest::collection::vec(row, 0..20),
            proptest::collection::vec((".{0,10}", any::<i64>()), 0..3),
        )
            .prop_map(|(rows, positions)| Batch { rows, positions })
    }

    proptest! {
        #[test]
        fn batches_round_trip(b in batch()) {
            prop_assert_eq!(Batch::decode(&b.encode()).unwrap(), b);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(b in batch(), cut in any::<usize>(), flip in any::<(usize, u8)>()) {
            let bytes = b.encode();
            let cut = cut % (bytes.len() + 1);
            if cut < bytes.len() {
                prop_assert!(Batch::decode(&bytes[..cut]).is_err());
            }
            let mut d = bytes.clone();
            let at = flip.0 % d.len();
            d[at] ^= flip.1 | 1;
            let _ = Batch::decode(&d);
        }
    }
}
