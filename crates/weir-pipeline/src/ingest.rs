//! The `http` source: InfluxDB 1.x and CnosDB compatible write endpoints,
//! so Telegraf (`outputs.http` or `outputs.influxdb`), the InfluxDB client
//! libraries and `curl` examples written for those servers send to Weir
//! unchanged.
//!
//! | endpoint | success | as |
//! |---|---|---|
//! | `POST /write?db=&precision=&u=&p=` | 204 | InfluxDB 1.x |
//! | `POST /api/v2/write?bucket=&precision=` | 204 | InfluxDB 2.x |
//! | `POST /api/v1/write?db=&precision=` | 200, empty | CnosDB |
//! | `GET/HEAD /ping`, `/api/v1/ping`, `/health` | 204 / 200 | both |
//! | `POST /query?q=CREATE DATABASE ...` | 200 | InfluxDB 1.x (Telegraf asks) |
//!
//! A write is answered only once every sink of the pipeline has stored its
//! points (the acknowledgement of the batch), so a success means durable;
//! a pipeline that cannot store them within `ack_timeout` gets a 503 and
//! the client retries. The whole body is parsed first: a bad line rejects
//! the request with 400 naming the line, and nothing of it is stored.
//! Bodies may be gzip (`Content-Encoding: gzip`); larger than `max_body`
//! (before or after decompression) is 413; basic auth or `u`/`p` when a
//! username is configured, else 401.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use crate::ack::{AckRef, AckTracker, Positions};
use crate::event::Event;
use crate::http::{Request, Response};
use crate::transforms::influx::{Precision, parse_line};

/// Settings of an `http` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// Listen address.
    pub address: String,
    /// Required user (with `password`); `None`: no authentication.
    pub username: Option<String>,
    /// Its password.
    pub password: String,
    /// Largest body accepted, compressed or not.
    pub max_body: usize,
    /// How long a write waits for the sinks to store it.
    pub ack_timeout: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:8902".to_owned(),
            username: None,
            password: String::new(),
            max_body: 25_000_000,
            ack_timeout: Duration::from_secs(30),
        }
    }
}

/// Which server's conventions a request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Influx,
    CnosDb,
}

fn error(dialect: Dialect, status: u16, message: &str) -> Response {
    match dialect {
        Dialect::Influx => Response::json(status, &serde_json::json!({ "error": message }))
            .with_header("X-Influxdb-Error", message),
        Dialect::CnosDb => Response::json(
            status,
            &serde_json::json!({ "error_code": status.to_string(), "error_message": message }),
        ),
    }
}

/// What a write hands its points to: the database named by the request
/// (`db`, or `bucket` for `/api/v2/write`; `public` when absent) and the
/// points; an error is the status and message to answer with (503 when
/// the receiver is gone, 400 when a store refused the points, ...).
pub type Emit = Box<dyn Fn(&str, Vec<Event>) -> Result<(), (u16, String)> + Send + Sync>;

/// Serves the write endpoints through `emit`.
pub struct Ingest {
    cfg: IngestConfig,
    emit: Emit,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("cfg", &self.cfg).finish()
    }
}

