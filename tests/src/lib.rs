//! Test harness: a real tansu broker as a child process, an in-process gateway, librdkafka
//! clients (the `rdkafka` crate) and raw kafka-protocol connections.
//!
//! Everything binds to 127.0.0.1 on free ports and is cleaned up on drop: the broker process is
//! killed, the gateway shut down.

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use rdkafka::config::ClientConfig;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod fuzz;
pub mod isolation;
pub mod jwt;
pub mod mock;
pub mod pki;

/// Where the tansu binary is: `$SLUICE_TANSU`, else the Makefile's install location.
pub fn tansu_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/sluice/tansu-0.6.0/tansu")
}

/// A free TCP port on 127.0.0.1 (free at the time of asking).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

/// Initialises test logging once (`RUST_LOG` controls it; warnings by default).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A tansu broker child process with in-memory storage, killed on drop.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:port`.
    pub addr: SocketAddr,
}

/// tansu's fixed node id.
pub const TANSU_NODE_ID: i32 = 111;

impl Tansu {
    /// Starts a broker on a free port and waits until it answers ApiVersions.
    pub async fn start() -> Result<Tansu> {
        Self::start_with_storage("memory://tansu/").await
    }

    /// Starts a broker with the given storage engine URL (`memory://tansu/`, `null://sink`).
    pub async fn start_with_storage(storage: &str) -> Result<Tansu> {
        Self::start_with_args(storage, &[]).await
    }

    /// Starts a broker with the given storage engine and extra `tansu broker` arguments.
    ///
    /// Readiness is an ApiVersions answer over plaintext. tansu 0.6.0 as packaged has no TLS
    /// listener (`--cert` is accepted and ignored, `--cert` with `--key` is refused by its
    /// argument parser) and cannot authenticate (`--authentication` needs SCRAM users, which
    /// its only storage engines, memory and S3, do not keep): secured upstreams are tested
    /// against [`mock::MockBroker`] instead.
    pub async fn start_with_args(storage: &str, extra: &[&str]) -> Result<Tansu> {
        let bin = tansu_path();
        if !bin.exists() {
            bail!(
                "tansu not found at {} (run `make tansu`, or set SLUICE_TANSU)",
                bin.display()
            );
        }
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let child = Command::new(&bin)
                .arg("broker")
                .args(["--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", storage])
                .args(extra)
                .env_remove("CLUSTER_ID")
                .env("RUST_LOG", "error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let mut broker = Tansu {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            match broker.wait_ready(Duration::from_secs(15)).await {
                Ok(()) => return Ok(broker),
                Err(e) => last_err = Some(e), // port taken in the meantime: try another
            }
        }
        Err(last_err.unwrap())
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let addr = self.addr.to_string();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("tansu exited early: {status}");
            }
            let connector = sluice::upstream::Connector::plaintext(Duration::from_secs(1));
            if sluice::upstream::probe(
                &connector,
                std::slice::from_ref(&addr),
                Duration::from_secs(1),
            )
            .await
            .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("tansu on {addr} not ready within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `host:port` for clients.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Kills the broker (a broker failure).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A gateway configuration for tests: free ports everywhere, fronting `bootstrap`.
pub fn gateway_config(bootstrap: &str) -> sluice::config::Config {
    let mut c = sluice::config::Config {
        listen: "127.0.0.1:0".into(),
        admin: "127.0.0.1:0".into(),
        ..Default::default()
    };
    c.upstream.bootstrap = vec![bootstrap.to_string()];
    c.upstream.connect_timeout_ms = 2_000;
    c.upstream.request_timeout_ms = 5_000;
    c.shutdown.drain_timeout_ms = 2_000;
    c.state_dir = temp_dir("state");
    c
}

/// A fresh directory under the system temp dir (not removed: tests may restart a gateway on it).
pub fn temp_dir(label: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-test-{}-{}-{label}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    dir
}

/// A plugin built by `make plugins`: `target/plugins/<name>.wasm` (or `target/test-plugins/`).
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target");
    for dir in ["plugins", "test-plugins"] {
        let p = root.join(dir).join(format!("{name}.wasm"));
        if let Ok(b) = std::fs::read(&p) {
            return b;
        }
    }
    panic!("plugin {name} not built: run `make plugins`");
}

