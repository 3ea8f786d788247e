//! Typed Kafka requests and responses, through the [`kafka_protocol`] crate (re-exported, so
//! plugins use the same version).
//!
//! For the generic hooks, which see raw bodies: decode with [`decode_request`] /
//! [`decode_response`], change the message, encode it back with [`encode_body`] and return
//! `RequestAction::Replace` (or `Respond` with an encoded response).
//!
//! ```
//! use sluice_sdk::kafka::{decode_request, encode_body};
//! use sluice_sdk::kafka::kafka_protocol::messages::MetadataRequest;
//! use sluice_sdk::{Body, Context, RequestAction};
//!
//! fn on_request(ctx: &Context, body: &dyn Body) -> RequestAction {
//!     // Only called for Metadata (describe() lists api_key::METADATA).
//!     let Ok(mut req) = decode_request::<MetadataRequest>(ctx, body) else {
//!         return RequestAction::Forward;
//!     };
//!     req.allow_auto_topic_creation = false;
//!     match encode_body(&req, ctx.api_version) {
//!         Ok(bytes) => RequestAction::Replace(bytes),
//!         Err(_) => RequestAction::Forward,
//!     }
//! }
//! # let req = MetadataRequest::default();
//! # let body = encode_body(&req, 12).unwrap();
//! # let ctx = Context::new(3, 12);
//! # assert!(matches!(on_request(&ctx, &body), RequestAction::Replace(_)));
//! ```

use std::fmt;

pub use kafka_protocol;
use kafka_protocol::protocol::{Decodable, Encodable, Request};

use crate::{error_code, Body, Context, KafkaError};

/// A body that does not decode or a message that does not encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

impl From<ProtocolError> for KafkaError {
    /// `INVALID_REQUEST` with the error's text.
    fn from(e: ProtocolError) -> Self {
        KafkaError::new(error_code::INVALID_REQUEST, e.0)
    }
}

/// Decodes a whole body as message `M` at `version`.
pub fn decode<M: Decodable>(body: &dyn Body, version: i16) -> Result<M, ProtocolError> {
    let mut buf = bytes::Bytes::from(body.bytes());
    M::decode(&mut buf, version).map_err(|e| {
        ProtocolError(format!(
            "cannot decode {} v{version}: {e}",
            short_type_name::<M>()
        ))
    })
}

/// Decodes the body of the request in `ctx` as `R`, at the request's version; fails when the
/// request is not of `R`'s API key.
pub fn decode_request<R: Request>(ctx: &Context, body: &dyn Body) -> Result<R, ProtocolError> {
    if ctx.api_key != R::KEY {
        return Err(ProtocolError(format!(
            "request has API key {}, not {} ({})",
            ctx.api_key,
            R::KEY,
            short_type_name::<R>()
        )));
    }
    decode(body, ctx.api_version)
}

/// Decodes the body of the response to the request in `ctx` as `M` (e.g. `MetadataResponse`),
/// at the request's version. The API key is not checked: call it for the API keys you
/// subscribed to.
pub fn decode_response<M: Decodable>(ctx: &Context, body: &dyn Body) -> Result<M, ProtocolError> {
    decode(body, ctx.api_version)
}

/// Encodes a request or response body at `version`, for `RequestAction::Replace` / `Respond`
/// or `ResponseAction::Replace`.
pub fn encode_body<M: Encodable>(msg: &M, version: i16) -> Result<Vec<u8>, ProtocolError> {
    let size = msg.compute_size(version).map_err(|e| {
        ProtocolError(format!(
            "cannot encode {} v{version}: {e}",
            short_type_name::<M>()
        ))
    })?;
    let mut buf = bytes::BytesMut::with_capacity(size);
    msg.encode(&mut buf, version).map_err(|e| {
        ProtocolError(format!(
            "cannot encode {} v{version}: {e}",
            short_type_name::<M>()
        ))
    })?;
    Ok(buf.to_vec())
}

fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    name.rsplit("::").next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        produce_request::{PartitionProduceData, TopicProduceData},
        MetadataRequest, MetadataResponse, ProduceRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    fn produce_request() -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_partition_data(
                    vec![PartitionProduceData::default().with_index(2)],
                )])
    }

    #[test]
    fn request_round_trip() {
        let req = produce_request();
        let body = encode_body(&req, 9).unwrap();
        let ctx = Context::new(0, 9);
        let back: ProduceRequest = decode_request(&ctx, &body).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.topic_data[0].partition_data[0].index, 2);
    }

    #[test]
    fn wrong_api_key_or_garbage_is_an_error() {
        let body = encode_body(&produce_request(), 9).unwrap();
        let err = decode_request::<MetadataRequest>(&Context::new(0, 9), &body).unwrap_err();
        assert_eq!(err.0, "request has API key 0, not 3 (MetadataRequest)");
        let garbage: &[u8] = &[0xff, 0xff, 0xff];
        let err = decode_request::<ProduceRequest>(&Context::new(0, 9), &garbage).unwrap_err();
        assert!(
            err.0.starts_with("cannot decode ProduceRequest v9"),
            "{err}"
        );
        let kafka: KafkaError = err.into();
        assert_eq!(kafka.code, error_code::INVALID_REQUEST);
    }

    #[test]
    fn response_round_trip() {
        let resp = MetadataResponse::default().with_throttle_time_ms(5);
        let body = encode_body(&resp, 12).unwrap();
        let back: MetadataResponse = decode_response(&Context::new(3, 12), &body).unwrap();
        assert_eq!(back.throttle_time_ms, 5);
    }
}
