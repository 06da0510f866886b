//! Any bytes as a produce payload and as stored data: the batch validator,
//! the record decoder, the codecs and recompression return errors, never
//! panic; whatever validates also decodes; recompressing keeps the records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_log::batch;

fuzz_target!(|data: &[u8]| {
    if let Ok(batches) = batch::check_batches(data) {
        for b in batches {
            let bytes = &data[b.position..b.position + b.len];
            if b.header.compression() == Ok(batch::Compression::None) {
                let records = batch::decode_records(bytes).expect("a validated batch decodes");
                assert_eq!(records.len(), b.header.records_count as usize);
            }
        }
    }
    // Random bytes almost never carry a valid CRC-32C: reseal a copy so the
    // record-level checks behind the CRC are fuzzed too.
    if let Ok(header) = batch::BatchHeader::parse(data) {
        let len = header.total_len().unwrap_or(data.len()).min(data.len());
        if len >= batch::HEADER_LEN {
            let mut sealed = data[..len].to_vec();
            batch::reseal_crc(&mut sealed);
            if let Ok(bs) = batch::check_batches(&sealed) {
                for b in bs {
                    let bytes = &sealed[b.position..b.position + b.len];
                    if b.header.compression() == Ok(batch::Compression::None) {
                        let records = batch::decode_records(bytes).expect("a validated batch decodes");
                        assert_eq!(records.len(), b.header.records_count as usize);
                    }
                    if let Ok(records) = batch::decode_records(bytes) {
                        for codec in [batch::Compression::None, batch::Compression::Lz4] {
                            let again = batch::recompress(bytes, codec, None).expect("decodable batches recompress");
                            assert_eq!(batch::decode_records(&again).expect("recompressed decodes"), records);
                        }
                    }
                }
            }
        }
    }
    let _ = batch::check_batch(data, batch::Strictness::Stored);
    let _ = batch::decode_records(data);
    let _ = batch::first_record_at_or_after(data, 0, 0);
    for codec in [
        batch::Compression::Gzip,
        batch::Compression::Snappy,
        batch::Compression::Lz4,
        batch::Compression::Zstd,
    ] {
        let _ = weir_log::compression::decompress(codec, data, 1 << 20);
    }
});
