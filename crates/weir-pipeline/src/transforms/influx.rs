//! InfluxDB line protocol: `measurement,tag=v field=1.5,n=3i,s="x",b=t 1700000000000000000`.
//! Escapes: `\,` `\ ` `\=` in names, tag keys and values, field keys;
//! `\"` and `\\` in string fields. Integers end in `i` (unsigned in `u`),
//! booleans are t/true/T/True/TRUE and the false forms. The timestamp is
//! optional (the caller's time is used) and scaled by the precision.

use crate::event::{Event, Text, Value};
use crate::transforms::ParseError;

/// Timestamp precision of the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Nanoseconds (the default).
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
    /// Minutes (InfluxDB 1.x `precision=m`).
    M,
    /// Hours (InfluxDB 1.x `precision=h`).
    H,
}

impl Precision {
    /// `ns`/`n`, `us`/`u`, `ms`, `s`, `m`, `h`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "n" | "ns" => Self::Ns,
            "u" | "us" => Self::Us,
            "ms" => Self::Ms,
            "s" => Self::S,
            "m" => Self::M,
            "h" => Self::H,
            _ => return None,
        })
    }

    fn scale(self) -> i64 {
        match self {
            Self::Ns => 1,
            Self::Us => 1_000,
            Self::Ms => 1_000_000,
            Self::S => 1_000_000_000,
            Self::M => 60_000_000_000,
            Self::H => 3_600_000_000_000,
        }
    }
}

/// Splits at the first unescaped `sep` outside double quotes (when `quotes`).
fn split_unescaped(s: &str, sep: u8, quotes: bool) -> (&str, Option<&str>) {
    let b = s.as_bytes();
    let mut i = 0;
    let mut in_q = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'"' if quotes => in_q = !in_q,
            c if c == sep && !in_q => return (&s[..i], Some(&s[i + 1..])),
            _ => {}
        }
        i += 1;
    }
    (s, None)
}

fn split_all(s: &str, sep: u8, quotes: bool) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let (head, tail) = split_unescaped(rest, sep, quotes);
        out.push(head);
        match tail {
            Some(t) => rest = t,
            None => return out,
        }
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | ' ' | '=' | '"' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field_value(raw: &str) -> Result<Value, String> {
    if let Some(q) = raw.strip_prefix('"') {
        let inner = q.strip_suffix('"').ok_or("unterminated string field")?;
        return Ok(Value::Str(unescape(inner).into()));
    }
    if let Some(i) = raw.strip_suffix('i') {
        return i
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| format!("bad integer {raw:?}"));
    }
    if let Some(u) = raw.strip_suffix('u') {
        return u
            .parse::<u64>()
            .map(Value::UInt)
            .map_err(|_| format!("bad unsigned {raw:?}"));
    }
    match raw {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    raw.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Value::Float)
        .ok_or_else(|| format!("bad field value {raw:?}"))
}

/// Parses one line (blank lines and `#` comments give `Ok(None)`).
pub fn parse_line(
    line: &str,
    precision: Precision,
    now_ns: i64,
) -> Result<Option<Event>, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return Ok(None);
    }
    let (series, rest) = split_unescaped(line, b' ', false);
    let rest = rest.ok_or_else(|| ParseError::new("no fields"))?;
    let (fields_raw, ts_raw) = split_unescaped(rest, b' ', true);
    let mut parts = split_all(series, b',', false).into_iter();
    let name: Text = unescape(parts.next().unwrap_or_default()).into();
    if name.is_empty() {
        return Err(ParseError::new("empty measurement"));
    }
    let mut e = Event {
        name,
        timestamp_ns: now_ns,
        ..Event::default()
    };
    for tag in parts {
        let (k, v) = split_unescaped(tag, b'=', false);
        let v = v.ok_or_else(|| ParseError::new(format!("tag {tag:?} has no value")))?;
        if k.is_empty() || v.is_empty() {
            return Err(ParseError::new(format!(
                "empty tag key or value in {tag:?}"
            )));
        }
        e.tags.insert(unescape(k).into(), unescape(v).into());
    }
    for f in split_all(fields_raw, b',', true) {
        let (k, v) = split_unescaped(f, b'=', true);
        let v = v.ok_or_else(|| ParseError::new(format!("field {f:?} has no value")))?;
        if k.is_empty() {
            return Err(ParseError::new("empty field key"));
        }
        e.fields
            .insert(unescape(k).into(), field_value(v).map_err(ParseError::new)?);
    }
    if let Some(ts) = ts_raw.map(str::trim).filter(|t| !t.is_empty()) {
        let t: i64 = ts
            .parse()
            .map_err(|_| ParseError::new(format!("bad timestamp {ts:?}")))?;
        e.timestamp_ns = t
            .checked_mul(precision.scale())
            .ok_or_else(|| ParseError::new(format!("timestamp {ts} out of range")))?;
    }
    Ok(Some(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_lines() {
        let e = parse_line(r#"weather,location=us\ midwest,code=a\,b temperature=82,humid=71i,ok=t,note="say \"hi\"" 1465839830100400200"#, Precision::Ns, 0)
            .unwrap()
            .unwrap();
        assert_eq!(e.name, "weather");
        assert_eq!(e.tags["location"], "us midwest");
        assert_eq!(e.tags["code"], "a,b");
        assert_eq!(e.fields["temperature"], Value::Float(82.0));
        assert_eq!(e.fields["humid"], Value::Int(71));
        assert_eq!(e.fields["ok"], Value::Bool(true));
        assert_eq!(e.fields["note"], Value::Str("say \"hi\"".into()));
        assert_eq!(e.timestamp_ns, 1_465_839_830_100_400_200);

        let e = parse_line("cpu,host=a usage=1.5 1700000000", Precision::S, 0)
            .unwrap()
            .unwrap();
        assert_eq!(e.timestamp_ns, 1_700_000_000_000_000_000);
        let e = parse_line("m v=1", Precision::Ns, 42).unwrap().unwrap();
        assert_eq!(e.timestamp_ns, 42, "no timestamp: the caller's time");
        let e = parse_line(r#"m s="a b,c=d" 5"#, Precision::Ns, 0)
            .unwrap()
            .unwrap();
        assert_eq!(e.fields["s"], Value::Str("a b,c=d".into()));
        let e = parse_line("m u=5u,f=F", Precision::Ns, 0).unwrap().unwrap();
        assert_eq!(
            (e.fields["u"].clone(), e.fields["f"].clone()),
            (Value::UInt(5), Value::Bool(false))
        );
        assert_eq!(parse_line("# comment", Precision::Ns, 0).unwrap(), None);
        assert_eq!(parse_line("   ", Precision::Ns, 0).unwrap(), None);
        for bad in [
            "m",
            "m v",
            "m v=abc",
            "m,t v=1",
            "m v=1 notatime",
            ",t=1 v=1",
            r#"m s="open"#,
            "m v=1i2",
        ] {
            assert!(parse_line(bad, Precision::Ns, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_through_the_encoder() {
        let e = Event {
            timestamp_ns: 9,
            name: "a b".into(),
            ..Event::default()
        }
        .with_tag("t k", "v,=x")
        .with_field("s", "q\"\\")
        .with_field("n", -3i64)
        .with_field("f", 0.5)
        .with_field("b", true);
        let back = parse_line(&e.to_line_protocol(), Precision::Ns, 0)
            .unwrap()
            .unwrap();
        assert_eq!(back, e);
    }
}
