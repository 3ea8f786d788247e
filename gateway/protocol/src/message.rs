//! One helper for every message the gateway builds: response frames around a body, responses
//! encoded from kafka-protocol messages, and error answers to any request the gateway refuses.
//!
//! Stages never write a length prefix or a response header by hand: they call
//! [`response_frame`] or [`encode_response`]. An error answer for a refused request is built
//! by [`error_response`], which knows each API's error form. Error codes come from
//! kafka-protocol's own [`ResponseError`] table (`ResponseError::PolicyViolation.code()`), so the
//! gateway holds no table of its own.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceResponse, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

pub use kafka_protocol::error::ResponseError;

use crate::frame::LENGTH_PREFIX;

/// The Kafka error codes the gateway answers with, each taken from kafka-protocol's
/// [`ResponseError`] table (no number is written here by hand).
pub mod codes {
    use super::ResponseError as E;

    /// No error.
    pub const NONE: i16 = 0;
    /// UNKNOWN_SERVER_ERROR.
    pub const UNKNOWN_SERVER_ERROR: i16 = E::UnknownServerError.code();
    /// CORRUPT_MESSAGE.
    pub const CORRUPT_MESSAGE: i16 = E::CorruptMessage.code();
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = E::UnknownTopicOrPartition.code();
    /// REQUEST_TIMED_OUT.
    pub const REQUEST_TIMED_OUT: i16 = E::RequestTimedOut.code();
    /// INVALID_TOPIC_EXCEPTION.
    pub const INVALID_TOPIC_EXCEPTION: i16 = E::InvalidTopicException.code();
    /// TOPIC_AUTHORIZATION_FAILED.
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = E::TopicAuthorizationFailed.code();
    /// GROUP_AUTHORIZATION_FAILED.
    pub const GROUP_AUTHORIZATION_FAILED: i16 = E::GroupAuthorizationFailed.code();
    /// CLUSTER_AUTHORIZATION_FAILED.
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = E::ClusterAuthorizationFailed.code();
    /// UNSUPPORTED_SASL_MECHANISM.
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = E::UnsupportedSaslMechanism.code();
    /// ILLEGAL_SASL_STATE.
    pub const ILLEGAL_SASL_STATE: i16 = E::IllegalSaslState.code();
    /// UNSUPPORTED_VERSION.
    pub const UNSUPPORTED_VERSION: i16 = E::UnsupportedVersion.code();
    /// INVALID_REQUEST.
    pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();
    /// POLICY_VIOLATION.
    pub const POLICY_VIOLATION: i16 = E::PolicyViolation.code();
    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 =
        E::TransactionalIdAuthorizationFailed.code();
    /// SECURITY_DISABLED.
    pub const SECURITY_DISABLED: i16 = E::SecurityDisabled.code();
    /// OPERATION_NOT_ATTEMPTED.
    pub const OPERATION_NOT_ATTEMPTED: i16 = E::OperationNotAttempted.code();
    /// SASL_AUTHENTICATION_FAILED.
    pub const SASL_AUTHENTICATION_FAILED: i16 = E::SaslAuthenticationFailed.code();
    /// FETCH_SESSION_ID_NOT_FOUND.
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = E::FetchSessionIdNotFound.code();
    /// INVALID_RECORD.
    pub const INVALID_RECORD: i16 = E::InvalidRecord.code();
    /// UNKNOWN_TOPIC_ID.
    pub const UNKNOWN_TOPIC_ID: i16 = E::UnknownTopicId.code();
}

/// A produce partition the gateway answers itself (refused by a stage, or rejected or
/// emptied by an interceptor).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionResult {
    /// Topic name.
    pub topic: TopicName,
    /// Topic id (Produce v13+).
    pub topic_id: uuid::Uuid,
    /// Partition.
    pub partition: i32,
    /// Error code (0: accepted and dropped).
    pub code: i16,
    /// Message.
    pub message: Option<String>,
}

/// Empties a Fetch partition and fails it with `code`.
pub fn reject_fetch_partition(p: &mut PartitionData, code: i16) {
    p.error_code = code;
    p.records = Some(Bytes::new());
    p.aborted_transactions = Some(Vec::new());
}

