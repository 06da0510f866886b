//! `parse_json` with Telegraf's JSON parser defaults: the measurement is
//! named after the input (`kafka_consumer` unless configured), numbers
//! become float fields, booleans bool fields, strings are kept only when
//! named as tag keys or string fields, nested objects and arrays are
//! flattened with `_`, a `host` tag is added, and an optional key gives the
//! time. A top-level array gives one event per element.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::event::{Event, Value};
use crate::transforms::ParseError;
use crate::transforms::time::parse_rfc3339_ns;

/// How the time key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// Seconds (fractions allowed).
    Unix,
    /// Milliseconds.
    UnixMs,
    /// Microseconds.
    UnixUs,
    /// Nanoseconds.
    UnixNs,
    /// RFC 3339 text.
    Rfc3339,
}

impl TimeFormat {
    /// Telegraf's names: `unix`, `unix_ms`, `unix_us`, `unix_ns`, `rfc3339`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unix" => Self::Unix,
            "unix_ms" => Self::UnixMs,
            "unix_us" => Self::UnixUs,
            "unix_ns" => Self::UnixNs,
            "rfc3339" | "RFC3339" => Self::Rfc3339,
            _ => return None,
        })
    }
}

/// A configured JSON parser.
#[derive(Debug, Clone)]
pub struct JsonParser {
    /// Measurement name.
    pub name: String,
    /// Keys whose values become tags.
    pub tag_keys: Vec<String>,
    /// String keys kept as string fields.
    pub string_fields: Vec<String>,
    /// Key holding the time, removed from the fields.
    pub time_key: Option<String>,
    /// Format of the time key.
    pub time_format: TimeFormat,
    /// Value of the `host` tag (`None`: no host tag).
    pub host: Option<String>,
}

impl JsonParser {
    /// Telegraf's defaults for a `kafka_consumer` input on `host`.
    pub fn new(host: Option<String>) -> Self {
        Self {
            name: "kafka_consumer".to_owned(),
            tag_keys: Vec::new(),
            string_fields: Vec::new(),
            time_key: None,
            time_format: TimeFormat::Unix,
            host,
        }
    }

    /// Parses one document into events; `now_ns` stamps events without a time key.
    pub fn parse(&self, text: &str, now_ns: i64) -> Result<Vec<Event>, ParseError> {
        let doc: Json = serde_json::from_str(text)
            .map_err(|e| ParseError::new(format!("invalid JSON: {e}")))?;
        match doc {
            Json::Object(_) => Ok(vec![self.one(&doc, now_ns)?]),
            Json::Array(items) => items.iter().map(|d| self.one(d, now_ns)).collect(),
            _ => Err(ParseError::new(
                "JSON document is not an object or an array of objects",
            )),
        }
    }

    fn one(&self, doc: &Json, now_ns: i64) -> Result<Event, ParseError> {
        let Json::Object(map) = doc else {
            return Err(ParseError::new("array element is not an object"));
        };
        let mut flat = BTreeMap::new();
        for (k, v) in map {
            flatten(k, v, &mut flat);
        }
        let mut e = Event {
            name: self.name.as_str().into(),
            timestamp_ns: now_ns,
            ..Event::default()
        };
        if let Some(host) = &self.host {
            e.tags.insert("host".into(), host.as_str().into());
        }
        if let Some(key) = &self.time_key {
            let v = flat
                .remove(key)
                .ok_or_else(|| ParseError::new(format!("time key {key:?} missing")))?;
            e.timestamp_ns = self
                .time(&v)
                .ok_or_else(|| ParseError::new(format!("time key {key:?} has a bad value {v}")))?;
        }
        for (k, v) in flat {
            if self.tag_keys.contains(&k) {
                let t = match &v {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                e.tags.insert(k.into(), t.into());
                continue;
            }
            match v {
                Json::Number(n) => {
                    if let Some(f) = n.as_f64() {
                        e.fields.insert(k.into(), Value::Float(f));
                    }
                }
                Json::Bool(b) => {
                    e.fields.insert(k.into(), Value::Bool(b));
                }
                Json::String(s) if self.string_fields.contains(&k) => {
                    e.fields.insert(k.into(), Value::Str(s.into()));
                }
                _ => {}
            }
        }
        Ok(e)
    }

    fn time(&self, v: &Json) -> Option<i64> {
        let mul: i64 = match self.time_format {
            TimeFormat::Unix => 1_000_000_000,
            TimeFormat::UnixMs => 1_000_000,
            TimeFormat::UnixUs => 1_000,
            TimeFormat::UnixNs => 1,
            TimeFormat::Rfc3339 => return v.as_str().and_then(parse_rfc3339_ns),
        };
        // Integers exactly; fractions (e.g. unix seconds with decimals) via floats.
        let int = match v {
            Json::Number(n) => n.as_i64(),
            Json::String(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        if let Some(i) = int {
            return i.checked_mul(mul);
        }
        let f = match v {
            Json::Number(n) => n.as_f64(),
            Json::String(s) => s.parse::<f64>().ok(),
            _ => None,
        }?;
        f.is_finite().then_some((f * mul as f64) as i64)
    }
}

fn flatten(prefix: &str, v: &Json, out: &mut BTreeMap<String, Json>) {
    match v {
        Json::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{prefix}_{k}"), v, out);
            }
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}_{i}"), v, out);
            }
        }
        Json::Null => {}
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Text;

