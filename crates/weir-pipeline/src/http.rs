//! A small HTTP/1.1 server and client over std sockets: enough for the
//! InfluxDB / CnosDB write endpoints (ingest), for sending line protocol to
//! those servers, and for the SQL and metrics endpoints that share the
//! port. Bodies by `Content-Length` or chunked; keep-alive; gzip bodies are
//! the caller's business (`Content-Encoding` is passed through).
//!
//! Every malformed request gets a 4xx answer and the connection closes; no
//! input makes a thread panic, and bodies are bounded by `max_body`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Longest request or status line plus headers accepted.
const MAX_HEAD: usize = 64 << 10;
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;

/// A request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, percent-decoded.
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers (names lower-case).
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked, still encoded as `Content-Encoding` says).
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `Authorization: Basic` credentials.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        let v = self.header("authorization")?;
        let (scheme, rest) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let text = String::from_utf8(base64_decode(rest.trim())?).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_owned(), p.to_owned()))
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers besides `Content-Length` and `Connection`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body of `content_type`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    /// No body.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON body.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status, "application/json", value.to_string())
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The peer closed or the socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Not HTTP as expected (status to answer with, and why).
    #[error("{1}")]
    Bad(u16, String),
}

fn bad(status: u16, why: impl Into<String>) -> HttpError {
    HttpError::Bad(status, why.into())
}

