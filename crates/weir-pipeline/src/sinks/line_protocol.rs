//! The `line_protocol` sink: batches of points POSTed to an InfluxDB 1.x
//! (`/write?db=`) or CnosDB (`/api/v1/write?db=`) write endpoint, exactly
//! as Telegraf sends them: basic auth, optional gzip, nanosecond
//! timestamps, measurement, tag and field text escaped, and at least one
//! tag per point (`host` when an event has none).
//!
//! What the server answers decides: 2xx stored; 429, 5xx or no answer:
//! the same batch again after a growing pause (the inputs wait, memory
//! stays bounded, nothing is acknowledged meanwhile); another 4xx: the
//! batch is split in halves until the rejected points are alone, and those
//! are counted and sent to the sink's `.errors` output.

use std::io::Write;
use std::time::Duration;

use super::Outcome;
use crate::event::{Event, Text};
use crate::http::{Url, base64_encode, request};

/// Settings of a `line_protocol` sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProtocolConfig {
    /// The write URL with its query (`db`, `precision=ns` if given).
    pub url: String,
    /// Basic auth user.
    pub username: Option<String>,
    /// Its password.
    pub password: String,
    /// Points per request.
    pub batch: usize,
    /// gzip request bodies.
    pub gzip: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How long a partial batch waits for more points.
    pub flush: Duration,
}

impl Default for LineProtocolConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            username: None,
            password: String::new(),
            batch: 5000,
            gzip: false,
            timeout: Duration::from_secs(10),
            flush: Duration::from_secs(1),
        }
    }
}

/// A connection-less client of one write endpoint.
#[derive(Debug)]
pub struct LineProtocolSink {
    cfg: LineProtocolConfig,
    url: Url,
    auth: Option<String>,
    host: Text,
}

impl LineProtocolSink {
    /// Checks the URL.
    pub fn new(cfg: LineProtocolConfig) -> Result<Self, String> {
        let url = Url::parse(&cfg.url)?;
        let auth = cfg.username.as_ref().map(|u| {
            format!(
                "Basic {}",
                base64_encode(format!("{u}:{}", cfg.password).as_bytes())
            )
        });
        Ok(Self {
            cfg,
            url,
            auth,
            host: crate::config::hostname().into(),
        })
    }

    /// Settings.
    pub fn config(&self) -> &LineProtocolConfig {
        &self.cfg
    }

    /// The request body for `events`.
    pub fn encode(&self, events: &[Event]) -> Vec<u8> {
        let mut text = String::new();
        for e in events {
            if e.tags.is_empty() {
                let mut tagged = e.clone();
                tagged.ack = None;
                tagged
                    .tags
                    .insert(Text::new_static("host"), self.host.clone());
                text.push_str(&tagged.to_line_protocol());
            } else {
                text.push_str(&e.to_line_protocol());
            }
            text.push('\n');
        }
        text.into_bytes()
    }

    /// Sends one batch.
    pub fn send(&self, events: &[Event]) -> Outcome {
        let mut body = self.encode(events);
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "text/plain; charset=utf-8")];
        if let Some(a) = &self.auth {
            headers.push(("Authorization", a));
        }
        if self.cfg.gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            if gz.write_all(&body).is_ok()
                && let Ok(z) = gz.finish()
            {
                body = z;
                headers.push(("Content-Encoding", "gzip"));
            }
        }
        match request("POST", &self.url, &headers, &body, self.cfg.timeout) {
            Err(e) => Outcome::Retry(e),
            Ok((status, answer)) => {
                let why = || {
                    format!(
                        "{status} from {}: {}",
                        self.url.authority,
                        String::from_utf8_lossy(&answer)
                            .chars()
                            .take(300)
                            .collect::<String>()
                    )
                };
                match status {
                    200..=299 => Outcome::Stored,
                    429 | 500..=599 => Outcome::Retry(why()),
                    _ => Outcome::Rejected(why()),
                }
            }
        }
    }
}
