//! KIP-951 endpoints rewritten in the tail of a response whose body already went on.
//!
//! A large Fetch response is streamed to the client as it arrives (see
//! `session::response`); only its top-level tagged-field section, where the broker lists the
//! `node_endpoints` of the leaders it names, is held back and rewritten here. The frame's
//! length prefix has gone out by then, so the section must keep its exact size:
//!
//! * endpoints that fit in the same bytes are rewritten, and any bytes left over are filled
//!   with one tagged field of an unknown tag ([`PAD_TAGS`]), which every Kafka client skips
//!   (unknown tags are how the protocol evolves) — except a single byte, which no field fits;
//! * endpoints that do not fit (the gateway's host name is longer than the broker's) are left
//!   out, their room padded the same way. Such a response only comes with a leadership change
//!   (`NOT_LEADER_OR_FOLLOWER` with a `current_leader` hint); a client that finds no endpoint
//!   for the new leader refreshes its metadata, as clients before KIP-951 always did. The
//!   gateway counts these (`sluice_node_endpoints_dropped_total`).
//!
//! Responses small enough to be held whole keep the length-changing rewrite of the parent
//! module and lose nothing.

use anyhow::{bail, ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceResponse};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::{fetch_endpoints, produce_endpoints, AddressBook, Endpoint};
use crate::frame::{put_uvarint, read_uvarint, uvarint_len};

/// Tags of the padding field, unknown to every Kafka message: Kafka gives tags out from 0
/// upwards (Fetch and Produce responses use 0 at the top level). Two, because their varints
/// differ in length (one byte, two bytes): between them every size of padding from 2 bytes
/// up can be written exactly. A rewrite that leaves exactly 1 byte over cannot be padded and
/// drops the endpoints.
pub const PAD_TAGS: [u32; 2] = [127, 16_383];

/// What [`rewrite_tail`] did to a tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Nothing to rewrite (no endpoints): forward the original bytes.
    Unchanged,
    /// The endpoints now name the gateway, in the same number of bytes.
    Rewritten(Bytes),
    /// The gateway's endpoints did not fit: left out, in the same number of bytes.
    Dropped(Bytes),
}

/// Rewrites the `node_endpoints` in `tail`, the top-level tagged-field section of a `key`
/// response at `version` (from where [`crate::schema::TailFinder`] stopped to the end of
/// the frame). The result has exactly `tail.len()` bytes.
pub fn rewrite_tail(
    key: ApiKey,
    version: i16,
    tail: &[u8],
    book: &dyn AddressBook,
) -> Result<Tail> {
    let tag = endpoints_tag(key)?;
    let section = Section::parse(tail)?;
    if !section.fields.iter().any(|f| f.tag == tag) {
        return Ok(Tail::Unchanged);
    }
    let size = tail.len() - section.trailing;
    let rewritten = match key {
        ApiKey::Fetch => rewrite_section::<FetchResponse>(key, version, &tail[..size], book, |m| {
            fetch_endpoints(m)
        }),
        ApiKey::Produce => {
            rewrite_section::<ProduceResponse>(key, version, &tail[..size], book, |m| {
                produce_endpoints(m)
            })
        }
        other => bail!("no node endpoints in {other:?} responses"),
    }?;
    let Some(rewritten) = rewritten else {
        return Ok(Tail::Unchanged);
    };
    let with = Section::parse(&rewritten)?.fields;
    let without: Vec<_> = with.iter().copied().filter(|f| f.tag != tag).collect();
    let (bytes, dropped) = match encode(&with, size) {
        Some(b) => (b, false),
        None => (
            encode(&without, size).context("a tagged-field section too small to pad")?,
            true,
        ),
    };
    let mut out = BytesMut::with_capacity(tail.len());
    out.put_slice(&bytes);
    out.put_slice(&tail[size..]);
    let out = out.freeze();
    Ok(if dropped {
        Tail::Dropped(out)
    } else {
        Tail::Rewritten(out)
    })
}

