//! Several listener sets on one gateway: the default set (top-level `listen`, `security`) and
//! further `listeners`, each with its own bootstrap and broker ports, advertised host and client
//! security. A client on one set must only ever be told that set's addresses.
//!
//! Brokers: tansu for the end-to-end runs with librdkafka (PLAINTEXT and SASL_SSL with
//! SCRAM-SHA-512 side by side); the kafka-protocol mock cluster of `sluice_tests::mock` (three
//! brokers) where raw Metadata, FindCoordinator and DescribeCluster answers are checked port by
//! port.
//!
//! librdkafka calls that block run inside `block_in_place`; every client is dropped before the
//! gateway shuts down.

use kafka_protocol::messages::{DescribeClusterRequest, FindCoordinatorRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureRecord, Producer, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice::config::{
    ClientAuth, Config, ListenerConfig, ListenerSecurity, SaslMode, SecurityProtocol,
};
use sluice_tests::mock::{MockBroker, MockOptions};
use sluice_tests::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Upper bound of one step; a failure fails instead of hanging.
const STEP: Duration = Duration::from_secs(30);
/// How long a client may take to report a connection failure (bounds a slow machine only).
const FAIL_FAST: Duration = Duration::from_secs(10);

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

async fn gateway(config: Config) -> sluice::Gateway {
    within(STEP, "gateway start", start_gateway_with(config))
        .await
        .expect("starting the gateway")
}

async fn stop(gw: sluice::Gateway) {
    within(Duration::from_secs(20), "gateway shutdown", gw.shutdown()).await;
}

/// A listener set on a free port of 127.0.0.1.
fn listener(name: &str, security: ListenerSecurity) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        listen: "127.0.0.1:0".into(),
        advertised_host: None,
        security,
    }
}

/// SASL_SSL with SCRAM-SHA-512, gateway-managed, with the test PKI's server certificate.
fn sasl_ssl() -> ListenerSecurity {
    ListenerSecurity {
        protocol: SecurityProtocol::SaslSsl,
        tls: Some(server_tls(ClientAuth::None, None)),
        sasl: Some(server_sasl(&["SCRAM-SHA-512"], SaslMode::GatewayManaged)),
    }
}

/// Produces `n` records to partition 0 of `topic` through `bootstrap` and reads them back.
async fn round_trip(bootstrap: &str, security: &ClientSecurity, topic: &str, n: usize) {
    let ctx = RecordingContext::default();
    let p = secure_producer(bootstrap, security, ctx.clone());
    for i in 0..n {
        let (key, value) = (format!("key-{i}"), format!("value-{i}"));
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .partition(0);
        within(STEP, "delivery report", p.send(record, Duration::ZERO))
            .await
            .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e} (client errors: {ctx:?})"));
    }
    close(p);
    let ctx = RecordingContext::default();
    let mut c = consumer_config(bootstrap, &format!("{topic}-reader"));
    security.apply(&mut c);
    let c: StreamConsumer<RecordingContext> = fast(&mut c)
        .create_with_context(ctx.clone())
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    while got.len() < n {
        let m = within(STEP, "consuming", c.recv())
            .await
            .unwrap_or_else(|e| panic!("consuming {topic}: {e} (client errors: {ctx:?})"));
        got.push((
            String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        ));
    }
    close(c);
    let want: Vec<_> = (0..n)
        .map(|i| (format!("key-{i}"), format!("value-{i}")))
        .collect();
    assert_eq!(got, want, "records read back through {bootstrap}");
}

/// The brokers (node id → host:port) librdkafka learns from Metadata through `bootstrap`.
fn client_metadata(bootstrap: &str, security: &ClientSecurity) -> BTreeMap<i32, (String, u16)> {
    let ctx = RecordingContext::default();
    let p = secure_producer(bootstrap, security, ctx.clone());
    let brokers = blocking(|| {
        let md = p
            .client()
            .fetch_metadata(None, STEP)
            .unwrap_or_else(|e| panic!("metadata through {bootstrap}: {e} ({ctx:?})"));
        md.brokers()
            .iter()
            .map(|b| {
                let port = u16::try_from(b.port()).expect("port");
                (b.id(), (b.host().to_string(), port))
            })
            .collect()
    });
    close(p);
    brokers
}

/// Gateway ports of every broker of listener set `name` (node id → port).
fn set_ports(gw: &sluice::Gateway, name: &str, nodes: &[i32]) -> BTreeMap<i32, u16> {
    nodes
        .iter()
        .map(|n| {
            let addr = gw
                .listener_broker_addr(name, *n)
                .unwrap_or_else(|| panic!("broker {n} has no port in listener set `{name}`"));
            (*n, addr.port())
        })
        .collect()
}

