//! Connections that hold the gateway's resources: silent or trickling connections (the
//! handshake timeout), idle ones (the idle timeout), one source taking every slot (the
//! per-source limit), and bad connections flooding the logs (the log budget).
//!
//! Every test of the integration test binary shares one log capture (installed by the first
//! test to run); the log checks here pick their own lines.

use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::{ApiVersionsRequest, DescribeClusterRequest};
use sluice::config::{SaslMode, SecurityProtocol};
use sluice::Gateway;
use sluice_tests::mock::{Fault, MockBroker, MockOptions};
use sluice_tests::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Upper bound of every single step.
const STEP: Duration = Duration::from_secs(10);

fn closed(gw: &Gateway, reason: &str) -> u64 {
    metric(
        gw,
        &format!("sluice_connections_closed_total{{reason=\"{reason}\"}}"),
    )
}

fn refused(gw: &Gateway, reason: &str) -> u64 {
    metric(
        gw,
        &format!("sluice_connections_refused_total{{reason=\"{reason}\"}}"),
    )
}

async fn mock() -> MockBroker {
    MockBroker::start(MockOptions::default()).await.unwrap()
}

/// How long after `since` the gateway closed `c` (reading and discarding); panics if it is
/// still open after `limit`.
async fn closed_after(c: &mut RawClient, since: Instant, limit: Duration) -> Duration {
    assert!(
        c.closed_within(limit).await,
        "connection still open after {limit:?}"
    );
    since.elapsed()
}

/// A raw connection to `addr` from the loopback address `source` (any of 127.0.0.0/8).
async fn connect_from(source: [u8; 4], addr: SocketAddr) -> RawClient {
    RawClient::connect_from(source.into(), addr).await.unwrap()
}

/// A connection that never completes a request is closed at `limits.handshakeTimeoutMs`,
/// not before: silent, half a frame, or a frame trickled a byte at a time. One that sent a
/// request is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_send_a_request_are_closed_at_the_handshake_timeout() {
    capture_logs();
    let mock = mock().await;
    let mut config = gateway_config(&mock.bootstrap());
    config.limits.handshake_timeout_ms = 300;
    let gw = start_gateway_with(config).await.unwrap();
    let addr = gw.kafka_addr();
    let (_, frame) = RawClient::connect(addr)
        .await
        .unwrap()
        .encode(&MetadataRequest::default(), 12);

    let started = Instant::now();
    let mut silent = RawClient::connect(addr).await.unwrap();
    let mut half = RawClient::connect(addr).await.unwrap();
    half.send_raw(&frame[..frame.len() / 2]).await.unwrap();
    let mut served = RawClient::connect(addr).await.unwrap();
    within(
        STEP,
        "metadata",
        served.call(&MetadataRequest::default(), 12),
    )
    .await
    .unwrap();
    let mut trickle = RawClient::connect(addr).await.unwrap();
    let trickler = tokio::spawn(async move {
        // One byte every 40 ms: 1.2 s for the whole frame, never complete in time.
        for b in frame.iter().take(frame.len() - 1) {
            if trickle.send_raw(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        trickle
    });
    for (what, c) in [("silent", &mut silent), ("half a frame", &mut half)] {
        let after = closed_after(c, started, Duration::from_secs(3)).await;
        assert!(
            after >= Duration::from_millis(280),
            "{what}: closed after {after:?}, before the 300 ms timeout"
        );
    }
    let mut trickle = within(STEP, "trickler", trickler).await.unwrap();
    let after = closed_after(&mut trickle, started, Duration::from_secs(3)).await;
    assert!(after >= Duration::from_millis(280), "trickle: {after:?}");
    assert!(
        eventually(STEP, || closed(&gw, "handshake_timeout") == 3).await,
        "handshake_timeout counted {}",
        closed(&gw, "handshake_timeout")
    );
    // The served connection outlives the handshake timeout (the idle timeout is 10 min).
    assert!(started.elapsed() >= Duration::from_millis(300));
    within(
        STEP,
        "metadata",
        served.call(&MetadataRequest::default(), 12),
    )
    .await
    .expect("a connection that sent requests was closed");
    assert_eq!(closed(&gw, "idle_timeout"), 0);
    gw.shutdown().await;
}

/// With SASL on, the handshake ends with authentication: a client that sends ApiVersions
/// and then nothing is closed at the handshake timeout; one that authenticates is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_clients_must_authenticate_within_the_handshake_timeout() {
    capture_logs();
    let mock = mock().await;
    let mut config = gateway_config(&mock.bootstrap());
    config.limits.handshake_timeout_ms = 400;
    config.security.protocol = SecurityProtocol::SaslPlaintext;
    config.security.sasl = Some(server_sasl(&["PLAIN"], SaslMode::GatewayManaged));
    let gw = start_gateway_with(config).await.unwrap();
    put_service_account(gw.admin_addr(), "alice", "alice-password-1", &[]).await;
    let addr = gw.kafka_addr();
    let started = Instant::now();
    let mut lingering = RawClient::connect(addr).await.unwrap();
    within(
        STEP,
        "api versions",
        lingering.call(&ApiVersionsRequest::default(), 3),
    )
    .await
    .unwrap();
    let mut alice = RawClient::connect(addr).await.unwrap();
    assert_eq!(
        within(STEP, "sasl", alice.sasl_plain("alice", "alice-password-1"))
            .await
            .unwrap(),
        0
    );
    let after = closed_after(&mut lingering, started, Duration::from_secs(3)).await;
    assert!(
        after >= Duration::from_millis(380),
        "closed after {after:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    within(
        STEP,
        "metadata",
        alice.call(&MetadataRequest::default(), 12),
    )
    .await
    .expect("an authenticated connection was closed");
    assert!(eventually(STEP, || closed(&gw, "handshake_timeout") == 1).await);
    gw.shutdown().await;
}