/// A minimal HTTP/1.1 exchange with the admin API: returns the status and the body parsed as
/// JSON (`Null` when empty, a string when not JSON).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).await.expect("admin connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("admin write");
    s.write_all(body).await.expect("admin write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut out))
        .await
        .expect("admin API answered in time")
        .expect("admin read");
    let text = String::from_utf8_lossy(&out);
    let status = text[9..12].parse().expect("status code");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body = if let Some(chunked) = decode_chunked(&text, body) {
        chunked
    } else {
        body.to_string()
    };
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body))
    };
    (status, json)
}

fn decode_chunked(head: &str, body: &str) -> Option<String> {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return None;
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(after.get(..n)?);
        rest = after.get(n + 2..)?;
    }
}

/// Uploads a plugin built by `make plugins` under `name`; panics unless accepted.
pub async fn upload_plugin(admin: SocketAddr, name: &str, file: &str) -> serde_json::Value {
    let (status, body) = http(
        admin,
        "PUT",
        &format!("/api/v1/plugins/{name}"),
        &[("Content-Type", "application/wasm")],
        &plugin_bytes(file),
    )
    .await;
    assert!(
        status == 200 || status == 201,
        "upload {name}: {status} {body}"
    );
    body
}

/// Installs an interceptor; panics unless accepted.
pub async fn install(admin: SocketAddr, name: &str, spec: serde_json::Value) {
    let (status, body) = http(
        admin,
        "PUT",
        &format!("/api/v1/interceptors/{name}"),
        &[("Content-Type", "application/json")],
        spec.to_string().as_bytes(),
    )
    .await;
    assert!(
        status == 200 || status == 201,
        "install {name}: {status} {body}"
    );
}

/// Starts a gateway in front of `bootstrap` and waits until it has learnt the brokers.
pub async fn start_gateway(bootstrap: &str) -> Result<sluice::Gateway> {
    start_gateway_with(gateway_config(bootstrap)).await
}

/// Starts a gateway with a given configuration and waits until it has learnt the brokers.
pub async fn start_gateway_with(config: sluice::config::Config) -> Result<sluice::Gateway> {
    let gw = sluice::Gateway::start(config).await?;
    gw.refresh_brokers().await?;
    Ok(gw)
}

/// librdkafka client settings that suit tansu and fast tests.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "30000")
        .set("topic.metadata.refresh.interval.ms", "2000");
    c
}

/// Consumer settings: tansu answers a group join after about half the session timeout, so
/// keep it short.
pub fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = client_config(bootstrap);
    c.set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    c
}

/// A raw Kafka connection for protocol-level tests.
pub struct RawClient {
    /// The socket.
    pub stream: TcpStream,
    buf: BytesMut,
    correlation_id: i32,
}

impl RawClient {
    /// Connects.
    pub async fn connect(addr: SocketAddr) -> Result<RawClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buf: BytesMut::new(),
            correlation_id: 0,
        })
    }

    /// Connects from a chosen local address (e.g. `127.0.0.2`: every address of 127.0.0.0/8
    /// is loopback), to appear as another source.
    pub async fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> Result<RawClient> {
        let socket = match source {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buf: BytesMut::new(),
            correlation_id: 0,
        })
    }

    /// Encodes a request frame (length prefix included) without sending it.
    pub fn encode<R: Request>(&mut self, req: &R, version: i16) -> (i32, Bytes) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let hv = R::header_version(version);
        let size = header.compute_size(hv).unwrap() + req.compute_size(version).unwrap();
        let mut buf = BytesMut::with_capacity(size + 4);
        buf.put_i32(size as i32);
        header.encode(&mut buf, hv).unwrap();
        req.encode(&mut buf, version).unwrap();
        (self.correlation_id, buf.freeze())
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads one response frame (without the length prefix).
    pub async fn read_frame(&mut self) -> Result<Bytes> {
        loop {
            if self.buf.len() >= 4 {
                let n = i32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() >= 4 + n {
                    let mut f = self.buf.split_to(4 + n);
                    return Ok(f.split_off(4).freeze());
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed");
            }
        }
    }

    /// Sends a request and decodes its response.
    pub async fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let (cid, bytes) = self.encode(req, version);
        self.send_raw(&bytes).await?;
        let mut frame = self.read_frame().await?;
        let key = ApiKey::try_from(R::KEY).unwrap();
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))?;
        if header.correlation_id != cid {
            bail!("correlation id {} != {cid}", header.correlation_id);
        }
        R::Response::decode(&mut frame, version)
    }

    /// True when the peer closes the connection within `within` (reading and discarding).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let mut scratch = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }
}

