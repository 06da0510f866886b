//! Committed offsets, kept in the internal topic `__consumer_offsets` as in
//! Kafka: each commit is a record whose key names (group, topic, partition)
//! and whose value holds the offset, leader epoch, metadata and commit
//! time; a null value (tombstone) deletes it. The records use Kafka's own
//! key (version 1) and value (version 3) layouts. Group metadata (the
//! generation, protocol, leader and members with their assignments) is kept
//! the same way under Kafka's group key (version 2) and group value
//! (version 3) layouts. On start the topic is read from its beginning to
//! rebuild both.
//!
//! Where `__consumer_offsets` is replicated, a commit is answered once
//! every in-sync replica has it (acks=-1), within `offsets.commit.timeout.ms`
//! (5 s, Kafka's default); the table takes a commit when it is appended, in
//! log order, so a commit that timed out may still be read back here
//! (the client got an error and commits again).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use weir_log::batch::{self, Record};
use weir_log::{Log, LogError};

use crate::topics::{Partition, Registry, Unreplicated};

/// Kafka's `offsets.commit.timeout.ms` default: how long a commit waits
/// for the in-sync replicas.
pub const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Not written here.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Written here, not (yet) on every in-sync replica.
    #[error(transparent)]
    Unreplicated(#[from] Unreplicated),
}

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

/// A group's persisted metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Protocol type.
    pub protocol_type: String,
    /// Generation.
    pub generation: i32,
    /// Chosen assignor.
    pub protocol_name: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// When this was written (ms).
    pub timestamp: i64,
    /// Members.
    pub members: Vec<MemberRecord>,
}

/// One member of a [`GroupRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Subscription for the chosen protocol.
    pub subscription: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}

fn put_nullable_str(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.put_i16(-1),
    }
}

fn get_nullable_str(b: &mut Bytes) -> Option<Option<String>> {
    if b.remaining() >= 2 && i16::from_be_bytes([b[0], b[1]]) == -1 {
        b.advance(2);
        return Some(None);
    }
    get_str(b).map(Some)
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

fn get_bytes(b: &mut Bytes) -> Option<Bytes> {
    if b.remaining() < 4 {
        return None;
    }
    let n = b.get_i32();
    if n < 0 {
        return Some(Bytes::new());
    }
    (b.remaining() >= n as usize).then(|| b.split_to(n as usize))
}

/// Kafka's group metadata key, version 2.
pub(crate) fn encode_group_key(group: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i16(2);
    put_str(&mut out, group);
    out.to_vec()
}

/// Kafka's group metadata value, version 3.
pub(crate) fn encode_group_value(g: &GroupRecord) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i16(3);
    put_str(&mut out, &g.protocol_type);
    out.put_i32(g.generation);
    put_nullable_str(&mut out, g.protocol_name.as_deref());
    put_nullable_str(&mut out, g.leader.as_deref());
    out.put_i64(g.timestamp);
    out.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_str(&mut out, &m.member_id);
        put_nullable_str(&mut out, m.instance_id.as_deref());
        put_str(&mut out, &m.client_id);
        put_str(&mut out, &m.client_host);
        out.put_i32(m.rebalance_timeout_ms);
        out.put_i32(m.session_timeout_ms);
        put_bytes(&mut out, &m.subscription);
        put_bytes(&mut out, &m.assignment);
    }
    out.to_vec()
}

