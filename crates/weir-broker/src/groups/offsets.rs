//! Committed offsets, kept in the internal topic `__consumer_offsets` as in
//! Kafka: each commit is a record whose key names (group, topic, partition)
//! and whose value holds the offset, leader epoch, metadata and commit
//! time; a null value (tombstone) deletes it. The records use Kafka's own
//! key (version 1) and value (version 3) layouts. On start the topic is
//! read from its beginning to rebuild the table.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use weir_log::batch::{self, Record};
use weir_log::{Log, LogError};

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch of the record, -1 when unknown.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When it was committed (ms).
    pub commit_timestamp: i64,
}

/// (group, topic, partition)
pub type Key = (String, String, i32);

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_i16(s.len().min(i16::MAX as usize) as i16);
    out.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_i16();
    if n < 0 || b.remaining() < n as usize {
        return None;
    }
    String::from_utf8(b.split_to(n as usize).to_vec()).ok()
}

/// Kafka's offset-commit key, version 1.
pub(crate) fn encode_key(k: &Key) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i16(1);
    put_str(&mut out, &k.0);
    put_str(&mut out, &k.1);
    out.put_i32(k.2);
    out.to_vec()
}

/// Kafka's offset-commit value, version 3.
pub(crate) fn encode_value(c: &Committed) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i16(3);
    out.put_i64(c.offset);
    out.put_i32(c.leader_epoch);
    put_str(&mut out, &c.metadata);
    out.put_i64(c.commit_timestamp);
    out.to_vec()
}

fn decode_key(mut b: Bytes) -> Option<Key> {
    if b.remaining() < 2 {
        return None;
    }
    match b.get_i16() {
        0 | 1 => {
            let group = get_str(&mut b)?;
            let topic = get_str(&mut b)?;
            (b.remaining() >= 4).then(|| (group, topic, b.get_i32()))
        }
        _ => None, // group metadata and other record kinds
    }
}

fn decode_value(mut b: Bytes) -> Option<Committed> {
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16();
    if b.remaining() < 8 {
        return None;
    }
    let offset = b.get_i64();
    let leader_epoch = if version >= 3 {
        if b.remaining() < 4 {
            return None;
        }
        b.get_i32()
    } else {
        -1
    };
    let metadata = get_str(&mut b)?;
    let commit_timestamp = if b.remaining() >= 8 { b.get_i64() } else { -1 };
    Some(Committed {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

/// The table of committed offsets and the log behind it.
#[derive(Debug)]
pub struct OffsetStore {
    log: Arc<Log>,
    table: Mutex<BTreeMap<Key, Committed>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl OffsetStore {
    /// Replays the log into the table.
    pub fn load(log: Arc<Log>) -> Result<Self, LogError> {
        let mut table = BTreeMap::new();
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        while offset < end {
            let r = log.read(offset, 1 << 20)?;
            if r.records.is_empty() {
                break;
            }
            let mut buf = &r.records[..];
            while !buf.is_empty() {
                let Ok((_, len)) = batch::check_batch(buf, batch::Strictness::Stored) else {
                    break;
                };
                if let Ok(records) = batch::decode_records(&buf[..len]) {
                    for (_, rec) in records {
                        let Some(key) = rec.key.map(Bytes::from).and_then(decode_key) else {
                            continue;
                        };
                        match rec.value {
                            None => {
                                table.remove(&key);
                            }
                            Some(v) => {
                                if let Some(c) = decode_value(Bytes::from(v)) {
                                    table.insert(key, c);
                                }
                            }
                        }
                    }
                }
                buf = &buf[len..];
            }
            offset = r.next_offset;
        }
        Ok(Self {
            log,
            table: Mutex::new(table),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Committed>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes commits (or deletions, with `None`) durably, then applies them.
    pub fn write(&self, entries: Vec<(Key, Option<Committed>)>) -> Result<(), LogError> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let records: Vec<Record> = entries
            .iter()
            .map(|(k, v)| Record {
                timestamp: now,
                key: Some(encode_key(k)),
                value: v.as_ref().map(encode_value),
                headers: vec![],
            })
            .collect();
        let mut data = batch::encode_batch(&records);
        let info = self.log.append(&mut data, now)?;
        self.log.flush_until(info.last_offset + 1)?;
        let mut table = self.table();
        for (k, v) in entries {
            match v {
                Some(c) => {
                    table.insert(k, c);
                }
                None => {
                    table.remove(&k);
                }
            }
        }
        Ok(())
    }

    /// A committed offset.
    pub fn get(&self, key: &Key) -> Option<Committed> {
        self.table().get(key).cloned()
    }

    /// Every committed offset of a group.
    pub fn of_group(&self, group: &str) -> Vec<(String, i32, Committed)> {
        self.table()
            .iter()
            .filter(|(k, _)| k.0 == group)
            .map(|(k, c)| (k.1.clone(), k.2, c.clone()))
            .collect()
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        let mut g: Vec<String> = self.table().keys().map(|k| k.0.clone()).collect();
        g.dedup();
        g
    }

    /// Keys matching a predicate (for deletions).
    pub fn keys_where(&self, f: impl Fn(&Key, &Committed) -> bool) -> Vec<Key> {
        self.table()
            .iter()
            .filter(|(k, c)| f(k, c))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_survive_a_reload_and_tombstones_delete() {
        let tmp = tempfile::tempdir().unwrap();
        let open = || {
            Arc::new(
                Log::open_dir(
                    tmp.path().join("__consumer_offsets-0"),
                    weir_log::LogConfig::default(),
                    0,
                )
                .unwrap(),
            )
        };
        let store = OffsetStore::load(open()).unwrap();
        let c = |o| Committed {
            offset: o,
            leader_epoch: 0,
            metadata: "meta".to_owned(),
            commit_timestamp: 5,
        };
        let k = |g: &str, p| (g.to_owned(), "t".to_owned(), p);
        store
            .write(vec![(k("g", 0), Some(c(10))), (k("g", 1), Some(c(20)))])
            .unwrap();
        store
            .write(vec![(k("g", 0), Some(c(11))), (k("h", 0), Some(c(1)))])
            .unwrap();
        store.write(vec![(k("h", 0), None)]).unwrap();
        drop(store);
        let store = OffsetStore::load(open()).unwrap();
        assert_eq!(store.get(&k("g", 0)), Some(c(11)));
        assert_eq!(store.get(&k("g", 1)), Some(c(20)));
        assert_eq!(store.get(&k("h", 0)), None);
        assert_eq!(store.groups(), vec!["g".to_owned()]);
        assert_eq!(store.of_group("g").len(), 2);
    }

    #[test]
    fn records_use_kafkas_layouts() {
        let key = encode_key(&("g".to_owned(), "t".to_owned(), 3));
        assert_eq!(key, vec![0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]);
        let v = encode_value(&Committed {
            offset: 7,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 9,
        });
        assert_eq!(v.len(), 2 + 8 + 4 + 2 + 8);
        assert_eq!(decode_value(Bytes::from(v)).unwrap().offset, 7);
        assert_eq!(
            decode_key(Bytes::from_static(&[0, 2, 0, 1, b'g'])),
            None,
            "group metadata key"
        );
        assert_eq!(
            decode_key(Bytes::from_static(&[0, 1, 0, 9])),
            None,
            "truncated"
        );
    }
}
