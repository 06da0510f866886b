//! The embedded store's recovery path: a database (schema file, a
//! write-ahead log of several segments) has one of its files damaged by
//! the input and is opened again. Opening either fails with an error or
//! gives back batches that were written, whole, each at most once and in
//! the order written; the database then takes a write and recovers it
//! too. It never panics.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use weir_log::{FaultStorage, Storage};
use weir_store::{Batch, Database, Position, Row, Value};

fn dir() -> &'static Path {
    Path::new("/db")
}

/// Batch `i`: rows of two tables, a column added now and then, the
/// writer's position `i`.
fn batch(i: i64) -> Batch {
    let mut fields = vec![("v".to_owned(), Value::Int(i))];
    if i >= 4 {
        fields.push(("s".to_owned(), Value::Str(format!("text {i}"))));
    }
    if i >= 8 {
        fields.push(("ok".to_owned(), Value::Bool(i % 2 == 0)));
    }
    let rows = (0..3)
        .map(|r| Row {
            table: if r == 0 { "a".into() } else { "b".into() },
            time: i * 10 + r,
            tags: vec![("host".into(), format!("h{}", i % 3))],
            fields: fields.clone(),
        })
        .collect();
    Batch {
        rows,
        positions: vec![("src".into(), i)],
    }
}

const BATCHES: i64 = 12;

/// The files of a database after twelve writes over three segments.
fn written() -> &'static Vec<(PathBuf, Vec<u8>)> {
    static FILES: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let s = FaultStorage::new();
        let (db, _) = Database::open(Arc::new(s.clone()), dir(), Position::default())
            .expect("a new database opens");
        for i in 0..BATCHES {
            db.write(&batch(i)).expect("writing to an in-memory database");
            if i % 4 == 3 {
                db.wal().roll().expect("rolling the log");
            }
        }
        drop(db);
        let mut files = Vec::new();
        for sub in ["", "wal"] {
            let d = dir().join(sub);
            let mut names = s.list(&d).expect("listing");
            names.sort();
            for n in names {
                let path = d.join(n);
                if let Some(data) = s.contents(&path) {
                    files.push((path, data));
                }
            }
        }
        files
    })
}

fuzz_target!(|data: &[u8]| {
    let [which, flags, rest @ ..] = data else {
        return;
    };
    let files = written();
    let s = FaultStorage::new();
    s.create_dir_all(&dir().join("wal")).expect("in-memory dir");
    for (path, content) in files {
        s.set_contents(path, content.clone());
    }
    let (path, original) = &files[*which as usize % files.len()];
    let damaged = if flags & 1 == 0 {
        // XOR over the original (zero bytes keep it); the input's length
        // cuts or extends it.
        let mut d = original.clone();
        d.resize(rest.len().max(if flags & 4 == 0 { d.len() } else { 0 }), 0);
        for (b, x) in d.iter_mut().zip(rest) {
            *b ^= x;
        }
        d
    } else {
        rest.to_vec()
    };
    s.set_contents(path, damaged);
    let Ok((db, recovered)) = Database::open(Arc::new(s.clone()), dir(), Position::default())
    else {
        return;
    };
    let mut last = -1;
    for (_, b) in &recovered.batches {
        let i = b.positions.first().map_or(-1, |p| p.1);
        assert!(i > last, "batch {i} after batch {last}: repeated or reordered");
        assert_eq!(b, &batch(i), "batch {i} came back changed");
        last = i;
    }
    // It works on: a new write is recovered at the next open.
    let next = batch(100);
    if db.write(&next).is_err() {
        return; // e.g. the damaged schema no longer admits the columns
    }
    drop(db);
    let (_, again) = Database::open(Arc::new(s.clone()), dir(), Position::default())
        .expect("a database that opened and took a write opens again");
    assert_eq!(
        again.batches.last().map(|(_, b)| b),
        Some(&next),
        "the write after recovery was lost"
    );
});
