//! Kafka framing and the cheap header peek the hot path runs on every frame.
//!
//! Every Kafka message is a 4-byte big-endian length followed by that many bytes. A request
//! starts with `api_key: i16, api_version: i16, correlation_id: i32, client_id: nullable string`
//! (the client id stays a classic int16-length string even in flexible header v2), then, for
//! header v2, a tagged-field section. Responses start with the correlation id.
//!
//! The gateway keeps frames as raw bytes and reads only these few fields, so that passthrough
//! traffic is a copy of bytes; whole-message decoding happens only where a stage needs it.

use kafka_protocol::messages::ApiKey;

/// Bytes of the length prefix in front of every frame.
pub const LENGTH_PREFIX: usize = 4;

/// The largest `maxFrameBytes` a configuration may set. Keeping it below 2^28 means any
/// length whose first byte is a TLS record type or an ASCII letter is always over the limit,
/// so such bytes are classified instead of being waited for.
pub const MAX_FRAME_LIMIT: usize = 256 * 1024 * 1024;

/// Why a byte stream is not valid Kafka framing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix is negative.
    #[error("negative frame length {0}")]
    NegativeLength(i32),
    /// The length prefix exceeds the configured maximum frame size.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Declared size.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The first bytes are a TLS handshake record: a TLS client on a plaintext port.
    #[error("TLS handshake bytes on a plaintext Kafka port (is the client configured for SSL?)")]
    LooksLikeTls,
    /// The first bytes are an HTTP request line: an HTTP client on a Kafka port.
    #[error("HTTP request bytes on a Kafka port (the admin API is on another port)")]
    LooksLikeHttp,
    /// The frame is too short to hold a request or response header.
    #[error("frame of {0} bytes is too short for a header")]
    TruncatedHeader(usize),
    /// The client id length points past the end of the frame.
    #[error("client id of {len} bytes does not fit in a {frame} byte frame")]
    BadClientId {
        /// Declared client id length.
        len: i16,
        /// Frame size without the length prefix.
        frame: usize,
    },
    /// The tagged-field section of a flexible header is malformed.
    #[error("malformed tagged fields in request header")]
    BadTaggedFields,
}

/// Looks at the front of `buf` and, when a whole frame is there, returns its length including
/// the 4-byte prefix. `Ok(None)` means more bytes are needed; the second value of the tuple is
/// then the total frame size when the prefix is already known (to size the next read).
pub fn frame_len(buf: &[u8], max: usize) -> Result<FrameStatus, FrameError> {
    if buf.len() < LENGTH_PREFIX {
        // Classify obvious non-Kafka traffic as early as possible.
        if buf.len() >= 2 && buf[0] == 0x16 && buf[1] == 0x03 {
            return Err(FrameError::LooksLikeTls);
        }
        return Ok(FrameStatus::Incomplete { total: None });
    }
    let raw = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if raw < 0 {
        return Err(FrameError::NegativeLength(raw));
    }
    let size = raw as usize;
    if size > max {
        return Err(classify_oversize(buf, size, max));
    }
    let total = size + LENGTH_PREFIX;
    if buf.len() >= total {
        Ok(FrameStatus::Complete(total))
    } else {
        Ok(FrameStatus::Incomplete { total: Some(total) })
    }
}

/// What [`frame_len`] found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStatus {
    /// A whole frame of this many bytes (prefix included) is buffered.
    Complete(usize),
    /// More bytes are needed; `total` is the full frame size once the prefix is known.
    Incomplete {
        /// Full frame size including the prefix, when known.
        total: Option<usize>,
    },
}

fn classify_oversize(buf: &[u8], size: usize, max: usize) -> FrameError {
    if buf[0] == 0x16 && buf[1] == 0x03 {
        return FrameError::LooksLikeTls;
    }
    if buf[..4]
        .iter()
        .all(|b| b.is_ascii_uppercase() || *b == b' ')
    {
        return FrameError::LooksLikeHttp;
    }
    FrameError::TooLarge { size, max }
}

/// The request header fields the gateway reads from every request frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPeek {
    /// API key (may be one the gateway does not know).
    pub api_key: i16,
    /// API version.
    pub api_version: i16,
    /// Correlation id, echoed in the response.
    pub correlation_id: i32,
    /// Byte range of the client id inside the frame body, if present and not null.
    pub client_id: Option<std::ops::Range<usize>>,
    /// Offset of the request body inside the frame body (after the header), when the header
    /// format is known (known API keys only).
    pub body_offset: Option<usize>,
}

impl RequestPeek {
    /// The request body of `frame` (length prefix included), after the header; empty when
    /// the header format is unknown or longer than the frame.
    pub fn body_of(&self, frame: &bytes::Bytes) -> bytes::Bytes {
        let at = LENGTH_PREFIX + self.body_offset.unwrap_or(0);
        frame.slice(at.min(frame.len())..)
    }

    /// The known API key, if any.
    pub fn known_key(&self) -> Option<ApiKey> {
        ApiKey::try_from(self.api_key).ok()
    }
}