/// Reads a CRLF (or LF) terminated line, at most `limit` bytes.
fn read_line(r: &mut impl BufRead, limit: &mut usize) -> Result<String, HttpError> {
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(*limit as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(HttpError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    if n > *limit || !line.ends_with(b"\n") {
        return Err(bad(431, "header section too large"));
    }
    *limit -= n;
    while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad(400, "header is not UTF-8"))
}

/// Reads the start line and headers.
fn read_head(r: &mut impl BufRead) -> Result<(String, Vec<(String, String)>), HttpError> {
    let mut limit = MAX_HEAD;
    let mut start = read_line(r, &mut limit)?;
    while start.is_empty() {
        start = read_line(r, &mut limit)?; // stray CRLF between requests
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, &mut limit)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad(400, format!("malformed header line {line:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    Ok((start, headers))
}

/// Reads a body framed by the headers (`None` length: until close, for
/// responses only).
fn read_body(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    max_body: usize,
    until_close: bool,
) -> Result<Vec<u8>, HttpError> {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut limit = 1024;
            let size_line = read_line(r, &mut limit)?;
            let size_text = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| bad(400, format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailers, then the blank line.
                let mut limit = MAX_HEAD;
                while !read_line(r, &mut limit)?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > max_body {
                return Err(bad(413, format!("body larger than {max_body} bytes")));
            }
            let at = body.len();
            body.resize(at + size, 0);
            r.read_exact(&mut body[at..])?;
            let mut limit = 2;
            if !read_line(r, &mut limit)?.is_empty() {
                return Err(bad(400, "chunk not followed by CRLF"));
            }
        }
    }
    match get("content-length") {
        Some(v) => {
            let len: usize = v
                .parse()
                .map_err(|_| bad(400, format!("bad Content-Length {v:?}")))?;
            if len > max_body {
                return Err(bad(
                    413,
                    format!("body of {len} bytes is larger than {max_body}"),
                ));
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body)?;
            Ok(body)
        }
        None if until_close => {
            let mut body = Vec::new();
            r.take(max_body as u64 + 1).read_to_end(&mut body)?;
            if body.len() > max_body {
                return Err(bad(413, "response too large"));
            }
            Ok(body)
        }
        None => Ok(Vec::new()),
    }
}

/// Decodes `%XX` escapes; in a query `+` is a space, in a path it is `+`.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a request target into path and query parameters.
pub fn split_target(target: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect();
    (percent_decode(path, false), params)
}

/// Reads one request from a connection (`Ok(None)`: closed cleanly).
pub fn read_request(r: &mut impl BufRead, max_body: usize) -> Result<Option<Request>, HttpError> {
    let (start, headers) = match read_head(r) {
        Ok(h) => h,
        Err(HttpError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut parts = start.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(400, format!("malformed request line {start:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(400, format!("unsupported protocol {version:?}")));
    }
    let body = read_body(r, &headers, max_body, false)?;
    let (path, query) = split_target(target);
    Ok(Some(Request {
        method: method.to_owned(),
        path,
        query,
        headers,
        body,
    }))
}

/// Writes a response.
pub fn write_response(
    w: &mut impl Write,
    resp: &Response,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(&resp.body)?;
    w.flush()
}

/// What serves requests.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// One of the server's connection slots, given back when dropped.
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running server; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// Binds `addr` and serves `handler` on a thread per connection.
    pub fn start(addr: &str, max_body: usize, handler: Handler) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let active = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new()
            .name("weir-http".to_owned())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    while active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    active.fetch_add(1, Ordering::Relaxed);
                    let (handler, count, flag) = (handler.clone(), active.clone(), flag.clone());
                    let spawned = std::thread::Builder::new()
                        .name("weir-http-conn".to_owned())
                        .spawn(move || {
                            // Released even if the handler panics.
                            let _slot = Slot(count);
                            serve_connection(conn, max_body, &handler, &flag);
                        });
                    if spawned.is_err() {
                        active.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            })?;
        Ok(Self {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_connection(conn: TcpStream, max_body: usize, handler: &Handler, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = conn.set_nodelay(true);
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut w = std::io::BufWriter::new(write_half);
    let mut r = BufReader::new(conn);
    while !stop.load(Ordering::Relaxed) {
        match read_request(&mut r, max_body) {
            Ok(None) | Err(HttpError::Io(_)) => return,
            Err(HttpError::Bad(status, why)) => {
                let resp = Response::json(status, &serde_json::json!({ "error": why }));
                let _ = write_response(&mut w, &resp, false);
                return;
            }
            Ok(Some(req)) => {
                let keep_alive = !req
                    .header("connection")
                    .is_some_and(|c| c.eq_ignore_ascii_case("close"));
                let head_only = req.method == "HEAD";
                let mut resp = handler(req);
                if head_only {
                    resp.body.clear();
                }
                if write_response(&mut w, &resp, keep_alive).is_err() || !keep_alive {
                    return;
                }
            }
        }
    }
}

/// An `http://host:port/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port`.
    pub authority: String,
    /// Path and query.
    pub target: String,
}

impl Url {
    /// Parses an `http://` URL (the port defaults to 80).
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
        let (authority, target) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            target: target.to_owned(),
        })
    }
}

/// Sends one request and reads the answer: (status, body). One connection
/// per call; `timeout` bounds connecting, sending and reading.
pub fn request(
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let addr = url
        .authority
        .to_socket_addrs()
        .map_err(|e| format!("resolving {}: {e}", url.authority))?
        .next()
        .ok_or_else(|| format!("{} has no address", url.authority))?;
    let conn = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connecting to {}: {e}", url.authority))?;
    let _ = conn.set_read_timeout(Some(timeout));
    let _ = conn.set_write_timeout(Some(timeout));
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.target,
        url.authority,
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut w = &conn;
    w.write_all(head.as_bytes())
        .and_then(|()| w.write_all(body))
        .map_err(|e| format!("sending to {}: {e}", url.authority))?;
    let mut r = BufReader::new(&conn);
    let (start, resp_headers) =
        read_head(&mut r).map_err(|e| format!("reading the answer of {}: {e}", url.authority))?;
    let status: u16 = start
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{}: malformed status line {start:?}", url.authority))?;
    let body = read_body(&mut r, &resp_headers, 64 << 20, true)
        .map_err(|e| format!("reading the answer of {}: {e}", url.authority))?;
    Ok((status, body))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` when malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, max: usize) -> Result<Option<Request>, HttpError> {
        read_request(&mut BufReader::new(raw.as_bytes()), max)
    }

    #[test]
    fn requests_with_length_chunks_and_queries() {
        let r = parse(
            "POST /write?db=tele%20graf&precision=ms HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nAuthorization: Basic cm9vdDo=\r\n\r\nhello",
            100,
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/write"));
        assert_eq!(r.param("db"), Some("tele graf"));
        assert_eq!(r.param("precision"), Some("ms"));
        assert_eq!(r.body, b"hello");
        assert_eq!(r.basic_auth(), Some(("root".to_owned(), String::new())));
        let r = parse(
            "POST /api/v1/write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            100,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse("", 100).unwrap().is_none());
    }

    #[test]
    fn malformed_or_oversized_requests_are_errors_not_panics() {
        for (raw, status) in [
            ("GARBAGE\r\n\r\n", 400),
            ("GET / SPDY/3\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", 413),
            ("POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n", 400),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfff\r\n",
                413,
            ),
            ("GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
        ] {
            match parse(raw, 100) {
                Err(HttpError::Bad(s, _)) => assert_eq!(s, status, "{raw:?}"),
                other => panic!("{raw:?}: {other:?}"),
            }
        }
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(&huge, 100), Err(HttpError::Bad(431, _))));
        assert!(matches!(
            parse("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort", 100),
            Err(HttpError::Io(_))
        ));
    }

    #[test]
    fn base64_round_trips() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "root:"] {
            let e = base64_encode(s.as_bytes());
            assert_eq!(base64_decode(&e).unwrap(), s.as_bytes(), "{s}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn server_and_client_talk() {
        let server = Server::start(
            "127.0.0.1:0",
            1 << 20,
            Arc::new(|req: Request| {
                Response::new(
                    200,
                    "text/plain",
                    format!("{} {} {}", req.method, req.path, req.body.len()),
                )
            }),
        )
        .unwrap();
        let url = Url::parse(&format!("http://{}/x?y=1", server.local_addr())).unwrap();
        let (status, body) = request(
            "POST",
            &url,
            &[("X-A", "b")],
            b"12345",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, b"POST /x 5");
        // Keep-alive: two requests on one connection.
        let mut c = TcpStream::connect(server.local_addr()).unwrap();
        c.write_all(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut all = String::new();
        c.read_to_string(&mut all).unwrap();
        assert!(
            all.contains("GET /a 0") && all.contains("GET /b 0"),
            "{all}"
        );
        // Garbage gets a 400 and the server keeps serving.
        let mut g = TcpStream::connect(server.local_addr()).unwrap();
        g.write_all(b"\x16\x03\x01 nonsense\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = g.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert_eq!(
            request("GET", &url, &[], b"", Duration::from_secs(5))
                .unwrap()
                .0,
            200
        );
        assert!(Url::parse("https://x").is_err());
        assert_eq!(Url::parse("http://h/p").unwrap().authority, "h:80");
    }
}
