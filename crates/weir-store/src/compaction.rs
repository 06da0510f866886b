//! What to do with a database's files: the pure planner of retention and
//! compaction (files and the time in, actions out; [`crate::store`]
//! carries them out).
//!
//! * **Retention**: a file whose last row is older than `now - ttl` is
//!   dropped whole.
//! * **Compaction**, per table and UTC day, size-tiered: a flush makes a
//!   small file (one minute of rows); files under `small_bytes` are sorted
//!   into tiers by size (each tier `fan_in` times larger than the one
//!   below) or by the tier a merge put them in, and `fan_in` files of one
//!   tier are merged into one, a tier higher. A row is so rewritten at
//!   most once a tier, not once a flush. When a day has settled (no
//!   flush has added to it for `settle`), all its small files are merged,
//!   so a finished day ends as few files. Files of `small_bytes` or more
//!   are left alone. A merge never exceeds `max_bytes` or `max_rows` of
//!   input.
//!
//! Invariants (tested with proptest below): the actions touch distinct
//! files that exist; only expired files are dropped and an expired file
//! is never merged; a merge joins at least two files of one table and
//! day within the limits; planning again after carrying the actions out
//! reaches a state with nothing to do, and rewrites each byte a bounded
//! number of times.

use std::collections::BTreeMap;

use crate::manifest::FileEntry;

/// When files are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Files at least this large are never merged.
    pub small_bytes: u64,
    /// The lowest tier holds files under this size.
    pub base_bytes: u64,
    /// Files merged at once within a tier; also the ratio of tier sizes.
    pub fan_in: usize,
    /// The input of one merge at most (bytes on disk)...
    pub max_bytes: u64,
    /// ...and rows.
    pub max_rows: u64,
    /// A day is settled once no flush has added a file to it for this
    /// long (the store keeps the clock; [`plan`] is told).
    pub settle: std::time::Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            small_bytes: 16 << 20,
            base_bytes: 256 << 10,
            fan_in: 4,
            max_bytes: 256 << 20,
            max_rows: 8 << 20,
            settle: std::time::Duration::from_secs(3600),
        }
    }
}

impl Policy {
    fn fan(&self) -> u64 {
        self.fan_in.max(2) as u64
    }

    fn size_tier(&self, bytes: u64) -> u32 {
        let mut tier = 0;
        let mut limit = self.base_bytes.max(1);
        while bytes >= limit {
            limit = limit.saturating_mul(self.fan());
            tier += 1;
        }
        tier
    }

    /// The tier of files too large for tiered merges; every tier below
    /// it holds files `fan_in` times larger than the one before.
    pub fn top(&self) -> u32 {
        self.size_tier(self.small_bytes.saturating_sub(1)) + 1
    }

    /// A file's tier: by its size, or by the tier it was merged into
    /// (so that files which stay small still move up and a row is
    /// rewritten at most once a tier).
    pub fn tier(&self, f: &FileEntry) -> u32 {
        let by_size = if f.bytes >= self.small_bytes {
            self.top()
        } else {
            self.size_tier(f.bytes)
        };
        by_size.max(f.level).min(self.top())
    }
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remove these files (past the TTL).
    Drop {
        /// Their ids.
        ids: Vec<u64>,
    },
    /// Merge these files (one table, one day) into one.
    Merge {
        /// The table.
        table: String,
        /// The day.
        day: String,
        /// Their ids, oldest first.
        ids: Vec<u64>,
        /// The merged file's tier ([`FileEntry::level`]).
        level: u32,
    },
}

/// What to do now with `files`. `ttl_ns` is the database's retention
/// (`None`: forever). `settled` says of a table and day whether it has
/// settled (the store answers from when the day last got a file).
pub fn plan(
    files: &[FileEntry],
    now_ns: i64,
    ttl_ns: Option<i64>,
    policy: &Policy,
    settled: &dyn Fn(&str, &str) -> bool,
) -> Vec<Action> {
    let horizon = ttl_ns.map(|ttl| now_ns.saturating_sub(ttl));
    let is_expired = |f: &FileEntry| horizon.is_some_and(|h| f.max_time < h);
    let mut actions = Vec::new();
    let gone: Vec<u64> = files
        .iter()
        .filter(|f| is_expired(f))
        .map(|f| f.id)
        .collect();
    if !gone.is_empty() {
        actions.push(Action::Drop { ids: gone });
    }
    let mut groups: BTreeMap<(&str, &str), Vec<&FileEntry>> = BTreeMap::new();
    for f in files {
        if !is_expired(f) && f.bytes < policy.small_bytes {
            groups.entry((&f.table, &f.day)).or_default().push(f);
        }
    }
    let top = policy.top();
    for ((table, day), mut small) in groups {
        small.sort_by_key(|f| f.id);
        let (ids, level) = if settled(table, day) {
            (within_limits(&small, policy), top)
        } else {
            let mut tiers: BTreeMap<u32, Vec<&FileEntry>> = BTreeMap::new();
            for f in &small {
                let tier = policy.tier(f);
                if tier < top {
                    tiers.entry(tier).or_default().push(f);
                }
            }
            let fan_in = policy.fan_in.max(2);
            tiers
                .iter()
                .filter(|(_, t)| t.len() >= fan_in)
                .map(|(tier, t)| (within_limits(&t[..fan_in], policy), tier + 1))
                .find(|(ids, _)| ids.len() >= 2)
                .unwrap_or_default()
        };
        if ids.len() >= 2 {
            actions.push(Action::Merge {
                table: table.to_owned(),
                day: day.to_owned(),
                ids,
                level,
            });
        }
    }
    actions
}

