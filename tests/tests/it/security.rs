//! Security end to end: TLS, mTLS and SASL (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER) between
//! clients and the gateway, gateway-managed and delegated; the gateway's own TLS, mTLS and SASL
//! towards brokers; service accounts, groups and ACLs through the admin API. Clients are
//! librdkafka (the `rdkafka` crate) with its usual settings (`security.protocol`,
//! `sasl.mechanism`, `ssl.ca.location`, ...), plus raw kafka-protocol frames where a client
//! must misbehave.
//!
//! Brokers: tansu (plaintext) wherever the broker's side is not under test. tansu 0.6.0 has no
//! TLS listener and cannot authenticate with the storage engines it is packaged with (see
//! `tansu_offers_no_tls_and_no_sasl`), so every secured upstream is the mock broker of
//! `sluice_tests::mock`, which demands TLS / a client certificate / SASL before it serves and
//! records who authenticated.
//!
//! Wrong credentials must fail fast with an authentication error: clients use short socket and
//! message timeouts and the tests wait for librdkafka's error callback, never for a timeout.
//!
//! librdkafka calls that block run inside `block_in_place`; every client is dropped before the
//! gateway shuts down.

use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice::config::{ClientAuth, Config, SaslMode, SecurityProtocol, UpstreamSasl, UpstreamTls};
use sluice_tests::jwt::{JwtIssuer, ISSUER};
use sluice_tests::mock::{MockBroker, MockOptions, MockSasl, MockSecurity};
use sluice_tests::pki::pki;
use sluice_tests::*;
use std::time::{Duration, Instant};

/// Upper bound for one blocking librdkafka call.
const CALL: Duration = Duration::from_secs(15);
/// How long a client may take to report an authentication failure. librdkafka reports it on
/// the first connection attempt; this only bounds a slow machine.
const FAIL_FAST: Duration = Duration::from_secs(10);
/// Kafka's principal-mapping rule that keeps the CN of a certificate subject.
const CN_RULE: &str = "RULE:^CN=(.*?),.*$/$1/,DEFAULT";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

/// Closes a librdkafka client (its close talks to the brokers, so it blocks).
fn close<T: Send>(client: T) {
    blocking(move || drop(client));
}

async fn tansu() -> Tansu {
    capture_logs();
    within(Duration::from_secs(30), "tansu start", Tansu::start())
        .await
        .expect("starting tansu")
}

async fn gateway(config: Config) -> sluice::Gateway {
    within(
        Duration::from_secs(30),
        "gateway start",
        start_gateway_with(config),
    )
    .await
    .expect("starting the gateway")
}

async fn stop(gw: sluice::Gateway) {
    within(Duration::from_secs(20), "gateway shutdown", gw.shutdown()).await;
}

/// A gateway configuration in front of `bootstrap` with this client-facing security.
fn secured_config(
    bootstrap: &str,
    protocol: SecurityProtocol,
    tls: Option<sluice::config::ServerTls>,
    sasl: Option<sluice::config::SaslServerConfig>,
) -> Config {
    let mut c = gateway_config(bootstrap);
    c.security.protocol = protocol;
    c.security.tls = tls;
    c.security.sasl = sasl;
    c
}

/// Sends ApiVersions over TLS with rustls (which, unlike OpenSSL, presents its certificate
/// whatever CA names the server hints) and returns the raw response frame.
async fn tls_api_versions(
    addr: std::net::SocketAddr,
    client: std::sync::Arc<rustls::ClientConfig>,
) -> anyhow::Result<Vec<u8>> {
    use bytes::BufMut;
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(client)
        .connect(rustls_pki_types::ServerName::try_from("127.0.0.1")?, tcp)
        .await?;
    let header = RequestHeader::default()
        .with_request_api_key(18)
        .with_request_api_version(0)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("raw-tls")));
    let body = ApiVersionsRequest::default();
    let size = header.compute_size(1)? + body.compute_size(0)?;
    let mut frame = bytes::BytesMut::new();
    frame.put_i32(size as i32);
    header.encode(&mut frame, 1)?;
    body.encode(&mut frame, 0)?;
    tls.write_all(&frame).await?;
    tls.flush().await?;
    let n = tls.read_i32().await?;
    let mut response = vec![0u8; usize::try_from(n)?];
    tls.read_exact(&mut response).await?;
    Ok(response)
}

fn consumer(
    bootstrap: &str,
    group: &str,
    security: &ClientSecurity,
    ctx: RecordingContext,
) -> StreamConsumer<RecordingContext> {
    let mut c = consumer_config(bootstrap, group);
    security.apply(&mut c);
    fast(&mut c);
    c.create_with_context(ctx).expect("consumer")
}

fn admin_client(bootstrap: &str, security: &ClientSecurity) -> AdminClient<RecordingContext> {
    let mut c = secure_client_config(bootstrap, security);
    fast(&mut c);
    c.create_with_context(RecordingContext::default())
        .expect("admin client")
}

fn admin_opts() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(10)))
        .operation_timeout(Some(Duration::from_secs(10)))
}

/// Produces `n` records to partition 0 of `topic`; the first failure is returned.
async fn produce_n(
    p: &FutureProducer<RecordingContext>,
    topic: &str,
    n: usize,
) -> Result<(), KafkaError> {
    for i in 0..n {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .partition(0);
        within(
            Duration::from_secs(30),
            "delivery report",
            p.send(record, Duration::from_secs(0)),
        )
        .await
        .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Reads `n` records from partition 0 of `topic` from the beginning (no group join); the
/// first consumer error is returned.
async fn consume_n(
    c: &StreamConsumer<RecordingContext>,
    topic: &str,
    n: usize,
) -> Result<Vec<(String, String)>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    while got.len() < n {
        let m = within(Duration::from_secs(30), "consuming", c.recv()).await?;
        got.push((
            String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        ));
    }
    Ok(got)
}

/// Produces `n` records and reads them back through `bootstrap`, with `security` on both
/// clients.
async fn round_trip(bootstrap: &str, security: &ClientSecurity, topic: &str, n: usize) {
    let ctx = RecordingContext::default();
    let p = secure_producer(bootstrap, security, ctx.clone());
    produce_n(&p, topic, n)
        .await
        .unwrap_or_else(|e| panic!("producing to {topic}: {e} (client errors: {ctx:?})"));
    close(p);
    let ctx = RecordingContext::default();
    let c = consumer(bootstrap, &format!("{topic}-reader"), security, ctx.clone());
    let got = consume_n(&c, topic, n)
        .await
        .unwrap_or_else(|e| panic!("consuming {topic}: {e} (client errors: {ctx:?})"));
    close(c);
    let want: Vec<_> = (0..n)
        .map(|i| (format!("key-{i}"), format!("value-{i}")))
        .collect();
    assert_eq!(got, want, "records read back through the gateway");
}

/// Asserts that a producer with `security` cannot deliver, and that librdkafka reports one of
/// `codes` promptly (not a timeout minutes later).
async fn assert_rejected(
    bootstrap: &str,
    security: &ClientSecurity,
    ctx: RecordingContext,
    codes: &[RDKafkaErrorCode],
    what: &str,
) -> (RDKafkaErrorCode, String) {
    let p = secure_producer(bootstrap, security, ctx.clone());
    let record = FutureRecord::to("security-rejected")
        .key("k")
        .payload("v")
        .partition(0);
    let delivery = p.send_result(record).expect("enqueueing");
    let seen = ctx.wait_for_error(codes, FAIL_FAST).await;
    let Some(seen) = seen else {
        panic!(
            "{what}: no {codes:?} within {FAIL_FAST:?}; client errors: {:?}",
            ctx.errors()
        );
    };
    // The record must not have been delivered; purge it rather than wait out its timeout.
    p.purge(PurgeConfig::default().queue().inflight());
    let outcome = within(Duration::from_secs(30), "delivery report", delivery).await;
    assert!(
        !matches!(outcome, Ok(Ok(_))),
        "{what}: a record was delivered despite the rejection"
    );
    close(p);
    seen
}

/// The error code of a `KafkaError` (panics on a success-shaped error).
fn code(e: &KafkaError) -> RDKafkaErrorCode {
    e.rdkafka_error_code()
        .unwrap_or_else(|| panic!("error without a code: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The test fixtures themselves: PKI, JWTs, the mock broker's security, tansu's limits
// ---------------------------------------------------------------------------------------------

#[test]
fn jwt_tokens_verify_only_when_they_should() {
    use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};
    let idp = JwtIssuer::new("kid-1");
    let jwks: JwkSet = serde_json::from_str(&idp.jwks_json()).expect("JWKS parses");
    let check = |token: &str| {
        let header = decode_header(token).expect("header");
        let jwk = jwks
            .find(header.kid.as_deref().expect("kid"))
            .expect("kid known");
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[sluice_tests::jwt::AUDIENCE]);
        v.leeway = 5;
        decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
    };
    let good = idp.mint(&idp.claims("alice", 300));
    assert_eq!(check(&good).expect("valid token").claims["sub"], "alice");
    assert!(sluice_tests::jwt::expiry_of(&good).unwrap() > sluice_tests::jwt::now_secs());

    let expired = idp.mint(&idp.claims("alice", -600));
    assert!(check(&expired).is_err(), "expired token accepted");

    let mut wrong_iss = idp.claims("alice", 300);
    wrong_iss["iss"] = "https://elsewhere.invalid/".into();
    assert!(
        check(&idp.mint(&wrong_iss)).is_err(),
        "wrong issuer accepted"
    );

    let mut wrong_aud = idp.claims("alice", 300);
    wrong_aud["aud"] = "someone-else".into();
    assert!(
        check(&idp.mint(&wrong_aud)).is_err(),
        "wrong audience accepted"
    );

    // Same kid, another key: the signature must not verify.
    let forger = JwtIssuer::new("kid-1");
    assert!(
        check(&forger.mint(&idp.claims("alice", 300))).is_err(),
        "token signed by another key accepted"
    );
}

#[test]
fn pki_writes_pem_files_with_the_expected_subjects() {
    let pki = pki();
    for f in [
        &pki.ca_file,
        &pki.server.cert_file,
        &pki.server.key_file,
        &pki.alice.cert_file,
        &pki.alice.key_file,
        &pki.rogue.cert_file,
        &pki.rogue_ca_file,
    ] {
        let text = std::fs::read_to_string(f).expect("PEM file written");
        assert!(text.starts_with("-----BEGIN "), "{} is PEM", f.display());
    }
    assert_eq!(pki.alice.subject, "CN=alice,OU=apps,O=acme");
    assert_eq!(pki.bob.subject, "CN=bob,OU=apps,O=acme");
    // Building both rustls configurations checks that keys and certificates match.
    let _ = pki.server_config(true);
    let _ = pki.client_config(Some(&pki.alice));
}

/// The mock broker demands TLS and SCRAM before serving, and librdkafka's settings used by the
/// gateway tests (CA file, IP SAN verification, SCRAM) work against it directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_broker_with_tls_and_scram_serves_only_authenticated_clients() {
    capture_logs();
    let mock = MockBroker::start(MockOptions {
        security: MockSecurity {
            tls: Some(pki().server_config(false)),
            sasl: Some(MockSasl::new(
                &["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"],
                "alice",
                "alice-secret",
            )),
        },
        ..MockOptions::default()
    })
    .await
    .unwrap();
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let sec = ClientSecurity::sasl(true, mechanism, "alice", "alice-secret");
        let ctx = RecordingContext::default();
        let p = secure_producer(&mock.bootstrap(), &sec, ctx.clone());
        produce_n(&p, "direct", 3)
            .await
            .unwrap_or_else(|e| panic!("{mechanism}: {e} ({ctx:?})"));
        close(p);
        let sec = ClientSecurity::sasl(true, mechanism, "alice", "wrong");
        let (code, reason) = assert_rejected(
            &mock.bootstrap(),
            &sec,
            RecordingContext::default(),
            &[RDKafkaErrorCode::Authentication],
            mechanism,
        )
        .await;
        assert_eq!(code, RDKafkaErrorCode::Authentication, "{reason}");
    }
    let auths = mock.authentications();
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        assert!(
            auths
                .iter()
                .any(|a| a.mechanism.as_deref() == Some(mechanism)
                    && a.principal.as_deref() == Some("alice")),
            "{mechanism} authentication recorded: {auths:?}"
        );
    }
    assert!(mock.auth_failures() >= 3);
    assert_eq!(mock.unauthenticated_requests(), 0);
    capture_logs().assert_absent(&["wrong-upstream-password"]);
}

