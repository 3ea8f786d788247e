//! Gateway configuration: a YAML file plus command-line flags, validated as a whole.
//!
//! Loading never stops at the first problem: every key is checked, and all errors are reported
//! together with the path of the offending key (`upstream.bootstrap[1]: ...`), so an operator
//! fixes a file in one pass. Unknown keys are errors too: a misspelt key that is silently
//! ignored is a production incident waiting to happen.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_norway::{Mapping, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::frame::MAX_FRAME_LIMIT;

/// The whole gateway configuration. Field names are the YAML keys (camelCase).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Kafka listener: the bootstrap port. Broker `n` is served on
    /// `port + 1 + (n - brokers.minNodeId)`. Port 0 picks free ports for every listener
    /// (tests and single-instance setups).
    pub listen: String,
    /// Host name or address the gateway advertises to clients in broker lists.
    /// Defaults to the listen host; required when listening on a wildcard address.
    pub advertised_host: Option<String>,
    /// Admin HTTP listener (health, readiness, metrics, admin API). In YAML either the
    /// address alone (`admin: 127.0.0.1:8888`) or a mapping with `listen` and the keys of
    /// [`AdminOptions`] plus `token` and `readToken`.
    pub admin: String,
    /// Bearer token for the admin API: reads and writes of every resource need it (or the
    /// read-only token for reads). Better given as a file (`admin.tokenFile`,
    /// `--admin-token-file`) or in `SLUICE_ADMIN_TOKEN` than in the configuration file or on
    /// the command line. None: the API is open, which only a loopback listener allows unless
    /// [`AdminOptions::allow_unauthenticated`].
    #[serde(skip_serializing)]
    pub admin_token: Option<Secret>,
    /// Read-only bearer token for monitoring and consoles: GETs of resources (and `/metrics`
    /// when protected), never writes. Needs [`Config::admin_token`].
    #[serde(skip_serializing)]
    pub admin_read_token: Option<Secret>,
    /// How the admin listener is protected besides the tokens.
    pub admin_options: AdminOptions,
    /// Directory of the embedded state store.
    pub state_dir: PathBuf,
    /// The Kafka cluster behind the gateway.
    pub upstream: UpstreamConfig,
    /// How broker node ids map to gateway ports.
    pub brokers: BrokerAddressing,
    /// Resource limits.
    pub limits: Limits,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Log output.
    pub logging: LoggingConfig,
    /// How clients connect to the gateway: TLS, mTLS, SASL.
    pub security: ListenerSecurity,
    /// Further listener sets besides the default one (`listen`, `advertisedHost`, `security`),
    /// as a Kafka broker has several listeners: each with its own bootstrap and broker ports,
    /// advertised host and client security.
    pub listeners: Vec<ListenerConfig>,
    /// ACL enforcement (off by default).
    pub authorization: Authorization,
    /// Key management for plugin encryption (`kms.encrypt` / `kms.decrypt`): the provider and
    /// how long one data key is used.
    pub kms: sluice_wasm::kms::KmsConfig,
}

/// Protection of the admin listener besides the tokens (the `admin` mapping's keys).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdminOptions {
    /// File holding the admin token (one line; surrounding whitespace is ignored). Read once at
    /// start.
    pub token_file: Option<PathBuf>,
    /// File holding the read-only token.
    pub read_token_file: Option<PathBuf>,
    /// `/metrics` needs a token too (either one). Off by default: scrapers usually have none.
    pub protect_metrics: bool,
    /// Lets an admin listener reachable beyond this host (not a loopback address) serve
    /// without a token. Anyone who reaches it can then upload plugins, create accounts and
    /// ACLs: only for a network that is itself trusted.
    pub allow_unauthenticated: bool,
    /// HTTPS on the admin listener.
    pub tls: Option<AdminTls>,
}

/// The admin listener's certificate and key (PEM files, re-read when they change).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// The name of the listener set made of the top-level `listen`, `advertisedHost` and `security`.
pub const DEFAULT_LISTENER: &str = "default";

/// One listener set: a bootstrap port, one port per broker after it, the host clients are told
/// to use and how they must connect. Clients on one set are only ever told that set's
/// addresses.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerConfig {
    /// Unique name (`[a-z0-9-]`), used in logs and to look the set up; `default` is the
    /// top-level set's.
    pub name: String,
    /// Bootstrap address; broker `n` is served on `port + 1 + (n - brokers.minNodeId)`.
    /// Port 0 picks free ports for this set.
    pub listen: String,
    /// Host advertised to this set's clients; defaults to the listen host.
    #[serde(default)]
    pub advertised_host: Option<String>,
    /// How clients connect to this set.
    #[serde(default)]
    pub security: ListenerSecurity,
}

impl ListenerConfig {
    /// The listen address (validated).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated listen address")
    }

    /// The host advertised to this set's clients.
    pub fn advertised_host(&self) -> String {
        match &self.advertised_host {
            Some(h) => h.clone(),
            None => self.listen_addr().ip().to_string(),
        }
    }
}

/// Kafka's security protocols, as `security.protocol` names them.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[default]
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    /// TLS; with `tls.clientAuth: required`, mTLS.
    #[serde(rename = "SSL")]
    Ssl,
    /// SASL without TLS.
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// SASL inside TLS.
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether the transport is TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients authenticate with SASL.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// Client-facing security of the Kafka listeners (bootstrap and broker ports alike).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerSecurity {
    /// `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    #[serde(default)]
    pub protocol: SecurityProtocol,
    /// Server certificate and client-certificate policy (SSL and SASL_SSL).
    #[serde(default)]
    pub tls: Option<ServerTls>,
    /// SASL mechanisms and mode (SASL_PLAINTEXT and SASL_SSL).
    #[serde(default)]
    pub sasl: Option<SaslServerConfig>,
}

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate asked for.
    #[default]
    None,
    /// Asked for; a client without one still connects (its principal then comes from SASL).
    Requested,
    /// Required: mTLS.
    Required,
}

/// The gateway's TLS server identity.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Client certificates: `none` (default), `requested` or `required`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// PEM CA bundle that client certificates must chain to.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Kafka-style `ssl.principal.mapping.rules` from the certificate subject to a principal
    /// (`RULE:^CN=(.*?),.*$/$1/,DEFAULT`); default: the whole subject.
    #[serde(default)]
    pub principal_mapping_rules: Option<String>,
}

/// Who checks SASL credentials.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SaslMode {
    /// The gateway checks credentials against its service accounts (and JWKS for OAUTHBEARER).
    #[default]
    GatewayManaged,
    /// The client's SASL exchange is relayed to the broker, which decides; the gateway learns
    /// the principal from the exchange.
    Delegated,
}

/// SASL on the client listeners.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaslServerConfig {
    /// Enabled mechanisms: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER`.
    pub mechanisms: Vec<String>,
    /// `gateway-managed` (default) or `delegated`.
    #[serde(default)]
    pub mode: SaslMode,
    /// Fixed delay before a failed authentication is answered (slows guessing).
    #[serde(default = "default_failed_auth_delay")]
    pub failed_auth_delay_ms: u64,
    /// KIP-368: longest session before the client must re-authenticate (0: never). A token's
    /// expiry shortens it.
    #[serde(default)]
    pub max_reauth_ms: u64,
    /// OAUTHBEARER token validation (gateway-managed mode).
    #[serde(default)]
    pub oauthbearer: Option<OauthConfig>,
}