/// Adds the partitions the gateway answers itself to a Produce response.
pub fn merge_produce(resp: &mut ProduceResponse, extras: &[PartitionResult]) {
    for e in extras {
        let entry = PartitionProduceResponse::default()
            .with_index(e.partition)
            .with_error_code(e.code)
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
            .with_error_message(e.message.clone().map(StrBytes::from_string));
        match resp
            .responses
            .iter_mut()
            .find(|t| t.name == e.topic && t.topic_id == e.topic_id)
        {
            Some(t) => t.partition_responses.push(entry),
            None => resp.responses.push(
                TopicProduceResponse::default()
                    .with_name(e.topic.clone())
                    .with_topic_id(e.topic_id)
                    .with_partition_responses(vec![entry]),
            ),
        }
    }
}

/// A response frame for `key`/`version` around `body`.
pub fn response_frame(key: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> Bytes {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let hv = key.response_header_version(version);
    let size = header.compute_size(hv).expect("response header") + body.len();
    let mut out = BytesMut::with_capacity(LENGTH_PREFIX + size);
    out.put_i32(size as i32);
    header.encode(&mut out, hv).expect("response header");
    out.put_slice(body);
    out.freeze()
}

/// A response frame encoding `msg` at `version`.
pub fn encode_response<T: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    msg: &T,
) -> Bytes {
    let mut body = BytesMut::new();
    msg.encode(&mut body, version)
        .expect("gateway-built response encodes");
    response_frame(key, version, correlation_id, &body)
}

/// [`encode_response`] for a message that may not fit the version: `None` then.
pub fn try_encode_response<T: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    msg: &T,
) -> Option<Bytes> {
    let mut body = BytesMut::new();
    msg.encode(&mut body, version).ok()?;
    Some(response_frame(key, version, correlation_id, &body))
}

macro_rules! top_level_error {
    ($key:expr, $version:expr, $cid:expr, $code:expr, $($api:ident => $resp:ty),* $(,)?) => {
        match $key {
            $(ApiKey::$api => {
                let mut r = <$resp>::default();
                r.error_code = $code;
                // None (the connection closes) where the version has no top-level error code
                // (OffsetFetch v0-1 and v8+): never a panic on a client's request.
                try_encode_response($key, $version, $cid, &r)
            })*
            _ => None,
        }
    };
}

/// A response to `body` that fails it with `code`, for the APIs that have an error form
/// the gateway can build; `None` for the others.
pub fn error_response(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    body: &Bytes,
    code: i16,
    message: &str,
) -> Option<Bytes> {
    use kafka_protocol::messages::*;
    let key = ApiKey::try_from(api_key).ok()?;
    match key {
        ApiKey::Produce => {
            let req: ProduceRequest = crate::schema::decode_request(key, version, body).ok()?;
            let mut resp = ProduceResponse::default();
            let extras: Vec<_> = req
                .topic_data
                .iter()
                .flat_map(|t| {
                    t.partition_data.iter().map(|p| PartitionResult {
                        topic: t.name.clone(),
                        topic_id: t.topic_id,
                        partition: p.index,
                        code,
                        message: Some(message.to_string()),
                    })
                })
                .collect();
            merge_produce(&mut resp, &extras);
            Some(encode_response(key, version, correlation_id, &resp))
        }
        ApiKey::Fetch => {
            let req: FetchRequest = crate::schema::decode_request(key, version, body).ok()?;
            let mut resp =
                FetchResponse::default().with_error_code(if version >= 7 { code } else { 0 });
            resp.session_id = req.session_id;
            resp.responses = req
                .topics
                .iter()
                .map(|t| {
                    fetch_response::FetchableTopicResponse::default()
                        .with_topic(t.topic.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    let mut d = PartitionData::default()
                                        .with_partition_index(p.partition)
                                        .with_high_watermark(-1);
                                    reject_fetch_partition(&mut d, code);
                                    d
                                })
                                .collect(),
                        )
                })
                .collect();
            Some(encode_response(key, version, correlation_id, &resp))
        }
        ApiKey::Metadata => {
            let req: MetadataRequest = crate::schema::decode_request(key, version, body).ok()?;
            let mut resp = MetadataResponse::default();
            resp.topics = req
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    metadata_response::MetadataResponseTopic::default()
                        .with_name(t.name)
                        .with_topic_id(t.topic_id)
                        .with_error_code(code)
                })
                .collect();
            Some(encode_response(key, version, correlation_id, &resp))
        }
        // From v4 the request names a batch of keys and the answer has an entry (and an
        // error) per key, no top-level error.
        ApiKey::FindCoordinator if version >= 4 => {
            let req: FindCoordinatorRequest =
                crate::schema::decode_request(key, version, body).ok()?;
            let resp = FindCoordinatorResponse::default().with_coordinators(
                req.coordinator_keys
                    .into_iter()
                    .map(|k| {
                        find_coordinator_response::Coordinator::default()
                            .with_key(k)
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(code)
                            .with_error_message(Some(StrBytes::from_string(message.to_string())))
                    })
                    .collect(),
            );
            try_encode_response(key, version, correlation_id, &resp)
        }
        _ => top_level_error!(key, version, correlation_id, code,
            FindCoordinator => FindCoordinatorResponse,
            JoinGroup => JoinGroupResponse,
            Heartbeat => HeartbeatResponse,
            LeaveGroup => LeaveGroupResponse,
            SyncGroup => SyncGroupResponse,
            DescribeCluster => DescribeClusterResponse,
            InitProducerId => InitProducerIdResponse,
            ListGroups => ListGroupsResponse,
            AddOffsetsToTxn => AddOffsetsToTxnResponse,
            EndTxn => EndTxnResponse,
            OffsetFetch => OffsetFetchResponse,
            ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
            GetTelemetrySubscriptions => GetTelemetrySubscriptionsResponse,
            PushTelemetry => PushTelemetryResponse,
            DescribeAcls => DescribeAclsResponse,
            SaslHandshake => SaslHandshakeResponse,
            SaslAuthenticate => SaslAuthenticateResponse,
        ),
    }
}

