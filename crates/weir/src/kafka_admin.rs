//! A small blocking Kafka admin client for what librdkafka's Rust binding
//! does not offer: ACLs (CreateAcls, DescribeAcls, DeleteAcls) and SCRAM
//! users (Describe/AlterUserScramCredentials), behind `weir acl` and
//! `weir user`. It speaks to one broker of `--brokers` (any broker
//! forwards metadata changes to the controller), with the same `-X`
//! settings as the other commands: `security.protocol` PLAINTEXT or
//! SASL_PLAINTEXT, `sasl.mechanism` PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512,
//! `sasl.username`, `sasl.password`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

const TIMEOUT: Duration = Duration::from_secs(15);
/// Responses larger than this are refused (an admin answer is small).
const MAX_RESPONSE: usize = 64 << 20;

/// One authenticated connection to a broker.
#[derive(Debug)]
pub(crate) struct AdminConn {
    stream: TcpStream,
    correlation: i32,
    /// The broker's version ranges by API key.
    versions: BTreeMap<i16, (i16, i16)>,
    /// Which broker answered.
    pub(crate) address: String,
}

/// The librdkafka-named settings this client understands.
#[derive(Debug, Default)]
struct Settings {
    protocol: String,
    mechanism: String,
    user: String,
    password: String,
}

fn settings(list: &[String]) -> Result<Settings> {
    let mut s = Settings {
        protocol: "PLAINTEXT".into(),
        mechanism: "PLAIN".into(),
        ..Settings::default()
    };
    for kv in list {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("-X {kv}: expected KEY=VALUE"))?;
        match k {
            "security.protocol" => s.protocol = v.to_ascii_uppercase(),
            "sasl.mechanism" | "sasl.mechanisms" => s.mechanism = v.to_ascii_uppercase(),
            "sasl.username" => s.user = v.to_owned(),
            "sasl.password" => s.password = v.to_owned(),
            // librdkafka settings that do not change an admin request.
            _ => {}
        }
    }
    match s.protocol.as_str() {
        "PLAINTEXT" | "SASL_PLAINTEXT" => Ok(s),
        other => bail!(
            "security.protocol={other} is not supported by this command yet (PLAINTEXT and SASL_PLAINTEXT are)"
        ),
    }
}

