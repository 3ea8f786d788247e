//! Authentication: SASL mechanisms, mTLS principals and the exchanges a connection runs.
//!
//! The [`Authenticator`] is built once from the listener configuration. A connection that must
//! authenticate gets an [`Exchange`] per SaslHandshake (including KIP-368 re-authentication)
//! and feeds it each SaslAuthenticate token:
//!
//! - *gateway-managed*: the gateway checks the credentials itself: PLAIN and SCRAM against
//!   the service accounts (stored as salted SCRAM keys, never passwords), OAUTHBEARER against
//!   the configured JWKS (inline, or from a file or URL kept current in the background);
//! - *delegated*: the exchange is relayed to the broker, which decides; the gateway only reads
//!   the principal's name from the client's first message ([`delegated_principal`]) and takes
//!   it once the broker accepts.
//!
//! A failed exchange is answered after a fixed delay and the connection is closed, as a broker
//! does. Error texts sent to clients never say whether the user exists.

pub mod mtls;
pub mod oauth;
pub mod plain;
pub mod scram;

use anyhow::{Context, Result};
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{ClientAuth, Config, ListenerSecurity, SaslMode, SecurityProtocol};
use crate::identity::Identity;
use crate::security::SecuritySnapshot;
use mtls::PrincipalMapper;
use oauth::{JwksReader, JwksRefresh, JwksSource, JwtSettings, JwtValidator};
use scram::{ScramMechanism, ScramServer};

/// The principal of a connection that presented no credentials (Kafka's name for it).
pub const ANONYMOUS: &str = "ANONYMOUS";

/// A SASL mechanism the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// RFC 5802 / 7677.
    Scram(ScramMechanism),
    /// RFC 7628 with JWTs.
    OauthBearer,
}

impl Mechanism {
    /// Parses a mechanism name as clients send it.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            "OAUTHBEARER" => Some(Mechanism::OauthBearer),
            other => ScramMechanism::from_name(other).map(Mechanism::Scram),
        }
    }

    /// The mechanism's name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::OauthBearer => "OAUTHBEARER",
            Mechanism::Scram(m) => m.name(),
        }
    }
}

/// The outcome of one SaslAuthenticate token.
#[derive(Debug)]
pub enum Step {
    /// Send this challenge; the exchange goes on.
    Continue(Vec<u8>),
    /// Authenticated: send this final message.
    Done(Vec<u8>, Identity),
    /// Failed: the reason is for the log (never for the client).
    Failed(String),
}

/// One listener set's authentication settings.
pub struct Authenticator {
    protocol: SecurityProtocol,
    tls: Option<tokio_rustls::TlsAcceptor>,
    client_auth: ClientAuth,
    mapper: PrincipalMapper,
    mode: SaslMode,
    mechanisms: Vec<Mechanism>,
    failed_delay: Duration,
    max_reauth: Option<Duration>,
    jwt: Option<Arc<JwtValidator>>,
    /// Keeps the JWKS of a file or URL current; stops with the authenticator.
    _jwks_refresh: Option<JwksRefresh>,
    principal_claim: String,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("protocol", &self.protocol)
            .field("mode", &self.mode)
            .field("mechanisms", &self.mechanisms)
            .finish()
    }
}

impl Authenticator {
    /// Builds the authenticator `config.security` describes (the default listener set): reads
    /// certificates, keys and the JWKS, parses mapping rules. Errors name the file or setting
    /// at fault.
    pub fn from_config(config: &Config) -> Result<Authenticator> {
        Authenticator::from_listener(&config.security, "security")
    }

