//! `weir dev cluster`: a local cluster to try things on. Each node is its
//! own `weir broker` process (broker and controller, one voter of the
//! metadata quorum) with its own data directory and log file; the command
//! prints every node's PID, addresses and the line that restarts it, tells
//! when one exits, and stops them all on Ctrl-C / SIGTERM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

/// Options of `weir dev cluster`.
#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Where the nodes' data directories and logs go.
    #[arg(long, default_value = "./weir-cluster")]
    dir: PathBuf,
    /// Address every node listens on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Node i's Kafka port is BASE + 2(i-1), its controller port the next.
    #[arg(long, default_value_t = 9092)]
    base_port: u16,
    /// Serve node i's console at port HTTP + i - 1 (0: no console).
    #[arg(long, default_value_t = 9644)]
    http: u16,
    /// Extra broker setting for every node, by its Kafka name
    /// (repeatable), e.g. --set broker.session.timeout.ms=3000.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// One node's command line.
struct Node {
    id: u16,
    kafka: String,
    controller: String,
    http: Option<String>,
    dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
}

fn nodes(a: &ClusterArgs) -> Result<Vec<Node>> {
    anyhow::ensure!(
        (1..=9).contains(&a.nodes),
        "--nodes must be between 1 and 9"
    );
    let port = |i: u16, k: u16| a.base_port.checked_add(2 * (i - 1) + k);
    let voters: Vec<String> = (1..=a.nodes)
        .map(|i| {
            port(i, 1)
                .map(|p| format!("{i}@{}:{p}", a.host))
                .context("ports above 65535")
        })
        .collect::<Result<_>>()?;
    let voters = voters.join(",");
    (1..=a.nodes)
        .map(|i| {
            let kafka = format!("{}:{}", a.host, port(i, 0).context("ports above 65535")?);
            let controller = format!("{}:{}", a.host, port(i, 1).context("ports above 65535")?);
            let http = (a.http != 0).then(|| format!("{}:{}", a.host, a.http + i - 1));
            let dir = a.dir.join(format!("node-{i}"));
            let mut args = vec![
                "broker".to_owned(),
                "--data-dir".to_owned(),
                dir.display().to_string(),
                "--set".to_owned(),
                format!("node.id={i}"),
                "--set".to_owned(),
                format!("controller.quorum.voters={voters}"),
                "--set".to_owned(),
                format!("listeners=PLAINTEXT://{kafka},CONTROLLER://{controller}"),
            ];
            if let Some(h) = &http {
                args.extend(["--http".to_owned(), h.clone(), "--console-admin".to_owned()]);
            }
            for s in &a.set {
                args.extend(["--set".to_owned(), s.clone()]);
            }
            Ok(Node {
                id: i,
                kafka,
                controller,
                http,
                log: a.dir.join(format!("node-{i}.log")),
                dir,
                args,
            })
        })
        .collect()
}

fn spawn(exe: &Path, n: &Node) -> Result<Child> {
    std::fs::create_dir_all(&n.dir).with_context(|| format!("creating {}", n.dir.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&n.log)
        .with_context(|| format!("opening {}", n.log.display()))?;
    Command::new(exe)
        .args(&n.args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting node {}", n.id))
}

/// Asks a node to stop as SIGTERM does (a clean shutdown).
fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub(crate) fn cluster(args: ClusterArgs, out: &mut impl Write) -> Result<()> {
    let exe = std::env::current_exe().context("finding the weir executable")?;
    let nodes = nodes(&args)?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let flag = stop.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the signal handler")?;
        std::thread::spawn(move || {
            runtime.block_on(crate::broker::wait_for_signal());
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    let mut children: Vec<Option<Child>> = Vec::new();
    for n in &nodes {
        children.push(Some(spawn(&exe, n)?));
    }
    writeln!(
        out,
        "node  pid      kafka                 controller            console"
    )?;
    for (n, c) in nodes.iter().zip(&children) {
        writeln!(
            out,
            "{:<5} {:<8} {:<21} {:<21} {}",
            n.id,
            c.as_ref().map_or(0, Child::id),
            n.kafka,
            n.controller,
            n.http
                .as_ref()
                .map_or_else(|| "-".to_owned(), |h| format!("http://{h}/console/"))
        )?;
    }
    let bootstrap: Vec<&str> = nodes.iter().map(|n| n.kafka.as_str()).collect();
    writeln!(out, "bootstrap servers: {}", bootstrap.join(","))?;
    writeln!(
        out,
        "data and logs in {}/node-N; kill a node (kill -9 PID) and watch the others carry on; Ctrl-C stops them all",
        args.dir.display()
    )?;
    out.flush()?;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for (n, slot) in nodes.iter().zip(children.iter_mut()) {
            let Some(child) = slot else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                writeln!(
                    out,
                    "node {} (pid {}) exited: {status}; its log: {}\n  restart it: {} {}",
                    n.id,
                    child.id(),
                    n.log.display(),
                    exe.display(),
                    n.args.join(" ")
                )?;
                out.flush()?;
                *slot = None;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    writeln!(out, "stopping")?;
    for c in children.iter().flatten() {
        terminate(c);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for c in children.iter_mut().flatten() {
        while c.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}
