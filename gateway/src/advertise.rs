//! Response rewriting: every place a broker names a broker, the client must see the gateway.
//!
//! Brokers name brokers in Metadata, FindCoordinator (v0-3 top level, v4+ batched),
//! DescribeCluster, and the KIP-951 `node_endpoints` of Produce (v10+), Fetch (v16+),
//! ShareFetch and ShareAcknowledge responses. Each of those is decoded with kafka-protocol,
//! its endpoints are replaced through an [`AddressBook`], and the message is re-encoded. A
//! response whose endpoints list is empty (the common case for Produce and Fetch) is passed on
//! as the original bytes: only what changed is re-encoded.
//!
//! A large Fetch response is not held whole for this: it streams through, and
//! only its last section, where the endpoints are, is rewritten in the same number of bytes
//! ([`tail`]).
//!
//! ApiVersions responses are intersected with what the gateway can handle (see
//! [`gateway_versions`]).

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse,
    MetadataResponse, ProduceResponse, ResponseHeader, ShareAcknowledgeResponse,
    ShareFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes, VersionRange};

use crate::frame::LENGTH_PREFIX;
use crate::message::encode_with_header;

use crate::message::codes::UNSUPPORTED_VERSION;

pub mod tail;

/// What the gateway must do with the response to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseAction {
    /// Forward the bytes unchanged.
    Passthrough,
    /// Intersect the advertised API versions with the gateway's.
    ApiVersions,
    /// Rewrite the broker list.
    Metadata,
    /// Rewrite the coordinator address(es).
    FindCoordinator,
    /// Rewrite the broker list.
    DescribeCluster,
    /// Rewrite KIP-951 `node_endpoints` when present.
    NodeEndpoints,
}

/// The response action for a request of `key` at `version`.
pub fn action_for(key: Option<ApiKey>, version: i16) -> ResponseAction {
    match key {
        Some(ApiKey::ApiVersions) => ResponseAction::ApiVersions,
        Some(ApiKey::Metadata) => ResponseAction::Metadata,
        Some(ApiKey::FindCoordinator) => ResponseAction::FindCoordinator,
        Some(ApiKey::DescribeCluster) => ResponseAction::DescribeCluster,
        Some(ApiKey::Produce) if version >= 10 => ResponseAction::NodeEndpoints,
        Some(ApiKey::Fetch) if version >= 16 => ResponseAction::NodeEndpoints,
        Some(ApiKey::ShareFetch | ApiKey::ShareAcknowledge) => ResponseAction::NodeEndpoints,
        _ => ResponseAction::Passthrough,
    }
}

/// The version range the gateway accepts for a known API key: what kafka-protocol can decode.
///
/// Every known API is capped to this range even when the gateway only forwards it, so that
/// any stage (address rewriting, interceptors, virtual clusters) can decode whatever a client
/// sends. API keys the gateway does not know are forwarded as opaque bytes and advertised as
/// the broker advertises them.
pub fn gateway_versions(key: ApiKey) -> VersionRange {
    // kafka-protocol's `valid_versions()` runs ahead of its decoders for a few APIs
    // (OffsetCommit v10, OffsetFetch v10, InitProducerId v6 in 0.18): advertise only what the
    // request *and* response types really decode.
    let valid = key.valid_versions();
    let (req, resp) = (
        crate::schema::request_def(key as i16),
        crate::schema::response_def(key as i16),
    );
    let min = [req.map(|d| d.min), resp.map(|d| d.min)]
        .into_iter()
        .flatten()
        .fold(valid.min, i16::max);
    let max = [req.map(|d| d.max), resp.map(|d| d.max)]
        .into_iter()
        .flatten()
        .fold(valid.max, i16::min);
    VersionRange { min, max }
}

/// Maps a broker (node id and its upstream address) to the address clients must use.
pub trait AddressBook {
    /// Records that `node_id` is reachable upstream at `host:port` and returns the gateway
    /// endpoint (advertised host, port) that stands for it.
    fn gateway_endpoint(&self, node_id: i32, host: &str, port: i32) -> (StrBytes, i32);

    /// Records a topic id and its name (Metadata v10+ names both), so that stages seeing only
    /// ids (Fetch v13+) can name topics.
    fn learn_topic(&self, _id: uuid::Uuid, _name: &str) {}

