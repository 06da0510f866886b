//! Security against the real `weir broker` binary with real clients
//! (docs/design/security.md): SCRAM users managed with confluent-kafka's
//! AdminClient, then confluent-kafka, kafka-python and kcat over
//! SASL_PLAINTEXT with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; wrong
//! passwords, unknown users and garbage refused; users kept across kill -9.
//! ACLs written with `weir acl` and confluent-kafka's AdminClient, and what
//! they allow and refuse each client, before and after a kill -9.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Broker, free_port, need_command, run_ok, run_with_stdin};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

/// A broker with a PLAINTEXT listener (where the users are managed) and a
/// SASL_PLAINTEXT one.
struct Secured {
    broker: Broker,
    sasl: u16,
}

impl Secured {
    fn start(extra: &[&str]) -> Self {
        let sasl = free_port();
        let plain = free_port();
        let listeners =
            format!("listeners=PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}");
        let mut args = vec!["--set", &listeners];
        for e in extra {
            args.push("--set");
            args.push(e);
        }
        let broker = Broker::start_on(plain, &args);
        common::wait_port(sasl);
        Self { broker, sasl }
    }

    fn sasl_addr(&self) -> String {
        format!("127.0.0.1:{}", self.sasl)
    }

    fn python(&self, bootstrap: &str, args: &[&str]) -> String {
        let out = Command::new("python3")
            .current_dir(interop_dir())
            .arg("sasl.py")
            .arg(args[0])
            .arg("--bootstrap")
            .arg(bootstrap)
            .args(&args[1..])
            .output()
            .unwrap();
        run_ok(out, &format!("sasl.py {args:?}"), &self.broker)
    }
}

fn needs() {
    need_command("kcat", "apt-get install kcat");
    let ok = Command::new("python3")
        .args(["-c", "import confluent_kafka, kafka"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3 cannot import confluent_kafka and kafka: python3 -m pip install confluent-kafka kafka-python"
    );
}

#[test]
fn scram_users_log_in_with_every_client_and_mechanism_and_bad_credentials_fail_fast() {
    needs();
    let mut s = Secured::start(&[]);
    let plain = s.broker.bootstrap();
    assert!(s.python(&plain, &["users"]).contains("users ok"));
    let sasl = s.sasl_addr();
    let logins = [
        ("PLAIN", "alice", "alice-secret"),
        ("SCRAM-SHA-256", "alice", "alice-secret"),
        ("SCRAM-SHA-512", "alice", "alice-secret"),
        ("SCRAM-SHA-512", "bob", "bob-secret"),
    ];
    for (i, (mechanism, user, password)) in logins.iter().enumerate() {
        for client in ["confluent", "kafka-python"] {
            let topic = format!("t-{client}-{i}");
            let out = s.python(
                &sasl,
                &[
                    client,
                    "--mechanism",
                    mechanism,
                    "--user",
                    user,
                    "--password",
                    password,
                    "--topic",
                    &topic,
                    "--count",
                    "2000",
                ],
            );
            assert!(
                out.contains("roundtrip ok 2000"),
                "{client} {mechanism}: {out}"
            );
        }
    }
    // kcat: produce and read back over SCRAM-SHA-256.
    let x = |k: &str, v: &str| format!("{k}={v}");
    let auth = [
        "-X".to_owned(),
        x("security.protocol", "SASL_PLAINTEXT"),
        "-X".to_owned(),
        x("sasl.mechanism", "SCRAM-SHA-256"),
        "-X".to_owned(),
        x("sasl.username", "alice"),
        "-X".to_owned(),
        x("sasl.password", "alice-secret"),
    ];
    let lines: String = (0..500).map(|i| format!("kcat-{i}\n")).collect();
    let mut produce = Command::new("kcat");
    produce.args(["-b", &sasl, "-P", "-t", "kc"]).args(&auth);
    run_ok(
        run_with_stdin(&mut produce, Some(&lines)),
        "kcat -P",
        &s.broker,
    );
    let mut consume = Command::new("kcat");
    consume
        .args(["-b", &sasl, "-C", "-t", "kc", "-o", "beginning", "-e", "-q"])
        .args(&auth);
    let got = run_ok(run_with_stdin(&mut consume, None), "kcat -C", &s.broker);
    assert_eq!(got, lines);

    // Wrong password, unknown user, a deleted user, a mechanism the user
    // has no credential for: each fails with an authentication error.
    for (mechanism, user, password) in [
        ("PLAIN", "alice", "wrong"),
        ("SCRAM-SHA-256", "alice", "wrong"),
        ("SCRAM-SHA-512", "nobody", "x"),
        ("SCRAM-SHA-256", "carol", "carol-secret"),
        ("SCRAM-SHA-256", "bob", "bob-secret"),
    ] {
        let started = Instant::now();
        let out = s.python(
            &sasl,
            &[
                "refused",
                "--mechanism",
                mechanism,
                "--user",
                user,
                "--password",
                password,
            ],
        );
        assert!(out.contains("refused"), "{out}");
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "{mechanism} {user}: took {:?}",
            started.elapsed()
        );
    }

    // Users are metadata: they survive kill -9.
    s.broker.kill9();
    s.broker.spawn();
    common::wait_port(s.sasl);
    let out = s.python(
        &sasl,
        &[
            "confluent",
            "--mechanism",
            "SCRAM-SHA-512",
            "--user",
            "bob",
            "--password",
            "bob-secret",
            "--topic",
            "after-kill",
            "--count",
            "100",
        ],
    );
    assert!(out.contains("roundtrip ok 100"), "{out}");
}