fn default_failed_auth_delay() -> u64 {
    200
}

/// JWT validation for SASL/OAUTHBEARER. The keys come from exactly one of `jwks`, `jwksFile`
/// and `jwksUrl`. A file or URL is read at start (failing the start if it cannot be), then
/// re-read every `jwksRefreshMs` and, at most once per 30 s, soon after a token names a key
/// id the current set lacks (the issuer rotated its keys). A failed refresh keeps the
/// previous keys.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OauthConfig {
    /// A JWKS document on disk (re-read on every refresh).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS document inline (JSON text; never refreshed).
    #[serde(default)]
    pub jwks: Option<String>,
    /// The identity provider's JWKS URL: `https://` (the server's certificate verified
    /// against the platform's trust store) or `http://`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM CA bundle that an `https://` `jwksUrl` server's certificate must chain to, in
    /// place of the platform's trust store (an identity provider with a private CA). Read at
    /// start: a missing or unparsable bundle fails the start.
    #[serde(default)]
    pub jwks_ca_file: Option<PathBuf>,
    /// Period of the background re-read of `jwksFile` / `jwksUrl`, in milliseconds (at least
    /// 1000; default 300000).
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_ms: u64,
    /// Required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values (any one); empty: not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claim holding the principal name.
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// Claim holding a list of group names, if any.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_jwks_refresh() -> u64 {
    300_000
}
/// Shortest accepted `jwksRefreshMs`.
pub const MIN_JWKS_REFRESH_MS: u64 = 1000;
fn default_principal_claim() -> String {
    "sub".into()
}
fn default_leeway() -> u64 {
    30
}

/// ACL enforcement in the gateway.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorization {
    /// Enforce ACLs. Off: every authenticated client may do anything the broker allows.
    #[serde(default)]
    pub enabled: bool,
    /// Principals allowed everything.
    #[serde(default)]
    pub super_users: Vec<String>,
}

/// TLS towards the brokers.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM CA bundle to verify brokers with; default: the platform's trust store is not used,
    /// so set this (brokers usually have a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain for mTLS to the brokers.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Its private key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name to send in SNI and verify the certificate against; default: each broker's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// The gateway's own SASL credentials towards the brokers.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamSasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// User name.
    pub username: String,
    /// Password (better in the `SLUICE_UPSTREAM_PASSWORD` environment variable than in the
    /// file, which it overrides).
    #[serde(skip_serializing, default)]
    pub password: Secret,
}

/// A secret string: never printed by `Debug`, compared in constant time.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that must send it (e.g. to a broker).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a candidate: the SHA-256 digests are compared, so
    /// neither the content nor the length of the secret shows in the time taken.
    pub fn matches(&self, candidate: &str) -> bool {
        use sha2::{Digest, Sha256};
        let (a, b) = (
            Sha256::digest(self.0.as_bytes()),
            Sha256::digest(candidate.as_bytes()),
        );
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The upstream Kafka cluster.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamConfig {
    /// Bootstrap servers, `host:port`.
    pub bootstrap: Vec<String>,
    /// Timeout of one TCP connect to a broker.
    pub connect_timeout_ms: u64,
    /// Timeout of the gateway's own requests (metadata discovery, readiness).
    pub request_timeout_ms: u64,
    /// How often the gateway refreshes its view of the brokers.
    pub metadata_refresh_ms: u64,
    /// TLS to the brokers; none: plaintext.
    pub tls: Option<UpstreamTls>,
    /// SASL to the brokers with the gateway's own credentials; none: no SASL (or, in
    /// delegated mode, the clients' own exchange).
    pub sasl: Option<UpstreamSasl>,
}

/// Port-per-broker addressing.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerAddressing {
    /// Lowest broker node id of the cluster: it gets port `listen + 1`.
    pub min_node_id: i32,
    /// Number of broker ports reserved after the bootstrap port. Node ids past this range
    /// get a free port chosen at run time (logged), which works for one gateway instance only.
    pub max_nodes: u32,
}

/// Resource limits.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Largest request or response frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Pipelined requests in flight per client connection before the gateway stops reading.
    pub max_in_flight: usize,
    /// Concurrent client connections; more are closed at accept. The open-file limit may
    /// lower it (each connection takes two descriptors: client and broker).
    pub max_connections: usize,
    /// Concurrent client connections from one source IP address (Kafka's
    /// `max.connections.per.ip`); more are closed at accept. None (default): half of the
    /// effective connection limit, so one address can never take every slot and lock the
    /// other clients out.
    pub max_connections_per_source: Option<usize>,
    /// Per-address exceptions to `maxConnectionsPerSource` (Kafka's
    /// `max.connections.per.ip.overrides`), keyed by IP address; 0 refuses the address.
    pub max_connections_per_source_overrides: BTreeMap<String, usize>,
    /// Time a new connection has, from accept, to finish its TLS handshake, send its first
    /// complete request and (with SASL) authenticate; then it is closed. Bounds connections
    /// that never start (slowloris).
    pub handshake_timeout_ms: u64,
    /// A connection with no request from its client and nothing in flight for this long is
    /// closed (Kafka's `connections.max.idle.ms`, 10 minutes). 0: never.
    pub idle_timeout_ms: u64,
}

impl Limits {
    /// The per-source connection limit for `ip`, given the effective connection limit.
    pub fn per_source_limit(&self, ip: IpAddr, effective_max: usize) -> usize {
        let ip = ip.to_canonical();
        self.max_connections_per_source_overrides
            .iter()
            .find(|(k, _)| k.parse::<IpAddr>().is_ok_and(|a| a.to_canonical() == ip))
            .map(|(_, v)| *v)
            .unwrap_or_else(|| {
                self.max_connections_per_source
                    .unwrap_or_else(|| effective_max.div_ceil(2))
            })
    }

    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// The idle timeout; None: connections may stay idle.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms))
    }
}

/// Graceful shutdown.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownConfig {
    /// How long in-flight requests may take to finish after SIGTERM before connections close.
    pub drain_timeout_ms: u64,
}

/// Log output.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoggingConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is not set, e.g. `info` or `sluice=debug,info`.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:6969".into(),
            advertised_host: None,
            admin: "127.0.0.1:8888".into(),
            admin_token: None,
            admin_read_token: None,
            admin_options: AdminOptions::default(),
            state_dir: PathBuf::from("sluice-state"),
            upstream: UpstreamConfig {
                bootstrap: Vec::new(),
                connect_timeout_ms: 10_000,
                request_timeout_ms: 30_000,
                metadata_refresh_ms: 30_000,
                tls: None,
                sasl: None,
            },
            brokers: BrokerAddressing {
                min_node_id: 0,
                max_nodes: 256,
            },
            limits: Limits {
                max_frame_bytes: 100 * 1024 * 1024,
                max_in_flight: 1024,
                max_connections: 20_000,
                max_connections_per_source: None,
                max_connections_per_source_overrides: BTreeMap::new(),
                handshake_timeout_ms: 10_000,
                idle_timeout_ms: 600_000,
            },
            shutdown: ShutdownConfig {
                drain_timeout_ms: 15_000,
            },
            logging: LoggingConfig {
                format: LogFormat::Text,
                level: "info".into(),
            },
            security: ListenerSecurity::default(),
            listeners: Vec::new(),
            authorization: Authorization::default(),
            kms: sluice_wasm::kms::KmsConfig::default(),
        }
    }
}

