//! The production half of both flows against the real servers users run:
//! MariaDB (the `mysql` sink), InfluxDB 1.x (the `line_protocol` sink) and
//! nginx writing the access log a `weir agent` ships. Each test starts its
//! servers on free 127.0.0.1 ports in temporary directories and stops them
//! by PID; `.ci/run` installs them (`apt-get install -y mariadb-server
//! influxdb nginx`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Broker, Proc, free_port, need_command, sigterm, start_pipeline};

/// A program from PATH or the sbin directories Debian puts servers in.
fn program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    need_command(name, &format!("apt-get install -y {package}"));
    PathBuf::from(name)
}

fn wait_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A server stopped with SIGTERM when dropped.
struct Term(Option<Child>);

impl Drop for Term {
    fn drop(&mut self) {
        stop_child(&mut self.0);
    }
}

/// A MariaDB server with database `weir` and user `weir`/`weir`.
struct Mariadb {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mariadb {
    fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let install = Command::new(program("mariadb-install-db", "mariadb-server"))
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--tmpdir={}", dir.display()))
            .output()
            .unwrap();
        assert!(
            install.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&install.stderr)
        );
        let mut m = Mariadb {
            child: None,
            port: free_port(),
            dir,
            _tmp: tmp,
        };
        m.spawn();
        m.root_sql("CREATE USER 'weir'@'%' IDENTIFIED BY 'weir'; GRANT ALL ON *.* TO 'weir'@'%'; CREATE DATABASE weir;");
        m
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new(program("mariadbd", "mariadb-server"))
            .args([
                "--no-defaults",
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
            ])
            .arg(format!("--port={}", self.port))
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .arg(format!("--tmpdir={}", self.dir.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_port(self.port, "mariadbd", &self.dir.join("server.log"));
    }

    fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    fn url(&self) -> String {
        format!("mysql://weir:weir@127.0.0.1:{}/weir", self.port)
    }

    /// Runs SQL as root over the socket; tab-separated output.
    fn root_sql(&self, sql: &str) -> String {
        let out = Command::new(program("mariadb", "mariadb-client"))
            .args(["--no-defaults", "-u", "root", "-N", "-B"])
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .args(["-e", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn count(&self, table: &str) -> i64 {
        let out = Command::new(program("mariadb", "mariadb-client"))
            .args(["--no-defaults", "-u", "root", "-N", "-B", "weir"])
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .args(["-e", &format!("SELECT count(*) FROM {table}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(-1)
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.stop();
    }
}

fn gen_to_topic(broker: &Broker, kind: &str, count: u64, topic: &str) -> Vec<String> {
    // The same lines `weir gen` produces, also printed to compare with.
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "gen",
            kind,
            "--count",
            &count.to_string(),
            "--start",
            "1700000000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let produced = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "gen",
            kind,
            "--count",
            &count.to_string(),
            "--start",
            "1700000000",
        ])
        .args(["--brokers", &broker.bootstrap(), "--topic", topic])
        .output()
        .unwrap();
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn geo_xdb(dir: &Path) {
    let xdb = weir_pipeline::geoip::build::xdb(&[(
        std::net::Ipv4Addr::new(0, 0, 0, 1),
        std::net::Ipv4Addr::new(255, 255, 255, 254),
        "中国|0|测试省|测试市|测试网",
    )]);
    std::fs::write(dir.join("geo.xdb"), xdb).unwrap();
}

/// The `$body_bytes_sent` of combined-format lines, summed.
fn bytes_sum(lines: &[String]) -> i64 {
    lines
        .iter()
        .map(|l| {
            // ... "GET / HTTP/1.1" 200 1234 "ref" "ua"
            let after = l.split("\" ").nth(1).unwrap_or("");
            after
                .split_whitespace()
                .nth(1)
                .and_then(|b| b.parse().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// Flow B's ETL into MariaDB while MariaDB is stopped and started again:
/// every line ends up exactly once, with its bytes.
#[test]
fn mariadb_restarted_mid_run_ends_with_exact_rows() {
    let broker = Broker::start(&[]);
    let mut db = Mariadb::start();
    let tmp = tempfile::tempdir().unwrap();
    let total = 20_000;
    let lines = gen_to_topic(&broker, "nginx", total, "nginxlog");
    geo_xdb(tmp.path());
    std::fs::write(
        tmp.path().join("etl.toml"),
        format!(
            "data_dir = \"data\"\n\n[sources.kafka]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"nginxlog\"]\ngroup = \"etl\"\n\n[transforms.parse]\ntype = \"parse_nginx\"\ninputs = [\"kafka\"]\n\n[transforms.geo]\ntype = \"geoip\"\ninputs = [\"parse\"]\ndatabase = \"geo.xdb\"\n\n[sinks.mysql]\ntype = \"mysql\"\ninputs = [\"geo\"]\nurl = \"{}\"\nbatch = 500\nflush_ms = 100\n",
            broker.bootstrap(),
            db.url()
        ),
    )
    .unwrap();
    let p = start_pipeline(tmp.path(), "etl.toml");
    // Let some rows land, then take the database away for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.count("access_log") < 2000 {
        assert!(Instant::now() < deadline, "no rows arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = db.count("access_log");
    db.stop();
    assert!(
        before < total as i64,
        "the outage must come mid-run ({before} rows already)"
    );
    std::thread::sleep(Duration::from_secs(3));
    db.spawn();
    let deadline = Instant::now() + Duration::from_secs(120);
    while db.count("access_log") < total as i64 {
        assert!(
            Instant::now() < deadline,
            "{} of {total} rows",
            db.count("access_log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    sigterm(p);
    assert_eq!(db.count("access_log"), total as i64, "no duplicates");
    let sum: i64 = db
        .root_sql("SELECT sum(bytes) FROM weir.access_log")
        .parse()
        .unwrap();
    assert_eq!(sum, bytes_sum(&lines));
    let provinces = db.root_sql(
        "SELECT count(*) FROM weir.access_log WHERE province = '测试省' AND isp = '测试网'",
    );
    let private = db.root_sql("SELECT count(*) FROM weir.access_log WHERE province = 'private'");
    assert_eq!(
        provinces.parse::<i64>().unwrap() + private.parse::<i64>().unwrap(),
        total as i64
    );
    // The positions stored with the rows.
    let next = db.root_sql("SELECT next_offset FROM weir._weir_offsets WHERE stream = 'nginxlog'");
    assert_eq!(next, total.to_string());
}

/// Flow B end to end with a real nginx: requests with varied
/// X-Forwarded-For addresses, nginx's own access log shipped by `weir
/// agent` into a Weir topic, the ETL pipeline (parse_nginx `main`, geoip)
/// into MariaDB; rows and bytes equal nginx's log.
#[test]
fn nginx_access_log_to_mariadb_matches_nginx() {
    let broker = Broker::start(&[]);
    let db = Mariadb::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // nginx serving pages of several sizes, logging in the `main` format.
    let port = free_port();
    std::fs::create_dir_all(dir.join("html")).unwrap();
    for (name, size) in [("index.html", 612), ("big.html", 20_000), ("small.txt", 3)] {
        std::fs::write(dir.join("html").join(name), "x".repeat(size)).unwrap();
    }
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  log_format main '$remote_addr - $remote_user [$time_local] \"$request\" '\n    '$status $body_bytes_sent \"$http_referer\" '\n    '\"$http_user_agent\" \"$http_x_forwarded_for\"';\n\
               access_log {d}/logs/access.log main;\n  client_body_temp_path {d}/tmp_body;\n  proxy_temp_path {d}/tmp_proxy;\n  fastcgi_temp_path {d}/tmp_fcgi;\n  uwsgi_temp_path {d}/tmp_uwsgi;\n  scgi_temp_path {d}/tmp_scgi;\n\
               server {{ listen 127.0.0.1:{port}; root {d}/html; }}\n}}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let mut nginx = Term(Some(
        Command::new(program("nginx", "nginx"))
            .args([
                "-p",
                &dir.display().to_string(),
                "-c",
                &dir.join("nginx.conf").display().to_string(),
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    wait_port(port, "nginx", &dir.join("logs/error.log"));
    // The shipper and the ETL pipeline.
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "data_dir = \"agent-data\"\n[sources.logs]\ntype = \"file\"\ninclude = [\"{}/logs/access.log\"]\npoll_ms = 50\n\n[sinks.topic]\ntype = \"kafka\"\ninputs = [\"logs\"]\nbrokers = \"{}\"\ntopic = \"nginxlog\"\n",
            dir.display(),
            broker.bootstrap()
        ),
    )
    .unwrap();
    geo_xdb(dir);
    std::fs::write(
        dir.join("etl.toml"),
        format!(
            "data_dir = \"etl-data\"\n[sources.kafka]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"nginxlog\"]\ngroup = \"etl\"\n\n[transforms.parse]\ntype = \"parse_nginx\"\ninputs = [\"kafka\"]\nformat = \"main\"\n\n[transforms.geo]\ntype = \"geoip\"\ninputs = [\"parse\"]\ndatabase = \"geo.xdb\"\n\n[sinks.mysql]\ntype = \"mysql\"\ninputs = [\"geo\"]\nurl = \"{}\"\nbatch = 500\nflush_ms = 100\n",
            broker.bootstrap(),
            db.url()
        ),
    )
    .unwrap();
    let agent = Proc(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["agent", "--config", "agent.toml"])
            .current_dir(dir)
            .env("WEIR_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let etl = start_pipeline(dir, "etl.toml");
    // A load of requests with varied client addresses.
    let addresses = [
        "1.2.4.8",
        "10.0.0.7, 36.110.59.1",
        "114.114.114.114",
        "8.8.8.8",
        "192.168.1.20",
    ];
    let paths = ["/", "/big.html", "/small.txt", "/missing"];
    let requests = 3000;
    for i in 0..requests {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let xff = addresses[i % addresses.len()];
        let path = paths[i % paths.len()];
        write!(c, "GET {path}?i={i} HTTP/1.1\r\nHost: x\r\nUser-Agent: load/1.0 (\"quoted\")\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n").unwrap();
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    let log = std::fs::read_to_string(dir.join("logs/access.log")).unwrap();
    let nginx_lines: Vec<String> = log.lines().map(str::to_owned).collect();
    assert_eq!(nginx_lines.len(), requests);
    let deadline = Instant::now() + Duration::from_secs(120);
    while db.count("access_log") < requests as i64 {
        assert!(
            Instant::now() < deadline,
            "{} of {requests} rows",
            db.count("access_log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    sigterm(etl);
    sigterm(agent);
    stop_child(&mut nginx.0);
    assert_eq!(db.count("access_log"), requests as i64);
    let sum: i64 = db
        .root_sql("SELECT sum(bytes) FROM weir.access_log")
        .parse()
        .unwrap();
    assert_eq!(
        sum,
        bytes_sum(&nginx_lines),
        "bandwidth equals nginx's $body_bytes_sent"
    );
    // The client is the first public address of X-Forwarded-For.
    let clients = db.root_sql(
        "SELECT client_ip, count(*) FROM weir.access_log GROUP BY client_ip ORDER BY client_ip",
    );
    assert_eq!(
        clients,
        "1.2.4.8\t600\n114.114.114.114\t600\n127.0.0.1\t600\n36.110.59.1\t600\n8.8.8.8\t600",
        "192.168.1.20 is private: the connection's address (127.0.0.1) is the client"
    );
    let not_found = db.root_sql("SELECT count(*) FROM weir.access_log WHERE status = 404");
    assert_eq!(not_found, "750");
}

/// An InfluxDB 1.x server with database `telegraf`.
struct Influx {
    _server: Term,
    port: u16,
    _tmp: tempfile::TempDir,
}

impl Influx {
    fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let port = free_port();
        std::fs::write(
            d.join("influxdb.conf"),
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n[http]\n  enabled = true\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n",
                free_port(),
                d = d.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("influxd.log")).unwrap();
        let server = Term(Some(
            Command::new(program("influxd", "influxdb"))
                .arg("-config")
                .arg(d.join("influxdb.conf"))
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap(),
        ));
        wait_port(port, "influxd", &d.join("influxd.log"));
        let i = Influx {
            _server: server,
            port,
            _tmp: tmp,
        };
        let (status, body) = i.query("CREATE DATABASE telegraf");
        assert_eq!(status, 200, "{body}");
        i
    }

    fn query(&self, q: &str) -> (u16, String) {
        let url = weir_pipeline::http::Url::parse(&format!(
            "http://127.0.0.1:{}/query?db=telegraf",
            self.port
        ))
        .unwrap();
        let body = format!("q={}", q.replace(' ', "+"));
        let (status, answer) = weir_pipeline::http::request(
            "POST",
            &url,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
            Duration::from_secs(10),
        )
        .unwrap();
        (status, String::from_utf8_lossy(&answer).into_owned())
    }
}

/// Flow A with the time-series database of the reference: kafka-python
/// sends sensor JSON to `oceanic` on Weir's broker, a Telegraf-style
/// pipeline writes line protocol to InfluxDB, and the points query back.
#[test]
fn flow_a_kafka_python_to_influxdb() {
    common::need_python_module("kafka", "python3 -m pip install kafka-python");
    let broker = Broker::start(&[]);
    let influx = Influx::start();
    let tmp = tempfile::tempdir().unwrap();
    let count: i64 = 5000;
    let out = Command::new("python3")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop"))
        .args([
            "seed_producer.py",
            "--bootstrap",
            &broker.bootstrap(),
            "--count",
            &count.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        tmp.path().join("telegraf.toml"),
        format!(
            "data_dir = \"data\"\n[sources.kafka]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"oceanic\"]\ngroup = \"telegraf\"\nformat = \"json\"\n\n[sinks.tsdb]\ntype = \"line_protocol\"\ninputs = [\"kafka\"]\nurl = \"http://127.0.0.1:{}/write?db=telegraf\"\ngzip = true\nbatch = 1000\nflush_ms = 200\n",
            broker.bootstrap(),
            influx.port
        ),
    )
    .unwrap();
    let p = start_pipeline(tmp.path(), "telegraf.toml");
    // Each reading becomes one point (message times are distinct to the
    // nanosecond, so no point overwrites another).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, body) = influx.query("SELECT count(pressure) FROM kafka_consumer");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let n = v["results"][0]["series"][0]["values"][0][1]
            .as_i64()
            .unwrap_or(0);
        if n >= count {
            assert_eq!(n, count, "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {count} points in InfluxDB: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sigterm(p);
    let (_, body) = influx.query("SELECT * FROM kafka_consumer LIMIT 3");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let series = &v["results"][0]["series"][0];
    assert_eq!(series["name"], "kafka_consumer");
    let columns: Vec<&str> = series["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for c in ["time", "host", "pressure", "temperature", "visibility"] {
        assert!(columns.contains(&c), "{c} missing from {columns:?}");
    }
    let (_, body) = influx.query("SELECT max(pressure), max(temperature) FROM kafka_consumer");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = &v["results"][0]["series"][0]["values"][0];
    assert!(
        row[1].as_f64().unwrap() <= 10.0 && row[2].as_f64().unwrap() <= 100.0,
        "{body}"
    );
}

/// An existing table with a column mapping: rows land in the mapped
/// columns; a value the table cannot hold is rejected by MariaDB, isolated
/// from its batch and sent to the dead-letter output, and the rest stored.
#[test]
fn mysql_existing_table_mapping_and_rejected_rows() {
    let db = Mariadb::start();
    db.root_sql(
        "CREATE TABLE weir.hits (ts DATETIME(6) NOT NULL, ip VARCHAR(15) NOT NULL, sent INT NOT NULL, page VARCHAR(100))",
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("map.toml"),
        format!(
            "[sources.in]\ntype = \"stdin\"\n\n[transforms.parse]\ntype = \"parse_nginx\"\ninputs = [\"in\"]\n\n[sinks.mysql]\ntype = \"mysql\"\ninputs = [\"parse\"]\nurl = \"{}\"\ntable = \"hits\"\ncolumns = {{ ts = \"time\", ip = \"client_ip\", sent = \"bytes\", page = \"path\" }}\nbatch = 50\nflush_ms = 50\n\n[sinks.dead]\ntype = \"file\"\ninputs = [\"mysql.errors\"]\npath = \"dead.jsonl\"\n",
            db.url()
        ),
    )
    .unwrap();
    let mut lines = String::new();
    for i in 0..100 {
        // Every 25th client is an IPv6 address too long for VARCHAR(15).
        let ip = if i % 25 == 7 {
            "2001:db8:85a3::8a2e:370:7334".to_owned()
        } else {
            format!("1.2.3.{i}")
        };
        lines.push_str(&format!(
            "{ip} - - [10/Oct/2023:13:55:36 +0800] \"GET /p{i} HTTP/1.1\" 200 {} \"-\" \"ua\"\n",
            1000 + i
        ));
    }
    let out = common::run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["pipeline", "run", "map.toml"])
            .current_dir(tmp.path())
            .env("WEIR_LOG", "warn"),
        Some(&lines),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.count("hits"), 96);
    assert_eq!(
        db.root_sql("SELECT sum(sent) FROM weir.hits"),
        (0..100)
            .filter(|i| i % 25 != 7)
            .map(|i| 1000 + i)
            .sum::<i64>()
            .to_string()
    );
    assert_eq!(
        db.root_sql("SELECT ts, ip, page FROM weir.hits WHERE page = '/p0'"),
        "2023-10-10 05:55:36.000000\t1.2.3.0\t/p0",
        "time in UTC"
    );
    let dead = std::fs::read_to_string(tmp.path().join("dead.jsonl")).unwrap();
    let dead: Vec<&str> = dead.lines().collect();
    assert_eq!(dead.len(), 4);
    assert!(
        dead.iter()
            .all(|l| l.contains("2001:db8") && l.contains("1406")),
        "{dead:?}"
    );
}