/// Reads the request header of `body` (a frame without its length prefix).
pub fn peek_request(body: &[u8]) -> Result<RequestPeek, FrameError> {
    if body.len() < 8 {
        return Err(FrameError::TruncatedHeader(body.len()));
    }
    let api_key = i16::from_be_bytes([body[0], body[1]]);
    let api_version = i16::from_be_bytes([body[2], body[3]]);
    let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    let known = ApiKey::try_from(api_key).ok();
    let header_version = known.map(|k| k.request_header_version(api_version));
    let mut peek = RequestPeek {
        api_key,
        api_version,
        correlation_id,
        client_id: None,
        body_offset: None,
    };
    if header_version == Some(0) {
        peek.body_offset = Some(8);
        return Ok(peek);
    }
    // Header v1 and v2 (and, by assumption, unknown API keys) carry a client id.
    if body.len() < 10 {
        if known.is_some() {
            return Err(FrameError::TruncatedHeader(body.len()));
        }
        return Ok(peek);
    }
    let len = i16::from_be_bytes([body[8], body[9]]);
    let mut offset = 10;
    if len >= 0 {
        let end = offset + len as usize;
        if end > body.len() {
            if known.is_some() {
                return Err(FrameError::BadClientId {
                    len,
                    frame: body.len(),
                });
            }
            return Ok(peek);
        }
        peek.client_id = Some(offset..end);
        offset = end;
    } else if len < -1 && known.is_some() {
        return Err(FrameError::BadClientId {
            len,
            frame: body.len(),
        });
    }
    if header_version == Some(2) {
        offset = skip_tagged_fields(body, offset).ok_or(FrameError::BadTaggedFields)?;
    }
    if known.is_some() {
        peek.body_offset = Some(offset);
    }
    Ok(peek)
}

/// Reads an unsigned varint at `pos`, returning the value and the position after it.
pub fn read_uvarint(buf: &[u8], mut pos: usize) -> Option<(u32, usize)> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *buf.get(pos)?;
        pos += 1;
        value |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, pos));
        }
    }
    None
}

/// The number of bytes [`put_uvarint`] writes for `v`.
pub fn uvarint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

/// Writes `v` as an unsigned varint (seven bits a byte, low bits first).
pub fn put_uvarint(out: &mut impl bytes::BufMut, mut v: u32) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Skips a tagged-field section starting at `pos`, returning the position after it.
pub fn skip_tagged_fields(buf: &[u8], pos: usize) -> Option<usize> {
    let (count, mut pos) = read_uvarint(buf, pos)?;
    for _ in 0..count {
        let (_tag, p) = read_uvarint(buf, pos)?;
        let (size, p) = read_uvarint(buf, p)?;
        pos = p.checked_add(size as usize)?;
        if pos > buf.len() {
            return None;
        }
    }
    Some(pos)
}

/// Whether a Produce request expects a response: `acks = 0` requests get none.
///
/// `body` is the frame without its length prefix and `peek` its parsed header. The acks field
/// follows the optional transactional id (v3+, compact from v9).
pub fn produce_expects_response(body: &[u8], peek: &RequestPeek) -> Result<bool, FrameError> {
    let mut pos = peek
        .body_offset
        .ok_or(FrameError::TruncatedHeader(body.len()))?;
    let version = peek.api_version;
    if version >= 3 {
        if version >= 9 {
            let (len_plus_one, p) =
                read_uvarint(body, pos).ok_or(FrameError::TruncatedHeader(body.len()))?;
            pos = p + (len_plus_one.saturating_sub(1)) as usize;
        } else {
            let len = read_i16(body, pos).ok_or(FrameError::TruncatedHeader(body.len()))?;
            pos += 2;
            if len > 0 {
                pos += len as usize;
            }
        }
    }
    let acks = read_i16(body, pos).ok_or(FrameError::TruncatedHeader(body.len()))?;
    Ok(acks != 0)
}

fn read_i16(buf: &[u8], pos: usize) -> Option<i16> {
    let bytes = buf.get(pos..pos.checked_add(2)?)?;
    Some(i16::from_be_bytes([bytes[0], bytes[1]]))
}