/// Raw Metadata through `addr`: node id → (host, port) of every broker listed.
async fn raw_metadata(addr: SocketAddr) -> BTreeMap<i32, (String, u16)> {
    let mut c = RawClient::connect(addr).await.expect("connecting");
    let m = within(STEP, "metadata", c.call(&MetadataRequest::default(), 12))
        .await
        .expect("Metadata answered");
    m.brokers
        .iter()
        .map(|b| {
            let port = u16::try_from(b.port).expect("port");
            (b.node_id.0, (b.host.to_string(), port))
        })
        .collect()
}

/// Every broker at `host` on the ports of `ports`.
fn at(host: &str, ports: &BTreeMap<i32, u16>) -> BTreeMap<i32, (String, u16)> {
    ports
        .iter()
        .map(|(n, p)| (*n, (host.to_string(), *p)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// PLAINTEXT and SASL_SSL side by side, real clients
// ---------------------------------------------------------------------------------------------

/// A default PLAINTEXT set and a SASL_SSL (SCRAM-SHA-512) set in front of tansu: both carry
/// traffic, each set's Metadata names only its own broker ports, and a PLAINTEXT client gets
/// nowhere on the SASL_SSL set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_sasl_ssl_sets_each_name_only_their_own_ports() {
    capture_logs();
    let broker = within(STEP, "tansu start", Tansu::start())
        .await
        .expect("starting tansu");
    let mut config = gateway_config(&broker.bootstrap());
    config.listeners = vec![listener("secure", sasl_ssl())];
    let gw = gateway(config).await;
    put_service_account(gw.admin_addr(), "alice", "alice-pass-1", &[]).await;
    let plain_bootstrap = gw.kafka_addr().to_string();
    let secure_addr = gw.listener_addr("secure").expect("the secure set");
    let secure_bootstrap = secure_addr.to_string();
    assert_eq!(gw.listener_addr("default"), Some(gw.kafka_addr()));
    assert_eq!(gw.listener_addr("nope"), None);
    assert_ne!(secure_addr.port(), gw.kafka_addr().port());
    let scram = ClientSecurity::sasl(true, "SCRAM-SHA-512", "alice", "alice-pass-1");

    round_trip(&plain_bootstrap, &ClientSecurity::default(), "ls-plain", 5).await;
    round_trip(&secure_bootstrap, &scram, "ls-secure", 5).await;

    // The broker was learnt once and has a port in each set, and the two differ.
    let plain_view = client_metadata(&plain_bootstrap, &ClientSecurity::default());
    let nodes: Vec<i32> = plain_view.keys().copied().collect();
    assert!(!nodes.is_empty(), "Metadata lists the broker");
    let plain_ports = set_ports(&gw, "default", &nodes);
    let secure_ports = set_ports(&gw, "secure", &nodes);
    for n in &nodes {
        assert_ne!(
            plain_ports[n], secure_ports[n],
            "node {n}: one port per set"
        );
        assert_eq!(gw.broker_addr(*n).map(|a| a.port()), Some(plain_ports[n]));
    }
    assert_eq!(plain_view, at("127.0.0.1", &plain_ports));
    assert_eq!(
        client_metadata(&secure_bootstrap, &scram),
        at("127.0.0.1", &secure_ports),
        "a SASL_SSL client is only told the SASL_SSL set's ports"
    );
    // Raw Metadata on the plaintext set, through its bootstrap and its broker port.
    assert_eq!(
        raw_metadata(gw.kafka_addr()).await,
        at("127.0.0.1", &plain_ports)
    );
    let plain_broker = gw.broker_addr(nodes[0]).unwrap();
    assert_eq!(
        raw_metadata(plain_broker).await,
        at("127.0.0.1", &plain_ports)
    );

    // A PLAINTEXT client on the SASL_SSL set: librdkafka sees the transport fail.
    let ctx = RecordingContext::default();
    let p = secure_producer(&secure_bootstrap, &ClientSecurity::default(), ctx.clone());
    let record = FutureRecord::to("ls-refused")
        .key("k")
        .payload("v")
        .partition(0);
    let delivery = p.send_result(record).expect("enqueueing");
    let seen = ctx
        .wait_for_error(
            &[
                RDKafkaErrorCode::BrokerTransportFailure,
                RDKafkaErrorCode::AllBrokersDown,
            ],
            FAIL_FAST,
        )
        .await;
    assert!(seen.is_some(), "no transport failure: {:?}", ctx.errors());
    p.purge(PurgeConfig::default().queue().inflight());
    let outcome = within(STEP, "delivery report", delivery).await;
    assert!(
        !matches!(outcome, Ok(Ok(_))),
        "a plaintext client delivered through the SASL_SSL set"
    );
    close(p);
    // Nor do raw plaintext frames get an answer on the SASL_SSL set's broker port.
    let secure_broker = gw.listener_broker_addr("secure", nodes[0]).unwrap();
    let mut raw = RawClient::connect(secure_broker).await.expect("connecting");
    let (_, frame) = raw.encode(&MetadataRequest::default(), 12);
    raw.send_raw(&frame).await.expect("sending");
    assert!(
        raw.closed_within(STEP).await,
        "plaintext Metadata on a TLS broker port must be refused"
    );
    // The SCRAM password never reaches the logs.
    capture_logs().assert_absent(&["alice-pass-1"]);
    stop(gw).await;
}

// ---------------------------------------------------------------------------------------------
// Address rewriting per set, three brokers
// ---------------------------------------------------------------------------------------------

/// Two PLAINTEXT sets with different advertised hosts in front of three brokers: Metadata,
/// FindCoordinator and DescribeCluster through either set (bootstrap or broker port) name only
/// that set's host and ports, and each set's broker port reaches that broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broker_naming_response_uses_the_connections_set() {
    capture_logs();
    let mocks = MockBroker::cluster(3, 1).await.unwrap();
    let mut config = gateway_config(&mocks[0].bootstrap());
    let mut internal = listener("internal", ListenerSecurity::default());
    internal.advertised_host = Some("localhost".into());
    config.listeners = vec![internal];
    let gw = gateway(config).await;
    gw.refresh_brokers().await.expect("learning the brokers");
    let nodes = [1, 2, 3];
    let sets = [
        ("default", "127.0.0.1", set_ports(&gw, "default", &nodes)),
        ("internal", "localhost", set_ports(&gw, "internal", &nodes)),
    ];
    for n in nodes {
        assert_ne!(sets[0].2[&n], sets[1].2[&n], "node {n}: one port per set");
    }
    for (name, host, ports) in &sets {
        let bootstrap = gw.listener_addr(name).unwrap();
        let mut entry_points = vec![bootstrap];
        entry_points.extend(
            nodes
                .iter()
                .map(|n| gw.listener_broker_addr(name, *n).unwrap()),
        );
        for addr in entry_points {
            assert_eq!(
                raw_metadata(addr).await,
                at(host, ports),
                "Metadata through `{name}` at {addr}"
            );
            let mut c = RawClient::connect(addr).await.unwrap();
            let d = within(
                STEP,
                "describe cluster",
                c.call(&DescribeClusterRequest::default(), 0),
            )
            .await
            .unwrap();
            let described: BTreeMap<i32, (String, u16)> = d
                .brokers
                .iter()
                .map(|b| (b.broker_id.0, (b.host.to_string(), b.port as u16)))
                .collect();
            assert_eq!(
                described,
                at(host, ports),
                "DescribeCluster through `{name}` at {addr}"
            );
        }
        // The broker behind a set's broker port is that broker: FindCoordinator sent there
        // names it, with this set's host and port.
        for n in nodes {
            let addr = gw.listener_broker_addr(name, n).unwrap();
            let mut c = RawClient::connect(addr).await.unwrap();
            let r = within(
                STEP,
                "find coordinator",
                c.call(
                    &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
                    3,
                ),
            )
            .await
            .unwrap();
            assert_eq!(r.node_id.0, n, "`{name}` port of node {n}");
            assert_eq!(r.host.as_str(), *host);
            assert_eq!(r.port, i32::from(ports[&n]));
        }
    }
    stop(gw).await;
}

/// A second set with a fixed base port serves node `n` on `base + 1 + (n - minNodeId)`, while
/// the default set keeps free ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_base_port_set_maps_node_n_to_base_plus_n() {
    capture_logs();
    let mocks = MockBroker::cluster(3, 1).await.unwrap();
    for _ in 0..10 {
        let base = free_range(4);
        let mut config = gateway_config(&mocks[0].bootstrap());
        config.brokers.min_node_id = 1;
        config.brokers.max_nodes = 3;
        let mut fixed = listener("fixed", ListenerSecurity::default());
        fixed.listen = format!("127.0.0.1:{base}");
        config.listeners = vec![fixed];
        let Ok(gw) = start_gateway_with(config).await else {
            continue; // the bootstrap port was taken in the meantime
        };
        gw.refresh_brokers().await.expect("learning the brokers");
        let ports = set_ports(&gw, "fixed", &[1, 2, 3]);
        let want: BTreeMap<i32, u16> = (1..=3).map(|n| (n, base + n as u16)).collect();
        if ports != want {
            // A reserved port was taken by someone else between the check and the start.
            stop(gw).await;
            continue;
        }
        assert_eq!(gw.listener_addr("fixed").unwrap().port(), base);
        assert_eq!(
            raw_metadata(gw.listener_addr("fixed").unwrap()).await,
            at("127.0.0.1", &want)
        );
        stop(gw).await;
        return;
    }
    panic!("no free port range found");
}

