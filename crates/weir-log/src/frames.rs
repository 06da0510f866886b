//! Checksummed frames back to back in one file, the layout of every
//! append-only record file outside partition logs (the metadata quorum's
//! log, the store's write-ahead log): `len u32 | crc32c u32 | body`,
//! big-endian, `len` counting the checksum and the body, the checksum over
//! the body. A reader keeps the whole, valid frames from the start and
//! cuts the rest (what a crash mid-append leaves); and small files are
//! replaced atomically through [`write_atomic`].

use std::ops::Range;
use std::path::Path;

use crate::storage::Storage;

/// Bytes before a frame's body.
pub const HEAD: usize = 8;

/// One frame holding `body`.
pub fn encode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD + body.len());
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The whole, valid frames at the start of `data` whose bodies are at
/// least `min_body` and at most `max_body` bytes: each frame's position
/// and its body's range in `data`, and the length of that valid prefix.
pub fn scan(data: &[u8], min_body: usize, max_body: usize) -> (Vec<(u64, Range<usize>)>, u64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while data.len() - pos >= HEAD {
        let mut word = [0u8; 4];
        word.copy_from_slice(&data[pos..pos + 4]);
        let len = u32::from_be_bytes(word) as usize;
        let Some(body_len) = len.checked_sub(4) else {
            break;
        };
        if !(min_body..=max_body).contains(&body_len) || data.len() - pos - 4 < len {
            break;
        }
        word.copy_from_slice(&data[pos + 4..pos + 8]);
        let body = pos + HEAD..pos + 4 + len;
        if crc32c::crc32c(&data[body.clone()]) != u32::from_be_bytes(word) {
            break;
        }
        out.push((pos as u64, body));
        pos += 4 + len;
    }
    (out, pos as u64)
}

/// Replaces `dir/name` with `data` atomically: a temporary file written and
/// synced, renamed over it, the directory synced.
pub fn write_atomic(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    data: &[u8],
) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let f = storage.open(&tmp, true)?;
    f.set_len(0)?;
    f.write_all_at(data, 0)?;
    f.sync_data()?;
    storage.rename(&tmp, &dir.join(name))?;
    storage.sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_and_a_damaged_tail_is_cut() {
        let mut data = Vec::new();
        for body in [&b"one"[..], b"", b"three"] {
            data.extend(encode(body));
        }
        let whole = data.len() as u64;
        let (frames, valid) = scan(&data, 0, 100);
        assert_eq!(valid, whole);
        let bodies: Vec<&[u8]> = frames.iter().map(|(_, r)| &data[r.clone()]).collect();
        assert_eq!(bodies, [&b"one"[..], b"", b"three"]);
        // Every cut and every flipped byte of the last frame loses that
        // frame only.
        let last = frames[2].0 as usize;
        for cut in last..data.len() {
            let (f, v) = scan(&data[..cut], 0, 100);
            assert_eq!((f.len(), v), (2, last as u64));
        }
        for at in last..data.len() {
            let mut d = data.clone();
            d[at] ^= 0x40;
            let (f, v) = scan(&d, 0, 100);
            assert_eq!((f.len(), v), (2, last as u64), "flip at {at}");
        }
        // A body over the limit ends the valid prefix.
        assert_eq!(scan(&data, 0, 4).0.len(), 2);
        assert_eq!(scan(&data, 1, 100).0.len(), 1);
    }
}
