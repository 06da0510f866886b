//! Kafka's record-batch codecs (attributes bits 0-2): gzip, snappy, lz4,
//! zstd. The log stores batches as producers sent them; these are needed
//! only where the broker must look inside a compressed batch (per-record
//! validation, the exact max-timestamp record, compaction) or write one
//! (a topic whose `compression.type` names a codec).
//!
//! Formats, as Kafka's clients write them:
//! * gzip: one gzip member (RFC 1952).
//! * snappy: Java clients use the xerial framing (magic `\x82SNAPPY\0`, two
//!   4-byte version fields, then blocks of a 4-byte big-endian length and a
//!   raw snappy block); librdkafka writes one raw snappy block. Both are
//!   read; the xerial framing is written, which every client reads.
//! * lz4: the LZ4 frame format.
//! * zstd: one zstd frame.
//!
//! Decompression is bounded: output past `max_output` is an error, so a
//! small hostile batch cannot make the broker allocate gigabytes.

use std::io::{Read, Write};

use thiserror::Error;

use crate::batch::Compression;

/// Why a codec failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The compressed bytes are not valid for the codec.
    #[error("{codec:?} data is corrupt: {reason}")]
    Corrupt {
        /// The codec.
        codec: Compression,
        /// What the decoder said.
        reason: String,
    },
    /// Decompressing would exceed the limit.
    #[error("{codec:?} data decompresses to more than {limit} bytes")]
    TooLarge {
        /// The codec.
        codec: Compression,
        /// The limit.
        limit: usize,
    },
    /// A compression level outside the codec's range.
    #[error("{codec:?} level {level} is out of range")]
    BadLevel {
        /// The codec.
        codec: Compression,
        /// The level.
        level: i32,
    },
}

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// The xerial header: magic, version 1, minimum compatible version 1.
const XERIAL_HEADER_LEN: usize = 16;
/// Block size of the xerial framing as Java clients write it.
const XERIAL_BLOCK: usize = 32 * 1024;

fn corrupt(codec: Compression, e: impl std::fmt::Display) -> CodecError {
    CodecError::Corrupt {
        codec,
        reason: e.to_string(),
    }
}

/// Reads all of `reader` into a vector, failing past `limit` bytes.
fn read_bounded(
    codec: Compression,
    reader: impl Read,
    limit: usize,
    size_hint: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(size_hint.min(limit));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(codec, e))?;
    if out.len() > limit {
        return Err(CodecError::TooLarge { codec, limit });
    }
    Ok(out)
}

/// Decompresses the records section of a batch.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    max_output: usize,
) -> Result<Vec<u8>, CodecError> {
    let hint = input.len().saturating_mul(4);
    match codec {
        Compression::None => {
            if input.len() > max_output {
                return Err(CodecError::TooLarge {
                    codec,
                    limit: max_output,
                });
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => {
            read_bounded(codec, flate2::read::GzDecoder::new(input), max_output, hint)
        }
        Compression::Lz4 => read_bounded(
            codec,
            lz4_flex::frame::FrameDecoder::new(input),
            max_output,
            hint,
        ),
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(codec, e))?;
            read_bounded(codec, decoder, max_output, hint)
        }
        Compression::Snappy => snappy_decompress(input, max_output),
    }
}

fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CodecError> {
    let codec = Compression::Snappy;
    let len = snap::raw::decompress_len(block).map_err(|e| corrupt(codec, e))?;
    if out.len().saturating_add(len) > limit {
        return Err(CodecError::TooLarge { codec, limit });
    }
    let start = out.len();
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| corrupt(codec, e))?;
    out.truncate(start + n);
    Ok(())
}