/// Connections are counted per listener set (accepted, open now), beside the gateway-wide
/// totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_counted_per_listener_set() {
    capture_logs();
    let mock = MockBroker::start(MockOptions::default()).await.unwrap();
    let mut config = gateway_config(&mock.bootstrap());
    config.listeners = vec![listener("side", ListenerSecurity::default())];
    let gw = gateway(config).await;
    let series = |name: &str, set: &str| format!("{name}{{listener=\"{set}\"}}");
    let mut open = Vec::new();
    for addr in [
        gw.kafka_addr(),
        gw.kafka_addr(),
        gw.listener_addr("side").unwrap(),
    ] {
        // An answered request: the connection is accepted and its session running.
        raw_metadata(addr).await;
        let mut raw = RawClient::connect(addr).await.unwrap();
        raw.call(&MetadataRequest::default(), 12).await.unwrap();
        open.push(raw);
    }
    // Three were used by `raw_metadata` and closed; three stay open.
    assert_eq!(
        metric(&gw, &series("sluice_listener_connections_total", "default")),
        4
    );
    assert_eq!(
        metric(&gw, &series("sluice_listener_connections_total", "side")),
        2
    );
    assert_eq!(metric(&gw, "sluice_connections_total"), 6);
    assert!(
        eventually(STEP, || {
            metric(&gw, &series("sluice_listener_connections_open", "default")) == 2
                && metric(&gw, &series("sluice_listener_connections_open", "side")) == 1
        })
        .await,
        "open connections per set"
    );
    drop(open);
    assert!(
        eventually(STEP, || {
            metric(&gw, &series("sluice_listener_connections_open", "default")) == 0
                && metric(&gw, &series("sluice_listener_connections_open", "side")) == 0
        })
        .await,
        "closed connections are no longer counted as open"
    );
    stop(gw).await;
}

