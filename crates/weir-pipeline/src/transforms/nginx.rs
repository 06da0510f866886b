//! `parse_nginx`: nginx access-log lines into events, for `combined`,
//! `main` (combined plus `$http_x_forwarded_for`) or any `log_format`
//! string. Matching backtracks over the literal text between variables, so
//! quotes inside a user agent or a path do not break it; `\xHH` escapes are
//! decoded; `-` means absent; the time zone of `$time_local` is kept.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::event::{Event, Text, Value};
use crate::transforms::ParseError;
use crate::transforms::time::{civil_to_unix, parse_rfc3339_ns};

/// nginx's predefined `combined` format.
pub const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;
/// The `main` format of nginx's default configuration.
pub const MAIN: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Lit(String),
    Var(String),
}

/// A compiled access-log format.
#[derive(Debug, Clone)]
pub struct NginxParser {
    items: Vec<Item>,
    name: Text,
}

/// Why a `log_format` string is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log_format: {0}")]
pub struct FormatError(String);

impl NginxParser {
    /// `format` is `combined`, `main` or a `log_format` string; events are
    /// named `name`.
    pub fn new(format: &str, name: &str) -> Result<Self, FormatError> {
        let text = match format {
            "combined" => COMBINED,
            "main" => MAIN,
            other => other,
        };
        let mut items = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                lit.push(c);
                continue;
            }
            let braced = chars.peek() == Some(&'{');
            if braced {
                chars.next();
            }
            let mut var = String::new();
            while let Some(&n) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    var.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            if braced && chars.next() != Some('}') {
                return Err(FormatError(format!("unclosed ${{{var}")));
            }
            if var.is_empty() {
                lit.push('$');
                continue;
            }
            if !lit.is_empty() {
                items.push(Item::Lit(std::mem::take(&mut lit)));
            } else if matches!(items.last(), Some(Item::Var(_))) {
                return Err(FormatError(format!(
                    "${var} follows another variable with no text between them"
                )));
            }
            items.push(Item::Var(var));
        }
        if !lit.is_empty() {
            items.push(Item::Lit(lit));
        }
        if !items.iter().any(|i| matches!(i, Item::Var(_))) {
            return Err(FormatError("no variables".to_owned()));
        }
        Ok(Self {
            items,
            name: name.into(),
        })
    }

    /// Parses one line.
    pub fn parse(&self, line: &str) -> Result<Event, ParseError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut caps = Vec::with_capacity(self.items.len());
        let mut budget = 10_000u32;
        if !match_items(&self.items, line, 0, &mut caps, &mut budget) {
            return Err(ParseError::new("line does not match the log format"));
        }
        let mut e = Event {
            name: self.name.clone(),
            ..Event::default()
        };
        let mut remote_addr = None;
        let mut forwarded = None;
        for (var, range) in caps {
            let raw = &line[range];
            let value = unescape(raw);
            let value = value.as_ref();
            match var {
                "remote_addr" => {
                    value.parse::<IpAddr>().map_err(|_| {
                        ParseError::new(format!("remote_addr {value:?} is not an IP address"))
                    })?;
                    let text = Text::from(value);
                    remote_addr = Some(text.clone());
                    e.fields
                        .insert(Text::new_static("remote_addr"), Value::Str(text));
                }
                "time_local" => {
                    let (ns, tz) = parse_time_local(value)
                        .ok_or_else(|| ParseError::new(format!("bad time_local {value:?}")))?;
                    e.timestamp_ns = ns;
                    e.fields
                        .insert(Text::new_static("time_zone"), Value::Str(tz.into()));
                }
                "time_iso8601" => {
                    e.timestamp_ns = parse_rfc3339_ns(value)
                        .ok_or_else(|| ParseError::new(format!("bad time_iso8601 {value:?}")))?;
                }
                "request" => {
                    if value != "-" && !value.is_empty() {
                        let mut parts = value.splitn(3, ' ');
                        if let Some(m) = parts.next() {
                            e.fields
                                .insert(Text::new_static("method"), Value::Str(m.into()));
                        }
                        if let Some(p) = parts.next() {
                            e.fields
                                .insert(Text::new_static("path"), Value::Str(p.into()));
                        }
                        if let Some(p) = parts.next() {
                            e.fields
                                .insert(Text::new_static("protocol"), Value::Str(p.into()));
                        }
                    }
                }
                "status" => {
                    let s: i64 = value
                        .parse()
                        .map_err(|_| ParseError::new(format!("bad status {value:?}")))?;
                    e.fields.insert(Text::new_static("status"), Value::Int(s));
                }
                "body_bytes_sent" | "bytes_sent" => {
                    let b: i64 = if value == "-" {
                        0
                    } else {
                        value
                            .parse()
                            .map_err(|_| ParseError::new(format!("bad {var} {value:?}")))?
                    };
                    e.fields.insert(Text::new_static("bytes"), Value::Int(b));
                }
                "request_time" | "upstream_response_time" => {
                    if let Ok(t) = value.parse::<f64>() {
                        e.fields.insert(var.into(), Value::Float(t));
                    }
                }
                _ if value == "-" || value.is_empty() => {}
                "http_referer" => {
                    e.fields
                        .insert(Text::new_static("referer"), Value::Str(value.into()));
                }
                "http_user_agent" => {
                    e.fields
                        .insert(Text::new_static("user_agent"), Value::Str(value.into()));
                }
                "http_x_forwarded_for" => {
                    forwarded = value
                        .split(',')
                        .map(str::trim)
                        .find(|p| p.parse::<IpAddr>().is_ok_and(|ip| !is_private(&ip)))
                        .map(Text::from);
                    e.fields.insert(
                        Text::new_static("x_forwarded_for"),
                        Value::Str(value.into()),
                    );
                }
                other => {
                    e.fields.insert(other.into(), Value::Str(value.into()));
                }
            }
        }
        if let Some(ip) = forwarded.or(remote_addr) {
            e.fields
                .insert(Text::new_static("client_ip"), Value::Str(ip));
        }
        Ok(e)
    }
}

