//! The README's commands, as written: the run command (`cargo run -p weir
//! -- up`, from the top of the repository, on the default ports) and the
//! walkthrough of both flows run by bash against it. The test command is
//! the one CI runs (`.ci/run`), which is checked, not re-run from here.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Proc;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The ```sh blocks of the README between two headings.
fn sh_blocks(readme: &str, from: &str, to: &str) -> Vec<String> {
    let start = readme
        .find(from)
        .unwrap_or_else(|| panic!("README has no {from:?}"));
    let end = readme[start..].find(to).map_or(readme.len(), |e| start + e);
    let section = &readme[start..end];
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(i) = rest.find("```sh\n") {
        let body = &rest[i + 6..];
        let j = body.find("\n```").expect("a closed code block");
        blocks.push(body[..j].to_owned());
        rest = &body[j + 4..];
    }
    blocks
}

#[test]
fn the_readme_commands_work_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let quick = sh_blocks(&readme, "## Quick start", "## The two flows");
    let commands: Vec<&str> = quick[0]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        commands.len(),
        2,
        "the run command and the test command: {commands:?}"
    );
    let (run, test) = (commands[0], commands[1]);
    assert_eq!(run, "cargo run -p weir -- up");
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.contains(&format!("\n{test}\n")),
        "CI must run the README's test command {test:?}"
    );
    for port in [9092, 8902] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "something already listens on 127.0.0.1:{port}; the README's command needs it"
        );
    }
    // The run command, as written, from the top of the repository.
    let log_path = std::env::temp_dir().join(format!("weir-readme-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut words = run.split_whitespace();
    let up = Proc(
        Command::new(words.next().unwrap())
            .args(words)
            .current_dir(repo())
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !log().contains("Ctrl-C stops everything") {
        assert!(
            Instant::now() < deadline,
            "weir up did not start:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // As a reader would, wait for the status line to show the flows
    // storing (the consumer groups take a few seconds to form).
    let url =
        weir_pipeline::http::Url::parse("http://127.0.0.1:8902/api/v1/sql?db=public").unwrap();
    let ready = || {
        weir_pipeline::http::request(
            "POST",
            &url,
            &[],
            b"select (select count(*) from kafka_consumer) * (select count(*) from access_log) > 0",
            Duration::from_secs(5),
        )
        .is_ok_and(|(status, body)| status == 200 && body.ends_with(b"\ntrue\n"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "the flows stored nothing in 60 s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // The walkthrough, every block in order, in one bash.
    let script = sh_blocks(
        &readme,
        "## The two flows, by hand",
        "## Against production systems",
    )
    .join("\n");
    let out = Command::new("bash")
        .arg("-ec")
        .arg(&script)
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the walkthrough failed:\n{stdout}\n{}\nweir up:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    assert!(
        stdout.contains("| pressure") && stdout.contains("| host"),
        "{stdout}"
    );
    assert!(stdout.contains("| bandwidth"), "{stdout}");
    assert!(
        stdout.contains("电信") || stdout.contains("联通"),
        "provinces and ISPs: {stdout}"
    );
    assert!(stdout.contains("Group: weir-flow-b"), "{stdout}");
    // Ctrl-C (SIGINT) stops it cleanly.
    let mut up = up;
    let _ = Command::new("kill")
        .args(["-INT", &up.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = up.try_wait().unwrap() {
            assert!(status.success(), "weir up exited with {status}:\n{}", log());
            break;
        }
        assert!(Instant::now() < deadline, "weir up did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&log_path);
}
