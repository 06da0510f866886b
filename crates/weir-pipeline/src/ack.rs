//! End-to-end acknowledgement. A source registers each batch it emits with
//! an [`AckTracker`] and hangs a shared [`BatchAck`] on every event of the
//! batch. Transforms carry it over to the events they derive; sinks drop
//! events only once they are durably stored; filters and bad-event handling
//! drop them on purpose. When the last reference is gone the batch is done,
//! and the tracker advances the committable position over the contiguous
//! prefix of done batches, so a source never commits past an event that a
//! sink has not stored (at-least-once).

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// (stream, partition) -> next position to read. A stream is a Kafka topic
/// (positions are message offsets) or `file:<id>` for a file source
/// (partition 0, positions are byte offsets).
pub type Positions = BTreeMap<(String, i32), i64>;

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Batches not yet committable: their positions and whether done.
    pending: BTreeMap<u64, (Positions, bool)>,
    committable: Positions,
    changed: bool,
}

/// Tracks a source's batches until every sink stored them.
#[derive(Debug, Default)]
pub struct AckTracker {
    state: Mutex<State>,
    /// Signalled whenever a batch completes.
    progress: Condvar,
}

impl AckTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a batch reaching `positions`; the returned handle, shared by
    /// the batch's events, completes it when the last one is dropped.
    pub fn register(self: &Arc<Self>, positions: Positions) -> Arc<BatchAck> {
        let mut st = self.lock();
        let id = st.next;
        st.next += 1;
        st.pending.insert(id, (positions, false));
        Arc::new(BatchAck {
            id,
            tracker: self.clone(),
        })
    }

    fn done(&self, id: u64) {
        let mut st = self.lock();
        if let Some(entry) = st.pending.get_mut(&id) {
            entry.1 = true;
        }
        while let Some(entry) = st.pending.first_entry() {
            if !entry.get().1 {
                break;
            }
            let (positions, _) = entry.remove();
            for (tp, next) in positions {
                let slot = st.committable.entry(tp).or_insert(next);
                *slot = (*slot).max(next);
            }
            st.changed = true;
        }
        drop(st);
        self.progress.notify_all();
    }

    /// Waits until no batch is in flight; false on timeout.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut st = self.lock();
        while !st.pending.is_empty() {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return false;
            };
            st = self
                .progress
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Positions that became committable since the last call.
    pub fn take_committable(&self) -> Option<Positions> {
        let mut st = self.lock();
        if !st.changed {
            return None;
        }
        st.changed = false;
        Some(st.committable.clone())
    }

    /// Batches still in flight.
    pub fn in_flight(&self) -> usize {
        self.lock().pending.len()
    }
}

/// A batch's completion handle; completes the batch when dropped.
#[derive(Debug)]
pub struct BatchAck {
    id: u64,
    tracker: Arc<AckTracker>,
}

impl Drop for BatchAck {
    fn drop(&mut self) {
        self.tracker.done(self.id);
    }
}

/// Where an event came from, for sinks that store positions (exactly-once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The stream: a topic, or `file:<id>`.
    pub topic: String,
    /// Partition (0 for files).
    pub partition: i32,
    /// Position of the message or line.
    pub offset: i64,
    /// Where reading resumes after it: offset + 1 for messages, the byte
    /// after the line's newline for files.
    pub next: i64,
}

/// Whether an earlier run already stored `e`: its origin's position is at
/// or below what `stored` holds for its stream.
pub fn stored_before(stored: &Positions, e: &crate::event::Event) -> bool {
    e.origin.as_ref().is_some_and(|o| {
        stored
            .get(&(o.topic.clone(), o.partition))
            .is_some_and(|&s| o.next <= s)
    })
}

/// Where each stream resumes after `events`: the highest `next` of its
/// events.
pub fn positions_after(events: &[crate::event::Event]) -> Positions {
    let mut positions = Positions::new();
    for o in events.iter().filter_map(|e| e.origin.as_ref()) {
        let slot = positions
            .entry((o.topic.clone(), o.partition))
            .or_insert(o.next);
        *slot = (*slot).max(o.next);
    }
    positions
}

/// Raises every position in `into` to the one in `from` where higher.
pub fn advance(into: &mut Positions, from: Positions) {
    for (tp, next) in from {
        let slot = into.entry(tp).or_insert(next);
        *slot = (*slot).max(next);
    }
}

/// The acknowledgement carried by an event (equal to any other, so events
/// compare by content).
#[derive(Debug, Clone)]
pub struct AckRef(pub Arc<BatchAck>);

impl PartialEq for AckRef {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(p: i32, o: i64) -> Positions {
        let mut m = Positions::new();
        m.insert(("t".to_owned(), p), o);
        m
    }

    #[test]
    fn commits_only_the_done_prefix() {
        let t = Arc::new(AckTracker::default());
        let a = t.register(pos(0, 10));
        let b = t.register(pos(0, 20));
        let c = t.register(pos(1, 5));
        let b2 = b.clone();
        drop(b);
        assert_eq!(t.take_committable(), None, "b is still referenced");
        drop(b2);
        assert_eq!(t.take_committable(), None, "a is not done: nothing past it");
        drop(a);
        assert_eq!(t.take_committable(), Some(pos(0, 20)));
        assert_eq!(t.in_flight(), 1);
        drop(c);
        let all = t.take_committable().unwrap();
        assert_eq!(all.get(&("t".to_owned(), 1)), Some(&5));
        assert_eq!(t.take_committable(), None);
    }
}
