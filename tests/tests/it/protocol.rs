//! Protocol correctness and hostile input, at the level of raw Kafka frames.
//!
//! Most tests run against the mock broker of `sluice_tests::mock` (fault injection, request
//! counters); tansu is used where a real broker's answers matter (ApiVersions, pipelining).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeClusterRequest, FetchRequest,
    FetchResponse, FindCoordinatorRequest, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use sluice::advertise::gateway_versions;
use sluice::Gateway;
use sluice_tests::mock::{topic, Fault, MockBroker, MockOptions};
use sluice_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Upper bound of every single step; a failure fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);
/// How fast a connection the gateway rejects must be closed.
const PROMPT: Duration = Duration::from_secs(3);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    within(STEP, what, f).await
}

fn protocol_errors(gw: &Gateway, kind: &str) -> u64 {
    metric(
        gw,
        &format!("sluice_protocol_errors_total{{kind=\"{kind}\"}}"),
    )
}

fn all_protocol_errors(gw: &Gateway) -> u64 {
    gw.metrics_text()
        .lines()
        .filter(|l| l.starts_with("sluice_protocol_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(s("sluice-tests"))
        .with_client_software_version(s("1.0"))
}

fn metadata_request(topics: &[&str]) -> MetadataRequest {
    MetadataRequest::default().with_topics(Some(
        topics
            .iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(topic(t))))
            .collect(),
    ))
}

fn produce_request(acks: i16, txn: Option<&str>, records: Option<Bytes>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5_000)
        .with_transactional_id(txn.map(|t| s(t).into()))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("pipeline"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(records)])])
}

/// `frame` (length prefix included) with its request api_version field replaced.
fn with_wire_version(frame: &Bytes, version: i16) -> Bytes {
    let mut f = BytesMut::from(&frame[..]);
    f[6..8].copy_from_slice(&version.to_be_bytes());
    f.freeze()
}

/// Decodes a response frame (without length prefix) of API `R` at `version`.
fn decode<R: Request>(mut frame: Bytes, version: i16) -> (i32, R::Response) {
    let key = ApiKey::try_from(R::KEY).unwrap();
    let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
        .unwrap_or_else(|e| panic!("{key:?} v{version} response header: {e}"));
    let body = R::Response::decode(&mut frame, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version} response body: {e}"));
    assert!(
        frame.is_empty(),
        "{key:?} v{version}: {} trailing bytes",
        frame.len()
    );
    (header.correlation_id, body)
}

/// Decodes the gateway's answer to a too-new ApiVersions request: header v0, body v0.
fn decode_too_new(mut frame: Bytes) -> (i32, ApiVersionsResponse) {
    let header = ResponseHeader::decode(&mut frame, 0).unwrap();
    let body = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
    assert!(
        frame.is_empty(),
        "v0 body expected, {} bytes left",
        frame.len()
    );
    (header.correlation_id, body)
}

/// A fresh connection that is served a Metadata request normally.
async fn assert_served(addr: SocketAddr, what: &str) -> MetadataResponse {
    bounded(what, async {
        let mut c = RawClient::connect(addr).await.unwrap();
        c.call(&metadata_request(&[]), 12)
            .await
            .unwrap_or_else(|e| panic!("{what}: a normal client is not served: {e:#}"))
    })
    .await
}