    /// Builds the authenticator of one listener set from its security settings; `key` is where
    /// they sit in the configuration (`security`, `listeners[1].security`), for error messages.
    ///
    /// An OAUTHBEARER JWKS from a file or URL is read here (a failure is an error naming the
    /// source, without credentials) and then refreshed in the background on the current tokio
    /// runtime, for as long as the authenticator lives. Outside a runtime it is read once.
    pub fn from_listener(sec: &ListenerSecurity, key: &str) -> Result<Authenticator> {
        let tls = match &sec.tls {
            Some(t) if sec.protocol.tls() => Some(tokio_rustls::TlsAcceptor::from(
                crate::tls::server_config(t).with_context(|| format!("{key}.tls"))?,
            )),
            _ => None,
        };
        let mapper = match sec
            .tls
            .as_ref()
            .and_then(|t| t.principal_mapping_rules.as_deref())
        {
            Some(rules) => PrincipalMapper::parse(rules)
                .map_err(|e| anyhow::anyhow!("{key}.tls.principalMappingRules: {e}"))?,
            None => PrincipalMapper::default_rules(),
        };
        let (mut mode, mut mechanisms, mut failed_delay, mut max_reauth, mut jwt) = (
            SaslMode::GatewayManaged,
            Vec::new(),
            Duration::ZERO,
            None,
            None,
        );
        let mut jwks_refresh = None;
        if let Some(sasl) = sec.sasl.as_ref().filter(|_| sec.protocol.sasl()) {
            mode = sasl.mode;
            mechanisms = sasl
                .mechanisms
                .iter()
                .filter_map(|m| Mechanism::from_name(m))
                .collect();
            failed_delay = Duration::from_millis(sasl.failed_auth_delay_ms);
            max_reauth =
                (sasl.max_reauth_ms > 0).then(|| Duration::from_millis(sasl.max_reauth_ms));
            if let (Some(o), SaslMode::GatewayManaged) = (&sasl.oauthbearer, mode) {
                let source = match (&o.jwks, &o.jwks_file, &o.jwks_url) {
                    (Some(_), None, None) => None,
                    (None, Some(path), None) => Some(JwksSource::File(path.clone())),
                    (None, None, Some(url)) => Some(JwksSource::Url(url.clone())),
                    _ => anyhow::bail!(
                        "{key}.sasl.oauthbearer: set exactly one of jwks, jwksFile and jwksUrl"
                    ),
                };
                // A CA bundle is read here, once: a bad one fails the start.
                let source = source
                    .map(|s| JwksReader::new(s, o.jwks_ca_file.as_deref()))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("{key}.sasl.oauthbearer.jwksCaFile: {e}"))?;
                let jwks_json = match (&source, &o.jwks) {
                    (Some(source), _) => read_jwks_at_start(source).map_err(|e| {
                        anyhow::anyhow!(
                            "{key}.sasl.oauthbearer.{}: {e}",
                            source_key(source.source())
                        )
                    })?,
                    (None, inline) => inline.clone().unwrap_or_default(),
                };
                let validator = Arc::new(
                    JwtValidator::new(JwtSettings {
                        jwks_json,
                        issuer: o.issuer.clone(),
                        audiences: o.audiences.clone(),
                        principal_claim: o.principal_claim.clone(),
                        groups_claim: o.groups_claim.clone(),
                        leeway_secs: o.leeway_secs,
                    })
                    .map_err(|e| match &source {
                        Some(s) => anyhow::anyhow!("{key}.sasl.oauthbearer: {e} (from {s})"),
                        None => anyhow::anyhow!("{key}.sasl.oauthbearer: {e}"),
                    })?,
                );
                if let Some(source) = source {
                    let every = Duration::from_millis(
                        o.jwks_refresh_ms.max(crate::config::MIN_JWKS_REFRESH_MS),
                    );
                    if tokio::runtime::Handle::try_current().is_ok() {
                        jwks_refresh =
                            Some(oauth::spawn_jwks_refresh(validator.clone(), source, every));
                    } else {
                        tracing::warn!(
                            source = %source,
                            "no async runtime: the OAUTHBEARER JWKS will not be refreshed"
                        );
                    }
                }
                jwt = Some(validator);
            }
        }
        Ok(Authenticator {
            protocol: sec.protocol,
            tls,
            client_auth: sec.tls.as_ref().map_or(ClientAuth::None, |t| t.client_auth),
            mapper,
            mode,
            mechanisms,
            failed_delay,
            max_reauth,
            jwt,
            _jwks_refresh: jwks_refresh,
            principal_claim: sec
                .sasl
                .as_ref()
                .and_then(|s| s.oauthbearer.as_ref())
                .map_or_else(|| "sub".to_string(), |o| o.principal_claim.clone()),
        })
    }

    /// The TLS acceptor, when the listeners speak TLS.
    pub fn tls(&self) -> Option<&tokio_rustls::TlsAcceptor> {
        self.tls.as_ref()
    }

    /// Whether clients must authenticate with SASL before other requests.
    pub fn requires_sasl(&self) -> bool {
        self.protocol.sasl()
    }

    /// Gateway-managed or delegated.
    pub fn mode(&self) -> SaslMode {
        self.mode
    }

    /// Enabled mechanism names, as SaslHandshake lists them.
    pub fn mechanism_names(&self) -> Vec<&'static str> {
        self.mechanisms.iter().map(|m| m.name()).collect()
    }

    /// The enabled mechanism called `name`.
    pub fn mechanism(&self, name: &str) -> Option<Mechanism> {
        Mechanism::from_name(name).filter(|m| self.mechanisms.contains(m))
    }

    /// Delay before a failed authentication is answered.
    pub fn failed_delay(&self) -> Duration {
        self.failed_delay
    }

    /// KIP-368 session lifetime for a credential that expires at `expires_at` (None: the
    /// session does not expire).
    pub fn session_lifetime(&self, expires_at: Option<SystemTime>) -> Option<Duration> {
        let until_expiry = expires_at.map(|t| {
            t.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        });
        match (self.max_reauth, until_expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The principal of a TLS connection: its certificate's subject through the mapping rules,
    /// or `None` without a certificate. An error means the subject maps to nothing.
    pub fn tls_principal(&self, certs: Option<&[CertificateDer<'_>]>) -> Result<Option<String>> {
        let Some(leaf) = certs.and_then(|c| c.first()) else {
            return Ok(None);
        };
        let dn = mtls::subject_dn(leaf).map_err(|e| anyhow::anyhow!("client certificate: {e}"))?;
        match self.mapper.map(&dn) {
            Some(p) => Ok(Some(p)),
            None => anyhow::bail!("no principal mapping rule applies to `{dn}`"),
        }
    }

    /// The token claim that names the principal (OAUTHBEARER).
    pub fn principal_claim(&self) -> &str {
        &self.principal_claim
    }

    /// Whether a client certificate is mandatory.
    pub fn requires_client_cert(&self) -> bool {
        self.client_auth == ClientAuth::Required
    }

    /// Starts a gateway-managed exchange for an enabled mechanism.
    pub fn start(self: &Arc<Self>, mechanism: Mechanism) -> Exchange {
        let state = match mechanism {
            Mechanism::Plain => State::Plain,
            Mechanism::Scram(m) => State::Scram(Box::new(ScramServer::new(m)), None),
            Mechanism::OauthBearer => State::Oauth { failed: None },
        };
        Exchange {
            auth: self.clone(),
            state,
        }
    }
}

/// The configuration key naming a JWKS source, for error messages.
fn source_key(source: &JwksSource) -> &'static str {
    match source {
        JwksSource::File(_) => "jwksFile",
        JwksSource::Url(_) => "jwksUrl",
    }
}

/// Reads a JWKS while the gateway starts. Construction is synchronous, so the read blocks;
/// on a multi-threaded runtime the worker first hands its other tasks off, which lets a
/// JWKS served by the same process (as in tests) still answer.
fn read_jwks_at_start(source: &JwksReader) -> Result<String, oauth::OauthError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| source.read_blocking())
        }
        _ => source.read_blocking(),
    }
}