/// SASL mechanisms the gateway serves to clients.
pub const SERVER_MECHANISMS: [&str; 4] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];
/// SASL mechanisms the gateway uses towards brokers.
pub const UPSTREAM_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// One configuration problem, with the path of the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `upstream.bootstrap`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the configuration came from (file name or `flags`).
    pub source_name: String,
    /// All problems, in file order.
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        writeln!(
            f,
            "invalid configuration ({}): {n} error{}",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            writeln!(f, "  - {}: {}", issue.key, issue.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Values given on the command line; each overrides the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--bootstrap`, comma-separated.
    pub bootstrap: Option<String>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--advertised-host`.
    pub advertised_host: Option<String>,
    /// `--admin`.
    pub admin: Option<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--admin-token` (or `SLUICE_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
    /// `--admin-token-file` (or `SLUICE_ADMIN_TOKEN_FILE`).
    pub admin_token_file: Option<PathBuf>,
    /// `--admin-read-token` (or `SLUICE_ADMIN_READ_TOKEN`).
    pub admin_read_token: Option<String>,
    /// `--admin-read-token-file` (or `SLUICE_ADMIN_READ_TOKEN_FILE`).
    pub admin_read_token_file: Option<PathBuf>,
    /// `--admin-allow-unauthenticated`: only ever turns the option on.
    pub admin_allow_unauthenticated: bool,
}

/// Walks one YAML mapping, taking known keys and recording problems.
struct Section<'a> {
    path: String,
    map: Mapping,
    issues: &'a mut Vec<ConfigIssue>,
}

impl<'a> Section<'a> {
    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Deserializes `key` into `slot` when present; a bad value is recorded, `slot` kept.
    fn take<T: DeserializeOwned>(&mut self, key: &str, slot: &mut T) {
        if let Some(value) = self.map.remove(key) {
            match serde_norway::from_value::<T>(value) {
                Ok(v) => *slot = v,
                Err(e) => {
                    let key = self.key_path(key);
                    self.issues.push(ConfigIssue {
                        key,
                        message: e.to_string(),
                    })
                }
            }
        }
    }

