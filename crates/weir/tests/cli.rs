//! The `weir` binary's log tools, run as a user would.

use std::path::Path;
use std::process::{Command, Output};

use weir_log::batch::{Record, encode_batch};
use weir_log::{Log, LogConfig};

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("WEIR_LOG", "warn")
        .output()
        .expect("running weir")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write_log(dir: &Path, batches: usize) {
    let log = Log::open_dir(dir, LogConfig::default(), 0).unwrap();
    for i in 0..batches {
        let records: Vec<Record> = (0..3)
            .map(|j| Record {
                timestamp: 1000 + i as i64,
                key: None,
                value: Some(format!("m{i}-{j}").into_bytes()),
                headers: vec![],
            })
            .collect();
        log.append(&mut encode_batch(&records), 0).unwrap();
    }
    // Dropped without close: as after a crash.
}

#[test]
fn dump_lists_segments_and_batches_and_spots_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    write_log(&dir, 4);
    let out = weir(&["log", "dump", dir.to_str().unwrap(), "--batches"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("4 batches, 12 records, offsets 0..=11"),
        "{text}"
    );
    assert!(text.contains("offset 9..=11"), "{text}");

    let seg = dir.join("00000000000000000000.log");
    let mut data = std::fs::read(&seg).unwrap();
    let len = data.len();
    data.truncate(len - 5);
    std::fs::write(&seg, &data).unwrap();
    let text = stdout(&weir(&["log", "dump", dir.to_str().unwrap()]));
    assert!(text.contains("3 batches"), "{text}");
    assert!(text.contains("damaged at byte"), "{text}");
}

#[test]
fn check_recovers_a_crashed_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    write_log(&dir, 4);
    let seg = dir.join("00000000000000000000.log");
    let mut data = std::fs::read(&seg).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    std::fs::write(&seg, &data).unwrap();
    let out = weir(&["log", "check", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("log end offset 9"),
        "{}",
        stdout(&out)
    );
    // Closed cleanly by check: the marker is there and the tail is gone.
    assert!(dir.join(weir_log::CLEAN_SHUTDOWN_FILE).exists());
    let text = stdout(&weir(&["log", "dump", dir.to_str().unwrap()]));
    assert!(
        text.contains("3 batches, 9 records") && !text.contains("damaged"),
        "{text}"
    );
}

#[test]
fn errors_are_reported_not_panicked() {
    let out = weir(&["log", "check", "/nonexistent/weir-dir"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a directory"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out = weir(&["--version"]);
    assert!(stdout(&out).starts_with("weir "));
}

#[test]
fn broker_settings_errors_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let out = weir(&[
        "broker",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--set",
        "num.partitions=zero",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("num.partitions"), "{err}");
    let cfg = tmp.path().join("weir.toml");
    std::fs::write(&cfg, "[broker]\nlog.retention.hours = \"soon\"\n").unwrap();
    let out = weir(&[
        "broker",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log.retention.hours") && err.contains("weir.toml"),
        "{err}"
    );
}

#[test]
fn gen_prints_parseable_lines_for_both_flows() {
    let out = weir(&["gen", "sensors", "--count", "50", "--seed", "3"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 50);
    assert!(
        text.lines()
            .all(|l| l.starts_with("{\"pressure\": ") && l.ends_with('}')),
        "{text}"
    );
    assert_eq!(
        stdout(&weir(&["gen", "sensors", "--count", "50", "--seed", "3"])),
        text,
        "same seed, same lines"
    );
    let out = weir(&["gen", "nginx", "--count", "200", "--start", "1700000000"]);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 200);
    assert!(
        text.lines()
            .all(|l| l.contains("[15/Nov/2023:06:13:20 +0800] \"")),
        "{text}"
    );
}

#[test]
fn init_writes_a_config_once_and_every_command_has_help_with_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("weir.toml");
    let p = path.to_str().unwrap();
    let out = weir(&["init", p]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("weir up --config"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[broker]") && text.contains("[http]") && text.contains("[up]"));
    let again = weir(&["init", p]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(weir(&["init", p, "--force"]).status.success());
    let help = stdout(&weir(&["--help"]));
    for cmd in [
        "up", "init", "sql", "topic", "produce", "consume", "group", "broker", "gen", "pipeline",
        "agent", "log",
    ] {
        assert!(
            help.contains(&format!("  {cmd} ")),
            "{cmd} missing from --help"
        );
        let sub = stdout(&weir(&[cmd, "--help"]));
        assert!(
            sub.contains("Example"),
            "weir {cmd} --help has no example:\n{sub}"
        );
    }
}