/// Reads one response frame (length-prefixed) within a few seconds;
/// `None` if the broker closed the connection.
fn read_frame(c: &mut TcpStream) -> Option<Vec<u8>> {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut len = [0u8; 4];
    c.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    c.read_exact(&mut body).ok()?;
    Some(body)
}

fn frame(api: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    // Request header v1: key, version, correlation id, client id.
    let mut f = Vec::new();
    f.extend_from_slice(&api.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&correlation.to_be_bytes());
    f.extend_from_slice(&(-1i16).to_be_bytes());
    f.extend_from_slice(body);
    let mut out = (f.len() as i32).to_be_bytes().to_vec();
    out.extend(f);
    out
}

fn closed(c: &mut TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    matches!(c.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn before_authentication_only_the_sasl_apis_are_answered_and_garbage_closes() {
    let s = Secured::start(&["sasl.server.max.receive.size=4096"]);
    let sasl = s.sasl_addr();
    // Metadata (v1, no topics: an empty array) before SASL: closed unanswered.
    let mut c = TcpStream::connect(&sasl).unwrap();
    c.write_all(&frame(3, 1, 1, &0i32.to_be_bytes())).unwrap();
    assert!(closed(&mut c), "Metadata answered before authentication");
    // ApiVersions v0 is answered, then a produce is not.
    let mut c = TcpStream::connect(&sasl).unwrap();
    c.write_all(&frame(18, 0, 2, &[])).unwrap();
    let answer = read_frame(&mut c).expect("ApiVersions answered");
    assert_eq!(&answer[..4], &2i32.to_be_bytes());
    c.write_all(&frame(0, 3, 3, &[0; 16])).unwrap();
    assert!(closed(&mut c));
    // SaslHandshake for GSSAPI: UNSUPPORTED_SASL_MECHANISM (33) with the
    // enabled list, then closed.
    let mut c = TcpStream::connect(&sasl).unwrap();
    let mut body = (6i16).to_be_bytes().to_vec();
    body.extend_from_slice(b"GSSAPI");
    c.write_all(&frame(17, 1, 4, &body)).unwrap();
    let answer = read_frame(&mut c).expect("SaslHandshake answered");
    assert_eq!(&answer[4..6], &33i16.to_be_bytes());
    assert!(String::from_utf8_lossy(&answer).contains("SCRAM-SHA-512"));
    assert!(closed(&mut c));
    // A v0 handshake, then a raw PLAIN token with a wrong password: closed.
    let mut c = TcpStream::connect(&sasl).unwrap();
    let mut body = (5i16).to_be_bytes().to_vec();
    body.extend_from_slice(b"PLAIN");
    c.write_all(&frame(17, 0, 5, &body)).unwrap();
    let answer = read_frame(&mut c).expect("SaslHandshake v0 answered");
    assert_eq!(&answer[4..6], &0i16.to_be_bytes());
    let token = b"\0nobody\0pw";
    let mut raw = (token.len() as i32).to_be_bytes().to_vec();
    raw.extend_from_slice(token);
    c.write_all(&raw).unwrap();
    assert!(closed(&mut c), "a bad raw token left the connection open");
    // A frame past sasl.server.max.receive.size before authentication.
    let mut c = TcpStream::connect(&sasl).unwrap();
    c.write_all(&100_000i32.to_be_bytes()).unwrap();
    assert!(closed(&mut c));
    // Random garbage.
    let mut c = TcpStream::connect(&sasl).unwrap();
    let _ = c.write_all(&[0x17; 64]);
    assert!(closed(&mut c));
    // The broker is unharmed: the PLAINTEXT listener still answers and a
    // SaslHandshake there is refused (ILLEGAL_SASL_STATE, 34).
    let mut c = TcpStream::connect(s.broker.bootstrap()).unwrap();
    let mut body = (5i16).to_be_bytes().to_vec();
    body.extend_from_slice(b"PLAIN");
    c.write_all(&frame(17, 1, 6, &body)).unwrap();
    let answer = read_frame(&mut c).expect("answered");
    assert_eq!(&answer[4..6], &34i16.to_be_bytes());
    assert!(!s.broker.log().contains("panicked"), "{}", s.broker.log());
}

#[test]
fn unknown_mechanisms_and_tls_listeners_are_refused_at_start() {
    for (set, needle) in [
        ("sasl.enabled.mechanisms=GSSAPI", "GSSAPI is not served"),
        (
            "listeners=SSL://127.0.0.1:1",
            "TLS listeners are not served yet",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["broker", "--data-dir"])
            .arg(tempfile::tempdir().unwrap().path())
            .args(["--set", set])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{set}: {err}"
        );
    }
}

#[test]
fn the_first_admin_is_created_before_the_broker_is_reachable() {
    needs();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "user",
            "add",
            "admin",
            "--password",
            "first-secret",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = data.join("scram-bootstrap.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains("first-secret"),
        "the password itself is stored"
    );
    // A broker with only a SASL listener: the admin logs in at once.
    let port = free_port();
    let listeners = format!("listeners=SASL_PLAINTEXT://127.0.0.1:{port}");
    let mut broker = Broker::start_in_on(&data, port, &["--set", &listeners]);
    let roundtrip = |broker: &Broker, mechanism: &str, topic: &str| {
        let out = Command::new("python3")
            .current_dir(interop_dir())
            .args(["sasl.py", "confluent", "--bootstrap"])
            .arg(broker.bootstrap())
            .args([
                "--mechanism",
                mechanism,
                "--user",
                "admin",
                "--password",
                "first-secret",
            ])
            .args(["--topic", topic, "--count", "200"])
            .output()
            .unwrap();
        run_ok(out, "sasl.py confluent", broker)
    };
    assert!(roundtrip(&broker, "SCRAM-SHA-512", "boot").contains("roundtrip ok 200"));
    assert!(!file.exists(), "the bootstrap file is removed once stored");
    // After a restart the user is still there (the metadata has it).
    broker.stop();
    broker.spawn();
    assert!(roundtrip(&broker, "PLAIN", "boot2").contains("roundtrip ok 200"));
}

/// `weir` with arguments, which must fail: its stderr.
fn weir_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "weir {args:?} succeeded: {err}");
    err
}