impl AdminConn {
    /// Connects to the first broker of `brokers` that answers, then
    /// authenticates if `settings` ask for SASL.
    pub(crate) fn connect(brokers: &str, list: &[String]) -> Result<Self> {
        let s = settings(list)?;
        let mut last = None;
        for address in brokers.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match Self::open(address, &s) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e.context(format!("broker {address}"))),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no broker given (--brokers)")))
    }

    fn open(address: &str, s: &Settings) -> Result<Self> {
        use std::net::ToSocketAddrs;
        let addr = address
            .to_socket_addrs()
            .with_context(|| format!("resolving {address}"))?
            .next()
            .with_context(|| format!("{address} resolves to nothing"))?;
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .with_context(|| format!("cannot reach a broker at {address}"))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let mut c = Self {
            stream,
            correlation: 0,
            versions: BTreeMap::new(),
            address: address.to_owned(),
        };
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("weir");
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let resp: ApiVersionsResponse = c.call_at(req, 3)?;
        if resp.error_code != 0 {
            bail!("ApiVersions failed with error {}", resp.error_code);
        }
        c.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if s.protocol == "SASL_PLAINTEXT" {
            c.authenticate(s)?;
        }
        Ok(c)
    }

    /// The highest version of `R` both sides speak.
    fn version<R: Request>(&self) -> Result<i16> {
        let ours = R::VERSIONS;
        let Some(&(min, max)) = self.versions.get(&R::KEY) else {
            bail!(
                "the broker at {} does not serve API {} (ApiVersions)",
                self.address,
                api_name(R::KEY)
            );
        };
        let v = ours.max.min(max);
        if v < ours.min.max(min) {
            bail!(
                "no common version of API {} with the broker at {}",
                api_name(R::KEY),
                self.address
            );
        }
        Ok(v)
    }

    /// Sends `req` at the highest common version and reads its answer.
    pub(crate) fn call<R: Request>(&mut self, req: R) -> Result<R::Response> {
        let v = self.version::<R>()?;
        self.call_at(req, v)
    }

    fn call_at<R: Request>(&mut self, req: R, version: i16) -> Result<R::Response> {
        self.correlation += 1;
        let key = R::KEY;
        let mut header = RequestHeader::default();
        header.request_api_key = key;
        header.request_api_version = version;
        header.correlation_id = self.correlation;
        header.client_id = Some(StrBytes::from_static_str("weir"));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        req.encode(&mut body, version)?;
        let frame = self.exchange(&body)?;
        let mut frame = Bytes::from(frame);
        let h = ResponseHeader::decode(&mut frame, R::Response::header_version(version))?;
        if h.correlation_id != self.correlation {
            bail!(
                "answer to request {} arrived for request {}",
                h.correlation_id,
                self.correlation
            );
        }
        R::Response::decode(&mut frame, version)
            .with_context(|| format!("decoding the {} answer", api_name(key)))
    }

    /// Writes one length-prefixed frame and reads the answer's.
    fn exchange(&mut self, body: &[u8]) -> Result<Vec<u8>> {
        let len = u32::try_from(body.len()).context("request too large")?;
        self.stream.write_all(&len.to_be_bytes())?;
        self.stream.write_all(body)?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .with_context(|| format!("the broker at {} closed the connection", self.address))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_RESPONSE {
            bail!("a {len}-byte answer is larger than an admin answer can be");
        }
        let mut out = vec![0u8; len];
        self.stream.read_exact(&mut out)?;
        Ok(out)
    }

    fn authenticate(&mut self, s: &Settings) -> Result<()> {
        let mut hs = SaslHandshakeRequest::default();
        hs.mechanism = StrBytes::from_string(s.mechanism.clone());
        let resp: SaslHandshakeResponse = self.call_at(hs, 1)?;
        if resp.error_code != 0 {
            bail!(
                "the broker does not accept SASL mechanism {} (it offers {})",
                s.mechanism,
                resp.mechanisms
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        match s.mechanism.as_str() {
            "PLAIN" => {
                let token = format!("\0{}\0{}", s.user, s.password);
                self.sasl_step(token.into_bytes())?;
            }
            "SCRAM-SHA-256" | "SCRAM-SHA-512" => self.scram(s)?,
            other => bail!("sasl.mechanism={other}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
        }
        Ok(())
    }

    fn sasl_step(&mut self, token: Vec<u8>) -> Result<Bytes> {
        let mut req = SaslAuthenticateRequest::default();
        req.auth_bytes = Bytes::from(token);
        let v = self.version::<SaslAuthenticateRequest>()?;
        let resp: SaslAuthenticateResponse = self.call_at(req, v)?;
        if resp.error_code != 0 {
            bail!(
                "authentication failed: {}",
                resp.error_message
                    .as_ref()
                    .map_or("(no message)", |m| m.as_str())
            );
        }
        Ok(resp.auth_bytes)
    }

    fn scram(&mut self, s: &Settings) -> Result<()> {
        use weir_broker::security::scram::{Mechanism, client_final_for};
        let mechanism = Mechanism::from_name(&s.mechanism).context("SCRAM mechanism")?;
        let user = s.user.replace('=', "=3D").replace(',', "=2C");
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let bare = format!("n={user},r={nonce}");
        let server_first = self.sasl_step(format!("n,,{bare}").into_bytes())?;
        let server_first = String::from_utf8(server_first.to_vec())
            .context("the broker's SCRAM message is not UTF-8")?;
        let (client_final, expected) =
            client_final_for(mechanism, &s.password, &bare, &server_first)
                .map_err(|e| anyhow::anyhow!("SCRAM: {e}"))?;
        let server_final = self.sasl_step(client_final.into_bytes())?;
        let want = format!(
            "v={}",
            base64::engine::general_purpose::STANDARD.encode(expected)
        );
        if server_final.as_ref() != want.as_bytes() {
            bail!("the broker's SCRAM signature is wrong: it does not know this password");
        }
        Ok(())
    }
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| key.to_string(), |k| format!("{k:?}"))
}