/// Backtracking match of the format items against `line` from `pos`,
/// recording (variable, byte range) captures.
fn match_items<'a>(
    items: &'a [Item],
    line: &str,
    pos: usize,
    caps: &mut Vec<(&'a str, std::ops::Range<usize>)>,
    budget: &mut u32,
) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match items.first() {
        None => pos == line.len(),
        Some(Item::Lit(l)) => {
            line[pos..].starts_with(l.as_str())
                && match_items(&items[1..], line, pos + l.len(), caps, budget)
        }
        Some(Item::Var(v)) => match items.get(1) {
            None => {
                caps.push((v, pos..line.len()));
                true
            }
            Some(Item::Lit(next)) => {
                let mut from = pos;
                while let Some(i) = find_literal(&line[from..], next) {
                    let end = from + i;
                    caps.push((v, pos..end));
                    if match_items(&items[1..], line, end, caps, budget) {
                        return true;
                    }
                    caps.pop();
                    from = end + next.len().max(1);
                    if from > line.len() || *budget == 0 {
                        break;
                    }
                }
                false
            }
            // Rejected when the format is compiled.
            Some(Item::Var(_)) => false,
        },
    }
}

/// Where `lit` (never empty) first occurs in `hay`: a scan for its first
/// byte, then a comparison. The literals of log formats are a few bytes
/// long, where this beats building a substring searcher per call.
fn find_literal(hay: &str, lit: &str) -> Option<usize> {
    let (&first, _) = lit.as_bytes().split_first()?;
    let b = hay.as_bytes();
    let mut at = 0;
    while let Some(i) = b.get(at..)?.iter().position(|&c| c == first) {
        if b[at + i..].starts_with(lit.as_bytes()) {
            return Some(at + i);
        }
        at += i + 1;
    }
    None
}