/// The tagged-field section `section` of a `T` with every endpoint named through `book`
/// (its size may change), or `None` when it lists no endpoints.
///
/// The section is decoded through the checked door as the end of an otherwise empty `T`:
/// the bytes of `T::default()` before its own (empty) section, then `section`.
fn rewrite_section<T: Decodable + Encodable + Default>(
    key: ApiKey,
    version: i16,
    section: &[u8],
    book: &dyn AddressBook,
    endpoints: impl Fn(&mut T) -> Vec<Endpoint<'_>>,
) -> Result<Option<Vec<u8>>> {
    let mut body = BytesMut::new();
    T::default().encode(&mut body, version)?;
    // An empty tagged-field section is its count, one zero byte.
    ensure!(
        body.last() == Some(&0),
        "{key:?} v{version} is not flexible"
    );
    body.truncate(body.len() - 1);
    let head = body.len();
    body.put_slice(section);
    let mut msg: T = crate::schema::decode_response(key, version, &body.freeze())?;
    let list = endpoints(&mut msg);
    if list.is_empty() {
        return Ok(None);
    }
    for (node, host, port) in list {
        (*host, *port) = book.gateway_endpoint(node, host, *port);
    }
    let mut out = BytesMut::new();
    msg.encode(&mut out, version)?;
    Ok(Some(out.split_off(head).to_vec()))
}

/// Whether `key`'s responses keep their endpoints in the top-level tagged fields, so that
/// [`rewrite_tail`] can rewrite them: Fetch and Produce. ShareFetch and ShareAcknowledge end
/// with an untagged `node_endpoints` array instead, and are held whole.
pub fn rewrites_tail(key: ApiKey) -> bool {
    endpoints_tag(key).is_ok()
}

/// The tag of `node_endpoints` in `key`'s response, from the schema table.
fn endpoints_tag(key: ApiKey) -> Result<u32> {
    crate::schema::response_def(key as i16)
        .and_then(|def| {
            def.root()
                .fields()
                .iter()
                .find(|f| f.name == "node_endpoints" && f.tag >= 0)
        })
        .map(|f| f.tag as u32)
        .with_context(|| format!("{key:?} responses have no tagged node endpoints"))
}

/// A tagged-field section split into its fields.
struct Section<'a> {
    fields: Vec<TaggedField<'a>>,
    /// Bytes after the section (some brokers append them; clients ignore them): kept as they
    /// are.
    trailing: usize,
}

#[derive(Clone, Copy)]
struct TaggedField<'a> {
    tag: u32,
    value: &'a [u8],
}

impl<'a> Section<'a> {
    fn parse(tail: &'a [u8]) -> Result<Self> {
        let mut b = tail;
        let count = get_uvarint(&mut b)?;
        // Each field takes at least two bytes.
        ensure!(
            count as usize <= b.len() / 2,
            "{count} tagged fields in {} bytes",
            b.len()
        );
        let mut fields = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let tag = get_uvarint(&mut b)?;
            let size = get_uvarint(&mut b)? as usize;
            ensure!(
                size <= b.len(),
                "tagged field {tag} of {size} bytes cut off"
            );
            let (value, rest) = b.split_at(size);
            fields.push(TaggedField { tag, value });
            b = rest;
        }
        Ok(Self {
            fields,
            trailing: b.len(),
        })
    }
}

