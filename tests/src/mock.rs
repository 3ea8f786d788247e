//! A minimal Kafka broker built on kafka-protocol, for fault injection and microbenchmarks.
//!
//! It is not a broker: it keeps no data. It answers ApiVersions, Metadata, FindCoordinator,
//! DescribeCluster, Produce (acks=0 gets no answer) and Fetch (with a fixed payload) at once,
//! so that tests can make it misbehave on purpose ([`Fault`]) and benchmarks can measure the
//! gateway without a broker's cost in the way. Several mocks can form a "cluster": each names
//! all of them in Metadata.

use anyhow::Result;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{
    NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeClusterResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A misbehaviour to inject.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Fault {
    /// Behave.
    #[default]
    None,
    /// Close the connection, without answering, when a request with this API key arrives.
    CloseOn(i16),
    /// Wait this long before every answer.
    Delay(Duration),
    /// Answer requests with this API key with bytes that are not a valid response.
    GarbageOn(i16),
    /// Answer every request with the wrong correlation id.
    WrongCorrelation,
    /// Add a KIP-951 node endpoint naming this node to every Produce response (v10+).
    ProduceNodeEndpoints,
    /// Answer requests with API keys unknown to kafka-protocol (instead of closing) with a
    /// frame holding the request's correlation id followed by the whole request frame body
    /// (header included), so a test can check both directions byte for byte.
    EchoUnknown,
    /// Answer requests with this API key with exactly these bytes (no length prefix added),
    /// e.g. a negative or oversized frame length.
    RawOn(i16, Bytes),
}

/// Options of one mock broker.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Node id.
    pub node_id: i32,
    /// Fault to inject.
    pub fault: Fault,
    /// Record bytes returned for every fetched partition (empty: no records).
    pub fetch_payload: Bytes,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            node_id: 1,
            fault: Fault::None,
            fetch_payload: Bytes::new(),
        }
    }
}

/// A running mock broker; stops on drop.
pub struct MockBroker {
    /// Listening address.
    pub addr: SocketAddr,
    /// Node id.
    pub node_id: i32,
    state: Arc<State>,
    task: JoinHandle<()>,
}

struct State {
    options: Mutex<MockOptions>,
    /// Every broker of the mock cluster (node id, address), this one included.
    cluster: Mutex<Vec<(i32, SocketAddr)>>,
    /// Requests received, all APIs.
    requests: AtomicU64,
    /// Produce request bytes received.
    produce_bytes: AtomicU64,
    /// Requests received per API key (keys `0..KEY_SLOTS`).
    by_key: Vec<AtomicU64>,
    /// Request frames (length prefix excluded) with API keys unknown to kafka-protocol.
    unknown_frames: Mutex<Vec<Bytes>>,
}

/// API keys below this bound are counted one by one ([`MockBroker::requests_for`]).
const KEY_SLOTS: usize = 128;

