//! The Raft group that orders the metadata records: openraft's storage
//! and network traits over [`MetaStore`] and TCP. The only module that
//! knows openraft.
//!
//! * Log: each Raft entry is stored whole (JSON) as a [`MetaStore`] entry;
//!   appends are fsynced before openraft is told they are flushed.
//! * State machine: applies each committed entry's records to the
//!   [`Image`] and publishes it on a `watch` channel; a snapshot is the
//!   image with the last applied log id and membership, saved atomically
//!   (`snapshot` file) and restored at start.
//! * Network: one TCP connection per peer, frames of `u32` length + JSON,
//!   one request and its answer at a time; the same listener also takes
//!   controller calls forwarded by other nodes (see `node.rs`).

// openraft's traits fix the error type (`StorageError`, large).
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::image::Image;
use crate::record::MetaRecord;
use crate::store::{self, MetaStore};

/// Node ids in the Raft group are broker ids.
pub type NodeId = u64;

/// What one Raft entry carries: the records of one controller decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(pub Vec<MetaRecord>);

/// What applying an entry answers: its log index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied(pub u64);

openraft::declare_raft_types!(
    /// Weir's Raft types.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The openraft handle.
pub type Raft = openraft::Raft<TypeConfig>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

fn write_err(e: store::StoreError) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::write_logs(io_err(e)),
    }
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::read_logs(io_err(e)),
    }
}

/// The Raft log over a [`MetaStore`] (shared with the state machine,
/// which keeps its snapshot in the same directory).
#[derive(Debug, Clone)]
pub struct LogStore {
    store: Arc<Mutex<MetaStore>>,
}

impl LogStore {
    /// The log of `store`.
    pub fn new(store: Arc<Mutex<MetaStore>>) -> Self {
        Self { store }
    }
}

fn decode_entry(payload: &[u8]) -> Result<Entry<TypeConfig>, StorageError<NodeId>> {
    serde_json::from_slice(payload).map_err(read_err)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        use std::ops::Bound;
        let from = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        let entries = lock(&self.store).read(from, to).map_err(read_err)?;
        entries.iter().map(|e| decode_entry(&e.payload)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let s = lock(&self.store);
        let purged: Option<LogId<NodeId>> = match s.read_file("purged-log-id").map_err(read_err)? {
            Some(d) => serde_json::from_slice(&d).map_err(read_err)?,
            None => None,
        };
        let last = match s.last() {
            Some((index, _)) if Some(index) != purged.map(|p| p.index) => s
                .read(index, index + 1)
                .map_err(read_err)?
                .first()
                .map(|e| decode_entry(&e.payload))
                .transpose()?
                .map(|e| e.log_id),
            _ => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let data = serde_json::to_vec(vote).map_err(read_err)?;
        lock(&self.store)
            .save_vote(&data)
            .map_err(|e| StorageError::IO {
                source: StorageIOError::write_vote(io_err(e)),
            })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        match lock(&self.store).vote().map_err(read_err)? {
            Some(d) => serde_json::from_slice(&d).map(Some).map_err(read_err),
            None => Ok(None),
        }
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = serde_json::to_vec(&committed).map_err(read_err)?;
        lock(&self.store)
            .save_file("committed", &data)
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        match lock(&self.store).read_file("committed").map_err(read_err)? {
            Some(d) => serde_json::from_slice(&d).map_err(read_err),
            None => Ok(None),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut stored = Vec::new();
        for e in entries {
            stored.push(store::Entry {
                index: e.log_id.index,
                term: e.log_id.leader_id.term,
                payload: serde_json::to_vec(&e).map_err(read_err)?,
            });
        }
        // MetaStore::append returns once the entries are fsynced.
        let result = lock(&self.store).append(&stored);
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let message = e.to_string();
                callback.log_io_completed(Err(std::io::Error::other(message)));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        lock(&self.store).truncate(log_id.index).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let s = &mut *lock(&self.store);
        // The purged id first: if the purge itself does not happen, the
        // entries it covers are merely still there.
        let data = serde_json::to_vec(&Some(log_id)).map_err(read_err)?;
        s.save_file("purged-log-id", &data).map_err(write_err)?;
        s.purge(log_id.index).map_err(write_err)
    }
}

/// A snapshot as stored and sent: the image with what openraft needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    image: Image,
}

#[derive(Debug)]
struct SmInner {
    image: Image,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshot_seq: u64,
}

/// The state machine: the image, published on every change.
#[derive(Debug, Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<SmInner>>,
    store: Arc<Mutex<MetaStore>>,
    tx: Arc<watch::Sender<Arc<Image>>>,
}

