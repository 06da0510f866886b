//! The event model: like a Telegraf metric, a timestamp, a name (the table
//! or measurement), string tags and typed fields; a raw line is carried
//! until a parser turns it into fields.
//!
//! Names, keys and string values are [`Text`]: strings of up to 23 bytes
//! (every key, method, address, province, ISP) live inline and longer ones
//! are shared, so building and cloning an event allocates only for long
//! values such as paths and user agents. Tags and fields are a [`Map`], a
//! vector in insertion order (the order of the parsed line): an event
//! carries a dozen entries, where a scan of a vector is several times
//! cheaper to fill and drop than a tree.

use std::fmt;

/// An immutable string: inline up to 23 bytes, shared beyond.
pub type Text = smol_str::SmolStr;

/// A small map in insertion order (a `BTreeMap`-like API over a vector;
/// replacing a value keeps its place).
#[derive(Debug, Clone, PartialEq)]
pub struct Map<V> {
    entries: Vec<(Text, V)>,
    /// `prefix` of each key, in step with `entries`: a lookup compares
    /// these integers and touches only the strings whose prefix matches.
    prefixes: Vec<u64>,
}

impl<V> Default for Map<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            prefixes: Vec::new(),
        }
    }
}

/// The first 8 bytes of `key`, zero-padded.
fn prefix(key: &str) -> u64 {
    // Built in a register: a byte array on the stack read back as a word
    // stalls store forwarding on every insert.
    key.as_bytes()
        .iter()
        .take(8)
        .enumerate()
        .fold(0, |acc, (i, &b)| acc | (u64::from(b) << (8 * i)))
}

impl<V> Map<V> {
    fn find(&self, key: &str) -> Option<usize> {
        let p = prefix(key);
        self.prefixes
            .iter()
            .enumerate()
            .filter(|&(_, &x)| x == p)
            .map(|(i, _)| i)
            .find(|&i| self.entries[i].0 == key)
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).map(|i| &self.entries[i].1)
    }

    /// The value under `key`, to change in place.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.find(key).map(|i| &mut self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_some()
    }

    /// Sets `key`, returning the value it replaces.
    pub fn insert(&mut self, key: Text, value: V) -> Option<V> {
        match self.find(&key) {
            Some(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            None => {
                if self.entries.capacity() == 0 {
                    self.entries.reserve_exact(16);
                    self.prefixes.reserve_exact(16);
                }
                self.prefixes.push(prefix(&key));
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let i = self.find(key)?;
        self.prefixes.remove(i);
        Some(self.entries.remove(i).1)
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&Text, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &Text> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'a, V> IntoIterator for &'a Map<V> {
    type Item = (&'a Text, &'a V);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (Text, V)>, fn(&'a (Text, V)) -> Self::Item>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<V> IntoIterator for Map<V> {
    type Item = (Text, V);
    type IntoIter = std::vec::IntoIter<(Text, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: Into<Text>, V> FromIterator<(K, V)> for Map<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = Self::default();
        for (k, v) in iter {
            m.insert(k.into(), v);
        }
        m
    }
}

impl<V> std::ops::Index<&str> for Map<V> {
    type Output = V;
    /// Panics when `key` is absent, like `BTreeMap`'s.
    fn index(&self, key: &str) -> &V {
        self.get(key)
            .unwrap_or_else(|| panic!("no entry {key:?} in the map"))
    }
}

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Integer.
    Int(i64),
    /// Unsigned integer (line protocol's `u`).
    UInt(u64),
    /// Float.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// String.
    Str(Text),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::UInt(v) => write!(f, "{v}"),
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
        Value::Str(v.into())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v.into())
    }
}
impl From<Text> for Value {
    fn from(v: Text) -> Self {
        Value::Str(v)
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// Table / measurement name.
    pub name: Text,
    /// Tags (indexed string dimensions).
    pub tags: Map<Text>,
    /// Fields.
    pub fields: Map<Value>,
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
        self.fields.insert(key.into(), value.into());
        self
    }

    /// Sets a tag (builder style).
    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.into(), value.into());
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
        // Tags sorted by key, as InfluxDB recommends; fields in event order.
        let mut tags: Vec<_> = self.tags.iter().collect();
        tags.sort_unstable_by_key(|&(k, _)| k);
        for (k, v) in tags {
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
                    Value::UInt(u) => format!("{u}u"),
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

    /// One JSON object: name, time (ns), tags, fields (in event order) and
    /// any raw line. Written directly, without building a JSON tree.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(128 + self.raw.as_ref().map_or(0, String::len));
        out.push_str("{\"name\":");
        json_str(&mut out, &self.name);
        out.push_str(",\"time\":");
        out.push_str(&self.timestamp_ns.to_string());
        out.push_str(",\"tags\":{");
        for (i, (k, v)) in self.tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(&mut out, k);
            out.push(':');
            json_str(&mut out, v);
        }
        out.push_str("},\"fields\":{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(&mut out, k);
            out.push(':');
            match v {
                Value::Int(n) => out.push_str(&n.to_string()),
                Value::UInt(n) => out.push_str(&n.to_string()),
                Value::Float(f) if f.is_finite() => {
                    let text = f.to_string();
                    out.push_str(&text);
                }
                Value::Float(_) => out.push_str("null"),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Str(s) => json_str(&mut out, s),
            }
        }
        out.push('}');
        if let Some(raw) = &self.raw {
            out.push_str(",\"raw\":");
            json_str(&mut out, raw);
        }
        out.push('}');
        out
    }
}

