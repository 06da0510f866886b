//! Framing: accepts connections, reads length-prefixed requests, decodes
//! the request header, hands the body to the handlers and writes responses
//! in request order. Anything that cannot be framed or decoded closes that
//! connection only.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::Broker;
use crate::handlers::{self, Reply};
use crate::security::session::Session;

/// Accepts connections until shutdown; each gets its own task.
pub(crate) async fn accept_loop(
    broker: Arc<Broker>,
    name: Arc<str>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    let name = name.clone();
                    let m = broker.metrics();
                    m.connections.fetch_add(1, Ordering::Relaxed);
                    m.connections_total.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        // At shutdown the whole connection goes at once,
                        // whatever it waits for: a half-sent request, a
                        // client that does not read its answers, a parked
                        // JoinGroup or a long poll. Only then can the
                        // broker close its logs cleanly.
                        let mut stop = shutdown.clone();
                        let served = tokio::select! {
                            served = connection(broker.clone(), stream, name, shutdown) => served,
                            _ = crate::stopped(&mut stop) => Err(Close::Shutdown),
                        };
                        match served {
                            Err(reason @ (Close::Eof | Close::Io(_) | Close::Shutdown)) => {
                                debug!(%peer, %reason, "connection closed");
                            }
                            // The client sent something this broker cannot
                            // answer: say so where an operator looks.
                            Err(reason) => warn!(%peer, %reason, "connection closed"),
                            Ok(()) => {}
                        }
                        broker.metrics().connections.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = crate::stopped(&mut stop) => return,
        }
    }
}

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Close {
    #[error("peer closed")]
    Eof,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("request of {0} bytes is larger than socket.request.max.bytes {1}")]
    TooLarge(i64, usize),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("unsupported API key {0}")]
    UnknownApi(i16),
    #[error("unsupported version {1} of {0:?}")]
    UnsupportedVersion(ApiKey, i16),
    #[error("shutting down")]
    Shutdown,
    #[error("SASL: {0}")]
    Auth(String),
}