/// A port P such that P..P+n are all free (at the time of asking).
fn free_range(n: u16) -> u16 {
    loop {
        let p = free_port();
        if p.checked_add(n).is_none() {
            continue;
        }
        let held: Result<Vec<_>, _> = (p..p + n)
            .map(|q| std::net::TcpListener::bind(("127.0.0.1", q)))
            .collect();
        if held.is_ok() {
            return p;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Duplicate names and colliding port ranges refuse to start, each problem with its key.
#[tokio::test]
async fn invalid_listener_sets_are_refused_with_their_keys() {
    let mut config = gateway_config("127.0.0.1:9092");
    config.listen = "127.0.0.1:7000".into();
    config.brokers.max_nodes = 10;
    let mut a = listener("internal", ListenerSecurity::default());
    a.listen = "127.0.0.1:7010".into();
    let mut b = listener("internal", ListenerSecurity::default());
    b.listen = "127.0.0.1:7100".into();
    let mut c = listener("tls", ListenerSecurity::default());
    c.listen = "127.0.0.1:7105".into();
    c.security.protocol = SecurityProtocol::Ssl;
    config.listeners = vec![a, b, c];
    let err = match start_gateway_with(config).await {
        Ok(gw) => {
            stop(gw).await;
            panic!("an invalid configuration started");
        }
        Err(e) => format!("{e:#}"),
    };
    for expected in [
        "listeners[0].listen: ports 7010..=7020",
        "overlap listener `default`'s ports 7000..=7010",
        "listeners[1].name: duplicate listener name `internal` (also listeners[0])",
        "listeners[2].listen: ports 7105..=7115",
        "overlap listener `internal`'s ports 7100..=7110",
        "listeners[2].security.tls: required when listeners[2].security.protocol is SSL",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
}