impl Ingest {
    /// A handler for `cfg` emitting through `emit`.
    pub fn new(
        cfg: IngestConfig,
        emit: impl Fn(&str, Vec<Event>) -> Result<(), (u16, String)> + Send + Sync + 'static,
    ) -> Self {
        Self {
            cfg,
            emit: Box::new(emit),
        }
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request) -> Response {
        let dialect = if req.path.starts_with("/api/v1/") {
            Dialect::CnosDb
        } else {
            Dialect::Influx
        };
        match (req.method.as_str(), req.path.as_str()) {
            ("GET" | "HEAD", "/ping") => Response::empty(204)
                .with_header("X-Influxdb-Version", "1.8.10")
                .with_header("X-Influxdb-Build", "OSS"),
            ("GET" | "HEAD", "/api/v1/ping") => Response::json(
                200,
                &serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "status": "healthy" }),
            ),
            ("GET" | "HEAD", "/health") => Response::json(
                200,
                &serde_json::json!({ "name": "weir", "status": "pass", "message": "ready for queries and writes" }),
            ),
            ("GET" | "POST", "/query") => self.query(req),
            ("POST", "/write" | "/api/v2/write" | "/api/v1/write") => self.write(req, dialect),
            (
                _,
                "/write" | "/api/v2/write" | "/api/v1/write" | "/query" | "/ping" | "/api/v1/ping",
            ) => error(
                dialect,
                405,
                &format!("{} is not allowed on {}", req.method, req.path),
            ),
            _ => error(dialect, 404, &format!("no endpoint {}", req.path)),
        }
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(user) = &self.cfg.username else {
            return true;
        };
        let given = req.basic_auth().or_else(|| {
            req.param("u")
                .map(|u| (u.to_owned(), req.param("p").unwrap_or("").to_owned()))
        });
        given.is_some_and(|(u, p)| &u == user && p == self.cfg.password)
    }

    /// Telegraf's `outputs.influxdb` creates its database first; databases
    /// need no creating here.
    fn query(&self, req: &Request) -> Response {
        if !self.authorized(req) {
            return error(Dialect::Influx, 401, "authorization failed");
        }
        let body_q = (req.method == "POST")
            .then(|| {
                crate::http::split_target(&format!("?{}", String::from_utf8_lossy(&req.body)))
                    .1
                    .into_iter()
                    .find(|(k, _)| k == "q")
                    .map(|(_, v)| v)
            })
            .flatten();
        let q = req
            .param("q")
            .map(str::to_owned)
            .or(body_q)
            .unwrap_or_default();
        if q.trim_start()
            .to_ascii_uppercase()
            .starts_with("CREATE DATABASE")
        {
            return Response::json(
                200,
                &serde_json::json!({ "results": [{ "statement_id": 0 }] }),
            );
        }
        error(
            Dialect::Influx,
            400,
            "only CREATE DATABASE is answered on /query; query the store with SQL",
        )
    }

    fn write(&self, req: &Request, dialect: Dialect) -> Response {
        if !self.authorized(req) {
            return error(dialect, 401, "authorization failed");
        }
        let precision = match Precision::parse(req.param("precision").unwrap_or("")) {
            Some(p) => p,
            None => {
                return error(
                    dialect,
                    400,
                    &format!(
                        "invalid precision {:?}",
                        req.param("precision").unwrap_or("")
                    ),
                );
            }
        };
        let body = match req.header("content-encoding").map(str::to_ascii_lowercase) {
            None => req.body.clone(),
            Some(e) if e == "identity" => req.body.clone(),
            Some(e) if e == "gzip" => {
                let mut out = Vec::new();
                let read = flate2::read::GzDecoder::new(&req.body[..])
                    .take(self.cfg.max_body as u64 + 1)
                    .read_to_end(&mut out);
                match read {
                    Err(e) => return error(dialect, 400, &format!("bad gzip body: {e}")),
                    Ok(n) if n > self.cfg.max_body => {
                        return error(dialect, 413, "decompressed body too large");
                    }
                    Ok(_) => out,
                }
            }
            Some(e) => return error(dialect, 415, &format!("unsupported Content-Encoding {e:?}")),
        };
        let Ok(text) = std::str::from_utf8(&body) else {
            return error(dialect, 400, "body is not UTF-8");
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let mut events = Vec::new();
        for (i, line) in text.lines().enumerate() {
            match parse_line(line, precision, now) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => {}
                Err(e) => {
                    return error(
                        dialect,
                        400,
                        &format!("unable to parse line {}: '{line:.200}': {e}", i + 1),
                    );
                }
            }
        }
        if !events.is_empty() {
            let tracker = Arc::new(AckTracker::default());
            let ack = tracker.register(Positions::new());
            for e in &mut events {
                e.ack = Some(AckRef(ack.clone()));
            }
            drop(ack);
            let db = req
                .param("db")
                .or_else(|| req.param("bucket"))
                .filter(|d| !d.is_empty())
                .unwrap_or("public");
            if let Err((status, why)) = (self.emit)(db, events) {
                return error(dialect, status, &why);
            }
            if !tracker.wait_idle(self.cfg.ack_timeout) {
                return error(dialect, 503, "the points were not stored in time; retry");
            }
        }
        match dialect {
            Dialect::Influx => Response::empty(204),
            Dialect::CnosDb => Response::empty(200),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Mutex;

    fn ingest(cfg: IngestConfig) -> (Ingest, Arc<Mutex<Vec<Event>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let i = Ingest::new(cfg, move |_db: &str, batch: Vec<Event>| {
            // Stored: keep the data, drop the acknowledgements.
            sink.lock().unwrap().extend(batch.into_iter().map(|mut e| {
                e.ack = None;
                e
            }));
            Ok(())
        });
        (i, got)
    }

    fn post(path: &str, body: &[u8], headers: &[(&str, &str)]) -> Request {
        let (path, query) = crate::http::split_target(path);
        Request {
            method: "POST".to_owned(),
            path,
            query,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn influx_and_cnosdb_writes_answer_as_those_servers_do() {
        let (i, got) = ingest(IngestConfig::default());
        let r = i.handle(&post(
            "/write?db=telegraf&precision=s",
            b"cpu,host=a usage=1.5 1700000000\n",
            &[],
        ));
        assert_eq!(r.status, 204);
        let r = i.handle(&post("/api/v1/write?db=public", b"m v=1i\nm v=2i 5\n", &[]));
        assert_eq!((r.status, r.body.len()), (200, 0));
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].timestamp_ns, 1_700_000_000_000_000_000);
        assert_eq!(got[0].tags.get("host").map(|t| t.as_str()), Some("a"));
        assert_eq!(got[2].timestamp_ns, 5);
    }

    #[test]
    fn a_bad_line_rejects_the_whole_body_naming_the_line() {
        let (i, got) = ingest(IngestConfig::default());
        let r = i.handle(&post("/write?db=x", b"ok v=1\n\nbad line here\n", &[]));
        assert_eq!(r.status, 400);
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            body.contains("line 3") && body.contains("bad line here"),
            "{body}"
        );
        assert!(
            got.lock().unwrap().is_empty(),
            "nothing of a rejected body is stored"
        );
        let r = i.handle(&post("/api/v1/write?db=x", b"\xff v=1", &[]));
        assert_eq!(r.status, 400);
        assert!(String::from_utf8(r.body).unwrap().contains("error_message"));
        let r = i.handle(&post("/write?precision=fortnight", b"m v=1", &[]));
        assert_eq!(r.status, 400);
    }

    #[test]
    fn gzip_auth_and_limits() {
        let (i, got) = ingest(IngestConfig {
            username: Some("root".to_owned()),
            max_body: 1000,
            ..IngestConfig::default()
        });
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"m v=1\nm v=2\n").unwrap();
        let body = gz.finish().unwrap();
        let root = format!("Basic {}", crate::http::base64_encode(b"root:"));
        let r = i.handle(&post(
            "/api/v1/write?db=t",
            &body,
            &[("Content-Encoding", "gzip"), ("Authorization", &root)],
        ));
        assert_eq!(r.status, 200);
        assert_eq!(got.lock().unwrap().len(), 2);
        assert_eq!(
            i.handle(&post("/write?u=root&p=", b"m v=1", &[])).status,
            204
        );
        assert_eq!(i.handle(&post("/write", b"m v=1", &[])).status, 401);
        assert_eq!(
            i.handle(&post("/write?u=root&p=wrong", b"m v=1", &[]))
                .status,
            401
        );
        // A gzip bomb is cut at max_body.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b'#'; 100_000]).unwrap();
        let bomb = gz.finish().unwrap();
        let r = i.handle(&post(
            "/write",
            &bomb,
            &[("Content-Encoding", "gzip"), ("Authorization", &root)],
        ));
        assert_eq!(r.status, 413);
        let r = i.handle(&post(
            "/write",
            b"not gzip",
            &[("Content-Encoding", "gzip"), ("Authorization", &root)],
        ));
        assert_eq!(r.status, 400);
        let r = i.handle(&post(
            "/write",
            b"m v=1",
            &[("Content-Encoding", "br"), ("Authorization", &root)],
        ));
        assert_eq!(r.status, 415);
    }

    #[test]
    fn telegraf_handshakes_are_answered() {
        let (i, _) = ingest(IngestConfig::default());
        let get = |p: &str| {
            let mut r = post(p, b"", &[]);
            r.method = "GET".to_owned();
            i.handle(&r)
        };
        assert_eq!(get("/ping").status, 204);
        assert_eq!(get("/api/v1/ping").status, 200);
        assert_eq!(
            get("/query?q=CREATE%20DATABASE%20%22telegraf%22").status,
            200
        );
        assert_eq!(
            i.handle(&post("/query", b"q=CREATE+DATABASE+%22t%22", &[]))
                .status,
            200
        );
        assert_eq!(get("/query?q=SELECT%201").status, 400);
        assert_eq!(get("/write").status, 405);
        assert_eq!(get("/nothing").status, 404);
    }

    #[test]
    fn a_write_waits_until_the_sinks_stored_it() {
        let held = Arc::new(Mutex::new(Vec::new()));
        let h = held.clone();
        let i = Ingest::new(
            IngestConfig {
                ack_timeout: Duration::from_millis(200),
                ..IngestConfig::default()
            },
            move |_db: &str, b: Vec<Event>| {
                h.lock().unwrap().extend(b); // never stored
                Ok(())
            },
        );
        assert_eq!(i.handle(&post("/write", b"m v=1", &[])).status, 503);
        held.lock().unwrap().clear();
        let gone = Ingest::new(IngestConfig::default(), |_, _| {
            Err((503, "the pipeline is shutting down".to_owned()))
        });
        assert_eq!(gone.handle(&post("/write", b"m v=1", &[])).status, 503);
    }
}
