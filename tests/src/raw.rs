//! Raw Kafka connections: kafka-protocol frames written and read by hand, for requests a
//! real client would not send (hostile input, exact versions, SASL by hand) and for answers
//! checked field by field.

use anyhow::{bail, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw Kafka connection for protocol-level tests.
pub struct RawClient {
    /// The socket.
    pub stream: TcpStream,
    buf: BytesMut,
    correlation_id: i32,
}

impl RawClient {
    /// Connects.
    pub async fn connect(addr: SocketAddr) -> Result<RawClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buf: BytesMut::new(),
            correlation_id: 0,
        })
    }

    /// Connects from a chosen local address (e.g. `127.0.0.2`: every address of 127.0.0.0/8
    /// is loopback), to appear as another source.
    pub async fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> Result<RawClient> {
        let socket = match source {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buf: BytesMut::new(),
            correlation_id: 0,
        })
    }

    /// Encodes a request frame (length prefix included) without sending it.
    pub fn encode<R: Request>(&mut self, req: &R, version: i16) -> (i32, Bytes) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let hv = R::header_version(version);
        let size = header.compute_size(hv).unwrap() + req.compute_size(version).unwrap();
        let mut buf = BytesMut::with_capacity(size + 4);
        buf.put_i32(size as i32);
        header.encode(&mut buf, hv).unwrap();
        req.encode(&mut buf, version).unwrap();
        (self.correlation_id, buf.freeze())
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads one response frame (without the length prefix).
    pub async fn read_frame(&mut self) -> Result<Bytes> {
        loop {
            if self.buf.len() >= 4 {
                let n = i32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() >= 4 + n {
                    let mut f = self.buf.split_to(4 + n);
                    return Ok(f.split_off(4).freeze());
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed");
            }
        }
    }

    /// Sends a request and decodes its response.
    pub async fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let (cid, bytes) = self.encode(req, version);
        self.send_raw(&bytes).await?;
        let mut frame = self.read_frame().await?;
        let key = ApiKey::try_from(R::KEY).unwrap();
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))?;
        if header.correlation_id != cid {
            bail!("correlation id {} != {cid}", header.correlation_id);
        }
        R::Response::decode(&mut frame, version)
    }

    /// True when the peer closes the connection within `within` (reading and discarding).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let mut scratch = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }
}

impl RawClient {
    /// Runs a SASL/PLAIN exchange (SaslHandshake v1, SaslAuthenticate v2); returns the
    /// SaslAuthenticate error code (0: authenticated).
    pub async fn sasl_plain(&mut self, user: &str, password: &str) -> Result<i16> {
        use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
        let hs = self
            .call(
                &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
                1,
            )
            .await?;
        if hs.error_code != 0 {
            return Ok(hs.error_code);
        }
        let mut msg = Vec::new();
        msg.push(0);
        msg.extend_from_slice(user.as_bytes());
        msg.push(0);
        msg.extend_from_slice(password.as_bytes());
        let auth = self
            .call(
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(msg)),
                2,
            )
            .await?;
        Ok(auth.error_code)
    }
}

/// One valid record batch (magic 2, no compression) holding one record with `value`, for raw
/// Produce requests.
pub fn record_batch(value: &str) -> bytes::Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(bytes::Bytes::from(value.to_string())),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).expect("encoding a record batch");
    buf.freeze()
}
