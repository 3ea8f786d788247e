//! Byte-level rewriting of the strings of a Kafka request or response body.
//!
//! Virtual clusters give every tenant its own namespace on one Kafka cluster: a tenant's
//! topic `orders` is the cluster's `tenant-a.orders`, and the same holds for group ids and
//! transactional ids. Every name a tenant sends must be prefixed on the way in and
//! un-prefixed on the way out, in every API, without missing a field. Decoding and
//! re-encoding each message with kafka-protocol would need code per API (and per version);
//! instead [`rewrite_strings`] walks the body once with the schema walker (which knows every
//! string of every request and response, with its entity type, from the generated table),
//! asks a callback for each string's replacement, and splices the replacements into a copy
//! of the body:
//!
//! - the string's length prefix is rewritten: an `int16`, or a compact unsigned varint of
//!   `n + 1` whose own size may change;
//! - every enclosing tagged field's size varint is recomputed, at any nesting depth (the
//!   walker reports a tagged field after its content, so the edits inside it are already
//!   known when it is reported);
//! - nothing else moves: array counts and tagged-section counts do not depend on string
//!   lengths, and bytes after the walked body are copied as they are.
//!
//! One walk collects the edits, one pass builds the output into a buffer of the exact final
//! size. A body in which nothing changes is not copied at all.
//!
//! The callback sees every non-null string of the body, whatever its entity type, so the
//! caller can rewrite fields the table leaves untyped (see below) by struct and field name.
//!
//! # Names the table does not type
//!
//! Kafka's message specs give most names an `entityType`, and the walker reports those as
//! [`Entity::TopicName`], [`Entity::GroupId`] or [`Entity::TransactionalId`]. The fields
//! below (kafka-protocol 0.18) name a topic, group or transactional id but carry no entity
//! type (they are [`Entity::None`], or the name is inside opaque bytes), so a tenant-aware
//! caller must special-case them:
//!
//! | API (key) | struct.field | what it names |
//! |---|---|---|
//! | FindCoordinator (10) request v0-3 | `FindCoordinatorRequest.key` | a group id (`key_type` 0), a transactional id (1), or a share-group key `group:topic-id:partition` (2) |
//! | FindCoordinator (10) request v4+ | `FindCoordinatorRequest.coordinator_keys` (array of strings) | as `key`, for every element |
//! | FindCoordinator (10) response v4+ | `Coordinator.key` | echoes the requested key |
//! | DescribeConfigs (32) | `DescribeConfigsResource.resource_name` (request), `DescribeConfigsResult.resource_name` (response) | a topic when `resource_type` is 2, a group when 32 (else a broker id, broker logger or client-metrics name) |
//! | AlterConfigs (33), IncrementalAlterConfigs (44) | `AlterConfigsResource.resource_name` (request), `AlterConfigsResourceResponse.resource_name` (response) | as DescribeConfigs |
//! | ListConfigResources (74) response | `ConfigResource.resource_name` | as DescribeConfigs, by `resource_type` |
//! | CreateAcls (30) request | `AclCreation.resource_name` | a topic (`resource_type` 2), group (3) or transactional id (5); with `pattern_type` PREFIXED it is a name prefix, `*` is the wildcard |
//! | DescribeAcls (29) | `DescribeAclsRequest.resource_name_filter` (nullable: any), `DescribeAclsResource.resource_name` (response) | as CreateAcls, a filter on the request side |
//! | DeleteAcls (31) | `DeleteAclsFilter.resource_name_filter` (nullable), `DeleteAclsMatchingAcl.resource_name` (response) | as DescribeAcls (a tenant's ACL API calls never reach the rewriter: the gateway's ACL API stage answers them from the tenant's own ACLs, on logical names) |
//! | ConsumerGroupHeartbeat (68) request v1 | `ConsumerGroupHeartbeatRequest.subscribed_topic_regex` | a (RE2/J) regular expression over topic names: must be confined to the tenant's names, not prefixed |
//! | ConsumerGroupDescribe (69) response | `Member.subscribed_topic_regex` | the regex the member sent |
//! | ListTransactions (66) request v2 | `ListTransactionsRequest.transactional_id_pattern` | a regular expression over transactional ids |
//! | Share-group state APIs (83-87: Initialize/Read/Write/Delete/ReadSummary ShareGroupState) | `*Request.group_id` | a group id (broker-to-coordinator APIs a client should not send) |
//! | JoinGroup (11) | request `JoinGroupRequestProtocol.metadata`, response `JoinGroupResponseMember.metadata` (bytes) | with `protocol_type` `consumer`: a ConsumerProtocolSubscription (subscribed topics, owned partitions' topics) |
//! | SyncGroup (14) | request `SyncGroupRequestAssignment.assignment`, response `assignment` (bytes) | with `protocol_type` `consumer`: a ConsumerProtocolAssignment (assigned partitions' topics) |
//! | DescribeGroups (15) response | `DescribedGroupMember.member_metadata`, `.member_assignment` (bytes) | as JoinGroup / SyncGroup for a `consumer` group |
//!
//! In the embedded consumer-protocol bytes, the `user_data` of some assignors (Kafka
//! Streams in particular) carries topic names in its own format as well.
//!
//! Every `error_message` is free text that may quote a prefixed name; it has no structure
//! to rewrite reliably.
//!
//! Checked and typed, so no special case is needed: the DescribeTopicPartitions (75)
//! `Cursor.topic_name` (request and response, a nullable struct) is a [`Entity::TopicName`],
//! as are DeleteTopics `topic_names`, DescribeGroups `groups`, DeleteGroups `groups_names`,
//! DescribeTransactions `transactional_ids`, ConsumerGroupDescribe `group_ids` and the
//! `subscribed_topic_names` of ConsumerGroupHeartbeat / ShareGroupHeartbeat and their
//! Describe responses (arrays of strings). Fields that look like names but are not tenant
//! names: `member_id`, `group_instance_id`/`instance_id` (scoped inside a group),
//! `protocol_type`, `protocol_name`, `client_id`, `rack`/`rack_id`, `cluster_id`, config
//! `name`/`value`, client-quota `entity_name` (users, client ids, IPs), principals, and the
//! KRaft APIs' `TopicData.topic_name` (the internal metadata topic, typed but not a tenant
//! name). Topic ids (UUIDs) are not names and are never rewritten.
//!
//! In 0.18 no tagged field holds an entity-typed string; the tagged strings are
//! `cluster_id`s, features and the KIP-951 `node_endpoints`. The size recomputation is
//! generic all the same, so a future spec that moves a name into a tagged field is covered.
//!
//! [`Entity::TopicName`]: super::Entity::TopicName
//! [`Entity::GroupId`]: super::Entity::GroupId
//! [`Entity::TransactionalId`]: super::Entity::TransactionalId
//! [`Entity::None`]: super::Entity::None

use std::fmt;

use bytes::Bytes;

use super::{request_def, response_def, walk, Fault, StringRef, Visitor, WalkError};
use crate::frame::{put_uvarint, uvarint_len};

/// Which body is being rewritten: the walker has separate request and response tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A request body (the bytes after the request header).
    Request,
    /// A response body (the bytes after the response header).
    Response,
}

/// The longest string Kafka accepts, in bytes: `int16` strings cannot say more, and Kafka's
/// generated readers refuse compact strings longer than this as well.
pub const MAX_STRING_LEN: usize = i16::MAX as usize;

