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
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod mock;

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
            if sluice::upstream::probe(std::slice::from_ref(&addr), Duration::from_secs(1))
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