/// Polls `cond` every 20 ms until it returns true or `within` passes.
pub async fn eventually<F: FnMut() -> bool>(within: Duration, mut cond: F) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Awaits `f` for at most `limit`; a step that hangs fails the test with `what`.
pub async fn within<T>(limit: Duration, what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// The value of one Prometheus series (`name{labels}` exactly as rendered), 0 when absent.
pub fn metric(gw: &sluice::Gateway, series: &str) -> u64 {
    gw.metrics_text()
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0, |v| v as u64)
}

// ---------------------------------------------------------------------------------------------
// Security: listener and client settings, admin resources, clients that record their errors.
// ---------------------------------------------------------------------------------------------

/// A `PUT` of a JSON document to the admin API; panics unless it is accepted (200 or 201).
pub async fn admin_put(
    admin: SocketAddr,
    path: &str,
    doc: &serde_json::Value,
) -> serde_json::Value {
    let (status, body) = http(
        admin,
        "PUT",
        path,
        &[("Content-Type", "application/json")],
        doc.to_string().as_bytes(),
    )
    .await;
    // The body may echo the request on failure; never print a password it might hold.
    assert!(
        status == 200 || status == 201,
        "PUT {path}: {status} {}",
        redact(&body)
    );
    body
}

/// Replaces every `password` value in a JSON document, for assertion messages.
fn redact(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") {
                        serde_json::Value::String("***".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Creates or replaces a service account (`PUT /api/v1/service-accounts/{name}`).
pub async fn put_service_account(admin: SocketAddr, name: &str, password: &str, groups: &[&str]) {
    admin_put(
        admin,
        &format!("/api/v1/service-accounts/{name}"),
        &serde_json::json!({ "password": password, "groups": groups }),
    )
    .await;
}

/// Creates or replaces a group (`PUT /api/v1/groups/{name}`).
pub async fn put_group(admin: SocketAddr, name: &str, members: &[&str]) {
    admin_put(
        admin,
        &format!("/api/v1/groups/{name}"),
        &serde_json::json!({ "members": members }),
    )
    .await;
}

/// Creates or replaces an ACL (`PUT /api/v1/acls/{name}`), e.g.
/// `json!({"principal": "alice", "resourceType": "topic", "patternType": "literal",
/// "name": "orders", "operations": ["write", "describe"], "permission": "allow"})`.
pub async fn put_acl(admin: SocketAddr, name: &str, acl: serde_json::Value) {
    admin_put(admin, &format!("/api/v1/acls/{name}"), &acl).await;
}

/// The gateway's TLS identity from the test PKI ([`pki::pki`]), with a client-certificate
/// policy; `principal_mapping_rules` as Kafka's `ssl.principal.mapping.rules`.
pub fn server_tls(
    client_auth: sluice::config::ClientAuth,
    principal_mapping_rules: Option<&str>,
) -> sluice::config::ServerTls {
    let pki = pki::pki();
    sluice::config::ServerTls {
        cert_file: pki.server.cert_file.clone(),
        key_file: pki.server.key_file.clone(),
        client_auth,
        client_ca_file: (client_auth != sluice::config::ClientAuth::None)
            .then(|| pki.ca_file.clone()),
        principal_mapping_rules: principal_mapping_rules.map(str::to_string),
    }
}

/// SASL on the listener: these mechanisms, in this mode, with a short failed-auth delay so
/// that wrong-password tests stay quick (the delay itself is still exercised).
pub fn server_sasl(
    mechanisms: &[&str],
    mode: sluice::config::SaslMode,
) -> sluice::config::SaslServerConfig {
    sluice::config::SaslServerConfig {
        mechanisms: mechanisms.iter().map(|m| m.to_string()).collect(),
        mode,
        failed_auth_delay_ms: 50,
        max_reauth_ms: 0,
        oauthbearer: None,
    }
}

/// OAUTHBEARER validation against `idp`'s JWKS, with its issuer and audience.
pub fn server_oauth(idp: &jwt::JwtIssuer) -> sluice::config::OauthConfig {
    sluice::config::OauthConfig {
        jwks_file: None,
        jwks: Some(idp.jwks_json()),
        jwks_url: None,
        jwks_ca_file: None,
        jwks_refresh_ms: 300_000,
        issuer: Some(jwt::ISSUER.to_string()),
        audiences: vec![jwt::AUDIENCE.to_string()],
        principal_claim: "sub".into(),
        groups_claim: None,
        leeway_secs: 5,
    }
}

/// Client-side security for librdkafka: how to reach a secured gateway or broker.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// TLS: trust the test CA (and verify the host name).
    pub tls: bool,
    /// mTLS: present this certificate (implies `tls`).
    pub identity: Option<pki::Identity>,
    /// SASL mechanism, user and password.
    pub sasl: Option<(String, String, String)>,
    /// SASL/OAUTHBEARER (the token comes from the client context).
    pub oauthbearer: bool,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls)
            .field("identity", &self.identity)
            .field("sasl", &self.sasl.as_ref().map(|(m, u, _)| (m, u)))
            .field("oauthbearer", &self.oauthbearer)
            .finish()
    }
}