async fn connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    listener: Arc<str>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Close> {
    let protocol = broker.config().kraft.protocol(&listener);
    let mut conn = handlers::Conn {
        client_host: stream
            .peer_addr()
            .map_or_else(|_| "/unknown".to_owned(), |a| format!("/{}", a.ip())),
        listener,
        principal: None,
    };
    // SASL_* listeners: nothing but the SASL APIs until the client has
    // authenticated (docs/design/security.md).
    let sasl = &broker.config().sasl;
    let mut session = protocol
        .starts_with("SASL_")
        .then(|| Session::new(sasl.enabled.clone(), sasl.reauth_ms));
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let socket_max = broker.config().socket_request_max_bytes;
    // acks=all produces whose data is appended and whose answer waits for
    // the fsync, oldest first. The connection reads and appends the next
    // requests meanwhile, so one group-committed fsync covers many small
    // requests; answers still leave in request order.
    let mut pending: VecDeque<tokio::task::JoinHandle<Result<Bytes, Close>>> = VecDeque::new();
    loop {
        let len = tokio::select! {
            len = rd.read_i32() => match len {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    drain(&mut pending, &mut wr).await?;
                    return Err(Close::Eof);
                }
                Err(e) => return Err(e.into()),
            },
            done = async {
                match pending.front_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            }, if !pending.is_empty() => {
                pending.pop_front();
                let frame = done.map_err(|e| Close::Malformed(format!("a produce task failed: {e}")))??;
                wr.write_all(&frame).await?;
                if pending.is_empty() {
                    wr.flush().await?;
                }
                continue;
            }
            _ = crate::stopped(&mut shutdown) => return Err(Close::Shutdown),
        };
        // Before authentication a frame is at most a SASL token's size.
        let max = match &session {
            Some(s) if s.user().is_none() => sasl.max_receive_size,
            _ => socket_max,
        };
        if len < 0 || len as usize > max {
            warn!(len, max, "closing connection: request size out of bounds");
            return Err(Close::TooLarge(i64::from(len), max));
        }
        let mut buf = BytesMut::zeroed(len as usize);
        rd.read_exact(&mut buf).await?;
        let arrived = Instant::now();
        if let Some(s) = session.as_mut()
            && s.expects_raw_token()
        {
            // After SaslHandshake v0 the tokens come bare: a length and
            // the bytes, answered the same way.
            drain(&mut pending, &mut wr).await?;
            let answer = s.authenticate(
                &buf,
                &server_nonce(),
                &Users(broker.cluster().image()),
                now_ms(),
            );
            if answer.close {
                return Err(Close::Auth(answer.reason.unwrap_or_default()));
            }
            note_authenticated(&answer, s, &mut conn);
            let len = i32::try_from(answer.token.len())
                .map_err(|_| Close::Malformed("SASL token larger than 2 GiB".into()))?;
            wr.write_i32(len).await?;
            wr.write_all(&answer.token).await?;
            wr.flush().await?;
            continue;
        }
        let decoded = decode(buf.freeze())?;
        if let Decoded::Request(req) = &decoded {
            if let Some(s) = &session
                && let Err(refused) = s.admit(req.api as i16, now_ms())
            {
                return Err(Close::Auth(refused.to_string()));
            }
            if matches!(req.api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
                drain(&mut pending, &mut wr).await?;
                let Decoded::Request(req) = decoded else {
                    unreachable!("matched above")
                };
                let (frame, close) = sasl_request(&broker, *req, session.as_mut(), &mut conn)?;
                wr.write_all(&frame).await?;
                wr.flush().await?;
                if let Some(reason) = close {
                    return Err(Close::Auth(reason));
                }
                continue;
            }
        }
        let decoded = match decoded {
            Decoded::Request(req) => match *req {
                Request {
                    api,
                    version,
                    correlation_id,
                    body: kafka_protocol::messages::RequestKind::Produce(produce),
                    ..
                } if produce.acks == -1 => {
                    pending.push_back(pipelined_produce(
                        &broker,
                        api,
                        version,
                        correlation_id,
                        produce,
                        arrived,
                        &conn,
                    ));
                    continue;
                }
                other => Decoded::Request(Box::new(other)),
            },
            other => other,
        };
        // Anything else answers after every earlier request.
        drain(&mut pending, &mut wr).await?;
        // A request may wait (a parked JoinGroup, a long poll): shutdown
        // must not wait for it.
        let api = match &decoded {
            Decoded::Request(r) => r.api,
            Decoded::ApiVersionsFallback { .. } => ApiKey::ApiVersions,
            Decoded::OldProduce { .. } => ApiKey::Produce,
        };
        let reply = tokio::select! {
            reply = run(&broker, decoded, &conn) => reply?,
            _ = crate::stopped(&mut shutdown) => return Err(Close::Shutdown),
        };
        broker.metrics().request(api, arrived.elapsed());
        if let Some(chunks) = reply {
            for chunk in &chunks {
                wr.write_all(chunk).await?;
            }
            // Answer now unless the client has already sent the next request.
            if rd.buffer().is_empty() {
                wr.flush().await?;
            }
        }
    }
}

/// A fresh server nonce for SCRAM: 256 random bits, printable.
fn server_nonce() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The users of the metadata image, as SASL exchanges look them up.
struct Users(Arc<weir_meta::Image>);

impl crate::security::sasl::Credentials for Users {
    fn scram(
        &self,
        user: &str,
        mechanism: crate::security::scram::Mechanism,
    ) -> Option<crate::security::scram::Credential> {
        let c = self.0.scram.get(user)?.get(mechanism.name())?;
        Some(crate::security::scram::Credential {
            mechanism,
            salt: c.salt.clone(),
            iterations: c.iterations,
            stored_key: c.stored_key.clone(),
            server_key: c.server_key.clone(),
        })
    }
}

