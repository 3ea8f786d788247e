//! Connections to the Kafka cluster, and the gateway's own small Kafka client.
//!
//! Client traffic is relayed over one upstream connection per client connection. The gateway
//! also talks to the cluster on its own account, rarely: to learn the brokers (ApiVersions then
//! Metadata) at start and periodically, and to answer `GET /ready`.
//!
//! Every connection goes through a [`Connector`]: TCP, then TLS when configured, then SASL
//! with the gateway's own credentials when configured, so a connection is authenticated
//! before the first client request is written to it. SCRAM cannot be replayed, so the
//! gateway holds its own credentials rather than reusing a client's exchange.

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::scram::{ScramClient, ScramMechanism};
use crate::config::{Config, UpstreamSasl};
use crate::frame::{frame_len, FrameStatus};
use crate::tls::Stream;

/// A broker as the cluster advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

/// Opens a TCP connection to `addr` (`host:port`) within `timeout`, with Nagle disabled.
pub async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr} timed out after {timeout:?}"))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens broker connections: TCP, TLS, then SASL with the gateway's own credentials.
#[derive(Clone)]
pub struct Connector {
    timeout: Duration,
    tls: Option<(Arc<rustls::ClientConfig>, Option<String>)>,
    sasl: Option<UpstreamSasl>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .field(
                "sasl",
                &self.sasl.as_ref().map(|s| (&s.mechanism, &s.username)),
            )
            .finish()
    }
}

impl Connector {
    /// Plain TCP with no authentication.
    pub fn plaintext(timeout: Duration) -> Connector {
        Connector {
            timeout,
            tls: None,
            sasl: None,
        }
    }

    /// The connector `config.upstream` describes (reads the TLS files).
    pub fn from_config(config: &Config) -> Result<Connector> {
        let tls = match &config.upstream.tls {
            Some(t) => Some((crate::tls::client_config(t)?, t.server_name.clone())),
            None => None,
        };
        Ok(Connector {
            timeout: config.connect_timeout(),
            tls,
            sasl: config.upstream.sasl.clone(),
        })
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A connection with TLS when configured, without SASL (delegated mode: the client's own
    /// exchange follows).
    pub async fn transport(&self, addr: &str) -> Result<Stream> {
        let tcp = connect(addr, self.timeout).await?;
        match &self.tls {
            None => Ok(Stream::Tcp(tcp)),
            Some((config, name)) => {
                let name = crate::tls::server_name(name.as_deref(), addr)?;
                let tls = tokio::time::timeout(
                    self.timeout,
                    tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp),
                )
                .await
                .map_err(|_| anyhow!("TLS handshake with {addr} timed out"))?
                .with_context(|| format!("TLS handshake with {addr}"))?;
                Ok(Stream::Tls(Box::new(tls)))
            }
        }
    }

    /// A connection ready for requests: TLS and the gateway's own SASL when configured.
    pub async fn connect(&self, addr: &str) -> Result<Stream> {
        Ok(self.connect_session(addr).await?.0)
    }

    /// [`Connector::connect`], with what the broker said about the gateway's SASL session
    /// (`None` without SASL): a connection that outlives the session must re-authenticate in
    /// place ([`SaslClient`]) or the broker closes it.
    pub async fn connect_session(&self, addr: &str) -> Result<(Stream, Option<UpstreamSession>)> {
        let stream = self.transport(addr).await?;
        match &self.sasl {
            None => Ok((stream, None)),
            Some(sasl) => {
                let mut client = MiniClient::over(stream);
                let session = tokio::time::timeout(self.timeout, client.authenticate(sasl))
                    .await
                    .map_err(|_| anyhow!("SASL authentication with {addr} timed out"))?
                    .with_context(|| format!("SASL authentication with {addr}"))?;
                Ok((client.stream, Some(session)))
            }
        }
    }

    /// The gateway's own SASL settings, if it authenticates to the brokers.
    pub fn sasl(&self) -> Option<&UpstreamSasl> {
        self.sasl.as_ref()
    }
}

/// The gateway's SASL session on one broker connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamSession {
    /// The SaslAuthenticate version used (re-authentication uses it again).
    pub auth_version: i16,
    /// How long the broker keeps the session (KIP-368 `session_lifetime_ms`); `None` when it
    /// sets no limit.
    pub lifetime: Option<Duration>,
}

/// The client side of one SASL exchange with the gateway's credentials, after SaslHandshake:
/// the PLAIN or SCRAM tokens to send in SaslAuthenticate requests, one answer at a time. The
/// caller carries the tokens (its own connection, or a client's connection being
/// re-authenticated in place), so the same steps serve both.
pub struct SaslClient {
    step: SaslStep,
}

enum SaslStep {
    /// PLAIN: one token, one answer.
    Plain(Vec<u8>),
    /// SCRAM: client-first to send.
    ScramFirst(Box<ScramClient>),
    /// SCRAM: waiting for server-first.
    ScramServerFirst(Box<ScramClient>),
    /// SCRAM: waiting for server-final.
    ScramServerFinal(Box<ScramClient>),
    Done,
}