/// One gateway-managed SASL exchange.
pub struct Exchange {
    auth: Arc<Authenticator>,
    state: State,
}

enum State {
    Plain,
    /// The server side and, after the first message, the user it is about.
    Scram(Box<ScramServer>, Option<String>),
    /// After an invalid token the server sends an error challenge and fails on the client's
    /// next message (RFC 7628 §3.2.2).
    Oauth {
        failed: Option<String>,
    },
    Finished,
}

impl Exchange {
    /// Why the exchange is failing, when the server has refused the client but waits for its
    /// acknowledgement (OAUTHBEARER's error challenge): a client that gives up or sends
    /// another request instead still counts as a failed authentication.
    pub fn pending_failure(&self) -> Option<&str> {
        match &self.state {
            State::Oauth { failed } => failed.as_deref(),
            _ => None,
        }
    }

    /// Feeds one client token.
    pub fn step(&mut self, input: &[u8], accounts: &SecuritySnapshot) -> Step {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Finished => Step::Failed("the exchange is already over".into()),
            State::Plain => {
                let token = match plain::parse(input) {
                    Ok(t) => t,
                    Err(e) => return Step::Failed(format!("PLAIN: {e}")),
                };
                let known = ScramMechanism::ALL.iter().find_map(|m| {
                    accounts
                        .scram_credential(&token.username, *m)
                        .map(|c| (c, *m))
                });
                match known {
                    Some((cred, m)) if cred.verify_password(m, &token.password) => {
                        Step::Done(Vec::new(), Identity::authenticated(token.username, "PLAIN"))
                    }
                    Some(_) => {
                        Step::Failed(format!("PLAIN: wrong password for `{}`", token.username))
                    }
                    None => Step::Failed(format!("PLAIN: unknown user `{}`", token.username)),
                }
            }
            State::Scram(mut server, None) => match server.client_first(input) {
                Ok(user) => {
                    let cred = accounts.scram_credential(&user, server.mechanism());
                    if cred.is_none() {
                        server.offer_to_unknown(accounts.typical_iterations(server.mechanism()));
                    }
                    let challenge = server.server_first(cred);
                    self.state = State::Scram(server, Some(user));
                    Step::Continue(challenge)
                }
                Err(e) => Step::Failed(format!("SCRAM: {e}")),
            },
            State::Scram(mut server, Some(user)) => match server.client_final(input) {
                Ok(last) if accounts.account_exists(&user) => Step::Done(
                    last,
                    Identity::authenticated(user, server.mechanism().name()),
                ),
                Ok(_) => Step::Failed(format!("SCRAM: unknown user `{user}`")),
                Err(e) => Step::Failed(format!("SCRAM for `{user}`: {e}")),
            },
            State::Oauth {
                failed: Some(reason),
            } => Step::Failed(reason),
            State::Oauth { failed: None } => {
                let bearer = match oauth::parse_client_first(input) {
                    Ok(b) => b,
                    Err(e) => return Step::Failed(format!("OAUTHBEARER: {e}")),
                };
                let Some(jwt) = &self.auth.jwt else {
                    return Step::Failed("OAUTHBEARER: no token validation configured".into());
                };
                match jwt.validate(&bearer.token) {
                    Ok(v) if bearer.authzid.as_ref().is_some_and(|a| *a != v.principal) => {
                        // Kafka refuses to act for another principal than the token's.
                        Step::Failed(format!(
                            "OAUTHBEARER: authorization id differs from the token's principal `{}`",
                            v.principal
                        ))
                    }
                    Ok(v) => Step::Done(
                        Vec::new(),
                        Identity::authenticated(v.principal, "OAUTHBEARER")
                            .with_token_groups(v.groups)
                            .with_expiry(v.expires_at),
                    ),
                    Err(e) => {
                        self.state = State::Oauth {
                            failed: Some(format!("OAUTHBEARER: {e}")),
                        };
                        Step::Continue(oauth::failure_challenge("invalid_token"))
                    }
                }
            }
        }
    }
}