    /// Lowest version of `key` this gateway accepts, above what the codecs allow (ACLs need
    /// Metadata v4+, the first version that lets the gateway turn auto-creation off).
    fn version_floor(&self, _key: ApiKey) -> i16 {
        0
    }

    /// Whether the gateway answers `key` itself (the Kafka ACL APIs when it enforces its own
    /// ACLs): advertised with the gateway's whole range, whatever the broker offers.
    fn answered_locally(&self, _key: ApiKey) -> bool {
        false
    }

    /// Highest version of `key` to advertise, below what the codecs allow (concentrated topics
    /// have no topic id, so Fetch and Produce stay at v12, which name topics).
    fn version_ceiling(&self, _key: ApiKey) -> i16 {
        i16::MAX
    }
}

/// Rewrites a response frame (length prefix included). `Ok(None)` means "forward the original".
pub fn rewrite_response(
    action: ResponseAction,
    key: ApiKey,
    version: i16,
    frame: Bytes,
    book: &dyn AddressBook,
) -> Result<Option<Bytes>> {
    let mut body = frame.slice(LENGTH_PREFIX..);
    match action {
        ResponseAction::Passthrough => Ok(None),
        ResponseAction::ApiVersions => rewrite_api_versions(body, version, book).map(Some),
        ResponseAction::Metadata => {
            let (header, mut msg) = decode::<MetadataResponse>(&mut body, key, version)?;
            for b in &mut msg.brokers {
                (b.host, b.port) = book.gateway_endpoint(b.node_id.0, &b.host, b.port);
            }
            for t in &msg.topics {
                if let Some(name) = &t.name {
                    if !t.topic_id.is_nil() {
                        book.learn_topic(t.topic_id, name);
                    }
                }
            }
            encode_with_header(key, version, &header, &msg).map(Some)
        }
        ResponseAction::FindCoordinator => {
            let (header, mut msg) = decode::<FindCoordinatorResponse>(&mut body, key, version)?;
            if version < 4 {
                if msg.node_id.0 >= 0 && msg.error_code == 0 {
                    (msg.host, msg.port) =
                        book.gateway_endpoint(msg.node_id.0, &msg.host, msg.port);
                }
            } else {
                for c in &mut msg.coordinators {
                    if c.node_id.0 >= 0 && c.error_code == 0 {
                        (c.host, c.port) = book.gateway_endpoint(c.node_id.0, &c.host, c.port);
                    }
                }
            }
            encode_with_header(key, version, &header, &msg).map(Some)
        }
        ResponseAction::DescribeCluster => {
            let (header, mut msg) = decode::<DescribeClusterResponse>(&mut body, key, version)?;
            for b in &mut msg.brokers {
                (b.host, b.port) = book.gateway_endpoint(b.broker_id.0, &b.host, b.port);
            }
            encode_with_header(key, version, &header, &msg).map(Some)
        }
        ResponseAction::NodeEndpoints => match key {
            ApiKey::Produce => {
                node_endpoints::<ProduceResponse>(body, key, version, book, produce_endpoints)
            }
            ApiKey::Fetch => {
                node_endpoints::<FetchResponse>(body, key, version, book, fetch_endpoints)
            }
            ApiKey::ShareFetch => {
                node_endpoints::<ShareFetchResponse>(body, key, version, book, |m| {
                    m.node_endpoints
                        .iter_mut()
                        .map(|e| (e.node_id.0, &mut e.host, &mut e.port))
                        .collect()
                })
            }
            ApiKey::ShareAcknowledge => {
                node_endpoints::<ShareAcknowledgeResponse>(body, key, version, book, |m| {
                    m.node_endpoints
                        .iter_mut()
                        .map(|e| (e.node_id.0, &mut e.host, &mut e.port))
                        .collect()
                })
            }
            other => bail!("no node endpoints in {other:?} responses"),
        },
    }
}

/// A broker endpoint in a decoded message: node id, host and port (to replace).
type Endpoint<'a> = (i32, &'a mut StrBytes, &'a mut i32);