impl SaslClient {
    /// An exchange with the gateway's credentials.
    pub fn new(sasl: &UpstreamSasl) -> SaslClient {
        let password = sasl.password.expose();
        let step = match ScramMechanism::from_name(&sasl.mechanism) {
            None => SaslStep::Plain(crate::auth::plain::encode(&sasl.username, password)),
            Some(mech) => {
                SaslStep::ScramFirst(Box::new(ScramClient::new(mech, &sasl.username, password)))
            }
        };
        SaslClient { step }
    }

    /// The first token.
    pub fn first(&mut self) -> Vec<u8> {
        match std::mem::replace(&mut self.step, SaslStep::Done) {
            SaslStep::Plain(token) => token,
            SaslStep::ScramFirst(mut scram) => {
                let token = scram.client_first();
                self.step = SaslStep::ScramServerFirst(scram);
                token
            }
            // Called once, first: nothing else to send.
            other => {
                self.step = other;
                Vec::new()
            }
        }
    }

    /// Takes the broker's answer to the last token: the next token, or `None` when the
    /// exchange is complete (the answer's `session_lifetime_ms` then holds the session's
    /// lifetime, see [`session_lifetime`]). A refusal is an error.
    pub fn next(&mut self, resp: &SaslAuthenticateResponse) -> Result<Option<Vec<u8>>> {
        if resp.error_code != 0 {
            bail!(
                "broker refused the gateway's credentials (error {}: {})",
                resp.error_code,
                resp.error_message.as_deref().unwrap_or("")
            );
        }
        match std::mem::replace(&mut self.step, SaslStep::Done) {
            SaslStep::ScramServerFirst(mut scram) => {
                let token = scram
                    .server_first(&resp.auth_bytes)
                    .map_err(|e| anyhow!("SCRAM: {e}"))?;
                self.step = SaslStep::ScramServerFinal(scram);
                Ok(Some(token))
            }
            SaslStep::ScramServerFinal(mut scram) => {
                scram
                    .server_final(&resp.auth_bytes)
                    .map_err(|e| anyhow!("SCRAM: {e}"))?;
                Ok(None)
            }
            SaslStep::Plain(_) | SaslStep::ScramFirst(_) | SaslStep::Done => Ok(None),
        }
    }
}

/// The session lifetime a final SaslAuthenticate answer announces (KIP-368), if any.
pub fn session_lifetime(resp: &SaslAuthenticateResponse) -> Option<Duration> {
    u64::try_from(resp.session_lifetime_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// The SaslHandshake (v1) of the gateway's own mechanism; an error names what the broker
/// offers instead.
pub fn check_handshake(sasl: &UpstreamSasl, hs: &SaslHandshakeResponse) -> Result<()> {
    if hs.error_code != 0 {
        let offered: Vec<String> = hs.mechanisms.iter().map(|m| m.to_string()).collect();
        bail!(
            "broker refused mechanism {} (error {}; it offers {})",
            sasl.mechanism,
            hs.error_code,
            offered.join(", ")
        );
    }
    Ok(())
}

/// A single-connection request/response client used for the gateway's own requests.
pub struct MiniClient {
    stream: Stream,
    correlation_id: i32,
    buf: BytesMut,
    max_frame: usize,
}

const CLIENT_ID: &str = "sluice-gateway";

impl MiniClient {
    /// Connects to a broker (TLS and SASL as the connector says).
    pub async fn connect(connector: &Connector, addr: &str) -> Result<MiniClient> {
        Ok(MiniClient::over(connector.connect(addr).await?))
    }

    fn over(stream: Stream) -> MiniClient {
        MiniClient {
            stream,
            correlation_id: 0,
            buf: BytesMut::with_capacity(64 * 1024),
            max_frame: 64 * 1024 * 1024,
        }
    }

    /// SASL with the gateway's own credentials: SaslHandshake v1, then SaslAuthenticate
    /// rounds until the mechanism completes.
    async fn authenticate(&mut self, sasl: &UpstreamSasl) -> Result<UpstreamSession> {
        let versions = self.api_versions().await?;
        let auth_version = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::SaslAuthenticate as i16)
            .map(|k| k.max_version.min(2))
            .context("broker does not support SaslAuthenticate")?;
        let hs = self
            .send(
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_string(sasl.mechanism.clone())),
                1,
            )
            .await?;
        check_handshake(sasl, &hs)?;
        let mut exchange = SaslClient::new(sasl);
        let mut token = exchange.first();
        let lifetime = loop {
            let resp = self
                .send(
                    &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
                    auth_version,
                )
                .await?;
            match exchange.next(&resp)? {
                Some(next) => token = next,
                None => break session_lifetime(&resp),
            }
        };
        Ok(UpstreamSession {
            auth_version,
            lifetime,
        })
    }

    /// Sends one request at `version` and decodes its response.
    pub async fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        self.correlation_id += 1;
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key"))?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let header_version = R::header_version(version);
        let size = header.compute_size(header_version)? + req.compute_size(version)?;
        let mut out = BytesMut::with_capacity(4 + size);
        out.put_i32(size as i32);
        header.encode(&mut out, header_version)?;
        req.encode(&mut out, version)?;
        self.stream.write_all(&out).await?;
        let mut frame = self.read_frame().await?.slice(4..);
        let header = crate::schema::decode_response_header(key, version, &mut frame)?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "correlation id {} does not match request {}",
                header.correlation_id,
                self.correlation_id
            );
        }
        if key == ApiKey::ApiVersions {
            // An UNSUPPORTED_VERSION answer has a v0 body whatever the request version.
            let error = frame.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]));
            if error == Some(crate::message::codes::UNSUPPORTED_VERSION) {
                return crate::schema::decode_response(key, 0, &frame);
            }
        }
        crate::schema::decode_response(key, version, &frame)
    }

    async fn read_frame(&mut self) -> Result<Bytes> {
        loop {
            match frame_len(&self.buf, self.max_frame)? {
                FrameStatus::Complete(n) => return Ok(self.buf.split_to(n).freeze()),
                FrameStatus::Incomplete { total } => {
                    self.buf
                        .reserve(total.unwrap_or(4096).saturating_sub(self.buf.len()));
                    if self.stream.read_buf(&mut self.buf).await? == 0 {
                        bail!("broker closed the connection");
                    }
                }
            }
        }
    }

    /// ApiVersions, choosing a version the broker accepts: the newest the gateway knows, then
    /// v0 (which every broker must answer) if that is refused or its answer does not parse.
    pub async fn api_versions(&mut self) -> Result<ApiVersionsResponse> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let max = ApiKey::ApiVersions.valid_versions().max;
        match self.send(&req, max).await {
            Ok(resp) if resp.error_code != crate::message::codes::UNSUPPORTED_VERSION => Ok(resp),
            // A refusal or an unparsable refusal: ask again in the oldest form.
            _ => self.send(&req, 0).await,
        }
    }

    /// Metadata at the highest version both sides support, for every topic (`all_topics`) or
    /// for the brokers only; never creates topics.
    pub async fn metadata(&mut self, all_topics: bool) -> Result<MetadataResponse> {
        let versions = self.api_versions().await?;
        let ours = crate::advertise::gateway_versions(ApiKey::Metadata);
        let theirs = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Metadata as i16)
            .context("broker does not support Metadata")?;
        let version = theirs.max_version.min(ours.max);
        if version < theirs.min_version.max(ours.min) {
            bail!("no Metadata version in common with the broker");
        }
        // A null topic list asks for every topic, an empty one for brokers only.
        let req = MetadataRequest::default()
            .with_topics((!all_topics).then(Vec::new))
            .with_allow_auto_topic_creation(false);
        self.send(&req, version).await
    }
}

