//! `weir log dump` and `weir log check`: read-only views of a partition
//! directory for operators.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use weir_log::batch::{BatchHeader, HEADER_LEN};
use weir_log::{Clock, Log, LogConfig, SystemClock};

/// Prints each segment (base offset, size, batch count, offsets) and, with
/// `batches`, every batch header. Never modifies the directory.
pub(crate) fn dump(dir: &Path, batches: bool, out: &mut impl Write) -> Result<()> {
    let mut logs: Vec<_> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    if logs.is_empty() {
        bail!("no .log segments in {}", dir.display());
    }
    logs.sort();
    for path in logs {
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut pos = 0usize;
        let (mut count, mut records, mut first, mut last) = (0u64, 0u64, None, None);
        let mut problem = None;
        while pos < data.len() {
            let header = match BatchHeader::parse(&data[pos..]) {
                Ok(h) => h,
                Err(e) => {
                    problem = Some(format!("at byte {pos}: {e}"));
                    break;
                }
            };
            let Some(len) = header.total_len().filter(|l| pos + l <= data.len()) else {
                problem = Some(format!(
                    "at byte {pos}: torn batch of declared length {}",
                    header.batch_length
                ));
                break;
            };
            if let Err(e) = weir_log::batch::check_batch(
                &data[pos..pos + len],
                weir_log::batch::Strictness::Stored,
            ) {
                problem = Some(format!("at byte {pos}: {e}"));
                break;
            }
            if batches {
                writeln!(
                    out,
                    "  offset {}..={} position {pos} size {len} count {} epoch {} max_ts {} compression {:?} producer {}/{} seq {}",
                    header.base_offset,
                    header.last_offset(),
                    header.records_count,
                    header.partition_leader_epoch,
                    header.max_timestamp,
                    header.compression().ok(),
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence,
                )?;
            }
            first.get_or_insert(header.base_offset);
            last = Some(header.last_offset());
            count += 1;
            records += header.records_count.max(0) as u64;
            pos += len.max(HEADER_LEN);
        }
        writeln!(
            out,
            "{}: {} bytes, {count} batches, {records} records, offsets {}",
            path.display(),
            data.len(),
            match (first, last) {
                (Some(f), Some(l)) => format!("{f}..={l}"),
                _ => "none".to_owned(),
            }
        )?;
        if let Some(p) = problem {
            writeln!(out, "  damaged {p}")?;
        }
    }
    Ok(())
}

/// Opens the log (running recovery if needed), prints its offsets and
/// closes it cleanly.
pub(crate) fn check(dir: &Path, out: &mut impl Write) -> Result<()> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let log = Log::open_dir(dir, LogConfig::default(), SystemClock.now_ms())?;
    writeln!(
        out,
        "log start offset {}, log end offset {}, {} bytes in {} segments",
        log.log_start_offset(),
        log.log_end_offset(),
        log.size_bytes(),
        log.segments().len()
    )?;
    log.close()?;
    Ok(())
}
