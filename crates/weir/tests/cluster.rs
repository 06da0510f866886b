//! Three `weir broker` processes as one cluster, on 127.0.0.1, .2 and .3:
//! partitions spread over them, every broker's Metadata the same, real
//! clients producing and a consumer group reading back exactly once; a
//! kill -9 of the active controller (a new one is elected, admin requests
//! keep working, the killed node rejoins with its id and partitions); a
//! kill -9 of a broker leading one-replica partitions (they go offline,
//! the rest serve, nothing acknowledged is lost); consumer groups on
//! different coordinators resuming after their coordinator restarts.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{free_port, need_command, need_python_module, run_with_stdin};
use serde_json::Value;

const PIP: &str = "python3 -m pip install confluent-kafka kafka-python";

struct Node {
    id: u16,
    /// `process.roles`.
    roles: &'static str,
    host: String,
    port: u16,
    controller: u16,
    http: u16,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// With cuttable links: the port of its REPLICATION listener (the
    /// inter-broker one) and the proxy advertised in front of it.
    repl: Option<(u16, Proxy)>,
    /// With cuttable links: the proxy in front of its controller listener
    /// (a broker-only node's is its metadata endpoint, which the
    /// controller pushes the metadata log to).
    ctl: Option<Proxy>,
}

impl Node {
    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A cluster of broker processes, each stopped when this is dropped.
struct Cluster {
    nodes: Vec<Node>,
    voters: String,
    /// `controller.quorum.voters` for broker-only nodes (the proxies of a
    /// proxied cluster).
    proxied_voters: String,
    /// Broker settings every node gets beside the defaults.
    sets: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn start(n: u16) -> Self {
        Self::start_with(&vec!["broker,controller"; usize::from(n)])
    }

    /// `n` nodes with these broker settings too.
    fn start_set(n: u16, sets: &[&str]) -> Self {
        Self::start_full(
            &vec!["broker,controller"; usize::from(n)],
            sets.iter().map(|s| s.to_string()).collect(),
        )
    }