fn note_authenticated(
    answer: &crate::security::session::AuthAnswer,
    session: &Session,
    conn: &mut handlers::Conn,
) {
    if answer.authenticated
        && let Some(user) = session.user()
    {
        if conn.principal.is_none() {
            debug!(client = conn.client_host, user, "authenticated");
        }
        conn.principal = Some(Arc::from(format!("User:{user}")));
    }
}

/// SaslHandshake and SaslAuthenticate, which change the connection's
/// session: the response frame, and why to close after it (if so).
fn sasl_request(
    broker: &Broker,
    req: Request,
    session: Option<&mut Session>,
    conn: &mut handlers::Conn,
) -> Result<(Bytes, Option<String>), Close> {
    use crate::security::session::ILLEGAL_SASL_STATE;
    use kafka_protocol::messages::{RequestKind, SaslAuthenticateResponse, SaslHandshakeResponse};
    use kafka_protocol::protocol::StrBytes;
    let Request {
        api,
        version,
        correlation_id,
        body,
        ..
    } = req;
    let header_version = api.response_header_version(version);
    match body {
        RequestKind::SaslHandshake(r) => {
            let mut resp = SaslHandshakeResponse::default();
            let close = match session {
                Some(s) => {
                    let a = s.handshake(r.mechanism.as_str(), version);
                    resp.error_code = a.error_code;
                    resp.mechanisms = a
                        .mechanisms
                        .into_iter()
                        .map(StrBytes::from_static_str)
                        .collect();
                    a.close.then(|| {
                        format!(
                            "SaslHandshake for {} refused (error {})",
                            r.mechanism.as_str(),
                            a.error_code
                        )
                    })
                }
                None => {
                    resp.error_code = ILLEGAL_SASL_STATE;
                    Some(format!(
                        "SaslHandshake on listener {}, which does not use SASL",
                        conn.listener
                    ))
                }
            };
            let frame = frame_response(correlation_id, header_version, |out| {
                resp.encode(out, version)
            })?;
            Ok((frame, close))
        }
        RequestKind::SaslAuthenticate(r) => {
            let mut resp = SaslAuthenticateResponse::default();
            let close = match session {
                Some(s) => {
                    let a = s.authenticate(
                        &r.auth_bytes,
                        &server_nonce(),
                        &Users(broker.cluster().image()),
                        now_ms(),
                    );
                    note_authenticated(&a, s, conn);
                    resp.error_code = a.error_code;
                    resp.error_message = a.error_message.clone().map(StrBytes::from_string);
                    resp.auth_bytes = Bytes::from(a.token.clone());
                    resp.session_lifetime_ms = a.session_lifetime_ms;
                    if a.close {
                        warn!(
                            client = conn.client_host,
                            reason = a.reason.as_deref().unwrap_or(""),
                            "SASL authentication failed"
                        );
                    }
                    a.close.then(|| a.reason.unwrap_or_default())
                }
                None => {
                    resp.error_code = ILLEGAL_SASL_STATE;
                    resp.error_message =
                        Some(StrBytes::from_static_str("this listener does not use SASL"));
                    Some(format!(
                        "SaslAuthenticate on listener {}, which does not use SASL",
                        conn.listener
                    ))
                }
            };
            let frame = frame_response(correlation_id, header_version, |out| {
                resp.encode(out, version)
            })?;
            Ok((frame, close))
        }
        _ => Err(Close::Malformed("not a SASL request".into())),
    }
}

/// Writes the answers of the waiting produces, in order.
async fn drain(
    pending: &mut VecDeque<tokio::task::JoinHandle<Result<Bytes, Close>>>,
    wr: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
) -> Result<(), Close> {
    while let Some(task) = pending.pop_front() {
        let frame = task
            .await
            .map_err(|e| Close::Malformed(format!("a produce task failed: {e}")))??;
        wr.write_all(&frame).await?;
    }
    wr.flush().await?;
    Ok(())
}