/// An idle connection is closed at `limits.idleTimeoutMs` after its last answer, not before;
/// a request waiting at the broker longer than that is not idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_not_while_a_request_is_in_flight() {
    capture_logs();
    let mock = mock().await;
    let mut config = gateway_config(&mock.bootstrap());
    config.limits.idle_timeout_ms = 500;
    let gw = start_gateway_with(config).await.unwrap();
    let addr = gw.kafka_addr();

    let mut c = RawClient::connect(addr).await.unwrap();
    within(STEP, "metadata", c.call(&MetadataRequest::default(), 12))
        .await
        .unwrap();
    let answered = Instant::now();
    let after = closed_after(&mut c, answered, Duration::from_secs(3)).await;
    assert!(
        after >= Duration::from_millis(450),
        "idle connection closed {after:?} after its last answer, before the 500 ms timeout"
    );
    assert!(eventually(STEP, || closed(&gw, "idle_timeout") == 1).await);

    // The broker holds the next request for 1.5 s: three idle timeouts, none of them idle.
    mock.set_fault(Fault::Delay(Duration::from_millis(1500)));
    let mut slow = RawClient::connect(addr).await.unwrap();
    let sent = Instant::now();
    within(
        STEP,
        "delayed request",
        slow.call(&DescribeClusterRequest::default(), 0),
    )
    .await
    .expect("closed while a request was in flight");
    assert!(sent.elapsed() >= Duration::from_millis(1500));
    let answered = Instant::now();
    let after = closed_after(&mut slow, answered, Duration::from_secs(3)).await;
    assert!(
        after >= Duration::from_millis(450),
        "closed after {after:?}"
    );
    assert!(eventually(STEP, || closed(&gw, "idle_timeout") == 2).await);
    assert_eq!(closed(&gw, "handshake_timeout"), 0);
    gw.shutdown().await;
}

