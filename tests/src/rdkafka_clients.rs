//! librdkafka clients (the `rdkafka` crate): plain and consumer configurations with a
//! bootstrap, the client side of TLS/mTLS/SASL, short timeouts for tests that expect failure,
//! and a client context that records librdkafka's errors and logs for assertions.

use rdkafka::config::ClientConfig;
use std::time::{Duration, Instant};

use crate::{jwt, pki};

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

/// Reads partition 0 of `topic` from its beginning (assigned, no group membership) until
/// `want` records arrived, with `config` (bootstrap and security already set); fails the test
/// after 60 s without them.
pub fn read_partition0(
    mut config: ClientConfig,
    topic: &str,
    want: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = config
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("creating a consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("a partition");
    consumer.assign(&tpl).expect("assigning");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} records of {topic} arrived",
            got.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            got.push(m.expect("a record").detach());
        }
    }
    got
}