/// An acks=all Produce: appends now and returns the task that answers once
/// the data is durable.
fn pipelined_produce(
    broker: &Arc<Broker>,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    mut produce: kafka_protocol::messages::ProduceRequest,
    arrived: Instant,
    conn: &handlers::Conn,
) -> tokio::task::JoinHandle<Result<Bytes, Close>> {
    let authz = handlers::authorize::Authz::new(broker, conn);
    let denied = handlers::authorize::before_produce(&authz, &mut produce);
    let (resp, waits) = handlers::produce::append(broker, produce, version, &conn.listener);
    let broker = broker.clone();
    tokio::spawn(async move {
        let mut resp = handlers::produce::wait(resp, waits).await;
        handlers::authorize::after_produce(&mut resp, denied);
        broker.metrics().request(api, arrived.elapsed());
        frame_response(
            correlation_id,
            api.response_header_version(version),
            |out| resp.encode(out, version),
        )
    })
}

/// Runs a decoded request; its response frame in one or more pieces, or
/// `None` (acks=0).
async fn run(
    broker: &Broker,
    decoded: Decoded,
    conn: &handlers::Conn,
) -> Result<Option<Vec<Bytes>>, Close> {
    let req = match decoded {
        Decoded::ApiVersionsFallback { correlation_id } => {
            // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges,
            // so the client can retry with a version we speak.
            let body = handlers::api_versions_unsupported();
            let frame = frame_response(correlation_id, 0, |out| {
                out.put_slice(&body);
                Ok(())
            })?;
            return Ok(Some(vec![frame]));
        }
        Decoded::OldProduce {
            correlation_id,
            version,
            client_id,
            request,
        } => {
            warn!(
                client = conn.client_host,
                client_id = client_id.as_deref().unwrap_or(""),
                version,
                "Produce v{version} is not supported (Kafka 4 removed Produce v0-v2); \
                 answered UNSUPPORTED_VERSION: the client must send ApiVersions first \
                 (librdkafka: api.version.request=true) or be upgraded"
            );
            if request.acks == 0 {
                return Ok(None);
            }
            let body = handlers::produce::old_version_refusal(&request, version);
            let frame = frame_response(correlation_id, 0, |out| {
                out.put_slice(&body);
                Ok(())
            })?;
            return Ok(Some(vec![frame]));
        }
        Decoded::Request(req) => *req,
    };
    let Request {
        api,
        version,
        correlation_id,
        header,
        body: request,
    } = req;
    match handlers::dispatch(broker, &header, request, conn).await {
        Reply::None => Ok(None),
        Reply::Response(response) => {
            encode_reply(api, version, correlation_id, &response).map(Some)
        }
    }
}

