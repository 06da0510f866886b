//! A full disk: the failed append leaves the log consistent, and appends
//! work again once space is back. Once with the fault-injecting store and
//! once with a real, tiny tmpfs mounted by the test.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use weir_log::{ErrorKind, FaultStorage, Log, LogError};

fn fill_until_full(log: &Log) -> (u64, LogError) {
    for i in 0.. {
        match log.append(&mut batch("f", 4, 200, i), 0) {
            Ok(_) => {}
            Err(e) => return (log.log_end_offset(), e),
        }
    }
    unreachable!()
}

#[test]
fn disk_full_with_the_fault_store() {
    let s = FaultStorage::new();
    let log = open(&s, small_config());
    s.set_capacity(Some(20_000));
    let (end, err) = fill_until_full(&log);
    assert!(matches!(err, LogError::DiskFull { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Storage);
    assert!(end > 0);
    // Nothing partial is visible or left on disk.
    assert_eq!(values(&log, 0).len() as u64, end);
    let used_by_logs: u64 = log.segments().iter().map(|s| s.size).sum();
    let on_disk: u64 = log
        .segments()
        .iter()
        .map(|seg| {
            s.contents(&segment_path(&dir(), seg.base_offset, "log"))
                .unwrap()
                .len() as u64
        })
        .sum();
    assert_eq!(
        on_disk, used_by_logs,
        "partial bytes were left in a segment"
    );
    // Still full: still refused, still consistent.
    assert!(log.append(&mut batch("g", 4, 200, 0), 0).is_err());
    assert_eq!(log.log_end_offset(), end);
    // Space comes back: appends continue at the right offset.
    s.set_capacity(None);
    let info = log.append(&mut batch("h", 2, 10, 0), 0).unwrap();
    assert_eq!(info.base_offset, end);
    log.close().unwrap();
    let log = open(&s, small_config());
    assert_eq!(log.log_end_offset(), end + 2);
    assert_eq!(values(&log, 0).len() as u64, end + 2);
}

#[test]
fn disk_full_then_crash_recovers_a_prefix() {
    let s = FaultStorage::new();
    let log = open(&s, small_config());
    s.set_capacity(Some(15_000));
    let (end, _) = fill_until_full(&log);
    drop(log);
    s.set_capacity(None);
    let log = open(&s, small_config());
    assert_eq!(log.log_end_offset(), end);
}

struct Tmpfs<'a>(&'a Path);

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
#[allow(clippy::print_stdout)]
fn disk_full_on_a_real_tmpfs() {
    if std::env::var_os("WEIR_SKIP_MOUNT_TESTS").is_some() {
        // Explicit opt-out for machines where the tests cannot mount.
        println!("SKIPPED: WEIR_SKIP_MOUNT_TESTS is set");
        return;
    }
    assert!(
        is_root(),
        "this test mounts a 256 KiB tmpfs and needs root (CI runs as root); \
         run as root or set WEIR_SKIP_MOUNT_TESTS=1 to skip it explicitly"
    );
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(mnt)
        .status()
        .expect("running mount");
    assert!(
        status.success(),
        "mount -t tmpfs failed: is this a container without CAP_SYS_ADMIN?"
    );
    let guard = Tmpfs(mnt);
    let dir = mnt.join("full-0");
    let log = Log::open_dir(&dir, small_config(), 0).unwrap();
    let (end, err) = fill_until_full(&log);
    assert!(
        matches!(err, LogError::DiskFull { .. }),
        "expected DiskFull, got {err}"
    );
    assert!(end > 100, "only {end} records fit");
    assert_eq!(values(&log, 0).len() as u64, end);
    // Grow the file system: appends work again.
    let status = Command::new("mount")
        .args(["-o", "remount,size=2m"])
        .arg(mnt)
        .status()
        .unwrap();
    assert!(status.success());
    let info = log.append(&mut batch("more", 3, 10, 0), 0).unwrap();
    assert_eq!(info.base_offset, end);
    log.close().unwrap();
    let log = Log::open_dir(&dir, small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), end + 3);
    drop(log);
    drop(guard);
}