    /// Opens a nested mapping; a non-mapping value is recorded and yields an empty section.
    fn section(&mut self, key: &str) -> Section<'_> {
        let path = self.key_path(key);
        let map = match self.map.remove(key) {
            None | Some(Value::Null) => Mapping::new(),
            Some(Value::Mapping(m)) => m,
            Some(other) => {
                self.issues.push(ConfigIssue {
                    key: path.clone(),
                    message: format!("expected a mapping, found {}", value_kind(&other)),
                });
                Mapping::new()
            }
        };
        Section {
            path,
            map,
            issues: self.issues,
        }
    }

    /// Records every key that was not taken.
    fn finish(self, known: &[&str]) {
        for (key, _) in self.map {
            let name = match &key {
                Value::String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            let path = if self.path.is_empty() {
                name
            } else {
                format!("{}.{name}", self.path)
            };
            self.issues.push(ConfigIssue {
                key: path,
                message: format!("unknown key (expected one of: {})", known.join(", ")),
            });
        }
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Bootstrap servers may be written as a list or as one comma-separated string.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ServerList {
    List(Vec<String>),
    One(String),
}

fn split_servers(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl Config {
    /// Parses YAML text; `source_name` labels the errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let (config, issues) = Config::parse_lenient(text).map_err(|mut e| {
            e.source_name = source_name.into();
            e
        })?;
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                source_name: source_name.into(),
                issues,
            })
        }
    }

    /// Parses YAML, returning the configuration (defaults where a value was bad) and every
    /// problem found. Only text that is not a YAML mapping at all is an immediate error.
    fn parse_lenient(text: &str) -> Result<(Config, Vec<ConfigIssue>), ConfigError> {
        let source_name = "(yaml)";
        let mut issues = Vec::new();
        let mut config = Config::default();
        let root: Value = match serde_norway::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return Err(ConfigError {
                    source_name: source_name.into(),
                    issues: vec![ConfigIssue {
                        key: "(file)".into(),
                        message: format!("not valid YAML: {e}"),
                    }],
                })
            }
        };
        let map = match root {
            Value::Null => Mapping::new(),
            Value::Mapping(m) => m,
            other => {
                return Err(ConfigError {
                    source_name: source_name.into(),
                    issues: vec![ConfigIssue {
                        key: "(file)".into(),
                        message: format!("expected a mapping, found {}", value_kind(&other)),
                    }],
                })
            }
        };
        let mut root = Section {
            path: String::new(),
            map,
            issues: &mut issues,
        };
        root.take("listen", &mut config.listen);
        root.take("advertisedHost", &mut config.advertised_host);
        if matches!(root.map.get("admin"), Some(Value::Mapping(_))) {
            let mut s = root.section("admin");
            let o = &mut config.admin_options;
            s.take("listen", &mut config.admin);
            s.take("token", &mut config.admin_token);
            s.take("tokenFile", &mut o.token_file);
            s.take("readToken", &mut config.admin_read_token);
            s.take("readTokenFile", &mut o.read_token_file);
            s.take("protectMetrics", &mut o.protect_metrics);
            s.take("allowUnauthenticated", &mut o.allow_unauthenticated);
            s.take("tls", &mut o.tls);
            s.finish(&[
                "listen",
                "token",
                "tokenFile",
                "readToken",
                "readTokenFile",
                "protectMetrics",
                "allowUnauthenticated",
                "tls",
            ]);
        } else {
            root.take("admin", &mut config.admin);
        }
        root.take("adminToken", &mut config.admin_token);
        root.take("stateDir", &mut config.state_dir);
        {
            let mut s = root.section("upstream");
            let mut servers = None::<ServerList>;
            s.take("bootstrap", &mut servers);
            match servers {
                Some(ServerList::List(l)) => config.upstream.bootstrap = l,
                Some(ServerList::One(s)) => config.upstream.bootstrap = split_servers(&s),
                None => {}
            }
            s.take("connectTimeoutMs", &mut config.upstream.connect_timeout_ms);
            s.take("requestTimeoutMs", &mut config.upstream.request_timeout_ms);
            s.take(
                "metadataRefreshMs",
                &mut config.upstream.metadata_refresh_ms,
            );
            s.take("tls", &mut config.upstream.tls);
            s.take("sasl", &mut config.upstream.sasl);
            s.finish(&[
                "tls",
                "sasl",
                "bootstrap",
                "connectTimeoutMs",
                "requestTimeoutMs",
                "metadataRefreshMs",
            ]);
        }
        {
            let mut s = root.section("brokers");
            s.take("minNodeId", &mut config.brokers.min_node_id);
            s.take("maxNodes", &mut config.brokers.max_nodes);
            s.finish(&["minNodeId", "maxNodes"]);
        }
        {
            let mut s = root.section("limits");
            s.take("maxFrameBytes", &mut config.limits.max_frame_bytes);
            s.take("maxInFlight", &mut config.limits.max_in_flight);
            s.take("maxConnections", &mut config.limits.max_connections);
            s.take(
                "maxConnectionsPerSource",
                &mut config.limits.max_connections_per_source,
            );
            s.take(
                "maxConnectionsPerSourceOverrides",
                &mut config.limits.max_connections_per_source_overrides,
            );
            s.take(
                "handshakeTimeoutMs",
                &mut config.limits.handshake_timeout_ms,
            );
            s.take("idleTimeoutMs", &mut config.limits.idle_timeout_ms);
            s.finish(&[
                "maxFrameBytes",
                "maxInFlight",
                "maxConnections",
                "maxConnectionsPerSource",
                "maxConnectionsPerSourceOverrides",
                "handshakeTimeoutMs",
                "idleTimeoutMs",
            ]);
        }
        {
            let mut s = root.section("shutdown");
            s.take("drainTimeoutMs", &mut config.shutdown.drain_timeout_ms);
            s.finish(&["drainTimeoutMs"]);
        }
        {
            let mut s = root.section("logging");
            s.take("format", &mut config.logging.format);
            s.take("level", &mut config.logging.level);
            s.finish(&["format", "level"]);
        }
        root.take("security", &mut config.security);
        {
            // Entry by entry, so that a problem is reported at `listeners[i]`.
            let mut entries = None::<Vec<Value>>;
            root.take("listeners", &mut entries);
            let mut failed = false;
            for (i, entry) in entries.into_iter().flatten().enumerate() {
                match serde_norway::from_value::<ListenerConfig>(entry) {
                    Ok(l) => config.listeners.push(l),
                    Err(e) => {
                        failed = true;
                        root.issues.push(ConfigIssue {
                            key: format!("listeners[{i}]"),
                            message: e.to_string(),
                        });
                    }
                }
            }
            if failed {
                // Validation keys are positions: with an entry missing they would name the
                // wrong entries, so the list is validated once every entry parses.
                config.listeners.clear();
            }
        }
        root.take("authorization", &mut config.authorization);
        root.take("kms", &mut config.kms);
        root.finish(&[
            "kms",
            "security",
            "listeners",
            "authorization",
            "listen",
            "advertisedHost",
            "admin",
            "adminToken",
            "stateDir",
            "upstream",
            "brokers",
            "limits",
            "shutdown",
            "logging",
        ]);
        Ok((config, issues))
    }

    /// Loads a configuration the way `sluice serve` does: the file (if any), then the flags,
    /// then validation. Parse and validation problems are reported together; a key already
    /// reported as unparsable is not reported again by validation.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let source_name = file.map_or_else(|| "flags".to_string(), |p| p.display().to_string());
        let (mut config, mut issues) = match file {
            None => (Config::default(), Vec::new()),
            Some(path) => match std::fs::read_to_string(path) {
                Err(e) => {
                    return Err(ConfigError {
                        source_name,
                        issues: vec![ConfigIssue {
                            key: "(file)".into(),
                            message: format!("cannot read: {e}"),
                        }],
                    })
                }
                Ok(text) => Config::parse_lenient(&text)?,
            },
        };
        config.apply(overrides);
        config.read_admin_token_files(&mut issues);
        if let (Ok(pw), Some(sasl)) = (
            std::env::var("SLUICE_UPSTREAM_PASSWORD"),
            config.upstream.sasl.as_mut(),
        ) {
            sasl.password = Secret(pw);
        }
        if let Err(e) = config.validate(&source_name) {
            let reported: Vec<String> = issues.iter().map(|i| i.key.clone()).collect();
            issues.extend(e.issues.into_iter().filter(|i| {
                !reported.iter().any(|r| {
                    i.key == *r
                        || i.key.starts_with(&format!("{r}."))
                        || i.key.starts_with(&format!("{r}["))
                })
            }));
        }
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                source_name,
                issues,
            })
        }
    }

    /// Reads and parses a YAML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            issues: vec![ConfigIssue {
                key: "(file)".into(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        Config::from_yaml(&text, &name)
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, o: Overrides) {
        if let Some(b) = o.bootstrap {
            self.upstream.bootstrap = split_servers(&b);
        }
        if let Some(v) = o.listen {
            self.listen = v;
        }
        if let Some(v) = o.advertised_host {
            self.advertised_host = Some(v);
        }
        if let Some(v) = o.admin {
            self.admin = v;
        }
        if let Some(v) = o.state_dir {
            self.state_dir = v;
        }
        if let Some(v) = o.log_format {
            self.logging.format = v;
        }
        if let Some(v) = o.admin_token {
            self.admin_token = Some(Secret(v));
        }
        if let Some(v) = o.admin_token_file {
            self.admin_options.token_file = Some(v);
        }
        if let Some(v) = o.admin_read_token {
            self.admin_read_token = Some(Secret(v));
        }
        if let Some(v) = o.admin_read_token_file {
            self.admin_options.read_token_file = Some(v);
        }
        if o.admin_allow_unauthenticated {
            self.admin_options.allow_unauthenticated = true;
        }
    }

    /// Reads `admin.tokenFile` and `admin.readTokenFile` into the tokens; a token given both
    /// directly and as a file, an unreadable file or an empty one is a problem.
    pub fn read_admin_token_files(&mut self, issues: &mut Vec<ConfigIssue>) {
        let files = [
            (
                "admin.tokenFile",
                self.admin_options.token_file.clone(),
                &mut self.admin_token,
            ),
            (
                "admin.readTokenFile",
                self.admin_options.read_token_file.clone(),
                &mut self.admin_read_token,
            ),
        ];
        for (key, file, slot) in files {
            let Some(file) = file else { continue };
            let mut issue = |message: String| {
                issues.push(ConfigIssue {
                    key: key.into(),
                    message,
                })
            };
            if slot.is_some() {
                issue(
                    "the token is also given directly (flag, environment or file): give one".into(),
                );
                continue;
            }
            match std::fs::read_to_string(&file) {
                Err(e) => issue(format!("cannot read {}: {e}", file.display())),
                Ok(text) if text.trim().is_empty() => issue(format!("{} is empty", file.display())),
                Ok(text) => *slot = Some(Secret(text.trim().to_string())),
            }
        }
    }

    /// Checks the values together, reporting every problem.
    pub fn validate(&self, source_name: &str) -> Result<(), ConfigError> {
        let mut issues = Vec::new();
        let mut issue = |key: &str, message: String| {
            issues.push(ConfigIssue {
                key: key.into(),
                message,
            })
        };
        let listen = self.listen.parse::<SocketAddr>();
        if let Err(e) = &listen {
            issue(
                "listen",
                format!("`{}` is not an IP:port address ({e})", self.listen),
            );
        }
        if let Err(e) = self.admin.parse::<SocketAddr>() {
            issue(
                "admin",
                format!("`{}` is not an IP:port address ({e})", self.admin),
            );
        }
        match (&self.advertised_host, &listen) {
            (Some(h), _) if !is_host(h) => issue(
                "advertisedHost",
                format!("`{h}` must be a host name or IP address, without a port"),
            ),
            (None, Ok(addr)) if addr.ip().is_unspecified() => issue(
                "advertisedHost",
                format!(
                    "required when listening on the wildcard address {} (clients need a \
                     reachable host name)",
                    addr.ip()
                ),
            ),
            _ => {}
        }
        if self.upstream.bootstrap.is_empty() {
            issue(
                "upstream.bootstrap",
                "at least one bootstrap server is required (or pass --bootstrap)".into(),
            );
        }
        for (i, server) in self.upstream.bootstrap.iter().enumerate() {
            if let Err(m) = check_host_port(server) {
                issue(&format!("upstream.bootstrap[{i}]"), m);
            }
        }
        for (key, v) in [
            (
                "upstream.connectTimeoutMs",
                self.upstream.connect_timeout_ms,
            ),
            (
                "upstream.requestTimeoutMs",
                self.upstream.request_timeout_ms,
            ),
            (
                "upstream.metadataRefreshMs",
                self.upstream.metadata_refresh_ms,
            ),
        ] {
            if v == 0 {
                issue(key, "must be greater than 0".into());
            }
        }
        if self.brokers.min_node_id < 0 {
            issue("brokers.minNodeId", "must not be negative".into());
        }
        if self.brokers.max_nodes == 0 {
            issue("brokers.maxNodes", "must be greater than 0".into());
        }
        if let Ok(addr) = &listen {
            let last = u32::from(addr.port()) + self.brokers.max_nodes;
            if addr.port() != 0 && last > u32::from(u16::MAX) {
                issue(
                    "brokers.maxNodes",
                    format!(
                        "broker ports {}..={last} run past 65535; lower maxNodes or the listen port",
                        addr.port() + 1
                    ),
                );
            }
        }
        if self.limits.max_frame_bytes < 1024 || self.limits.max_frame_bytes > MAX_FRAME_LIMIT {
            issue(
                "limits.maxFrameBytes",
                format!("must be between 1024 and {MAX_FRAME_LIMIT} bytes"),
            );
        }
        if self.limits.max_in_flight == 0 {
            issue("limits.maxInFlight", "must be greater than 0".into());
        }
        if self.limits.max_connections == 0 {
            issue("limits.maxConnections", "must be greater than 0".into());
        }
        if self.limits.max_connections_per_source == Some(0) {
            issue(
                "limits.maxConnectionsPerSource",
                "must be greater than 0 (leave it out for the default)".into(),
            );
        }
        for key in self.limits.max_connections_per_source_overrides.keys() {
            if key.parse::<IpAddr>().is_err() {
                issue(
                    &format!("limits.maxConnectionsPerSourceOverrides.{key}"),
                    format!("`{key}` is not an IP address"),
                );
            }
        }
        if self.limits.handshake_timeout_ms == 0 {
            issue("limits.handshakeTimeoutMs", "must be greater than 0".into());
        }
        self.admin_issues(&mut issue);
        self.security_issues(&mut issue);
        self.listener_issues(listen.as_ref().ok(), &mut issue);
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.logging.level) {
            issue("logging.level", format!("not a valid log filter: {e}"));
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                source_name: source_name.into(),
                issues,
            })
        }
    }

    /// The admin listener: token strength, and no open API beyond loopback unless allowed.
    fn admin_issues(&self, issue: &mut impl FnMut(&str, String)) {
        if self.admin_token.as_ref().is_some_and(|t| t.0.len() < 16) {
            issue("adminToken", "must be at least 16 characters".into());
        }
        if let Some(read) = &self.admin_read_token {
            if read.0.len() < 16 {
                issue("admin.readToken", "must be at least 16 characters".into());
            }
            match &self.admin_token {
                None => issue(
                    "admin.readToken",
                    "a read-only token needs an admin token for writes (admin.token, \
                     admin.tokenFile or SLUICE_ADMIN_TOKEN)"
                        .into(),
                ),
                Some(admin) if admin.0 == read.0 => {
                    issue("admin.readToken", "must differ from the admin token".into())
                }
                Some(_) => {}
            }
        }
        if self.admin_options.protect_metrics && self.admin_token.is_none() {
            issue(
                "admin.protectMetrics",
                "needs an admin token (admin.token, admin.tokenFile or SLUICE_ADMIN_TOKEN)".into(),
            );
        }
        if let Some(tls) = &self.admin_options.tls {
            for (key, path) in [("certFile", &tls.cert_file), ("keyFile", &tls.key_file)] {
                if path.as_os_str().is_empty() {
                    issue(&format!("admin.tls.{key}"), "must not be empty".into());
                }
            }
        }
        if let Ok(addr) = self.admin.parse::<SocketAddr>() {
            if !addr.ip().is_loopback()
                && self.admin_token.is_none()
                && !self.admin_options.allow_unauthenticated
            {
                issue(
                    "admin",
                    format!(
                        "`{}` is reachable beyond this host but no admin token is configured, so \
                         anyone reaching it could upload plugins and create accounts and ACLs: \
                         set a token (SLUICE_ADMIN_TOKEN, --admin-token-file or \
                         admin.tokenFile), listen on 127.0.0.1, or accept an open API with \
                         --admin-allow-unauthenticated (admin.allowUnauthenticated: true)",
                        self.admin
                    ),
                );
            }
        }
    }

    /// Security settings that do not fit together.
    fn security_issues(&self, issue: &mut impl FnMut(&str, String)) {
        listener_security_issues("security", &self.security, issue);
        if self.authorization.enabled && !authenticates(&self.security) {
            issue(
                "authorization.enabled",
                "ACLs need authenticated clients: use SASL or required client certificates".into(),
            );
        }
        if let Some(sasl) = &self.upstream.sasl {
            if sasl.password.0.is_empty() {
                issue(
                    "upstream.sasl.password",
                    "required (in the file or SLUICE_UPSTREAM_PASSWORD)".into(),
                );
            }
            if !UPSTREAM_MECHANISMS.contains(&sasl.mechanism.as_str()) {
                issue(
                    "upstream.sasl.mechanism",
                    format!(
                        "unknown mechanism `{}` (known: {})",
                        sasl.mechanism,
                        UPSTREAM_MECHANISMS.join(", ")
                    ),
                );
            }
        }
        if let Some(tls) = &self.upstream.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                issue("upstream.tls", "certFile and keyFile go together".into());
            }
        }
    }

    /// The extra listener sets: names, addresses, advertised hosts, security, and port ranges
    /// that must not overlap the default set's or each other's (`main`: the default set's
    /// listen address, when valid).
    fn listener_issues(&self, main: Option<&SocketAddr>, issue: &mut impl FnMut(&str, String)) {
        let max_nodes = self.brokers.max_nodes;
        // A fixed bootstrap port reserves `port ..= port + maxNodes`; port 0 reserves nothing.
        let range = |addr: &SocketAddr| {
            let first = u32::from(addr.port());
            (first, first + max_nodes)
        };
        let mut fixed: Vec<(String, SocketAddr)> = main
            .filter(|a| a.port() != 0)
            .map(|a| (DEFAULT_LISTENER.to_string(), *a))
            .into_iter()
            .collect();
        let mut names: Vec<&str> = Vec::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let key = |k: &str| format!("listeners[{i}].{k}");
            let valid_name = !l.name.is_empty()
                && l.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_name {
                issue(
                    &key("name"),
                    format!("`{}` must be non-empty and only use a-z, 0-9 and -", l.name),
                );
            } else if l.name == DEFAULT_LISTENER {
                issue(
                    &key("name"),
                    format!(
                        "`{DEFAULT_LISTENER}` is the top-level listener set's name (listen, \
                         advertisedHost, security)"
                    ),
                );
            } else if let Some(j) = names.iter().position(|n| *n == l.name) {
                issue(
                    &key("name"),
                    format!("duplicate listener name `{}` (also listeners[{j}])", l.name),
                );
            }
            names.push(&l.name);
            let listen = l.listen.parse::<SocketAddr>();
            match (&listen, &l.advertised_host) {
                (Err(e), _) => issue(
                    &key("listen"),
                    format!("`{}` is not an IP:port address ({e})", l.listen),
                ),
                (_, Some(h)) if !is_host(h) => issue(
                    &key("advertisedHost"),
                    format!("`{h}` must be a host name or IP address, without a port"),
                ),
                (Ok(addr), None) if addr.ip().is_unspecified() => issue(
                    &key("advertisedHost"),
                    format!(
                        "required when listening on the wildcard address {} (clients need a \
                         reachable host name)",
                        addr.ip()
                    ),
                ),
                _ => {}
            }
            if let Some(addr) = listen.as_ref().ok().copied().filter(|a| a.port() != 0) {
                let (first, last) = range(&addr);
                if last > u32::from(u16::MAX) {
                    issue(
                        &key("listen"),
                        format!(
                            "broker ports {}..={last} run past 65535; lower brokers.maxNodes or \
                             this listen port",
                            first + 1
                        ),
                    );
                }
                for (other, other_addr) in &fixed {
                    let (o_first, o_last) = range(other_addr);
                    if ips_overlap(&addr, other_addr) && first <= o_last && o_first <= last {
                        issue(
                            &key("listen"),
                            format!(
                                "ports {first}..={last} (bootstrap and brokers.maxNodes broker \
                                 ports) overlap listener `{other}`'s ports {o_first}..={o_last}"
                            ),
                        );
                    }
                }
                fixed.push((l.name.clone(), addr));
            }
            listener_security_issues(&key("security"), &l.security, issue);
            if self.authorization.enabled && !authenticates(&l.security) {
                issue(
                    &key("security"),
                    "authorization.enabled: ACLs need authenticated clients on every listener: \
                     use SASL or required client certificates"
                        .into(),
                );
            }
        }
    }

    /// Every listener set, the default one (top-level `listen`, `advertisedHost`, `security`,
    /// named `default`) first, then `listeners` in order.
    pub fn listener_sets(&self) -> Vec<ListenerConfig> {
        let default = ListenerConfig {
            name: DEFAULT_LISTENER.to_string(),
            listen: self.listen.clone(),
            advertised_host: self.advertised_host.clone(),
            security: self.security.clone(),
        };
        std::iter::once(default)
            .chain(self.listeners.iter().cloned())
            .collect()
    }

    /// The Kafka listen address (validated).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated listen address")
    }

    /// The admin listen address (validated).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.parse().expect("validated admin address")
    }

    /// The host advertised to clients.
    pub fn advertised_host(&self) -> String {
        match &self.advertised_host {
            Some(h) => h.clone(),
            None => self.listen_addr().ip().to_string(),
        }
    }

    /// Upstream connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream.connect_timeout_ms)
    }

    /// Timeout of the gateway's own upstream requests.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream.request_timeout_ms)
    }
}