/// Appends `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push_str(esc);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_insertion_order_and_replaces_in_place() {
        let mut m = Map::default();
        // Keys sharing their first 8 bytes, and keys that are prefixes of others.
        for k in [
            "request_time",
            "request_length",
            "request",
            "a",
            "",
            "request_",
        ] {
            assert_eq!(m.insert(k.into(), k.len()), None, "{k}");
        }
        assert_eq!(m.len(), 6);
        assert_eq!(m.get("request_length"), Some(&14));
        assert_eq!(m.get("request_time"), Some(&12));
        assert_eq!(m.get("request_"), Some(&8));
        assert_eq!(m.get(""), Some(&0));
        assert_eq!(m.get("request_t"), None);
        assert_eq!(m.insert("request".into(), 99), Some(7));
        assert_eq!(m.remove("a"), Some(1));
        assert_eq!(m.remove("a"), None);
        *m.get_mut("").unwrap() += 5;
        let keys: Vec<&str> = m.keys().map(Text::as_str).collect();
        assert_eq!(
            keys,
            ["request_time", "request_length", "request", "", "request_"]
        );
        assert_eq!(m["request"], 99);
        assert_eq!(m[""], 5);
        assert!(!m.contains_key("a") && m.contains_key("request_"));
    }

    #[test]
    fn json_is_valid_for_any_text_and_number() {
        let tricky = "q\"b\\s\n\r\t\u{1}\u{1f}é广东\u{7f}";
        let e = Event {
            name: "n\"x".into(),
            timestamp_ns: -5,
            raw: Some(tricky.to_owned()),
            ..Event::default()
        }
        .with_tag(tricky, tricky)
        .with_field("f", 1.5e300)
        .with_field("nan", f64::NAN)
        .with_field("i", i64::MIN)
        .with_field("b", false)
        .with_field("s", tricky);
        let j: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(j["name"], "n\"x");
        assert_eq!(j["time"], -5);
        assert_eq!(j["tags"][tricky], tricky);
        assert_eq!(j["fields"]["f"], 1.5e300);
        assert!(j["fields"]["nan"].is_null());
        assert_eq!(j["fields"]["i"], i64::MIN);
        assert_eq!(j["fields"]["b"], false);
        assert_eq!(j["fields"]["s"], tricky);
        assert_eq!(j["raw"], tricky);
    }

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
            r#"my\ meas\,x,host=web\ 1 v=1.5,n=3i,ok=true,s="a \"q\" \\" 5"#
        );
        let j: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(j["fields"]["n"], 3);
        assert_eq!(j["tags"]["host"], "web 1");
        let raw = Event::raw("GET \"/\"", 1);
        assert_eq!(raw.to_line_protocol(), r#"raw message="GET \"/\"" 1"#);
    }
}