/// Encodes a response frame from a decoded header and message: length prefix, header, body.
pub fn encode_with_header<T: Encodable>(
    key: ApiKey,
    version: i16,
    header: &ResponseHeader,
    msg: &T,
) -> anyhow::Result<Bytes> {
    use anyhow::Context as _;
    let header_version = key.response_header_version(version);
    let size = header.compute_size(header_version)? + msg.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(LENGTH_PREFIX + size);
    buf.put_i32(i32::try_from(size).context("response too large")?);
    header.encode(&mut buf, header_version)?;
    msg.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what was written
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::ProduceRequest;
    use kafka_protocol::protocol::Decodable;

    fn produce_body(version: i16) -> Bytes {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![
                    PartitionProduceData::default().with_index(0),
                    PartitionProduceData::default().with_index(1),
                ])]);
        let mut b = BytesMut::new();
        req.encode(&mut b, version).unwrap();
        b.freeze()
    }

    #[test]
    fn produce_error_response_names_every_partition() {
        for version in [3i16, 9, 12] {
            let frame =
                error_response(0, version, 5, &produce_body(version), 87, "too big").unwrap();
            let mut body = frame.slice(4..);
            let header =
                ResponseHeader::decode(&mut body, ApiKey::Produce.response_header_version(version))
                    .unwrap();
            assert_eq!(header.correlation_id, 5);
            let resp = ProduceResponse::decode(&mut body, version).unwrap();
            let parts: Vec<_> = resp.responses[0]
                .partition_responses
                .iter()
                .map(|p| (p.index, p.error_code))
                .collect();
            assert_eq!(parts, vec![(0, 87), (1, 87)]);
        }
    }

    #[test]
    fn generic_error_response_or_none() {
        let frame =
            error_response(ApiKey::Heartbeat as i16, 4, 9, &Bytes::new(), 44, "no").unwrap();
        let mut body = frame.slice(4..);
        ResponseHeader::decode(&mut body, ApiKey::Heartbeat.response_header_version(4)).unwrap();
        let resp = kafka_protocol::messages::HeartbeatResponse::decode(&mut body, 4).unwrap();
        assert_eq!(resp.error_code, 44);
        // No generic error form: the caller closes the connection.
        assert!(
            error_response(ApiKey::CreateTopics as i16, 5, 1, &Bytes::new(), 44, "no").is_none()
        );
        assert!(error_response(9999, 0, 1, &Bytes::new(), 44, "no").is_none());
    }
}