/// Whether a listener with these settings authenticates its clients (SASL, or required client
/// certificates): what ACLs need.
fn authenticates(sec: &ListenerSecurity) -> bool {
    sec.protocol.sasl()
        || sec
            .tls
            .as_ref()
            .is_some_and(|t| t.client_auth == ClientAuth::Required)
}

/// Client-facing security settings that do not fit together; keys start with `prefix`
/// (`security`, or `listeners[i].security`).
fn listener_security_issues(
    prefix: &str,
    sec: &ListenerSecurity,
    issue: &mut impl FnMut(&str, String),
) {
    let key = |k: &str| format!("{prefix}.{k}");
    if sec.protocol.tls() && sec.tls.is_none() {
        issue(
            &key("tls"),
            format!("required when {prefix}.protocol is SSL or SASL_SSL"),
        );
    }
    if !sec.protocol.tls() && sec.tls.is_some() {
        issue(
            &key("protocol"),
            format!("{prefix}.tls is set but the protocol is not SSL or SASL_SSL"),
        );
    }
    if let Some(tls) = &sec.tls {
        if tls.client_auth != ClientAuth::None && tls.client_ca_file.is_none() {
            issue(
                &key("tls.clientCaFile"),
                "required when clientAuth is requested or required".into(),
            );
        }
    }
    match (&sec.sasl, sec.protocol.sasl()) {
        (None, true) => issue(
            &key("sasl"),
            format!("required when {prefix}.protocol is SASL_PLAINTEXT or SASL_SSL"),
        ),
        (Some(_), false) => issue(
            &key("protocol"),
            format!("{prefix}.sasl is set but the protocol is not SASL_PLAINTEXT or SASL_SSL"),
        ),
        _ => {}
    }
    if let Some(sasl) = &sec.sasl {
        if sasl.mechanisms.is_empty() {
            issue(&key("sasl.mechanisms"), "name at least one".into());
        }
        for (i, m) in sasl.mechanisms.iter().enumerate() {
            if !SERVER_MECHANISMS.contains(&m.as_str()) {
                issue(
                    &key(&format!("sasl.mechanisms[{i}]")),
                    format!(
                        "unknown mechanism `{m}` (known: {})",
                        SERVER_MECHANISMS.join(", ")
                    ),
                );
            }
        }
        let oauth = sasl.mechanisms.iter().any(|m| m == "OAUTHBEARER");
        if oauth && sasl.mode == SaslMode::GatewayManaged {
            match &sasl.oauthbearer {
                None => issue(
                    &key("sasl.oauthbearer"),
                    "required for OAUTHBEARER in gateway-managed mode (jwks, jwksFile or jwksUrl)"
                        .into(),
                ),
                Some(o) => {
                    let sources = [
                        o.jwks.is_some(),
                        o.jwks_file.is_some(),
                        o.jwks_url.is_some(),
                    ];
                    if sources.iter().filter(|s| **s).count() != 1 {
                        issue(
                            &key("sasl.oauthbearer"),
                            "set exactly one of jwks, jwksFile and jwksUrl".into(),
                        );
                    }
                    // For a valid jwksUrl: whether it is https:// (a URL that passes the
                    // check has its scheme in lower case).
                    let mut url_https = None;
                    if let Some(url) = &o.jwks_url {
                        match crate::auth::oauth::check_jwks_url(url) {
                            Ok(()) => url_https = Some(url.starts_with("https://")),
                            Err(e) => issue(&key("sasl.oauthbearer.jwksUrl"), e),
                        }
                    }
                    if let Some(ca) = &o.jwks_ca_file {
                        if ca.as_os_str().is_empty() {
                            issue(
                                &key("sasl.oauthbearer.jwksCaFile"),
                                "must name a PEM file".into(),
                            );
                        } else if o.jwks_url.is_none() || url_https == Some(false) {
                            // Refused rather than ignored: it says that TLS was expected.
                            issue(
                                &key("sasl.oauthbearer.jwksCaFile"),
                                "applies only to an https:// jwksUrl".into(),
                            );
                        }
                    }
                    if o.jwks_refresh_ms < MIN_JWKS_REFRESH_MS {
                        issue(
                            &key("sasl.oauthbearer.jwksRefreshMs"),
                            format!("must be at least {MIN_JWKS_REFRESH_MS}"),
                        );
                    }
                }
            }
        }
    }
}