/// `fields` as a tagged-field section of exactly `size` bytes, padded with one field of a
/// [`PAD_TAGS`] tag when they are shorter; `None` when they do not fit.
fn encode(fields: &[TaggedField<'_>], size: usize) -> Option<Vec<u8>> {
    let body: usize = fields
        .iter()
        .map(|f| uvarint_len(f.tag) + uvarint_len(f.value.len() as u32) + f.value.len())
        .sum();
    let write = |count: usize, pad: Option<(u32, usize)>| {
        let mut out = BytesMut::with_capacity(size);
        put_uvarint(&mut out, count as u32);
        for f in fields {
            put_uvarint(&mut out, f.tag);
            put_uvarint(&mut out, f.value.len() as u32);
            out.put_slice(f.value);
        }
        if let Some((tag, n)) = pad {
            put_uvarint(&mut out, tag);
            put_uvarint(&mut out, n as u32);
            out.put_bytes(0, n);
        }
        debug_assert_eq!(out.len(), size);
        out.to_vec()
    };
    let n = fields.len();
    if uvarint_len(n as u32) + body == size {
        return Some(write(n, None));
    }
    let fixed = uvarint_len(n as u32 + 1) + body;
    for tag in PAD_TAGS {
        // The room for the padding's size varint and its bytes.
        let Some(room) = size.checked_sub(fixed + uvarint_len(tag)) else {
            continue;
        };
        let fits = (1..=3)
            .filter_map(|len| room.checked_sub(len))
            .find(|&pad| uvarint_len(pad as u32) + pad == room);
        if let Some(pad) = fits {
            return Some(write(n + 1, Some((tag, pad))));
        }
    }
    None
}

/// An unsigned varint, consumed from `b`.
fn get_uvarint(b: &mut &[u8]) -> Result<u32> {
    let (v, n) = read_uvarint(b, 0).context("tagged-field section cut off")?;
    *b = &b[n..];
    Ok(v)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    use super::*;
    use crate::schema::TailFinder;
    use kafka_protocol::messages::{fetch_response, produce_response};
    use kafka_protocol::messages::{BrokerId, FetchResponse, ProduceResponse, ResponseHeader};
    use kafka_protocol::protocol::{Message, StrBytes};

    /// Names node n as `host`:(7000+n).
    struct Book(&'static str);

    impl AddressBook for Book {
        fn gateway_endpoint(&self, node_id: i32, _host: &str, _port: i32) -> (StrBytes, i32) {
            (StrBytes::from_static_str(self.0), 7000 + node_id)
        }
    }

    fn frame<T: Encodable>(key: ApiKey, version: i16, msg: &T) -> Vec<u8> {
        let mut buf = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(9)
            .encode(&mut buf, key.response_header_version(version))
            .unwrap();
        msg.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    /// Splits a response where the streaming path does, rewrites the tail, and decodes the
    /// joined result as a client would.
    fn through<T: Encodable + Decodable>(
        key: ApiKey,
        version: i16,
        msg: &T,
        book: &Book,
    ) -> (Tail, T, usize) {
        let data = frame(key, version, msg);
        let mut finder = TailFinder::response(key, version).unwrap();
        let at = finder.advance(&data).unwrap();
        assert!(finder.found());
        let tail = rewrite_tail(key, version, &data[at..], book).unwrap();
        let mut joined = data[..at].to_vec();
        match &tail {
            Tail::Unchanged => joined.extend_from_slice(&data[at..]),
            Tail::Rewritten(b) | Tail::Dropped(b) => {
                assert_eq!(b.len(), data.len() - at, "the tail keeps its size");
                joined.extend_from_slice(b);
            }
        }
        let mut buf = Bytes::from(joined);
        ResponseHeader::decode(&mut buf, key.response_header_version(version)).unwrap();
        let got = T::decode(&mut buf, version).unwrap();
        assert!(
            buf.is_empty(),
            "{key:?} v{version}: bytes left after the message"
        );
        (tail, got, data.len() - at)
    }

    /// One endpoint per `hosts` entry, node ids from 1.
    macro_rules! with_endpoints {
        ($module:ident, $msg:expr, $hosts:expr) => {{
            let mut m = $msg;
            m.node_endpoints = $hosts
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    $module::NodeEndpoint::default()
                        .with_node_id(BrokerId(i as i32 + 1))
                        .with_host(StrBytes::from_static_str(h))
                        .with_port(9092)
                        .with_rack(Some(StrBytes::from_static_str("rack-a")))
                })
                .collect();
            m
        }};
    }

    /// Every version of every response with endpoints, gateway names shorter, as long as,
    /// and longer than the brokers': rewritten in place when they fit, left out when not;
    /// the rest of the message (other tagged fields included) intact.
    #[test]
    fn endpoints_rewritten_in_the_same_bytes_at_every_version() {
        let brokers = ["broker-one.internal", "broker-two.internal"];
        // (gateway host, fits): 19 characters each broker name.
        let cases = [
            ("gw", true),
            ("gateway.example.c", true),
            ("gateway.example.co", true),
            ("gateway.example.com", true),
            ("gateway.example.comm", false),
            ("a-very-long-gateway-host-name.example.com", false),
        ];
        let mut checked = 0;
        for (host, fits) in cases {
            let book = Book(host);
            macro_rules! check {
                ($module:ident, $ty:ty, $key:expr, $min:expr) => {
                    for v in $min..=<$ty>::VERSIONS.max {
                        let mut msg = with_endpoints!($module, <$ty>::default(), brokers);
                        msg.unknown_tagged_fields
                            .insert(5, Bytes::from_static(b"kept"));
                        msg.throttle_time_ms = 17;
                        let (tail, got, _) = through($key, v, &msg, &book);
                        assert_eq!(got.throttle_time_ms, 17);
                        assert_eq!(
                            got.unknown_tagged_fields.get(&5).map(|b| &b[..]),
                            Some(&b"kept"[..]),
                            "{:?} v{v} {host}",
                            $key
                        );
                        if fits {
                            assert!(matches!(tail, Tail::Rewritten(_)), "{:?} v{v} {host}", $key);
                            assert_eq!(got.node_endpoints.len(), 2);
                            for (i, e) in got.node_endpoints.iter().enumerate() {
                                assert_eq!(e.node_id.0, i as i32 + 1);
                                assert_eq!(&e.host[..], host);
                                assert_eq!(e.port, 7001 + i as i32);
                                assert_eq!(e.rack.as_deref(), Some("rack-a"));
                            }
                        } else {
                            assert!(matches!(tail, Tail::Dropped(_)), "{:?} v{v} {host}", $key);
                            assert!(got.node_endpoints.is_empty());
                        }
                        checked += 1;
                    }
                };
            }
            check!(fetch_response, FetchResponse, ApiKey::Fetch, 16);
            check!(produce_response, ProduceResponse, ApiKey::Produce, 10);
        }
        assert!(checked >= 6 * 7, "{checked}");
    }

    #[test]
    fn no_endpoints_is_unchanged() {
        for v in 16..=FetchResponse::VERSIONS.max {
            let (tail, got, size) =
                through(ApiKey::Fetch, v, &FetchResponse::default(), &Book("gw"));
            assert_eq!(tail, Tail::Unchanged);
            assert!(got.node_endpoints.is_empty());
            assert_eq!(size, 1, "an empty section is its count");
            let empty = with_endpoints!(fetch_response, FetchResponse::default(), [""; 0]);
            let mut data = frame(ApiKey::Fetch, v, &empty);
            // An explicitly empty endpoints array (tag 0, one byte of count).
            let at = data.len() - 1;
            data.truncate(at);
            data.extend_from_slice(&[1, 0, 1, 1]);
            assert_eq!(
                rewrite_tail(ApiKey::Fetch, v, &data[at..], &Book("gw")).unwrap(),
                Tail::Unchanged
            );
        }
    }

    /// Every padding size the rewrite may need, up to past the two-byte varint boundary.
    #[test]
    fn padding_fills_every_size_from_three_bytes() {
        let field = [TaggedField {
            tag: 0,
            value: &[1],
        }];
        for size in 4 + 2..20_000 {
            let out = encode(&field, size).unwrap_or_else(|| panic!("size {size}"));
            assert_eq!(out.len(), size);
            let section = Section::parse(&out).unwrap();
            assert_eq!(section.trailing, 0);
            assert_eq!(section.fields.len(), 2);
            assert!(PAD_TAGS.contains(&section.fields[1].tag));
        }
        // Exactly the fields' size: no padding; one byte more cannot be padded.
        assert_eq!(encode(&field, 4).unwrap(), vec![1, 0, 1, 1]);
        assert_eq!(encode(&field, 5), None);
        assert_eq!(encode(&field, 6).unwrap(), vec![2, 0, 1, 1, 127, 0]);
    }

    #[test]
    fn malformed_tails_are_errors() {
        let book = Book("gw");
        for bad in [
            &[][..],
            &[1, 0][..],          // a field without its size
            &[1, 0, 5, 1][..],    // a field cut off
            &[1, 0, 2, 3, 0][..], // two endpoints in one byte
            &[0x40, 0, 1, 1][..], // 64 fields in three bytes
        ] {
            assert!(
                rewrite_tail(ApiKey::Fetch, 16, bad, &book).is_err(),
                "{bad:?}"
            );
        }
        assert!(rewrite_tail(ApiKey::Metadata, 12, &[0], &book).is_err());
        assert!(rewrites_tail(ApiKey::Fetch) && rewrites_tail(ApiKey::Produce));
        assert!(!rewrites_tail(ApiKey::ShareFetch) && !rewrites_tail(ApiKey::Metadata));
    }
}
