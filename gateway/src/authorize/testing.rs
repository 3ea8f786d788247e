//! Helpers of the authorizer's unit tests: an ACL that allows listed triples, request and
//! response frames built and read back, and the shapes of decisions.
#![allow(clippy::disallowed_methods)] // tests read back what the gateway wrote

pub(super) use super::codes::*;
pub(super) use super::{check_request, fix_response, Decision, ResponseFix};
pub(super) use crate::acl::{Operation as Op, Permits, ResourceType as Rt, CLUSTER_NAME};
pub(super) use crate::intercept::TopicLookup;
pub(super) use crate::message::response_frame;
pub(super) use bytes::{BufMut, Bytes, BytesMut};
pub(super) use kafka_protocol::messages::*;
pub(super) use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
pub(super) use std::collections::HashSet;
pub(super) use uuid::Uuid;

use std::sync::RwLock;

/// Allows exactly the listed (resource type, name, operation) triples.
#[derive(Default)]
pub(super) struct Acl(HashSet<(Rt, String, Op)>);

impl Acl {
    pub(super) fn allow(mut self, rt: Rt, name: &str, op: Op) -> Self {
        self.0.insert((rt, name.to_string(), op));
        self
    }
}

impl Permits for Acl {
    fn permits(&self, rt: Rt, name: &str, op: Op) -> bool {
        self.0.contains(&(rt, name.to_string(), op))
    }
}

pub(super) fn names(pairs: &[(Uuid, &str)]) -> crate::intercept::TopicNames {
    RwLock::new(pairs.iter().map(|(id, n)| (*id, n.to_string())).collect())
}

pub(super) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub(super) fn tn(v: &str) -> TopicName {
    TopicName(s(v))
}

/// A request frame: length prefix, header (client id "app"), body.
pub(super) fn frame<T: Encodable>(key: ApiKey, version: i16, msg: &T) -> (Bytes, usize) {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(s("app")));
    let mut h = BytesMut::new();
    header
        .encode(&mut h, key.request_header_version(version))
        .unwrap();
    let mut b = BytesMut::new();
    msg.encode(&mut b, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
    let mut out = BytesMut::new();
    out.put_i32((h.len() + b.len()) as i32);
    out.put_slice(&h);
    out.put_slice(&b);
    (out.freeze(), h.len())
}

pub(super) fn check<T: Encodable>(
    key: ApiKey,
    version: i16,
    msg: &T,
    acl: &Acl,
    topics: &dyn TopicLookup,
) -> Decision {
    let (f, hl) = frame(key, version, msg);
    check_request(key as i16, version, 7, hl, &f, acl, topics)
}

/// The body of a rewritten request, after checking the header bytes were kept.
pub(super) fn rewritten<T: Decodable + Encodable>(
    key: ApiKey,
    version: i16,
    original: &T,
    out: &Bytes,
) -> T {
    let (f, hl) = frame(key, version, original);
    assert_eq!(&out[4..4 + hl], &f[4..4 + hl], "header kept");
    let len = i32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
    assert_eq!(len, out.len() - 4, "length prefix");
    T::decode(&mut out.slice(4 + hl..), version).unwrap()
}

pub(super) fn response<T: Decodable>(key: ApiKey, version: i16, f: &Bytes) -> T {
    let len = i32::from_be_bytes(f[..4].try_into().unwrap()) as usize;
    assert_eq!(len, f.len() - 4, "length prefix");
    let mut b = f.slice(4..);
    let h = ResponseHeader::decode(&mut b, key.response_header_version(version)).unwrap();
    assert_eq!(h.correlation_id, 7);
    T::decode(&mut b, version).unwrap()
}

pub(super) fn broker<T: Encodable>(key: ApiKey, version: i16, msg: &T) -> Bytes {
    let mut b = BytesMut::new();
    msg.encode(&mut b, version).unwrap();
    response_frame(key, version, 7, &b)
}

pub(super) fn respond<T: Decodable>(d: Decision, key: ApiKey, version: i16) -> T {
    match d {
        Decision::Respond(f) => response(key, version, &f),
        other => panic!("expected a local response, got {other:?}"),
    }
}

/// Forward with a rewritten frame and a fix.
pub(super) fn forward(d: Decision) -> (Option<Bytes>, Option<ResponseFix>) {
    match d {
        Decision::Forward { frame, fix } => (frame, fix),
        other => panic!("expected forward, got {other:?}"),
    }
}

pub(super) fn fixed<T: Encodable, R: Decodable>(
    fix: &ResponseFix,
    key: ApiKey,
    version: i16,
    resp: &T,
    acl: &Acl,
    topics: &dyn TopicLookup,
) -> R {
    let out = fix_response(
        fix,
        key as i16,
        version,
        broker(key, version, resp),
        acl,
        topics,
    )
    .unwrap();
    response(key, version, &out)
}

pub(super) fn is_pass(d: &Decision) -> bool {
    matches!(
        d,
        Decision::Forward {
            frame: None,
            fix: None
        }
    )
}