    fn parser() -> JsonParser {
        JsonParser::new(Some("web1".to_owned()))
    }

    #[test]
    fn the_sensor_reading_of_flow_a() {
        let evs = parser()
            .parse(
                r#"{"pressure": 3.4, "temperature": 71.2, "visibility": 12.9}"#,
                5,
            )
            .unwrap();
        assert_eq!(evs.len(), 1);
        let e = &evs[0];
        assert_eq!(e.name, "kafka_consumer");
        assert_eq!(e.tags.get("host").map(Text::as_str), Some("web1"));
        assert_eq!(e.fields.get("pressure"), Some(&Value::Float(3.4)));
        assert_eq!(e.fields.get("temperature"), Some(&Value::Float(71.2)));
        assert_eq!(e.fields.get("visibility"), Some(&Value::Float(12.9)));
        assert_eq!(e.timestamp_ns, 5);
    }

    #[test]
    fn telegraf_rules_for_types_nesting_tags_and_time() {
        let mut p = parser();
        p.tag_keys = vec!["site".into(), "sensor_id".into()];
        p.string_fields = vec!["note".into()];
        p.time_key = Some("ts".into());
        p.time_format = TimeFormat::UnixMs;
        let evs = p
            .parse(
                r#"{"ts": 1700000000123, "site": "sh", "sensor": {"id": 7, "temp": 20}, "sensor_id": 9,
                    "ok": true, "note": "kept", "ignored": "dropped", "list": [1, 2], "nothing": null, "i": 3}"#,
                0,
            )
            .unwrap();
        let e = &evs[0];
        assert_eq!(e.timestamp_ns, 1_700_000_000_123_000_000);
        assert_eq!(e.tags.get("site").map(Text::as_str), Some("sh"));
        assert_eq!(
            e.tags.get("sensor_id").map(Text::as_str),
            Some("9"),
            "a numeric tag key"
        );
        assert_eq!(e.fields.get("sensor_temp"), Some(&Value::Float(20.0)));
        assert_eq!(
            e.fields.get("i"),
            Some(&Value::Float(3.0)),
            "integers are floats, as in Telegraf"
        );
        assert_eq!(e.fields.get("ok"), Some(&Value::Bool(true)));
        assert_eq!(e.fields.get("note"), Some(&Value::Str("kept".into())));
        assert_eq!(e.fields.get("list_1"), Some(&Value::Float(2.0)));
        assert!(
            !e.fields.contains_key("ignored")
                && !e.fields.contains_key("ts")
                && !e.fields.contains_key("nothing")
        );
    }

    #[test]
    fn arrays_give_several_events_and_bad_documents_are_errors() {
        assert_eq!(
            parser().parse(r#"[{"a": 1}, {"a": 2}]"#, 0).unwrap().len(),
            2
        );
        for bad in ["", "{", "3", "\"x\"", "[1]", r#"{"a": 1"#] {
            assert!(parser().parse(bad, 0).is_err(), "{bad}");
        }
        let mut p = parser();
        p.time_key = Some("t".into());
        p.time_format = TimeFormat::Rfc3339;
        assert_eq!(
            p.parse(r#"{"t": "1970-01-01T00:00:02Z", "v": 1}"#, 0)
                .unwrap()[0]
                .timestamp_ns,
            2_000_000_000
        );
        assert!(p.parse(r#"{"v": 1}"#, 0).is_err(), "missing time key");
        assert!(p.parse(r#"{"t": "yesterday", "v": 1}"#, 0).is_err());
    }
}
