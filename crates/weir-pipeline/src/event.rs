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