/// The longest run of `files` (in order) within the merge limits.
fn within_limits(files: &[&FileEntry], policy: &Policy) -> Vec<u64> {
    let (mut bytes, mut rows) = (0u64, 0u64);
    let mut ids = Vec::new();
    for f in files {
        if bytes + f.bytes > policy.max_bytes || rows + f.rows > policy.max_rows {
            break;
        }
        bytes += f.bytes;
        rows += f.rows;
        ids.push(f.id);
    }
    ids
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use proptest::prelude::*;

    use super::*;

    const DAY: i64 = 86_400 * 1_000_000_000;

    fn file(id: u64, table: &str, day: i64, bytes: u64) -> FileEntry {
        FileEntry {
            id,
            table: table.to_owned(),
            day: format!("d{day}"),
            min_time: day * DAY,
            max_time: day * DAY + DAY / 2,
            rows: bytes / 16 + 1,
            bytes,
            level: 0,
        }
    }

    /// Carries out `actions` as the store does: dropped files go, merged
    /// ones become one file of their summed size and rows. Returns the
    /// bytes the merges wrote.
    fn apply(files: &mut Vec<FileEntry>, actions: &[Action], next_id: &mut u64) -> u64 {
        let mut written = 0;
        for a in actions {
            match a {
                Action::Drop { ids } => files.retain(|f| !ids.contains(&f.id)),
                Action::Merge { ids, level, .. } => {
                    let (inputs, rest): (Vec<_>, Vec<_>) =
                        files.drain(..).partition(|f| ids.contains(&f.id));
                    *files = rest;
                    let mut merged = inputs[0].clone();
                    merged.id = *next_id;
                    *next_id += 1;
                    merged.bytes = inputs.iter().map(|f| f.bytes).sum();
                    merged.rows = inputs.iter().map(|f| f.rows).sum();
                    merged.min_time = inputs.iter().map(|f| f.min_time).min().unwrap();
                    merged.max_time = inputs.iter().map(|f| f.max_time).max().unwrap();
                    merged.level = *level;
                    written += merged.bytes;
                    files.push(merged);
                }
            }
        }
        written
    }

    fn check(files: &[FileEntry], actions: &[Action], now: i64, ttl: Option<i64>, p: &Policy) {
        let by_id: HashMap<u64, &FileEntry> = files.iter().map(|f| (f.id, f)).collect();
        let mut seen = BTreeSet::new();
        for a in actions {
            match a {
                Action::Drop { ids } => {
                    for id in ids {
                        assert!(seen.insert(*id), "file {id} in two actions");
                        let f = by_id[id];
                        let ttl = ttl.expect("a drop without a TTL");
                        assert!(f.max_time < now - ttl, "file {id} dropped inside the TTL");
                    }
                }
                Action::Merge {
                    table,
                    day,
                    ids,
                    level,
                } => {
                    assert!(ids.len() >= 2, "a merge of one file");
                    let (mut bytes, mut rows) = (0, 0);
                    for id in ids {
                        assert!(seen.insert(*id), "file {id} in two actions");
                        let f = by_id.get(id).expect("a merge of a file that is not there");
                        assert_eq!((&f.table, &f.day), (table, day), "a merge across groups");
                        assert!(f.bytes < p.small_bytes, "a large file merged");
                        if let Some(ttl) = ttl {
                            assert!(f.max_time >= now - ttl, "an expired file merged");
                        }
                        bytes += f.bytes;
                        rows += f.rows;
                    }
                    assert!(
                        bytes <= p.max_bytes && rows <= p.max_rows,
                        "a merge past the limits"
                    );
                    let from = ids.iter().map(|id| p.tier(by_id[id])).max().unwrap();
                    assert!(
                        *level > from || *level == p.top(),
                        "a merge that does not move up"
                    );
                }
            }
        }
        // Nothing expired is left behind.
        if let Some(ttl) = ttl {
            for f in files {
                if f.max_time < now - ttl {
                    assert!(seen.contains(&f.id), "expired file {} kept", f.id);
                }
            }
        }
    }

    fn policy() -> Policy {
        Policy {
            small_bytes: 16 << 10,
            base_bytes: 256,
            fan_in: 4,
            max_bytes: 64 << 10,
            max_rows: 1 << 20,
            settle: std::time::Duration::ZERO,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Flushes of random sizes into random tables and days, with a
        /// plan after each: every plan keeps the invariants, no live row
        /// is lost, and merges rewrite each flushed byte at most once a
        /// tier.
        #[test]
        fn plans_keep_the_invariants_and_bound_the_rewriting(
            flushes in proptest::collection::vec((0usize..3, 0i64..4, 1u64..4096), 1..300),
            ttl_days in proptest::option::of(1i64..4),
        ) {
            let p = policy();
            let mut files = Vec::new();
            let mut next_id = 0;
            let (mut flushed, mut written) = (0u64, 0u64);
            let tables = ["a", "b", "c"];
            let never = |_: &str, _: &str| false;
            for (t, day, bytes) in &flushes {
                files.push(file(next_id, tables[*t], *day, *bytes));
                next_id += 1;
                flushed += bytes;
                let now = 4 * DAY;
                let ttl = ttl_days.map(|d| d * DAY);
                let actions = plan(&files, now, ttl, &p, &never);
                check(&files, &actions, now, ttl, &p);
                let live_before: u64 = files
                    .iter()
                    .filter(|f| ttl.is_none_or(|ttl| f.max_time >= now - ttl))
                    .map(|f| f.rows)
                    .sum();
                written += apply(&mut files, &actions, &mut next_id);
                let live_after: u64 = files.iter().map(|f| f.rows).sum();
                prop_assert_eq!(live_before, live_after);
            }
            prop_assert!(
                written <= u64::from(p.top()) * flushed,
                "{} bytes rewritten for {} flushed", written, flushed
            );
        }

        /// Planning until nothing is left to do ends, in a state where no
        /// tier of a group holds `fan_in` files and a settled day holds at
        /// most one small file (when its files fit in one merge).
        #[test]
        fn planning_converges(
            sizes in proptest::collection::vec(1u64..4096, 1..200),
            settled in any::<bool>(),
        ) {
            let p = policy();
            let mut files: Vec<FileEntry> =
                sizes.iter().enumerate().map(|(i, b)| file(i as u64, "t", 0, *b)).collect();
            let mut next_id = files.len() as u64;
            let is_settled = |_: &str, _: &str| settled;
            let mut rounds = 0;
            loop {
                let actions = plan(&files, 0, None, &p, &is_settled);
                if actions.is_empty() {
                    break;
                }
                check(&files, &actions, 0, None, &p);
                apply(&mut files, &actions, &mut next_id);
                rounds += 1;
                prop_assert!(rounds <= sizes.len(), "planning does not converge");
            }
            let small: Vec<&FileEntry> = files.iter().filter(|f| f.bytes < p.small_bytes).collect();
            if settled {
                prop_assert!(small.len() <= 1, "{} small files left", small.len());
            } else {
                let mut per_tier: BTreeMap<u32, usize> = BTreeMap::new();
                for f in small {
                    *per_tier.entry(p.tier(f)).or_default() += 1;
                }
                per_tier.remove(&p.top());
                prop_assert!(per_tier.values().all(|n| *n < p.fan_in), "{:?}", per_tier);
            }
        }
    }

    #[test]
    fn tiers_grow_by_the_fan_in_up_to_small_files() {
        let p = Policy::default();
        let tier = |bytes, level| {
            p.tier(&FileEntry {
                level,
                ..file(0, "t", 0, bytes)
            })
        };
        assert_eq!(tier(0, 0), 0);
        assert_eq!(tier((256 << 10) - 1, 0), 0);
        assert_eq!(tier(256 << 10, 0), 1);
        assert_eq!(tier(1 << 20, 0), 2);
        assert_eq!(tier(4 << 20, 0), 3);
        assert_eq!(tier((16 << 20) - 1, 0), 3);
        assert_eq!(p.top(), 4);
        assert_eq!(tier(16 << 20, 0), 4);
        // A small file merged into tier 2 stays there.
        assert_eq!(tier(1000, 2), 2);
        assert_eq!(tier(1000, 9), 4);
    }

    #[test]
    fn four_small_files_of_a_tier_merge_and_a_settled_day_merges_whole() {
        let p = Policy::default();
        let files: Vec<FileEntry> = (0..4).map(|i| file(i, "t", 0, 1000)).collect();
        let never = |_: &str, _: &str| false;
        assert_eq!(
            plan(&files[..3], 0, None, &p, &never),
            [],
            "three files of a tier wait"
        );
        assert_eq!(
            plan(&files, 0, None, &p, &never),
            [Action::Merge {
                table: "t".into(),
                day: "d0".into(),
                ids: vec![0, 1, 2, 3],
                level: 1,
            }]
        );
        let mixed = [file(0, "t", 0, 1000), file(1, "t", 0, 2 << 20)];
        assert_eq!(plan(&mixed, 0, None, &p, &never), []);
        let always = |_: &str, _: &str| true;
        assert_eq!(
            plan(&mixed, 0, None, &p, &always),
            [Action::Merge {
                table: "t".into(),
                day: "d0".into(),
                ids: vec![0, 1],
                level: 4,
            }]
        );
        // Other tables and days are not mixed in.
        let apart = [
            file(0, "t", 0, 1000),
            file(1, "u", 0, 1000),
            file(2, "t", 1, 1000),
        ];
        assert_eq!(plan(&apart, 0, None, &p, &always), []);
    }
}
