//! A minimal Kafka broker built on kafka-protocol, for fault injection and microbenchmarks.
//!
//! It is not a broker: it keeps no data. It answers ApiVersions, Metadata, FindCoordinator,
//! DescribeCluster, Produce (acks=0 gets no answer) and Fetch (with a fixed payload) at once,
//! so that tests can make it misbehave on purpose ([`Fault`]) and benchmarks can measure the
//! gateway without a broker's cost in the way. Several mocks can form a "cluster": each names
//! all of them in Metadata.
//!
//! It can also demand security before it serves ([`MockSecurity`]): TLS, optionally with a
//! client certificate chaining to a given CA, and SASL (`PLAIN`, `SCRAM-SHA-256`,
//! `SCRAM-SHA-512`, Kafka framing: SaslHandshake v1 then SaslAuthenticate). Until a connection
//! has authenticated it answers only ApiVersions and the SASL requests; any other request is
//! counted ([`MockBroker::unauthenticated_requests`]) and the connection closed, as a broker
//! does. Successful authentications are recorded ([`MockBroker::authentications`]) so a test
//! can check who authenticated, and with what. This stands in for brokers where the real test
//! broker has no such mode (tansu 0.6: no TLS listener, no SASL with its bundled storage); it
//! is a test double, not a reference implementation. SCRAM verification uses the gateway's
//! own SCRAM server, which the end-to-end tests pin to librdkafka independently.

use anyhow::Result;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::fetch_response::{self, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{
    NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeClusterResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rustls_pki_types::CertificateDer;
use sluice::auth::scram::{ScramCredential, ScramMechanism, ScramServer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A misbehaviour to inject.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Fault {
    /// Behave.
    #[default]
    None,
    /// Close the connection, without answering, when a request with this API key arrives.
    CloseOn(i16),
    /// Wait this long before every answer.
    Delay(Duration),
    /// Answer requests with this API key with bytes that are not a valid response.
    GarbageOn(i16),
    /// Answer every request with the wrong correlation id.
    WrongCorrelation,
    /// Add a KIP-951 node endpoint naming this node to every Produce (v10+) and Fetch (v16+)
    /// response.
    NodeEndpoints,
    /// Answer requests with API keys unknown to kafka-protocol (instead of closing) with a
    /// frame holding the request's correlation id followed by the whole request frame body
    /// (header included), so a test can check both directions byte for byte.
    EchoUnknown,
    /// Answer requests with this API key with exactly these bytes (no length prefix added),
    /// e.g. a negative or oversized frame length.
    RawOn(i16, Bytes),
    /// Answer Metadata with no brokers, as a broker that is still starting may.
    NoBrokers,
}

/// Options of one mock broker.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Node id.
    pub node_id: i32,
    /// Fault to inject.
    pub fault: Fault,
    /// Record bytes returned for every fetched partition (empty: no records).
    pub fetch_payload: Bytes,
    /// What a connection must do before it is served (default: nothing).
    pub security: MockSecurity,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            node_id: 1,
            fault: Fault::None,
            fetch_payload: Bytes::new(),
            security: MockSecurity::default(),
        }
    }
}

/// Security a mock broker demands of every connection.
#[derive(Debug, Clone, Default)]
pub struct MockSecurity {
    /// TLS with this server configuration (e.g. [`crate::pki::Pki::server_config`]; with
    /// client authentication in it, mTLS). None: plaintext.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// SASL required before anything but ApiVersions. None: no SASL.
    pub sasl: Option<MockSasl>,
}

/// SASL a mock broker requires.
#[derive(Clone)]
pub struct MockSasl {
    /// Mechanisms offered: any of `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`.
    pub mechanisms: Vec<String>,
    /// Users and their passwords.
    pub users: Vec<(String, String)>,
    /// KIP-368 session lifetime announced in SaslAuthenticate answers (v1+): a connection
    /// that sends an ordinary request after it is closed, as Kafka does with
    /// `connections.max.reauth.ms`; re-authenticating (same user) renews it. None: no limit.
    pub session_lifetime: Option<Duration>,
}