/// Correlation id of a response frame body (without the length prefix).
pub fn response_correlation_id(body: &[u8]) -> Result<i32, FrameError> {
    if body.len() < 4 {
        return Err(FrameError::TruncatedHeader(body.len()));
    }
    Ok(i32::from_be_bytes([body[0], body[1], body[2], body[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ProduceRequest, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn request(key: ApiKey, version: i16, client: Option<&str>, body: impl Encodable) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(client.map(|c| StrBytes::from_string(c.to_string())));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    #[test]
    fn frame_len_states() {
        let max = 1024;
        assert_eq!(
            frame_len(&[], max),
            Ok(FrameStatus::Incomplete { total: None })
        );
        assert_eq!(
            frame_len(&[0, 0, 0, 5, 1], max),
            Ok(FrameStatus::Incomplete { total: Some(9) })
        );
        assert_eq!(
            frame_len(&[0, 0, 0, 1, 7, 9], max),
            Ok(FrameStatus::Complete(5))
        );
        assert_eq!(
            frame_len(&[0xff, 0xff, 0xff, 0xff], max),
            Err(FrameError::NegativeLength(-1))
        );
        assert_eq!(
            frame_len(&[0, 0, 8, 0], max),
            Err(FrameError::TooLarge {
                size: 2048,
                max: 1024
            })
        );
        assert_eq!(
            frame_len(&[0x16, 0x03, 0x01, 0x02], max),
            Err(FrameError::LooksLikeTls)
        );
        assert_eq!(frame_len(&[0x16, 0x03], max), Err(FrameError::LooksLikeTls));
        assert_eq!(
            frame_len(b"GET / HTTP/1.1", max),
            Err(FrameError::LooksLikeHttp)
        );
        assert_eq!(frame_len(b"POST /x", max), Err(FrameError::LooksLikeHttp));
        // Even at the largest allowed limit, TLS and HTTP are classified, not awaited.
        assert_eq!(
            frame_len(&[0x16, 0x03, 0x01, 0x02], MAX_FRAME_LIMIT),
            Err(FrameError::LooksLikeTls)
        );
        assert_eq!(
            frame_len(b"GET / HTTP/1.1", MAX_FRAME_LIMIT),
            Err(FrameError::LooksLikeHttp)
        );
    }

    #[test]
    fn peeks_every_header_version() {
        // Header v1 (Produce v8) and v2 (Produce v9+) with and without a client id.
        for version in [3i16, 8, 9, 13] {
            for client in [None, Some("app-1")] {
                let bytes = request(ApiKey::Produce, version, client, ProduceRequest::default());
                let peek = peek_request(&bytes).unwrap();
                assert_eq!(peek.api_key, 0);
                assert_eq!(peek.api_version, version);
                assert_eq!(peek.correlation_id, 42);
                assert_eq!(
                    peek.client_id.clone().map(|r| &bytes[r]),
                    client.map(str::as_bytes)
                );
                let expected_body = if version >= 9 { 1 } else { 0 } + client.map_or(0, str::len);
                assert_eq!(peek.body_offset, Some(10 + expected_body));
            }
        }
    }

    #[test]
    fn unknown_api_keys_peek_leniently() {
        let mut bytes = vec![0x03, 0xe7, 0, 1, 0, 0, 0, 9];
        let peek = peek_request(&bytes).unwrap();
        assert_eq!((peek.api_key, peek.correlation_id), (999, 9));
        assert_eq!(peek.body_offset, None);
        bytes.extend_from_slice(&[0, 50]); // a client id that runs past the end
        assert!(peek_request(&bytes).is_ok());
    }

    #[test]
    fn rejects_truncated_headers() {
        assert_eq!(
            peek_request(&[0, 0, 0]),
            Err(FrameError::TruncatedHeader(3))
        );
        // Known key, client id longer than the frame.
        assert!(matches!(
            peek_request(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 100, b'a']),
            Err(FrameError::BadClientId { .. })
        ));
        // Flexible header whose tagged fields run past the end.
        assert_eq!(
            peek_request(&[0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 1, 0, 9]),
            Err(FrameError::BadTaggedFields)
        );
    }

    #[test]
    fn produce_structure_check() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::TopicName;
        for version in 3i16..=13 {
            let req = ProduceRequest::default()
                .with_acks(-1)
                .with_transactional_id(Some(StrBytes::from_static_str("tx").into()))
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str("t")))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(bytes::Bytes::from_static(b"abc"))),
                            PartitionProduceData::default().with_index(1),
                        ]),
                    TopicProduceData::default(),
                ]);
            let mut body = BytesMut::new();
            req.encode(&mut body, version).unwrap();
            assert!(
                crate::schema::check_request(0, version, &body),
                "v{version}"
            );
            assert!(
                !crate::schema::check_request(0, version, &body[..body.len() - 3]),
                "v{version} cut"
            );
            // A forged topic count is refused before any decoder sees it.
            let mut forged = body.to_vec();
            let at = 2 + 1 + 2 + 2 + 4 - usize::from(version < 9); // after txn id "tx", acks, timeout
            let at = if version >= 9 { 1 + 2 + 2 + 4 } else { at };
            if version >= 9 {
                forged.splice(at..at + 1, [0xff, 0xff, 0xff, 0xff, 0x07]);
            } else {
                forged[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
            }
            assert!(
                !crate::schema::check_request(0, version, &forged),
                "v{version} forged"
            );
        }
    }

    #[test]
    fn produce_acks_every_version() {
        for version in 3i16..=13 {
            for acks in [-1i16, 0, 1] {
                for txn in [None, Some("tx-1")] {
                    let req = ProduceRequest::default()
                        .with_acks(acks)
                        .with_timeout_ms(1000)
                        .with_transactional_id(
                            txn.map(|t| StrBytes::from_string(t.to_string()).into()),
                        );
                    let bytes = request(ApiKey::Produce, version, Some("c"), req);
                    let peek = peek_request(&bytes).unwrap();
                    assert_eq!(
                        produce_expects_response(&bytes, &peek).unwrap(),
                        acks != 0,
                        "version {version} acks {acks} txn {txn:?}"
                    );
                }
            }
        }
    }
}