impl ClientSecurity {
    /// TLS only.
    pub fn tls() -> ClientSecurity {
        ClientSecurity {
            tls: true,
            ..Default::default()
        }
    }

    /// mTLS with `identity`.
    pub fn mtls(identity: &pki::Identity) -> ClientSecurity {
        ClientSecurity {
            tls: true,
            identity: Some(identity.clone()),
            ..Default::default()
        }
    }

    /// SASL with a user name and password (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub fn sasl(tls: bool, mechanism: &str, user: &str, password: &str) -> ClientSecurity {
        ClientSecurity {
            tls,
            sasl: Some((mechanism.into(), user.into(), password.into())),
            ..Default::default()
        }
    }

    /// SASL/OAUTHBEARER with tokens from the client context.
    pub fn oauthbearer(tls: bool) -> ClientSecurity {
        ClientSecurity {
            tls,
            oauthbearer: true,
            ..Default::default()
        }
    }

    /// Kafka's `security.protocol` for these settings.
    pub fn protocol(&self) -> &'static str {
        let tls = self.tls || self.identity.is_some();
        let sasl = self.sasl.is_some() || self.oauthbearer;
        match (tls, sasl) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }

    /// Applies these settings to a librdkafka configuration.
    pub fn apply(&self, c: &mut ClientConfig) {
        c.set("security.protocol", self.protocol());
        if self.tls || self.identity.is_some() {
            let pki = pki::pki();
            c.set("ssl.ca.location", pki.ca_file.to_string_lossy().as_ref())
                .set("ssl.endpoint.identification.algorithm", "https");
        }
        if let Some(id) = &self.identity {
            c.set(
                "ssl.certificate.location",
                id.cert_file.to_string_lossy().as_ref(),
            )
            .set("ssl.key.location", id.key_file.to_string_lossy().as_ref());
        }
        if let Some((mechanism, user, password)) = &self.sasl {
            c.set("sasl.mechanism", mechanism)
                .set("sasl.username", user)
                .set("sasl.password", password);
        }
        if self.oauthbearer {
            c.set("sasl.mechanism", "OAUTHBEARER");
        }
    }
}

/// Client settings that make connection failures show within seconds.
pub fn fast(c: &mut ClientConfig) -> &mut ClientConfig {
    c.set("socket.timeout.ms", "5000")
        .set("reconnect.backoff.ms", "200")
        .set("reconnect.backoff.max.ms", "1000")
}

/// A producer with `security`, failing fast, recording its errors in `ctx`.
pub fn secure_producer(
    bootstrap: &str,
    security: &ClientSecurity,
    ctx: RecordingContext,
) -> rdkafka::producer::FutureProducer<RecordingContext> {
    let mut c = secure_client_config(bootstrap, security);
    fast(&mut c).set("message.timeout.ms", "8000");
    c.create_with_context(ctx).expect("producer")
}

/// [`client_config`] with security settings applied.
pub fn secure_client_config(bootstrap: &str, security: &ClientSecurity) -> ClientConfig {
    let mut c = client_config(bootstrap);
    security.apply(&mut c);
    c
}