impl std::fmt::Debug for MockSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords stay out of test output.
        f.debug_struct("MockSasl")
            .field("mechanisms", &self.mechanisms)
            .field(
                "users",
                &self.users.iter().map(|(u, _)| u).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl MockSasl {
    /// One user, the given mechanisms.
    pub fn new(mechanisms: &[&str], user: &str, password: &str) -> MockSasl {
        MockSasl {
            mechanisms: mechanisms.iter().map(|m| m.to_string()).collect(),
            users: vec![(user.to_string(), password.to_string())],
            session_lifetime: None,
        }
    }
}

/// One successful authentication seen by a mock broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockAuthentication {
    /// The SASL mechanism, None when the connection needed no SASL.
    pub mechanism: Option<String>,
    /// The SASL user name, if any.
    pub principal: Option<String>,
    /// The client certificate (leaf) presented in the TLS handshake, if any.
    pub client_cert: Option<CertificateDer<'static>>,
}

/// `SASL_AUTHENTICATION_FAILED`.
const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// `UNSUPPORTED_SASL_MECHANISM`.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// `ILLEGAL_SASL_STATE`.
const ILLEGAL_SASL_STATE: i16 = 34;

/// A running mock broker; stops on drop.
pub struct MockBroker {
    /// Listening address.
    pub addr: SocketAddr,
    /// Node id.
    pub node_id: i32,
    state: Arc<State>,
    task: JoinHandle<()>,
}

struct State {
    options: Mutex<MockOptions>,
    /// Every broker of the mock cluster (node id, address), this one included.
    cluster: Mutex<Vec<(i32, SocketAddr)>>,
    /// Requests received, all APIs.
    requests: AtomicU64,
    /// Produce request bytes received.
    produce_bytes: AtomicU64,
    /// Requests received per API key (keys `0..KEY_SLOTS`).
    by_key: Vec<AtomicU64>,
    /// Request frames (length prefix excluded) with API keys unknown to kafka-protocol.
    unknown_frames: Mutex<Vec<Bytes>>,
    /// Successful authentications (TLS client certificate and/or SASL), in order.
    authentications: Mutex<Vec<MockAuthentication>>,
    /// Requests other than ApiVersions and SASL received before authenticating.
    unauthenticated: AtomicU64,
    /// Requests that arrived after their connection's SASL session expired.
    expired_sessions: AtomicU64,
    /// Failed SASL authentications.
    auth_failures: AtomicU64,
    /// Failed TLS handshakes.
    tls_failures: AtomicU64,
    /// SCRAM credentials of the configured users, derived once at start.
    scram: HashMap<(ScramMechanism, String), ScramCredential>,
}

/// API keys below this bound are counted one by one ([`MockBroker::requests_for`]).
const KEY_SLOTS: usize = 128;