fn fetch_endpoints(m: &mut FetchResponse) -> Vec<Endpoint<'_>> {
    m.node_endpoints
        .iter_mut()
        .map(|e| (e.node_id.0, &mut e.host, &mut e.port))
        .collect()
}

fn produce_endpoints(m: &mut ProduceResponse) -> Vec<Endpoint<'_>> {
    m.node_endpoints
        .iter_mut()
        .map(|e| (e.node_id.0, &mut e.host, &mut e.port))
        .collect()
}

fn node_endpoints<T: Decodable + Encodable>(
    mut body: Bytes,
    key: ApiKey,
    version: i16,
    book: &dyn AddressBook,
    endpoints: impl Fn(&mut T) -> Vec<Endpoint<'_>>,
) -> Result<Option<Bytes>> {
    let (header, mut msg) = decode::<T>(&mut body, key, version)?;
    let list = endpoints(&mut msg);
    if list.is_empty() {
        return Ok(None);
    }
    for (node, host, port) in list {
        (*host, *port) = book.gateway_endpoint(node, host, *port);
    }
    encode_with_header(key, version, &header, &msg).map(Some)
}

fn decode<T: Decodable>(
    body: &mut Bytes,
    key: ApiKey,
    version: i16,
) -> Result<(ResponseHeader, T)> {
    let (header, msg) = crate::schema::decode_response_frame::<T>(key, version, body)?;
    if !body.is_empty() {
        // Some brokers (librdkafka's mock cluster) append bytes after a valid message; clients
        // ignore them, so does the gateway (they are not re-encoded).
        tracing::debug!(
            "{key:?} v{version} response has {} trailing bytes; ignored",
            body.len()
        );
    }
    Ok((header, msg))
}