/// The principal a delegated exchange is about, read from the client's first SaslAuthenticate
/// token (the broker decides whether it is genuine).
pub fn delegated_principal(mechanism: &str, token: &[u8], principal_claim: &str) -> Option<String> {
    match Mechanism::from_name(mechanism)? {
        Mechanism::Plain => plain::parse(token).ok().map(|t| t.username),
        Mechanism::Scram(_) => scram::client_first_username(token),
        Mechanism::OauthBearer => {
            let bearer = oauth::parse_client_first(token).ok()?;
            oauth::unverified_claim(&bearer.token, principal_claim)
        }
    }
}

/// How many SaslAuthenticate round trips a successful exchange of `mechanism` takes (a
/// delegated exchange is complete after that many successful answers).
pub fn rounds(mechanism: &str) -> usize {
    match Mechanism::from_name(mechanism) {
        Some(Mechanism::Scram(_)) => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration with OAUTHBEARER over SASL_PLAINTEXT and these `oauthbearer` settings
    /// (YAML flow mapping entries).
    fn oauth_config(settings: &str) -> Config {
        Config::from_yaml(
            &format!(
                "listen: 127.0.0.1:0\nupstream: {{bootstrap: a:1}}\nsecurity: {{ protocol: \
                 SASL_PLAINTEXT, sasl: {{ mechanisms: [OAUTHBEARER], oauthbearer: {{ {settings} \
                 }} }} }}\n"
            ),
            "o.yaml",
        )
        .unwrap()
    }

    /// The keys of the validation issues about `security.sasl.oauthbearer` and the texts.
    fn oauth_issues(c: &Config) -> (Vec<String>, String) {
        match c.validate("o.yaml") {
            Ok(()) => (Vec::new(), String::new()),
            Err(e) => (
                e.issues
                    .iter()
                    .filter(|i| i.key.starts_with("security.sasl.oauthbearer"))
                    .map(|i| i.key.clone())
                    .collect(),
                e.to_string(),
            ),
        }
    }

    #[test]
    fn exactly_one_jwks_source_and_a_usable_url() {
        let jwks = r#"jwks: '{"keys":[]}'"#;
        for good in [
            jwks.to_string(),
            "jwksFile: /etc/jwks.json".into(),
            "jwksUrl: 'http://idp.example/jwks', jwksRefreshMs: 60000".into(),
        ] {
            let c = oauth_config(&good);
            assert_eq!(oauth_issues(&c).0, Vec::<String>::new(), "{good}");
        }
        let c = oauth_config("jwksUrl: 'http://idp.example/jwks'");
        assert_eq!(
            c.security
                .sasl
                .unwrap()
                .oauthbearer
                .unwrap()
                .jwks_refresh_ms,
            300_000
        );

        for two in [
            format!("{jwks}, jwksFile: /etc/jwks.json"),
            "jwksFile: /etc/jwks.json, jwksUrl: 'http://idp.example/jwks'".into(),
            format!("{jwks}, jwksUrl: 'http://idp.example/jwks'"),
            "issuer: x".into(),
        ] {
            let (keys, text) = oauth_issues(&oauth_config(&two));
            assert_eq!(keys, ["security.sasl.oauthbearer"], "{two}: {text}");
            assert!(text.contains("exactly one"), "{text}");
        }

        let (keys, text) = oauth_issues(&oauth_config(
            "jwksUrl: 'ftp://user:s3cret@idp.example/jwks?t=t0ken'",
        ));
        assert_eq!(keys, ["security.sasl.oauthbearer.jwksUrl"], "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("t0ken"),
            "{text}"
        );
        for good in [
            "jwksUrl: 'https://idp.example/jwks'",
            "jwksUrl: 'https://idp.example/jwks', jwksCaFile: /etc/idp-ca.pem",
        ] {
            let (keys, text) = oauth_issues(&oauth_config(good));
            assert_eq!(keys, Vec::<String>::new(), "{good}: {text}");
        }
        for bad in [
            "jwksUrl: 'http://idp.example/jwks', jwksCaFile: /etc/idp-ca.pem",
            "jwksFile: /etc/jwks.json, jwksCaFile: /etc/idp-ca.pem",
            "jwksUrl: 'https://idp.example/jwks', jwksCaFile: ''",
        ] {
            let (keys, text) = oauth_issues(&oauth_config(bad));
            assert_eq!(
                keys,
                ["security.sasl.oauthbearer.jwksCaFile"],
                "{bad}: {text}"
            );
        }
        // An invalid URL is reported once, not again through jwksCaFile.
        let (keys, text) = oauth_issues(&oauth_config(
            "jwksUrl: 'ftp://idp.example/jwks', jwksCaFile: /etc/idp-ca.pem",
        ));
        assert_eq!(keys, ["security.sasl.oauthbearer.jwksUrl"], "{text}");
        let (keys, _) = oauth_issues(&oauth_config(
            "jwksUrl: 'http://idp.example/jwks', jwksRefreshMs: 10",
        ));
        assert_eq!(keys, ["security.sasl.oauthbearer.jwksRefreshMs"]);
    }

    #[test]
    fn an_unreadable_jwks_ca_file_fails_the_start_naming_it() {
        let c = oauth_config(
            "jwksUrl: 'https://svc:s3cret@idp.example/jwks?key=t0ken', \
             jwksCaFile: /nonexistent/idp-ca.pem",
        );
        let err = Authenticator::from_config(&c).unwrap_err().to_string();
        assert!(
            err.contains("security.sasl.oauthbearer.jwksCaFile"),
            "{err}"
        );
        assert!(err.contains("/nonexistent/idp-ca.pem"), "{err}");
        assert!(!err.contains("s3cret") && !err.contains("t0ken"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_jwks_url_fails_the_start_naming_it_without_credentials() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let c = oauth_config(&format!(
            "jwksUrl: 'http://svc:s3cret@{addr}/jwks?key=t0ken'"
        ));
        let err = Authenticator::from_config(&c).unwrap_err().to_string();
        assert!(err.contains("security.sasl.oauthbearer.jwksUrl"), "{err}");
        assert!(err.contains(&format!("http://{addr}/jwks")), "{err}");
        assert!(!err.contains("s3cret") && !err.contains("t0ken"), "{err}");
    }
}
