//! The shipper (`weir agent`, the Filebeat role) against a real `weir
//! broker`: log files rotated both ways while they are shipped, the agent
//! restarted and killed with SIGKILL again and again; at the end the topic
//! holds every line exactly once.

mod common;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Broker, Proc, kcat};

/// The end offset of partition 0 of `topic` (0 when it does not exist yet).
fn end_offset(broker: &Broker, topic: &str) -> u64 {
    let out = Command::new("kcat")
        .args([
            "-b",
            &broker.bootstrap(),
            "-Q",
            "-t",
            &format!("{topic}:0:-1"),
        ])
        .output()
        .expect("kcat is installed (apt-get install -y kcat)");
    // "<topic> [0] offset <N>"
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn start_agent(dir: &Path) -> Proc {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))
        .unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["agent", "--config", "agent.toml"])
            .current_dir(dir)
            .env("WEIR_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    )
}

fn sigterm(child: &mut Proc) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the agent did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn line(i: u64) -> String {
    format!(
        "L{i:07} GET /index.html?q={} HTTP/1.1 200",
        "x".repeat(i as usize % 60)
    )
}

#[test]
fn rotations_restarts_and_kill_9_lose_and_duplicate_nothing() {
    let broker = Broker::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let log = dir.join("access.log");
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "data_dir = \"data\"\n\n[sources.logs]\ntype = \"file\"\ninclude = [\"{}\"]\npoll_ms = 50\nrotate_wait_ms = 300\n\n[sinks.topic]\ntype = \"kafka\"\ninputs = [\"logs\"]\nbrokers = \"{}\"\ntopic = \"nginxlog\"\n",
            log.display(),
            broker.bootstrap()
        ),
    )
    .unwrap();
    let total = 24_000u64;
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let bootstrap = broker.bootstrap();
    let writer = {
        let (written, done, log, dir) = (written.clone(), done.clone(), log.clone(), dir.clone());
        std::thread::spawn(move || {
            let open = || {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap()
            };
            let mut f = open();
            let mut rotations = 0;
            for chunk in 0..total / 50 {
                let text: String = (chunk * 50..chunk * 50 + 50)
                    .map(|i| line(i) + "\n")
                    .collect();
                f.write_all(text.as_bytes()).unwrap();
                written.fetch_add(50, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
                if (chunk + 1) % 80 != 0 {
                    continue;
                }
                rotations += 1;
                if rotations % 2 == 1 {
                    // logrotate's default: rename, the writer keeps its old
                    // file a moment (nginx until USR1), then reopens.
                    std::fs::rename(&log, dir.join(format!("access.log.{rotations}"))).unwrap();
                    f.write_all(b"").unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                    f = open();
                } else {
                    // copytruncate loses what is written between the copy
                    // and the truncation unless the shipper has read it, as
                    // logrotate documents: rotate once it caught up.
                    let want = written.load(Ordering::SeqCst);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while Instant::now() < deadline {
                        let out = Command::new("kcat")
                            .args(["-b", &bootstrap, "-Q", "-t", "nginxlog:0:-1"])
                            .output()
                            .unwrap();
                        let end: u64 = String::from_utf8_lossy(&out.stdout)
                            .split_whitespace()
                            .last()
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        if end >= want {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    std::fs::copy(&log, dir.join(format!("copy-{rotations}"))).unwrap();
                    f.set_len(0).unwrap();
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    kcat(&broker, &["-L"], None); // the broker answers
    let mut agent = start_agent(&dir);
    let mut kills = 0;
    let mut stops = 0;
    let mut round = 0u64;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(600 + 250 * (round % 3)));
        round += 1;
        if round.is_multiple_of(2) {
            let _ = agent.kill(); // SIGKILL
            let _ = agent.wait();
            kills += 1;
        } else {
            sigterm(&mut agent);
            stops += 1;
        }
        agent = start_agent(&dir);
    }
    writer.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while end_offset(&broker, "nginxlog") < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&mut agent);
    let agent_log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    assert!(
        kills >= 2 && stops >= 2,
        "too few restarts: {kills} kills, {stops} stops"
    );
    let got = kcat(
        &broker,
        &["-C", "-t", "nginxlog", "-e", "-q", "-f", "%s\n"],
        None,
    );
    let lines: Vec<&str> = got.lines().collect();
    let unique: BTreeSet<&str> = lines.iter().copied().collect();
    let missing: Vec<String> = (0..total)
        .map(line)
        .filter(|l| !unique.contains(l.as_str()))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{} lines missing, e.g. {missing:?} ({kills} kills, {stops} stops)\n{}",
        total as usize - unique.len().min(total as usize),
        agent_log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        lines.len(),
        unique.len(),
        "{} duplicated lines ({kills} kills, {stops} stops)",
        lines.len() - unique.len()
    );
    assert_eq!(lines.len() as u64, total);
}