/// Whether two listen addresses can contend for the same ports: the same IP, or either the
/// wildcard (which takes the port on every address).
fn ips_overlap(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

fn is_host(h: &str) -> bool {
    h.parse::<std::net::IpAddr>().is_ok()
        || (!h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
}

fn check_host_port(s: &str) -> Result<(), String> {
    // Resolution is not required at start (the cluster may come up later), but the value
    // must at least have the form of host:port.
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("`{s}` must be host:port"));
    };
    if !is_host(host.trim_start_matches('[').trim_end_matches(']')) {
        return Err(format!("`{s}` has no valid host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("`{s}` has no valid port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_full_file() {
        let c = Config::from_yaml(
            r#"
listen: 127.0.0.1:7000
advertisedHost: gw.example.com
admin: 127.0.0.1:9000
upstream:
  bootstrap: "a:9092, b:9092"
  connectTimeoutMs: 500
brokers: { minNodeId: 1, maxNodes: 8 }
limits: { maxFrameBytes: 2048, maxInFlight: 4 }
logging: { format: json, level: debug }
"#,
            "test.yaml",
        )
        .unwrap();
        c.validate("test.yaml").unwrap();
        assert_eq!(c.upstream.bootstrap, vec!["a:9092", "b:9092"]);
        assert_eq!(c.brokers.min_node_id, 1);
        assert_eq!(c.limits.max_in_flight, 4);
        assert_eq!(c.limits.max_connections, 20_000);
        assert_eq!(c.logging.format, LogFormat::Json);
        assert_eq!(c.advertised_host(), "gw.example.com");
    }

    #[test]
    fn reports_every_error_with_its_key() {
        let err = Config::from_yaml(
            r#"
listen: 7000
lisen: oops
upstream:
  bootstrap: [a:1]
  connectTimeoutMs: soon
  extra: 1
limits: 5
logging: { format: xml }
"#,
            "bad.yaml",
        )
        .unwrap_err();
        let keys: Vec<_> = err.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "listen",
                "upstream.connectTimeoutMs",
                "upstream.extra",
                "limits",
                "logging.format",
                "lisen"
            ],
            "{err}"
        );
        assert!(err.to_string().contains("6 errors"));
    }

    #[test]
    fn validation_collects_all_problems() {
        let mut c = Config {
            listen: "0.0.0.0:6969".into(),
            admin: "nope".into(),
            ..Config::default()
        };
        c.upstream.bootstrap = vec!["ok:9092".into(), "bad".into(), "x:0".into()];
        c.limits.max_frame_bytes = 1 << 30;
        c.limits.max_in_flight = 0;
        let err = c.validate("flags").unwrap_err();
        let keys: Vec<_> = err.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "admin",
                "advertisedHost",
                "upstream.bootstrap[1]",
                "upstream.bootstrap[2]",
                "limits.maxFrameBytes",
                "limits.maxInFlight"
            ]
        );
    }

    #[test]
    fn listener_sets_parse_and_validate() {
        let c = Config::from_yaml(
            r#"
listen: 127.0.0.1:7000
upstream: { bootstrap: a:1 }
brokers: { maxNodes: 8 }
listeners:
  - name: internal
    listen: 127.0.0.1:7100
    security:
      protocol: SASL_SSL
      tls: { certFile: s.pem, keyFile: s.key }
      sasl: { mechanisms: [SCRAM-SHA-512] }
  - name: ext-2
    listen: 0.0.0.0:0
    advertisedHost: kafka.example.com
"#,
            "l.yaml",
        )
        .unwrap();
        c.validate("l.yaml").unwrap();
        let sets = c.listener_sets();
        let names: Vec<_> = sets.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, vec![DEFAULT_LISTENER, "internal", "ext-2"]);
        assert_eq!(sets[0].listen, "127.0.0.1:7000");
        assert_eq!(sets[1].security.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(sets[1].advertised_host(), "127.0.0.1");
        assert_eq!(sets[2].advertised_host(), "kafka.example.com");
        assert_eq!(sets[2].security, ListenerSecurity::default());
    }

    #[test]
    fn listener_sets_report_every_problem_with_its_key() {
        let c = Config::from_yaml(
            r#"
listen: 127.0.0.1:7000
upstream: { bootstrap: a:1 }
brokers: { maxNodes: 8 }
listeners:
  - { name: internal, listen: 127.0.0.1:7008 }
  - { name: internal, listen: 127.0.0.1:7200 }
  - { name: Bad_Name, listen: 127.0.0.1:7205 }
  - { name: default, listen: 0.0.0.0:0 }
  - { name: other-ip, listen: 127.0.0.2:7000 }
  - { name: wild, listen: 0.0.0.0:7203, advertisedHost: gw }
  - { name: tls, listen: 127.0.0.1:0, security: { protocol: SSL } }
  - { name: top, listen: 127.0.0.1:65530 }
"#,
            "l.yaml",
        )
        .unwrap();
        let err = c.validate("l.yaml").unwrap_err();
        let keys: Vec<_> = err.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "listeners[0].listen",
                "listeners[1].name",
                "listeners[2].name",
                "listeners[2].listen",
                "listeners[3].name",
                "listeners[3].advertisedHost",
                "listeners[5].listen",
                "listeners[5].listen",
                "listeners[6].security.tls",
                "listeners[7].listen",
            ],
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("overlap listener `default`'s ports 7000..=7008"),
            "{text}"
        );
        assert!(
            text.contains("duplicate listener name `internal` (also listeners[0])"),
            "{text}"
        );
        assert!(text.contains("run past 65535"), "{text}");
    }

    #[test]
    fn listener_entries_are_parsed_one_by_one() {
        let err = Config::from_yaml(
            r#"
upstream: { bootstrap: a:1 }
listeners:
  - { name: ok, listen: 127.0.0.1:0 }
  - { name: bad, listen: 127.0.0.1:0, tls: {} }
  - { name: worse, listen: 127.0.0.1:0, security: { protocol: SSH } }
"#,
            "l.yaml",
        )
        .unwrap_err();
        let keys: Vec<_> = err.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, vec!["listeners[1]", "listeners[2]"], "{err}");
    }

    #[test]
    fn acls_need_authentication_on_every_listener() {
        let mut c = Config::from_yaml(
            r#"
upstream: { bootstrap: a:1 }
security: { protocol: SASL_PLAINTEXT, sasl: { mechanisms: [PLAIN] } }
authorization: { enabled: true }
listeners:
  - { name: open, listen: 127.0.0.1:0 }
"#,
            "l.yaml",
        )
        .unwrap();
        let err = c.validate("l.yaml").unwrap_err();
        let keys: Vec<_> = err.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, vec!["listeners[0].security"], "{err}");
        c.listeners[0].security = c.security.clone();
        c.validate("l.yaml").unwrap();
    }

    fn admin_keys(c: &Config) -> Vec<String> {
        match c.validate("f") {
            Ok(()) => Vec::new(),
            Err(e) => e.issues.into_iter().map(|i| i.key).collect(),
        }
    }

    #[test]
    fn admin_beyond_loopback_needs_a_token_or_an_explicit_override() {
        let mut c =
            Config::from_yaml("upstream: {bootstrap: a:1}\nadmin: 0.0.0.0:8888", "f").unwrap();
        let err = c.validate("f").unwrap_err().to_string();
        assert!(
            err.contains("admin: `0.0.0.0:8888` is reachable beyond this host"),
            "{err}"
        );
        assert!(err.contains("--admin-allow-unauthenticated"), "{err}");
        c.admin_options.allow_unauthenticated = true;
        c.validate("f").unwrap();
        c.admin_options.allow_unauthenticated = false;
        c.admin_token = Some(Secret::new("0123456789abcdef"));
        c.validate("f").unwrap();
        // Loopback needs neither.
        c.admin_token = None;
        for addr in ["127.0.0.1:8888", "[::1]:8888"] {
            c.admin = addr.into();
            c.validate("f").unwrap();
        }
    }

    #[test]
    fn admin_mapping_read_token_files_and_checks() {
        let dir = std::env::temp_dir().join(format!("sluice-admin-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("admin"), "admin-token-from-file-0123\n").unwrap();
        std::fs::write(dir.join("read"), "  read-token-from-file-0123  \n").unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(
            &file,
            format!(
                "upstream: {{bootstrap: a:1}}\nadmin:\n  listen: 0.0.0.0:9000\n  tokenFile: {}\n  \
                 readTokenFile: {}\n  protectMetrics: true\n  tls: {{certFile: c.pem, keyFile: k.pem}}\n",
                dir.join("admin").display(),
                dir.join("read").display()
            ),
        )
        .unwrap();
        let c = Config::load(Some(&file), Overrides::default()).unwrap();
        assert_eq!(c.admin, "0.0.0.0:9000");
        assert!(c
            .admin_token
            .as_ref()
            .unwrap()
            .matches("admin-token-from-file-0123"));
        assert!(c
            .admin_read_token
            .as_ref()
            .unwrap()
            .matches("read-token-from-file-0123"));
        assert!(c.admin_options.protect_metrics);
        assert_eq!(
            c.admin_options.tls.as_ref().unwrap().key_file,
            PathBuf::from("k.pem")
        );
        // A token both given and in a file, an unreadable file: errors naming the key.
        let e = Config::load(
            Some(&file),
            Overrides {
                admin_token: Some("flag-token-0123456789".into()),
                admin_read_token_file: Some(dir.join("missing")),
                ..Overrides::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("admin.tokenFile: the token is also given directly"),
            "{e}"
        );
        assert!(e.contains("admin.readTokenFile: cannot read"), "{e}");
        // Unknown keys in the mapping are reported.
        let e = Config::from_yaml("admin: {listen: 127.0.0.1:1, tokn: x}", "f").unwrap_err();
        assert!(e.to_string().contains("admin.tokn: unknown key"), "{e}");
        // The read-only token needs an admin token, differs from it; metrics need a token.
        let mut c = Config::from_yaml("upstream: {bootstrap: a:1}", "f").unwrap();
        c.admin_read_token = Some(Secret::new("read-token-0123456789"));
        c.admin_options.protect_metrics = true;
        assert_eq!(admin_keys(&c), ["admin.readToken", "admin.protectMetrics"]);
        c.admin_token = Some(Secret::new("read-token-0123456789"));
        assert_eq!(admin_keys(&c), ["admin.readToken"]);
        c.admin_token = Some(Secret::new("admin-token-0123456789"));
        assert!(admin_keys(&c).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn secrets_compare_by_content_only() {
        let s = Secret::new("0123456789abcdef");
        assert!(s.matches("0123456789abcdef"));
        assert!(!s.matches("0123456789abcdeF"));
        assert!(!s.matches("0123456789abcde"));
        assert!(!s.matches(""));
    }

    #[test]
    fn connection_limits_parse_and_validate() {
        let c = Config::from_yaml(
            r#"
upstream: { bootstrap: a:1 }
limits:
  maxConnections: 100
  maxConnectionsPerSource: 10
  maxConnectionsPerSourceOverrides: { "10.0.0.5": 50, "::1": 0 }
  handshakeTimeoutMs: 300
  idleTimeoutMs: 0
"#,
            "l.yaml",
        )
        .unwrap();
        c.validate("l.yaml").unwrap();
        assert_eq!(c.limits.handshake_timeout(), Duration::from_millis(300));
        assert_eq!(c.limits.idle_timeout(), None);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(c.limits.per_source_limit(ip("10.0.0.5"), 100), 50);
        assert_eq!(c.limits.per_source_limit(ip("::1"), 100), 0);
        assert_eq!(c.limits.per_source_limit(ip("10.0.0.6"), 100), 10);
        let d = Config::default().limits;
        assert_eq!(d.idle_timeout(), Some(Duration::from_secs(600)));
        assert_eq!(d.handshake_timeout(), Duration::from_secs(10));
        assert_eq!(d.per_source_limit(ip("10.0.0.6"), 20_000), 10_000);
        assert_eq!(d.per_source_limit(ip("10.0.0.6"), 5), 3);

        let bad = Config::from_yaml(
            r#"
upstream: { bootstrap: a:1 }
limits:
  maxConnectionsPerSource: 0
  maxConnectionsPerSourceOverrides: { "not-an-ip": 5 }
  handshakeTimeoutMs: 0
"#,
            "l.yaml",
        )
        .unwrap();
        let err = bad.validate("l.yaml").unwrap_err();
        let keys: Vec<_> = err.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "limits.maxConnectionsPerSource",
                "limits.maxConnectionsPerSourceOverrides.not-an-ip",
                "limits.handshakeTimeoutMs"
            ],
            "{err}"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let mut c =
            Config::from_yaml("listen: 127.0.0.1:1\nupstream: {bootstrap: a:1}", "f").unwrap();
        c.apply(Overrides {
            bootstrap: Some("b:2,c:3".into()),
            listen: Some("127.0.0.1:2".into()),
            ..Overrides::default()
        });
        assert_eq!(c.upstream.bootstrap, vec!["b:2", "c:3"]);
        assert_eq!(c.listen, "127.0.0.1:2");
        c.validate("f").unwrap();
    }
}