    /// Node i+1 with `roles[i]` as its `process.roles`.
    fn start_with(roles: &[&'static str]) -> Self {
        Self::start_full(roles, Vec::new())
    }

    /// `n` nodes whose inter-broker links go through proxies the test
    /// controls: each broker's REPLICATION listener is advertised at a
    /// proxy in front of it, and its followers connect from its own
    /// address, so [`Cluster::cut`] can cut one follower from one leader.
    fn start_proxied(n: u16, sets: &[&str]) -> Self {
        Self::start_inner(
            &vec!["broker,controller"; usize::from(n)],
            sets.iter().map(|s| s.to_string()).collect(),
            true,
        )
    }

    /// Node i+1 with `roles[i]`, every link through a proxy: with
    /// broker-only nodes and controller-only ones, [`Cluster::isolate`]
    /// cuts a broker from the quorum and from the other brokers.
    fn start_proxied_roles(roles: &[&'static str], sets: &[&str]) -> Self {
        Self::start_inner(roles, sets.iter().map(|s| s.to_string()).collect(), true)
    }

    fn start_full(roles: &[&'static str], sets: Vec<String>) -> Self {
        Self::start_inner(roles, sets, false)
    }

    fn start_inner(roles: &[&'static str], sets: Vec<String>, proxied: bool) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (1..=roles.len() as u16)
            .map(|id| Node {
                id,
                roles: roles[usize::from(id) - 1],
                host: format!("127.0.0.{id}"),
                port: free_port(),
                controller: free_port(),
                http: free_port(),
                dir: tmp.path().join(format!("node-{id}")),
                log: tmp.path().join(format!("node-{id}.log")),
                child: None,
                repl: proxied.then(|| {
                    let port = free_port();
                    let host: std::net::IpAddr = format!("127.0.0.{id}").parse().unwrap();
                    let proxy = Proxy::start(
                        std::net::SocketAddr::new(host, 0),
                        std::net::SocketAddr::new(host, port),
                    );
                    (port, proxy)
                }),
                ctl: None,
            })
            .collect();
        let mut nodes = nodes;
        if proxied {
            for n in &mut nodes {
                let host: std::net::IpAddr = n.host.parse().unwrap();
                n.ctl = Some(Proxy::start(
                    std::net::SocketAddr::new(host, 0),
                    std::net::SocketAddr::new(host, n.controller),
                ));
            }
        }
        // What broker-only nodes of a proxied cluster are told: the
        // controllers' proxies (a controller's own entry names its port).
        let proxied_voters = nodes
            .iter()
            .filter(|n| n.roles.contains("controller"))
            .map(|n| match &n.ctl {
                Some(p) => format!("{}@{}", n.id, p.addr),
                None => format!("{}@{}:{}", n.id, n.host, n.controller),
            })
            .collect::<Vec<_>>()
            .join(",");
        let voters = nodes
            .iter()
            .filter(|n| n.roles.contains("controller"))
            .map(|n| format!("{}@{}:{}", n.id, n.host, n.controller))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            nodes,
            voters,
            proxied_voters,
            sets,
            _tmp: tmp,
        };
        for id in 1..=roles.len() as u16 {
            c.spawn(id);
        }
        let brokers = roles.iter().filter(|r| r.contains("broker")).count();
        c.wait_brokers(brokers, Duration::from_secs(30));
        c
    }

    fn node(&self, id: u16) -> &Node {
        &self.nodes[usize::from(id) - 1]
    }

    fn spawn(&mut self, id: u16) {
        let mut voters = self.voters.clone();
        let sets: Vec<String> = self
            .sets
            .iter()
            .flat_map(|s| ["--set".to_owned(), s.clone()])
            .collect();
        let n = &mut self.nodes[usize::from(id) - 1];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .unwrap();
        let mut listeners = match n.roles {
            "broker" => format!("PLAINTEXT://{}:{}", n.host, n.port),
            "controller" => format!("CONTROLLER://{}:{}", n.host, n.controller),
            _ => format!(
                "PLAINTEXT://{}:{},CONTROLLER://{}:{}",
                n.host, n.port, n.host, n.controller
            ),
        };
        let mut more = Vec::new();
        if let (Some((port, proxy)), true) = (&n.repl, n.roles.contains("broker")) {
            listeners.push_str(&format!(",REPLICATION://{}:{port}", n.host));
            let mut advertised = format!(
                "advertised.listeners=PLAINTEXT://{}:{},REPLICATION://{}",
                n.host, n.port, proxy.addr
            );
            if n.roles == "broker" {
                // Its metadata endpoint, behind its proxy.
                listeners.push_str(&format!(",CONTROLLER://{}:{}", n.host, n.controller));
                advertised.push_str(&format!(",CONTROLLER://{}", n.ctl.as_ref().unwrap().addr));
                voters = self.proxied_voters.clone();
            }
            more = vec![
                advertised,
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,REPLICATION:PLAINTEXT".to_owned(),
                "inter.broker.listener.name=REPLICATION".to_owned(),
            ];
        }
        let more: Vec<String> = more
            .into_iter()
            .flat_map(|s| ["--set".to_owned(), s])
            .collect();
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("broker")
            .arg("--data-dir")
            .arg(&n.dir)
            .args(["--node-id", &id.to_string(), "--controller-quorum", &voters])
            .arg("--set")
            .arg(format!("listeners={listeners}"))
            .arg("--set")
            .arg(format!("process.roles={}", n.roles))
            .args(["--http", &format!("{}:{}", n.host, n.http)])
            .args([
                "--set",
                "broker.session.timeout.ms=2000",
                "--set",
                "broker.heartbeat.interval.ms=250",
                "--set",
                "replica.lag.time.max.ms=3000",
            ])
            .args(&sets)
            .args(&more)
            .env("WEIR_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting weir broker");
        n.child = Some(child);
    }

    /// SIGSTOP (`false`) or SIGCONT (`true`) node `id`: a machine that
    /// stops answering without its connections closing.
    fn pause(&self, id: u16, resume: bool) {
        let pid = self.node(id).child.as_ref().unwrap().id();
        let sig = if resume { "-CONT" } else { "-STOP" };
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// Cuts (`true`) or heals (`false`) the link from follower `from` to
    /// the inter-broker listener of `to` (a proxied cluster only).
    fn cut(&self, from: u16, to: u16, cut: bool) {
        let proxy = &self.node(to).repl.as_ref().expect("a proxied cluster").1;
        let ip = self.node(from).host.parse().unwrap();
        if cut {
            proxy.cut(ip);
        } else {
            proxy.heal(ip);
        }
    }

    /// Cuts (`true`) or heals (`false`) every link of node `id` but its
    /// clients': to and from the other brokers and the quorum.
    fn isolate(&self, id: u16, cut: bool) {
        let me = self.node(id);
        let ip: std::net::IpAddr = me.host.parse().unwrap();
        for p in me.repl.iter().map(|r| &r.1).chain(me.ctl.iter()) {
            p.cut_all(cut);
        }
        for n in self.nodes.iter().filter(|n| n.id != id) {
            for p in n.repl.iter().map(|r| &r.1).chain(n.ctl.iter()) {
                if cut {
                    p.cut(ip);
                } else {
                    p.heal(ip);
                }
            }
        }
    }

    /// Cuts (`true`) or heals (`false`) every inter-broker link.
    fn cut_all(&self, cut: bool) {
        for n in &self.nodes {
            n.repl.as_ref().expect("a proxied cluster").1.cut_all(cut);
        }
    }

    /// The bytes of every segment of a partition's log on node `id`, in
    /// offset order: replicas in sync hold the same bytes.
    fn log_bytes(&self, id: u16, topic: &str, partition: u32) -> Vec<u8> {
        let dir = self.node(id).dir.join(format!("{topic}-{partition}"));
        let mut segs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        segs.sort();
        segs.iter()
            .flat_map(|p| std::fs::read(p).unwrap())
            .collect()
    }

    /// SIGTERM to node `id`; waits (bounded) for it to exit.
    fn term(&mut self, id: u16, within: Duration) -> std::process::ExitStatus {
        let mut child = self.nodes[usize::from(id) - 1].child.take().unwrap();
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node {id} did not stop within {within:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self, id: u16) {
        if let Some(mut c) = self.nodes[usize::from(id) - 1].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.roles.contains("broker"))
            .map(Node::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- node {} (last lines)\n", n.id));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// GET `path` on node `id`'s HTTP port: the body when 200.
    fn http_get(&self, id: u16, path: &str) -> Option<String> {
        let n = self.node(id);
        let url =
            weir_pipeline::http::Url::parse(&format!("http://{}:{}{path}", n.host, n.http)).ok()?;
        let (status, body) =
            weir_pipeline::http::request("GET", &url, &[], b"", Duration::from_secs(5)).ok()?;
        (status == 200).then(|| String::from_utf8_lossy(&body).into_owned())
    }

    /// The console's Brokers view of one node.
    fn brokers(&self, id: u16) -> Option<Value> {
        let n = self.node(id);
        let url = weir_pipeline::http::Url::parse(&format!(
            "http://{}:{}/api/v1/console/brokers",
            n.host, n.http
        ))
        .ok()?;
        let (status, body) =
            weir_pipeline::http::request("GET", &url, &[], b"", Duration::from_secs(5)).ok()?;
        (status == 200).then(|| serde_json::from_slice(&body).ok())?
    }

    /// The active controller as node `id` knows it.
    fn controller(&self, id: u16, within: Duration) -> u16 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(c) = self.brokers(id).and_then(|b| b["controller"].as_u64()) {
                return c as u16;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} knows no controller\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Metadata from one broker, as kcat shows it (JSON).
    fn metadata(&self, id: u16, topic: Option<&str>) -> Option<Value> {
        let mut cmd = Command::new("kcat");
        cmd.args(["-b", &self.node(id).addr(), "-L", "-J", "-m", "5"]);
        if let Some(t) = topic {
            cmd.args(["-t", t]);
        }
        let out = run_with_stdin(&mut cmd, None);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until broker 1.. (any live one) lists `n` brokers.
    fn wait_brokers(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let live: Vec<u16> = self
                .nodes
                .iter()
                .filter(|x| x.child.is_some() && x.roles.contains("broker"))
                .map(|x| x.id)
                .collect();
            let ok = live.iter().all(|&id| {
                self.metadata(id, None)
                    .is_some_and(|m| m["brokers"].as_array().is_some_and(|b| b.len() == n))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not show {n} brokers within {within:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls the leaders of `topic` (by partition) as node `id` gives them
    /// until `ok` holds; returns them.
    fn leaders_until(
        &self,
        id: u16,
        topic: &str,
        within: Duration,
        ok: impl Fn(&[i64]) -> bool,
    ) -> Vec<i64> {
        let deadline = Instant::now() + within;
        loop {
            let ls = self.metadata(id, Some(topic)).map(|m| leaders(&m, topic));
            if let Some(ls) = ls.as_ref().filter(|l| !l.is_empty() && ok(l)) {
                return ls.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{topic}: leaders {ls:?} not as wanted within {within:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every partition of `topic` has a leader, seen from `id`.
    fn wait_leaders(&self, id: u16, topic: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.metadata(id, Some(topic))
                && leaders(&m, topic).iter().all(|&l| l >= 0)
                && !leaders(&m, topic).is_empty()
            {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "{topic} did not get leaders within {within:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn weir(&self, args: &[&str]) -> std::process::Output {
        run_with_stdin(
            Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(args)
                .env("WEIR_LOG", "warn"),
            None,
        )
    }

    fn create_topic(&self, via: u16, name: &str, partitions: u32) {
        self.create_replicated(via, name, partitions, 1);
    }

    fn create_replicated(&self, via: u16, name: &str, partitions: u32, rf: u32) {
        let out = self.weir(&[
            "topic",
            "create",
            name,
            "-p",
            &partitions.to_string(),
            "-r",
            &rf.to_string(),
            "-b",
            &self.node(via).addr(),
        ]);
        assert!(
            out.status.success(),
            "creating {name}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    fn python(&self, args: &[&str]) -> String {
        let out = Command::new("python3")
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop"))
            .arg("cluster.py")
            .args(["--bootstrap", &self.bootstrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster.py {args:?}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kcat(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = run_with_stdin(
            Command::new("kcat")
                .args(["-b", &self.bootstrap()])
                .args(args),
            stdin,
        );
        assert!(
            out.status.success(),
            "kcat {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The partitions of `topic` in kcat's JSON, by partition index.
fn partitions<'a>(m: &'a Value, topic: &str) -> Vec<&'a Value> {
    let mut ps: Vec<&Value> = m["topics"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["topic"] == topic))
        .and_then(|t| t["partitions"].as_array())
        .map(|ps| ps.iter().collect())
        .unwrap_or_default();
    ps.sort_by_key(|p| p["partition"].as_i64().unwrap_or(-1));
    ps
}

/// The leader of every partition of `topic`, by partition.
fn leaders(m: &Value, topic: &str) -> Vec<i64> {
    partitions(m, topic)
        .iter()
        .map(|p| p["leader"].as_i64().unwrap_or(-1))
        .collect()
}

/// A partition's replicas and in-sync replicas, sorted.
type ReplicaSets = (Vec<i64>, Vec<i64>);

/// (replicas, in-sync replicas) of every partition of `topic`, by partition.
fn replica_sets(m: &Value, topic: &str) -> Vec<ReplicaSets> {
    let ids = |v: &Value| -> Vec<i64> {
        let mut out: Vec<i64> = v
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["id"].as_i64()).collect())
            .unwrap_or_default();
        out.sort_unstable();
        out
    };
    partitions(m, topic)
        .iter()
        .map(|p| (ids(&p["replicas"]), ids(&p["isrs"])))
        .collect()
}

/// What every broker must agree on: brokers and topics (the controller
/// id each gives clients is itself: it forwards admin requests).
fn agreed(m: &Value) -> Value {
    serde_json::json!({
        "brokers": m["brokers"],
        "topics": m["topics"],
    })
}

fn needs() {
    need_command("kcat", "apt-get install -y kcat");
    need_python_module("confluent_kafka", PIP);
    need_python_module("kafka", PIP);
}

fn distinct(out: &str) -> (u64, u64) {
    let words: Vec<&str> = out.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "distinct")
        .unwrap_or_else(|| panic!("no count in {out:?}"));
    (
        words[at + 1].parse().unwrap(),
        words[at + 3].parse().unwrap(),
    )
}

#[test]
fn three_brokers_spread_partitions_and_survive_a_dead_controller() {
    needs();
    let mut c = Cluster::start(3);
    c.create_topic(2, "spread", 12);
    let m = c.wait_leaders(1, "spread", Duration::from_secs(10));
    let led: BTreeSet<i64> = leaders(&m, "spread").into_iter().collect();
    assert_eq!(led, BTreeSet::from([1, 2, 3]), "leaders on every broker");
    // Every broker answers the same metadata.
    let views: Vec<Value> = (1..=3)
        .map(|id| agreed(&c.metadata(id, None).expect("metadata")))
        .collect();
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "brokers disagree: {views:#?}"
    );
    // One cluster id: a node that joined after the first set it took it,
    // however late its own copy of the metadata was.
    let ids: BTreeSet<String> = c
        .nodes
        .iter()
        .map(|n| {
            let props = std::fs::read_to_string(n.dir.join("meta.properties")).unwrap();
            props
                .lines()
                .find_map(|l| l.strip_prefix("cluster.id="))
                .expect("cluster.id")
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "cluster ids {ids:?}\n{}", c.logs());

    // Three clients produce 10 000 each; one group reads all back once.
    let lines: String = (0..10_000).map(|i| format!("kc-{i}:kc:{i}\n")).collect();
    c.kcat(
        &["-P", "-t", "spread", "-K", ":", "-X", "acks=all"],
        Some(&lines),
    );
    c.python(&[
        "produce-confluent",
        "--topic",
        "spread",
        "--tag",
        "ck",
        "--count",
        "10000",
    ]);
    c.python(&[
        "produce-kafka-python",
        "--topic",
        "spread",
        "--tag",
        "kp",
        "--count",
        "10000",
    ]);
    let out = c.python(&[
        "consume",
        "--topic",
        "spread",
        "--group",
        "all",
        "--expect",
        "30000",
        "--commit-every",
        "1000",
        "--timeout",
        "120",
    ]);
    assert_eq!(distinct(&out), (30_000, 0), "{out}");

    // The Brokers page: three alive, one controller, all agreeing.
    let controller = c.controller(1, Duration::from_secs(5));
    assert!((1..=3).contains(&controller));
    for id in 1..=3 {
        let b = c.brokers(id).expect("brokers page");
        let list = b["brokers"].as_array().unwrap();
        assert_eq!(list.len(), 3, "{b}");
        assert!(list.iter().all(|x| x["state"] == "alive"), "{b}");
        assert_eq!(b["controller"], controller, "{b}");
        assert_eq!(
            list.iter()
                .map(|x| x["partitions_led"].as_u64().unwrap())
                .sum::<u64>(),
            12 + 16,
            "{b}"
        );
    }
    // Kill -9 the active controller.
    c.kill9(controller);
    let survivor = if controller == 1 { 2 } else { 1 };
    let t = Instant::now();
    loop {
        let out = c.weir(&[
            "topic",
            "create",
            "after-failover",
            "-p",
            "3",
            "-b",
            &c.node(survivor).addr(),
        ]);
        if out.status.success() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no CreateTopics after the controller died: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let took = t.elapsed();
    assert!(took < Duration::from_secs(10), "CreateTopics took {took:?}");
    let now = c.controller(survivor, Duration::from_secs(5));
    assert!(now != controller, "controller {now}");
    // The dead node is fenced once its session times out.
    let t = Instant::now();
    while !c.brokers(survivor).is_some_and(|b| {
        b["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == controller && x["state"] == "fenced")
    }) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "node {controller} never fenced"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The killed node comes back with its id and its partitions.
    c.spawn(controller);
    c.wait_brokers(3, Duration::from_secs(30));
    let m = c.wait_leaders(controller, "spread", Duration::from_secs(20));
    let led: BTreeSet<i64> = leaders(&m, "spread").into_iter().collect();
    assert!(led.contains(&i64::from(controller)), "{m}");
    // Nothing acknowledged was lost.
    let out = c.python(&[
        "consume",
        "--topic",
        "spread",
        "--group",
        "again",
        "--expect",
        "30000",
        "--commit-every",
        "1000",
        "--timeout",
        "120",
    ]);
    assert_eq!(distinct(&out), (30_000, 0), "{out}");
}

#[test]
fn a_dead_broker_s_partitions_are_offline_until_it_returns() {
    needs();
    let mut c = Cluster::start(3);
    c.create_topic(1, "single", 6);
    let m = c.wait_leaders(1, "single", Duration::from_secs(10));
    let owners = leaders(&m, "single");
    for p in 0..6 {
        let lines: String = (0..100).map(|i| format!("p{p}-{i}\n")).collect();
        c.kcat(
            &["-P", "-t", "single", "-p", &p.to_string(), "-X", "acks=all"],
            Some(&lines),
        );
    }
    let controller = c.controller(1, Duration::from_secs(5));
    let victim = (1..=3u16).find(|&b| b != controller).unwrap();
    let other = (1..=3u16).find(|&b| b != victim).unwrap();
    c.kill9(victim);
    // Its partitions lose their leader once its session times out.
    let t = Instant::now();
    loop {
        let now = c
            .metadata(other, Some("single"))
            .map(|m| leaders(&m, "single"));
        if let Some(ls) = &now
            && ls.len() == 6
            && (0..6).all(|p| (owners[p] == i64::from(victim)) == (ls[p] == -1))
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "partitions of broker {victim} still led: {now:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // kafka-topics-style describe shows them without a leader.
    let out = c.weir(&["topic", "describe", "single", "-b", &c.node(other).addr()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline = (0..6).filter(|&p| owners[p] == i64::from(victim)).count();
    assert_eq!(text.matches("Leader: none").count(), offline, "{text}");
    // The others keep serving.
    let alive = (0..6).find(|&p| owners[p] != i64::from(victim)).unwrap();
    let lines: String = (0..10).map(|i| format!("late-{i}\n")).collect();
    let out = run_with_stdin(
        Command::new("kcat")
            .args(["-b", &c.node(other).addr()])
            .args([
                "-P",
                "-t",
                "single",
                "-p",
                &alive.to_string(),
                "-X",
                "acks=all",
            ]),
        Some(&lines),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    c.spawn(victim);
    c.wait_brokers(3, Duration::from_secs(30));
    c.wait_leaders(other, "single", Duration::from_secs(20));
    for p in 0..6 {
        let got = c.kcat(
            &[
                "-C",
                "-t",
                "single",
                "-p",
                &p.to_string(),
                "-o",
                "beginning",
                "-e",
                "-q",
            ],
            None,
        );
        let want = if p == alive { 110 } else { 100 };
        assert_eq!(got.lines().count(), want, "partition {p}");
    }
}

/// The `__consumer_offsets` partition of a group, as Kafka computes it.
fn offsets_partition(group: &str, partitions: usize) -> usize {
    let h = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    (if h == i32::MIN { 0 } else { h.unsigned_abs() }) as usize % partitions
}

#[test]
fn groups_on_different_coordinators_resume_after_their_broker_restarts() {
    needs();
    let mut c = Cluster::start(3);
    c.create_topic(3, "work", 6);
    c.wait_leaders(1, "work", Duration::from_secs(10));
    let lines: String = (0..600).map(|i| format!("w{i}\n")).collect();
    c.kcat(&["-P", "-t", "work", "-X", "acks=all"], Some(&lines));
    // A first FindCoordinator creates the offsets topic.
    c.python(&[
        "consume", "--topic", "work", "--group", "probe", "--max", "1", "--expect", "600",
    ]);
    let m = c.wait_leaders(1, "__consumer_offsets", Duration::from_secs(10));
    let offsets = leaders(&m, "__consumer_offsets");
    assert_eq!(offsets.len(), 16);
    // Two groups whose coordinators are on different brokers.
    let coordinator = |g: &str| offsets[offsets_partition(g, offsets.len())];
    let a = "group-a".to_owned();
    let b = (0..1000)
        .map(|i| format!("group-b{i}"))
        .find(|g| coordinator(g) != coordinator(&a))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let read = |name: &str| -> BTreeSet<String> {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    for g in [&a, &b] {
        let out = c.python(&[
            "consume",
            "--topic",
            "work",
            "--group",
            g,
            "--max",
            "250",
            "--expect",
            "600",
            "--out",
            &dir.path().join(format!("{g}-1")).display().to_string(),
        ]);
        assert_eq!(distinct(&out), (250, 0), "{out}");
    }
    // Restart group a's coordinator (kill -9, as a crash).
    let broker = coordinator(&a) as u16;
    c.kill9(broker);
    std::thread::sleep(Duration::from_millis(500));
    c.spawn(broker);
    c.wait_brokers(3, Duration::from_secs(30));
    c.wait_leaders(1, "__consumer_offsets", Duration::from_secs(20));
    c.wait_leaders(1, "work", Duration::from_secs(20));
    for g in [&a, &b] {
        let out = c.python(&[
            "consume",
            "--topic",
            "work",
            "--group",
            g,
            "--expect",
            "350",
            "--timeout",
            "60",
            "--out",
            &dir.path().join(format!("{g}-2")).display().to_string(),
        ]);
        assert_eq!(distinct(&out), (350, 0), "group {g}: {out}");
        let (first, second) = (read(&format!("{g}-1")), read(&format!("{g}-2")));
        assert!(first.is_disjoint(&second), "group {g} read messages twice");
        assert_eq!(first.len() + second.len(), 600, "group {g}");
    }
}

#[test]
fn broker_only_and_controller_only_nodes_work_together() {
    need_command("kcat", "apt-get install -y kcat");
    // Voters 1, 2 (both roles) and 3 (controller only); 4 is a broker only,
    // a learner of the quorum.
    let mut c = Cluster::start_with(&[
        "broker,controller",
        "broker,controller",
        "controller",
        "broker",
    ]);
    let m = c
        .metadata(4, None)
        .expect("metadata from the broker-only node");
    let ids: BTreeSet<i64> = m["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([1, 2, 4]), "{m}");
    c.create_topic(4, "mixed", 6);
    let m = c.wait_leaders(1, "mixed", Duration::from_secs(10));
    let led: BTreeSet<i64> = leaders(&m, "mixed").into_iter().collect();
    assert_eq!(
        led,
        BTreeSet::from([1, 2, 4]),
        "no partition on the controller-only node"
    );
    let lines: String = (0..1200).map(|i| format!("x{i}\n")).collect();
    c.kcat(&["-P", "-t", "mixed", "-X", "acks=all"], Some(&lines));
    // The broker-only node restarts (a new port for its metadata node):
    // it rejoins and leads its partitions again, nothing lost.
    c.kill9(4);
    c.spawn(4);
    c.wait_brokers(3, Duration::from_secs(30));
    c.wait_leaders(4, "mixed", Duration::from_secs(20));
    let got = c.kcat(&["-C", "-t", "mixed", "-o", "beginning", "-e", "-q"], None);
    let got: BTreeSet<&str> = got.lines().collect();
    assert_eq!(got.len(), 1200);
    // A topic created after the restart reaches it too.
    c.create_topic(1, "later", 3);
    c.wait_leaders(4, "later", Duration::from_secs(10));
}

/// Six consecutive free ports on 127.0.0.1 (the Kafka and controller
/// ports of three `weir dev cluster` nodes).
fn free_run() -> u16 {
    for _ in 0..100 {
        let base = free_port();
        if base > 65_000 {
            continue;
        }
        let held: Vec<_> = (0..6)
            .map_while(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == 6 {
            return base;
        }
    }
    panic!("no six consecutive free ports");
}

#[test]
fn weir_dev_cluster_runs_three_processes_and_stops_them() {
    need_command("kcat", "apt-get install -y kcat");
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let base = free_run();
    let mut dev = common::Proc(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["dev", "cluster", "--nodes", "3", "--http", "0"])
            .arg("--dir")
            .arg(tmp.path())
            .args(["--base-port", &base.to_string()])
            .args(["--set", "broker.session.timeout.ms=2000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = dev.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("weir dev cluster printed nothing")
    };
    assert!(next().starts_with("node"), "a header first");
    let mut pids = Vec::new();
    for i in 1..=3u16 {
        let line = next();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[0], i.to_string(), "{line}");
        pids.push(f[1].parse::<u32>().unwrap());
        assert_eq!(f[2], format!("127.0.0.1:{}", base + 2 * (i - 1)), "{line}");
    }
    assert!(next().starts_with("bootstrap servers: 127.0.0.1:"));
    let bootstrap = format!("127.0.0.1:{}", base + 2);
    let t = Instant::now();
    loop {
        let out = run_with_stdin(
            Command::new("kcat").args(["-b", &bootstrap, "-L", "-m", "5"]),
            None,
        );
        if String::from_utf8_lossy(&out.stdout).contains(" 3 brokers:") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no 3-broker cluster");
        std::thread::sleep(Duration::from_millis(200));
    }
    // kill -9 one: it is reported, with the line that restarts it.
    let _ = Command::new("kill")
        .args(["-9", &pids[2].to_string()])
        .status();
    let t = Instant::now();
    loop {
        let line = next();
        if line.starts_with(&format!("node 3 (pid {})", pids[2])) {
            assert!(next().contains("restart it:"));
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    // SIGTERM: every node stops, then the command.
    let _ = Command::new("kill")
        .args(["-TERM", &dev.id().to_string()])
        .status();
    let status = dev.wait().unwrap();
    assert!(status.success(), "{status}");
    for pid in &pids[..2] {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "node pid {pid} still runs"
        );
    }
}

impl Cluster {
    /// Waits until every partition of `topic` has all its replicas in
    /// sync and a leader, seen from `id`.
    fn wait_in_sync(&self, id: u16, topic: &str, rf: usize, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let m = self.metadata(id, Some(topic));
            if let Some(m) = &m {
                let sets = replica_sets(m, topic);
                if !sets.is_empty()
                    && sets.iter().all(|(r, i)| r.len() == rf && i == r)
                    && leaders(m, topic).iter().all(|&l| l >= 0)
                {
                    return m.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{topic} not in sync within {within:?}: {:?}\n{}",
                m.map(|m| replica_sets(&m, topic)),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn replicated_partitions_fail_over_with_nothing_acknowledged_lost() {
    needs();
    let mut c = Cluster::start(3);
    c.create_replicated(1, "rep", 3, 3);
    let m = c.wait_in_sync(1, "rep", 3, Duration::from_secs(20));
    let owners = leaders(&m, "rep");
    // Every broker leads one partition: a kill -9 of any leader moves one.
    let victim = owners[0] as u16;
    let other = (1..=3u16).find(|&b| b != victim).unwrap();

    // An idempotent acks=all producer runs while the leader is killed.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop");
    let producer = Command::new("python3")
        .current_dir(&dir)
        .args(["cluster.py", "--bootstrap", &c.bootstrap()])
        .args([
            "produce-confluent",
            "--topic",
            "rep",
            "--tag",
            "f",
            "--count",
            "60000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    c.kill9(victim);
    // Its leadership moves to another in-sync replica once its session
    // times out; the partition stays served.
    c.leaders_until(other, "rep", Duration::from_secs(15), |l| {
        l.len() == 3 && l.iter().all(|&x| x >= 0 && x != i64::from(victim))
    });
    let out = producer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "producer: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    // Without the victim, the ISRs shrank to the two survivors.
    let m = c.metadata(other, Some("rep")).unwrap();
    for (replicas, isr) in replica_sets(&m, "rep") {
        assert_eq!(replicas.len(), 3);
        assert!(!isr.contains(&i64::from(victim)), "{isr:?}");
    }
    // Every acknowledged message is there exactly once.
    let got = c.python(&[
        "consume",
        "--topic",
        "rep",
        "--group",
        "check",
        "--expect",
        "60000",
        "--timeout",
        "60",
        "--commit-every",
        "10000",
    ]);
    assert_eq!(distinct(&got), (60000, 0), "{got}");

    // The victim comes back, catches up and is in sync again; then it
    // takes over from the next leader killed, with everything.
    c.spawn(victim);
    c.wait_brokers(3, Duration::from_secs(30));
    c.wait_in_sync(other, "rep", 3, Duration::from_secs(30));
    let second = leaders(&c.metadata(other, Some("rep")).unwrap(), "rep")[1] as u16;
    c.kill9(second);
    let survivor = (1..=3u16).find(|&b| b != second).unwrap();
    c.wait_leaders(survivor, "rep", Duration::from_secs(15));
    c.leaders_until(survivor, "rep", Duration::from_secs(15), |l| {
        !l.contains(&i64::from(second))
    });
    let got = c.python(&[
        "consume",
        "--topic",
        "rep",
        "--group",
        "check-2",
        "--expect",
        "60000",
        "--timeout",
        "60",
        "--commit-every",
        "10000",
    ]);
    assert_eq!(distinct(&got), (60000, 0), "{got}");
}

#[test]
fn acks_all_waits_for_the_in_sync_followers_and_failover_keeps_one_log() {
    needs();
    // Sessions long enough that paused followers stay registered (and in
    // the ISR) while the leader is killed.
    let mut c = Cluster::start_set(3, &["broker.session.timeout.ms=6000"]);
    let out = c.weir(&[
        "topic",
        "create",
        "paused",
        "-p",
        "1",
        "-r",
        "3",
        "-c",
        "min.insync.replicas=2",
        "-b",
        &c.node(1).addr(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = c.wait_in_sync(1, "paused", 3, Duration::from_secs(20));
    let leader = leaders(&m, "paused")[0] as u16;
    let followers: Vec<u16> = (1..=3u16).filter(|&b| b != leader).collect();
    let before: String = (0..100).map(|i| format!("before-{i}\n")).collect();
    c.kcat(
        &["-P", "-t", "paused", "-p", "0", "-X", "acks=all"],
        Some(&before),
    );

    // Both followers stop: an acks=all write is appended on the leader
    // but never acknowledged, as no other in-sync replica has it.
    for &f in &followers {
        c.pause(f, false);
    }
    let acked = c._tmp.path().join("acked.txt");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop");
    let out = Command::new("python3")
        .current_dir(&dir)
        .args(["cluster.py", "--bootstrap", &c.node(leader).addr()])
        .args([
            "produce-acked",
            "--topic",
            "paused",
            "--tag",
            "stalled",
            "--count",
            "50",
        ])
        .args(["--timeout-ms", "1500", "--out", acked.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acked: Vec<String> = std::fs::read_to_string(&acked)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // The leader dies with that unreplicated tail; the followers return
    // and one of them takes over.
    c.kill9(leader);
    for &f in &followers {
        c.pause(f, true);
    }
    assert!(
        acked.is_empty(),
        "acknowledged without the followers: {text}"
    );
    c.leaders_until(followers[0], "paused", Duration::from_secs(20), |l| {
        followers.contains(&(l[0] as u16))
    });
    let after: String = (0..100).map(|i| format!("after-{i}\n")).collect();
    c.kcat(
        &["-P", "-t", "paused", "-p", "0", "-X", "acks=all"],
        Some(&after),
    );

    // The old leader comes back as a follower and is in sync again. The
    // stalled writes were never acknowledged: a follower may still have
    // received them (a fetch answer already in its socket when it was
    // paused), and then they are on every replica; if not, the old leader
    // truncates them where the new leader's log diverges (KIP-595).
    c.spawn(leader);
    c.wait_brokers(3, Duration::from_secs(30));
    c.wait_in_sync(followers[0], "paused", 3, Duration::from_secs(30));
    let got = c.kcat(
        &[
            "-C",
            "-t",
            "paused",
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        None,
    );
    let lines: Vec<&str> = got.lines().collect();
    let stalled = lines.iter().filter(|l| l.starts_with("stalled:")).count();
    assert_eq!(lines.len(), 200 + stalled, "{got}");
    assert!(
        lines[..100].iter().all(|l| l.starts_with("before-")),
        "{got}"
    );
    let want: Vec<String> = (0..stalled).map(|i| format!("stalled:{i}")).collect();
    assert_eq!(lines[100..100 + stalled], want[..], "{got}");
    assert!(
        lines[100 + stalled..]
            .iter()
            .all(|l| l.starts_with("after-")),
        "{got}"
    );
    let log = std::fs::read_to_string(&c.node(leader).log).unwrap();
    if stalled == 0 {
        assert!(
            log.contains("the log diverges from the leader's: truncating"),
            "the old leader kept a tail the new leader does not have\n{}",
            c.logs()
        );
    }
}

impl Cluster {
    /// `weir topic create` with settings.
    fn create_with(&self, name: &str, partitions: u32, rf: u32, configs: &[&str]) {
        let (p, r) = (partitions.to_string(), rf.to_string());
        let mut args = vec!["topic", "create", name, "-p", &p, "-r", &r];
        for cfg in configs {
            args.extend(["-c", cfg]);
        }
        let addr = self.node(1).addr();
        args.extend(["-b", &addr]);
        let out = self.weir(&args);
        assert!(
            out.status.success(),
            "creating {name}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    /// A topic of one partition with three replicas and `configs`, in
    /// sync: its leader and followers.
    fn one_partition(&self, topic: &str, configs: &[&str]) -> (u16, Vec<u16>) {
        self.create_with(topic, 1, 3, configs);
        let m = self.wait_in_sync(1, topic, 3, Duration::from_secs(30));
        let leader = leaders(&m, topic)[0] as u16;
        (leader, (1..=3u16).filter(|&b| b != leader).collect())
    }

    /// `produce-acked` of cluster.py through `bootstrap`: the values
    /// acknowledged and what it printed.
    fn produce_acked(&self, bootstrap: &str, args: &[&str]) -> (Vec<String>, String) {
        let acked = self._tmp.path().join(format!("acked-{}.txt", free_port()));
        let out = Command::new("python3")
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop"))
            .args(["cluster.py", "--bootstrap", bootstrap, "produce-acked"])
            .args(args)
            .args(["--out", acked.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "produce-acked {args:?}: {text}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        let values = std::fs::read_to_string(&acked)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        (values, text)
    }

    /// Every message of partition 0 of `topic`, from the beginning.
    fn read_all(&self, topic: &str) -> Vec<String> {
        self.kcat(
            &["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q"],
            None,
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// The in-sync replicas of partition 0 of `topic`, seen from `id`.
    fn isr(&self, id: u16, topic: &str) -> Option<Vec<i64>> {
        let m = self.metadata(id, Some(topic))?;
        replica_sets(&m, topic).first().map(|(_, isr)| isr.clone())
    }

    /// Waits until every replica of partition 0 holds the same log bytes.
    fn wait_identical(&self, topic: &str, ids: &[u16], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let logs: Vec<Vec<u8>> = ids.iter().map(|&i| self.log_bytes(i, topic, 0)).collect();
            if logs.windows(2).all(|w| w[0] == w[1]) && !logs[0].is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replicas of {topic} differ: sizes {:?}\n{}",
                logs.iter().map(Vec::len).collect::<Vec<_>>(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Asserts a partition's messages are exactly `want`, in order, naming
/// the first difference (not printing thousands of lines).
fn same_log(got: &[String], want: &[String], c: &Cluster) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    let distinct: BTreeSet<&String> = got.iter().collect();
    panic!(
        "{} messages where {} were expected ({} distinct); first difference at {at}: {:?} where {:?}\n{}",
        got.len(),
        want.len(),
        distinct.len(),
        got.get(at),
        want.get(at),
        c.logs()
    );
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// One follower cut off from its leader (its link through the proxy stops
/// carrying bytes, nothing is closed): writes go on, the follower leaves
/// the ISR once it has not caught up for `replica.lag.time.max.ms`,
/// acks=all continues with the two others, and after healing the follower
/// catches up, rejoins the ISR and holds the same bytes as the leader.
#[test]
fn a_follower_cut_off_leaves_the_isr_and_rejoins_when_healed() {
    needs();
    let c = Cluster::start_proxied(3, &[]);
    let (leader, followers) = c.one_partition("cut", &["min.insync.replicas=2"]);
    let (off, kept) = (followers[0], followers[1]);
    let produce = |prefix: &str, n: usize| {
        let text: String = lines(prefix, n).iter().map(|l| format!("{l}\n")).collect();
        c.kcat(
            &["-P", "-t", "cut", "-p", "0", "-X", "acks=all"],
            Some(&text),
        );
    };
    produce("before", 100);

    c.cut(off, leader, true);
    let cut_at = Instant::now();
    let left = std::thread::scope(|s| {
        // acks=all writes while it is cut off: answered once it has left
        // the ISR (two in-sync replicas remain, min.insync.replicas=2).
        let writer = s.spawn(|| produce("during", 1000));
        let left = loop {
            if c.isr(leader, "cut")
                .is_some_and(|isr| !isr.contains(&i64::from(off)))
            {
                break cut_at.elapsed();
            }
            assert!(
                cut_at.elapsed() < Duration::from_secs(15),
                "follower {off} never left the ISR\n{}",
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        writer.join().unwrap();
        left
    });
    // replica.lag.time.max.ms is 3 s here; the leader checks every 750 ms
    // and the change goes through the quorum before Metadata shows it.
    assert!(
        left < Duration::from_millis(3000 + 1500),
        "left the ISR after {left:?}"
    );
    assert_eq!(c.isr(leader, "cut").unwrap(), {
        let mut v = vec![i64::from(leader), i64::from(kept)];
        v.sort_unstable();
        v
    });
    // The high watermark moved on without it: consumers see every write.
    let mut want = lines("before", 100);
    want.extend(lines("during", 1000));
    same_log(&c.read_all("cut"), &want, &c);
    // The leader reports it, in its metrics and on the console.
    let metrics = c.http_get(leader, "/metrics").unwrap();
    assert!(
        metrics.contains("weir_under_replicated_partitions 1")
            && metrics.contains("weir_partition_in_sync_replicas{topic=\"cut\",partition=\"0\"} 2")
            && metrics
                .contains("weir_partition_high_watermark{topic=\"cut\",partition=\"0\"} 1100"),
        "{metrics}"
    );
    let page: Value =
        serde_json::from_str(&c.http_get(leader, "/api/v1/console/topics/cut").unwrap()).unwrap();
    assert_eq!(
        page["partitions"][0]["isr"].as_array().unwrap().len(),
        2,
        "{page}"
    );
    assert_eq!(page["partitions"][0]["leader"], i64::from(leader), "{page}");

    c.cut(off, leader, false);
    c.wait_in_sync(leader, "cut", 3, Duration::from_secs(20));
    produce("after", 100);
    want.extend(lines("after", 100));
    same_log(&c.read_all("cut"), &want, &c);
    assert_eq!(
        leaders(&c.metadata(leader, Some("cut")).unwrap(), "cut"),
        vec![i64::from(leader)]
    );
    c.wait_identical("cut", &[leader, off, kept], Duration::from_secs(10));
    let metrics = c.http_get(leader, "/metrics").unwrap();
    assert!(
        metrics.contains("weir_under_replicated_partitions 0"),
        "{metrics}"
    );
}

/// Both followers cut off with `min.insync.replicas=2`: once they have
/// left the ISR, acks=all is refused at once with NOT_ENOUGH_REPLICAS
/// (nothing appended), acks=1 is still taken, and the high watermark
/// holds, so no consumer sees those writes until the followers are back.
#[test]
fn with_both_followers_cut_off_acks_all_is_refused_and_acks_1_still_works() {
    needs();
    let c = Cluster::start_proxied(3, &[]);
    let (leader, followers) = c.one_partition("alone", &["min.insync.replicas=2"]);
    let text: String = lines("before", 100)
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    c.kcat(
        &["-P", "-t", "alone", "-p", "0", "-X", "acks=all"],
        Some(&text),
    );
    let via = c.node(leader).addr();

    for &f in &followers {
        c.cut(f, leader, true);
    }
    // An acks=1 write moves the leader's log end; the followers cannot
    // follow and leave the ISR.
    let (acked, out) = c.produce_acked(
        &via,
        &[
            "--topic", "alone", "--tag", "one", "--count", "1", "--acks", "1",
        ],
    );
    assert_eq!(acked, vec!["one:0"], "{out}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.isr(leader, "alone") != Some(vec![i64::from(leader)]) {
        assert!(
            Instant::now() < deadline,
            "the ISR did not shrink to the leader: {:?}\n{}",
            c.isr(leader, "alone"),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // acks=all: refused before appending, and quickly (no retries, so the
    // client reports the broker's own answer).
    let started = Instant::now();
    let (acked, out) = c.produce_acked(
        &via,
        &[
            "--topic",
            "alone",
            "--tag",
            "all",
            "--count",
            "5",
            "--retries",
            "0",
            "--timeout-ms",
            "20000",
        ],
    );
    let took = started.elapsed();
    assert!(acked.is_empty(), "{out}");
    assert!(out.contains("failed 5 errors NOT_ENOUGH_REPLICAS"), "{out}");
    assert!(
        took < Duration::from_secs(5),
        "refusal took {took:?}: {out}"
    );
    // acks=1 still works.
    let (acked, out) = c.produce_acked(
        &via,
        &[
            "--topic", "alone", "--tag", "one-more", "--count", "50", "--acks", "1",
        ],
    );
    assert_eq!(acked.len(), 50, "{out}");
    // The high watermark held: consumers and ListOffsets stop at it.
    same_log(&c.read_all("alone"), &lines("before", 100), &c);
    let latest = c.kcat(&["-Q", "-t", "alone:0:-1"], None);
    assert!(latest.contains("offset 100"), "{latest}");

    for &f in &followers {
        c.cut(f, leader, false);
    }
    c.wait_in_sync(leader, "alone", 3, Duration::from_secs(20));
    let mut want = lines("before", 100);
    want.push("one:0".to_owned());
    want.extend((0..50).map(|i| format!("one-more:{i}")));
    same_log(&c.read_all("alone"), &want, &c);
    let mut ids = vec![leader];
    ids.extend(&followers);
    c.wait_identical("alone", &ids, Duration::from_secs(10));
}

/// SIGTERM of a broker leading partitions while an idempotent acks=all
/// producer with a 5 s delivery timeout runs: the broker first has the
/// controller move its leaderships (and take it out of the ISRs), then
/// stops; it exits cleanly within seconds, long before its 20 s session
/// would have expired, no message fails and none is duplicated; it comes
/// back in sync and, as the preferred leader, gets its partition back at
/// the next imbalance check (`auto.leader.rebalance.enable`).
#[test]
fn sigterm_moves_leadership_away_first_and_the_preferred_leader_returns() {
    needs();
    let mut c = Cluster::start_set(
        3,
        &[
            "broker.session.timeout.ms=20000",
            "leader.imbalance.check.interval.seconds=2",
        ],
    );
    c.create_replicated(1, "term", 3, 3);
    let m = c.wait_in_sync(1, "term", 3, Duration::from_secs(20));
    let victim = leaders(&m, "term")[0] as u16;
    let other = (1..=3u16).find(|&b| b != victim).unwrap();
    let producer = Command::new("python3")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop"))
        .args(["cluster.py", "--bootstrap", &c.bootstrap()])
        .args(["produce-confluent", "--topic", "term", "--tag", "t"])
        .args(["--count", "100000", "--message-timeout-ms", "5000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let stopped_at = Instant::now();
    let status = c.term(victim, Duration::from_secs(20));
    let took = stopped_at.elapsed();
    assert!(status.success(), "exit {status:?}\n{}", c.logs());
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    let log = std::fs::read_to_string(&c.node(victim).log).unwrap();
    assert!(
        log.contains("controlled shutdown: the partitions led here have other leaders"),
        "{}",
        c.logs()
    );
    // Its leaderships and ISR places went before it did.
    let m = c.metadata(other, Some("term")).unwrap();
    assert!(
        leaders(&m, "term")
            .iter()
            .all(|&l| l >= 0 && l != i64::from(victim)),
        "{:?}",
        leaders(&m, "term")
    );
    for (_, isr) in replica_sets(&m, "term") {
        assert!(!isr.contains(&i64::from(victim)), "{isr:?}");
    }
    let out = producer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "producer: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    let got = c.python(&[
        "consume",
        "--topic",
        "term",
        "--group",
        "check",
        "--expect",
        "100000",
        "--timeout",
        "60",
        "--commit-every",
        "10000",
    ]);
    assert_eq!(distinct(&got), (100000, 0), "{got}");
    c.spawn(victim);
    c.wait_brokers(3, Duration::from_secs(30));
    c.wait_in_sync(other, "term", 3, Duration::from_secs(30));
    // Back in sync, it is the preferred leader (first replica) of the
    // partition it led: the imbalance check gives it back.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = c.metadata(other, Some("term")).unwrap();
        if leaders(&m, "term") == preferred(&m, "term") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "preferred leaders did not come back: {:?} vs {:?}\n{}",
            leaders(&m, "term"),
            preferred(&m, "term"),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        leaders(&c.metadata(other, Some("term")).unwrap(), "term").contains(&i64::from(victim))
    );
}

/// The first replica of every partition of `topic` (its preferred leader),
/// as Metadata lists the replicas in assignment order.
fn preferred(m: &Value, topic: &str) -> Vec<i64> {
    partitions(m, topic)
        .iter()
        .map(|p| p["replicas"][0]["id"].as_i64().unwrap_or(-1))
        .collect()
}

/// Five kill -9s of a leader under load: two idempotent acks=all
/// producers (confluent-kafka and kafka-python) write while, five times,
/// the leader of one partition is killed, another in-sync replica takes
/// over, and the victim restarts and catches up. A checker then reads
/// every partition to its end: every acknowledged message exactly once,
/// each producer's messages in order within a partition.
#[test]
fn five_leader_kills_under_load_lose_and_reorder_nothing_acknowledged() {
    needs();
    let mut c = Cluster::start(3);
    c.create_replicated(1, "five", 3, 3);
    c.wait_in_sync(1, "five", 3, Duration::from_secs(20));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop");
    let spawn = |mode: &str, tag: &str, count: &str, extra: &[&str]| {
        Command::new("python3")
            .current_dir(&dir)
            .args(["cluster.py", "--bootstrap", &c.bootstrap(), mode])
            .args(["--topic", "five", "--tag", tag, "--count", count])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // They write until told to stop, so every kill happens under load.
    let stop = c._tmp.path().join("stop");
    let until = stop.to_str().unwrap();
    let producers = [
        spawn("produce-confluent", "c", "100000000", &["--until", until]),
        spawn(
            "produce-kafka-python",
            "k",
            "100000000",
            &["--idempotent", "--until", until],
        ),
    ];
    for round in 0..5usize {
        let m = c.wait_leaders(1 + (round as u16 % 3), "five", Duration::from_secs(20));
        let victim = leaders(&m, "five")[round % 3] as u16;
        let other = (1..=3u16).find(|&b| b != victim).unwrap();
        c.kill9(victim);
        c.leaders_until(other, "five", Duration::from_secs(15), |l| {
            l.iter().all(|&x| x >= 0 && x != i64::from(victim))
        });
        c.spawn(victim);
        c.wait_brokers(3, Duration::from_secs(30));
        c.wait_in_sync(other, "five", 3, Duration::from_secs(30));
    }
    std::fs::write(&stop, b"").unwrap();
    let mut expect = Vec::new();
    for (p, tag) in producers.into_iter().zip(["c", "k"]) {
        let out = p.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "producer: {text}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
        let n: u64 = text
            .trim()
            .strip_prefix("produced ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        // Both wrote through all five failovers.
        assert!(n > 10_000, "{tag}: only {n} written");
        expect.push(format!("{tag}={n}"));
    }
    let report = c.python(&[
        "check-log",
        "--topic",
        "five",
        "--expect-tags",
        &expect.join(","),
    ]);
    assert!(report.contains("reordered 0"), "{report}");
}

/// Every follower cut off, the ISRs shrink to their leaders, then one
/// broker dies: its partition of a topic with
/// `unclean.leader.election.enable=true` gets a live out-of-sync replica
/// as leader (what was written after the cut is lost, by configuration),
/// while its partition of a topic without it stays offline until the
/// broker returns with everything; both end in sync.
#[test]
fn unclean_election_is_a_topic_s_choice_and_off_keeps_a_partition_offline() {
    needs();
    let mut c = Cluster::start_proxied(3, &[]);
    c.create_with("clean", 3, 3, &[]);
    c.create_with("dirty", 3, 3, &["unclean.leader.election.enable=true"]);
    let clean = c.wait_in_sync(1, "clean", 3, Duration::from_secs(20));
    let dirty = c.wait_in_sync(1, "dirty", 3, Duration::from_secs(20));
    let victim = 1u16;
    let pc = leaders(&clean, "clean")
        .iter()
        .position(|&l| l == 1)
        .unwrap() as u32;
    let pd = leaders(&dirty, "dirty")
        .iter()
        .position(|&l| l == 1)
        .unwrap() as u32;
    write_lines(&c, "clean", pc, "before", "all");
    write_lines(&c, "dirty", pd, "before", "all");
    c.cut_all(true);
    write_lines(&c, "clean", pc, "cut", "1");
    write_lines(&c, "dirty", pd, "cut", "1");
    let isr_of = |topic: &str, p: u32| -> Vec<i64> {
        c.metadata(2, Some(topic))
            .map(|m| replica_sets(&m, topic)[p as usize].1.clone())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while isr_of("clean", pc) != [1] || isr_of("dirty", pd) != [1] {
        assert!(
            Instant::now() < deadline,
            "ISRs did not shrink: {:?} {:?}\n{}",
            isr_of("clean", pc),
            isr_of("dirty", pd),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.kill9(victim);
    c.cut_all(false);
    c.leaders_until(2, "dirty", Duration::from_secs(20), |l| {
        [2, 3].contains(&l[pd as usize])
    });
    let m = c.metadata(2, Some("clean")).unwrap();
    assert_eq!(
        leaders(&m, "clean")[pc as usize],
        -1,
        "clean elected a replica out of the ISR"
    );
    // The new leader never had the acks=1 writes made after the cut.
    same_log(&read_partition(&c, "dirty", pd), &lines("before", 50), &c);
    write_lines(&c, "dirty", pd, "after", "all");

    c.spawn(victim);
    c.wait_brokers(3, Duration::from_secs(30));
    c.wait_in_sync(2, "clean", 3, Duration::from_secs(30));
    c.wait_in_sync(2, "dirty", 3, Duration::from_secs(30));
    // The clean partition came back with its leader, everything kept; the
    // returned broker truncated its dirty tail to the new leader's log.
    let mut want = lines("before", 50);
    want.extend(lines("cut", 50));
    same_log(&read_partition(&c, "clean", pc), &want, &c);
    let mut want = lines("before", 50);
    want.extend(lines("after", 50));
    same_log(&read_partition(&c, "dirty", pd), &want, &c);
}

/// Writes `prefix-0..49` to one partition with `acks`.
fn write_lines(c: &Cluster, topic: &str, p: u32, prefix: &str, acks: &str) {
    let text: String = lines(prefix, 50).iter().map(|l| format!("{l}\n")).collect();
    c.kcat(
        &[
            "-P",
            "-t",
            topic,
            "-p",
            &p.to_string(),
            "-X",
            &format!("acks={acks}"),
        ],
        Some(&text),
    );
}

/// Every message of one partition, from the beginning.
fn read_partition(c: &Cluster, topic: &str, p: u32) -> Vec<String> {
    c.kcat(
        &[
            "-C",
            "-t",
            topic,
            "-p",
            &p.to_string(),
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        None,
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// A commit is answered once every in-sync replica of its
/// `__consumer_offsets` partition has it: with the coordinator's followers
/// cut off (for less than `replica.lag.time.max.ms`) no answer comes; once
/// healed it does, and the coordinator killed with kill -9 right after
/// that answer loses nothing: the next coordinator (another broker) has
/// the commit.
#[test]
fn an_acknowledged_commit_is_replicated_and_survives_its_coordinator_s_kill() {
    needs();
    let mut c = Cluster::start_proxied(3, &[]);
    c.create_replicated(1, "work", 1, 3);
    c.wait_in_sync(1, "work", 3, Duration::from_secs(20));
    write_lines(&c, "work", 0, "m", "all");
    // Creates __consumer_offsets (replicated over the three) on the way.
    let before = c.python(&["committed", "--topic", "work", "--group", "g1"]);
    assert_eq!(before.trim(), "committed 0:-1001", "{before}");
    let part = offsets_partition("g1", 16);
    let m = c.wait_in_sync(1, "__consumer_offsets", 3, Duration::from_secs(30));
    let coordinator = leaders(&m, "__consumer_offsets")[part] as u16;
    let followers: Vec<u16> = (1..=3u16).filter(|&b| b != coordinator).collect();

    let mut holder = Command::new("python3")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop"))
        .args(["cluster.py", "--bootstrap", &c.bootstrap(), "commit-once"])
        .args([
            "--topic",
            "work",
            "--group",
            "g1",
            "--count",
            "30",
            "--timeout",
            "60",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = holder.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The consumer joins and reads; the links are cut, then it commits.
    let read = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    assert_eq!(read, "read 30", "{}", c.logs());
    for &f in &followers {
        c.cut(f, coordinator, true);
    }
    {
        use std::io::Write;
        let mut stdin = holder.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
    }
    let early = rx.recv_timeout(Duration::from_millis(1500));
    for &f in &followers {
        c.cut(f, coordinator, false);
    }
    let answered_while_cut = early.is_ok();
    let line = match early {
        Ok(line) => line,
        Err(_) => rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default(),
    };
    // The answer is in: the coordinator dies at once.
    c.kill9(coordinator);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(line.trim(), "committed 0:30", "{line}\n{}", c.logs());
    c.leaders_until(
        followers[0],
        "__consumer_offsets",
        Duration::from_secs(20),
        |l| l[part] >= 0 && l[part] != i64::from(coordinator),
    );
    let after = c.python(&["committed", "--topic", "work", "--group", "g1"]);
    assert_eq!(after.trim(), "committed 0:30", "{after}\n{}", c.logs());
    assert!(
        !answered_while_cut,
        "the commit was answered while the coordinator's followers were cut off"
    );
}

/// A leader cut off from the quorum and from the other brokers while its
/// clients still reach it (three broker-only nodes, one controller-only
/// node, every link through a proxy): it cannot acknowledge an acks=all
/// write, as no follower fetches and no ISR change can commit; the
/// controller fences it and another in-sync replica takes over; after the
/// links heal it learns the new leader epoch, cuts the tail it took alone
/// where the new leader's log diverges, and the replicas end
/// byte-identical: everything acknowledged with acks=all, none of what it
/// took alone, and what the new leader took from producers that failed
/// over to it (each once, in order).
#[test]
fn a_leader_cut_off_from_quorum_and_followers_acknowledges_nothing_and_rejoins() {
    needs();
    let c = Cluster::start_proxied_roles(&["broker", "broker", "broker", "controller"], &[]);
    let (leader, followers) = c.one_partition("iso", &["min.insync.replicas=2"]);
    write_lines(&c, "iso", 0, "before", "all");

    c.isolate(leader, true);
    let cut_at = Instant::now();
    let via = c.node(leader).addr();
    // Through the cut-off leader, which still thinks it leads.
    let (acked_all, out_all) = c.produce_acked(
        &via,
        &[
            "--topic",
            "iso",
            "--tag",
            "alone-all",
            "--count",
            "20",
            "--timeout-ms",
            "4000",
        ],
    );
    let (acked_one, out_one) = c.produce_acked(
        &via,
        &[
            "--topic",
            "iso",
            "--tag",
            "alone-one",
            "--count",
            "20",
            "--acks",
            "1",
            "--timeout-ms",
            "4000",
        ],
    );
    // The rest of the cluster moved on: a follower leads.
    c.leaders_until(followers[0], "iso", Duration::from_secs(20), |l| {
        followers.contains(&(l[0] as u16))
    });
    let took = cut_at.elapsed();
    let others = format!(
        "{},{}",
        c.node(followers[0]).addr(),
        c.node(followers[1]).addr()
    );
    let (acked, out) = c.produce_acked(
        &others,
        &[
            "--topic",
            "iso",
            "--tag",
            "after",
            "--count",
            "50",
            "--timeout-ms",
            "20000",
        ],
    );
    assert_eq!(acked.len(), 50, "{out}");

    c.isolate(leader, false);
    c.wait_in_sync(followers[0], "iso", 3, Duration::from_secs(30));
    let mut want = lines("before", 50);
    want.extend((0..50).map(|i| format!("after:{i}")));
    let got = c.kcat(
        &[
            "-b",
            &others,
            "-C",
            "-t",
            "iso",
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        None,
    );
    let got: Vec<String> = got.lines().map(str::to_owned).collect();
    // The producers were given the cut-off leader only, but its metadata
    // names the other brokers, whose client links stay up: once a new
    // leader is elected a producer may fail over to it, and what that
    // leader acknowledged stays (as in Kafka). What the cut-off leader
    // took alone goes. So the log is `before`, then some alone-written
    // records (each at most once, in order), then `after`; and every
    // acks=all acknowledgement is among them, for only a leader with its
    // in-sync replicas could give one.
    let middle = got.len().saturating_sub(100);
    let (head, rest) = got.split_at(50.min(got.len()));
    let (alone, tail) = rest.split_at(middle.min(rest.len()));
    if head != &want[..50] || tail != &want[50..] {
        same_log(&got, &want, &c);
    }
    for tag in ["alone-all", "alone-one"] {
        let seq: Vec<u32> = alone
            .iter()
            .filter_map(|l| l.strip_prefix(tag)?.strip_prefix(':')?.parse().ok())
            .collect();
        assert!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "{tag} records repeated or out of order: {seq:?}\n{}",
            c.logs()
        );
    }
    assert!(
        alone
            .iter()
            .all(|l| l.starts_with("alone-all:") || l.starts_with("alone-one:")),
        "unexpected records between before and after: {alone:?}"
    );
    for a in &acked_all {
        assert!(
            alone.contains(a),
            "{a} acknowledged with acks=all and lost (a cut-off leader answered it?): {out_all}\n{}",
            c.logs()
        );
    }
    c.wait_identical(
        "iso",
        &[leader, followers[0], followers[1]],
        Duration::from_secs(10),
    );
    let log = std::fs::read_to_string(&c.node(leader).log).unwrap();
    assert!(
        log.contains("the log diverges from the leader's: truncating"),
        "the old leader kept its tail (acks=1 acknowledged {} of 20: {out_one}, new leader after {took:?})\n{}",
        acked_one.len(),
        c.logs()
    );
}