impl StateMachine {
    /// The state machine of `store`, restored from its snapshot if any.
    pub fn open(store: Arc<Mutex<MetaStore>>) -> Result<Self, store::StoreError> {
        let saved = lock(&store)
            .snapshot()?
            .and_then(|d| serde_json::from_slice::<StoredSnapshot>(&d).ok());
        let inner = match saved {
            Some(s) => SmInner {
                image: s.image,
                last_applied: s.last_applied,
                membership: s.membership,
                snapshot_seq: 0,
            },
            None => SmInner {
                image: Image::default(),
                last_applied: None,
                membership: StoredMembership::default(),
                snapshot_seq: 0,
            },
        };
        let (tx, _) = watch::channel(Arc::new(inner.image.clone()));
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
            store,
            tx: Arc::new(tx),
        })
    }

    /// The image as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Image>> {
        self.tx.subscribe()
    }

    fn snapshot_of(inner: &SmInner) -> (StoredSnapshot, SnapshotMeta<NodeId, BasicNode>) {
        let snap = StoredSnapshot {
            last_applied: inner.last_applied,
            membership: inner.membership.clone(),
            image: inner.image.clone(),
        };
        let id = match inner.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, inner.snapshot_seq),
            None => format!("none-{}", inner.snapshot_seq),
        };
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id: id,
        };
        (snap, meta)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (snap, meta) = {
            let mut inner = lock(&self.inner);
            inner.snapshot_seq += 1;
            Self::snapshot_of(&inner)
        };
        let data = serde_json::to_vec(&snap).map_err(read_err)?;
        lock(&self.store)
            .save_snapshot(&data)
            .map_err(|e| StorageError::IO {
                source: StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)),
            })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let inner = lock(&self.inner);
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let image = {
            let mut inner = lock(&self.inner);
            for e in entries {
                inner.last_applied = Some(e.log_id);
                match &e.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(Command(records)) => {
                        for r in records {
                            if let Err(why) = inner.image.apply(e.log_id.index, r) {
                                tracing::warn!(index = e.log_id.index, %why, "metadata record refused by the image");
                            }
                        }
                    }
                    EntryPayload::Membership(m) => {
                        inner.membership = StoredMembership::new(Some(e.log_id), m.clone());
                    }
                }
                inner.image.applied = inner.image.applied.max(e.log_id.index);
                out.push(Applied(e.log_id.index));
            }
            Arc::new(inner.image.clone())
        };
        self.tx.send_replace(image);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let snap: StoredSnapshot = serde_json::from_slice(&data).map_err(|e| StorageError::IO {
            source: StorageIOError::read_snapshot(Some(meta.signature()), io_err(e)),
        })?;
        lock(&self.store)
            .save_snapshot(&data)
            .map_err(|e| StorageError::IO {
                source: StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)),
            })?;
        let image = {
            let mut inner = lock(&self.inner);
            inner.image = snap.image;
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
            Arc::new(inner.image.clone())
        };
        self.tx.send_replace(image);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(data) = lock(&self.store).snapshot().map_err(read_err)? else {
            return Ok(None);
        };
        let Ok(snap) = serde_json::from_slice::<StoredSnapshot>(&data) else {
            return Ok(None);
        };
        let id = snap.last_applied.map_or_else(
            || "none".to_owned(),
            |l| format!("{}-{}", l.leader_id.term, l.index),
        );
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                last_log_id: snap.last_applied,
                last_membership: snap.membership,
                snapshot_id: id,
            },
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