/// Why a body could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewriteError {
    /// The body does not walk (unknown API key or version, or malformed).
    Walk(WalkError),
    /// A replacement longer than [`MAX_STRING_LEN`] bytes.
    StringTooLong {
        /// The struct the field belongs to.
        struct_name: &'static str,
        /// The field.
        field: &'static str,
        /// The replacement's length in bytes.
        len: usize,
    },
    /// A tagged field that would grow beyond what its `u32` size varint can carry.
    TaggedFieldTooLong {
        /// The field's tag.
        tag: u32,
    },
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Walk(e) => write!(f, "body does not walk: {e}"),
            Self::StringTooLong {
                struct_name,
                field,
                len,
            } => write!(
                f,
                "replacement for {struct_name}.{field} is {len} bytes, more than {MAX_STRING_LEN}"
            ),
            Self::TaggedFieldTooLong { tag } => {
                write!(f, "tagged field {tag} grows beyond its size limit")
            }
        }
    }
}

impl std::error::Error for RewriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Walk(e) => Some(e),
            _ => None,
        }
    }
}

impl From<WalkError> for RewriteError {
    fn from(e: WalkError) -> Self {
        Self::Walk(e)
    }
}

/// Rewrites strings of a request or response body.
///
/// `map` is called, in wire order, for every non-null string of the body (string fields and
/// elements of string arrays, at any depth, tagged fields included, whatever the entity
/// type) with where the string is and its current text; it returns the replacement, or
/// `None` to keep the string. Null strings are never passed to `map` and stay null.
///
/// Returns `Ok(None)` when nothing changed (`map` returned `None`, or the same text, for
/// every string): the caller forwards the original bytes, and nothing was allocated for the
/// output. Otherwise returns the new body: every replaced string with its length prefix
/// re-encoded (an `int16`, or a compact varint that may change size), and the size of every
/// enclosing tagged field recomputed. Bytes after the walked body are kept as they are.
///
/// Errors: [`RewriteError::Walk`] when the body does not walk (so it would not decode
/// either), [`RewriteError::StringTooLong`] for a replacement longer than
/// [`MAX_STRING_LEN`], [`RewriteError::TaggedFieldTooLong`] for a tagged field that would
/// outgrow its size varint. On error `map` may have been called for some strings already.
pub fn rewrite_strings(
    direction: Direction,
    api_key: i16,
    version: i16,
    body: &[u8],
    map: &mut dyn FnMut(&StringRef, &str) -> Option<String>,
) -> Result<Option<Bytes>, RewriteError> {
    rewrite(direction, api_key, version, None, body, map)
}

/// [`rewrite_strings`] for a whole frame: `head` is the frame's length prefix and header,
/// `body` the rest. Returns the new frame (length prefix recomputed, header kept) built in
/// one pass, so a large body (a Produce request, a Fetch response) is copied once, not once
/// for the body and again to put the header in front.
pub fn rewrite_frame(
    direction: Direction,
    api_key: i16,
    version: i16,
    head: &[u8],
    body: &[u8],
    map: &mut dyn FnMut(&StringRef, &str) -> Option<String>,
) -> Result<Option<Bytes>, RewriteError> {
    assert!(
        head.len() >= 4,
        "a frame head starts with its length prefix"
    );
    rewrite(direction, api_key, version, Some(head), body, map)
}

fn rewrite(
    direction: Direction,
    api_key: i16,
    version: i16,
    head: Option<&[u8]>,
    body: &[u8],
    map: &mut dyn FnMut(&StringRef, &str) -> Option<String>,
) -> Result<Option<Bytes>, RewriteError> {
    let def = match direction {
        Direction::Request => request_def(api_key),
        Direction::Response => response_def(api_key),
    };
    let mut collector = Collector {
        body,
        map,
        edits: Vec::new(),
        total: 0,
        error: None,
    };
    walk(def, version, body, &mut collector)?;
    if let Some(error) = collector.error {
        return Err(error);
    }
    let Collector {
        mut edits, total, ..
    } = collector;
    if edits.is_empty() {
        return Ok(None);
    }
    Ok(Some(build(head, body, &mut edits, total)))
}

/// One replacement of `body[start..end]`.
struct Edit {
    start: usize,
    end: usize,
    /// The sum of the length changes of the edits recorded before this one.
    before: isize,
    what: Replacement,
}

enum Replacement {
    /// A string and its new length prefix.
    String { text: String, compact: bool },
    /// A tagged field's header (tag and size varints) with a new size.
    TagHeader { tag: u32, size: u32 },
}