/// One source opening more connections than `maxConnections` no longer locks the others
/// out: by default a source gets half of the slots; overrides give an address its own limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_take_every_connection() {
    capture_logs();
    let mock = mock().await;
    let mut config = gateway_config(&mock.bootstrap());
    config.limits.max_connections = 20;
    config
        .limits
        .max_connections_per_source_overrides
        .insert("127.0.0.4".into(), 2);
    let gw = start_gateway_with(config).await.unwrap();
    let addr = gw.kafka_addr();

    let mut hog = Vec::new();
    for _ in 0..25 {
        hog.push(connect_from([127, 0, 0, 2], addr).await);
    }
    assert!(
        eventually(STEP, || refused(&gw, "per_source") == 15).await,
        "refused per source: {}",
        refused(&gw, "per_source")
    );
    assert!(eventually(STEP, || metric(&gw, "sluice_connections_open") == 10).await);
    // The first ten stay open; the rest were closed at accept.
    for (i, c) in hog.iter_mut().enumerate().skip(10) {
        assert!(c.closed_within(STEP).await, "hog connection {i} still open");
    }
    // Another source is served while the hog holds its ten.
    let mut other = connect_from([127, 0, 0, 3], addr).await;
    within(
        STEP,
        "other source",
        other.call(&MetadataRequest::default(), 12),
    )
    .await
    .expect("a second source was locked out");
    // An override: two for 127.0.0.4.
    let mut small: Vec<RawClient> = Vec::new();
    for _ in 0..3 {
        small.push(connect_from([127, 0, 0, 4], addr).await);
    }
    assert!(small[2].closed_within(STEP).await, "override not applied");
    assert!(eventually(STEP, || refused(&gw, "per_source") == 16).await);
    within(
        STEP,
        "override",
        small[0].call(&MetadataRequest::default(), 12),
    )
    .await
    .unwrap();
    // Slots come back when connections close.
    drop(hog);
    assert!(eventually(STEP, || metric(&gw, "sluice_connections_open") == 3).await);
    let mut back = connect_from([127, 0, 0, 2], addr).await;
    within(
        STEP,
        "hog again",
        back.call(&MetadataRequest::default(), 12),
    )
    .await
    .unwrap();
    assert_eq!(refused(&gw, "max_connections"), 0);
    gw.shutdown().await;
}

/// 500 HTTP requests on the Kafka port: every one is counted, but the logs hold at most
/// `ratelimit::BURST` lines of that kind per 10 s window, then one summary line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connections_do_not_flood_the_logs() {
    let logs = capture_logs();
    let mock = mock().await;
    let gw = start_gateway(&mock.bootstrap()).await.unwrap();
    let addr = gw.kafka_addr();
    const N: u64 = 500;
    let started = Instant::now();
    // The capture holds every test's lines: this test's are those naming its own clients.
    let mut peers = std::collections::HashSet::new();
    for _ in 0..N {
        let mut c = RawClient::connect(addr).await.unwrap();
        peers.insert(format!("peer={}", c.stream.local_addr().unwrap()));
        let _ = c
            .send_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await;
        assert!(c.closed_within(STEP).await);
    }
    let windows = started.elapsed().as_secs() / 10 + 1;
    let kind = "sluice_protocol_errors_total{kind=\"http_on_kafka_port\"}";
    assert!(eventually(STEP, || metric(&gw, kind) == N).await);
    gw.shutdown().await;
    let text = logs.contents();
    let lines = text
        .lines()
        .filter(|l| l.contains("HTTP request bytes on a Kafka port"))
        .filter(|l| l.split_whitespace().any(|w| peers.contains(w)))
        .count() as u64;
    assert!(
        lines >= 1 && lines <= sluice::ratelimit::BURST as u64 * windows,
        "{lines} log lines for {N} bad connections in {windows} window(s)"
    );
    let summary = text
        .lines()
        .find(|l| l.contains("similar `protocol_error` connection log lines"))
        .expect("a summary line of the suppressed lines");
    assert!(summary.contains("suppressed"), "{summary}");
}