impl MockBroker {
    /// Starts a mock broker on a free port.
    pub async fn start(options: MockOptions) -> Result<MockBroker> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let node_id = options.node_id;
        let state = Arc::new(State {
            options: Mutex::new(options),
            cluster: Mutex::new(vec![(node_id, addr)]),
            requests: AtomicU64::new(0),
            produce_bytes: AtomicU64::new(0),
            by_key: (0..KEY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            unknown_frames: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(s.clone(), stream));
            }
        });
        Ok(MockBroker {
            addr,
            node_id,
            state,
            task,
        })
    }

    /// Starts `n` mocks with node ids `first_id..` that name each other in Metadata.
    pub async fn cluster(n: usize, first_id: i32) -> Result<Vec<MockBroker>> {
        let mut brokers = Vec::new();
        for i in 0..n {
            brokers.push(
                MockBroker::start(MockOptions {
                    node_id: first_id + i as i32,
                    ..MockOptions::default()
                })
                .await?,
            );
        }
        let all: Vec<_> = brokers.iter().map(|b| (b.node_id, b.addr)).collect();
        for b in &brokers {
            *b.state.cluster.lock().unwrap() = all.clone();
        }
        Ok(brokers)
    }

    /// Changes the injected fault for new requests.
    pub fn set_fault(&self, fault: Fault) {
        self.state.options.lock().unwrap().fault = fault;
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Requests with this API key received so far (0 for keys outside `0..128`).
    pub fn requests_for(&self, api_key: i16) -> u64 {
        usize::try_from(api_key)
            .ok()
            .and_then(|i| self.state.by_key.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every request frame received with an API key unknown to kafka-protocol, exactly as it
    /// arrived (length prefix excluded), in arrival order.
    pub fn unknown_frames(&self) -> Vec<Bytes> {
        self.state.unknown_frames.lock().unwrap().clone()
    }

    /// Produce request bytes received so far.
    pub fn produce_bytes(&self) -> u64 {
        self.state.produce_bytes.load(Ordering::Relaxed)
    }

    /// `host:port`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(state: Arc<State>, mut stream: TcpStream) {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    loop {
        while buf.len() >= 4 {
            let n = i32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() < 4 + n {
                buf.reserve(4 + n - buf.len());
                break;
            }
            let frame = buf.split_to(4 + n).freeze().slice(4..);
            match answer(&state, frame) {
                Reply::None => {}
                Reply::Close => return,
                Reply::Bytes(out, delay) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(256 * 1024);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

enum Reply {
    None,
    Close,
    Bytes(Bytes, Duration),
}

fn answer(state: &State, mut frame: Bytes) -> Reply {
    state.requests.fetch_add(1, Ordering::Relaxed);
    if frame.len() < 8 {
        return Reply::Close;
    }
    let options = state.options.lock().unwrap().clone();
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    if let Some(c) = usize::try_from(api_key)
        .ok()
        .and_then(|i| state.by_key.get(i))
    {
        c.fetch_add(1, Ordering::Relaxed);
    }
    if options.fault == Fault::CloseOn(api_key) {
        return Reply::Close;
    }
    let Ok(key) = ApiKey::try_from(api_key) else {
        state.unknown_frames.lock().unwrap().push(frame.clone());
        if options.fault == Fault::EchoUnknown {
            let mut out = BytesMut::with_capacity(8 + frame.len());
            out.put_i32(4 + frame.len() as i32);
            out.put_slice(&frame[4..8]);
            out.put_slice(&frame);
            return Reply::Bytes(out.freeze(), Duration::ZERO);
        }
        return Reply::Close;
    };
    let frame_len = frame.len();
    let Ok(header) = RequestHeader::decode(&mut frame, key.request_header_version(version)) else {
        return Reply::Close;
    };
    let mut correlation_id = header.correlation_id;
    if options.fault == Fault::WrongCorrelation {
        correlation_id += 1000;
    }
    if let Fault::RawOn(key, bytes) = &options.fault {
        if *key == api_key {
            return Reply::Bytes(bytes.clone(), Duration::ZERO);
        }
    }
    if options.fault == Fault::GarbageOn(api_key) {
        let mut out = BytesMut::new();
        out.put_i32(6);
        out.put_i32(correlation_id);
        out.put_i16(-12345);
        return Reply::Bytes(out.freeze(), Duration::ZERO);
    }
    let delay = match options.fault {
        Fault::Delay(d) => d,
        _ => Duration::ZERO,
    };
    let me = options.node_id;
    let cluster = state.cluster.lock().unwrap().clone();
    let out = match key {
        ApiKey::ApiVersions => {
            let keys = [
                ApiKey::Produce,
                ApiKey::Fetch,
                ApiKey::Metadata,
                ApiKey::ApiVersions,
                ApiKey::FindCoordinator,
                ApiKey::DescribeCluster,
            ];
            let resp = ApiVersionsResponse::default().with_api_keys(
                keys.iter()
                    .map(|k| {
                        let r = k.valid_versions();
                        ApiVersion::default()
                            .with_api_key(*k as i16)
                            .with_min_version(r.min)
                            .with_max_version(r.max)
                    })
                    .collect(),
            );
            // ApiVersions responses always use header v0.
            encode_with(correlation_id, 0, &resp, version)
        }
        ApiKey::Metadata => {
            let Ok(req) = MetadataRequest::decode(&mut frame, version) else {
                return Reply::Close;
            };
            let brokers = cluster
                .iter()
                .map(|(id, addr)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(*id))
                        .with_host(StrBytes::from_string(addr.ip().to_string()))
                        .with_port(i32::from(addr.port()))
                })
                .collect();
            let topics = req
                .topics
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.name)
                .enumerate()
                .map(|(i, name)| {
                    // Spread partition leadership over the cluster.
                    let leader = cluster[i % cluster.len()].0;
                    MetadataResponseTopic::default()
                        .with_name(Some(name))
                        .with_partitions(vec![MetadataResponsePartition::default()
                            .with_partition_index(0)
                            .with_leader_id(BrokerId(leader))
                            .with_replica_nodes(vec![BrokerId(leader)])
                            .with_isr_nodes(vec![BrokerId(leader)])])
                })
                .collect();
            let resp = MetadataResponse::default()
                .with_brokers(brokers)
                .with_cluster_id(Some(StrBytes::from_static_str("mock")))
                .with_controller_id(BrokerId(cluster[0].0))
                .with_topics(topics);
            encode(key, correlation_id, &resp, version)
        }
        ApiKey::FindCoordinator => {
            let Ok(req) = FindCoordinatorRequest::decode(&mut frame, version) else {
                return Reply::Close;
            };
            let addr = cluster.iter().find(|(id, _)| *id == me).unwrap().1;
            let host = StrBytes::from_string(addr.ip().to_string());
            let mut resp = FindCoordinatorResponse::default();
            if version < 4 {
                resp = resp
                    .with_node_id(BrokerId(me))
                    .with_host(host)
                    .with_port(i32::from(addr.port()));
            } else {
                resp.coordinators = req
                    .coordinator_keys
                    .into_iter()
                    .map(|k| {
                        Coordinator::default()
                            .with_key(k)
                            .with_node_id(BrokerId(me))
                            .with_host(host.clone())
                            .with_port(i32::from(addr.port()))
                    })
                    .collect();
            }
            encode(key, correlation_id, &resp, version)
        }
        ApiKey::DescribeCluster => {
            let resp = DescribeClusterResponse::default()
                .with_cluster_id(StrBytes::from_static_str("mock"))
                .with_controller_id(BrokerId(cluster[0].0))
                .with_brokers(
                    cluster
                        .iter()
                        .map(|(id, addr)| {
                            DescribeClusterBroker::default()
                                .with_broker_id(BrokerId(*id))
                                .with_host(StrBytes::from_string(addr.ip().to_string()))
                                .with_port(i32::from(addr.port()))
                        })
                        .collect(),
                );
            encode(key, correlation_id, &resp, version)
        }
        ApiKey::Produce => {
            state
                .produce_bytes
                .fetch_add(frame_len as u64, Ordering::Relaxed);
            let Ok(req) = ProduceRequest::decode(&mut frame, version) else {
                return Reply::Close;
            };
            if req.acks == 0 {
                return Reply::None;
            }
            let mut resp = ProduceResponse::default().with_responses(
                req.topic_data
                    .into_iter()
                    .map(|t| {
                        TopicProduceResponse::default()
                            .with_name(t.name)
                            .with_partition_responses(
                                t.partition_data
                                    .into_iter()
                                    .map(|p| {
                                        PartitionProduceResponse::default()
                                            .with_index(p.index)
                                            .with_base_offset(0)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
            if options.fault == Fault::ProduceNodeEndpoints && version >= 10 {
                let addr = cluster.iter().find(|(id, _)| *id == me).unwrap().1;
                resp.node_endpoints = vec![NodeEndpoint::default()
                    .with_node_id(BrokerId(me))
                    .with_host(StrBytes::from_string(addr.ip().to_string()))
                    .with_port(i32::from(addr.port()))];
            }
            encode(key, correlation_id, &resp, version)
        }
        ApiKey::Fetch => {
            let Ok(req) = FetchRequest::decode(&mut frame, version) else {
                return Reply::Close;
            };
            let resp = FetchResponse::default().with_responses(
                req.topics
                    .into_iter()
                    .map(|t| {
                        FetchableTopicResponse::default()
                            .with_topic(t.topic.clone())
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partitions
                                    .into_iter()
                                    .map(|p| {
                                        PartitionData::default()
                                            .with_partition_index(p.partition)
                                            .with_high_watermark(i64::MAX / 2)
                                            .with_records(Some(options.fetch_payload.clone()))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
            encode(key, correlation_id, &resp, version)
        }
        _ => return Reply::Close,
    };
    Reply::Bytes(out, delay)
}

fn encode<T: Encodable>(key: ApiKey, correlation_id: i32, msg: &T, version: i16) -> Bytes {
    encode_with(
        correlation_id,
        key.response_header_version(version),
        msg,
        version,
    )
}

fn encode_with<T: Encodable>(
    correlation_id: i32,
    header_version: i16,
    msg: &T,
    version: i16,
) -> Bytes {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version).unwrap() + msg.compute_size(version).unwrap();
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(size as i32);
    header.encode(&mut out, header_version).unwrap();
    msg.encode(&mut out, version).unwrap();
    out.freeze()
}

/// A topic name for requests.
pub fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}