fn decode_group_value(mut b: Bytes) -> Option<GroupRecord> {
    if b.remaining() < 2 || b.get_i16() != 3 {
        return None;
    }
    let protocol_type = get_str(&mut b)?;
    if b.remaining() < 4 {
        return None;
    }
    let generation = b.get_i32();
    let protocol_name = get_nullable_str(&mut b)?;
    let leader = get_nullable_str(&mut b)?;
    if b.remaining() < 12 {
        return None;
    }
    let timestamp = b.get_i64();
    let n = b.get_i32();
    let mut members = Vec::new();
    for _ in 0..n.max(0) {
        let member_id = get_str(&mut b)?;
        let instance_id = get_nullable_str(&mut b)?;
        let client_id = get_str(&mut b)?;
        let client_host = get_str(&mut b)?;
        if b.remaining() < 8 {
            return None;
        }
        let rebalance_timeout_ms = b.get_i32();
        let session_timeout_ms = b.get_i32();
        let subscription = get_bytes(&mut b)?;
        let assignment = get_bytes(&mut b)?;
        members.push(MemberRecord {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some(GroupRecord {
        protocol_type,
        generation,
        protocol_name,
        leader,
        timestamp,
        members,
    })
}

fn decode_group_key(mut b: Bytes) -> Option<String> {
    (b.remaining() >= 2 && b.get_i16() == 2)
        .then(|| get_str(&mut b))
        .flatten()
}

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
    /// Held while appending and applying, so the table and the log
    /// change in the same order.
    write_lock: Mutex<()>,
    /// Group metadata found at load (taken once by the coordinator).
    loaded_groups: Mutex<BTreeMap<String, GroupRecord>>,
    /// The partition the log belongs to and the registry whose followers
    /// are woken by appends: commits wait for its in-sync replicas.
    replicated: Option<(Arc<Partition>, Arc<Registry>)>,
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
        let mut groups = BTreeMap::new();
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
                        let Some(raw_key) = rec.key.map(Bytes::from) else {
                            continue;
                        };
                        if let Some(group) = decode_group_key(raw_key.clone()) {
                            match rec.value.map(Bytes::from).and_then(decode_group_value) {
                                Some(g) => {
                                    groups.insert(group, g);
                                }
                                None => {
                                    groups.remove(&group);
                                }
                            }
                            continue;
                        }
                        let Some(key) = decode_key(raw_key) else {
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
            write_lock: Mutex::new(()),
            loaded_groups: Mutex::new(groups),
            replicated: None,
        })
    }

    /// Commits wait for `part`'s in-sync replicas; appends wake the
    /// followers fetching through `registry`.
    pub fn replicated_by(mut self, part: Arc<Partition>, registry: Arc<Registry>) -> Self {
        self.replicated = Some((part, registry));
        self
    }

    /// The group metadata read at load, once.
    pub fn take_loaded_groups(&self) -> BTreeMap<String, GroupRecord> {
        std::mem::take(&mut *self.loaded_groups.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records a group's metadata (`None`: the group is deleted). Written
    /// to the OS, not synced: losing it costs a rebalance, not data.
    pub fn write_group(&self, group: &str, record: Option<&GroupRecord>) -> Result<(), LogError> {
        let now = now_ms();
        let mut data = batch::encode_batch(&[Record {
            timestamp: now,
            key: Some(encode_group_key(group)),
            value: record.map(encode_group_value),
            headers: vec![],
        }]);
        let _w = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.log.append(&mut data, now)?;
        if let Some((part, registry)) = &self.replicated {
            part.replica.leader_appended(self.log.log_end_offset());
            registry.notify_appended();
        }
        Ok(())
    }

    /// The log behind the table (compacted by the broker's log cleaner).
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Committed>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes commits (or deletions, with `None`) durably, on every
    /// in-sync replica where the topic is replicated; the table takes them
    /// as they are appended.
    pub fn write(&self, entries: Vec<(Key, Option<Committed>)>) -> Result<(), CommitError> {
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
        let info = {
            let _w = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
            let info = self.log.append(&mut data, now)?;
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
            info
        };
        if let Some((_, registry)) = &self.replicated {
            registry.notify_appended();
        }
        // Concurrent commits share this fsync (the log's group commit).
        self.log.flush_until(info.last_offset + 1)?;
        if let Some((part, _)) = &self.replicated {
            part.wait_replicated(info.last_offset + 1, COMMIT_TIMEOUT)?;
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