fn snappy_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let codec = Compression::Snappy;
    let mut out = Vec::new();
    if !input.starts_with(XERIAL_MAGIC) {
        snappy_block(input, &mut out, limit)?;
        return Ok(out);
    }
    let mut rest = input
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| corrupt(codec, "truncated xerial header"))?;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt(codec, "truncated xerial block length"))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail
            .get(..len)
            .ok_or_else(|| corrupt(codec, "xerial block runs past the data"))?;
        snappy_block(block, &mut out, limit)?;
        rest = &tail[len..];
    }
    Ok(out)
}

/// Compresses a records section. `level` is the codec's own level
/// (`compression.gzip.level` 1-9, `compression.lz4.level` 1-17,
/// `compression.zstd.level` -131072..22; `None` or gzip's -1: the default).
/// lz4_flex has one level; the lz4 level is accepted and checked only.
pub fn compress(
    codec: Compression,
    input: &[u8],
    level: Option<i32>,
) -> Result<Vec<u8>, CodecError> {
    let io = |e: std::io::Error| corrupt(codec, e);
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => {
            let level = match level {
                None | Some(-1) => flate2::Compression::default(),
                Some(l @ 1..=9) => flate2::Compression::new(l as u32),
                Some(l) => return Err(CodecError::BadLevel { codec, level: l }),
            };
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), level);
            enc.write_all(input).map_err(io)?;
            enc.finish().map_err(io)
        }
        Compression::Lz4 => {
            if let Some(l) = level
                && !(1..=17).contains(&l)
            {
                return Err(CodecError::BadLevel { codec, level: l });
            }
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(input).map_err(io)?;
            enc.finish().map_err(|e| corrupt(codec, e))
        }
        Compression::Zstd => {
            let level = level.unwrap_or(3);
            if !(-131_072..=22).contains(&level) {
                return Err(CodecError::BadLevel { codec, level });
            }
            zstd::bulk::compress(input, level).map_err(io)
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + input.len() / 2 + 64);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(&1u32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for chunk in input.chunks(XERIAL_BLOCK) {
                let block = enc.compress_vec(chunk).map_err(|e| corrupt(codec, e))?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect()
    }

    #[test]
    fn every_codec_round_trips() {
        for codec in ALL {
            for n in [0, 1, 100, 32 * 1024, 100_000] {
                let data = sample(n);
                let packed = compress(codec, &data, None).unwrap();
                assert_eq!(
                    decompress(codec, &packed, n).unwrap(),
                    data,
                    "{codec:?} {n}"
                );
            }
        }
    }

    #[test]
    fn raw_snappy_as_librdkafka_writes_it_is_read() {
        let data = sample(70_000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, 1 << 20).unwrap(),
            data
        );
    }

    #[test]
    fn output_is_bounded() {
        let zeros = vec![0u8; 1 << 20];
        for codec in ALL {
            let packed = compress(codec, &zeros, None).unwrap();
            assert_eq!(
                decompress(codec, &packed, 1000),
                Err(CodecError::TooLarge { codec, limit: 1000 }),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut rng = 0x1234_5678_u64;
        for codec in ALL {
            let good = compress(codec, &sample(5000), None).unwrap();
            for round in 0..300 {
                let mut bad = good.clone();
                // Flip a few bytes, or cut the data short.
                for _ in 0..3 {
                    rng = rng
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    if !bad.is_empty() {
                        let at = (rng >> 33) as usize % bad.len();
                        bad[at] ^= (rng >> 8) as u8 | 1;
                    }
                }
                if round % 3 == 0 {
                    bad.truncate(bad.len() / 2);
                }
                let _ = decompress(codec, &bad, 1 << 20);
            }
        }
    }

    #[test]
    fn levels_are_checked() {
        assert!(compress(Compression::Gzip, b"x", Some(10)).is_err());
        assert!(compress(Compression::Zstd, b"x", Some(23)).is_err());
        assert!(compress(Compression::Lz4, b"x", Some(0)).is_err());
        assert!(compress(Compression::Gzip, b"x", Some(1)).is_ok());
        assert!(compress(Compression::Zstd, b"x", Some(-5)).is_ok());
    }
}