fn rewrite_api_versions(mut body: Bytes, version: i16, book: &dyn AddressBook) -> Result<Bytes> {
    // ApiVersions responses always use header v0. A broker that does not support the request
    // version answers with UNSUPPORTED_VERSION and a v0 body; the error code comes first in
    // every version, so peek it to choose the body version.
    let header = crate::schema::decode_response_header(ApiKey::ApiVersions, 0, &mut body)?;
    let error = body
        .get(..2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .context("truncated ApiVersions response")?;
    if error == UNSUPPORTED_VERSION {
        // The body should be v0, but not every broker gets it right (librdkafka's mock
        // cluster does not): answer with the gateway's own v0 body naming the versions below
        // the one refused, so the client retries lower.
        return Ok(unsupported_api_versions_below(
            header.correlation_id,
            version,
        ));
    }
    let mut msg: ApiVersionsResponse =
        crate::schema::decode_response(ApiKey::ApiVersions, version, &body)?;
    intersect_api_versions(&mut msg);
    for entry in &mut msg.api_keys {
        if let Ok(key) = ApiKey::try_from(entry.api_key) {
            entry.min_version = entry.min_version.max(book.version_floor(key));
            entry.max_version = entry.max_version.min(book.version_ceiling(key));
        }
    }
    msg.api_keys.retain(|e| e.min_version <= e.max_version);
    for key in [ApiKey::DescribeAcls, ApiKey::CreateAcls, ApiKey::DeleteAcls] {
        if !book.answered_locally(key) {
            continue;
        }
        let range = gateway_versions(key);
        msg.api_keys.retain(|e| e.api_key != key as i16);
        msg.api_keys.push(
            kafka_protocol::messages::api_versions_response::ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(range.min)
                .with_max_version(range.max),
        );
    }
    let size = header.compute_size(0)? + msg.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(LENGTH_PREFIX + size);
    buf.put_i32(i32::try_from(size)?);
    header.encode(&mut buf, 0)?;
    msg.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Narrows every known API's range to what the gateway handles; drops APIs left empty.
pub fn intersect_api_versions(msg: &mut ApiVersionsResponse) {
    msg.api_keys.retain_mut(|entry| {
        let Ok(key) = ApiKey::try_from(entry.api_key) else {
            return true; // unknown to the gateway: forwarded opaquely, advertised as is
        };
        let range = VersionRange {
            min: entry.min_version,
            max: entry.max_version,
        }
        .intersect(&gateway_versions(key));
        entry.min_version = range.min;
        entry.max_version = range.max;
        !range.is_empty()
    });
}

/// The answer to an ApiVersions request of a version the gateway does not support: error
/// UNSUPPORTED_VERSION with a v0 body naming the ApiVersions versions it does support, so the
/// client retries with one of them (KIP-511).
pub fn unsupported_api_versions(correlation_id: i32) -> Bytes {
    unsupported_api_versions_below(correlation_id, i16::MAX)
}

/// UNSUPPORTED_VERSION with a v0 body offering ApiVersions versions below `refused` (within
/// the gateway's range).
fn unsupported_api_versions_below(correlation_id: i32, refused: i16) -> Bytes {
    let mut range = gateway_versions(ApiKey::ApiVersions);
    range.max = range.max.min(refused.saturating_sub(1)).max(range.min);
    let mut msg = ApiVersionsResponse::default().with_error_code(UNSUPPORTED_VERSION);
    msg.api_keys.push(
        kafka_protocol::messages::api_versions_response::ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(range.min)
            .with_max_version(range.max),
    );
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut buf = BytesMut::new();
    let size = header.compute_size(0).expect("v0 header") + msg.compute_size(0).expect("v0 body");
    buf.put_i32(size as i32);
    header.encode(&mut buf, 0).expect("v0 header");
    msg.encode(&mut buf, 0).expect("v0 body");
    buf.freeze()
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    #[test]
    fn advertised_versions_are_decodable() {
        use kafka_protocol::messages::{
            InitProducerIdRequest, OffsetCommitRequest, OffsetFetchRequest,
        };
        fn roundtrip<T: Encodable + Decodable + Default>(key: ApiKey) {
            let max = gateway_versions(key).max;
            let mut buf = bytes::BytesMut::new();
            T::default()
                .encode(&mut buf, max)
                .unwrap_or_else(|e| panic!("{key:?} v{max} advertised but not encodable: {e}"));
            T::decode(&mut buf.freeze(), max)
                .unwrap_or_else(|e| panic!("{key:?} v{max} advertised but not decodable: {e}"));
        }
        roundtrip::<OffsetCommitRequest>(ApiKey::OffsetCommit);
        roundtrip::<OffsetFetchRequest>(ApiKey::OffsetFetch);
        roundtrip::<InitProducerIdRequest>(ApiKey::InitProducerId);
    }

    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::protocol::Message;
    use std::cell::RefCell;

    /// Maps node n to gw:(7000+n) and remembers what it was told.
    #[derive(Default)]
    struct Book(RefCell<Vec<(i32, String, i32)>>);

    impl AddressBook for Book {
        fn gateway_endpoint(&self, node_id: i32, host: &str, port: i32) -> (StrBytes, i32) {
            self.0.borrow_mut().push((node_id, host.to_string(), port));
            (StrBytes::from_static_str("gw"), 7000 + node_id)
        }
    }

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    fn frame<T: Encodable>(key: ApiKey, version: i16, msg: &T) -> Bytes {
        let header = ResponseHeader::default().with_correlation_id(77);
        encode_with_header(key, version, &header, msg).unwrap()
    }

    fn parse<T: Decodable>(key: ApiKey, version: i16, frame: &Bytes) -> T {
        let mut body = frame.slice(4..);
        let (header, msg) = decode::<T>(&mut body, key, version).unwrap();
        assert_eq!(header.correlation_id, 77);
        assert_eq!(
            i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        msg
    }

    fn versions<T: Message>() -> std::ops::RangeInclusive<i16> {
        T::VERSIONS.min..=T::VERSIONS.max
    }

    #[test]
    fn metadata_every_version() {
        for v in versions::<MetadataResponse>() {
            let msg = MetadataResponse::default().with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(s("kafka-1.internal"))
                    .with_port(9092),
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(2))
                    .with_host(s("kafka-2.internal"))
                    .with_port(9093),
            ]);
            let book = Book::default();
            let out = rewrite_response(
                action_for(Some(ApiKey::Metadata), v),
                ApiKey::Metadata,
                v,
                frame(ApiKey::Metadata, v, &msg),
                &book,
            )
            .unwrap()
            .unwrap();
            let got: MetadataResponse = parse(ApiKey::Metadata, v, &out);
            let eps: Vec<_> = got
                .brokers
                .iter()
                .map(|b| (b.node_id.0, b.host.to_string(), b.port))
                .collect();
            assert_eq!(
                eps,
                vec![(1, "gw".into(), 7001), (2, "gw".into(), 7002)],
                "v{v}"
            );
            assert_eq!(
                book.0.into_inner(),
                vec![
                    (1, "kafka-1.internal".into(), 9092),
                    (2, "kafka-2.internal".into(), 9093)
                ]
            );
        }
    }

    #[test]
    fn find_coordinator_every_version() {
        for v in versions::<FindCoordinatorResponse>() {
            let msg = if v < 4 {
                FindCoordinatorResponse::default()
                    .with_node_id(BrokerId(3))
                    .with_host(s("kafka-3"))
                    .with_port(9094)
            } else {
                FindCoordinatorResponse::default().with_coordinators(vec![
                    Coordinator::default()
                        .with_key(s("group-a"))
                        .with_node_id(BrokerId(3))
                        .with_host(s("kafka-3"))
                        .with_port(9094),
                    Coordinator::default()
                        .with_key(s("group-b"))
                        .with_node_id(BrokerId(-1))
                        .with_error_code(15),
                ])
            };
            let out = rewrite_response(
                ResponseAction::FindCoordinator,
                ApiKey::FindCoordinator,
                v,
                frame(ApiKey::FindCoordinator, v, &msg),
                &Book::default(),
            )
            .unwrap()
            .unwrap();
            let got: FindCoordinatorResponse = parse(ApiKey::FindCoordinator, v, &out);
            if v < 4 {
                assert_eq!((got.host.as_str(), got.port), ("gw", 7003), "v{v}");
            } else {
                assert_eq!(
                    (got.coordinators[0].host.as_str(), got.coordinators[0].port),
                    ("gw", 7003)
                );
                // An errored entry is left alone.
                assert_eq!(got.coordinators[1].port, 0);
                assert_eq!(got.coordinators[1].error_code, 15);
            }
        }
    }

    #[test]
    fn describe_cluster_every_version() {
        for v in versions::<DescribeClusterResponse>() {
            let msg = DescribeClusterResponse::default()
                .with_cluster_id(s("c1"))
                .with_brokers(vec![DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(5))
                    .with_host(s("kafka-5"))
                    .with_port(19092)]);
            let out = rewrite_response(
                ResponseAction::DescribeCluster,
                ApiKey::DescribeCluster,
                v,
                frame(ApiKey::DescribeCluster, v, &msg),
                &Book::default(),
            )
            .unwrap()
            .unwrap();
            let got: DescribeClusterResponse = parse(ApiKey::DescribeCluster, v, &out);
            assert_eq!(got.brokers[0].host.as_str(), "gw");
            assert_eq!(got.brokers[0].port, 7005);
            assert_eq!(got.cluster_id.as_str(), "c1");
        }
    }

    #[test]
    fn produce_node_endpoints_every_version() {
        use kafka_protocol::messages::produce_response::NodeEndpoint;
        for v in versions::<ProduceResponse>() {
            let action = action_for(Some(ApiKey::Produce), v);
            // Without endpoints: the original bytes are kept.
            let plain = frame(ApiKey::Produce, v, &ProduceResponse::default());
            assert_eq!(
                rewrite_response(action, ApiKey::Produce, v, plain, &Book::default()).unwrap(),
                None
            );
            if v < 10 {
                assert_eq!(action, ResponseAction::Passthrough);
                continue;
            }
            let msg = ProduceResponse::default().with_node_endpoints(vec![NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(s("kafka-2"))
                .with_port(9093)]);
            let out = rewrite_response(
                action,
                ApiKey::Produce,
                v,
                frame(ApiKey::Produce, v, &msg),
                &Book::default(),
            )
            .unwrap()
            .unwrap();
            let got: ProduceResponse = parse(ApiKey::Produce, v, &out);
            assert_eq!(got.node_endpoints[0].host.as_str(), "gw");
            assert_eq!(got.node_endpoints[0].port, 7002);
        }
    }

    #[test]
    fn fetch_node_endpoints_every_version() {
        use kafka_protocol::messages::fetch_response::NodeEndpoint;
        for v in versions::<FetchResponse>() {
            let action = action_for(Some(ApiKey::Fetch), v);
            let plain = frame(ApiKey::Fetch, v, &FetchResponse::default());
            assert_eq!(
                rewrite_response(action, ApiKey::Fetch, v, plain, &Book::default()).unwrap(),
                None
            );
            if v < 16 {
                assert_eq!(action, ResponseAction::Passthrough);
                continue;
            }
            let msg = FetchResponse::default().with_node_endpoints(vec![NodeEndpoint::default()
                .with_node_id(BrokerId(4))
                .with_host(s("kafka-4"))
                .with_port(9095)]);
            let out = rewrite_response(
                action,
                ApiKey::Fetch,
                v,
                frame(ApiKey::Fetch, v, &msg),
                &Book::default(),
            )
            .unwrap()
            .unwrap();
            let got: FetchResponse = parse(ApiKey::Fetch, v, &out);
            assert_eq!(got.node_endpoints[0].host.as_str(), "gw");
            assert_eq!(got.node_endpoints[0].port, 7004);
        }
    }

    #[test]
    fn share_node_endpoints_every_version() {
        use kafka_protocol::messages::share_acknowledge_response::NodeEndpoint as AckEndpoint;
        use kafka_protocol::messages::share_fetch_response::NodeEndpoint;
        for v in versions::<ShareFetchResponse>() {
            let msg =
                ShareFetchResponse::default().with_node_endpoints(vec![NodeEndpoint::default()
                    .with_node_id(BrokerId(1))
                    .with_host(s("k"))
                    .with_port(1)]);
            let out = rewrite_response(
                ResponseAction::NodeEndpoints,
                ApiKey::ShareFetch,
                v,
                frame(ApiKey::ShareFetch, v, &msg),
                &Book::default(),
            )
            .unwrap()
            .unwrap();
            let got: ShareFetchResponse = parse(ApiKey::ShareFetch, v, &out);
            assert_eq!(got.node_endpoints[0].port, 7001);
        }
        for v in versions::<ShareAcknowledgeResponse>() {
            let msg = ShareAcknowledgeResponse::default().with_node_endpoints(vec![
                AckEndpoint::default()
                    .with_node_id(BrokerId(1))
                    .with_host(s("k"))
                    .with_port(1),
            ]);
            let out = rewrite_response(
                ResponseAction::NodeEndpoints,
                ApiKey::ShareAcknowledge,
                v,
                frame(ApiKey::ShareAcknowledge, v, &msg),
                &Book::default(),
            )
            .unwrap()
            .unwrap();
            let got: ShareAcknowledgeResponse = parse(ApiKey::ShareAcknowledge, v, &out);
            assert_eq!(got.node_endpoints[0].port, 7001);
        }
    }

    fn api_versions_frame(version: i16, msg: &ApiVersionsResponse) -> Bytes {
        let header = ResponseHeader::default().with_correlation_id(77);
        let size = header.compute_size(0).unwrap() + msg.compute_size(version).unwrap();
        let mut buf = BytesMut::new();
        buf.put_i32(size as i32);
        header.encode(&mut buf, 0).unwrap();
        msg.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn api_versions_intersection_every_version() {
        for v in versions::<ApiVersionsResponse>() {
            let msg = ApiVersionsResponse::default().with_api_keys(vec![
                ApiVersion::default()
                    .with_api_key(0)
                    .with_min_version(0)
                    .with_max_version(99),
                ApiVersion::default()
                    .with_api_key(1)
                    .with_min_version(0)
                    .with_max_version(2), // below the gateway's minimum: dropped
                ApiVersion::default()
                    .with_api_key(3)
                    .with_min_version(1)
                    .with_max_version(5),
                ApiVersion::default()
                    .with_api_key(4242) // unknown: advertised as is
                    .with_min_version(0)
                    .with_max_version(1),
            ]);
            let out = rewrite_response(
                ResponseAction::ApiVersions,
                ApiKey::ApiVersions,
                v,
                api_versions_frame(v, &msg),
                &Book::default(),
            )
            .unwrap()
            .unwrap();
            let mut body = out.slice(4..);
            let header = ResponseHeader::decode(&mut body, 0).unwrap();
            assert_eq!(header.correlation_id, 77);
            let got = ApiVersionsResponse::decode(&mut body, v).unwrap();
            let produce = gateway_versions(ApiKey::Produce);
            let ranges: Vec<_> = got
                .api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version))
                .collect();
            assert_eq!(
                ranges,
                vec![(0, produce.min, produce.max), (3, 1, 5), (4242, 0, 1)],
                "v{v}"
            );
        }
    }

    #[test]
    fn api_versions_respect_the_version_floor() {
        /// A book whose gateway runs with ACLs: Metadata from v4.
        struct Floor;
        impl AddressBook for Floor {
            fn gateway_endpoint(&self, _: i32, _: &str, _: i32) -> (StrBytes, i32) {
                unreachable!()
            }
            fn version_floor(&self, key: ApiKey) -> i16 {
                if key == ApiKey::Metadata {
                    4
                } else {
                    0
                }
            }
            fn answered_locally(&self, key: ApiKey) -> bool {
                matches!(key, ApiKey::DescribeAcls | ApiKey::CreateAcls)
            }
        }
        let msg = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::Metadata as i16)
                .with_min_version(0)
                .with_max_version(12),
            ApiVersion::default()
                .with_api_key(ApiKey::Fetch as i16)
                .with_min_version(4)
                .with_max_version(12),
            ApiVersion::default()
                .with_api_key(ApiKey::DescribeAcls as i16)
                .with_min_version(2)
                .with_max_version(2),
        ]);
        let out = rewrite_response(
            ResponseAction::ApiVersions,
            ApiKey::ApiVersions,
            3,
            api_versions_frame(3, &msg),
            &Floor,
        )
        .unwrap()
        .unwrap();
        let mut body = out.slice(4..);
        ResponseHeader::decode(&mut body, 0).unwrap();
        let got = ApiVersionsResponse::decode(&mut body, 3).unwrap();
        let ranges: Vec<_> = got
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        // The ACL APIs the gateway answers itself: its whole range, offered or not.
        let describe = gateway_versions(ApiKey::DescribeAcls);
        let create = gateway_versions(ApiKey::CreateAcls);
        assert_eq!(
            ranges,
            vec![
                (3, 4, 12),
                (1, 4, 12),
                (29, describe.min, describe.max),
                (30, create.min, create.max)
            ]
        );
    }

    #[test]
    fn api_versions_error_body_is_v0() {
        // The broker rejected a v3 request with a v0 body.
        let msg = ApiVersionsResponse::default()
            .with_error_code(UNSUPPORTED_VERSION)
            .with_api_keys(vec![ApiVersion::default()
                .with_api_key(18)
                .with_min_version(0)
                .with_max_version(2)]);
        let out = rewrite_response(
            ResponseAction::ApiVersions,
            ApiKey::ApiVersions,
            3,
            api_versions_frame(0, &msg),
            &Book::default(),
        )
        .unwrap()
        .unwrap();
        let mut body = out.slice(4..);
        ResponseHeader::decode(&mut body, 0).unwrap();
        let got = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(got.error_code, UNSUPPORTED_VERSION);
        assert_eq!(got.api_keys[0].max_version, 2);
    }

    #[test]
    fn too_new_api_versions_answer() {
        let out = unsupported_api_versions(9);
        let mut body = out.slice(4..);
        assert_eq!(
            ResponseHeader::decode(&mut body, 0).unwrap().correlation_id,
            9
        );
        let got = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(got.error_code, UNSUPPORTED_VERSION);
        assert_eq!(got.api_keys[0].api_key, 18);
        assert_eq!(
            got.api_keys[0].max_version,
            gateway_versions(ApiKey::ApiVersions).max
        );
        assert!(body.is_empty());
    }

    #[test]
    fn garbage_response_is_an_error_not_a_panic() {
        let junk = Bytes::from_static(&[0, 0, 0, 6, 0, 0, 0, 1, 0xff, 0xff]);
        for action in [
            ResponseAction::Metadata,
            ResponseAction::FindCoordinator,
            ResponseAction::DescribeCluster,
            ResponseAction::ApiVersions,
        ] {
            assert!(
                rewrite_response(action, ApiKey::Metadata, 12, junk.clone(), &Book::default())
                    .is_err()
            );
        }
    }
}