/// A librdkafka client context that records the client-level errors librdkafka reports
/// (authentication failures, TLS failures, brokers down), and serves OAUTHBEARER tokens when
/// given one.
#[derive(Clone, Default)]
pub struct RecordingContext {
    errors: std::sync::Arc<std::sync::Mutex<Vec<(rdkafka::types::RDKafkaErrorCode, String)>>>,
    token: Option<std::sync::Arc<(String, String)>>,
}

impl std::fmt::Debug for RecordingContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingContext")
            .field("errors", &self.errors())
            .finish_non_exhaustive()
    }
}

impl RecordingContext {
    /// A context that hands librdkafka `token` (a JWT) for `principal` when asked.
    pub fn with_token(token: String, principal: &str) -> RecordingContext {
        RecordingContext {
            errors: Default::default(),
            token: Some(std::sync::Arc::new((token, principal.to_string()))),
        }
    }

    /// Errors recorded so far: code and librdkafka's reason.
    pub fn errors(&self) -> Vec<(rdkafka::types::RDKafkaErrorCode, String)> {
        self.errors.lock().unwrap().clone()
    }

    /// Waits until an error with one of `codes` has been reported, for at most `within`.
    pub async fn wait_for_error(
        &self,
        codes: &[rdkafka::types::RDKafkaErrorCode],
        within: Duration,
    ) -> Option<(rdkafka::types::RDKafkaErrorCode, String)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self
                .errors()
                .into_iter()
                .find(|(code, _)| codes.contains(code))
            {
                return Some(e);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl rdkafka::client::ClientContext for RecordingContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            self.errors.lock().unwrap().push((code, reason.to_string()));
        }
    }

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> std::result::Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        let Some(token) = &self.token else {
            return Err("no OAUTHBEARER token configured for this client".into());
        };
        // librdkafka refuses a token whose lifetime has passed, so the lifetime it is told is
        // always a minute ahead: whether the JWT itself has expired is for the server to find.
        Ok(rdkafka::client::OAuthToken {
            token: token.0.clone(),
            principal_name: token.1.clone(),
            lifetime_ms: (jwt::now_secs() + 60) * 1000,
        })
    }
}

impl rdkafka::consumer::ConsumerContext for RecordingContext {}

impl RawClient {
    /// Runs a SASL/PLAIN exchange (SaslHandshake v1, SaslAuthenticate v2); returns the
    /// SaslAuthenticate error code (0: authenticated).
    pub async fn sasl_plain(&mut self, user: &str, password: &str) -> Result<i16> {
        use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
        let hs = self
            .call(
                &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
                1,
            )
            .await?;
        if hs.error_code != 0 {
            return Ok(hs.error_code);
        }
        let mut msg = Vec::new();
        msg.push(0);
        msg.extend_from_slice(user.as_bytes());
        msg.push(0);
        msg.extend_from_slice(password.as_bytes());
        let auth = self
            .call(
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(msg)),
                2,
            )
            .await?;
        Ok(auth.error_code)
    }
}

/// Log lines captured in memory, to check that secrets never reach the gateway's logs.
pub struct LogCapture {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

/// One writer into the capture buffer (also echoed to the test output when `RUST_LOG` is set).
struct CaptureWriter {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    echo: bool,
}

impl std::io::Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.lock().unwrap().extend_from_slice(data);
        if self.echo {
            eprint!("{}", String::from_utf8_lossy(data));
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per process) a log subscriber that keeps every line in memory, at debug level
/// for the gateway (`RUST_LOG` overrides) so that its most talkative paths are checked too.
/// Use it instead of [`init_logging`] in a test binary that checks logs; panics if another
/// subscriber was installed first (the check would be vacuous).
pub fn capture_logs() -> &'static LogCapture {
    static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let echo = std::env::var_os("RUST_LOG").is_some();
        let writer_buf = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("sluice=debug,warn")),
            )
            .with_ansi(false)
            .with_writer(move || CaptureWriter {
                buf: writer_buf.clone(),
                echo,
            })
            .try_init()
            .expect("capture_logs must install the first log subscriber of the process");
        LogCapture { buf }
    })
}

