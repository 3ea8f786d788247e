//! The one door through which bytes the gateway did not produce reach kafka-protocol.
//!
//! kafka-protocol's decoders trust the array counts they read: `Vec::with_capacity(count)`
//! with a count from the wire. A body of the wrong shape (a forged count, a request relabelled
//! with another version, a broker answering in a version other than the one asked for) can
//! make that one allocation hundreds of gigabytes, and the process aborts: no `Result`, no
//! unwinding. Every decode of a client's request or a broker's response therefore goes
//! through these functions, which walk the body against the schema table first (see
//! [`super::walk_request`]) and only then decode it.
//!
//! `gateway/clippy.toml` forbids calling `Decodable::decode` anywhere else in the gateway, so
//! a new stage cannot forget the check: code that decodes bytes it built itself (tests, the
//! gateway's own encodings) says so with an `allow` and a reason.
#![allow(clippy::disallowed_methods)] // the checked door itself

use anyhow::{Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::Decodable;

/// Decodes a request body (the bytes after the request header) of `key` at `version`, after
/// checking its structure.
pub fn decode_request<T: Decodable>(key: ApiKey, version: i16, body: &Bytes) -> Result<T> {
    super::walk_request(key as i16, version, body, &mut ())
        .with_context(|| format!("malformed {key:?} v{version} request"))?;
    T::decode(&mut body.clone(), version)
        .with_context(|| format!("decoding {key:?} v{version} request"))
}

/// Decodes a response body (the bytes after the response header) of `key` at `version`,
/// after checking its structure.
pub fn decode_response<T: Decodable>(key: ApiKey, version: i16, body: &Bytes) -> Result<T> {
    super::walk_response(key as i16, version, body, &mut ())
        .with_context(|| format!("malformed {key:?} v{version} response"))?;
    T::decode(&mut body.clone(), version)
        .with_context(|| format!("decoding {key:?} v{version} response"))
}

/// Decodes a response header and body (a frame without its length prefix), advancing `buf`
/// past what was read. Bytes after the message are left in `buf` (some brokers append them;
/// clients ignore them).
pub fn decode_response_frame<T: Decodable>(
    key: ApiKey,
    version: i16,
    buf: &mut Bytes,
) -> Result<(ResponseHeader, T)> {
    let header = decode_response_header(key, version, buf)?;
    let used = super::walk_response(key as i16, version, buf, &mut ())
        .with_context(|| format!("malformed {key:?} v{version} response"))?;
    let mut body = buf.split_to(used);
    let msg = T::decode(&mut body, version)
        .with_context(|| format!("decoding {key:?} v{version} response"))?;
    Ok((header, msg))
}

/// Decodes a response header (its tagged fields are read into a map, never preallocated).
pub fn decode_response_header(
    key: ApiKey,
    version: i16,
    buf: &mut Bytes,
) -> Result<ResponseHeader> {
    ResponseHeader::decode(buf, key.response_header_version(version))
        .with_context(|| format!("decoding {key:?} v{version} response header"))
}

/// Decodes a request header at its header version (strings and tagged fields only: nothing
/// in it is preallocated from a count).
pub fn decode_request_header(key: ApiKey, version: i16, buf: &mut Bytes) -> Result<RequestHeader> {
    RequestHeader::decode(buf, key.request_header_version(version))
        .with_context(|| format!("decoding {key:?} v{version} request header"))
}

/// Decodes a message the gateway encoded itself (never bytes from a peer), so no structural
/// check is needed. Used where a stage builds a message, encodes it, and reads it back.
pub fn decode_own<T: Decodable>(version: i16, bytes: &Bytes) -> Result<T> {
    T::decode(&mut bytes.clone(), version).context("decoding the gateway's own encoding")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{ProduceResponse, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn produce_response(version: i16) -> Bytes {
        let msg = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partition_responses(vec![PartitionProduceResponse::default().with_index(0)])]);
        let mut buf = BytesMut::new();
        msg.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    /// A broker answering a Produce v13 (topic ids) with a v10 body (topic names): read as
    /// v13, the topic name's bytes become a topic id and the following bytes a partition
    /// count of billions. kafka-protocol alone would try to reserve it and abort the process.
    #[test]
    fn a_response_in_another_version_is_refused_not_allocated() {
        let v10 = produce_response(10);
        let err = decode_response::<ProduceResponse>(ApiKey::Produce, 13, &v10).unwrap_err();
        assert!(
            format!("{err:#}").contains("malformed Produce v13 response"),
            "{err:#}"
        );
        // The same bytes at the version they were written in decode.
        let ok = decode_response::<ProduceResponse>(ApiKey::Produce, 10, &v10).unwrap();
        assert_eq!(ok.responses.len(), 1);
    }

    #[test]
    fn frame_decode_leaves_trailing_bytes() {
        let mut frame = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(7)
            .encode(&mut frame, ApiKey::Produce.response_header_version(10))
            .unwrap();
        frame.extend_from_slice(&produce_response(10));
        frame.extend_from_slice(b"xyz");
        let mut buf = frame.freeze();
        let (h, m) =
            decode_response_frame::<ProduceResponse>(ApiKey::Produce, 10, &mut buf).unwrap();
        assert_eq!(h.correlation_id, 7);
        assert_eq!(m.responses.len(), 1);
        assert_eq!(&buf[..], b"xyz");
    }
}