/// Decodes nginx's `\xHH` escapes (bytes, then UTF-8, lossily).
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.as_bytes().contains(&b'\\') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1] == b'x'
            && let (Some(h), Some(l)) = (hex(b[i + 2]), hex(b[i + 3]))
        {
            out.push(h * 16 + l);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `10/Oct/2000:13:55:36 -0700` -> (ns since epoch, "-0700").
fn parse_time_local(s: &str) -> Option<(i64, &str)> {
    let (dt, tz) = s.split_once(' ')?;
    let mut it = dt.split(['/', ':']);
    let day: u32 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = it.next()?.parse().ok()?;
    let h: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let sec: i64 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let tzb = tz.as_bytes();
    if tzb.len() != 5 || !(tzb[0] == b'+' || tzb[0] == b'-') {
        return None;
    }
    let tzh: i64 = tz[1..3].parse().ok()?;
    let tzm: i64 = tz[3..5].parse().ok()?;
    let offset = (tzh * 3600 + tzm * 60) * if tzb[0] == b'-' { -1 } else { 1 };
    let secs = civil_to_unix(year, month, day, h, m, sec)? - offset;
    Some((secs * 1_000_000_000, tz))
}

/// Private, loopback, link-local, CGNAT, unspecified, documentation and
/// unique-local addresses: not where a visitor is.
pub fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] >= 224
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private(&IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(e: &Event, k: &str) -> Option<String> {
        e.fields.get(k).map(|v| v.to_string())
    }

    /// (format, line, expected (field, value) pairs; None = must fail)
    fn check(format: &str, line: &str, want: Option<&[(&str, &str)]>) {
        let p = NginxParser::new(format, "access_log").unwrap();
        match (p.parse(line), want) {
            (Ok(e), Some(want)) => {
                for (k, v) in want {
                    assert_eq!(s(&e, k).as_deref(), Some(*v), "field {k} of {line}: {e:?}");
                }
            }
            (Err(_), None) => {}
            (got, _) => panic!("{line}: unexpected {got:?}"),
        }
    }

    #[test]
    fn golden_lines() {
        check(
            "combined",
            r#"1.180.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#,
            Some(&[
                ("client_ip", "1.180.3.4"),
                ("method", "GET"),
                ("path", "/apache_pb.gif"),
                ("protocol", "HTTP/1.0"),
                ("status", "200"),
                ("bytes", "2326"),
                ("referer", "http://www.example.com/start.html"),
                ("user_agent", "Mozilla/4.08 [en] (Win98; I ;Nav)"),
                ("time_zone", "-0700"),
            ]),
        );
        // A quote inside the user agent, a user name, "-" request and bytes.
        check(
            "combined",
            r#"58.20.1.1 - bob [01/Jan/2024:00:00:00 +0800] "-" 400 - "-" "curl "quoted" 8.0""#,
            Some(&[
                ("status", "400"),
                ("bytes", "0"),
                ("user_agent", r#"curl "quoted" 8.0"#),
                ("remote_user", "bob"),
            ]),
        );
        // \xHH escapes (nginx escapes quotes and non-printables) and IPv6.
        check(
            "combined",
            r#"2001:db8::1 - - [05/Mar/2024:10:20:30 +0000] "GET /a\x22b?q=\xE4\xB8\xAD HTTP/1.1" 404 12 "-" "UA\x22x""#,
            Some(&[
                ("path", "/a\"b?q=中"),
                ("user_agent", "UA\"x"),
                ("client_ip", "2001:db8::1"),
            ]),
        );
        // main: the client is the first public address in X-Forwarded-For.
        check(
            "main",
            r#"10.0.0.5 - - [05/Mar/2024:10:20:30 +0800] "POST /api HTTP/2.0" 201 5 "-" "ua" "192.168.1.9, 36.110.2.3, 8.8.8.8""#,
            Some(&[
                ("client_ip", "36.110.2.3"),
                ("remote_addr", "10.0.0.5"),
                ("method", "POST"),
            ]),
        );
        // Only private addresses forwarded: remote_addr is the client.
        check(
            "main",
            r#"61.1.2.3 - - [05/Mar/2024:10:20:30 +0800] "GET / HTTP/1.1" 200 1 "-" "ua" "10.1.1.1""#,
            Some(&[("client_ip", "61.1.2.3")]),
        );
        // A custom log_format.
        check(
            r#"$remote_addr|$time_iso8601|$request|$status|$bytes_sent|$request_time|$host"#,
            "202.96.1.1|2024-03-05T10:20:30+08:00|GET /x HTTP/1.1|302|99|0.015|www.example.cn",
            Some(&[
                ("status", "302"),
                ("bytes", "99"),
                ("request_time", "0.015"),
                ("host", "www.example.cn"),
            ]),
        );
        // Broken lines.
        check("combined", "garbage", None);
        check(
            "combined",
            r#"notanip - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1 "-" "-""#,
            None,
        );
        check(
            "combined",
            r#"1.1.1.1 - - [10/Foo/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1 "-" "-""#,
            None,
        );
        check(
            "combined",
            r#"1.1.1.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" abc 1 "-" "-""#,
            None,
        );
        check("combined", "", None);
    }

    #[test]
    fn time_local_is_converted_with_its_zone() {
        let p = NginxParser::new("combined", "a").unwrap();
        let e = p
            .parse(r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1 "-" "-""#)
            .unwrap();
        assert_eq!(e.timestamp_ns, 971_211_336 * 1_000_000_000);
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(NginxParser::new("$a$b", "x").is_err());
        assert!(NginxParser::new("no variables", "x").is_err());
        assert!(NginxParser::new("${unclosed", "x").is_err());
        assert!(NginxParser::new("${a} ${b}", "x").is_ok());
    }

    #[test]
    fn private_addresses() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.180.3.4", "8.8.8.8", "2001:4860::8888", "100.128.0.1"] {
            assert!(!is_private(&ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn hostile_lines_finish_quickly() {
        let p = NginxParser::new("combined", "a").unwrap();
        let line = format!("1.1.1.1 - - [{}", "\" ".repeat(5_000));
        assert!(p.parse(&line).is_err());
    }
}