impl LogCapture {
    /// Everything logged so far.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Panics if any of `secrets` appears in the logs (without printing the secret).
    pub fn assert_absent(&self, secrets: &[&str]) {
        let logs = self.contents();
        assert!(
            !logs.is_empty(),
            "nothing was logged: is the capture installed?"
        );
        for (i, secret) in secrets.iter().enumerate() {
            assert!(!secret.is_empty());
            if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
                panic!(
                    "secret #{i} appears in the logs: {}",
                    line.replace(secret, "<SECRET>")
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Virtual clusters: tenants, alias topics, concentrated topics; a second (kafkajs) client.
// ---------------------------------------------------------------------------------------------

/// Creates or replaces a virtual cluster (`PUT /api/v1/virtual-clusters/{name}`), e.g.
/// `json!({"prefix": "a.", "passthrough": false, "serviceAccounts": ["alice"],
/// "limits": {"maxConnections": 2}})`; returns the API's answer.
pub async fn put_vcluster(
    admin: SocketAddr,
    name: &str,
    spec: serde_json::Value,
) -> serde_json::Value {
    admin_put(admin, &format!("/api/v1/virtual-clusters/{name}"), &spec).await
}

/// Creates or replaces an alias topic (`PUT /api/v1/alias-topics/{name}`): in `vcluster`,
/// `logical` reads and writes the physical topic `physical`.
pub async fn put_alias(
    admin: SocketAddr,
    name: &str,
    vcluster: &str,
    logical: &str,
    physical: &str,
) -> serde_json::Value {
    admin_put(
        admin,
        &format!("/api/v1/alias-topics/{name}"),
        &serde_json::json!({
            "vcluster": vcluster, "logicalTopic": logical, "physicalTopic": physical
        }),
    )
    .await
}

/// Creates or replaces a concentration rule (`PUT /api/v1/concentration-rules/{name}`): in
/// `vcluster`, every logical topic matching the regular expression `pattern` is stored in the
/// physical topic `physical`.
pub async fn put_concentration_rule(
    admin: SocketAddr,
    name: &str,
    vcluster: &str,
    pattern: &str,
    physical: &str,
) -> serde_json::Value {
    admin_put(
        admin,
        &format!("/api/v1/concentration-rules/{name}"),
        &serde_json::json!({
            "vcluster": vcluster, "logicalTopicPattern": pattern, "physicalTopic": physical
        }),
    )
    .await
}

/// Creates or replaces a service account that belongs to virtual cluster `vcluster`.
pub async fn put_tenant_account(admin: SocketAddr, name: &str, password: &str, vcluster: &str) {
    admin_put(
        admin,
        &format!("/api/v1/service-accounts/{name}"),
        &serde_json::json!({ "password": password, "groups": [], "vcluster": vcluster }),
    )
    .await;
}

/// Where the kafkajs test client lives (`tests/js/client.js`, dependencies installed by
/// `make js-deps`).
pub fn kafkajs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Runs one command of the kafkajs client (`tests/js/client.js`: `create`, `produce`,
/// `consume`, `topics`, `metadata`) against `bootstrap`, authenticating with SASL
/// `(mechanism, user, password)` when given. Returns the client's JSON answer, or its
/// `{"error": {"type", "message"}}` document as the error; panics if node cannot run it or it
/// takes longer than `limit` (the process is killed then).
pub async fn kafkajs(
    bootstrap: &str,
    sasl: Option<(&str, &str, &str)>,
    args: &[&str],
    limit: Duration,
) -> std::result::Result<serde_json::Value, serde_json::Value> {
    kafkajs_tls(bootstrap, None, sasl, args, limit).await
}

/// [`kafkajs`] over TLS when `ca` (a PEM CA bundle to verify the server with) is given.
pub async fn kafkajs_tls(
    bootstrap: &str,
    ca: Option<&Path>,
    sasl: Option<(&str, &str, &str)>,
    args: &[&str],
    limit: Duration,
) -> std::result::Result<serde_json::Value, serde_json::Value> {
    let mut env: Vec<(&str, String)> = Vec::new();
    if let Some(ca) = ca {
        env.push(("KAFKA_CA", ca.display().to_string()));
    }
    if let Some((mechanism, user, password)) = sasl {
        env.push(("KAFKA_MECHANISM", mechanism.to_string()));
        env.push(("KAFKA_USER", user.to_string()));
        env.push(("KAFKA_PASSWORD", password.to_string()));
    }
    kafkajs_env(bootstrap, &env, args, limit).await
}

/// [`kafkajs`] with the client's settings as `tests/js/client.js` reads them from its
/// environment (`KAFKA_CA`, `KAFKA_CERT`/`KAFKA_KEY` for mutual TLS, `KAFKA_USER`,
/// `KAFKA_PASSWORD`, `KAFKA_MECHANISM`, `KAFKA_TOKEN` for OAUTHBEARER).
pub async fn kafkajs_env(
    bootstrap: &str,
    env: &[(&str, String)],
    args: &[&str],
    limit: Duration,
) -> std::result::Result<serde_json::Value, serde_json::Value> {
    let dir = kafkajs_dir();
    assert!(
        dir.join("node_modules/kafkajs").is_dir(),
        "kafkajs is not installed in {}: run `make js-deps`",
        dir.display()
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("client.js")).current_dir(&dir);
    run_client("kafkajs", cmd, bootstrap, env, args, limit).await
}

/// Where the kafka-python test client lives (`tests/py/client.py`, its virtual environment
/// made by `make py-deps`).
pub fn kafka_python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py")
}

/// Runs one command of the kafka-python client (`tests/py/client.py`: `create`, `produce`,
/// `consume`, `topics`, `groups`) against `bootstrap`, authenticating with SASL
/// `(mechanism, user, password)` when given; `env` adds settings (`KAFKA_COMPRESSION`,
/// `KAFKA_CA`). Returns its JSON answer, or its `{"error": {"type", "message"}}` document as
/// the error; panics if it cannot run or takes longer than `limit`.
pub async fn kafka_python(
    bootstrap: &str,
    sasl: Option<(&str, &str, &str)>,
    env: &[(&str, String)],
    args: &[&str],
    limit: Duration,
) -> std::result::Result<serde_json::Value, serde_json::Value> {
    let dir = kafka_python_dir();
    let python = dir.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "kafka-python is not installed in {}: run `make py-deps`",
        dir.display()
    );
    let mut all: Vec<(&str, String)> = env.to_vec();
    if let Some((mechanism, user, password)) = sasl {
        all.push(("KAFKA_MECHANISM", mechanism.to_string()));
        all.push(("KAFKA_USER", user.to_string()));
        all.push(("KAFKA_PASSWORD", password.to_string()));
    }
    let mut cmd = Command::new(python);
    cmd.arg(dir.join("client.py")).current_dir(&dir);
    run_client("kafka-python", cmd, bootstrap, &all, args, limit).await
}

/// Runs one command of an external test client (`cmd`, program and script already set)
/// with `env` as its only `KAFKA_*` settings; reads the one JSON line it answers with.
async fn run_client(
    name: &str,
    mut cmd: Command,
    bootstrap: &str,
    env: &[(&str, String)],
    args: &[&str],
    limit: Duration,
) -> std::result::Result<serde_json::Value, serde_json::Value> {
    cmd.args(args)
        .env("KAFKA_BOOTSTRAP", bootstrap)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Only what the caller gives: nothing inherited from the test's own environment.
    for key in [
        "KAFKA_USER",
        "KAFKA_PASSWORD",
        "KAFKA_MECHANISM",
        "KAFKA_CA",
        "KAFKA_CERT",
        "KAFKA_KEY",
        "KAFKA_TOKEN",
        "KAFKA_COMPRESSION",
        "KAFKA_BOOTSTRAP_TIMEOUT_MS",
    ] {
        cmd.env_remove(key);
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("running the {name} client: {e}"));
    let pid = child.id() as libc::pid_t;
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    let output = match tokio::time::timeout(limit, waiting).await {
        Ok(done) => done
            .expect("joining the client waiter")
            .expect("client output"),
        Err(_) => {
            // SAFETY: kill(2) has no memory-safety preconditions. The pid is our own child's;
            // its waiter has not returned, so it is not reaped and the pid not reused (the
            // test panics right after either way).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{name} {args:?} did not finish within {limit:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let answer: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{name} {args:?}: no JSON answer (status {}); stdout: {stdout} stderr: {stderr}",
                output.status
            )
        });
    if output.status.success() {
        Ok(answer)
    } else {
        assert!(
            answer.get("error").is_some(),
            "{name} {args:?} failed without an error document: {answer} (stderr: {stderr})"
        );
        Err(answer["error"].clone())
    }
}

/// One valid record batch (magic 2, no compression) holding one record with `value`, for raw
/// Produce requests.
pub fn record_batch(value: &str) -> bytes::Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(bytes::Bytes::from(value.to_string())),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).expect("encoding a record batch");
    buf.freeze()
}