/// `weir` with arguments; its stdout, or a panic with its stderr.
fn weir(args: &[&str], broker: &Broker) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .unwrap();
    run_ok(out, &format!("weir {args:?}"), broker)
}

#[test]
fn acls_allow_deny_and_hide_as_kafka_does_and_survive_kill9() {
    needs();
    // The PLAINTEXT listener is the operators' (its anonymous principal a
    // super user, as a Kafka internal listener often is); clients log in
    // on the SASL one.
    let mut s = Secured::start(&[
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS",
        "auto.create.topics.enable=true",
    ]);
    let plain = s.broker.bootstrap();
    assert!(s.python(&plain, &["users"]).contains("users ok"));
    assert!(s.python(&plain, &["acl-admin"]).contains("admin ok"));
    let b = ["-b", plain.as_str()];
    let add = |args: &[&str]| {
        let mut all = vec!["acl", "add"];
        all.extend_from_slice(args);
        all.extend_from_slice(&b);
        let out = weir(&all, &s.broker);
        assert!(out.contains("added"), "{out}");
    };
    add(&[
        "--allow-principal",
        "User:alice",
        "--operation",
        "Write",
        "--topic",
        "a-",
        "--resource-pattern-type",
        "prefixed",
    ]);
    add(&[
        "--allow-principal",
        "User:bob",
        "--operation",
        "Read",
        "--topic",
        "a-data",
    ]);
    add(&[
        "--allow-principal",
        "User:bob",
        "--operation",
        "Read",
        "--group",
        "bob-",
        "--resource-pattern-type",
        "prefixed",
    ]);
    add(&[
        "--deny-principal",
        "User:bob",
        "--operation",
        "All",
        "--topic",
        "a-secret",
    ]);
    let sasl = s.sasl_addr();
    let login = |user: &str, password: &str| {
        vec![
            "--mechanism".to_owned(),
            "SCRAM-SHA-256".to_owned(),
            "--user".to_owned(),
            user.to_owned(),
            "--password".to_owned(),
            password.to_owned(),
        ]
    };
    // Each check reads in a group of its own (bob's groups are "bob-*").
    let run = std::cell::Cell::new(0);
    let check = |s: &Secured, mode: &str, user: &str, password: &str, want: &str| {
        run.set(run.get() + 1);
        let mut args = vec![
            mode.to_owned(),
            "--topic".to_owned(),
            format!("run{}", run.get()),
        ];
        if user == "bob" {
            // bob has SCRAM-SHA-512 only.
            args.extend(login(user, password));
            args[4] = "SCRAM-SHA-512".to_owned();
        } else {
            args.extend(login(user, password));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = s.python(&sasl, &args);
        assert!(out.contains(want), "{mode}: {out}");
    };
    check(&s, "acl-alice", "alice", "alice-secret", "alice ok");
    check(&s, "acl-bob", "bob", "bob-secret", "bob ok");

    // weir acl list: everything, then what applies to one topic.
    let all = weir(&["acl", "list", "-b", &plain], &s.broker);
    assert_eq!(all.lines().count(), 4, "{all}");
    assert!(
        all.contains("Topic\ta-\tPREFIXED\tUser:alice\t*\tWrite\tAllow"),
        "{all}"
    );
    let applies = weir(
        &[
            "acl",
            "list",
            "--topic",
            "a-secret",
            "--resource-pattern-type",
            "match",
            "-b",
            &plain,
        ],
        &s.broker,
    );
    assert_eq!(applies.lines().count(), 2, "{applies}");
    assert!(
        applies.contains("Deny") && applies.contains("PREFIXED"),
        "{applies}"
    );
    // The same listing as a SASL user without DESCRIBE on the cluster fails.
    let err = weir_fails(&[
        "acl",
        "list",
        "-b",
        &sasl,
        "-X",
        "security.protocol=SASL_PLAINTEXT",
        "-X",
        "sasl.mechanism=SCRAM-SHA-512",
        "-X",
        "sasl.username=bob",
        "-X",
        "sasl.password=bob-secret",
    ]);
    assert!(err.contains("error 31"), "{err}");

    // Removing alice's ACL takes her writes away at once.
    let removed = weir(
        &[
            "acl",
            "remove",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--topic",
            "a-",
            "--resource-pattern-type",
            "prefixed",
            "-b",
            &plain,
        ],
        &s.broker,
    );
    assert!(removed.contains("removed 1 ACL"), "{removed}");
    check(&s, "acl-revoked", "alice", "alice-secret", "revoked ok");

    // ACLs are metadata: after kill -9 bob is allowed and refused exactly
    // as before (reading in a new group of his prefix), alice still not.
    s.broker.kill9();
    s.broker.spawn();
    common::wait_port(s.sasl);
    let after = weir(&["acl", "list", "-b", &plain], &s.broker);
    assert_eq!(after.lines().count(), 3, "{after}");
    assert!(!after.contains("User:alice"), "{after}");
    check(&s, "acl-bob", "bob", "bob-secret", "bob ok");
    check(&s, "acl-revoked", "alice", "alice-secret", "revoked ok");
    assert!(!s.broker.log().contains("panicked"), "{}", s.broker.log());
}

#[test]
fn without_an_authorizer_the_acl_apis_answer_security_disabled_and_users_are_managed_live() {
    let s = Secured::start(&[]);
    let plain = s.broker.bootstrap();
    let err = weir_fails(&["acl", "list", "-b", &plain]);
    assert!(err.contains("error 54"), "{err}");
    // weir user add / list / delete on the running broker, and the user
    // logs in over SASL with the CLI too.
    let added = weir(
        &["user", "add", "dora", "--password", "dora-pw", "-b", &plain],
        &s.broker,
    );
    assert!(added.contains("stored in the cluster"), "{added}");
    let listed = weir(&["user", "list", "-b", &plain], &s.broker);
    assert!(
        listed.contains("dora") && listed.contains("SCRAM-SHA-256 (iterations 8192)"),
        "{listed}"
    );
    let sasl = s.sasl_addr();
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let listed = weir(
            &[
                "user",
                "list",
                "-b",
                &sasl,
                "-X",
                "security.protocol=SASL_PLAINTEXT",
                "-X",
                &format!("sasl.mechanism={mechanism}"),
                "-X",
                "sasl.username=dora",
                "-X",
                "sasl.password=dora-pw",
            ],
            &s.broker,
        );
        assert!(listed.contains("dora"), "{mechanism}: {listed}");
    }
    weir_fails(&[
        "user",
        "list",
        "-b",
        &sasl,
        "-X",
        "security.protocol=SASL_PLAINTEXT",
        "-X",
        "sasl.mechanism=SCRAM-SHA-256",
        "-X",
        "sasl.username=dora",
        "-X",
        "sasl.password=nope",
    ]);
    let deleted = weir(&["user", "delete", "dora", "-b", &plain], &s.broker);
    assert!(deleted.contains("deleted"), "{deleted}");
    let listed = weir(&["user", "list", "-b", &plain], &s.broker);
    assert!(!listed.contains("dora"), "{listed}");
}