impl MockBroker {
    /// Starts a mock broker on a free port.
    pub async fn start(options: MockOptions) -> Result<MockBroker> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let node_id = options.node_id;
        let mut scram = HashMap::new();
        if let Some(sasl) = &options.security.sasl {
            for m in &sasl.mechanisms {
                if let Some(mech) = ScramMechanism::from_name(m) {
                    for (user, password) in &sasl.users {
                        scram.insert(
                            (mech, user.clone()),
                            ScramCredential::derive(
                                mech,
                                password,
                                ScramCredential::DEFAULT_ITERATIONS,
                            ),
                        );
                    }
                } else if m != "PLAIN" {
                    anyhow::bail!("mock broker: unsupported SASL mechanism {m}");
                }
            }
        }
        let state = Arc::new(State {
            options: Mutex::new(options),
            cluster: Mutex::new(vec![(node_id, addr)]),
            requests: AtomicU64::new(0),
            produce_bytes: AtomicU64::new(0),
            by_key: (0..KEY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            unknown_frames: Mutex::new(Vec::new()),
            authentications: Mutex::new(Vec::new()),
            unauthenticated: AtomicU64::new(0),
            expired_sessions: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            tls_failures: AtomicU64::new(0),
            scram,
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(accept(s.clone(), stream));
            }
        });
        Ok(MockBroker {
            addr,
            node_id,
            state,
            task,
        })
    }

    /// Starts `n` mocks with node ids `first_id..` that name each other in Metadata.
    pub async fn cluster(n: usize, first_id: i32) -> Result<Vec<MockBroker>> {
        let mut brokers = Vec::new();
        for i in 0..n {
            brokers.push(
                MockBroker::start(MockOptions {
                    node_id: first_id + i as i32,
                    ..MockOptions::default()
                })
                .await?,
            );
        }
        let all: Vec<_> = brokers.iter().map(|b| (b.node_id, b.addr)).collect();
        for b in &brokers {
            *b.state.cluster.lock().unwrap() = all.clone();
        }
        Ok(brokers)
    }

    /// Changes the injected fault for new requests.
    pub fn set_fault(&self, fault: Fault) {
        self.state.options.lock().unwrap().fault = fault;
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Requests with this API key received so far (0 for keys outside `0..128`).
    pub fn requests_for(&self, api_key: i16) -> u64 {
        usize::try_from(api_key)
            .ok()
            .and_then(|i| self.state.by_key.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every request frame received with an API key unknown to kafka-protocol, exactly as it
    /// arrived (length prefix excluded), in arrival order.
    pub fn unknown_frames(&self) -> Vec<Bytes> {
        self.state.unknown_frames.lock().unwrap().clone()
    }

    /// Successful authentications so far, in order (one per connection that authenticated;
    /// with TLS client certificates and no SASL, one per connection that sent a request).
    pub fn authentications(&self) -> Vec<MockAuthentication> {
        self.state.authentications.lock().unwrap().clone()
    }

    /// Requests that arrived after their connection's SASL session had expired (each
    /// closed that connection).
    pub fn expired_session_requests(&self) -> u64 {
        self.state.expired_sessions.load(Ordering::Relaxed)
    }

    /// Requests other than ApiVersions and SASL that arrived before their connection had
    /// authenticated (each closed that connection).
    pub fn unauthenticated_requests(&self) -> u64 {
        self.state.unauthenticated.load(Ordering::Relaxed)
    }

    /// Failed SASL authentications.
    pub fn auth_failures(&self) -> u64 {
        self.state.auth_failures.load(Ordering::Relaxed)
    }

    /// Failed TLS handshakes (e.g. no or an untrusted client certificate under mTLS).
    pub fn tls_failures(&self) -> u64 {
        self.state.tls_failures.load(Ordering::Relaxed)
    }

    /// Produce request bytes received so far.
    pub fn produce_bytes(&self) -> u64 {
        self.state.produce_bytes.load(Ordering::Relaxed)
    }

    /// `host:port`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs the TLS handshake when configured, then serves the connection.
async fn accept(state: Arc<State>, stream: TcpStream) {
    let security = state.options.lock().unwrap().security.clone();
    let Some(tls) = security.tls else {
        serve(state, stream, Conn::new(security.sasl.is_some(), None)).await;
        return;
    };
    match tokio_rustls::TlsAcceptor::from(tls).accept(stream).await {
        Ok(stream) => {
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned());
            serve(state, stream, Conn::new(security.sasl.is_some(), cert)).await;
        }
        Err(_) => {
            state.tls_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Authentication state of one connection.
struct Conn {
    /// Whether SASL must complete before other requests are served.
    sasl_required: bool,
    /// Whether the connection may send ordinary requests.
    authenticated: bool,
    /// Mechanism chosen by SaslHandshake.
    mechanism: Option<String>,
    /// The SCRAM exchange in progress, if any.
    scram: Option<(ScramServer, String)>,
    client_cert: Option<CertificateDer<'static>>,
    /// Whether this connection's identity has been recorded (connections without SASL).
    recorded: bool,
    /// The user this connection authenticated as (re-authentication must keep it).
    user: Option<String>,
    /// When the SASL session ends (KIP-368), if the broker announced a lifetime.
    expires: Option<std::time::Instant>,
}

impl Conn {
    fn new(sasl_required: bool, client_cert: Option<CertificateDer<'static>>) -> Conn {
        Conn {
            sasl_required,
            authenticated: !sasl_required,
            mechanism: None,
            scram: None,
            client_cert,
            recorded: false,
            user: None,
            expires: None,
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    state: Arc<State>,
    mut stream: S,
    mut conn: Conn,
) {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    loop {
        while buf.len() >= 4 {
            let n = i32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() < 4 + n {
                buf.reserve(4 + n - buf.len());
                break;
            }
            let frame = buf.split_to(4 + n).freeze().slice(4..);
            let reply = match authenticate(&state, &mut conn, &frame) {
                Gate::Pass => answer(&state, frame),
                Gate::Reply(reply) => reply,
            };
            match reply {
                Reply::None => {}
                Reply::Close => return,
                Reply::Last(out) => {
                    let _ = stream.write_all(&out).await;
                    let _ = stream.flush().await;
                    let _ = stream.shutdown().await;
                    return;
                }
                Reply::Bytes(out, delay) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    // Flush: under TLS the write may sit in the session buffer.
                    if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                }
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(256 * 1024);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

enum Reply {
    None,
    Close,
    Bytes(Bytes, Duration),
    /// Write this, then close.
    Last(Bytes),
}

/// What the authentication gate decides about one request frame.
enum Gate {
    /// Serve it normally.
    Pass,
    /// Answer (or close) without serving it.
    Reply(Reply),
}

/// Handles SASL requests and refuses everything but ApiVersions before authentication.
fn authenticate(state: &State, conn: &mut Conn, frame: &Bytes) -> Gate {
    if frame.len() < 8 {
        return Gate::Pass;
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let is_sasl =
        api_key == ApiKey::SaslHandshake as i16 || api_key == ApiKey::SaslAuthenticate as i16;
    if !conn.sasl_required {
        if is_sasl {
            // Kafka answers SASL on a non-SASL listener by closing.
            state.unauthenticated.fetch_add(1, Ordering::Relaxed);
            return Gate::Reply(Reply::Close);
        }
        if !conn.recorded && api_key != ApiKey::ApiVersions as i16 {
            // Without SASL, the first real request marks the connection as identified (by
            // its TLS client certificate, if any).
            conn.recorded = true;
            state
                .authentications
                .lock()
                .unwrap()
                .push(MockAuthentication {
                    mechanism: None,
                    principal: None,
                    client_cert: conn.client_cert.clone(),
                });
        }
        return Gate::Pass;
    }
    if conn.authenticated && !is_sasl {
        if conn
            .expires
            .is_some_and(|at| std::time::Instant::now() >= at)
        {
            // Kafka closes a connection whose session expired at its next request.
            state.expired_sessions.fetch_add(1, Ordering::Relaxed);
            return Gate::Reply(Reply::Close);
        }
        return Gate::Pass;
    }
    if api_key == ApiKey::ApiVersions as i16 {
        return Gate::Pass;
    }
    if !is_sasl {
        // Before authentication only ApiVersions and SASL are served.
        state.unauthenticated.fetch_add(1, Ordering::Relaxed);
        return Gate::Reply(Reply::Close);
    }
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Gate::Reply(Reply::Close);
    };
    let mut body = frame.clone();
    let Ok(header) = RequestHeader::decode(&mut body, key.request_header_version(version)) else {
        return Gate::Reply(Reply::Close);
    };
    let cid = header.correlation_id;
    let options = state.options.lock().unwrap().clone();
    let sasl = options.security.sasl.expect("SASL configured");
    if key == ApiKey::SaslHandshake {
        // v0 means raw SASL tokens follow; only the Kafka framing (v1) is implemented.
        let Ok(req) = SaslHandshakeRequest::decode(&mut body, version) else {
            return Gate::Reply(Reply::Close);
        };
        // A second handshake is a re-authentication (KIP-368): only on an authenticated
        // connection, after the previous exchange completed.
        let reauth = conn.authenticated && conn.scram.is_none();
        if version < 1 || (conn.mechanism.is_some() && !reauth) {
            return Gate::Reply(Reply::Close);
        }
        let offered: Vec<StrBytes> = sasl
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_string(m.clone()))
            .collect();
        let ok = sasl.mechanisms.iter().any(|m| **m == *req.mechanism);
        let resp = SaslHandshakeResponse::default()
            .with_error_code(if ok { 0 } else { UNSUPPORTED_SASL_MECHANISM })
            .with_mechanisms(offered);
        if ok {
            conn.mechanism = Some(req.mechanism.to_string());
        }
        return Gate::Reply(Reply::Bytes(
            encode(key, cid, &resp, version),
            Duration::ZERO,
        ));
    }
    // SaslAuthenticate.
    let Ok(req) = SaslAuthenticateRequest::decode(&mut body, version) else {
        return Gate::Reply(Reply::Close);
    };
    let Some(mechanism) = conn.mechanism.clone() else {
        let resp = SaslAuthenticateResponse::default()
            .with_error_code(ILLEGAL_SASL_STATE)
            .with_error_message(Some(StrBytes::from_static_str("no SaslHandshake first")));
        return Gate::Reply(Reply::Bytes(
            encode(key, cid, &resp, version),
            Duration::ZERO,
        ));
    };
    let outcome: Result<(Bytes, Option<String>), &'static str> = if mechanism == "PLAIN" {
        plain(&sasl, &req.auth_bytes).map(|user| (Bytes::new(), Some(user)))
    } else {
        let mech = ScramMechanism::from_name(&mechanism).expect("offered mechanisms are known");
        match conn.scram.take() {
            None => {
                let mut server = ScramServer::new(mech);
                match server.client_first(&req.auth_bytes) {
                    Ok(user) => {
                        let cred = state.scram.get(&(mech, user.clone()));
                        let first = server.server_first(cred);
                        conn.scram = Some((server, user));
                        Ok((Bytes::from(first), None))
                    }
                    Err(_) => Err("malformed client-first message"),
                }
            }
            Some((mut server, user)) => match server.client_final(&req.auth_bytes) {
                Ok(last) => Ok((Bytes::from(last), Some(user))),
                Err(_) => Err("invalid credentials"),
            },
        }
    };
    let outcome = match outcome {
        // Re-authentication keeps the principal, as in Kafka.
        Ok((_, Some(user))) if conn.user.as_ref().is_some_and(|u| *u != user) => {
            Err("re-authentication as another user")
        }
        other => other,
    };
    match outcome {
        Ok((bytes, done)) => {
            let mut lifetime_ms = 0;
            if let Some(user) = done {
                conn.authenticated = true;
                conn.recorded = true;
                conn.user = Some(user.clone());
                if let Some(l) = sasl.session_lifetime {
                    conn.expires = Some(std::time::Instant::now() + l);
                    lifetime_ms = i64::try_from(l.as_millis()).unwrap_or(i64::MAX);
                }
                state
                    .authentications
                    .lock()
                    .unwrap()
                    .push(MockAuthentication {
                        mechanism: Some(mechanism),
                        principal: Some(user),
                        client_cert: conn.client_cert.clone(),
                    });
            }
            let mut resp = SaslAuthenticateResponse::default().with_auth_bytes(bytes);
            if version >= 1 {
                resp.session_lifetime_ms = lifetime_ms;
            }
            Gate::Reply(Reply::Bytes(
                encode(key, cid, &resp, version),
                Duration::ZERO,
            ))
        }
        Err(why) => {
            state.auth_failures.fetch_add(1, Ordering::Relaxed);
            let resp = SaslAuthenticateResponse::default()
                .with_error_code(SASL_AUTHENTICATION_FAILED)
                .with_error_message(Some(StrBytes::from_static_str(why)));
            // Answer, then close, as a broker does after a failed authentication.
            Gate::Reply(Reply::Last(encode(key, cid, &resp, version)))
        }
    }
}

/// Checks a SASL/PLAIN message (`[authzid] NUL user NUL password`); returns the user.
fn plain(sasl: &MockSasl, msg: &[u8]) -> Result<String, &'static str> {
    let mut parts = msg.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed PLAIN message");
    };
    if !authzid.is_empty() && authzid != user {
        return Err("authorization id differs from the user");
    }
    let user = std::str::from_utf8(user).map_err(|_| "user is not UTF-8")?;
    let known = sasl
        .users
        .iter()
        .any(|(u, p)| u == user && p.as_bytes() == password);
    if known {
        Ok(user.to_string())
    } else {
        Err("invalid credentials")
    }
}

fn answer(state: &State, mut frame: Bytes) -> Reply {
    state.requests.fetch_add(1, Ordering::Relaxed);
    if frame.len() < 8 {
        return Reply::Close;
    }
    let options = state.options.lock().unwrap().clone();
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    if let Some(c) = usize::try_from(api_key)
        .ok()
        .and_then(|i| state.by_key.get(i))
    {
        c.fetch_add(1, Ordering::Relaxed);
    }
    if options.fault == Fault::CloseOn(api_key) {
        return Reply::Close;
    }
    let Ok(key) = ApiKey::try_from(api_key) else {
        state.unknown_frames.lock().unwrap().push(frame.clone());
        if options.fault == Fault::EchoUnknown {
            let mut out = BytesMut::with_capacity(8 + frame.len());
            out.put_i32(4 + frame.len() as i32);
            out.put_slice(&frame[4..8]);
            out.put_slice(&frame);
            return Reply::Bytes(out.freeze(), Duration::ZERO);
        }
        return Reply::Close;
    };
    let frame_len = frame.len();
    let Ok(header) = RequestHeader::decode(&mut frame, key.request_header_version(version)) else {
        return Reply::Close;
    };
    // Hostile frames reach the mock through the gateway (passthrough requests are not
    // decoded there): the same structural check keeps its decoders from forged counts.
    if !sluice::schema::check_request(api_key, version, &frame) {
        return Reply::Close;
    }
    let mut correlation_id = header.correlation_id;
    if options.fault == Fault::WrongCorrelation {
        correlation_id += 1000;
    }
    if let Fault::RawOn(key, bytes) = &options.fault {
        if *key == api_key {
            return Reply::Bytes(bytes.clone(), Duration::ZERO);
        }
    }
    if options.fault == Fault::GarbageOn(api_key) {
        let mut out = BytesMut::new();
        out.put_i32(6);
        out.put_i32(correlation_id);
        out.put_i16(-12345);
        return Reply::Bytes(out.freeze(), Duration::ZERO);
    }
    let delay = match options.fault {
        Fault::Delay(d) => d,
        _ => Duration::ZERO,
    };
    let me = options.node_id;
    let cluster = state.cluster.lock().unwrap().clone();
    let out = match key {
        ApiKey::ApiVersions => {
            let mut keys = vec![
                ApiKey::Produce,
                ApiKey::Fetch,
                ApiKey::Metadata,
                ApiKey::ApiVersions,
                ApiKey::FindCoordinator,
                ApiKey::DescribeCluster,
            ];
            if options.security.sasl.is_some() {
                keys.extend([ApiKey::SaslHandshake, ApiKey::SaslAuthenticate]);
            }
            let resp = ApiVersionsResponse::default().with_api_keys(
                keys.iter()
                    .map(|k| {
                        let r = k.valid_versions();
                        ApiVersion::default()
                            .with_api_key(*k as i16)
                            .with_min_version(r.min)
                            .with_max_version(r.max)
                    })
                    .collect(),
            );
            // ApiVersions responses always use header v0.
            encode_with(correlation_id, 0, &resp, version)
        }
        ApiKey::Metadata => {
            let Ok(req) = MetadataRequest::decode(&mut frame, version) else {
                return Reply::Close;
            };
            let starting = options.fault == Fault::NoBrokers;
            let brokers = cluster
                .iter()
                .filter(|_| !starting)
                .map(|(id, addr)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(*id))
                        .with_host(StrBytes::from_string(addr.ip().to_string()))
                        .with_port(i32::from(addr.port()))
                })
                .collect();
            let topics = req
                .topics
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.name)
                .enumerate()
                .map(|(i, name)| {
                    // Spread partition leadership over the cluster.
                    let leader = cluster[i % cluster.len()].0;
                    MetadataResponseTopic::default()
                        .with_name(Some(name))
                        .with_partitions(vec![MetadataResponsePartition::default()
                            .with_partition_index(0)
                            .with_leader_id(BrokerId(leader))
                            .with_replica_nodes(vec![BrokerId(leader)])
                            .with_isr_nodes(vec![BrokerId(leader)])])
                })
                .collect();
            let resp = MetadataResponse::default()
                .with_brokers(brokers)
                .with_cluster_id(Some(StrBytes::from_static_str("mock")))
                .with_controller_id(BrokerId(cluster[0].0))
                .with_topics(topics);
            encode(key, correlation_id, &resp, version)
        }
        ApiKey::FindCoordinator => {
            let Ok(req) = FindCoordinatorRequest::decode(&mut frame, version) else {
                return Reply::Close;
            };
            let addr = cluster.iter().find(|(id, _)| *id == me).unwrap().1;
            let host = StrBytes::from_string(addr.ip().to_string());
            let mut resp = FindCoordinatorResponse::default();
            if version < 4 {
                resp = resp
                    .with_node_id(BrokerId(me))
                    .with_host(host)
                    .with_port(i32::from(addr.port()));
            } else {
                resp.coordinators = req
                    .coordinator_keys
                    .into_iter()
                    .map(|k| {
                        Coordinator::default()
                            .with_key(k)
                            .with_node_id(BrokerId(me))
                            .with_host(host.clone())
                            .with_port(i32::from(addr.port()))
                    })
                    .collect();
            }
            encode(key, correlation_id, &resp, version)
        }
        ApiKey::DescribeCluster => {
            let resp = DescribeClusterResponse::default()
                .with_cluster_id(StrBytes::from_static_str("mock"))
                .with_controller_id(BrokerId(cluster[0].0))
                .with_brokers(
                    cluster
                        .iter()
                        .map(|(id, addr)| {
                            DescribeClusterBroker::default()
                                .with_broker_id(BrokerId(*id))
                                .with_host(StrBytes::from_string(addr.ip().to_string()))
                                .with_port(i32::from(addr.port()))
                        })
                        .collect(),
                );
            encode(key, correlation_id, &resp, version)
        }
        ApiKey::Produce => {
            state
                .produce_bytes
                .fetch_add(frame_len as u64, Ordering::Relaxed);
            let Ok(req) = ProduceRequest::decode(&mut frame, version) else {
                return Reply::Close;
            };
            if req.acks == 0 {
                return Reply::None;
            }
            let mut resp = ProduceResponse::default().with_responses(
                req.topic_data
                    .into_iter()
                    .map(|t| {
                        TopicProduceResponse::default()
                            .with_name(t.name)
                            .with_partition_responses(
                                t.partition_data
                                    .into_iter()
                                    .map(|p| {
                                        PartitionProduceResponse::default()
                                            .with_index(p.index)
                                            .with_base_offset(0)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
            if options.fault == Fault::NodeEndpoints && version >= 10 {
                let addr = cluster.iter().find(|(id, _)| *id == me).unwrap().1;
                resp.node_endpoints = vec![NodeEndpoint::default()
                    .with_node_id(BrokerId(me))
                    .with_host(StrBytes::from_string(addr.ip().to_string()))
                    .with_port(i32::from(addr.port()))];
            }
            encode(key, correlation_id, &resp, version)
        }
        ApiKey::Fetch => {
            let Ok(req) = FetchRequest::decode(&mut frame, version) else {
                return Reply::Close;
            };
            let mut resp = FetchResponse::default().with_responses(
                req.topics
                    .into_iter()
                    .map(|t| {
                        FetchableTopicResponse::default()
                            .with_topic(t.topic.clone())
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partitions
                                    .into_iter()
                                    .map(|p| {
                                        PartitionData::default()
                                            .with_partition_index(p.partition)
                                            .with_high_watermark(i64::MAX / 2)
                                            .with_records(Some(options.fetch_payload.clone()))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
            if options.fault == Fault::NodeEndpoints && version >= 16 {
                let addr = cluster.iter().find(|(id, _)| *id == me).unwrap().1;
                resp.node_endpoints = vec![fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(me))
                    .with_host(StrBytes::from_string(addr.ip().to_string()))
                    .with_port(i32::from(addr.port()))
                    .with_rack(Some(StrBytes::from_static_str("rack-1")))];
            }
            encode(key, correlation_id, &resp, version)
        }
        _ => return Reply::Close,
    };
    Reply::Bytes(out, delay)
}

fn encode<T: Encodable>(key: ApiKey, correlation_id: i32, msg: &T, version: i16) -> Bytes {
    encode_with(
        correlation_id,
        key.response_header_version(version),
        msg,
        version,
    )
}

fn encode_with<T: Encodable>(
    correlation_id: i32,
    header_version: i16,
    msg: &T,
    version: i16,
) -> Bytes {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version).unwrap() + msg.compute_size(version).unwrap();
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(size as i32);
    header.encode(&mut out, header_version).unwrap();
    msg.encode(&mut out, version).unwrap();
    out.freeze()
}

/// A topic name for requests.
pub fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}