/// mTLS on the mock: a certificate from the test CA is served and recorded, one from an
/// unknown CA fails the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_broker_with_mtls_rejects_unknown_ca() {
    capture_logs();
    let pki = pki();
    let mock = MockBroker::start(MockOptions {
        security: MockSecurity {
            tls: Some(pki.server_config(true)),
            sasl: None,
        },
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let ctx = RecordingContext::default();
    let p = secure_producer(
        &mock.bootstrap(),
        &ClientSecurity::mtls(&pki.alice),
        ctx.clone(),
    );
    produce_n(&p, "direct", 2)
        .await
        .unwrap_or_else(|e| panic!("mTLS produce: {e} ({ctx:?})"));
    close(p);
    assert!(mock
        .authentications()
        .iter()
        .any(|a| a.client_cert.as_ref() == Some(&pki.alice.cert_der)));

    let (code, reason) = assert_rejected(
        &mock.bootstrap(),
        &ClientSecurity::mtls(&pki.rogue),
        RecordingContext::default(),
        &[
            RDKafkaErrorCode::SSL,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
        ],
        "unknown-CA client certificate",
    )
    .await;
    eprintln!("unknown CA rejected: {code:?} {reason}");
    assert!(reason.contains("unknown ca"), "{reason}");
    assert!(mock.tls_failures() >= 1);
}

/// A canary for the test broker's limits. If a newer tansu grows a TLS listener or SASL with
/// memory storage, this fails: move the upstream tests from the mock broker to tansu then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_offers_no_tls_and_no_sasl() {
    capture_logs();
    let pki = pki();
    let cert = pki.server.cert_file.to_string_lossy().into_owned();
    // `--cert` is accepted, but the listener stays plaintext Kafka: ApiVersions answers in the
    // clear (readiness) and a TLS handshake gets no ServerHello.
    let broker = within(
        Duration::from_secs(30),
        "tansu start",
        Tansu::start_with_args("memory://tansu/", &["--cert", &cert]),
    )
    .await
    .expect("tansu with --cert starts (plaintext)");
    let tcp = tokio::net::TcpStream::connect(broker.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(pki.client_config(None));
    let handshake = tokio::time::timeout(
        Duration::from_secs(2),
        connector.connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        ),
    )
    .await;
    assert!(
        !matches!(handshake, Ok(Ok(_))),
        "tansu completed a TLS handshake: use it for upstream TLS tests"
    );
    // Without `--authentication` SASL is refused; with it, users cannot be stored.
    let mut raw = RawClient::connect(broker.addr).await.unwrap();
    let hs = raw
        .call(
            &kafka_protocol::messages::SaslHandshakeRequest::default().with_mechanism(
                kafka_protocol::protocol::StrBytes::from_static_str("SCRAM-SHA-256"),
            ),
            1,
        )
        .await
        .expect("SaslHandshake answered");
    assert_eq!(hs.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
}

// ---------------------------------------------------------------------------------------------
// Clients → gateway: TLS and mTLS
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_produce_and_consume_through_the_gateway() {
    let broker = tansu().await;
    let gw = gateway(secured_config(
        &broker.bootstrap(),
        SecurityProtocol::Ssl,
        Some(server_tls(ClientAuth::None, None)),
        None,
    ))
    .await;
    let bootstrap = gw.kafka_addr().to_string();
    round_trip(&bootstrap, &ClientSecurity::tls(), "tls-orders", 20).await;

    // A plaintext client on the TLS port gets nowhere.
    let ctx = RecordingContext::default();
    assert_rejected(
        &bootstrap,
        &ClientSecurity::default(),
        ctx,
        &[
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
        ],
        "plaintext client on a TLS listener",
    )
    .await;
    stop(gw).await;
}

/// A renewed server certificate is taken without a restart: the gateway starts with a
/// certificate from one CA; its files are then replaced by a certificate from another CA, and
/// new handshakes present the new one (a client trusting only the new CA gets in, one
/// trusting only the old CA no longer does). A broken renewal keeps the last good pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_server_certificate_is_taken_without_restart() {
    let logs = capture_logs();
    let broker = tansu().await;
    let old = pki();
    let new = sluice_tests::pki::Pki::generate(&temp_dir("renewed-pki"));
    let live = temp_dir("live-cert");
    let (cert_file, key_file) = (live.join("server.pem"), live.join("server.key"));
    let install = |from: &sluice_tests::pki::Identity| {
        std::fs::copy(&from.cert_file, &cert_file).expect("copy certificate");
        std::fs::copy(&from.key_file, &key_file).expect("copy key");
    };
    install(&old.server);
    let mut tls = server_tls(ClientAuth::None, None);
    tls.cert_file = cert_file.clone();
    tls.key_file = key_file.clone();
    let config = secured_config(&broker.bootstrap(), SecurityProtocol::Ssl, Some(tls), None);
    let gw = gateway(config).await;
    let addr = gw.kafka_addr();
    let handshake = |pki: &sluice_tests::pki::Pki| {
        let client = pki.client_config(None);
        async move {
            within(
                Duration::from_secs(10),
                "TLS ApiVersions",
                tls_api_versions(addr, client),
            )
            .await
        }
    };
    handshake(old)
        .await
        .expect("the first certificate is served");
    assert!(
        handshake(&new).await.is_err(),
        "the new CA is not trusted yet"
    );

    // A renewal caught half-way (new certificate, old key) is refused: the old pair stays,
    // through handshakes until the gateway has looked at the files and said so.
    std::fs::copy(&new.server.cert_file, &cert_file).expect("copy certificate");
    let refused = |logs: &LogCapture| {
        logs.contents()
            .lines()
            .any(|l| l.contains("TLS certificate not reloaded") && l.contains("live-cert"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !refused(logs) {
        handshake(old)
            .await
            .expect("a mismatched pair is not taken");
        assert!(
            std::time::Instant::now() < deadline,
            "the half-renewed pair was never looked at"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    handshake(old)
        .await
        .expect("a mismatched pair is not taken");
    std::fs::copy(&new.server.key_file, &key_file).expect("copy key");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if handshake(&new).await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was not taken"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        handshake(old).await.is_err(),
        "the old certificate is still served"
    );
    stop(gw).await;
}

/// A rotated client CA bundle (`clientCaFile`) is taken without a restart: certificates from
/// the new CA get in once the file changes, certificates from the old CA no longer do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_client_ca_bundle_is_taken_without_restart() {
    let broker = tansu().await;
    let old = pki();
    let new = sluice_tests::pki::Pki::generate(&temp_dir("rotated-ca"));
    let live = temp_dir("live-ca").join("clients.pem");
    std::fs::create_dir_all(live.parent().unwrap()).unwrap();
    std::fs::copy(&old.ca_file, &live).expect("copy CA bundle");
    let mut tls = server_tls(ClientAuth::Required, Some(CN_RULE));
    tls.client_ca_file = Some(live.clone());
    let gw = gateway(secured_config(
        &broker.bootstrap(),
        SecurityProtocol::Ssl,
        Some(tls),
        None,
    ))
    .await;
    let addr = gw.kafka_addr();
    // Clients trust the gateway's certificate (old CA) and present alice's from either CA.
    let attempt = |who: &sluice_tests::pki::Identity| {
        let client = old.client_config(Some(who));
        async move {
            within(
                Duration::from_secs(10),
                "TLS ApiVersions",
                tls_api_versions(addr, client),
            )
            .await
        }
    };
    attempt(&old.alice)
        .await
        .expect("the old CA's client gets in");
    assert!(
        attempt(&new.alice).await.is_err(),
        "the new CA is not trusted yet"
    );

    // A broken bundle is refused and the last good one kept, through handshakes until the
    // gateway has looked at the file and said so.
    std::fs::write(&live, "not a certificate").unwrap();
    let refused = || {
        capture_logs()
            .contents()
            .lines()
            .any(|l| l.contains("client CA bundle not reloaded") && l.contains("live-ca"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !refused() {
        attempt(&old.alice)
            .await
            .expect("the last good bundle stays");
        assert!(
            std::time::Instant::now() < deadline,
            "the broken bundle was never looked at"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    attempt(&old.alice)
        .await
        .expect("the last good bundle stays");

    std::fs::copy(&new.ca_file, &live).expect("rotate the CA bundle");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while attempt(&new.alice).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated CA bundle was not taken"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        attempt(&old.alice).await.is_err(),
        "the old CA is still trusted"
    );
    stop(gw).await;
}

/// mTLS with principal mapping: alice's certificate maps to `alice` (by the CN rule), which an
/// ACL lets produce; bob's valid certificate maps to `bob`, who is denied; a certificate from
/// an unknown CA does not get past the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_principal_from_certificate_and_unknown_ca_rejected() {
    let broker = tansu().await;
    let mut config = secured_config(
        &broker.bootstrap(),
        SecurityProtocol::Ssl,
        Some(server_tls(ClientAuth::Required, Some(CN_RULE))),
        None,
    );
    config.authorization.enabled = true;
    let gw = gateway(config).await;
    let admin = gw.admin_addr();
    put_acl(
        admin,
        "alice-mtls",
        serde_json::json!({
            "principal": "alice", "resourceType": "topic", "patternType": "literal",
            "name": "mtls-orders", "operations": ["write", "describe", "create"],
            "permission": "allow"
        }),
    )
    .await;
    let bootstrap = gw.kafka_addr().to_string();
    let pki = pki();

    let ctx = RecordingContext::default();
    let p = secure_producer(&bootstrap, &ClientSecurity::mtls(&pki.alice), ctx.clone());
    produce_n(&p, "mtls-orders", 5)
        .await
        .unwrap_or_else(|e| panic!("alice over mTLS: {e} ({ctx:?})"));
    close(p);

    let p = secure_producer(
        &bootstrap,
        &ClientSecurity::mtls(&pki.bob),
        RecordingContext::default(),
    );
    let err = produce_n(&p, "mtls-orders", 1)
        .await
        .expect_err("bob is not allowed to write");
    assert_eq!(
        code(&err),
        RDKafkaErrorCode::TopicAuthorizationFailed,
        "{err}"
    );
    close(p);

    let (code, reason) = assert_rejected(
        &bootstrap,
        &ClientSecurity::mtls(&pki.rogue),
        RecordingContext::default(),
        &[
            RDKafkaErrorCode::SSL,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
        ],
        "client certificate from an unknown CA",
    )
    .await;
    // A TLS alert: `unknown ca`, or `certificate required` when the gateway hints its CA
    // names and the client therefore withholds a certificate from another CA.
    eprintln!("unknown CA rejected: {code:?} {reason}");
    assert!(reason.contains("alert"), "{code:?} {reason}");
    // A client that does present the unknown CA's certificate is refused too; the same
    // exchange with alice's certificate is answered.
    let addr = gw.kafka_addr();
    let answered = within(
        Duration::from_secs(10),
        "TLS ApiVersions with alice's certificate",
        tls_api_versions(addr, pki.client_config(Some(&pki.alice))),
    )
    .await;
    assert!(answered.is_ok(), "alice's certificate: {answered:?}");
    let refused = within(
        Duration::from_secs(10),
        "TLS ApiVersions with the rogue certificate",
        tls_api_versions(addr, pki.client_config(Some(&pki.rogue))),
    )
    .await;
    assert!(
        refused.is_err(),
        "a certificate from an unknown CA was served"
    );
    // And no certificate at all.
    assert_rejected(
        &bootstrap,
        &ClientSecurity::tls(),
        RecordingContext::default(),
        &[
            RDKafkaErrorCode::SSL,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
        ],
        "no client certificate under clientAuth: required",
    )
    .await;
    stop(gw).await;
}

// ---------------------------------------------------------------------------------------------
// Clients → gateway: SASL, gateway-managed
// ---------------------------------------------------------------------------------------------

const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Every password mechanism, right and wrong password, over `protocol`.
async fn sasl_mechanisms(protocol: SecurityProtocol) {
    let broker = tansu().await;
    let tls = protocol.tls();
    let gw = gateway(secured_config(
        &broker.bootstrap(),
        protocol,
        tls.then(|| server_tls(ClientAuth::None, None)),
        Some(server_sasl(&MECHANISMS, SaslMode::GatewayManaged)),
    ))
    .await;
    let admin = gw.admin_addr();
    put_service_account(admin, "alice", "alice-pass-1", &[]).await;
    let bootstrap = gw.kafka_addr().to_string();
    for mechanism in MECHANISMS {
        let topic = format!("sasl-{}-{}", tls, mechanism.to_lowercase());
        round_trip(
            &bootstrap,
            &ClientSecurity::sasl(tls, mechanism, "alice", "alice-pass-1"),
            &topic,
            5,
        )
        .await;
        for (user, password) in [("alice", "wrong-pass"), ("nobody", "alice-pass-1")] {
            let (code, reason) = assert_rejected(
                &bootstrap,
                &ClientSecurity::sasl(tls, mechanism, user, password),
                RecordingContext::default(),
                &[RDKafkaErrorCode::Authentication],
                &format!("{mechanism} as {user} with a wrong password"),
            )
            .await;
            assert!(
                !reason.contains(password),
                "the error names the password: {reason}"
            );
            assert_eq!(code, RDKafkaErrorCode::Authentication);
        }
    }
    // A mechanism the listener does not enable is refused at the handshake.
    assert_rejected(
        &bootstrap,
        &ClientSecurity::oauthbearer(tls),
        RecordingContext::with_token("not-a-jwt".into(), "alice"),
        &[RDKafkaErrorCode::Authentication],
        "OAUTHBEARER not enabled",
    )
    .await;
    // The password never shows in the gateway's metrics or its configuration's Debug form.
    assert!(!gw.metrics_text().contains("alice-pass-1"));
    capture_logs().assert_absent(&["alice-pass-1", "wrong-pass"]);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_plain_and_scram_right_and_wrong_password() {
    sasl_mechanisms(SecurityProtocol::SaslSsl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plaintext_plain_and_scram_right_and_wrong_password() {
    sasl_mechanisms(SecurityProtocol::SaslPlaintext).await;
}

/// A password changed over the admin API applies to new connections at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_password_change_applies_to_new_connections() {
    let broker = tansu().await;
    let gw = gateway(secured_config(
        &broker.bootstrap(),
        SecurityProtocol::SaslPlaintext,
        None,
        Some(server_sasl(&["SCRAM-SHA-256"], SaslMode::GatewayManaged)),
    ))
    .await;
    let admin = gw.admin_addr();
    let bootstrap = gw.kafka_addr().to_string();
    put_service_account(admin, "carol", "first-password", &[]).await;
    round_trip(
        &bootstrap,
        &ClientSecurity::sasl(false, "SCRAM-SHA-256", "carol", "first-password"),
        "rotate-1",
        2,
    )
    .await;
    put_service_account(admin, "carol", "second-password", &[]).await;
    assert_rejected(
        &bootstrap,
        &ClientSecurity::sasl(false, "SCRAM-SHA-256", "carol", "first-password"),
        RecordingContext::default(),
        &[RDKafkaErrorCode::Authentication],
        "old password after rotation",
    )
    .await;
    round_trip(
        &bootstrap,
        &ClientSecurity::sasl(false, "SCRAM-SHA-256", "carol", "second-password"),
        "rotate-2",
        2,
    )
    .await;
    // The admin API never returns the password or its derived keys.
    let (status, body) = http(admin, "GET", "/api/v1/service-accounts/carol", &[], b"").await;
    assert_eq!(status, 200, "{body}");
    let text = body.to_string();
    assert!(!text.contains("second-password") && !text.contains("first-password"));
    capture_logs().assert_absent(&["first-password", "second-password"]);
    stop(gw).await;
}

/// Before authenticating, a client may send ApiVersions and SASL only; a Metadata request gets
/// the connection closed, and so does a failed authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_authentication_close_the_connection() {
    let broker = tansu().await;
    let gw = gateway(secured_config(
        &broker.bootstrap(),
        SecurityProtocol::SaslPlaintext,
        None,
        Some(server_sasl(&["PLAIN"], SaslMode::GatewayManaged)),
    ))
    .await;
    put_service_account(gw.admin_addr(), "alice", "alice-pass-1", &[]).await;
    let addr = gw.kafka_addr();

    let mut raw = RawClient::connect(addr).await.unwrap();
    let versions = raw
        .call(&ApiVersionsRequest::default(), 3)
        .await
        .expect("ApiVersions is answered before authentication");
    assert_eq!(versions.error_code, 0);
    let (_, frame) = raw.encode(&MetadataRequest::default().with_topics(None), 9);
    raw.send_raw(&frame).await.unwrap();
    assert!(
        raw.closed_within(Duration::from_secs(5)).await,
        "Metadata before authentication must close the connection"
    );

    let mut raw = RawClient::connect(addr).await.unwrap();
    let (_, frame) = raw.encode(&MetadataRequest::default().with_topics(None), 9);
    raw.send_raw(&frame).await.unwrap();
    assert!(
        raw.closed_within(Duration::from_secs(5)).await,
        "Metadata as the very first request must close the connection"
    );

    let mut raw = RawClient::connect(addr).await.unwrap();
    let code = raw.sasl_plain("alice", "wrong").await.expect("answered");
    assert_eq!(code, 58, "SASL_AUTHENTICATION_FAILED");
    assert!(
        raw.closed_within(Duration::from_secs(5)).await,
        "a failed authentication closes the connection"
    );

    let mut raw = RawClient::connect(addr).await.unwrap();
    assert_eq!(raw.sasl_plain("alice", "alice-pass-1").await.unwrap(), 0);
    let md = raw
        .call(&MetadataRequest::default().with_topics(None), 9)
        .await
        .expect("Metadata after authentication");
    assert!(!md.brokers.is_empty());
    drop(raw);
    capture_logs().assert_absent(&["alice-pass-1"]);
    stop(gw).await;
}

// ---------------------------------------------------------------------------------------------
// Clients → gateway: OAUTHBEARER
// ---------------------------------------------------------------------------------------------

/// The gateway's own SASL credentials towards the broker.
fn upstream_sasl(mechanism: &str, username: &str, password: &str) -> UpstreamSasl {
    UpstreamSasl {
        mechanism: mechanism.into(),
        username: username.into(),
        password: sluice::config::Secret::new(password),
    }
}

/// A gateway with SASL_SSL and OAUTHBEARER checked against `idp`'s keys, in front of `broker`.
async fn oauth_gateway(broker: &Tansu, idp: &JwtIssuer) -> sluice::Gateway {
    let mut sasl = server_sasl(&["OAUTHBEARER"], SaslMode::GatewayManaged);
    sasl.oauthbearer = Some(server_oauth(idp));
    gateway(secured_config(
        &broker.bootstrap(),
        SecurityProtocol::SaslSsl,
        Some(server_tls(ClientAuth::None, None)),
        Some(sasl),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_valid_expired_and_forged_tokens() {
    let broker = tansu().await;
    let idp = JwtIssuer::new("idp-key-1");
    let gw = oauth_gateway(&broker, &idp).await;
    let bootstrap = gw.kafka_addr().to_string();
    let sec = ClientSecurity::oauthbearer(true);

    let good = idp.mint(&idp.claims("svc-orders", 300));
    let good_copy = good.clone();
    let ctx = RecordingContext::with_token(good, "svc-orders");
    let p = secure_producer(&bootstrap, &sec, ctx.clone());
    produce_n(&p, "oauth-orders", 5)
        .await
        .unwrap_or_else(|e| panic!("valid token: {e} ({ctx:?})"));
    close(p);

    let forger = JwtIssuer::new("idp-key-1");
    let mut wrong_iss = idp.claims("svc-orders", 300);
    wrong_iss["iss"] = "https://elsewhere.invalid/".into();
    let mut wrong_aud = idp.claims("svc-orders", 300);
    wrong_aud["aud"] = "another-service".into();
    let cases = [
        ("expired", idp.mint(&idp.claims("svc-orders", -600))),
        (
            "signed by another key",
            forger.mint(&idp.claims("svc-orders", 300)),
        ),
        ("wrong issuer", idp.mint(&wrong_iss)),
        ("wrong audience", idp.mint(&wrong_aud)),
        ("not a JWT", "garbage".to_string()),
    ];
    let mut tokens: Vec<String> = vec![good_copy];
    for (what, token) in cases {
        if token.contains('.') {
            tokens.push(token.clone());
        }
        let (_, reason) = assert_rejected(
            &bootstrap,
            &sec,
            RecordingContext::with_token(token.clone(), "svc-orders"),
            &[RDKafkaErrorCode::Authentication],
            &format!("OAUTHBEARER token {what}"),
        )
        .await;
        assert!(!reason.contains(&token), "the error echoes the token");
    }
    // Whole tokens are bearer secrets: none may be logged.
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    capture_logs().assert_absent(&tokens);
    stop(gw).await;
}

/// Serves `jwks` (read at each request, so a test can rotate it) to every GET on a local
/// HTTP port, as an identity provider's JWKS endpoint; returns the URL and a request counter.
async fn serve_jwks(
    jwks: std::sync::Arc<std::sync::Mutex<String>>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the JWKS server");
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let jwks = jwks.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // The request head ends with an empty line; its content does not matter.
                loop {
                    line.clear();
                    match reader.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = jwks.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let mut stream = reader.into_inner();
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_jwks_url_follows_key_rotation() {
    let broker = tansu().await;
    let key1 = JwtIssuer::new("rotating-key-1");
    let key2 = JwtIssuer::new("rotating-key-2");
    let served = std::sync::Arc::new(std::sync::Mutex::new(key1.jwks_json()));
    let (url, hits) = serve_jwks(served.clone()).await;

    let mut oauth = server_oauth(&key1);
    oauth.jwks = None;
    oauth.jwks_url = Some(url);
    // No periodic refresh within the test: only the unknown key id can fetch key 2.
    oauth.jwks_refresh_ms = 3_600_000;
    let mut sasl = server_sasl(&["OAUTHBEARER"], SaslMode::GatewayManaged);
    sasl.oauthbearer = Some(oauth);
    let gw = gateway(secured_config(
        &broker.bootstrap(),
        SecurityProtocol::SaslPlaintext,
        None,
        Some(sasl),
    ))
    .await;
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the JWKS is fetched at start"
    );
    let bootstrap = gw.kafka_addr().to_string();
    let sec = ClientSecurity::oauthbearer(false);

    let token1 = key1.mint(&key1.claims("svc-rotating", 300));
    let ctx = RecordingContext::with_token(token1, "svc-rotating");
    let p = secure_producer(&bootstrap, &sec, ctx.clone());
    produce_n(&p, "oauth-rotating", 2)
        .await
        .unwrap_or_else(|e| panic!("token of key 1: {e} ({ctx:?})"));
    close(p);

    // The identity provider rotates to key 2. The gateway still has key 1 only: the first
    // token of key 2 is refused, and its unknown key id makes the gateway fetch the JWKS
    // again; a retry is then accepted.
    *served.lock().unwrap() = key2.jwks_json();
    let token2 = key2.mint(&key2.claims("svc-rotating", 300));
    let mut attempts = Vec::new();
    let accepted = loop {
        let ctx = RecordingContext::with_token(token2.clone(), "svc-rotating");
        let p = secure_producer(&bootstrap, &sec, ctx.clone());
        let outcome = produce_n(&p, "oauth-rotating", 1).await;
        close(p);
        match outcome {
            Ok(()) => break true,
            Err(e) => attempts.push(format!("{e} ({:?})", ctx.errors())),
        }
        if attempts.len() == 5 {
            break false;
        }
    };
    assert!(accepted, "token of key 2 never accepted: {attempts:?}");
    assert!(
        hits.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the JWKS was fetched again"
    );
    let logs = capture_logs().contents();
    assert!(
        logs.lines()
            .any(|l| l.contains("OAUTHBEARER JWKS refreshed")
                && l.contains("rotating-key-2")
                && l.contains("on_demand=true")),
        "no refresh triggered by the unknown key id was logged"
    );
    capture_logs().assert_absent(&[&token2]);
    stop(gw).await;
}

// ---------------------------------------------------------------------------------------------
// ACLs
// ---------------------------------------------------------------------------------------------

/// A gateway with SASL/PLAIN, ACLs on, super user `root`, and accounts:
/// - `alice` (group `writers`): write/describe/create topics prefixed `acl-orders`;
/// - `bob`: describe (not read) on `acl-orders`; read on `acl-public` and group `bob-ok`;
/// - `carol`: nothing at all.
struct AclEnv {
    _broker: Tansu,
    gw: sluice::Gateway,
}

const ACL_PASSWORD: &str = "acl-test-password";

impl AclEnv {
    async fn start() -> AclEnv {
        let broker = tansu().await;
        let mut config = secured_config(
            &broker.bootstrap(),
            SecurityProtocol::SaslPlaintext,
            None,
            Some(server_sasl(&["PLAIN"], SaslMode::GatewayManaged)),
        );
        config.authorization.enabled = true;
        config.authorization.super_users = vec!["root".into()];
        let gw = gateway(config).await;
        let admin = gw.admin_addr();
        for user in ["root", "alice", "bob", "carol"] {
            put_service_account(admin, user, ACL_PASSWORD, &[]).await;
        }
        put_group(admin, "writers", &["alice"]).await;
        put_acl(
            admin,
            "writers-orders",
            serde_json::json!({
                "group": "writers", "resourceType": "topic", "patternType": "prefixed",
                "name": "acl-orders", "operations": ["write", "describe", "create"],
                "permission": "allow"
            }),
        )
        .await;
        put_acl(
            admin,
            "bob-describe-orders",
            serde_json::json!({
                "principal": "bob", "resourceType": "topic", "patternType": "prefixed",
                "name": "acl-orders", "operations": ["describe"], "permission": "allow"
            }),
        )
        .await;
        put_acl(
            admin,
            "bob-read-public",
            serde_json::json!({
                "principal": "bob", "resourceType": "topic", "patternType": "literal",
                "name": "acl-public", "operations": ["read", "describe"], "permission": "allow"
            }),
        )
        .await;
        put_acl(
            admin,
            "bob-group",
            serde_json::json!({
                "principal": "bob", "resourceType": "group", "patternType": "literal",
                "name": "bob-ok", "operations": ["read"], "permission": "allow"
            }),
        )
        .await;
        AclEnv {
            _broker: broker,
            gw,
        }
    }

    fn bootstrap(&self) -> String {
        self.gw.kafka_addr().to_string()
    }

    fn as_user(user: &str) -> ClientSecurity {
        ClientSecurity::sasl(false, "PLAIN", user, ACL_PASSWORD)
    }

    /// Creates topics as the super user.
    async fn create_topics(&self, names: &[&str]) {
        let admin = admin_client(&self.bootstrap(), &Self::as_user("root"));
        let topics: Vec<_> = names
            .iter()
            .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1)))
            .collect();
        let results = within(
            Duration::from_secs(20),
            "create_topics",
            admin.create_topics(&topics, &admin_opts()),
        )
        .await
        .expect("create_topics request");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("root creating {t}: {e:?}"));
        }
        close(admin);
    }

    async fn stop(self) {
        capture_logs().assert_absent(&[ACL_PASSWORD]);
        stop(self.gw).await;
    }
}

/// An acks=0 Produce naming a denied topic: as Kafka does, the allowed topics are written and
/// the connection is then closed (the producer's only way to learn of the failure); an acks=0
/// Produce to allowed topics only keeps the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_acks_zero_produce_to_a_denied_topic_closes_the_connection() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let env = AclEnv::start().await;
    env.create_topics(&["acl-orders-eu", "acl-public"]).await;
    let produce = |topics: &[&str]| {
        ProduceRequest::default()
            .with_acks(0)
            .with_timeout_ms(5_000)
            .with_topic_data(
                topics
                    .iter()
                    .map(|t| {
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partition_data(vec![PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(record_batch(t)))])
                    })
                    .collect(),
            )
    };
    let alice = || async {
        let mut raw = RawClient::connect(env.gw.kafka_addr()).await.unwrap();
        let code = within(
            Duration::from_secs(10),
            "SASL/PLAIN",
            raw.sasl_plain("alice", ACL_PASSWORD),
        )
        .await
        .unwrap();
        assert_eq!(code, 0, "alice authenticates");
        raw
    };
    let watermark = |topic: &str| {
        let c: StreamConsumer = client_config(&env._broker.bootstrap())
            .create()
            .expect("direct consumer");
        let (_, high) =
            blocking(|| c.fetch_watermarks(topic, 0, Duration::from_secs(10))).expect("watermarks");
        close(c);
        high
    };

    // Allowed topics only: written, the connection stays.
    let mut raw = alice().await;
    let (_, frame) = raw.encode(&produce(&["acl-orders-eu"]), 9);
    raw.send_raw(&frame).await.unwrap();
    let md = within(
        Duration::from_secs(10),
        "Metadata after acks=0",
        raw.call(&MetadataRequest::default().with_topics(Some(vec![])), 9),
    )
    .await
    .expect("the connection stays after an allowed acks=0 Produce");
    assert!(!md.brokers.is_empty());
    assert_eq!(watermark("acl-orders-eu"), 1);

    // One allowed and one denied topic: the allowed one is written, then the connection ends.
    let denied_before = metric(
        &env.gw,
        "sluice_authorization_denied_total{api=\"Produce\"}",
    );
    let (_, frame) = raw.encode(&produce(&["acl-orders-eu", "acl-public"]), 9);
    raw.send_raw(&frame).await.unwrap();
    assert!(
        raw.closed_within(Duration::from_secs(10)).await,
        "an acks=0 Produce to a denied topic must close the connection"
    );
    assert_eq!(
        watermark("acl-orders-eu"),
        2,
        "the allowed topic is written"
    );
    assert_eq!(watermark("acl-public"), 0, "the denied topic is not");
    assert_eq!(
        metric(
            &env.gw,
            "sluice_authorization_denied_total{api=\"Produce\"}"
        ),
        denied_before + 1
    );
    // Only a denied topic: nothing written, the connection ends too.
    let mut raw = alice().await;
    let (_, frame) = raw.encode(&produce(&["acl-public"]), 9);
    raw.send_raw(&frame).await.unwrap();
    assert!(raw.closed_within(Duration::from_secs(10)).await);
    assert_eq!(watermark("acl-public"), 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_produce_allowed_and_denied() {
    let env = AclEnv::start().await;
    let bootstrap = env.bootstrap();
    env.create_topics(&["acl-orders-eu", "acl-public"]).await;

    let ctx = RecordingContext::default();
    let p = secure_producer(&bootstrap, &AclEnv::as_user("alice"), ctx.clone());
    produce_n(&p, "acl-orders-eu", 3)
        .await
        .unwrap_or_else(|e| panic!("alice (via group writers) may write: {e} ({ctx:?})"));
    let err = produce_n(&p, "acl-public", 1)
        .await
        .expect_err("alice may not write acl-public");
    assert_eq!(
        code(&err),
        RDKafkaErrorCode::TopicAuthorizationFailed,
        "{err}"
    );
    close(p);

    for user in ["bob", "carol"] {
        let p = secure_producer(
            &bootstrap,
            &AclEnv::as_user(user),
            RecordingContext::default(),
        );
        let err = produce_n(&p, "acl-orders-eu", 1)
            .await
            .expect_err("no write permission");
        assert_eq!(
            code(&err),
            RDKafkaErrorCode::TopicAuthorizationFailed,
            "{user}: {err}"
        );
        close(p);
    }
    env.stop().await;
}

/// The same ACLs with kafka-python (SASL/PLAIN, its own request versions): alice writes
/// through her group's prefixed grant and is refused on another topic with
/// TOPIC_AUTHORIZATION_FAILED, bob is refused on both, and alice's listing shows only the
/// topics she may describe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_acl_denials() {
    const PY: Duration = Duration::from_secs(60);
    let env = AclEnv::start().await;
    let bootstrap = env.bootstrap();
    env.create_topics(&["acl-orders-eu", "acl-public"]).await;
    let alice = Some(("plain", "alice", ACL_PASSWORD));
    let bob = Some(("plain", "bob", ACL_PASSWORD));
    let produced = kafka_python(
        &bootstrap,
        alice,
        &[],
        &["produce", "acl-orders-eu", "2", "a"],
        PY,
    )
    .await
    .unwrap_or_else(|e| panic!("alice (via group writers) may write: {e}"));
    assert_eq!(produced["offsets"], serde_json::json!([0, 1]));
    for (who, sasl, topic) in [
        ("alice", alice, "acl-public"),
        ("bob", bob, "acl-orders-eu"),
        ("bob", bob, "acl-public"),
    ] {
        let err = kafka_python(&bootstrap, sasl, &[], &["produce", topic, "1", "x"], PY)
            .await
            .expect_err("no write permission");
        assert!(
            err.to_string().contains("TopicAuthorizationFailed"),
            "{who} on {topic}: {err}"
        );
    }
    let listed = kafka_python(&bootstrap, alice, &[], &["topics"], PY)
        .await
        .unwrap_or_else(|e| panic!("alice lists: {e}"));
    assert_eq!(listed["topics"], serde_json::json!(["acl-orders-eu"]));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_consume_denied_without_read() {
    let env = AclEnv::start().await;
    let bootstrap = env.bootstrap();
    env.create_topics(&["acl-orders-us", "acl-public"]).await;
    let root = secure_producer(
        &bootstrap,
        &AclEnv::as_user("root"),
        RecordingContext::default(),
    );
    produce_n(&root, "acl-orders-us", 3)
        .await
        .expect("root writes");
    produce_n(&root, "acl-public", 3)
        .await
        .expect("root writes");
    close(root);

    // bob can read acl-public (assign: no group involved)...
    let c = consumer(
        &bootstrap,
        "bob-ok",
        &AclEnv::as_user("bob"),
        RecordingContext::default(),
    );
    assert_eq!(
        consume_n(&c, "acl-public", 3)
            .await
            .expect("bob reads")
            .len(),
        3
    );
    close(c);
    // ...but only describe acl-orders-us.
    let c = consumer(
        &bootstrap,
        "bob-ok",
        &AclEnv::as_user("bob"),
        RecordingContext::default(),
    );
    let err = consume_n(&c, "acl-orders-us", 1)
        .await
        .expect_err("bob may not read acl-orders-us");
    assert_eq!(
        code(&err),
        RDKafkaErrorCode::TopicAuthorizationFailed,
        "{err}"
    );
    close(c);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_group_join_denied() {
    let env = AclEnv::start().await;
    let bootstrap = env.bootstrap();
    env.create_topics(&["acl-public"]).await;
    let ctx = RecordingContext::default();
    let c = consumer(
        &bootstrap,
        "not-bobs-group",
        &AclEnv::as_user("bob"),
        ctx.clone(),
    );
    c.subscribe(&["acl-public"]).expect("subscribe");
    // The denial arrives as a consumer error or through the error callback; other transient
    // errors are skipped, a record would be a failure.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let denied = loop {
        if ctx
            .errors()
            .iter()
            .any(|(c, _)| *c == RDKafkaErrorCode::GroupAuthorizationFailed)
        {
            break true;
        }
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Err(_) => break false,
            Ok(Ok(m)) => panic!("bob consumed through a group he may not join: {m:?}"),
            Ok(Err(e))
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupAuthorizationFailed) =>
            {
                break true
            }
            Ok(Err(e)) => seen.push(e.to_string()),
        }
    };
    assert!(
        denied,
        "expected GROUP_AUTHORIZATION_FAILED; consumer errors {seen:?}, client errors {:?}",
        ctx.errors()
    );
    close(c);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_topic_creation_denied() {
    let env = AclEnv::start().await;
    let bootstrap = env.bootstrap();
    // alice may create under her prefix, not elsewhere.
    let admin = admin_client(&bootstrap, &AclEnv::as_user("alice"));
    let results = within(
        Duration::from_secs(20),
        "create_topics",
        admin.create_topics(
            &[
                NewTopic::new("acl-orders-new", 1, TopicReplication::Fixed(1)),
                NewTopic::new("elsewhere-new", 1, TopicReplication::Fixed(1)),
            ],
            &admin_opts(),
        ),
    )
    .await
    .expect("create_topics request");
    for r in results {
        match r {
            Ok(t) => assert_eq!(t, "acl-orders-new"),
            Err((t, e)) => {
                assert_eq!(t, "elsewhere-new", "unexpected failure: {e:?}");
                assert!(
                    matches!(
                        e,
                        RDKafkaErrorCode::TopicAuthorizationFailed
                            | RDKafkaErrorCode::ClusterAuthorizationFailed
                    ),
                    "{e:?}"
                );
            }
        }
    }
    close(admin);
    // carol has no create permission at all; auto-creation through Metadata is denied too.
    let p = secure_producer(
        &bootstrap,
        &AclEnv::as_user("carol"),
        RecordingContext::default(),
    );
    let err = produce_n(&p, "carol-auto-created", 1)
        .await
        .expect_err("carol cannot create topics by producing");
    assert_eq!(
        code(&err),
        RDKafkaErrorCode::TopicAuthorizationFailed,
        "{err}"
    );
    close(p);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_metadata_lists_only_describable_topics() {
    let env = AclEnv::start().await;
    let bootstrap = env.bootstrap();
    env.create_topics(&["acl-orders-a", "acl-orders-b", "acl-public", "acl-secret"])
        .await;
    let names = |user: &str| {
        let p = secure_producer(
            &bootstrap,
            &AclEnv::as_user(user),
            RecordingContext::default(),
        );
        let md = blocking(|| p.client().fetch_metadata(None, CALL)).expect("metadata");
        let mut names: Vec<String> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| t.name().to_string())
            .filter(|n| n.starts_with("acl-"))
            .collect();
        names.sort();
        close(p);
        names
    };
    assert_eq!(names("alice"), ["acl-orders-a", "acl-orders-b"]);
    assert_eq!(names("bob"), ["acl-orders-a", "acl-orders-b", "acl-public"]);
    assert!(names("carol").is_empty());
    assert_eq!(
        names("root"),
        ["acl-orders-a", "acl-orders-b", "acl-public", "acl-secret"]
    );
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Delegated SASL: the broker decides
// ---------------------------------------------------------------------------------------------

/// Delegated mode relays the client's SCRAM exchange to the broker, which decides. tansu cannot
/// authenticate (see the canary above), so the broker is the mock, requiring SCRAM; the
/// gateway's own connections (discovery) use its upstream credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegated_scram_is_decided_by_the_broker() {
    capture_logs();
    let mock = MockBroker::start(MockOptions {
        security: MockSecurity {
            tls: None,
            sasl: Some(MockSasl {
                mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()],
                users: vec![
                    ("gateway".into(), "gateway-secret".into()),
                    ("alice".into(), "alice-at-broker".into()),
                ],
                session_lifetime: None,
            }),
        },
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let mut config = secured_config(
        &mock.bootstrap(),
        SecurityProtocol::SaslPlaintext,
        None,
        Some(server_sasl(
            &["SCRAM-SHA-256", "SCRAM-SHA-512"],
            SaslMode::Delegated,
        )),
    );
    config.upstream.sasl = Some(upstream_sasl("SCRAM-SHA-512", "gateway", "gateway-secret"));
    let gw = gateway(config).await;
    let bootstrap = gw.kafka_addr().to_string();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let ctx = RecordingContext::default();
        let p = secure_producer(
            &bootstrap,
            &ClientSecurity::sasl(false, mechanism, "alice", "alice-at-broker"),
            ctx.clone(),
        );
        produce_n(&p, "delegated", 3)
            .await
            .unwrap_or_else(|e| panic!("{mechanism} with the broker's password: {e} ({ctx:?})"));
        close(p);
        assert!(
            mock.authentications()
                .iter()
                .any(|a| a.principal.as_deref() == Some("alice")
                    && a.mechanism.as_deref() == Some(mechanism)),
            "the broker authenticated alice with {mechanism}: {:?}",
            mock.authentications()
        );
        let failures = mock.auth_failures();
        assert_rejected(
            &bootstrap,
            &ClientSecurity::sasl(false, mechanism, "alice", "not-her-password"),
            RecordingContext::default(),
            &[RDKafkaErrorCode::Authentication],
            "delegated, wrong password",
        )
        .await;
        assert!(
            mock.auth_failures() > failures,
            "the broker, not the gateway, refused the wrong password"
        );
    }
    assert_eq!(mock.unauthenticated_requests(), 0);
    capture_logs().assert_absent(&["alice-at-broker", "not-her-password", "gateway-secret"]);
    stop(gw).await;
}

// ---------------------------------------------------------------------------------------------
// Gateway → broker: the gateway's own TLS, mTLS and SASL
// ---------------------------------------------------------------------------------------------

/// Produces through a plaintext gateway in front of `mock` and checks the mock served only
/// authenticated connections.
async fn produce_through(gw: &sluice::Gateway, mock: &MockBroker) {
    let ctx = RecordingContext::default();
    let p = secure_producer(
        &gw.kafka_addr().to_string(),
        &ClientSecurity::default(),
        ctx.clone(),
    );
    produce_n(&p, "upstream-secured", 5)
        .await
        .unwrap_or_else(|e| panic!("producing through the gateway: {e} ({ctx:?})"));
    close(p);
    assert!(mock.requests_for(0) >= 1, "Produce reached the broker");
    assert_eq!(
        mock.unauthenticated_requests(),
        0,
        "the gateway sent a request before authenticating"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_and_scram_gateway_managed() {
    capture_logs();
    let mock = MockBroker::start(MockOptions {
        security: MockSecurity {
            tls: Some(pki().server_config(false)),
            sasl: Some(MockSasl::new(
                &["SCRAM-SHA-512"],
                "sluice-gw",
                "upstream-secret",
            )),
        },
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let mut config = gateway_config(&mock.bootstrap());
    config.upstream.tls = Some(UpstreamTls {
        ca_file: Some(pki().ca_file.clone()),
        ..Default::default()
    });
    config.upstream.sasl = Some(upstream_sasl(
        "SCRAM-SHA-512",
        "sluice-gw",
        "upstream-secret",
    ));
    assert!(!format!("{config:?}").contains("upstream-secret"));
    let gw = gateway(config).await;
    produce_through(&gw, &mock).await;
    let auths = mock.authentications();
    assert!(!auths.is_empty());
    assert!(
        auths
            .iter()
            .all(|a| a.principal.as_deref() == Some("sluice-gw")
                && a.mechanism.as_deref() == Some("SCRAM-SHA-512")),
        "{auths:?}"
    );
    assert!(!gw.metrics_text().contains("upstream-secret"));
    capture_logs().assert_absent(&["upstream-secret"]);
    stop(gw).await;
}

/// A broker that limits SASL sessions (KIP-368, `connections.max.reauth.ms`) closes a
/// connection whose session expired at its next request. The gateway renews its own session
/// on a client's upstream connection in place before that, so a client connection that lives
/// through several session lifetimes is never cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_session_is_renewed_in_place_before_it_expires() {
    capture_logs();
    let mut sasl = MockSasl::new(&["SCRAM-SHA-512"], "sluice-gw", "renew-secret");
    sasl.session_lifetime = Some(Duration::from_millis(1000));
    let mock = MockBroker::start(MockOptions {
        security: MockSecurity {
            tls: None,
            sasl: Some(sasl),
        },
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let mut config = gateway_config(&mock.bootstrap());
    config.upstream.sasl = Some(upstream_sasl("SCRAM-SHA-512", "sluice-gw", "renew-secret"));
    let gw = gateway(config).await;
    let mut raw = RawClient::connect(gw.kafka_addr()).await.unwrap();
    // About 3.6 session lifetimes of traffic on one client connection (the pauses are the
    // workload: the session must age).
    for i in 0..12 {
        let md = within(
            Duration::from_secs(10),
            "Metadata",
            raw.call(&MetadataRequest::default().with_topics(Some(vec![])), 9),
        )
        .await
        .unwrap_or_else(|e| panic!("request {i} on the long-lived connection: {e:#}"));
        assert!(!md.brokers.is_empty());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Pipelined requests arriving when the session is due: renewed first, then all of them
    // answered, in order.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut batch = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (id, frame) = raw.encode(&MetadataRequest::default().with_topics(Some(vec![])), 9);
        ids.push(id);
        batch.extend_from_slice(&frame);
    }
    raw.send_raw(&batch).await.unwrap();
    for id in ids {
        let frame = within(
            Duration::from_secs(10),
            "pipelined answer",
            raw.read_frame(),
        )
        .await
        .expect("answered");
        let cid = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(cid, id, "answers in request order");
    }
    assert_eq!(
        mock.expired_session_requests(),
        0,
        "the broker saw a request on an expired session"
    );
    let renewed = metric(&gw, "sluice_upstream_reauthentications_total");
    assert!(renewed >= 2, "renewed {renewed} times");
    // Every (re-)authentication kept the gateway's principal.
    assert!(mock
        .authentications()
        .iter()
        .all(|a| a.principal.as_deref() == Some("sluice-gw")));
    capture_logs().assert_absent(&["renew-secret"]);
    drop(raw);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sasl_plain() {
    capture_logs();
    let mock = MockBroker::start(MockOptions {
        security: MockSecurity {
            tls: None,
            sasl: Some(MockSasl::new(&["PLAIN"], "sluice-gw", "plain-secret")),
        },
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let mut config = gateway_config(&mock.bootstrap());
    config.upstream.sasl = Some(upstream_sasl("PLAIN", "sluice-gw", "plain-secret"));
    let gw = gateway(config).await;
    produce_through(&gw, &mock).await;
    assert!(mock
        .authentications()
        .iter()
        .all(|a| a.principal.as_deref() == Some("sluice-gw")));
    capture_logs().assert_absent(&["plain-secret"]);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_mtls() {
    capture_logs();
    let pki = pki();
    let mock = MockBroker::start(MockOptions {
        security: MockSecurity {
            tls: Some(pki.server_config(true)),
            sasl: None,
        },
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let mut config = gateway_config(&mock.bootstrap());
    config.upstream.tls = Some(UpstreamTls {
        ca_file: Some(pki.ca_file.clone()),
        cert_file: Some(pki.gateway_client.cert_file.clone()),
        key_file: Some(pki.gateway_client.key_file.clone()),
        server_name: None,
    });
    let gw = gateway(config).await;
    produce_through(&gw, &mock).await;
    let auths = mock.authentications();
    assert!(!auths.is_empty());
    assert!(
        auths
            .iter()
            .all(|a| a.client_cert.as_ref() == Some(&pki.gateway_client.cert_der)),
        "every upstream connection presented the gateway's certificate"
    );
    assert_eq!(mock.tls_failures(), 0);
    stop(gw).await;
}

/// Wrong upstream credentials fail the gateway's discovery promptly, with the broker's
/// refusal, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_wrong_password_fails_fast() {
    capture_logs();
    let mock = MockBroker::start(MockOptions {
        security: MockSecurity {
            tls: None,
            sasl: Some(MockSasl::new(&["SCRAM-SHA-256"], "sluice-gw", "right")),
        },
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let mut config = gateway_config(&mock.bootstrap());
    config.upstream.sasl = Some(upstream_sasl(
        "SCRAM-SHA-256",
        "sluice-gw",
        "wrong-upstream-password",
    ));
    let started = within(
        Duration::from_secs(15),
        "gateway start with wrong upstream credentials",
        start_gateway_with(config),
    )
    .await;
    let err = match started {
        Ok(gw) => {
            stop(gw).await;
            panic!("the gateway discovered brokers with a wrong upstream password");
        }
        Err(e) => format!("{e:#}"),
    };
    assert!(mock.auth_failures() >= 1, "the broker saw the attempt");
    assert!(
        !err.contains("wrong-upstream-password"),
        "the error names the password: {err}"
    );
    assert_eq!(mock.unauthenticated_requests(), 0);
    capture_logs().assert_absent(&["wrong-upstream-password"]);
}

/// A deny ACL wins over an allow, and ACL changes over the admin API apply without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_deny_wins_and_changes_apply_live() {
    let env = AclEnv::start().await;
    let bootstrap = env.bootstrap();
    let admin = env.gw.admin_addr();
    env.create_topics(&["acl-orders-blocked", "acl-orders-open"])
        .await;
    put_acl(
        admin,
        "alice-deny-blocked",
        serde_json::json!({
            "principal": "alice", "resourceType": "topic", "patternType": "literal",
            "name": "acl-orders-blocked", "operations": ["write"], "permission": "deny"
        }),
    )
    .await;
    let p = secure_producer(
        &bootstrap,
        &AclEnv::as_user("alice"),
        RecordingContext::default(),
    );
    produce_n(&p, "acl-orders-open", 1)
        .await
        .expect("the prefixed allow still applies elsewhere");
    let err = produce_n(&p, "acl-orders-blocked", 1)
        .await
        .expect_err("deny beats the group's prefixed allow");
    assert_eq!(
        code(&err),
        RDKafkaErrorCode::TopicAuthorizationFailed,
        "{err}"
    );
    close(p);

    // carol may not write; an allow ACL added now lets a new connection of hers write.
    let p = secure_producer(
        &bootstrap,
        &AclEnv::as_user("carol"),
        RecordingContext::default(),
    );
    let err = produce_n(&p, "acl-orders-open", 1)
        .await
        .expect_err("carol has no ACL yet");
    assert_eq!(
        code(&err),
        RDKafkaErrorCode::TopicAuthorizationFailed,
        "{err}"
    );
    close(p);
    put_acl(
        admin,
        "carol-write-open",
        serde_json::json!({
            "principal": "carol", "resourceType": "topic", "patternType": "literal",
            "name": "acl-orders-open", "operations": ["write"], "permission": "allow"
        }),
    )
    .await;
    let ctx = RecordingContext::default();
    let p = secure_producer(&bootstrap, &AclEnv::as_user("carol"), ctx.clone());
    produce_n(&p, "acl-orders-open", 1)
        .await
        .unwrap_or_else(|e| panic!("carol after the new ACL: {e} ({ctx:?})"));
    close(p);
    env.stop().await;
}

/// OAUTHBEARER identities take part in ACLs: the principal comes from the configured claim and
/// group memberships from the groups claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_principal_and_groups_claim_drive_acls() {
    let broker = tansu().await;
    let idp = JwtIssuer::new("idp-key-acl");
    let mut oauth = server_oauth(&idp);
    oauth.principal_claim = "client_id".into();
    oauth.groups_claim = Some("groups".into());
    let mut sasl = server_sasl(&["OAUTHBEARER"], SaslMode::GatewayManaged);
    sasl.oauthbearer = Some(oauth);
    let mut config = secured_config(
        &broker.bootstrap(),
        SecurityProtocol::SaslPlaintext,
        None,
        Some(sasl),
    );
    config.authorization.enabled = true;
    let gw = gateway(config).await;
    let admin = gw.admin_addr();
    put_acl(
        admin,
        "producers-write",
        serde_json::json!({
            "group": "producers", "resourceType": "topic", "patternType": "prefixed",
            "name": "oauth-acl-", "operations": ["write", "describe", "create"],
            "permission": "allow"
        }),
    )
    .await;
    let bootstrap = gw.kafka_addr().to_string();
    let token = |client_id: &str, groups: &[&str]| {
        let mut claims = idp.claims("ignored-subject", 300);
        claims["client_id"] = client_id.into();
        claims["groups"] = serde_json::json!(groups);
        idp.mint(&claims)
    };
    let sec = ClientSecurity::oauthbearer(false);

    let ctx = RecordingContext::with_token(token("svc-a", &["producers"]), "svc-a");
    let p = secure_producer(&bootstrap, &sec, ctx.clone());
    produce_n(&p, "oauth-acl-orders", 2)
        .await
        .unwrap_or_else(|e| panic!("member of producers: {e} ({ctx:?})"));
    close(p);

    let p = secure_producer(
        &bootstrap,
        &sec,
        RecordingContext::with_token(token("svc-b", &["readers"]), "svc-b"),
    );
    let err = produce_n(&p, "oauth-acl-orders", 1)
        .await
        .expect_err("not a member of producers");
    assert_eq!(
        code(&err),
        RDKafkaErrorCode::TopicAuthorizationFailed,
        "{err}"
    );
    close(p);
    stop(gw).await;
}

// ---------------------------------------------------------------------------------------------
// SaslHandshake v0 (raw tokens) and KIP-368 re-authentication
// ---------------------------------------------------------------------------------------------

/// PLAIN token for `user`/`password`.
fn plain_token(user: &str, password: &str) -> Vec<u8> {
    [&[0u8][..], user.as_bytes(), &[0], password.as_bytes()].concat()
}

/// SaslHandshake v0: the tokens that follow are bare length-prefixed frames, not requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_handshake_v0_exchanges_raw_tokens() {
    use kafka_protocol::messages::SaslHandshakeRequest;
    use kafka_protocol::protocol::StrBytes;
    let broker = tansu().await;
    let gw = gateway(secured_config(
        &broker.bootstrap(),
        SecurityProtocol::SaslPlaintext,
        None,
        Some(server_sasl(&["PLAIN"], SaslMode::GatewayManaged)),
    ))
    .await;
    put_service_account(gw.admin_addr(), "alice", "alice-pass-1", &[]).await;
    let plain = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let framed = |token: Vec<u8>| [(token.len() as i32).to_be_bytes().to_vec(), token].concat();

    let mut raw = RawClient::connect(gw.kafka_addr()).await.unwrap();
    let hs = raw.call(&plain, 0).await.unwrap();
    assert_eq!(hs.error_code, 0);
    raw.send_raw(&framed(plain_token("alice", "alice-pass-1")))
        .await
        .unwrap();
    let answer = raw.read_frame().await.expect("a bare answer token");
    assert!(answer.is_empty(), "PLAIN's final token is empty");
    let md = raw
        .call(&MetadataRequest::default().with_topics(None), 9)
        .await
        .expect("Metadata after a v0 exchange");
    assert!(!md.brokers.is_empty());

    let mut raw = RawClient::connect(gw.kafka_addr()).await.unwrap();
    raw.call(&plain, 0).await.unwrap();
    raw.send_raw(&framed(plain_token("alice", "wrong")))
        .await
        .unwrap();
    assert!(
        raw.closed_within(Duration::from_secs(5)).await,
        "a failed v0 exchange closes the connection"
    );
    stop(gw).await;
}

/// KIP-368: the gateway announces a session lifetime, closes a connection that outlives it
/// without re-authenticating, keeps one that re-authenticates, and refuses a re-authentication
/// as somebody else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_unless_the_client_reauthenticates() {
    use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
    use kafka_protocol::protocol::StrBytes;
    const LIFETIME: Duration = Duration::from_millis(1500);
    let broker = tansu().await;
    let mut sasl = server_sasl(&["PLAIN"], SaslMode::GatewayManaged);
    sasl.max_reauth_ms = LIFETIME.as_millis() as u64;
    let gw = gateway(secured_config(
        &broker.bootstrap(),
        SecurityProtocol::SaslPlaintext,
        None,
        Some(sasl),
    ))
    .await;
    put_service_account(gw.admin_addr(), "alice", "alice-pass-1", &[]).await;
    put_service_account(gw.admin_addr(), "bob", "bob-pass-1", &[]).await;
    async fn authenticate(raw: &mut RawClient, user: &str, password: &str) -> (i16, i64) {
        let hs = raw
            .call(
                &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
                1,
            )
            .await
            .unwrap();
        assert_eq!(hs.error_code, 0);
        let resp = raw
            .call(
                &SaslAuthenticateRequest::default()
                    .with_auth_bytes(plain_token(user, password).into()),
                2,
            )
            .await
            .unwrap();
        (resp.error_code, resp.session_lifetime_ms)
    }
    let metadata = MetadataRequest::default().with_topics(None);

    // No re-authentication: the first request after the lifetime closes the connection.
    let mut lapsing = RawClient::connect(gw.kafka_addr()).await.unwrap();
    let (code, lifetime_ms) = authenticate(&mut lapsing, "alice", "alice-pass-1").await;
    assert_eq!(code, 0);
    assert!(
        lifetime_ms > 0 && lifetime_ms <= LIFETIME.as_millis() as i64,
        "session lifetime {lifetime_ms} ms announced"
    );
    assert!(lapsing.call(&metadata, 9).await.is_ok());

    // Re-authentication before the lifetime ends keeps the connection.
    let mut renewing = RawClient::connect(gw.kafka_addr()).await.unwrap();
    assert_eq!(
        authenticate(&mut renewing, "alice", "alice-pass-1").await.0,
        0
    );
    let started = tokio::time::Instant::now();
    // The session's end is the condition under test: wait for it to come.
    tokio::time::sleep_until(started + LIFETIME / 2).await;
    assert_eq!(
        authenticate(&mut renewing, "alice", "alice-pass-1").await.0,
        0
    );
    tokio::time::sleep_until(started + LIFETIME + Duration::from_millis(200)).await;

    assert!(
        renewing.call(&metadata, 9).await.is_ok(),
        "a re-authenticated session goes on"
    );
    let (_, frame) = lapsing.encode(&metadata, 9);
    lapsing.send_raw(&frame).await.unwrap();
    assert!(
        lapsing.closed_within(Duration::from_secs(5)).await,
        "an expired session is closed at its next request"
    );

    // Re-authenticating as another principal fails and closes the connection.
    let (code, _) = authenticate(&mut renewing, "bob", "bob-pass-1").await;
    assert_eq!(code, 58, "SASL_AUTHENTICATION_FAILED");
    assert!(renewing.closed_within(Duration::from_secs(5)).await);
    assert!(gw
        .metrics_text()
        .contains("sluice_protocol_errors_total{kind=\"session_expired\"} 1"));
    stop(gw).await;
}

/// librdkafka re-authenticates on its own when the gateway announces a lifetime, and keeps
/// producing on the same connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reauthenticates_and_keeps_producing() {
    let broker = tansu().await;
    let mut sasl = server_sasl(&["SCRAM-SHA-256"], SaslMode::GatewayManaged);
    sasl.max_reauth_ms = 1000;
    let gw = gateway(secured_config(
        &broker.bootstrap(),
        SecurityProtocol::SaslPlaintext,
        None,
        Some(sasl),
    ))
    .await;
    put_service_account(gw.admin_addr(), "alice", "alice-pass-1", &[]).await;
    let security = ClientSecurity::sasl(false, "SCRAM-SHA-256", "alice", "alice-pass-1");
    let bootstrap = gw.kafka_addr().to_string();
    let successes = |gw: &sluice::Gateway| {
        metric(
            gw,
            "sluice_authentications_total{mechanism=\"SCRAM-SHA-256\",outcome=\"success\"}",
        )
    };
    round_trip(&bootstrap, &security, "reauth-1", 3).await;
    let producer = secure_producer(&bootstrap, &security, RecordingContext::default());
    producer
        .send(
            FutureRecord::<(), _>::to("reauth-1").payload("first"),
            Duration::from_secs(10),
        )
        .await
        .expect("first produce");
    // From here on the producer's connections exist: new successes are re-authentications.
    let before = successes(&gw);
    // Produce across several session lifetimes: each send must succeed.
    let until = tokio::time::Instant::now() + Duration::from_millis(3500);
    let mut sent = 0;
    while tokio::time::Instant::now() < until {
        producer
            .send(
                FutureRecord::<(), _>::to("reauth-1").payload("x"),
                Duration::from_secs(10),
            )
            .await
            .expect("produce through re-authenticated connections");
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent > 10);
    assert!(
        successes(&gw) >= before + 2,
        "librdkafka re-authenticated ({} -> {})",
        before,
        successes(&gw)
    );
    assert_eq!(
        metric(
            &gw,
            "sluice_protocol_errors_total{kind=\"session_expired\"}"
        ),
        0
    );
    close(producer);
    stop(gw).await;
}

// ---------------------------------------------------------------------------------------------
// A second client implementation: kafkajs (pure JavaScript)
// ---------------------------------------------------------------------------------------------

/// kafkajs over SASL_SSL with SCRAM-SHA-512: produces and consumes with the right password, is
/// refused with an authentication error for a wrong one, and a plaintext kafkajs client gets
/// nowhere on the TLS listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkajs_over_sasl_ssl_with_scram() {
    const JS: Duration = Duration::from_secs(60);
    let broker = tansu().await;
    let gw = gateway(secured_config(
        &broker.bootstrap(),
        SecurityProtocol::SaslSsl,
        Some(server_tls(ClientAuth::None, None)),
        Some(server_sasl(&["SCRAM-SHA-512"], SaslMode::GatewayManaged)),
    ))
    .await;
    put_service_account(gw.admin_addr(), "alice", "alice-pass-1", &[]).await;
    let bootstrap = gw.kafka_addr().to_string();
    let ca = Some(pki().ca_file.as_path());
    let alice = Some(("scram-sha-512", "alice", "alice-pass-1"));

    let created = kafkajs_tls(&bootstrap, ca, alice, &["create", "js-tls", "1"], JS)
        .await
        .expect("kafkajs creates a topic over SASL_SSL");
    assert_eq!(created["created"], true);
    let produced = kafkajs_tls(&bootstrap, ca, alice, &["produce", "js-tls", "3", "k"], JS)
        .await
        .expect("kafkajs produces over SASL_SSL");
    assert_eq!(produced["offsets"], serde_json::json!([0, 1, 2]));
    let consumed = kafkajs_tls(
        &bootstrap,
        ca,
        alice,
        &["consume", "js-tls", "js-g", "3"],
        JS,
    )
    .await
    .expect("kafkajs consumes over SASL_SSL");
    let keys: Vec<&str> = consumed["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["key"].as_str())
        .collect();
    assert_eq!(keys, ["k-0", "k-1", "k-2"]);

    let wrong = kafkajs_tls(
        &bootstrap,
        ca,
        Some(("scram-sha-512", "alice", "wrong-pass")),
        &["topics"],
        JS,
    )
    .await
    .expect_err("a wrong password is refused");
    assert!(
        wrong.to_string().contains("SASL") || wrong.to_string().contains("uthenticat"),
        "kafkajs says why: {wrong}"
    );
    let plaintext = kafkajs(&bootstrap, alice, &["topics"], JS)
        .await
        .expect_err("plaintext on the TLS listener gets nowhere");
    assert!(plaintext.get("type").is_some(), "{plaintext}");
    capture_logs().assert_absent(&["alice-pass-1", "wrong-pass"]);
    stop(gw).await;
}

/// kafka-python (its own SASL code) over SASL_PLAINTEXT with SCRAM-SHA-256 and SCRAM-SHA-512:
/// produces and consumes with the right password; every attempt with a wrong password or an
/// unknown user is reported as SaslAuthenticationFailedError, never as a lost connection.
/// kafka-python drops an answer that arrives in the same read as the close, so the gateway,
/// like Kafka, answers and then keeps the connection open a moment before closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_with_scram() {
    const PY: Duration = Duration::from_secs(60);
    let broker = tansu().await;
    let gw = gateway(secured_config(
        &broker.bootstrap(),
        SecurityProtocol::SaslPlaintext,
        None,
        Some(server_sasl(
            &["SCRAM-SHA-256", "SCRAM-SHA-512"],
            SaslMode::GatewayManaged,
        )),
    ))
    .await;
    put_service_account(gw.admin_addr(), "alice", "alice-pass-1", &[]).await;
    let bootstrap = gw.kafka_addr().to_string();
    for mechanism in ["scram-sha-256", "scram-sha-512"] {
        let alice = Some((mechanism, "alice", "alice-pass-1"));
        let topic = format!("py-{mechanism}");
        kafka_python(&bootstrap, alice, &[], &["create", &topic, "1"], PY)
            .await
            .unwrap_or_else(|e| panic!("{mechanism}: kafka-python creates a topic: {e}"));
        let produced = kafka_python(&bootstrap, alice, &[], &["produce", &topic, "3", "k"], PY)
            .await
            .unwrap_or_else(|e| panic!("{mechanism}: kafka-python produces: {e}"));
        assert_eq!(produced["offsets"], serde_json::json!([0, 1, 2]));
        let consumed = kafka_python(
            &bootstrap,
            alice,
            &[],
            &["consume", &topic, "py-g", "3"],
            PY,
        )
        .await
        .unwrap_or_else(|e| panic!("{mechanism}: kafka-python consumes: {e}"));
        let keys: Vec<&str> = consumed["records"]
            .as_array()
            .expect("records")
            .iter()
            .filter_map(|r| r["key"].as_str())
            .collect();
        assert_eq!(keys, ["k-0", "k-1", "k-2"], "{mechanism}");

        for (user, password) in [("alice", "wrong-pass"), ("nobody", "alice-pass-1")] {
            let started = Instant::now();
            let refused = kafka_python(
                &bootstrap,
                Some((mechanism, user, password)),
                &[("KAFKA_BOOTSTRAP_TIMEOUT_MS", "3000".to_string())],
                &["topics"],
                PY,
            )
            .await
            .expect_err("refused");
            let took = started.elapsed();
            // kafka-python retries a refused bootstrap (against Kafka too) until its
            // bootstrap timeout (3 s here); every attempt must have been told why.
            let seen = refused["kafka_errors"].to_string();
            assert!(
                seen.contains("SaslAuthenticationFailedError"),
                "{mechanism} {user}: kafka-python saw an authentication failure: {refused}"
            );
            assert!(
                !seen.contains("KafkaConnectionError"),
                "{mechanism} {user}: no attempt ends as a lost connection: {refused}"
            );
            assert!(
                took < Duration::from_secs(20),
                "{mechanism} {user}: refused after {took:?}"
            );
        }
    }
    capture_logs().assert_absent(&["alice-pass-1", "wrong-pass"]);
    stop(gw).await;
}

/// kafkajs with a client certificate (mTLS): the certificate's subject maps to `alice` (by the
/// CN rule), whose ACLs let her create and write `js-mtls`; bob's valid certificate maps to
/// `bob`, who may not write; a certificate from an unknown CA gets nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkajs_with_a_client_certificate() {
    const JS: Duration = Duration::from_secs(60);
    let broker = tansu().await;
    let mut config = secured_config(
        &broker.bootstrap(),
        SecurityProtocol::Ssl,
        Some(server_tls(ClientAuth::Required, Some(CN_RULE))),
        None,
    );
    config.authorization.enabled = true;
    let gw = gateway(config).await;
    put_acl(
        gw.admin_addr(),
        "alice-js",
        serde_json::json!({"principal": "alice", "resourceType": "topic", "name": "js-mtls",
            "operations": ["create", "write", "describe"]}),
    )
    .await;
    let bootstrap = gw.kafka_addr().to_string();
    let pki = pki();
    let as_identity = |who: &sluice_tests::pki::Identity, ca: &std::path::Path| {
        vec![
            ("KAFKA_CA", ca.display().to_string()),
            ("KAFKA_CERT", who.cert_file.display().to_string()),
            ("KAFKA_KEY", who.key_file.display().to_string()),
        ]
    };
    let alice = as_identity(&pki.alice, &pki.ca_file);
    let created = kafkajs_env(&bootstrap, &alice, &["create", "js-mtls", "1"], JS)
        .await
        .expect("alice (by her certificate) creates js-mtls");
    assert_eq!(created["created"], true);
    let produced = kafkajs_env(&bootstrap, &alice, &["produce", "js-mtls", "2", "a"], JS)
        .await
        .expect("alice writes js-mtls");
    assert_eq!(produced["offsets"], serde_json::json!([0, 1]));
    let bob = as_identity(&pki.bob, &pki.ca_file);
    let denied = kafkajs_env(&bootstrap, &bob, &["produce", "js-mtls", "1", "b"], JS)
        .await
        .expect_err("bob may not write");
    assert_eq!(denied["type"], "TOPIC_AUTHORIZATION_FAILED", "{denied}");
    let rogue = as_identity(&pki.rogue, &pki.ca_file);
    let refused = kafkajs_env(&bootstrap, &rogue, &["topics"], JS)
        .await
        .expect_err("a certificate from an unknown CA is refused");
    assert!(refused.get("type").is_some(), "{refused}");
    stop(gw).await;
}

/// kafkajs with SASL/OAUTHBEARER over TLS: a valid token creates and produces; an expired one
/// and one signed by another key are refused (and counted as failed authentications).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkajs_with_oauthbearer_tokens() {
    const JS: Duration = Duration::from_secs(60);
    let broker = tansu().await;
    let idp = JwtIssuer::new("idp-js");
    let gw = oauth_gateway(&broker, &idp).await;
    let bootstrap = gw.kafka_addr().to_string();
    let with_token = |token: String| {
        vec![
            ("KAFKA_CA", pki().ca_file.display().to_string()),
            ("KAFKA_TOKEN", token),
        ]
    };
    let good = with_token(idp.mint(&idp.claims("svc-js", 300)));
    let created = kafkajs_env(&bootstrap, &good, &["create", "js-oauth", "1"], JS)
        .await
        .expect("a valid token creates");
    assert_eq!(created["created"], true);
    let produced = kafkajs_env(&bootstrap, &good, &["produce", "js-oauth", "2", "t"], JS)
        .await
        .expect("a valid token produces");
    assert_eq!(produced["offsets"], serde_json::json!([0, 1]));
    let forger = JwtIssuer::new("idp-js");
    let failed = "sluice_authentications_total{mechanism=\"OAUTHBEARER\",outcome=\"failure\"}";
    for (what, token) in [
        ("expired", idp.mint(&idp.claims("svc-js", -600))),
        (
            "signed by another key",
            forger.mint(&idp.claims("svc-js", 300)),
        ),
    ] {
        let failures = || metric(&gw, failed);
        let before = failures();
        let refused = kafkajs_env(&bootstrap, &with_token(token), &["topics"], JS)
            .await
            .expect_err(what);
        // kafkajs takes the gateway's RFC 7628 error challenge for success instead of
        // acknowledging it (a Kafka broker answers it the same way), so it learns of the
        // refusal when its next request closes the connection.
        assert!(
            refused.to_string().contains("Closed connection")
                || refused.to_string().contains("SASL"),
            "{what}: {refused}"
        );
        assert_eq!(
            failures(),
            before + 1,
            "{what}: counted as a failed authentication"
        );
    }
    stop(gw).await;
}

/// Fetch sessions (KIP-227) after an ACL change: an incremental Fetch names only what changed
/// in its session, so the partitions already in it could be served unchecked. After any
/// change of the ACLs, the next incremental Fetch is answered FETCH_SESSION_ID_NOT_FOUND by
/// the gateway (nothing reaches the broker); the client's new full Fetch is judged by the
/// current ACLs; incremental Fetches then flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_change_restarts_incremental_fetch_sessions() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    capture_logs();
    let mock = MockBroker::start(MockOptions::default()).await.unwrap();
    let mut config = secured_config(
        &mock.bootstrap(),
        SecurityProtocol::SaslPlaintext,
        None,
        Some(server_sasl(&["PLAIN"], SaslMode::GatewayManaged)),
    );
    config.authorization.enabled = true;
    let gw = gateway(config).await;
    let admin = gw.admin_addr();
    put_service_account(admin, "alice", "fetch-pass", &[]).await;
    put_acl(
        admin,
        "alice-read",
        serde_json::json!({"principal": "alice", "resourceType": "topic", "name": "t",
            "operations": ["read"]}),
    )
    .await;
    let mut raw = RawClient::connect(gw.kafka_addr()).await.unwrap();
    assert_eq!(raw.sasl_plain("alice", "fetch-pass").await.unwrap(), 0);
    let fetch = |session_id: i32, epoch: i32, with_topic: bool| {
        let topics = if with_topic {
            vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1 << 20)])]
        } else {
            Vec::new()
        };
        FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_bytes(1 << 20)
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .with_topics(topics)
    };
    let fetches = || mock.requests_for(1);
    let mut call = async |req: FetchRequest| -> FetchResponse {
        within(Duration::from_secs(10), "Fetch", raw.call(&req, 12))
            .await
            .expect("Fetch answered")
    };

    // A full fetch opening a session, then an incremental one: both reach the broker.
    let full = call(fetch(0, 0, true)).await;
    assert_eq!(full.error_code, 0);
    assert_eq!(
        full.responses[0].partitions[0].error_code, 0,
        "alice may read t"
    );
    let incremental = call(fetch(77, 1, false)).await;
    assert_eq!(incremental.error_code, 0);
    assert_eq!(fetches(), 2);

    // The ACLs change: the next incremental fetch starts over, without the broker.
    let (status, _) = http(admin, "DELETE", "/api/v1/acls/alice-read", &[], b"").await;
    assert_eq!(status, 204);
    let stale = call(fetch(77, 2, false)).await;
    assert_eq!(stale.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    assert_eq!(stale.session_id, 0);
    assert_eq!(fetches(), 2, "the stale session never reached the broker");
    // The new full fetch is judged by the current ACLs.
    let full = call(fetch(0, 0, true)).await;
    assert_eq!(
        full.responses[0].partitions[0].error_code, 29,
        "TOPIC_AUTHORIZATION_FAILED now"
    );
    // Judged under the current ACLs: incremental fetches flow again.
    let before = fetches();
    let incremental = call(fetch(78, 1, false)).await;
    assert_eq!(incremental.error_code, 0);
    assert_eq!(fetches(), before + 1);
    stop(gw).await;
}