/// Every topic of the cluster with its partition count.
pub async fn topic_partitions(
    connector: &Connector,
    bootstrap: &[String],
    request_timeout: Duration,
) -> Result<Vec<(String, usize)>> {
    let resp = metadata(connector, bootstrap, request_timeout, true).await?;
    Ok(resp
        .topics
        .into_iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| Some((t.name?.to_string(), t.partitions.len())))
        .collect())
}

/// The cluster's brokers.
pub async fn discover(
    connector: &Connector,
    bootstrap: &[String],
    request_timeout: Duration,
) -> Result<Vec<BrokerInfo>> {
    let resp = metadata(connector, bootstrap, request_timeout, false).await?;
    Ok(resp
        .brokers
        .into_iter()
        .map(|b| BrokerInfo {
            node_id: b.node_id.0,
            host: b.host.to_string(),
            port: b.port,
        })
        .collect())
}

/// Metadata from the first bootstrap server that answers.
async fn metadata(
    connector: &Connector,
    bootstrap: &[String],
    request_timeout: Duration,
    all_topics: bool,
) -> Result<MetadataResponse> {
    let mut errors = Vec::new();
    for addr in bootstrap {
        let attempt = async {
            let mut client = MiniClient::connect(connector, addr).await?;
            tokio::time::timeout(request_timeout, client.metadata(all_topics))
                .await
                .map_err(|_| anyhow!("metadata request to {addr} timed out"))?
        };
        match attempt.await {
            Ok(resp) => return Ok(resp),
            Err(e) => errors.push(format!("{addr}: {e:#}")),
        }
    }
    bail!("no bootstrap server answered: {}", errors.join("; "))
}

/// Checks that some bootstrap server answers ApiVersions; returns its address.
pub async fn probe(
    connector: &Connector,
    bootstrap: &[String],
    timeout: Duration,
) -> Result<String> {
    let mut errors = Vec::new();
    for addr in bootstrap {
        let attempt = async {
            let mut client = MiniClient::connect(connector, addr).await?;
            let resp = tokio::time::timeout(timeout, client.api_versions())
                .await
                .map_err(|_| anyhow!("ApiVersions timed out"))??;
            if resp.error_code != 0 {
                bail!("ApiVersions error code {}", resp.error_code);
            }
            Ok(())
        };
        match attempt.await {
            Ok(()) => return Ok(addr.clone()),
            Err(e) => errors.push(format!("{addr}: {e:#}")),
        }
    }
    bail!("{}", errors.join("; "))
}