impl Replacement {
    fn encoded_len(&self) -> usize {
        match self {
            Self::String {
                text,
                compact: false,
            } => 2 + text.len(),
            // The length is at most MAX_STRING_LEN, so `+ 1` cannot overflow a u32.
            Self::String {
                text,
                compact: true,
            } => uvarint_len(text.len() as u32 + 1) + text.len(),
            Self::TagHeader { tag, size } => uvarint_len(*tag) + uvarint_len(*size),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::String {
                text,
                compact: false,
            } => {
                out.extend_from_slice(&(text.len() as u16).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            Self::String {
                text,
                compact: true,
            } => {
                put_uvarint(out, text.len() as u32 + 1);
                out.extend_from_slice(text.as_bytes());
            }
            Self::TagHeader { tag, size } => {
                put_uvarint(out, *tag);
                put_uvarint(out, *size);
            }
        }
    }
}

/// Collects the edits while the walker passes the strings and tagged fields.
///
/// Edits are recorded in the order the walker reports: strings in wire order, and a tagged
/// field's header after the edits inside its value. So when a tagged field is reported, the
/// edits inside it are exactly the most recent ones, and every earlier edit lies before its
/// value: `start < value.start` holds for a prefix of the list and fails for the rest,
/// which is what lets [`Collector::tagged_field`] find them by binary search.
struct Collector<'a, 'm> {
    body: &'a [u8],
    map: &'m mut dyn FnMut(&StringRef, &str) -> Option<String>,
    edits: Vec<Edit>,
    /// The sum of the length changes of all edits so far.
    total: isize,
    /// The first error; the walk cannot be stopped from a visitor, later calls are ignored.
    error: Option<RewriteError>,
}

impl Collector<'_, '_> {
    fn push(&mut self, start: usize, end: usize, what: Replacement) {
        let delta = what.encoded_len() as isize - (end - start) as isize;
        self.edits.push(Edit {
            start,
            end,
            before: self.total,
            what,
        });
        self.total += delta;
    }
}

impl Visitor for Collector<'_, '_> {
    fn string(&mut self, s: &StringRef) {
        if self.error.is_some() {
            return;
        }
        // The walker has checked this exact range is UTF-8; a failure here would be a
        // walker bug, reported rather than trusted.
        let Ok(current) = std::str::from_utf8(&self.body[s.range.clone()]) else {
            self.error = Some(RewriteError::Walk(WalkError {
                fault: Fault::InvalidUtf8,
                offset: s.prefix,
                field: Some(s.field),
            }));
            return;
        };
        let Some(text) = (self.map)(s, current) else {
            return;
        };
        if text == current {
            return;
        }
        if text.len() > MAX_STRING_LEN {
            self.error = Some(RewriteError::StringTooLong {
                struct_name: s.struct_name,
                field: s.field,
                len: text.len(),
            });
            return;
        }
        self.push(
            s.prefix,
            s.range.end,
            Replacement::String {
                text,
                compact: s.compact,
            },
        );
    }

    fn tagged_field(
        &mut self,
        tag: u32,
        header: std::ops::Range<usize>,
        value: std::ops::Range<usize>,
        known: bool,
    ) {
        // An unknown tag was skipped by its size: nothing inside it was reported or edited.
        if !known || self.error.is_some() {
            return;
        }
        let first = self.edits.partition_point(|e| e.start < value.start);
        let Some(first) = self.edits.get(first) else {
            return;
        };
        let delta = self.total - first.before;
        if delta == 0 {
            // Same size (or no edit inside): the header stays valid as it is.
            return;
        }
        let size = value.len() as isize + delta;
        let Ok(size) = u32::try_from(size) else {
            self.error = Some(RewriteError::TaggedFieldTooLong { tag });
            return;
        };
        self.push(
            header.start,
            header.end,
            Replacement::TagHeader { tag, size },
        );
    }
}

/// Copies `body` with the edits applied, into a buffer of the exact final size.
fn build(head: Option<&[u8]>, body: &[u8], edits: &mut [Edit], total: isize) -> Bytes {
    // Edit ranges are disjoint (a tagged header does not overlap its value), so ordering by
    // start orders them completely.
    edits.sort_unstable_by_key(|e| e.start);
    let len = body.len().checked_add_signed(total).unwrap_or(0);
    let head_len = head.map_or(0, <[u8]>::len);
    let mut out = Vec::with_capacity(head_len + len);
    if let Some(head) = head {
        // The frame's length prefix counts the header and the new body.
        let size = (head_len - 4 + len) as u32;
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(&head[4..]);
    }
    let mut cursor = 0;
    for edit in edits.iter() {
        out.extend_from_slice(&body[cursor..edit.start]);
        edit.what.write(&mut out);
        cursor = edit.end;
    }
    out.extend_from_slice(&body[cursor..]);
    debug_assert_eq!(out.len(), head_len + len);
    Bytes::from(out)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    use super::*;
    use crate::schema::tests::{synth_struct, Rng, Shape, TypeVisitor};
    use crate::schema::{messages, table, Entity, MessageDef};
    use bytes::BytesMut;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
    use std::fmt::Debug;
    use uuid::Uuid;

    /// The tenant prefix used throughout.
    const P: &str = "tenant-a.";

    /// A name builder: the identity for the tenant's view, the prefixer for the cluster's.
    type Names<'a> = &'a dyn Fn(&str) -> String;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }
    fn t(n: Names, v: &str) -> TopicName {
        TopicName(StrBytes::from_string(n(v)))
    }
    fn g(n: Names, v: &str) -> GroupId {
        GroupId(StrBytes::from_string(n(v)))
    }
    fn x(n: Names, v: &str) -> TransactionalId {
        TransactionalId(StrBytes::from_string(n(v)))
    }

    fn encode(body: &impl Encodable, version: i16) -> Vec<u8> {
        let mut buf = BytesMut::new();
        body.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    fn is_name(st: &StringRef) -> bool {
        matches!(
            st.entity,
            Entity::TopicName | Entity::GroupId | Entity::TransactionalId
        )
    }

    /// The tenant's map on the way in: prefix every typed name.
    fn prefix_names(st: &StringRef, current: &str) -> Option<String> {
        is_name(st).then(|| format!("{P}{current}"))
    }

    /// The tenant's map on the way out: strip the prefix from every typed name.
    fn strip_names(st: &StringRef, current: &str) -> Option<String> {
        if !is_name(st) {
            return None;
        }
        current.strip_prefix(P).map(str::to_string)
    }

    /// Encodes the tenant's view of a message, prefixes its names, and checks the result is
    /// byte for byte kafka-protocol's encoding of the cluster's view built by hand (and
    /// decodes to it); then strips the prefix again and checks the original bytes come back.
    fn assert_renames<T>(dir: Direction, key: ApiKey, v: i16, build: impl Fn(Names) -> T)
    where
        T: Encodable + Decodable + PartialEq + Debug,
    {
        let what = format!("{key:?} {dir:?} v{v}");
        let plain = build(&|n| n.to_string());
        let expected = build(&|n| format!("{P}{n}"));
        assert_ne!(plain, expected, "{what}: the message names nothing");
        let body = encode(&plain, v);
        let out = rewrite_strings(dir, key as i16, v, &body, &mut prefix_names)
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .unwrap_or_else(|| panic!("{what}: nothing rewritten"));
        let decoded = T::decode(&mut out.clone(), v).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(decoded, expected, "{what}");
        assert_eq!(
            out.as_ref(),
            encode(&expected, v).as_slice(),
            "{what} bytes"
        );
        let back = rewrite_strings(dir, key as i16, v, &out, &mut strip_names)
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: nothing stripped"));
        assert_eq!(back.as_ref(), body.as_slice(), "{what} stripped");
    }

    /// A message whose names are all ids (or absent): nothing to rewrite, nothing copied.
    fn assert_untouched(dir: Direction, key: ApiKey, v: i16, body: &impl Encodable) {
        let body = encode(body, v);
        let out = rewrite_strings(dir, key as i16, v, &body, &mut prefix_names).unwrap();
        assert_eq!(out, None, "{key:?} {dir:?} v{v}");
    }

    use Direction::{Request as Req, Response as Resp};

    fn produce(n: Names, v: i16) -> ProduceRequest {
        let partitions = vec![produce_request::PartitionProduceData::default()
            .with_index(1)
            .with_records(Some(bytes::Bytes::from_static(b"opaque batch")))];
        let topics = ["orders", "payments"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let data = produce_request::TopicProduceData::default()
                    .with_partition_data(partitions.clone());
                if v >= 13 {
                    data.with_topic_id(Uuid::from_u128(i as u128 + 1))
                } else {
                    data.with_name(t(n, name))
                }
            })
            .collect();
        ProduceRequest::default()
            .with_transactional_id(Some(x(n, "tx-1")))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(topics)
    }

    #[test]
    fn a_whole_frame_is_rewritten_in_one_pass() {
        let v = 9;
        let mut body = BytesMut::new();
        produce(&|n| n.to_string(), v).encode(&mut body, v).unwrap();
        let head: &[u8] = &[0, 0, 0, 0, 0xa, 0xb, 0xc];
        let mut rename = |r: &StringRef, cur: &str| {
            (r.entity == Entity::TopicName).then(|| format!("tenant.{cur}"))
        };
        let framed = rewrite_frame(Req, ApiKey::Produce as i16, v, head, &body, &mut rename)
            .unwrap()
            .unwrap();
        let alone = rewrite_strings(Req, ApiKey::Produce as i16, v, &body, &mut rename)
            .unwrap()
            .unwrap();
        assert_eq!(&framed[4..7], &head[4..], "the header is kept");
        assert_eq!(&framed[7..], &alone[..], "the body is the same rewrite");
        let size = u32::from_be_bytes(framed[..4].try_into().unwrap()) as usize;
        assert_eq!(
            size,
            framed.len() - 4,
            "the length prefix counts header and body"
        );
    }

    #[test]
    fn produce_topics_and_transactional_id() {
        for v in [3, 9, 13] {
            assert_renames(Req, ApiKey::Produce, v, |n| produce(n, v));
        }
        // Without a transactional id and by topic id there is nothing to rename.
        let mut by_id = produce(&|n| n.to_string(), 13);
        by_id.transactional_id = None;
        assert_untouched(Req, ApiKey::Produce, 13, &by_id);

        for v in [3, 9, 10] {
            assert_renames(Resp, ApiKey::Produce, v, |n| {
                let mut resp = ProduceResponse::default().with_responses(vec![
                    produce_response::TopicProduceResponse::default()
                        .with_name(t(n, "orders"))
                        .with_partition_responses(vec![
                            produce_response::PartitionProduceResponse::default()
                                .with_index(0)
                                .with_base_offset(42),
                        ]),
                ]);
                if v >= 10 {
                    resp =
                        resp.with_node_endpoints(vec![produce_response::NodeEndpoint::default()
                            .with_node_id(BrokerId(1))
                            .with_host(s("broker-1"))
                            .with_port(9092)]);
                }
                resp
            });
        }
    }

    fn fetch(n: Names, v: i16) -> FetchRequest {
        let by_id = v >= 13;
        let topic = |name: &str, id: u128| {
            let f = fetch_request::FetchTopic::default().with_partitions(vec![
                fetch_request::FetchPartition::default()
                    .with_partition(2)
                    .with_fetch_offset(100),
            ]);
            if by_id {
                f.with_topic_id(Uuid::from_u128(id))
            } else {
                f.with_topic(t(n, name))
            }
        };
        let forgotten = fetch_request::ForgottenTopic::default().with_partitions(vec![0, 1]);
        let forgotten = if by_id {
            forgotten.with_topic_id(Uuid::from_u128(3))
        } else {
            forgotten.with_topic(t(n, "old"))
        };
        FetchRequest::default()
            .with_max_wait_ms(500)
            .with_topics(vec![topic("orders", 1), topic("payments", 2)])
            .with_forgotten_topics_data(vec![forgotten])
            .with_rack_id(s("rack-a"))
            .with_cluster_id(Some(s("cluster-1")))
    }

    #[test]
    fn fetch_topics_by_name_and_not_by_id() {
        assert_renames(Req, ApiKey::Fetch, 12, |n| fetch(n, 12));
        for v in [13, 16] {
            assert_untouched(Req, ApiKey::Fetch, v, &fetch(&|n| n.to_string(), v));
        }
        assert_renames(Resp, ApiKey::Fetch, 12, |n| {
            FetchResponse::default().with_responses(vec![
                fetch_response::FetchableTopicResponse::default()
                    .with_topic(t(n, "orders"))
                    .with_partitions(vec![fetch_response::PartitionData::default()
                        .with_partition_index(1)
                        .with_records(Some(bytes::Bytes::from_static(b"batch")))]),
            ])
        });
    }

    #[test]
    fn metadata_topics_both_ways_and_nulls_stay_null() {
        for v in [1, 9, 12] {
            assert_renames(Req, ApiKey::Metadata, v, |n| {
                let mut topics = vec![
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(t(n, "orders"))),
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(t(n, "payments"))),
                ];
                if v >= 10 {
                    // A topic asked for by id only: its null name stays null.
                    topics.push(
                        metadata_request::MetadataRequestTopic::default()
                            .with_topic_id(Uuid::from_u128(9))
                            .with_name(None),
                    );
                }
                MetadataRequest::default().with_topics(Some(topics))
            });
            assert_renames(Resp, ApiKey::Metadata, v, |n| {
                MetadataResponse::default()
                    .with_brokers(vec![metadata_response::MetadataResponseBroker::default()
                        .with_node_id(BrokerId(1))
                        .with_host(s("broker-1"))
                        .with_port(9092)
                        .with_rack(Some(s("rack-a")))])
                    .with_cluster_id(if v >= 2 { Some(s("cluster")) } else { None })
                    .with_controller_id(BrokerId(1))
                    .with_topics(vec![
                        metadata_response::MetadataResponseTopic::default()
                            .with_name(Some(t(n, "orders")))
                            .with_partitions(vec![
                                metadata_response::MetadataResponsePartition::default()
                                    .with_leader_id(BrokerId(1))
                                    .with_replica_nodes(vec![BrokerId(1)])
                                    .with_isr_nodes(vec![BrokerId(1)]),
                            ]),
                        metadata_response::MetadataResponseTopic::default()
                            .with_name(Some(t(n, "payments"))),
                    ])
            });
        }
        // Metadata for all topics (null array): nothing to rewrite.
        assert_untouched(
            Req,
            ApiKey::Metadata,
            9,
            &MetadataRequest::default().with_topics(None),
        );
    }

    #[test]
    fn offset_commit_group_and_topics() {
        for v in [2, 8, 9] {
            assert_renames(Req, ApiKey::OffsetCommit, v, |n| {
                OffsetCommitRequest::default()
                    .with_group_id(g(n, "group-1"))
                    .with_generation_id_or_member_epoch(3)
                    .with_member_id(s("member-1"))
                    .with_topics(vec![
                        offset_commit_request::OffsetCommitRequestTopic::default()
                            .with_name(t(n, "orders"))
                            .with_partitions(vec![
                                offset_commit_request::OffsetCommitRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(42)
                                    .with_committed_metadata(Some(s("meta"))),
                            ]),
                    ])
            });
            assert_renames(Resp, ApiKey::OffsetCommit, v, |n| {
                OffsetCommitResponse::default().with_topics(vec![
                    offset_commit_response::OffsetCommitResponseTopic::default()
                        .with_name(t(n, "orders"))
                        .with_partitions(vec![
                            offset_commit_response::OffsetCommitResponsePartition::default(),
                        ]),
                ])
            });
        }
    }

    #[test]
    fn offset_fetch_single_and_batched() {
        assert_renames(Req, ApiKey::OffsetFetch, 7, |n| {
            OffsetFetchRequest::default()
                .with_group_id(g(n, "g1"))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(t(n, "orders"))
                        .with_partition_indexes(vec![0, 1]),
                ]))
        });
        for v in [8, 9] {
            assert_renames(Req, ApiKey::OffsetFetch, v, |n| {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(g(n, "g1"))
                        .with_member_id(if v >= 9 { Some(s("member")) } else { None })
                        .with_topics(Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopics::default()
                                .with_name(t(n, "orders"))
                                .with_partition_indexes(vec![0]),
                            offset_fetch_request::OffsetFetchRequestTopics::default()
                                .with_name(t(n, "payments"))
                                .with_partition_indexes(vec![1]),
                        ])),
                    // All the group's topics.
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(g(n, "g2"))
                        .with_topics(None),
                ])
            });
            assert_renames(Resp, ApiKey::OffsetFetch, v, |n| {
                OffsetFetchResponse::default().with_groups(vec![
                    offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(g(n, "g1"))
                        .with_topics(vec![
                            offset_fetch_response::OffsetFetchResponseTopics::default()
                                .with_name(t(n, "orders"))
                                .with_partitions(vec![
                                    offset_fetch_response::OffsetFetchResponsePartitions::default()
                                        .with_committed_offset(7)
                                        .with_metadata(Some(s("m"))),
                                ]),
                        ]),
                ])
            });
        }
        assert_renames(Resp, ApiKey::OffsetFetch, 7, |n| {
            OffsetFetchResponse::default().with_topics(vec![
                offset_fetch_response::OffsetFetchResponseTopic::default()
                    .with_name(t(n, "orders"))
                    .with_partitions(vec![
                        offset_fetch_response::OffsetFetchResponsePartition::default()
                            .with_metadata(None),
                    ]),
            ])
        });
    }

    /// FindCoordinator's key is a group id or a transactional id depending on `key_type`,
    /// so the table leaves it untyped: the caller rewrites it by field name.
    #[test]
    fn find_coordinator_key_is_rewritten_by_field_name() {
        fn by_field(st: &StringRef, current: &str) -> Option<String> {
            let key = match st.struct_name {
                "FindCoordinatorRequest" => matches!(st.field, "key" | "coordinator_keys"),
                "Coordinator" => st.field == "key",
                _ => false,
            };
            assert!(!key || st.entity == Entity::None);
            key.then(|| format!("{P}{current}"))
        }
        fn unprefix(st: &StringRef, current: &str) -> Option<String> {
            let key = matches!(
                (st.struct_name, st.field),
                ("FindCoordinatorRequest", "key" | "coordinator_keys") | ("Coordinator", "key")
            );
            key.then(|| current.strip_prefix(P).map(str::to_string))
                .flatten()
        }
        let cases: Vec<(Direction, i16, Vec<u8>, Vec<u8>)> = vec![
            {
                let build = |n: Names| {
                    FindCoordinatorRequest::default()
                        .with_key(s(&n("g1")))
                        .with_key_type(0)
                };
                (
                    Req,
                    3,
                    encode(&build(&|n| n.into()), 3),
                    encode(&build(&|n| format!("{P}{n}")), 3),
                )
            },
            {
                let build = |n: Names| {
                    FindCoordinatorRequest::default()
                        .with_key_type(1)
                        .with_coordinator_keys(vec![s(&n("tx-1")), s(&n("tx-2"))])
                };
                (
                    Req,
                    4,
                    encode(&build(&|n| n.into()), 4),
                    encode(&build(&|n| format!("{P}{n}")), 4),
                )
            },
            {
                let build = |n: Names| {
                    FindCoordinatorResponse::default().with_coordinators(vec![
                        find_coordinator_response::Coordinator::default()
                            .with_key(s(&n("g1")))
                            .with_node_id(BrokerId(2))
                            .with_host(s("broker-2"))
                            .with_port(9092),
                    ])
                };
                (
                    Resp,
                    4,
                    encode(&build(&|n| n.into()), 4),
                    encode(&build(&|n| format!("{P}{n}")), 4),
                )
            },
        ];
        for (dir, v, plain, expected) in cases {
            // Not a typed name: an entity-driven rewrite leaves it alone.
            assert_eq!(
                rewrite_strings(dir, 10, v, &plain, &mut prefix_names),
                Ok(None)
            );
            let out = rewrite_strings(dir, 10, v, &plain, &mut by_field)
                .unwrap()
                .unwrap();
            assert_eq!(out.as_ref(), expected.as_slice(), "{dir:?} v{v}");
            let back = rewrite_strings(dir, 10, v, &out, &mut unprefix)
                .unwrap()
                .unwrap();
            assert_eq!(back.as_ref(), plain.as_slice(), "{dir:?} v{v}");
        }
    }

    #[test]
    fn classic_group_apis() {
        for v in [0, 5, 6, 9] {
            assert_renames(Req, ApiKey::JoinGroup, v, |n| {
                JoinGroupRequest::default()
                    .with_group_id(g(n, "g1"))
                    .with_session_timeout_ms(10_000)
                    .with_member_id(s("member-1"))
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                    )
                    .with_name(s("range"))
                    .with_metadata(bytes::Bytes::from_static(&[0, 1]))])
            });
        }
        for v in [0, 3, 5] {
            assert_renames(Req, ApiKey::SyncGroup, v, |n| {
                SyncGroupRequest::default()
                    .with_group_id(g(n, "g1"))
                    .with_member_id(s("member-1"))
                    .with_protocol_type(if v >= 5 { Some(s("consumer")) } else { None })
                    .with_assignments(vec![
                        sync_group_request::SyncGroupRequestAssignment::default()
                            .with_member_id(s("member-1"))
                            .with_assignment(bytes::Bytes::from_static(&[1, 2])),
                    ])
            });
        }
        for v in [0, 4] {
            assert_renames(Req, ApiKey::Heartbeat, v, |n| {
                HeartbeatRequest::default()
                    .with_group_id(g(n, "g1"))
                    .with_member_id(s("member-1"))
            });
        }
        for v in [0, 3, 5] {
            assert_renames(Req, ApiKey::LeaveGroup, v, |n| {
                let req = LeaveGroupRequest::default().with_group_id(g(n, "g1"));
                if v >= 3 {
                    req.with_members(vec![leave_group_request::MemberIdentity::default()
                        .with_member_id(s("member-1"))
                        .with_group_instance_id(Some(s("instance-1")))])
                } else {
                    req.with_member_id(s("member-1"))
                }
            });
        }
        for v in [0, 5, 6] {
            assert_renames(Req, ApiKey::DescribeGroups, v, |n| {
                DescribeGroupsRequest::default().with_groups(vec![g(n, "g1"), g(n, "g2")])
            });
            assert_renames(Resp, ApiKey::DescribeGroups, v, |n| {
                DescribeGroupsResponse::default().with_groups(vec![
                    describe_groups_response::DescribedGroup::default()
                        .with_group_id(g(n, "g1"))
                        .with_group_state(s("Stable"))
                        .with_protocol_type(s("consumer"))
                        .with_protocol_data(s("range"))
                        .with_members(vec![
                            describe_groups_response::DescribedGroupMember::default()
                                .with_member_id(s("member-1"))
                                .with_client_id(s("client"))
                                .with_client_host(s("/10.0.0.1")),
                        ]),
                ])
            });
        }
        for v in [0, 3, 5] {
            assert_renames(Resp, ApiKey::ListGroups, v, |n| {
                let group = |id: &str| {
                    let l = list_groups_response::ListedGroup::default()
                        .with_group_id(g(n, id))
                        .with_protocol_type(s("consumer"));
                    match v {
                        5.. => l
                            .with_group_state(s("Stable"))
                            .with_group_type(s("classic")),
                        4 => l.with_group_state(s("Stable")),
                        _ => l,
                    }
                };
                ListGroupsResponse::default().with_groups(vec![group("g1"), group("g2")])
            });
        }
    }

    #[test]
    fn topic_administration() {
        for v in [2, 5, 7] {
            assert_renames(Req, ApiKey::CreateTopics, v, |n| {
                CreateTopicsRequest::default()
                    .with_timeout_ms(1000)
                    .with_topics(vec![create_topics_request::CreatableTopic::default()
                        .with_name(t(n, "new-topic"))
                        .with_num_partitions(3)
                        .with_replication_factor(1)
                        .with_configs(vec![
                            create_topics_request::CreatableTopicConfig::default()
                                .with_name(s("cleanup.policy"))
                                .with_value(Some(s("compact"))),
                        ])])
            });
            assert_renames(Resp, ApiKey::CreateTopics, v, |n| {
                CreateTopicsResponse::default().with_topics(vec![
                    create_topics_response::CreatableTopicResult::default()
                        .with_name(t(n, "new-topic"))
                        .with_error_message(Some(s("free text"))),
                ])
            });
        }
        for v in [1, 4, 5] {
            assert_renames(Req, ApiKey::DeleteTopics, v, |n| {
                DeleteTopicsRequest::default().with_topic_names(vec![t(n, "a"), t(n, "b")])
            });
        }
        assert_renames(Req, ApiKey::DeleteTopics, 6, |n| {
            DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(t(n, "a"))),
                delete_topics_request::DeleteTopicState::default()
                    .with_name(None)
                    .with_topic_id(Uuid::from_u128(4)),
            ])
        });
        for v in [1, 4, 6] {
            assert_renames(Resp, ApiKey::DeleteTopics, v, |n| {
                DeleteTopicsResponse::default()
                    .with_responses(vec![delete_topics_response::DeletableTopicResult::default(
                    )
                    .with_name(Some(t(n, "a")))])
            });
        }
        for v in [0, 2, 3] {
            assert_renames(Req, ApiKey::CreatePartitions, v, |n| {
                CreatePartitionsRequest::default().with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(t(n, "orders"))
                        .with_count(6)
                        .with_assignments(None),
                ])
            });
            assert_renames(Resp, ApiKey::CreatePartitions, v, |n| {
                CreatePartitionsResponse::default().with_results(vec![
                    create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(t(n, "orders")),
                ])
            });
        }
        for v in [0, 2] {
            assert_renames(Req, ApiKey::DeleteRecords, v, |n| {
                DeleteRecordsRequest::default().with_topics(vec![
                    delete_records_request::DeleteRecordsTopic::default()
                        .with_name(t(n, "orders"))
                        .with_partitions(vec![
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_offset(10),
                        ]),
                ])
            });
            assert_renames(Resp, ApiKey::DeleteRecords, v, |n| {
                DeleteRecordsResponse::default().with_topics(vec![
                    delete_records_response::DeleteRecordsTopicResult::default()
                        .with_name(t(n, "orders")),
                ])
            });
        }
    }

    #[test]
    fn transactions() {
        for v in [0, 2, 5] {
            assert_renames(Req, ApiKey::InitProducerId, v, |n| {
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(x(n, "tx-1")))
                    .with_transaction_timeout_ms(60_000)
            });
            // An idempotent producer has no transactional id.
            assert_untouched(
                Req,
                ApiKey::InitProducerId,
                v,
                &InitProducerIdRequest::default().with_transactional_id(None),
            );
        }
        for v in [0, 3] {
            assert_renames(Req, ApiKey::AddPartitionsToTxn, v, |n| {
                AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(x(n, "tx-1"))
                    .with_v3_and_below_producer_id(ProducerId(5))
                    .with_v3_and_below_topics(vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(t(n, "orders"))
                            .with_partitions(vec![0, 1]),
                    ])
            });
            assert_renames(Resp, ApiKey::AddPartitionsToTxn, v, |n| {
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(vec![
                    add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                        .with_name(t(n, "orders")),
                ])
            });
        }
        for v in [4, 5] {
            assert_renames(Req, ApiKey::AddPartitionsToTxn, v, |n| {
                let txn = |id: &str, topic: &str| {
                    add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                        .with_transactional_id(x(n, id))
                        .with_producer_id(ProducerId(5))
                        .with_topics(vec![
                            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                                .with_name(t(n, topic))
                                .with_partitions(vec![0]),
                        ])
                };
                AddPartitionsToTxnRequest::default()
                    .with_transactions(vec![txn("tx-1", "orders"), txn("tx-2", "payments")])
            });
            assert_renames(Resp, ApiKey::AddPartitionsToTxn, v, |n| {
                AddPartitionsToTxnResponse::default().with_results_by_transaction(vec![
                    add_partitions_to_txn_response::AddPartitionsToTxnResult::default()
                        .with_transactional_id(x(n, "tx-1"))
                        .with_topic_results(vec![
                            add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default(
                            )
                            .with_name(t(n, "orders")),
                        ]),
                ])
            });
        }
        for v in [0, 3, 4] {
            assert_renames(Req, ApiKey::AddOffsetsToTxn, v, |n| {
                AddOffsetsToTxnRequest::default()
                    .with_transactional_id(x(n, "tx-1"))
                    .with_producer_id(ProducerId(5))
                    .with_group_id(g(n, "g1"))
            });
        }
        for v in [0, 3, 5] {
            assert_renames(Req, ApiKey::EndTxn, v, |n| {
                EndTxnRequest::default()
                    .with_transactional_id(x(n, "tx-1"))
                    .with_producer_id(ProducerId(5))
                    .with_committed(true)
            });
        }
        for v in [0, 3, 5] {
            assert_renames(Req, ApiKey::TxnOffsetCommit, v, |n| {
                let req = TxnOffsetCommitRequest::default()
                    .with_transactional_id(x(n, "tx-1"))
                    .with_group_id(g(n, "g1"))
                    .with_producer_id(ProducerId(5))
                    .with_topics(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                            .with_name(t(n, "orders"))
                            .with_partitions(vec![
                                txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                    .with_committed_offset(9)
                                    .with_committed_metadata(Some(s("meta"))),
                            ]),
                    ]);
                if v >= 3 {
                    req.with_member_id(s("member-1"))
                } else {
                    req
                }
            });
            assert_renames(Resp, ApiKey::TxnOffsetCommit, v, |n| {
                TxnOffsetCommitResponse::default().with_topics(vec![
                    txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                        .with_name(t(n, "orders")),
                ])
            });
        }
        assert_renames(Req, ApiKey::DescribeProducers, 0, |n| {
            DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(t(n, "orders"))
                    .with_partition_indexes(vec![0]),
            ])
        });
        assert_renames(Resp, ApiKey::DescribeProducers, 0, |n| {
            DescribeProducersResponse::default().with_topics(vec![
                describe_producers_response::TopicResponse::default()
                    .with_name(t(n, "orders"))
                    .with_partitions(vec![
                        describe_producers_response::PartitionResponse::default()
                            .with_active_producers(vec![
                                describe_producers_response::ProducerState::default()
                                    .with_producer_id(ProducerId(5)),
                            ]),
                    ]),
            ])
        });
        assert_renames(Req, ApiKey::DescribeTransactions, 0, |n| {
            DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![x(n, "tx-1"), x(n, "tx-2")])
        });
        assert_renames(Resp, ApiKey::DescribeTransactions, 0, |n| {
            DescribeTransactionsResponse::default().with_transaction_states(vec![
                describe_transactions_response::TransactionState::default()
                    .with_transactional_id(x(n, "tx-1"))
                    .with_transaction_state(s("Ongoing"))
                    .with_topics(vec![describe_transactions_response::TopicData::default()
                        .with_topic(t(n, "orders"))
                        .with_partitions(vec![0, 1])]),
            ])
        });
        for v in [0, 1, 2] {
            assert_renames(Resp, ApiKey::ListTransactions, v, |n| {
                ListTransactionsResponse::default()
                    .with_unknown_state_filters(vec![s("Bogus")])
                    .with_transaction_states(vec![
                        list_transactions_response::TransactionState::default()
                            .with_transactional_id(x(n, "tx-1"))
                            .with_transaction_state(s("Ongoing")),
                    ])
            });
        }
    }

    #[test]
    fn consumer_group_protocol_and_topic_partitions() {
        assert_renames(Req, ApiKey::ConsumerGroupHeartbeat, 0, |n| {
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(g(n, "g1"))
                .with_member_id(s("member-1"))
                .with_rack_id(Some(s("rack-a")))
                .with_subscribed_topic_names(Some(vec![t(n, "orders"), t(n, "payments")]))
                .with_server_assignor(Some(s("uniform")))
        });
        // The regex is untyped: kept as it is by an entity-driven rewrite.
        assert_renames(Req, ApiKey::ConsumerGroupHeartbeat, 1, |n| {
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(g(n, "g1"))
                .with_member_id(s("member-1"))
                .with_subscribed_topic_regex(Some(s("orders.*")))
        });
        for v in [0, 1] {
            assert_renames(Req, ApiKey::ConsumerGroupDescribe, v, |n| {
                ConsumerGroupDescribeRequest::default().with_group_ids(vec![g(n, "g1"), g(n, "g2")])
            });
            assert_renames(Resp, ApiKey::ConsumerGroupDescribe, v, |n| {
                let assignment = |topic: &str| {
                    consumer_group_describe_response::Assignment::default().with_topic_partitions(
                        vec![consumer_group_describe_response::TopicPartitions::default()
                            .with_topic_id(Uuid::from_u128(1))
                            .with_topic_name(t(n, topic))
                            .with_partitions(vec![0, 1])],
                    )
                };
                ConsumerGroupDescribeResponse::default().with_groups(vec![
                    consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(g(n, "g1"))
                        .with_group_state(s("Stable"))
                        .with_assignor_name(s("uniform"))
                        .with_members(vec![consumer_group_describe_response::Member::default()
                            .with_member_id(s("member-1"))
                            .with_client_id(s("client"))
                            .with_client_host(s("/10.0.0.1"))
                            .with_subscribed_topic_names(vec![t(n, "orders"), t(n, "payments")])
                            .with_subscribed_topic_regex(Some(s("pay.*")))
                            .with_assignment(assignment("orders"))
                            .with_target_assignment(assignment("payments"))]),
                ])
            });
        }
        for cursor in [true, false] {
            assert_renames(Req, ApiKey::DescribeTopicPartitions, 0, |n| {
                DescribeTopicPartitionsRequest::default()
                    .with_topics(vec![
                        describe_topic_partitions_request::TopicRequest::default()
                            .with_name(t(n, "orders")),
                        describe_topic_partitions_request::TopicRequest::default()
                            .with_name(t(n, "payments")),
                    ])
                    .with_response_partition_limit(100)
                    .with_cursor(cursor.then(|| {
                        describe_topic_partitions_request::Cursor::default()
                            .with_topic_name(t(n, "payments"))
                            .with_partition_index(3)
                    }))
            });
            assert_renames(Resp, ApiKey::DescribeTopicPartitions, 0, |n| {
                DescribeTopicPartitionsResponse::default()
                    .with_topics(vec![
                        describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default()
                            .with_name(Some(t(n, "orders")))
                            .with_topic_id(Uuid::from_u128(1)),
                        // Not found by id: no name.
                        describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default()
                            .with_name(None)
                            .with_topic_id(Uuid::from_u128(2)),
                    ])
                    .with_next_cursor(cursor.then(|| {
                        describe_topic_partitions_response::Cursor::default()
                            .with_topic_name(t(n, "payments"))
                            .with_partition_index(4)
                    }))
            });
        }
    }

    /// A string inside a tagged field whose length changes: the tagged field's size varint
    /// is recomputed (and may change size itself), together with plain names elsewhere.
    #[test]
    fn tagged_field_sizes_follow_their_strings() {
        let long = "c".repeat(300);
        // v12 names topics; v15 adds a second tagged field (replica_state, tag 1) after the
        // resized one and names topics by id.
        let build = |n: Names, cluster: &str, v: i16| {
            let topic = fetch_request::FetchTopic::default()
                .with_partitions(vec![fetch_request::FetchPartition::default()]);
            let topic = if v >= 13 {
                topic.with_topic_id(Uuid::from_u128(1))
            } else {
                topic.with_topic(t(n, "orders"))
            };
            let req = FetchRequest::default()
                .with_topics(vec![topic])
                .with_cluster_id(Some(s(cluster)));
            if v >= 15 {
                req.with_replica_state(
                    fetch_request::ReplicaState::default()
                        .with_replica_id(BrokerId(3))
                        .with_replica_epoch(1),
                )
            } else {
                req
            }
        };
        for v in [12, 15] {
            let plain = encode(&build(&|n| n.into(), "c1", v), v);
            let expected = build(&|n| format!("{P}{n}"), &long, v);
            // The compact length of the string and the tagged size both grow to two bytes.
            let mut grow = |st: &StringRef, cur: &str| match st.field {
                "cluster_id" => Some(long.clone()),
                _ => prefix_names(st, cur),
            };
            let out = rewrite_strings(Req, 1, v, &plain, &mut grow)
                .unwrap()
                .unwrap();
            assert_eq!(out.as_ref(), encode(&expected, v).as_slice(), "v{v}");
            let decoded = FetchRequest::decode(&mut out.clone(), v).unwrap();
            assert_eq!(decoded, expected, "v{v}");
            // The way back shrinks them to one byte again.
            let mut shrink = |st: &StringRef, cur: &str| match st.field {
                "cluster_id" => Some("c1".to_string()),
                _ => strip_names(st, cur),
            };
            let back = rewrite_strings(Req, 1, v, &out, &mut shrink)
                .unwrap()
                .unwrap();
            assert_eq!(back.as_ref(), plain.as_slice(), "v{v}");
            // A change within one-byte sizes.
            let mut rename = |st: &StringRef, _: &str| {
                (st.field == "cluster_id").then(|| "cluster-two".to_string())
            };
            let out = rewrite_strings(Req, 1, v, &plain, &mut rename)
                .unwrap()
                .unwrap();
            let decoded = FetchRequest::decode(&mut out.clone(), v).unwrap();
            assert_eq!(decoded, build(&|n| n.into(), "cluster-two", v), "v{v}");
        }

        // Strings in structs of a tagged array (KIP-951 node endpoints, feature names).
        let fetch_resp = |host: &str| {
            FetchResponse::default().with_node_endpoints(vec![
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(1))
                    .with_host(s(host))
                    .with_port(9092)
                    .with_rack(Some(s("rack-a"))),
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(2))
                    .with_host(s(host))
                    .with_port(9093),
            ])
        };
        let gateway = "gateway.example.com-".repeat(10);
        let body = encode(&fetch_resp("b"), 16);
        let out = rewrite_strings(Resp, 1, 16, &body, &mut |st: &StringRef, _: &str| {
            (st.field == "host").then(|| gateway.clone())
        })
        .unwrap()
        .unwrap();
        assert_eq!(out.as_ref(), encode(&fetch_resp(&gateway), 16).as_slice());

        let features = |prefix: &str| {
            ApiVersionsResponse::default()
                .with_supported_features(vec![api_versions_response::SupportedFeatureKey::default(
                )
                .with_name(s(&format!("{prefix}metadata.version")))
                .with_max_version(20)])
                .with_finalized_features_epoch(3)
                .with_finalized_features(vec![api_versions_response::FinalizedFeatureKey::default(
                )
                .with_name(s(&format!("{prefix}kraft.version")))
                .with_max_version_level(1)])
        };
        let body = encode(&features(""), 3);
        let wide = "w".repeat(200);
        let out = rewrite_strings(Resp, 18, 3, &body, &mut |_: &StringRef, cur: &str| {
            Some(format!("{wide}{cur}"))
        })
        .unwrap()
        .unwrap();
        assert_eq!(out.as_ref(), encode(&features(&wide), 3).as_slice());
    }

    #[test]
    fn limits_and_bad_bodies() {
        let body = encode(&produce(&|n| n.into(), 3), 3);
        // The longest string Kafka takes, in an int16 and in a compact string.
        for v in [3, 9] {
            let body = encode(&produce(&|n| n.into(), v), v);
            let max = "m".repeat(MAX_STRING_LEN);
            let out = rewrite_strings(Req, 0, v, &body, &mut |st: &StringRef, _: &str| {
                (st.field == "transactional_id").then(|| max.clone())
            })
            .unwrap()
            .unwrap();
            let decoded = ProduceRequest::decode(&mut out.clone(), v).unwrap();
            assert_eq!(decoded.transactional_id, Some(x(&|n| n.into(), &max)));
            let err = rewrite_strings(Req, 0, v, &body, &mut |st: &StringRef, _: &str| {
                (st.field == "name").then(|| "n".repeat(MAX_STRING_LEN + 1))
            })
            .unwrap_err();
            assert_eq!(
                err,
                RewriteError::StringTooLong {
                    struct_name: "TopicProduceData",
                    field: "name",
                    len: MAX_STRING_LEN + 1
                }
            );
            assert!(err.to_string().contains("TopicProduceData.name"), "{err}");
        }
        // Bodies that do not walk.
        let err = rewrite_strings(Req, 0, 3, &body[..body.len() - 1], &mut prefix_names);
        assert!(matches!(
            err,
            Err(RewriteError::Walk(WalkError {
                fault: Fault::Truncated | Fault::LengthTooLong,
                ..
            }))
        ));
        let err = rewrite_strings(Req, 9999, 0, &body, &mut prefix_names).unwrap_err();
        assert!(matches!(
            err,
            RewriteError::Walk(WalkError {
                fault: Fault::UnknownApiKey,
                ..
            })
        ));
        let err = rewrite_strings(Req, 0, 2, &body, &mut prefix_names).unwrap_err();
        assert!(err.to_string().contains("unsupported version"), "{err}");
        // The same text, or no replacement, is no change.
        let mut same = |_: &StringRef, cur: &str| Some(cur.to_string());
        assert_eq!(rewrite_strings(Req, 0, 3, &body, &mut same), Ok(None));
        // Bytes after the body are carried over as they are.
        let mut trailing = body.clone();
        trailing.extend_from_slice(b"tail");
        let out = rewrite_strings(Req, 0, 3, &trailing, &mut prefix_names)
            .unwrap()
            .unwrap();
        assert!(out.ends_with(b"tail"));
        // A request table is not a response table.
        let resp = encode(&MetadataResponse::default(), 9);
        assert!(rewrite_strings(Req, 3, 9, &resp, &mut prefix_names).is_err());
        assert_eq!(
            rewrite_strings(Resp, 3, 9, &resp, &mut prefix_names),
            Ok(None)
        );
    }

    // ---------------------------------------------------------------------------------
    // Every message and version: default bodies and bodies generated from the table.

    /// `T::default()` encoded at a version (`None` if kafka-protocol refuses).
    struct DefaultBody(i16);
    impl TypeVisitor for DefaultBody {
        type Output = Option<Vec<u8>>;
        fn visit<T>(self) -> Option<Vec<u8>>
        where
            T: Encodable + Decodable + Message + Default + PartialEq + Debug,
        {
            let mut buf = BytesMut::new();
            T::default().encode(&mut buf, self.0).ok()?;
            Some(buf.to_vec())
        }
    }

    /// Decodes a body with kafka-protocol: the bytes consumed, or the error.
    struct Decodes<'a>(&'a [u8], i16);
    impl TypeVisitor for Decodes<'_> {
        type Output = Result<usize, String>;
        fn visit<T>(self) -> Self::Output
        where
            T: Encodable + Decodable + Message + Default + PartialEq + Debug,
        {
            let mut buf = bytes::Bytes::copy_from_slice(self.0);
            T::decode(&mut buf, self.1).map_err(|e| format!("{e:#}"))?;
            Ok(self.0.len() - buf.len())
        }
    }

    /// Arrays of up to three elements, short strings and now and then one of 100-140 bytes,
    /// so that size varints start at two bytes.
    const VARIED: Shape = Shape {
        elements: 4,
        depth: 4,
        text: 7,
        long_text_percent: 5,
        unknown_tags: 2000,
    };

    /// What a walk reports: the selected strings' texts and the known tagged fields' sizes.
    struct Seen<'a> {
        body: &'a [u8],
        all: bool,
        strings: Vec<String>,
        tagged: Vec<(u32, usize)>,
    }
    impl Visitor for Seen<'_> {
        fn string(&mut self, st: &StringRef) {
            if self.all || is_name(st) {
                let text = std::str::from_utf8(&self.body[st.range.clone()]).unwrap();
                self.strings.push(text.to_string());
            }
        }
        fn tagged_field(
            &mut self,
            tag: u32,
            _: std::ops::Range<usize>,
            value: std::ops::Range<usize>,
            known: bool,
        ) {
            if known {
                self.tagged.push((tag, value.len()));
            }
        }
    }

    fn seen<'a>(def: &'static MessageDef, v: i16, body: &'a [u8], all: bool) -> Seen<'a> {
        let mut seen = Seen {
            body,
            all,
            strings: Vec::new(),
            tagged: Vec::new(),
        };
        let len = walk(Some(def), v, body, &mut seen)
            .unwrap_or_else(|e| panic!("{} v{v}: {e}", def.name));
        assert_eq!(len, body.len(), "{} v{v}", def.name);
        seen
    }

    #[derive(Default)]
    struct Stats {
        rewritten: usize,
        tags_resized: usize,
    }

    /// Prefixes the selected strings (typed names, or every string), checks the result walks
    /// with the prefixed strings in place and decodes with kafka-protocol; strips the prefix
    /// and checks the original bytes come back.
    fn assert_round_trip(
        def: &'static MessageDef,
        v: i16,
        body: &[u8],
        prefix: &str,
        all: bool,
        stats: &mut Stats,
    ) {
        let what = format!("{} v{v} all={all} prefix={}", def.name, prefix.len());
        let dir = if def.response { Resp } else { Req };
        let before = seen(def, v, body, all);
        let select = |st: &StringRef| all || is_name(st);
        let out = rewrite_strings(
            dir,
            def.api_key,
            v,
            body,
            &mut |st: &StringRef, cur: &str| select(st).then(|| format!("{prefix}{cur}")),
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let Some(out) = out else {
            assert!(before.strings.is_empty(), "{what}: nothing rewritten");
            return;
        };
        let after = seen(def, v, &out, all);
        let expected: Vec<String> = before
            .strings
            .iter()
            .map(|s| format!("{prefix}{s}"))
            .collect();
        assert_eq!(after.strings, expected, "{what}");
        let consumed = table::with_message_type(def.api_key, def.response, Decodes(&out, v))
            .unwrap()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(consumed, out.len(), "{what}");
        if after.tagged != before.tagged {
            stats.tags_resized += 1;
        }
        let back = rewrite_strings(
            dir,
            def.api_key,
            v,
            &out,
            &mut |st: &StringRef, cur: &str| {
                if select(st) {
                    Some(cur.strip_prefix(prefix).expect("prefixed").to_string())
                } else {
                    None
                }
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(back.as_ref(), body, "{what} stripped");
        stats.rewritten += 1;
    }

    #[test]
    fn every_message_and_version_round_trips() {
        let wide = format!("{}.", "t".repeat(150));
        let mut rng = Rng(0x7e4a);
        let mut stats = Stats::default();
        let mut bodies = 0;
        for def in messages() {
            for v in def.min..=def.max {
                let default = table::with_message_type(def.api_key, def.response, DefaultBody(v))
                    .unwrap()
                    .unwrap_or_else(|| panic!("{} v{v}: no default encoding", def.name));
                let mut all_bodies = vec![default];
                for _ in 0..6 {
                    let mut body = Vec::new();
                    synth_struct(&mut rng, &VARIED, def.root, v, 0, &mut body);
                    all_bodies.push(body);
                }
                for body in &all_bodies {
                    for prefix in [P, wide.as_str()] {
                        for all in [false, true] {
                            assert_round_trip(def, v, body, prefix, all, &mut stats);
                        }
                    }
                    bodies += 1;
                }
            }
        }
        assert!(stats.rewritten > bodies, "{} of {bodies}", stats.rewritten);
        assert!(
            stats.tags_resized > 50,
            "{} rewrites resized a tagged field",
            stats.tags_resized
        );
    }
}