/// A response frame in one or more pieces. Fetch responses carry the
/// stored record sets as they were read, without copying them into the
/// encoded frame.
pub(crate) fn encode_reply(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Vec<Bytes>, Close> {
    let header_version = api.response_header_version(version);
    if let ResponseKind::Fetch(fetch) = response
        && let Some(body) = handlers::fetch_chunks(fetch, version)
    {
        let size: usize = body.iter().map(Bytes::len).sum();
        let mut frame = vec![frame_header(correlation_id, header_version, size)?];
        frame.extend(body);
        return Ok(frame);
    }
    let frame = frame_response(correlation_id, header_version, |out| {
        response.encode(out, version)
    })?;
    Ok(vec![frame])
}

/// A decoded request.
pub(crate) struct Request {
    pub api: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub header: RequestHeader,
    pub body: kafka_protocol::messages::RequestKind,
}

/// What a frame decodes to.
pub(crate) enum Decoded {
    Request(Box<Request>),
    /// ApiVersions in a version we do not speak.
    ApiVersionsFallback {
        correlation_id: i32,
    },
    /// Produce v0-v2, answered UNSUPPORTED_VERSION.
    OldProduce {
        correlation_id: i32,
        version: i16,
        client_id: Option<String>,
        request: kafka_protocol::messages::ProduceRequest,
    },
}

/// Decodes a request frame (without its length prefix): the API must be
/// served and its version supported, the header and body must parse.
pub(crate) fn decode(mut frame: Bytes) -> Result<Decoded, Close> {
    if frame.len() < 8 {
        return Err(Close::Malformed(format!(
            "{} bytes is shorter than a request header",
            frame.len()
        )));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|_| Close::UnknownApi(key))?;
    let Some(range) = handlers::supported(api) else {
        return Err(Close::UnknownApi(key));
    };
    if version < range.min || version > range.max {
        if api == ApiKey::ApiVersions {
            return Ok(Decoded::ApiVersionsFallback { correlation_id });
        }
        if api == ApiKey::Produce && (0..OLD_PRODUCE_VERSIONS_END).contains(&version) {
            return decode_old_produce(frame, version, correlation_id);
        }
        return Err(Close::UnsupportedVersion(api, version));
    }
    tracing::trace!(?api, version, correlation_id, "request");
    let header_version = api.request_header_version(version);
    let header = decode_guarded(|| RequestHeader::decode(&mut frame, header_version))?;
    let body =
        decode_guarded(|| kafka_protocol::messages::RequestKind::decode(api, &mut frame, version))?;
    Ok(Decoded::Request(Box::new(Request {
        api,
        version,
        correlation_id,
        header,
        body,
    })))
}

/// Produce v0-v2 end here (Kafka 4 removed them, KIP-896): versions a client
/// sends only when it skips ApiVersions. Their request body is v3's without
/// the transactional id, so it decodes as v3 behind a null one.
const OLD_PRODUCE_VERSIONS_END: i16 = 3;

fn decode_old_produce(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<Decoded, Close> {
    let header = decode_guarded(|| {
        RequestHeader::decode(&mut frame, ApiKey::Produce.request_header_version(version))
    })?;
    let mut body = BytesMut::with_capacity(frame.len() + 2);
    body.put_i16(-1);
    body.put_slice(&frame);
    let mut body = body.freeze();
    let request =
        decode_guarded(|| kafka_protocol::messages::ProduceRequest::decode(&mut body, 3))?;
    Ok(Decoded::OldProduce {
        correlation_id,
        version,
        client_id: header.client_id.map(|c| c.to_string()),
        request,
    })
}

/// Runs a decoder, turning both errors and panics (a decoder bug on
/// hostile input) into a closed connection.
fn decode_guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, Close> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Close::Malformed(e.to_string())),
        Err(_) => Err(Close::Malformed("decoder panicked".to_owned())),
    }
}

/// A whole response frame: length, header and the body `encode` writes,
/// encoded in place.
fn frame_response(
    correlation_id: i32,
    header_version: i16,
    encode: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
) -> Result<Bytes, Close> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    put_header(&mut out, correlation_id, header_version)?;
    encode(&mut out).map_err(|e| Close::Malformed(format!("encoding the response failed: {e}")))?;
    let len = i32::try_from(out.len() - 4)
        .map_err(|_| Close::Malformed("response larger than 2 GiB".to_owned()))?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out.freeze())
}

/// The length and header of a response whose body of `body_len` bytes is
/// sent separately.
fn frame_header(correlation_id: i32, header_version: i16, body_len: usize) -> Result<Bytes, Close> {
    let mut out = BytesMut::with_capacity(16);
    out.put_i32(0);
    put_header(&mut out, correlation_id, header_version)?;
    let len = i32::try_from(out.len() - 4 + body_len)
        .map_err(|_| Close::Malformed("response larger than 2 GiB".to_owned()))?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out.freeze())
}

fn put_header(out: &mut BytesMut, correlation_id: i32, header_version: i16) -> Result<(), Close> {
    let mut h = ResponseHeader::default();
    h.correlation_id = correlation_id;
    h.encode(out, header_version)
        .map_err(|e| Close::Malformed(format!("encoding the response header: {e}")))
}