/// Creates topic `pipeline` through `c` by Metadata auto-creation, polling until the broker
/// reports it with partitions; its Metadata answer.
async fn create_pipeline_topic(c: &mut RawClient) -> MetadataResponse {
    bounded("topic auto-creation", async {
        loop {
            let m = c
                .call(
                    &metadata_request(&["pipeline"]).with_allow_auto_topic_creation(true),
                    12,
                )
                .await
                .unwrap();
            if m.topics
                .first()
                .is_some_and(|t| t.error_code == 0 && !t.partitions.is_empty())
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

async fn start_mock() -> MockBroker {
    MockBroker::start(MockOptions::default()).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// Every API key is forwarded
// ---------------------------------------------------------------------------------------------

/// A request frame with an API key kafka-protocol does not know.
fn unknown_frame(api_key: i16, correlation_id: i32, client_id_len: i16, tail: &[u8]) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i16(api_key);
    body.put_i16(7);
    body.put_i32(correlation_id);
    body.put_i16(client_id_len);
    body.put_slice(tail);
    let mut f = BytesMut::new();
    f.put_i32(body.len() as i32);
    f.put_slice(&body);
    f.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_key_is_forwarded_byte_for_byte() {
    init_logging();
    let mock = start_mock().await;
    let gw = start_gateway(&mock.bootstrap()).await.unwrap();
    let mut tail = b"odd-client".to_vec();
    tail.extend(0u8..=255); // bytes that are no valid body of any known API
    let frame = unknown_frame(9999, 4242, 10, &tail);

    // The mock closes on unknown keys: the frame arrived intact, then the client is closed.
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    c.send_raw(&frame).await.unwrap();
    assert!(
        c.closed_within(PROMPT).await,
        "broker closed on an unknown key but the client connection stayed open"
    );
    assert_eq!(mock.unknown_frames(), vec![frame.slice(4..)]);
    assert_eq!(metric(&gw, "sluice_requests_total{api=\"unknown\"}"), 1);

    // With an echoing broker the answers come back byte for byte, in order, and the
    // connection stays usable for known APIs. The second frame's header would be malformed
    // for a known key (client id longer than the frame, negative key): it is not the
    // gateway's business for keys it does not know.
    mock.set_fault(Fault::EchoUnknown);
    let odd = unknown_frame(-2, 7, 500, b"xyz");
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    let (meta_cid, meta) = c.encode(&metadata_request(&[]), 9);
    let mut wire = BytesMut::new();
    wire.put_slice(&frame);
    wire.put_slice(&odd);
    wire.put_slice(&meta);
    c.send_raw(&wire).await.unwrap();
    for sent in [&frame, &odd] {
        let got = bounded("echo", c.read_frame()).await.unwrap();
        assert_eq!(&got[..4], &sent[8..12], "correlation id first");
        assert_eq!(&got[4..], &sent[4..], "request bytes echoed unchanged");
    }
    let (cid, _) = decode::<MetadataRequest>(bounded("metadata", c.read_frame()).await.unwrap(), 9);
    assert_eq!(cid, meta_cid);
    assert_eq!(mock.unknown_frames().len(), 3);
    assert_eq!(mock.unknown_frames()[2], odd.slice(4..));
    drop(c);
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// ApiVersions
// ---------------------------------------------------------------------------------------------

fn ranges(resp: &ApiVersionsResponse) -> BTreeMap<i16, (i16, i16)> {
    resp.api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_is_the_intersection_with_tansu() {
    init_logging();
    let broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    for version in 0..=3i16 {
        let direct = bounded("direct ApiVersions", async {
            let mut c = RawClient::connect(broker.addr).await.unwrap();
            c.call(&api_versions_request(), version).await.unwrap()
        })
        .await;
        let via = bounded("gateway ApiVersions", async {
            let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
            c.call(&api_versions_request(), version).await.unwrap()
        })
        .await;
        assert_eq!(
            direct.error_code, 0,
            "tansu rejected ApiVersions v{version}"
        );
        assert_eq!(via.error_code, 0, "v{version}");
        let (d, g) = (ranges(&direct), ranges(&via));
        assert!(!g.is_empty());
        for (key, &(min, max)) in &g {
            let &(dmin, dmax) = d
                .get(key)
                .unwrap_or_else(|| panic!("v{version}: key {key} advertised but not by tansu"));
            assert!(
                min <= max,
                "v{version} key {key}: empty range {min}..={max}"
            );
            assert!(
                dmin <= min && max <= dmax,
                "v{version} key {key} not within tansu's"
            );
            match ApiKey::try_from(*key) {
                Ok(k) => {
                    let v = k.valid_versions();
                    assert!(
                        v.min <= min && max <= v.max,
                        "{k:?} not within kafka-protocol's"
                    );
                    assert_eq!((min, max), (dmin.max(v.min), dmax.min(v.max)), "{k:?}");
                }
                Err(_) => assert_eq!((min, max), (dmin, dmax), "unknown key {key}"),
            }
        }
        for (key, &(dmin, dmax)) in &d {
            if let Ok(k) = ApiKey::try_from(*key) {
                let v = k.valid_versions();
                let overlap = dmin.max(v.min) <= dmax.min(v.max);
                assert_eq!(g.contains_key(key), overlap, "v{version} {k:?}");
            }
        }
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_new_api_versions_is_answered_locally_and_the_connection_stays_usable() {
    init_logging();
    let broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let supported = ApiKey::ApiVersions.valid_versions();
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    for wire_version in [supported.max + 1, 99, i16::MAX] {
        let (cid, frame) = c.encode(&api_versions_request(), 3);
        c.send_raw(&with_wire_version(&frame, wire_version))
            .await
            .unwrap();
        let (got_cid, resp) = decode_too_new(bounded("too new", c.read_frame()).await.unwrap());
        assert_eq!(got_cid, cid);
        assert_eq!(
            resp.error_code, 35,
            "UNSUPPORTED_VERSION for v{wire_version}"
        );
        assert_eq!(
            ranges(&resp),
            BTreeMap::from([(18, (supported.min, supported.max))])
        );
    }
    assert_eq!(
        metric(&gw, "sluice_local_responses_total{api=\"ApiVersions\"}"),
        3
    );
    // The same connection still works.
    let resp = bounded("retry", c.call(&api_versions_request(), 3))
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);
    assert!(resp.api_keys.len() > 5);
    let meta = bounded("metadata", c.call(&metadata_request(&[]), 12))
        .await
        .unwrap();
    assert_eq!(meta.brokers.len(), 1);
    assert_eq!(
        meta.brokers[0].port,
        i32::from(gw.broker_addr(TANSU_NODE_ID).unwrap().port())
    );
    drop(c);
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Pipelining
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Expect {
    Metadata(i16),
    ApiVersions(i16),
    TooNewApiVersions,
    Produce(i16),
}

struct Pipeline {
    wire: BytesMut,
    expected: Vec<(i32, Expect)>,
    produce_requests: u64,
    acks0: usize,
}

/// `n` mixed requests: Metadata, ApiVersions, Produce acks=1/-1/0, a too-new ApiVersions in
/// the middle, and an acks=0 Produce last. Without `acks0`, acks=0 requests become acks=1.
fn pipeline(c: &mut RawClient, n: usize, real_records: bool, txn: bool, acks0: bool) -> Pipeline {
    let mut p = Pipeline {
        wire: BytesMut::new(),
        expected: Vec::new(),
        produce_requests: 0,
        acks0: 0,
    };
    let produce = |c: &mut RawClient, acks: i16, version: i16, i: usize| {
        let records = real_records.then(|| record_batch(&format!("record-{i}")));
        let txn_id = (txn && i % 2 == 0).then_some("tx-1");
        let acks = if acks == 0 && !acks0 { 1 } else { acks };
        let (cid, f) = c.encode(&produce_request(acks, txn_id, records), version);
        (cid, f, (acks != 0).then_some(Expect::Produce(version)))
    };
    for i in 0..n {
        let (cid, frame, expect) = if i == n / 2 {
            let (cid, frame) = c.encode(&api_versions_request(), 3);
            (
                cid,
                with_wire_version(&frame, 99),
                Some(Expect::TooNewApiVersions),
            )
        } else if i == n - 1 {
            produce(c, 0, 9, i)
        } else {
            match i % 6 {
                0 => {
                    let v = [1, 9, 12][i / 6 % 3];
                    let (cid, f) = c.encode(&metadata_request(&["pipeline"]), v);
                    (cid, f, Some(Expect::Metadata(v)))
                }
                1 => {
                    let (cid, f) = c.encode(&api_versions_request(), 3);
                    (cid, f, Some(Expect::ApiVersions(3)))
                }
                2 => produce(c, 1, 9, i),
                3 => produce(c, 0, 3, i),
                4 => produce(c, -1, 8, i),
                _ => produce(c, 0, 9, i),
            }
        };
        if frame[4..6] == 0i16.to_be_bytes() {
            p.produce_requests += 1;
            if expect.is_none() {
                p.acks0 += 1;
            }
        }
        p.wire.put_slice(&frame);
        if let Some(e) = expect {
            p.expected.push((cid, e));
        }
    }
    p
}

/// Reads one response per expected entry and checks each correlation id and body.
async fn read_in_order(c: &mut RawClient, expected: &[(i32, Expect)]) {
    for (i, &(cid, expect)) in expected.iter().enumerate() {
        let frame = bounded("pipelined response", c.read_frame())
            .await
            .unwrap_or_else(|e| panic!("response {i} ({expect:?}): {e:#}"));
        let got = match expect {
            Expect::Metadata(v) => {
                let (got, m) = decode::<MetadataRequest>(frame, v);
                assert!(!m.brokers.is_empty());
                got
            }
            Expect::ApiVersions(v) => {
                let (got, m) = decode::<ApiVersionsRequest>(frame, v);
                assert_eq!(m.error_code, 0);
                got
            }
            Expect::TooNewApiVersions => {
                let (got, m) = decode_too_new(frame);
                assert_eq!(m.error_code, 35);
                got
            }
            Expect::Produce(v) => {
                let (got, m) = decode::<ProduceRequest>(frame, v);
                assert_eq!(m.responses.len(), 1);
                got
            }
        };
        assert_eq!(got, cid, "response {i} ({expect:?}) out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_mock() {
    init_logging();
    let mock = start_mock().await;
    let gw = start_gateway(&mock.bootstrap()).await.unwrap();

    // 1. Fifty requests in one write.
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    let produce_before = mock.requests_for(ApiKey::Produce as i16);
    let p = pipeline(&mut c, 50, false, true, true);
    assert!(p.acks0 >= 8);
    bounded("write", c.send_raw(&p.wire)).await.unwrap();
    read_in_order(&mut c, &p.expected).await;
    // The acks=0 Produce last got no answer: the next frame answers the next request.
    let meta = bounded("after pipeline", c.call(&metadata_request(&[]), 12))
        .await
        .unwrap();
    assert_eq!(meta.brokers.len(), 1);
    // Every Produce, acks=0 included, reached the broker (it answers in order, so all were
    // handled before the last Metadata).
    assert_eq!(
        mock.requests_for(ApiKey::Produce as i16) - produce_before,
        p.produce_requests
    );
    assert_eq!(
        metric(&gw, "sluice_local_responses_total{api=\"ApiVersions\"}"),
        1
    );

    // 2. The same kind of stream dribbled in 3-byte writes: frame boundaries never line up
    // with reads.
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    let p = pipeline(&mut c, 20, false, false, true);
    bounded("dribble", async {
        for chunk in p.wire.chunks(3) {
            c.send_raw(chunk).await.unwrap();
        }
    })
    .await;
    read_in_order(&mut c, &p.expected).await;
    let meta = bounded("after dribble", c.call(&metadata_request(&[]), 12))
        .await
        .unwrap();
    assert_eq!(meta.brokers.len(), 1);
    drop(c);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_tansu() {
    init_logging();
    let broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    // Create the topic first (auto-creation on Metadata), so that acks=0 produce requests
    // do not fail: a broker may close the connection on a failed acks=0 produce.
    let created = create_pipeline_topic(&mut c).await;
    assert_eq!(created.topics.len(), 1);

    // tansu 0.6 answers acks=0 Produce requests (a broker fault: Kafka sends no response),
    // which the gateway rightly treats as an out-of-order answer. Detect it on a direct
    // connection and leave acks=0 out against such a broker.
    let tansu_answers_acks0 = bounded("acks=0 probe", async {
        let mut direct = RawClient::connect(broker.addr).await.unwrap();
        let (acks0_cid, f) =
            direct.encode(&produce_request(0, None, Some(record_batch("probe"))), 9);
        direct.send_raw(&f).await.unwrap();
        let (_, f) = direct.encode(&metadata_request(&[]), 12);
        direct.send_raw(&f).await.unwrap();
        let frame = direct.read_frame().await.unwrap();
        i32::from_be_bytes(frame[..4].try_into().unwrap()) == acks0_cid
    })
    .await;
    if tansu_answers_acks0 {
        eprintln!(
            "tansu answers acks=0 Produce requests: pipelining them is tested on the mock only"
        );
    }

    let p = pipeline(&mut c, 50, true, false, !tansu_answers_acks0);
    bounded("write", c.send_raw(&p.wire)).await.unwrap();
    read_in_order(&mut c, &p.expected).await;
    let meta = bounded("after pipeline", c.call(&metadata_request(&[]), 12))
        .await
        .unwrap();
    assert!(!meta.brokers.is_empty());
    drop(c);
    gw.shutdown().await;
}

/// A response no stage reads (Fetch v12 here) is streamed through instead of held whole: a
/// multi-MB answer reaches the client byte for byte as the broker sent it, and the answers
/// pipelined around it (a rewritten Metadata, another streamed Fetch) keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_passthrough_responses_are_streamed_unchanged_and_in_order() {
    init_logging();
    // Bytes that differ from their neighbours, so a misplaced or repeated piece would show.
    let payload: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let mock = MockBroker::start(MockOptions {
        fetch_payload: Bytes::from(payload.clone()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let gw = start_gateway(&mock.bootstrap()).await.unwrap();
    let fetch = fetch_request();

    let mut direct = RawClient::connect(mock.addr).await.unwrap();
    let (_, req) = direct.encode(&fetch, 12);
    direct.send_raw(&req).await.unwrap();
    let expected = bounded("direct fetch", direct.read_frame()).await.unwrap();
    assert!(
        expected.windows(payload.len()).any(|w| w == payload),
        "the broker's answer carries the payload"
    );

    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    let (fetch1, f1) = c.encode(&fetch, 12);
    let (meta_cid, meta) = c.encode(&metadata_request(&[]), 9);
    let (fetch2, f2) = c.encode(&fetch, 12);
    let mut wire = BytesMut::new();
    for f in [&f1, &meta, &f2] {
        wire.put_slice(f);
    }
    c.send_raw(&wire).await.unwrap();
    let got = bounded("first fetch", c.read_frame()).await.unwrap();
    assert_eq!(
        &got[..4],
        &fetch1.to_be_bytes(),
        "first answer: the first Fetch"
    );
    assert!(got[4..] == expected[4..], "first Fetch answer changed");
    let (cid, _) = decode::<MetadataRequest>(bounded("metadata", c.read_frame()).await.unwrap(), 9);
    assert_eq!(cid, meta_cid, "second answer: the Metadata");
    let got = bounded("second fetch", c.read_frame()).await.unwrap();
    assert_eq!(
        &got[..4],
        &fetch2.to_be_bytes(),
        "third answer: the second Fetch"
    );
    assert!(got[4..] == expected[4..], "second Fetch answer changed");
    assert_eq!(all_protocol_errors(&gw), 0);
    drop(c);
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Address rewriting
// ---------------------------------------------------------------------------------------------

const ADVERTISED: &str = "gw.sluice.test";

/// A Fetch of partition 0 of topic `big`, as large an answer as the broker will give.
fn fetch_request() -> FetchRequest {
    FetchRequest::default()
        .with_max_bytes(i32::MAX)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic("big"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(i32::MAX)])])
}

struct Rewriting {
    gw: Gateway,
    mock_ports: BTreeSet<i32>,
}

impl Rewriting {
    /// Asserts that an endpoint a client sees is the gateway's.
    fn check(&self, what: &str, node_id: i32, host: &str, port: i32) {
        assert_eq!(host, ADVERTISED, "{what}: host of node {node_id}");
        let gw_port = self
            .gw
            .broker_addr(node_id)
            .unwrap_or_else(|| panic!("{what}: gateway does not serve node {node_id}"))
            .port();
        assert_eq!(port, i32::from(gw_port), "{what}: port of node {node_id}");
        assert!(
            !self.mock_ports.contains(&port),
            "{what}: broker address leaked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_addresses_are_rewritten_everywhere() {
    init_logging();
    let mocks = MockBroker::cluster(3, 5).await.unwrap();
    let mut config = gateway_config(&mocks[0].bootstrap());
    config.advertised_host = Some(ADVERTISED.into());
    let gw = start_gateway_with(config).await.unwrap();
    let t = Rewriting {
        gw,
        mock_ports: mocks.iter().map(|m| i32::from(m.addr.port())).collect(),
    };
    let ids: BTreeSet<i32> = mocks.iter().map(|m| m.node_id).collect();
    let ports: BTreeSet<u16> = ids
        .iter()
        .map(|id| t.gw.broker_addr(*id).unwrap().port())
        .collect();
    assert_eq!(ports.len(), 3, "one gateway port per broker");

    let mut c = RawClient::connect(t.gw.kafka_addr()).await.unwrap();
    for v in 0..=13 {
        let m = bounded("metadata", c.call(&metadata_request(&["a", "b", "c"]), v))
            .await
            .unwrap();
        let seen: BTreeSet<i32> = m.brokers.iter().map(|b| b.node_id.0).collect();
        assert_eq!(seen, ids, "Metadata v{v} brokers");
        for b in &m.brokers {
            t.check(&format!("Metadata v{v}"), b.node_id.0, &b.host, b.port);
        }
        for topic in &m.topics {
            assert!(ids.contains(&topic.partitions[0].leader_id.0));
        }
    }
    for v in 0..=6 {
        let req = if v < 4 {
            FindCoordinatorRequest::default().with_key(s("group-1"))
        } else {
            FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![s("group-1"), s("group-2")])
        };
        let r = bounded("find coordinator", c.call(&req, v)).await.unwrap();
        if v < 4 {
            assert_eq!(r.error_code, 0);
            t.check(
                &format!("FindCoordinator v{v}"),
                r.node_id.0,
                &r.host,
                r.port,
            );
        } else {
            assert_eq!(r.coordinators.len(), 2, "FindCoordinator v{v} (batched)");
            for co in &r.coordinators {
                t.check(
                    &format!("FindCoordinator v{v}"),
                    co.node_id.0,
                    &co.host,
                    co.port,
                );
            }
        }
    }
    for v in 0..=2 {
        let r = bounded(
            "describe cluster",
            c.call(&DescribeClusterRequest::default(), v),
        )
        .await
        .unwrap();
        let seen: BTreeSet<i32> = r.brokers.iter().map(|b| b.broker_id.0).collect();
        assert_eq!(seen, ids, "DescribeCluster v{v}");
        for b in &r.brokers {
            t.check(
                &format!("DescribeCluster v{v}"),
                b.broker_id.0,
                &b.host,
                b.port,
            );
        }
    }
    for m in &mocks {
        m.set_fault(Fault::NodeEndpoints);
    }
    for v in 10..=13 {
        let r: ProduceResponse = bounded("produce", c.call(&produce_request(1, None, None), v))
            .await
            .unwrap();
        assert_eq!(r.node_endpoints.len(), 1, "Produce v{v} node endpoints");
        let e = &r.node_endpoints[0];
        t.check(&format!("Produce v{v}"), e.node_id.0, &e.host, e.port);
    }
    // Fetch v16+ answers small enough to hold: rewritten whole, whatever the lengths.
    for v in 16..=gateway_versions(ApiKey::Fetch).max {
        let r: FetchResponse = bounded("fetch", c.call(&fetch_request(), v)).await.unwrap();
        assert_eq!(r.node_endpoints.len(), 1, "Fetch v{v} node endpoints");
        let e = &r.node_endpoints[0];
        t.check(&format!("Fetch v{v}"), e.node_id.0, &e.host, e.port);
    }
    // The same through a broker port: that broker answers, and names itself through the
    // gateway.
    let mut direct = RawClient::connect(t.gw.broker_addr(7).unwrap())
        .await
        .unwrap();
    let r = bounded(
        "find coordinator",
        direct.call(&FindCoordinatorRequest::default(), 3),
    )
    .await
    .unwrap();
    assert_eq!(r.node_id.0, 7);
    t.check("FindCoordinator via broker port", 7, &r.host, r.port);
    let r = bounded("produce", direct.call(&produce_request(1, None, None), 12))
        .await
        .unwrap();
    assert_eq!(r.node_endpoints[0].node_id.0, 7);
    t.check(
        "Produce via broker port",
        7,
        &r.node_endpoints[0].host,
        r.node_endpoints[0].port,
    );
    drop((c, direct));
    t.gw.shutdown().await;
}

/// A Fetch v16+ answer too large to hold is streamed, and only its last section (the
/// KIP-951 endpoints) is held back and rewritten, in the same number of bytes: to the
/// gateway's address where that fits, left out (and counted) where it does not. The records
/// arrive byte for byte, and the connection stays in service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_fetch_answers_stream_with_their_endpoints_rewritten_in_place() {
    init_logging();
    let payload: Vec<u8> = (0..2 * 1024 * 1024 + 5)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let mock = MockBroker::start(MockOptions {
        fetch_payload: Bytes::from(payload.clone()),
        fault: Fault::NodeEndpoints,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let versions = 16..=gateway_versions(ApiKey::Fetch).max;
    // The broker names itself "127.0.0.1": a host as long or shorter fits in its bytes.
    for (host, fits) in [("127.0.0.1", true), ("gw.test", true), (ADVERTISED, false)] {
        let mut config = gateway_config(&mock.bootstrap());
        config.advertised_host = Some(host.into());
        let gw = start_gateway_with(config).await.unwrap();
        let port = i32::from(gw.broker_addr(mock.node_id).unwrap().port());
        let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
        for v in versions.clone() {
            let r: FetchResponse = bounded("fetch", c.call(&fetch_request(), v)).await.unwrap();
            let records = r.responses[0].partitions[0].records.as_ref().unwrap();
            assert!(records[..] == payload[..], "{host}, v{v}: records changed");
            if fits {
                assert_eq!(r.node_endpoints.len(), 1, "{host}, v{v}");
                let e = &r.node_endpoints[0];
                assert_eq!(
                    (e.node_id.0, &e.host[..], e.port),
                    (mock.node_id, host, port),
                    "v{v}"
                );
                assert_eq!(e.rack.as_deref(), Some("rack-1"));
            } else {
                assert!(r.node_endpoints.is_empty(), "{host}, v{v}");
            }
        }
        let dropped = if fits { 0 } else { versions.len() as u64 };
        assert_eq!(
            metric(&gw, "sluice_node_endpoints_dropped_total"),
            dropped,
            "{host}"
        );
        assert_eq!(all_protocol_errors(&gw), 0);
        drop(c);
        gw.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Upstream failures
// ---------------------------------------------------------------------------------------------

/// A two-broker mock cluster behind a gateway: faults go to broker 2, a bystander connection
/// to broker 1 must not notice.
async fn two_brokers() -> (Vec<MockBroker>, Gateway, RawClient) {
    let mocks = MockBroker::cluster(2, 1).await.unwrap();
    let gw = start_gateway(&mocks[0].bootstrap()).await.unwrap();
    let mut bystander = RawClient::connect(gw.broker_addr(1).unwrap())
        .await
        .unwrap();
    bounded("bystander", bystander.call(&metadata_request(&[]), 12))
        .await
        .unwrap();
    (mocks, gw, bystander)
}

async fn bystander_still_served(gw: &Gateway, bystander: &mut RawClient) {
    let m = bounded("bystander", bystander.call(&metadata_request(&[]), 12))
        .await
        .expect("the connection to the healthy broker was affected");
    assert_eq!(m.brokers.len(), 2);
    assert_served(gw.kafka_addr(), "new connection after an upstream failure").await;
    assert_served(gw.broker_addr(1).unwrap(), "new connection to broker 1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_closing_mid_request_closes_that_client_only() {
    init_logging();
    let (mocks, gw, mut bystander) = two_brokers().await;
    mocks[1].set_fault(Fault::CloseOn(ApiKey::Produce as i16));
    let mut victim = RawClient::connect(gw.broker_addr(2).unwrap())
        .await
        .unwrap();
    bounded("victim metadata", victim.call(&metadata_request(&[]), 12))
        .await
        .unwrap();
    let (_, f) = victim.encode(&produce_request(1, None, None), 9);
    victim.send_raw(&f).await.unwrap();
    assert!(victim.closed_within(PROMPT).await, "client not closed");
    assert_eq!(metric(&gw, "sluice_upstream_disconnects_total"), 1);
    bystander_still_served(&gw, &mut bystander).await;
    drop((victim, bystander));
    gw.shutdown().await;
}

/// A broker closes the connection after an acks=0 Produce (as Kafka does when such a request
/// fails, so that the client notices). No response is pending, but the client must still see
/// the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_closing_after_acks0_produce_closes_the_client() {
    init_logging();
    let (mocks, gw, _bystander) = two_brokers().await;
    mocks[1].set_fault(Fault::CloseOn(ApiKey::Produce as i16));
    let mut victim = RawClient::connect(gw.broker_addr(2).unwrap())
        .await
        .unwrap();
    bounded("victim metadata", victim.call(&metadata_request(&[]), 12))
        .await
        .unwrap();
    let (_, f) = victim.encode(&produce_request(0, None, None), 9);
    victim.send_raw(&f).await.unwrap();
    bounded("broker got the produce", async {
        while mocks[1].requests_for(ApiKey::Produce as i16) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        victim.closed_within(PROMPT).await,
        "the broker closed the connection but the client was not told"
    );
    drop(victim);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_correlation_id_closes_that_client_only() {
    init_logging();
    let (mocks, gw, mut bystander) = two_brokers().await;
    mocks[1].set_fault(Fault::WrongCorrelation);
    let mut victim = RawClient::connect(gw.broker_addr(2).unwrap())
        .await
        .unwrap();
    let (_, f) = victim.encode(&api_versions_request(), 3);
    victim.send_raw(&f).await.unwrap();
    assert!(victim.closed_within(PROMPT).await, "client not closed");
    assert_eq!(protocol_errors(&gw, "correlation_id_mismatch"), 1);
    bystander_still_served(&gw, &mut bystander).await;
    drop((victim, bystander));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_response_closes_that_client_only() {
    init_logging();
    let (mocks, gw, mut bystander) = two_brokers().await;
    mocks[1].set_fault(Fault::GarbageOn(ApiKey::Metadata as i16));
    let mut victim = RawClient::connect(gw.broker_addr(2).unwrap())
        .await
        .unwrap();
    // Unaffected APIs still work on that connection...
    bounded("api versions", victim.call(&api_versions_request(), 3))
        .await
        .unwrap();
    // ...the undecodable Metadata answer (which must be rewritten) closes it.
    let (_, f) = victim.encode(&metadata_request(&[]), 12);
    victim.send_raw(&f).await.unwrap();
    assert!(victim.closed_within(PROMPT).await, "client not closed");
    assert_eq!(protocol_errors(&gw, "undecodable_response"), 1);
    bystander_still_served(&gw, &mut bystander).await;
    drop((victim, bystander));
    gw.shutdown().await;
}

/// A Produce v10 relabelled v13 (topic ids instead of names): tansu answers with a body in
/// the v10 shape, which read as v13 holds a partition count of billions. The gateway reads
/// the answer for KIP-951 leader hints; decoding it unchecked made kafka-protocol reserve
/// hundreds of gigabytes and the process abort. Now that one connection is closed (or
/// answered, should the broker refuse the request), and everyone else is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabelled_produce_version_is_answered_without_harm() {
    init_logging();
    let broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    create_pipeline_topic(&mut c).await;
    let (_, v10) = c.encode(
        &produce_request(1, None, Some(record_batch("relabelled"))),
        10,
    );
    c.send_raw(&with_wire_version(&v10, 13)).await.unwrap();
    let outcome = bounded("the relabelled produce", async {
        match c.read_frame().await {
            Ok(frame) => format!("answered ({} bytes)", frame.len()),
            Err(_) => "closed".to_string(),
        }
    })
    .await;
    if outcome == "closed" {
        assert!(
            protocol_errors(&gw, "undecodable_response") >= 1,
            "closed without counting an undecodable response"
        );
    }
    // The gateway is still here (an abort would have ended this test's process) and serves
    // a new client.
    assert_served(gw.kafka_addr(), "after the relabelled produce").await;
    eprintln!("relabelled Produce v13: {outcome}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upstream_frames_close_that_client_only() {
    init_logging();
    let (mocks, gw, mut bystander) = two_brokers().await;
    let cases: [(&str, Bytes); 2] = [
        (
            "negative length",
            Bytes::from_static(&[0xff, 0xff, 0xff, 0x00, 0, 0, 0, 1]),
        ),
        // 200 MiB: over the default 100 MiB limit.
        (
            "oversized",
            Bytes::from_static(&[0x0c, 0x80, 0x00, 0x00, 0, 0, 0, 1]),
        ),
    ];
    for (i, (what, bytes)) in cases.into_iter().enumerate() {
        mocks[1].set_fault(Fault::RawOn(ApiKey::ApiVersions as i16, bytes));
        let mut victim = RawClient::connect(gw.broker_addr(2).unwrap())
            .await
            .unwrap();
        let (_, f) = victim.encode(&api_versions_request(), 3);
        victim.send_raw(&f).await.unwrap();
        assert!(
            victim.closed_within(PROMPT).await,
            "{what}: client not closed"
        );
        assert_eq!(
            protocol_errors(&gw, "bad_upstream_frame"),
            i as u64 + 1,
            "{what}"
        );
        bystander_still_served(&gw, &mut bystander).await;
    }
    drop(bystander);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_closes_the_client_promptly() {
    init_logging();
    let (mut mocks, gw, mut bystander) = two_brokers().await;
    let port2 = gw.broker_addr(2).unwrap();
    drop(mocks.pop()); // broker 2 stops listening
    let before = metric(&gw, "sluice_upstream_connect_errors_total");
    let mut victim = RawClient::connect(port2).await.unwrap();
    let (_, f) = victim.encode(&metadata_request(&[]), 12);
    victim.send_raw(&f).await.unwrap();
    assert!(victim.closed_within(PROMPT).await, "client not closed");
    assert_eq!(
        metric(&gw, "sluice_upstream_connect_errors_total"),
        before + 1
    );
    bystander_still_served(&gw, &mut bystander).await;
    drop((victim, bystander, mocks));
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A TLS 1.2/1.3 ClientHello record as a TLS client sends first.
fn client_hello() -> Vec<u8> {
    let mut hello = vec![0x01, 0x00, 0x00, 0xc4, 0x03, 0x03];
    hello.extend(noise(42, 32)); // random
    hello.extend([0x00, 0x00, 0x04, 0x13, 0x01, 0x13, 0x02, 0x01, 0x00]);
    hello.resize(0xc8, 0);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, 0xc8];
    record.extend(hello);
    record
}

/// Sends `bytes` on a new connection and asserts: closed promptly, the protocol error of
/// `kind` counted once (any kind when `None`), and a normal client is still served.
async fn assert_rejected(
    gw: &Gateway,
    addr: SocketAddr,
    what: &str,
    bytes: &[u8],
    kind: Option<&str>,
) {
    let before_kind = kind.map(|k| protocol_errors(gw, k));
    let before_all = all_protocol_errors(gw);
    let mut bad = RawClient::connect(addr).await.unwrap();
    // The gateway may close before everything is written: a failed write is fine.
    let _ = bad.send_raw(bytes).await;
    assert!(
        bad.closed_within(PROMPT).await,
        "{what}: connection not closed within {PROMPT:?}"
    );
    if let (Some(k), Some(before)) = (kind, before_kind) {
        assert!(
            eventually(Duration::from_secs(1), || protocol_errors(gw, k)
                == before + 1)
            .await,
            "{what}: protocol_errors{{kind={k}}} not counted ({})",
            protocol_errors(gw, k)
        );
    }
    assert!(
        eventually(Duration::from_secs(1), || all_protocol_errors(gw)
            == before_all + 1)
        .await,
        "{what}: expected exactly one protocol error"
    );
    assert_served(gw.kafka_addr(), what).await;
}

/// A request frame (length prefix included, correlation id 1000) without a connection.
fn request_bytes<R: Request>(req: &R, version: i16) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1000)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")));
    let hv = R::header_version(version);
    let size = header.compute_size(hv).unwrap() + req.compute_size(version).unwrap();
    let mut buf = BytesMut::with_capacity(size + 4);
    buf.put_i32(size as i32);
    header.encode(&mut buf, hv).unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn hostile_cases() -> Vec<(&'static str, Vec<u8>, Option<&'static str>)> {
    let produce = request_bytes(&produce_request(1, None, None), 9);
    let metadata_v12 = request_bytes(&metadata_request(&[]), 12);
    let mut garbage = noise(7, 600);
    garbage[0] |= 0x80; // a negative length
    let mut garbage2 = noise(99, 600);
    garbage2[0] = 0x3c; // a huge positive length
    let mut truncated_produce = produce[..].to_vec();
    // Keep the header (key, version, correlation id, client id, tagged fields) only.
    truncated_produce.truncate(4 + 8 + 2 + 8 + 1);
    let truncated_produce = framed(&truncated_produce[4..]);
    vec![
        (
            "random garbage (negative length)",
            garbage,
            Some("negative_length"),
        ),
        ("random garbage (huge length)", garbage2, Some("too_large")),
        (
            "negative length",
            [&[0xff, 0xff, 0xff, 0xf0][..], &noise(3, 32)].concat(),
            Some("negative_length"),
        ),
        (
            "length over the 100 MiB default",
            [&(100 * 1024 * 1024 + 1i32).to_be_bytes()[..], &noise(4, 64)].concat(),
            Some("too_large"),
        ),
        (
            "truncated header (3 bytes)",
            framed(&[0, 3, 0]),
            Some("truncated_header"),
        ),
        ("empty frame", framed(&[]), Some("truncated_header")),
        (
            "client id longer than the frame",
            framed(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 100, b'a', b'b', b'c']),
            Some("bad_client_id"),
        ),
        (
            "negative client id length",
            framed(&[0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xf0, 0, 0, 0, 0]),
            Some("bad_client_id"),
        ),
        (
            "tagged fields past the end",
            framed(&[0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 1, 0, 50, 1, 2]),
            Some("bad_tagged_fields"),
        ),
        (
            "Produce v99",
            with_wire_version(&produce, 99).to_vec(),
            Some("unsupported_version"),
        ),
        (
            "Produce v2 (below the minimum)",
            with_wire_version(&request_bytes(&produce_request(1, None, None), 3), 2).to_vec(),
            Some("unsupported_version"),
        ),
        (
            "Metadata v14",
            with_wire_version(&metadata_v12, 14).to_vec(),
            Some("unsupported_version"),
        ),
        (
            "Produce without acks",
            truncated_produce,
            Some("truncated_header"),
        ),
        ("TLS ClientHello", client_hello(), Some("tls_on_plaintext")),
        (
            "TLS record start only",
            vec![0x16, 0x03],
            Some("tls_on_plaintext"),
        ),
        (
            "HTTP request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n".to_vec(),
            Some("http_on_kafka_port"),
        ),
        (
            "HTTP POST",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(),
            Some("http_on_kafka_port"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_rejected_and_others_are_served() {
    init_logging();
    let mock = start_mock().await;
    let gw = start_gateway(&mock.bootstrap()).await.unwrap();
    let produce_before = mock.requests_for(ApiKey::Produce as i16);
    for (what, bytes, kind) in hostile_cases() {
        assert_rejected(&gw, gw.kafka_addr(), what, &bytes, kind).await;
        // Broker ports apply the same checks.
        let broker = gw.broker_addr(1).unwrap();
        assert_rejected(&gw, broker, &format!("{what} (broker port)"), &bytes, kind).await;
    }
    // No rejected request reached the broker.
    assert_eq!(mock.requests_for(ApiKey::Produce as i16), produce_before);
    assert!(mock.unknown_frames().is_empty());
    gw.shutdown().await;
}

fn vm_peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmPeak:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmPeak in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_length_is_rejected_without_allocating_it() {
    // The peak virtual size is the process's: alone, not with the other modules' tests.
    if !alone_in_process(
        module_path!(),
        "huge_length_is_rejected_without_allocating_it",
    ) {
        return;
    }
    init_logging();
    let mock = start_mock().await;
    let gw = start_gateway(&mock.bootstrap()).await.unwrap();
    let peak_before = vm_peak_kib();
    let started = Instant::now();
    // 2 GiB - 1: had the gateway reserved it, the process's peak virtual size would show it.
    let bytes = [&i32::MAX.to_be_bytes()[..], &noise(5, 64)].concat();
    assert_rejected(
        &gw,
        gw.kafka_addr(),
        "2 GiB length",
        &bytes,
        Some("too_large"),
    )
    .await;
    assert!(started.elapsed() < PROMPT);
    let grown_mib = (vm_peak_kib() - peak_before) / 1024;
    assert!(
        grown_mib < 1024,
        "peak virtual memory grew by {grown_mib} MiB"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_frame_then_disconnect_is_cleaned_up() {
    init_logging();
    let mock = start_mock().await;
    let gw = start_gateway(&mock.bootstrap()).await.unwrap();
    // A Produce request: the gateway itself never sends one, so the mock's count is exact.
    let frame = request_bytes(&produce_request(1, None, None), 9);
    let half = &frame[..frame.len() / 2];
    // Half a frame, then a half-close: the gateway closes its side, counts no protocol error.
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    c.send_raw(half).await.unwrap();
    c.stream.shutdown().await.unwrap();
    assert!(
        c.closed_within(PROMPT).await,
        "half-closed client not closed"
    );
    // Half a frame, then the socket is dropped (once the gateway runs a session for it).
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    c.send_raw(half).await.unwrap();
    assert!(eventually(PROMPT, || metric(&gw, "sluice_connections_open") == 1).await);
    drop(c);
    assert!(
        eventually(PROMPT, || metric(&gw, "sluice_connections_open") == 0).await,
        "sessions left open: {}",
        metric(&gw, "sluice_connections_open")
    );
    assert_eq!(metric(&gw, "sluice_connections_total"), 2);
    assert_eq!(
        all_protocol_errors(&gw),
        0,
        "a client hanging up is no protocol error"
    );
    assert_eq!(
        mock.requests_for(ApiKey::Produce as i16),
        0,
        "half a frame was forwarded"
    );
    assert_served(gw.kafka_addr(), "after half frames").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowered_frame_limit_applies_both_ways() {
    init_logging();
    let mock = start_mock().await;
    let mut config = gateway_config(&mock.bootstrap());
    config.limits.max_frame_bytes = 1024;
    let gw = start_gateway_with(config).await.unwrap();

    // Metadata v1, header v1: 10 header bytes + client id + 4 bytes of (null) topics.
    let at_limit = |client_id_len: usize| {
        let mut body = vec![0, 3, 0, 1, 0, 0, 0, 9];
        body.extend((client_id_len as i16).to_be_bytes());
        body.extend(std::iter::repeat_n(b'c', client_id_len));
        body.extend((-1i32).to_be_bytes());
        framed(&body)
    };
    let exactly = at_limit(1024 - 14);
    assert_eq!(exactly.len(), 4 + 1024);
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    c.send_raw(&exactly).await.unwrap();
    let (cid, m) = decode::<MetadataRequest>(bounded("at limit", c.read_frame()).await.unwrap(), 1);
    assert_eq!(
        (cid, m.brokers.len()),
        (9, 1),
        "a frame of exactly maxFrameBytes is fine"
    );

    assert_rejected(
        &gw,
        gw.kafka_addr(),
        "one byte over",
        &at_limit(1024 - 13),
        Some("too_large"),
    )
    .await;

    // A broker response over the limit closes the connection too.
    let topics: Vec<String> = (0..40)
        .map(|i| format!("a-rather-long-topic-name-{i}"))
        .collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    let (_, f) = c.encode(&metadata_request(&names[..20]), 1);
    assert!(f.len() < 1024);
    c.send_raw(&f).await.unwrap();
    assert!(
        c.closed_within(PROMPT).await,
        "oversized response not refused"
    );
    assert_eq!(protocol_errors(&gw, "bad_upstream_frame"), 1);
    assert_served(gw.kafka_addr(), "after an oversized response").await;
    drop(c);
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------------

/// Polls until a TCP connect to `addr` is refused.
async fn refused(addr: SocketAddr) -> bool {
    tokio::time::timeout(STEP, async {
        loop {
            match TcpStream::connect(addr).await {
                Err(_) => return,
                Ok(s) => drop(s),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .is_ok()
}

/// Waits until the gateway's start-up discovery (the explicit one and the background task's
/// first round, one Metadata request each) has reached `mock`; the next round is 30 s away.
async fn discovery_settled(mock: &MockBroker) {
    assert!(
        eventually(STEP, || mock.requests_for(ApiKey::Metadata as i16) >= 2).await,
        "gateway discovery did not run"
    );
}

/// A broker that is still starting may answer Metadata before it lists itself. The gateway
/// keeps asking at its fast retry pace until brokers are named, instead of settling for the
/// whole refresh period (30 s) with no broker port open: clients get their broker ports as
/// soon as the broker is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_are_learnt_as_soon_as_the_cluster_names_them() {
    init_logging();
    let mock = MockBroker::start(MockOptions {
        fault: Fault::NoBrokers,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let gw = Gateway::start(gateway_config(&mock.bootstrap()))
        .await
        .unwrap();
    discovery_settled(&mock).await;
    assert_eq!(gw.broker_addr(1), None, "no broker named yet, no port");
    let (status, body) = http(gw.admin_addr(), "GET", "/ready", &[], b"").await;
    assert_eq!(status, 503, "not ready without a broker: {body}");
    mock.set_fault(Fault::None);
    let asked = mock.requests_for(ApiKey::Metadata as i16);
    assert!(
        eventually(Duration::from_secs(5), || gw.broker_addr(1).is_some()).await,
        "the broker's port did not open within 5 s of the broker naming itself"
    );
    assert!(mock.requests_for(ApiKey::Metadata as i16) > asked);
    assert_served(gw.broker_addr(1).unwrap(), "the learnt broker port").await;
    let (status, body) = http(gw.admin_addr(), "GET", "/ready", &[], b"").await;
    assert_eq!(status, 200, "ready once the broker is learnt: {body}");
    gw.shutdown().await;
}

const DESCRIBE_CLUSTER: i16 = ApiKey::DescribeCluster as i16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_and_refuses_new_connections() {
    init_logging();
    let mock = start_mock().await;
    let gw = start_gateway(&mock.bootstrap()).await.unwrap();
    let bootstrap = gw.kafka_addr();
    let broker = gw.broker_addr(1).unwrap();
    discovery_settled(&mock).await;
    mock.set_fault(Fault::Delay(Duration::from_millis(500)));

    // DescribeCluster: the gateway never sends one itself, so the mock's count is exact.
    let mut c = RawClient::connect(bootstrap).await.unwrap();
    let (cid, f) = c.encode(&DescribeClusterRequest::default(), 0);
    c.send_raw(&f).await.unwrap();
    assert!(
        eventually(STEP, || mock.requests_for(DESCRIBE_CLUSTER) == 1).await,
        "request never reached the broker"
    );
    // In flight now: the broker holds it for 500 ms.
    let started = Instant::now();
    let shutdown = tokio::spawn(gw.shutdown());
    assert!(refused(bootstrap).await, "bootstrap port still accepting");
    assert!(refused(broker).await, "broker port still accepting");
    // A request sent after shutdown started is not read any more.
    let (_, late) = c.encode(&DescribeClusterRequest::default(), 0);
    let _ = c.send_raw(&late).await;

    let frame = bounded("in-flight response", c.read_frame())
        .await
        .expect("in-flight response lost at shutdown");
    let (got, m) = decode::<DescribeClusterRequest>(frame, 0);
    assert_eq!(got, cid);
    assert_eq!(m.brokers.len(), 1);
    assert!(
        bounded("close", c.read_frame()).await.is_err(),
        "a request sent after shutdown started was answered"
    );
    bounded("shutdown", shutdown).await.unwrap();
    // Well within the 2 s drain timeout: it ended because nothing was left in flight.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(
        mock.requests_for(DESCRIBE_CLUSTER),
        1,
        "the late request was forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_what_is_left_after_the_drain_timeout() {
    init_logging();
    let mock = start_mock().await;
    let mut config = gateway_config(&mock.bootstrap());
    config.shutdown.drain_timeout_ms = 300;
    let gw = start_gateway_with(config).await.unwrap();
    discovery_settled(&mock).await;
    mock.set_fault(Fault::Delay(Duration::from_secs(30)));
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    let (_, f) = c.encode(&DescribeClusterRequest::default(), 0);
    c.send_raw(&f).await.unwrap();
    assert!(eventually(STEP, || mock.requests_for(DESCRIBE_CLUSTER) == 1).await);
    let started = Instant::now();
    bounded("shutdown", gw.shutdown()).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "did not wait for the drain: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "drain timeout not applied: {took:?}"
    );
    assert!(
        c.closed_within(PROMPT).await,
        "connection left open after shutdown"
    );
}

/// A discovery round stuck on an unresponsive broker must not hold shutdown past the drain
/// timeout (it waits for `upstream.requestTimeoutMs`, 30 s by default, per bootstrap server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_up_by_a_hanging_discovery() {
    init_logging();
    let mock = start_mock().await;
    let mut config = gateway_config(&mock.bootstrap());
    config.shutdown.drain_timeout_ms = 300;
    config.upstream.metadata_refresh_ms = 100;
    config.upstream.request_timeout_ms = 20_000;
    let gw = start_gateway_with(config).await.unwrap();
    discovery_settled(&mock).await;
    mock.set_fault(Fault::Delay(Duration::from_secs(60)));
    // The next discovery round's ApiVersions request is now stuck in the broker.
    let seen = mock.requests_for(ApiKey::ApiVersions as i16);
    assert!(
        eventually(STEP, || mock.requests_for(ApiKey::ApiVersions as i16)
            > seen)
        .await,
        "no discovery round started"
    );
    let started = Instant::now();
    let done = tokio::time::timeout(Duration::from_secs(5), gw.shutdown()).await;
    assert!(
        done.is_ok(),
        "shutdown with a 300 ms drain timeout still running after {:?}",
        started.elapsed()
    );
}
