//! The event model: like a Telegraf metric, a timestamp, a name (the table
//! or measurement), string tags and typed fields; a raw line is carried
//! until a parser turns it into fields.

use std::collections::BTreeMap;
use std::fmt;

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// String.
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => f.write_str(v),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// Table / measurement name.
    pub name: String,
    /// Tags (indexed string dimensions).
    pub tags: BTreeMap<String, String>,
    /// Fields.
    pub fields: BTreeMap<String, Value>,
    /// The unparsed line, until a parser consumes it.
    pub raw: Option<String>,
    /// Where it was read from (Kafka sources).
    pub origin: Option<crate::ack::Origin>,
    /// Completes the source's batch once every copy is stored or dropped.
    pub ack: Option<crate::ack::AckRef>,
}

impl Event {
    /// A raw line waiting to be parsed.
    pub fn raw(line: impl Into<String>, timestamp_ns: i64) -> Self {
        Self {
            timestamp_ns,
            raw: Some(line.into()),
            ..Self::default()
        }
    }

    /// Sets a field (builder style).
    pub fn with_field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// Sets a tag (builder style).
    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_owned(), value.to_owned());
        self
    }
}

fn escape_lp(s: &str, chars: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if chars.contains(&c) || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Event {
    /// InfluxDB line protocol: `name,tag=v field=1.5,n=3i,s="x" <ns>`. An
    /// unparsed line is written as measurement `raw` with field `message`.
    pub fn to_line_protocol(&self) -> String {
        let name = if self.name.is_empty() {
            "raw"
        } else {
            &self.name
        };
        let mut out = escape_lp(name, &[',', ' ']);
        for (k, v) in &self.tags {
            out.push(',');
            out.push_str(&escape_lp(k, &[',', '=', ' ']));
            out.push('=');
            out.push_str(&escape_lp(v, &[',', '=', ' ']));
        }
        let mut fields: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| {
                let val = match v {
                    Value::Int(i) => format!("{i}i"),
                    Value::Float(f) => format!("{f}"),
                    Value::Bool(b) => b.to_string(),
                    Value::Str(s) => {
                        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
                    }
                };
                format!("{}={val}", escape_lp(k, &[',', '=', ' ']))
            })
            .collect();
        if let Some(raw) = &self.raw {
            fields.push(format!(
                "message=\"{}\"",
                raw.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
        out.push(' ');
        out.push_str(&fields.join(","));
        out.push(' ');
        out.push_str(&self.timestamp_ns.to_string());
        out
    }

    /// One JSON object: name, time (ns), tags, fields and any raw line.
    pub fn to_json(&self) -> String {
        let fields: serde_json::Map<String, serde_json::Value> = self
            .fields
            .iter()
            .map(|(k, v)| {
                let j = match v {
                    Value::Int(i) => serde_json::Value::from(*i),
                    Value::Float(f) => serde_json::Value::from(*f),
                    Value::Bool(b) => serde_json::Value::from(*b),
                    Value::Str(s) => serde_json::Value::from(s.as_str()),
                };
                (k.clone(), j)
            })
            .collect();
        let mut obj = serde_json::json!({
            "name": self.name,
            "time": self.timestamp_ns,
            "tags": self.tags,
            "fields": fields,
        });
        if let Some(raw) = &self.raw {
            obj["raw"] = serde_json::Value::from(raw.as_str());
        }
        obj.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_protocol_escapes() {
        let e = Event {
            timestamp_ns: 5,
            name: "my meas,x".into(),
            ..Event::default()
        }
        .with_tag("host", "web 1")
        .with_field("v", 1.5)
        .with_field("n", 3i64)
        .with_field("ok", true)
        .with_field("s", "a \"q\" \\");
        assert_eq!(
            e.to_line_protocol(),
            r#"my\ meas\,x,host=web\ 1 n=3i,ok=true,s="a \"q\" \\",v=1.5 5"#
        );
        let j: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(j["fields"]["n"], 3);
        assert_eq!(j["tags"]["host"], "web 1");
        let raw = Event::raw("GET \"/\"", 1);
        assert_eq!(raw.to_line_protocol(), r#"raw message="GET \"/\"" 1"#);
    }
}
