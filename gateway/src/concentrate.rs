//! Concentrated topics: many logical topics of a virtual cluster stored in one physical topic.
//!
//! A concentration rule (`{vcluster, logicalTopicPattern, physicalTopic}`) sends every logical
//! topic of the tenant whose name matches the pattern (a whole-name match) to one physical
//! topic, so thousands of small logical topics cost one physical topic's partitions. The
//! gateway tags every record it writes there with its logical topic (the record header
//! [`LOGICAL_TOPIC_HEADER`]) and, on the way back, shows the consumers of a logical topic only
//! the records tagged with its name.
//!
//! This module holds the two pure steps of that, over request and response bodies (no
//! session state):
//!
//! - [`prepare_request`] runs before the tenant's names are mapped. It renames every
//!   concentrated logical topic of the request to its physical topic (so the generic name
//!   mapping leaves it alone), tags the records of Produce requests, and refuses what cannot
//!   work on a shared topic. It returns a [`Concentrated`] describing what it did.
//! - [`finish_response`] runs on the broker's answer (names still physical) with that value:
//!   it filters the records of Fetch responses and gives every physical name its logical
//!   name back.
//!
//! A request that names no concentrated topic costs one structural walk of its body (which
//! is also the check every body passes before it is decoded) and nothing else.
//!
//! # What the tenant sees
//!
//! - **Partitions.** A logical topic has the partitions of its physical topic: partition *n*
//!   of the logical topic is partition *n* of the physical one. Creating a concentrated
//!   logical topic asks for nothing physical: CreateTopics answers success for it locally,
//!   whatever partition count, replication factor and configs it asked for (the result
//!   reports `-1` for both counts and no configs), and the physical topic is the operator's
//!   to create. Retention, compaction and every other config are the physical topic's.
//! - **Offsets.** Offsets are the physical partition's. A logical topic's offsets have gaps
//!   where the other logical topics' records are; its log end offset (ListOffsets latest,
//!   the high watermark) is the physical partition's, so consumer lag counts the other
//!   logical topics' records too, and a consumer at the end may have nothing to read.
//!   Fetch keeps every batch's base offset and last offset delta even when it removes
//!   records, and keeps a batch whose records are all removed as an empty batch (as Kafka's
//!   log cleaner does, without compression), so consumers always advance past what they
//!   were not shown. ListOffsets by timestamp gives the first physical offset at or after
//!   the time, possibly another logical topic's record: reading from there is still right.
//! - **Topic ids.** A concentrated logical topic has no topic id of its own: Metadata and
//!   DescribeTopicPartitions report the nil id for it, so clients fall back to the
//!   name-based versions of Fetch (v12 and below) and Produce (v12 and below). Requests that
//!   name topics by id only (Fetch v13+, Produce v13+) cannot name a concentrated logical
//!   topic and pass through untouched; a gateway serving tenants with concentration rules
//!   should advertise at most [`MAX_NAMED_FETCH_VERSION`] and [`MAX_NAMED_PRODUCE_VERSION`]
//!   for clients that do not fall back by themselves.
//! - **Headers.** Consumers see the [`LOGICAL_TOPIC_HEADER`] header on every record (it is
//!   not removed, so batches the filter does not change are forwarded as the broker sent
//!   them). A producer cannot choose it: any such header a client sends is replaced, so a
//!   producer of one logical topic cannot make its records appear in another.
//! - **Consumer groups.** Committed offsets are per physical partition, so a group should
//!   consume only one logical topic of a physical topic: one request naming two logical
//!   topics of the same physical topic is refused (see below).
//!
//! # Refused
//!
//! - One request naming two logical topics concentrated into the same physical topic, in
//!   every API but Produce and Metadata: the broker would see one physical topic twice and
//!   answer once, mixing the two logical topics' partitions and offsets. Produce merges
//!   them (one batch per physical partition, each record tagged with its own logical topic,
//!   the answer split back by record counts); Metadata asks once and answers for each.
//! - Idempotent and transactional producers (batches with a producer id, or a transactional
//!   id on the request): their sequence numbers are per partition of the topic they name,
//!   and several logical topics' sequences in one physical partition would be rejected as
//!   out of order, or worse, deduplicated away. Producers must disable idempotence (the Java
//!   producer enables it by default: `enable.idempotence=false`).
//! - DeleteRecords (it would delete the other logical topics' records too), DeleteTopics (a
//!   concentrated logical topic exists as long as its rule), and every other API naming a
//!   concentrated topic (CreatePartitions, AddPartitionsToTxn, ConsumerGroupHeartbeat of the
//!   KIP-848 protocol, share groups, DescribeProducers, reassignments, leader elections):
//!   those act on the physical topic as a whole, or assign partitions by topic id. Consumers
//!   use the classic group protocol.
//! - Produce batches that do not decode as RecordBatch v2, and control batches.
//!
//! # Fetch sessions
//!
//! An incremental fetch (KIP-227) names only the partitions that changed, yet its answer may
//! carry any partition of the session: the gateway could not tell which logical topic a
//! physical partition in it belongs to, nor stop two logical topics sharing a physical
//! partition inside one session. A Fetch request naming a concentrated topic is therefore
//! made session-less (session id 0, epoch -1, no forgotten topics): the broker answers it in
//! full and opens no session, and the client, seeing session id 0, sends full requests from
//! then on.
//!
//! Records in the physical topic without the header (written to it directly, not through
//! the gateway) belong to no logical topic and are never shown.

use std::fmt;

use anyhow::Context as _;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{BatchIndexAndErrorMessage, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, FetchRequest, FetchResponse, ListOffsetsRequest,
    MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest, ProduceResponse, TopicName,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::records::{self, Batch, Header, Offsets, Record};
use crate::schema::rewrite::{rewrite_strings, Direction};
use crate::schema::{self, Entity, StringRef, Visitor};
use crate::vcluster::Tenant;

/// Header the gateway puts on every record of a concentrated topic: its logical topic name.
pub const LOGICAL_TOPIC_HEADER: &str = "sluice.logical-topic";

/// The highest Fetch version that names topics (v13+ name them by id only).
pub const MAX_NAMED_FETCH_VERSION: i16 = 12;

/// The highest Produce version that names topics (v13+ name them by id only).
pub const MAX_NAMED_PRODUCE_VERSION: i16 = 12;

use crate::message::codes;

/// Why [`prepare_request`] refused a request: the caller answers it with this error (every
/// topic and partition of the request, or the request's top-level error) and does not forward
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Kafka error code (see [`codes`]).
    pub code: i16,
    /// Explanation for the client.
    pub message: String,
}

impl Refusal {
    fn new(code: i16, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (error code {})", self.message, self.code)
    }
}

impl std::error::Error for Refusal {}

/// What a request did with concentrated topics, to undo it on the response.
#[derive(Debug, Default, Clone)]
pub struct Concentrated {
    /// `(logical, physical)` pairs the request was renamed with, in request order, each
    /// pair once. A physical topic appears more than once only for Produce and Metadata.
    topics: Vec<(String, String)>,
    /// CreateTopics: concentrated logical topics taken out of the request, answered here.
    created: Vec<String>,
    /// Produce: which logical topics' records make up each physical partition's batch.
    produced: Vec<Merged>,
}

/// One physical partition of a Produce request: its batch holds, in order, `count` records
/// of each logical topic.
#[derive(Debug, Clone)]
struct Merged {
    physical: String,
    partition: i32,
    parts: Vec<(String, usize)>,
}

impl Concentrated {
    /// Nothing to undo: the response needs no [`finish_response`].
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty() && self.created.is_empty()
    }

    /// The logical name this request used for physical topic `physical` (the first one, for
    /// the Produce and Metadata requests that may name several), if the request renamed it.
    pub fn logical_for(&self, physical: &str) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, p)| p == physical)
            .map(|(l, _)| l.as_str())
    }

    /// Every `(logical, physical)` pair of the request: the physical names in the forwarded
    /// request that came from this step, which the generic name mapping must leave alone.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.topics.iter().map(|(l, p)| (l.as_str(), p.as_str()))
    }

    /// The concentrated logical topics of a CreateTopics request, taken out of the forwarded
    /// request and answered with success by [`finish_response`].
    pub fn created_locally(&self) -> impl Iterator<Item = &str> {
        self.created.iter().map(String::as_str)
    }

    fn logicals_of<'a>(&'a self, physical: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.topics
            .iter()
            .filter(move |(_, p)| p == physical)
            .map(|(l, _)| l.as_str())
    }

    fn add(&mut self, logical: &str, physical: &str) {
        if !self
            .topics
            .iter()
            .any(|(l, p)| l == logical && p == physical)
        {
            self.topics
                .push((logical.to_string(), physical.to_string()));
        }
    }

    /// Renames `name` to its physical topic when it is concentrated, refusing a second
    /// logical topic of a physical topic the request already names.
    fn map_exclusive(
        &mut self,
        tenant: &Tenant,
        key: ApiKey,
        name: &mut TopicName,
    ) -> Result<(), Refusal> {
        let Some(physical) = tenant.concentrated(name) else {
            return Ok(());
        };
        if let Some((other, _)) = self
            .topics
            .iter()
            .find(|(l, p)| p == physical && l.as_str() != str_of(name))
        {
            return Err(Refusal::new(
                codes::INVALID_REQUEST,
                format!(
                    "{key:?} names topics {other} and {} in one request, which share one \
                     physical topic: use a separate consumer (and group) for each",
                    &**name
                ),
            ));
        }
        self.add(name, physical);
        *name = topic(physical);
        Ok(())
    }

    /// Gives `name` its logical name back when this request renamed it; true if it did.
    fn map_back(&self, name: &mut TopicName) -> bool {
        match self.logical_for(name) {
            Some(logical) => {
                *name = topic(logical);
                true
            }
            None => false,
        }
    }
}

fn str_of(name: &TopicName) -> &str {
    name
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Finds the first topic name of a request body that is a concentrated logical topic.
struct Scan<'a> {
    tenant: &'a Tenant,
    body: &'a [u8],
    first: Option<String>,
}

impl Visitor for Scan<'_> {
    fn string(&mut self, s: &StringRef) {
        if self.first.is_some() || s.entity != Entity::TopicName {
            return;
        }
        // The walker has checked that the string is UTF-8.
        if let Ok(name) = std::str::from_utf8(&self.body[s.range.clone()]) {
            if self.tenant.concentrated(name).is_some() {
                self.first = Some(name.to_string());
            }
        }
    }
}

/// Before the tenant's names are mapped: renames every concentrated logical topic of the
/// request to its physical topic, tags Produce records with [`LOGICAL_TOPIC_HEADER`], and
/// refuses what concentrated topics do not support (see the module documentation).
///
/// `body` is the request body after the request header. Returns `Ok(None)` when the request
/// names no concentrated topic (forward it as it is), else the body to forward and the
/// [`Concentrated`] value [`finish_response`] needs. The returned body may be one the broker
/// answers with an empty list (a CreateTopics request whose every topic is concentrated):
/// forward it all the same, and let [`finish_response`] complete the answer.
///
/// Requests of API keys the gateway does not know pass through (`Ok(None)`); a body that
/// does not pass the structure check (the same walk as
/// [`check_request`](crate::schema::check_request)) is refused with
/// INVALID_REQUEST, as it could not be decoded safely.
pub fn prepare_request(
    tenant: &Tenant,
    api_key: i16,
    version: i16,
    body: &Bytes,
) -> Result<Option<(Bytes, Concentrated)>, Refusal> {
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Ok(None);
    };
    // One walk both finds the topic names and checks the structure before any decoding.
    let mut scan = Scan {
        tenant,
        body,
        first: None,
    };
    schema::walk_request(api_key, version, body, &mut scan).map_err(|e| {
        Refusal::new(
            codes::INVALID_REQUEST,
            format!("malformed {key:?} v{version} request: {e}"),
        )
    })?;
    let Some(first) = scan.first else {
        return Ok(None);
    };
    let mut c = Concentrated::default();
    let out = match key {
        ApiKey::Produce => produce_request(tenant, version, body, &mut c)?,
        ApiKey::Fetch => {
            let mut r: FetchRequest = decode_request(key, version, body)?;
            for t in &mut r.topics {
                c.map_exclusive(tenant, key, &mut t.topic)?;
            }
            if version >= 7 {
                // Session-less: see the module documentation.
                r.session_id = 0;
                r.session_epoch = -1;
                r.forgotten_topics_data.clear();
            }
            encode_request(key, version, &r)?
        }
        ApiKey::ListOffsets => {
            let mut r: ListOffsetsRequest = decode_request(key, version, body)?;
            for t in &mut r.topics {
                c.map_exclusive(tenant, key, &mut t.name)?;
            }
            encode_request(key, version, &r)?
        }
        ApiKey::Metadata => {
            let mut r: MetadataRequest = decode_request(key, version, body)?;
            if let Some(topics) = r.topics.take() {
                let mut kept = Vec::with_capacity(topics.len());
                for mut t in topics {
                    let Some(physical) = t.name.as_deref().and_then(|n| tenant.concentrated(n))
                    else {
                        kept.push(t);
                        continue;
                    };
                    let logical = t.name.as_deref().map(|n| n.to_string()).unwrap_or_default();
                    // Ask for each physical topic once; the answer is given to each of its
                    // logical topics.
                    let asked = c.topics.iter().any(|(_, p)| p == physical);
                    c.add(&logical, physical);
                    if !asked {
                        t.name = Some(topic(physical));
                        kept.push(t);
                    }
                }
                r.topics = Some(kept);
            }
            encode_request(key, version, &r)?
        }
        ApiKey::OffsetCommit => {
            let mut r: OffsetCommitRequest = decode_request(key, version, body)?;
            for t in &mut r.topics {
                c.map_exclusive(tenant, key, &mut t.name)?;
            }
            encode_request(key, version, &r)?
        }
        ApiKey::OffsetFetch => {
            let mut r: OffsetFetchRequest = decode_request(key, version, body)?;
            for t in r.topics.iter_mut().flatten() {
                c.map_exclusive(tenant, key, &mut t.name)?;
            }
            for g in &mut r.groups {
                for t in g.topics.iter_mut().flatten() {
                    c.map_exclusive(tenant, key, &mut t.name)?;
                }
            }
            encode_request(key, version, &r)?
        }
        ApiKey::TxnOffsetCommit => {
            let mut r: TxnOffsetCommitRequest = decode_request(key, version, body)?;
            for t in &mut r.topics {
                c.map_exclusive(tenant, key, &mut t.name)?;
            }
            encode_request(key, version, &r)?
        }
        ApiKey::OffsetForLeaderEpoch => {
            let mut r: OffsetForLeaderEpochRequest = decode_request(key, version, body)?;
            for t in &mut r.topics {
                c.map_exclusive(tenant, key, &mut t.topic)?;
            }
            encode_request(key, version, &r)?
        }
        ApiKey::OffsetDelete => {
            let mut r: OffsetDeleteRequest = decode_request(key, version, body)?;
            for t in &mut r.topics {
                c.map_exclusive(tenant, key, &mut t.name)?;
            }
            encode_request(key, version, &r)?
        }
        ApiKey::DescribeTopicPartitions => {
            let mut r: DescribeTopicPartitionsRequest = decode_request(key, version, body)?;
            for t in &mut r.topics {
                c.map_exclusive(tenant, key, &mut t.name)?;
            }
            if let Some(cursor) = &mut r.cursor {
                c.map_exclusive(tenant, key, &mut cursor.topic_name)?;
            }
            encode_request(key, version, &r)?
        }
        ApiKey::CreateTopics => {
            let mut r: CreateTopicsRequest = decode_request(key, version, body)?;
            r.topics.retain(|t| {
                if tenant.concentrated(&t.name).is_none() {
                    return true;
                }
                if !c.created.iter().any(|n| n.as_str() == str_of(&t.name)) {
                    c.created.push(t.name.to_string());
                }
                false
            });
            encode_request(key, version, &r)?
        }
        ApiKey::DeleteRecords => {
            return Err(Refusal::new(
                codes::POLICY_VIOLATION,
                format!(
                    "cannot delete records of concentrated topic {first}: its physical topic \
                     holds other topics' records at the same offsets"
                ),
            ))
        }
        ApiKey::DeleteTopics => {
            return Err(Refusal::new(
                codes::POLICY_VIOLATION,
                format!(
                    "cannot delete concentrated topic {first}: it exists as long as its \
                     concentration rule"
                ),
            ))
        }
        other => {
            return Err(Refusal::new(
                codes::POLICY_VIOLATION,
                format!("{other:?} is not supported for concentrated topic {first}"),
            ))
        }
    };
    Ok(Some((out, c)))
}

fn decode_request<T: Decodable>(key: ApiKey, version: i16, body: &Bytes) -> Result<T, Refusal> {
    crate::schema::decode_request(key, version, body)
        .map_err(|e| Refusal::new(codes::INVALID_REQUEST, format!("{e:#}")))
}

fn encode_request<T: Encodable>(key: ApiKey, version: i16, message: &T) -> Result<Bytes, Refusal> {
    let mut out = BytesMut::new();
    message.encode(&mut out, version).map_err(|e| {
        Refusal::new(
            codes::UNKNOWN_SERVER_ERROR,
            format!("re-encoding the {key:?} v{version} request failed: {e:#}"),
        )
    })?;
    Ok(out.freeze())
}

/// One physical partition being assembled from the logical topics' partitions.
struct Pending {
    partition: i32,
    /// The first logical partition's entry: its tagged fields are kept.
    template: PartitionProduceData,
    /// Each logical topic's batches, in request order.
    parts: Vec<(String, Vec<Batch>)>,
}

fn produce_request(
    tenant: &Tenant,
    version: i16,
    body: &Bytes,
    c: &mut Concentrated,
) -> Result<Bytes, Refusal> {
    let key = ApiKey::Produce;
    let mut req: ProduceRequest = decode_request(key, version, body)?;
    let mut topics: Vec<TopicProduceData> = Vec::with_capacity(req.topic_data.len());
    // Physical topic → its index in `topics` and its partitions being assembled.
    let mut physical: Vec<(String, usize, Vec<Pending>)> = Vec::new();
    for mut t in std::mem::take(&mut req.topic_data) {
        let Some(target) = tenant.concentrated(&t.name) else {
            topics.push(t);
            continue;
        };
        let logical = t.name.to_string();
        if req.transactional_id.is_some() {
            return Err(idempotence_refusal(&logical));
        }
        c.add(&logical, target);
        let slot = match physical.iter().position(|(p, _, _)| p == target) {
            Some(i) => i,
            None => {
                let partitions = std::mem::take(&mut t.partition_data);
                physical.push((target.to_string(), topics.len(), Vec::new()));
                t.name = topic(target);
                topics.push(t.clone());
                t.partition_data = partitions;
                physical.len() - 1
            }
        };
        let pending = &mut physical[slot].2;
        for p in std::mem::take(&mut t.partition_data) {
            let batches = produce_batches(&logical, p.records.as_ref())?;
            match pending.iter_mut().find(|x| x.partition == p.index) {
                Some(x) => x.parts.push((logical.clone(), batches)),
                None => pending.push(Pending {
                    partition: p.index,
                    template: p,
                    parts: vec![(logical.clone(), batches)],
                }),
            }
        }
    }
    for (name, index, pending) in physical {
        for mut p in pending {
            let (records, parts) = merge_batches(p.parts)?;
            p.template.records = records;
            topics[index].partition_data.push(p.template);
            c.produced.push(Merged {
                physical: name.clone(),
                partition: p.partition,
                parts,
            });
        }
    }
    req.topic_data = topics;
    encode_request(key, version, &req)
}

fn idempotence_refusal(logical: &str) -> Refusal {
    Refusal::new(
        codes::INVALID_RECORD,
        format!(
            "idempotent and transactional producers cannot write to concentrated topic \
             {logical}: its partitions are shared with other topics, whose sequence numbers \
             would collide (disable idempotence for this producer)"
        ),
    )
}

/// The batches of one logical partition of a Produce request, checked.
fn produce_batches(logical: &str, records: Option<&Bytes>) -> Result<Vec<Batch>, Refusal> {
    let Some(data) = records else {
        return Ok(Vec::new());
    };
    let corrupt = |why: String| {
        Refusal::new(
            codes::CORRUPT_MESSAGE,
            format!("records for concentrated topic {logical}: {why}"),
        )
    };
    let set = records::decode(data).map_err(|e| corrupt(format!("{e:#}")))?;
    if !set.trailing.is_empty() {
        return Err(corrupt(
            "only whole RecordBatch v2 batches can be written to a concentrated topic".into(),
        ));
    }
    for b in &set.batches {
        if b.producer_id >= 0 {
            return Err(idempotence_refusal(logical));
        }
        if b.is_control() {
            return Err(Refusal::new(
                codes::INVALID_RECORD,
                format!("control batches cannot be written to concentrated topic {logical}"),
            ));
        }
    }
    Ok(set.batches)
}

/// Merges the logical topics' batches of one physical partition into one batch (the broker
/// takes one batch per partition), every record tagged with its logical topic. Returns the
/// records field and each logical topic's record count, in record order.
#[allow(clippy::type_complexity)]
fn merge_batches(
    parts: Vec<(String, Vec<Batch>)>,
) -> Result<(Option<Bytes>, Vec<(String, usize)>), Refusal> {
    let mut template: Option<Batch> = None;
    let mut all: Vec<Record> = Vec::new();
    let mut counts = Vec::with_capacity(parts.len());
    for (logical, batches) in parts {
        let value = Bytes::copy_from_slice(logical.as_bytes());
        let mut count = 0;
        for mut b in batches {
            for mut r in std::mem::take(&mut b.records) {
                tag(&mut r, &value);
                all.push(r);
                count += 1;
            }
            template.get_or_insert(b);
        }
        counts.push((logical, count));
    }
    let Some(mut batch) = template else {
        // No records at all: forward the partition without any, for the broker to answer.
        return Ok((None, counts));
    };
    batch.base_offset = 0;
    batch.records = all;
    let mut out = BytesMut::new();
    records::encode_batch(&batch, Offsets::Renumber, &mut out).map_err(|e| {
        Refusal::new(
            codes::UNKNOWN_SERVER_ERROR,
            format!("re-encoding records for a concentrated topic failed: {e:#}"),
        )
    })?;
    Ok((Some(out.freeze()), counts))
}

/// Replaces any [`LOGICAL_TOPIC_HEADER`] the client set with the gateway's.
fn tag(record: &mut Record, logical: &Bytes) {
    record
        .headers
        .retain(|h| h.key != LOGICAL_TOPIC_HEADER.as_bytes());
    record.headers.push(Header {
        key: Bytes::from_static(LOGICAL_TOPIC_HEADER.as_bytes()),
        value: Some(logical.clone()),
    });
}

/// After the broker answered the request [`prepare_request`] changed (names still physical):
/// filters Fetch records to the logical topic of each topic-partition, splits merged Produce
/// answers, answers locally created topics of CreateTopics, and gives every physical name the
/// logical name back.
///
/// `body` is the response body after the response header. Returns `Ok(None)` when nothing
/// changed; an error when the response does not pass the structure check or does not decode
/// (the caller treats it as a broken broker response). A Fetch partition whose records do
/// not decode is answered with CORRUPT_MESSAGE and no records rather than shown unfiltered.
pub fn finish_response(
    c: &Concentrated,
    api_key: i16,
    version: i16,
    body: &Bytes,
) -> anyhow::Result<Option<Bytes>> {
    if c.is_empty() {
        return Ok(None);
    }
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Ok(None);
    };
    schema::walk_response(api_key, version, body, &mut ())
        .with_context(|| format!("malformed {key:?} v{version} response"))?;
    let out = match key {
        ApiKey::Produce => produce_response(c, version, body)?,
        ApiKey::Fetch => fetch_response(c, version, body)?,
        ApiKey::Metadata => metadata_response(c, version, body)?,
        ApiKey::DescribeTopicPartitions => {
            let mut r: DescribeTopicPartitionsResponse = decode_response(key, version, body)?;
            let mut changed = false;
            for t in &mut r.topics {
                if let Some(name) = &mut t.name {
                    if c.map_back(name) {
                        t.topic_id = uuid::Uuid::nil();
                        changed = true;
                    }
                }
            }
            if let Some(cursor) = &mut r.next_cursor {
                changed |= c.map_back(&mut cursor.topic_name);
            }
            changed
                .then_some(r)
                .map(|r| encode(version, &r))
                .transpose()?
        }
        ApiKey::CreateTopics => {
            let mut r: CreateTopicsResponse = decode_response(key, version, body)?;
            for name in &c.created {
                let mut result = CreatableTopicResult::default();
                result.name = topic(name);
                result.error_message = None;
                r.topics.push(result);
            }
            (!c.created.is_empty())
                .then_some(r)
                .map(|r| encode(version, &r))
                .transpose()?
        }
        // Everything else (ListOffsets, OffsetCommit, OffsetFetch, TxnOffsetCommit,
        // OffsetForLeaderEpoch, OffsetDelete, ...) only needs its topic names back: the
        // schema rewriter finds them in any API.
        _ => rewrite_strings(
            Direction::Response,
            api_key,
            version,
            body,
            &mut |r, name| {
                (r.entity == schema::Entity::TopicName)
                    .then(|| c.logical_for(name).map(str::to_string))
                    .flatten()
            },
        )
        .with_context(|| format!("renaming topics in a {key:?} v{version} response"))?,
    };
    Ok(out)
}

fn decode_response<T: Decodable>(key: ApiKey, version: i16, body: &Bytes) -> anyhow::Result<T> {
    crate::schema::decode_response(key, version, body)
}

fn encode<T: Encodable>(version: i16, message: &T) -> anyhow::Result<Bytes> {
    let mut out = BytesMut::new();
    message.encode(&mut out, version)?;
    Ok(out.freeze())
}

fn produce_response(c: &Concentrated, version: i16, body: &Bytes) -> anyhow::Result<Option<Bytes>> {
    let mut resp: ProduceResponse = decode_response(ApiKey::Produce, version, body)?;
    let mut out: Vec<TopicProduceResponse> = Vec::with_capacity(resp.responses.len());
    // Logical topic → its entry in `out`.
    let mut entries: Vec<(String, usize)> = Vec::new();
    let mut changed = false;
    for t in std::mem::take(&mut resp.responses) {
        if c.logical_for(&t.name).is_none() {
            out.push(t);
            continue;
        }
        changed = true;
        for p in &t.partition_responses {
            let merged = c
                .produced
                .iter()
                .find(|m| m.physical.as_str() == str_of(&t.name) && m.partition == p.index);
            let parts: Vec<(&str, usize)> = match merged {
                Some(m) => m.parts.iter().map(|(l, n)| (l.as_str(), *n)).collect(),
                // A partition the request did not name: the broker's error for it goes to
                // the first logical topic.
                None => c
                    .logical_for(&t.name)
                    .map(|l| (l, usize::MAX))
                    .into_iter()
                    .collect(),
            };
            let mut start = 0usize;
            for (logical, count) in parts {
                let mut q = p.clone();
                if p.base_offset >= 0 && start > 0 {
                    q.base_offset = p.base_offset + start as i64;
                }
                q.record_errors = split_record_errors(&p.record_errors, start, count);
                let entry = match entries.iter().find(|(l, _)| l == logical) {
                    Some((_, i)) => *i,
                    None => {
                        let mut e = t.clone();
                        e.name = topic(logical);
                        e.partition_responses = Vec::new();
                        out.push(e);
                        entries.push((logical.to_string(), out.len() - 1));
                        out.len() - 1
                    }
                };
                out[entry].partition_responses.push(q);
                start = start.saturating_add(count);
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    resp.responses = out;
    encode(version, &resp).map(Some)
}

/// The record errors of records `start..start + count` of a merged batch, renumbered from 0.
fn split_record_errors(
    errors: &[BatchIndexAndErrorMessage],
    start: usize,
    count: usize,
) -> Vec<BatchIndexAndErrorMessage> {
    errors
        .iter()
        .filter_map(|e| {
            let index = usize::try_from(e.batch_index).ok()?;
            let local = index.checked_sub(start).filter(|i| *i < count)?;
            let mut e = e.clone();
            e.batch_index = i32::try_from(local).ok()?;
            Some(e)
        })
        .collect()
}

fn metadata_response(
    c: &Concentrated,
    version: i16,
    body: &Bytes,
) -> anyhow::Result<Option<Bytes>> {
    let mut resp: MetadataResponse = decode_response(ApiKey::Metadata, version, body)?;
    let mut out = Vec::with_capacity(resp.topics.len());
    let mut answered: Vec<String> = Vec::new();
    let mut changed = false;
    for t in std::mem::take(&mut resp.topics) {
        let physical = t.name.as_deref().map(|n| n.to_string()).unwrap_or_default();
        if c.logical_for(&physical).is_none() {
            out.push(t);
            continue;
        }
        changed = true;
        if answered.contains(&physical) {
            continue; // a broker that listed it twice: answered already
        }
        for logical in c.logicals_of(&physical) {
            let mut e = t.clone();
            e.name = Some(topic(logical));
            // Logical topics have no id of their own; the physical one would make clients
            // fetch by id, which cannot say which logical topic they mean.
            e.topic_id = uuid::Uuid::nil();
            out.push(e);
        }
        answered.push(physical);
    }
    if !changed {
        return Ok(None);
    }
    resp.topics = out;
    encode(version, &resp).map(Some)
}

fn fetch_response(c: &Concentrated, version: i16, body: &Bytes) -> anyhow::Result<Option<Bytes>> {
    let mut resp: FetchResponse = decode_response(ApiKey::Fetch, version, body)?;
    let mut changed = false;
    for t in &mut resp.responses {
        let Some(logical) = c.logical_for(&t.topic) else {
            continue;
        };
        t.topic = topic(logical);
        changed = true;
        for p in &mut t.partitions {
            let Some(data) = &p.records else {
                continue;
            };
            match filter_records(data, logical) {
                Ok(Some(kept)) => p.records = Some(kept),
                Ok(None) => {}
                Err(e) => {
                    // Never show records unfiltered: the consumer gets an explicit error.
                    tracing::warn!(
                        topic = logical,
                        partition = p.partition_index,
                        error = %format!("{e:#}"),
                        "undecodable records in a concentrated topic"
                    );
                    p.error_code = codes::CORRUPT_MESSAGE;
                    p.records = Some(Bytes::new());
                }
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    encode(version, &resp).map(Some)
}

/// Keeps the records of `data` (a Fetch partition's records) tagged with `logical`; `None`
/// when every record is kept and nothing is cut.
///
/// Every batch keeps its base offset and last offset delta, so the consumer's position
/// advances past the records it is not shown; a batch left with no records stays as an
/// empty batch without compression (what Kafka's log cleaner writes for an emptied batch).
/// Control batches are kept as they are. The bytes after the last whole batch (a batch cut
/// by the fetch size limit, which the consumer fetches again whole, or legacy message sets
/// the gateway never writes) are dropped: they cannot be filtered.
fn filter_records(data: &Bytes, logical: &str) -> anyhow::Result<Option<Bytes>> {
    let set = records::decode(data)?;
    let mut changed = !set.trailing.is_empty();
    let mut out = BytesMut::with_capacity(data.len());
    for mut batch in set.batches {
        if batch.is_control() {
            out.put_slice(&batch.raw);
            continue;
        }
        let before = batch.records.len();
        batch.records.retain(|r| is_tagged(r, logical));
        if batch.records.len() == before {
            out.put_slice(&batch.raw);
            continue;
        }
        changed = true;
        if batch.records.is_empty() {
            batch.attributes &= !0x7;
        }
        records::encode_batch(&batch, Offsets::Keep, &mut out)?;
    }
    Ok(changed.then(|| out.freeze()))
}

/// Whether `record` belongs to `logical`: its last [`LOGICAL_TOPIC_HEADER`] names it (the
/// gateway writes exactly one).
fn is_tagged(record: &Record, logical: &str) -> bool {
    record
        .headers
        .iter()
        .rev()
        .find(|h| h.key == LOGICAL_TOPIC_HEADER.as_bytes())
        .and_then(|h| h.value.as_deref())
        == Some(logical.as_bytes())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    use super::*;
    use crate::records::RecordSet;
    use crate::vcluster::{ConcentrationRuleSpec, VirtualClusterStore};
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::create_topics_response::CreatableTopicResult as TopicResult;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
    use kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic;
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponseTopics,
    };
    use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderTopic;
    use kafka_protocol::messages::offset_for_leader_epoch_response::OffsetForLeaderTopicResult;
    use kafka_protocol::messages::produce_response::PartitionProduceResponse;
    use kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic;
    use kafka_protocol::messages::txn_offset_commit_response::TxnOffsetCommitResponseTopic;
    use kafka_protocol::messages::{
        CreatePartitionsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    };
    use kafka_protocol::messages::{
        ListOffsetsResponse, OffsetCommitResponse, OffsetDeleteResponse, OffsetFetchResponse,
        OffsetForLeaderEpochResponse, TxnOffsetCommitResponse,
    };
    use std::sync::Arc;

    /// Physical topic of the `events-.*` rule.
    const EVENTS: &str = "tenant-a.concentrated";
    /// Physical topic of the `logs-.*` rule.
    const LOGS: &str = "tenant-a.logs";

    /// Tenant `tenant-a`: `events-*` concentrated into [`EVENTS`], `logs-*` into [`LOGS`].
    fn tenant() -> Arc<Tenant> {
        let store = VirtualClusterStore::new(Arc::new(crate::state::MemoryStore::default()));
        store
            .put_virtual_cluster(
                "tenant-a",
                serde_json::from_value(serde_json::json!({})).unwrap(),
            )
            .unwrap();
        for (name, pattern, physical) in [
            ("a-events", "events-.*", EVENTS),
            ("a-logs", "logs-.*", LOGS),
        ] {
            store
                .put_concentration_rule(
                    name,
                    ConcentrationRuleSpec {
                        vcluster: "tenant-a".into(),
                        logical_topic_pattern: pattern.into(),
                        physical_topic: physical.into(),
                    },
                )
                .unwrap();
        }
        let tenant = store.snapshot().get("tenant-a").unwrap();
        assert_eq!(tenant.concentrated("events-a"), Some(EVENTS));
        assert_eq!(tenant.concentrated("orders"), None);
        tenant
    }

    fn name(n: &str) -> TopicName {
        topic(n)
    }

    fn enc<T: Encodable>(m: &T, version: i16) -> Bytes {
        encode(version, m).unwrap()
    }

    fn dec<T: Decodable>(b: &Bytes, version: i16) -> T {
        T::decode(&mut b.clone(), version).unwrap()
    }

    fn header(key: &str, value: &str) -> Header {
        Header {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
        }
    }

    fn record(i: i32, headers: Vec<Header>) -> Record {
        Record {
            attributes: 0,
            timestamp: 1_700_000_000_000 + i64::from(i),
            offset_delta: i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers,
        }
    }

    fn batch(base_offset: i64, attributes: i16, producer_id: i64, records: Vec<Record>) -> Batch {
        Batch {
            base_offset,
            partition_leader_epoch: 3,
            attributes,
            last_offset_delta: records.len().saturating_sub(1) as i32,
            base_timestamp: records.first().map_or(0, |r| r.timestamp),
            max_timestamp: records.last().map_or(0, |r| r.timestamp),
            producer_id,
            producer_epoch: if producer_id >= 0 { 0 } else { -1 },
            base_sequence: if producer_id >= 0 { 0 } else { -1 },
            records,
            raw: Bytes::new(),
        }
    }

    /// A fetched batch: records at `base_offset + delta`, each tagged with its logical topic.
    fn tagged(base_offset: i64, attributes: i16, topics: &[&str]) -> Batch {
        let records = topics
            .iter()
            .enumerate()
            .map(|(i, t)| record(i as i32, vec![header(LOGICAL_TOPIC_HEADER, t)]))
            .collect();
        batch(base_offset, attributes, -1, records)
    }

    fn bytes_of(batches: &[Batch]) -> Bytes {
        let mut out = BytesMut::new();
        for b in batches {
            records::encode_batch(b, Offsets::Keep, &mut out).unwrap();
        }
        out.freeze()
    }

    fn produce(topics: Vec<(&str, Vec<(i32, Bytes)>)>) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(
                topics
                    .into_iter()
                    .map(|(t, parts)| {
                        TopicProduceData::default()
                            .with_name(name(t))
                            .with_partition_data(
                                parts
                                    .into_iter()
                                    .map(|(i, b)| {
                                        PartitionProduceData::default()
                                            .with_index(i)
                                            .with_records(Some(b))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    }

    fn prepare(t: &Tenant, key: ApiKey, version: i16, body: Bytes) -> (Bytes, Concentrated) {
        prepare_request(t, key as i16, version, &body)
            .unwrap()
            .expect("the request names a concentrated topic")
    }

    fn refusal(t: &Tenant, key: ApiKey, version: i16, body: Bytes) -> Refusal {
        prepare_request(t, key as i16, version, &body).unwrap_err()
    }

    fn finish(c: &Concentrated, key: ApiKey, version: i16, body: Bytes) -> Bytes {
        finish_response(c, key as i16, version, &body)
            .unwrap()
            .expect("the response changed")
    }

    #[test]
    fn requests_without_concentrated_topics_take_the_fast_path() {
        let t = tenant();
        let plain = bytes_of(&[batch(0, 0, 7, vec![record(0, vec![])])]);
        for version in [3i16, 9, 12] {
            let req = produce(vec![("orders", vec![(0, plain.clone())])]);
            let body = enc(&req, version);
            assert!(
                prepare_request(&t, 0, version, &body).unwrap().is_none(),
                "v{version}"
            );
        }
        let fetch = FetchRequest::default().with_topics(vec![FetchTopic::default()
            .with_topic(name("orders"))
            .with_partitions(vec![FetchPartition::default()])]);
        assert!(prepare_request(&t, 1, 12, &enc(&fetch, 12))
            .unwrap()
            .is_none());
        // Fetch v13+ names topics by id only: nothing to see, nothing to do.
        let by_id = FetchRequest::default().with_topics(vec![FetchTopic::default()
            .with_topic_id(uuid::Uuid::from_u128(7))
            .with_partitions(vec![FetchPartition::default()])]);
        assert!(prepare_request(&t, 1, 16, &enc(&by_id, 16))
            .unwrap()
            .is_none());
        let metadata = MetadataRequest::default().with_topics(None);
        assert!(prepare_request(&t, 3, 12, &enc(&metadata, 12))
            .unwrap()
            .is_none());
        // A physical concentration topic named directly is not a concentrated logical name:
        // the generic mapping (and its shadowing check) deals with it.
        let direct = ListOffsetsRequest::default()
            .with_topics(vec![ListOffsetsTopic::default().with_name(name(EVENTS))]);
        assert!(prepare_request(&t, 2, 7, &enc(&direct, 7))
            .unwrap()
            .is_none());
        // Unknown API keys pass through untouched.
        assert!(prepare_request(&t, 999, 0, &Bytes::from_static(b"x"))
            .unwrap()
            .is_none());
        // An empty value needs no response step.
        let c = Concentrated::default();
        assert!(c.is_empty());
        assert!(finish_response(&c, 1, 12, &Bytes::new()).unwrap().is_none());
    }

    #[test]
    fn produce_tags_every_record_with_every_codec() {
        let t = tenant();
        for codec in 0..=4i16 {
            for version in [3i16, 8, 9, 12] {
                let records = vec![
                    record(0, vec![header("app", "1")]),
                    // A client cannot choose the logical topic: its header is replaced.
                    record(
                        1,
                        vec![header(LOGICAL_TOPIC_HEADER, "events-b"), header("app", "2")],
                    ),
                    record(2, vec![]),
                ];
                let sent = batch(0, codec, -1, records.clone());
                let other = bytes_of(&[batch(0, 0, -1, vec![record(0, vec![])])]);
                let req = produce(vec![
                    ("events-a", vec![(2, bytes_of(&[sent]))]),
                    ("orders", vec![(0, other.clone())]),
                ]);
                let (body, c) = prepare(&t, ApiKey::Produce, version, enc(&req, version));
                assert_eq!(c.logical_for(EVENTS), Some("events-a"));
                assert_eq!(c.pairs().collect::<Vec<_>>(), vec![("events-a", EVENTS)]);
                let out: ProduceRequest = dec(&body, version);
                assert_eq!(out.topic_data.len(), 2);
                assert_eq!(&*out.topic_data[0].name, EVENTS);
                // Other names are left to the tenant's generic mapping, bytes untouched.
                assert_eq!(&*out.topic_data[1].name, "orders");
                assert_eq!(out.topic_data[1].partition_data[0].records, Some(other));
                let p = &out.topic_data[0].partition_data[0];
                assert_eq!(p.index, 2);
                let set = records::decode(p.records.as_ref().unwrap()).unwrap();
                assert!(set.trailing.is_empty());
                assert_eq!(set.batches.len(), 1);
                let b = &set.batches[0];
                assert_eq!(b.codec(), sent_codec(codec), "codec {codec} v{version}");
                assert_eq!((b.producer_id, b.base_sequence), (-1, -1));
                assert_eq!(b.last_offset_delta, 2);
                assert_eq!(b.records.len(), 3);
                for (got, want) in b.records.iter().zip(&records) {
                    assert_eq!(got.key, want.key);
                    assert_eq!(got.value, want.value);
                    assert_eq!(got.timestamp, want.timestamp);
                    let tags: Vec<_> = got
                        .headers
                        .iter()
                        .filter(|h| h.key == LOGICAL_TOPIC_HEADER.as_bytes())
                        .collect();
                    assert_eq!(tags.len(), 1);
                    assert_eq!(tags[0].value.as_deref(), Some(&b"events-a"[..]));
                    assert_eq!(got.headers.last(), Some(tags[0]));
                    let others: Vec<_> = got
                        .headers
                        .iter()
                        .filter(|h| h.key != LOGICAL_TOPIC_HEADER.as_bytes())
                        .collect();
                    let want_others: Vec<_> = want
                        .headers
                        .iter()
                        .filter(|h| h.key != LOGICAL_TOPIC_HEADER.as_bytes())
                        .collect();
                    assert_eq!(others, want_others);
                }
            }
        }
    }

    fn sent_codec(codec: i16) -> records::Codec {
        batch(0, codec, -1, vec![]).codec()
    }

    #[test]
    fn produce_merges_logical_topics_of_one_physical_topic_and_splits_the_answer() {
        let t = tenant();
        let version = 9;
        let a0 = bytes_of(&[batch(0, 3, -1, vec![record(0, vec![]), record(1, vec![])])]);
        let b0 = bytes_of(&[batch(
            0,
            0,
            -1,
            vec![record(0, vec![]), record(1, vec![]), record(2, vec![])],
        )]);
        let b1 = bytes_of(&[batch(0, 0, -1, vec![record(0, vec![])])]);
        let req = produce(vec![
            ("events-a", vec![(0, a0)]),
            ("orders", vec![(0, b1.clone())]),
            ("events-b", vec![(0, b0), (1, b1)]),
        ]);
        let (body, c) = prepare(&t, ApiKey::Produce, version, enc(&req, version));
        let out: ProduceRequest = dec(&body, version);
        let names: Vec<_> = out.topic_data.iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names, vec![EVENTS, "orders"]);
        let parts = &out.topic_data[0].partition_data;
        assert_eq!(parts.len(), 2);
        let merged = records::decode(parts[0].records.as_ref().unwrap()).unwrap();
        assert_eq!(merged.batches.len(), 1, "one batch per partition");
        let b = &merged.batches[0];
        assert_eq!(b.codec(), records::Codec::Lz4, "the first batch's codec");
        let tags: Vec<_> = b.records.iter().map(logical_of).collect();
        assert_eq!(
            tags,
            vec!["events-a", "events-a", "events-b", "events-b", "events-b"]
        );
        let deltas: Vec<_> = b.records.iter().map(|r| r.offset_delta).collect();
        assert_eq!(deltas, vec![0, 1, 2, 3, 4]);
        assert_eq!(parts[1].index, 1);

        // The broker's answer for the merged partition is split by record counts.
        let resp = ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default()
                .with_name(name(EVENTS))
                .with_partition_responses(vec![
                    PartitionProduceResponse::default()
                        .with_index(0)
                        .with_base_offset(100)
                        .with_log_start_offset(5)
                        .with_record_errors(vec![BatchIndexAndErrorMessage::default()
                            .with_batch_index(3)
                            .with_batch_index_error_message(Some(StrBytes::from_static_str(
                                "bad",
                            )))]),
                    PartitionProduceResponse::default()
                        .with_index(1)
                        .with_base_offset(7),
                ]),
            TopicProduceResponse::default()
                .with_name(name("orders"))
                .with_partition_responses(vec![PartitionProduceResponse::default()
                    .with_index(0)
                    .with_base_offset(1)]),
        ]);
        let got: ProduceResponse = dec(
            &finish(&c, ApiKey::Produce, version, enc(&resp, version)),
            version,
        );
        let flat: Vec<_> = got
            .responses
            .iter()
            .flat_map(|t| {
                t.partition_responses.iter().map(move |p| {
                    (
                        t.name.to_string(),
                        p.index,
                        p.base_offset,
                        p.record_errors
                            .iter()
                            .map(|e| e.batch_index)
                            .collect::<Vec<_>>(),
                    )
                })
            })
            .collect();
        assert_eq!(
            flat,
            vec![
                ("events-a".to_string(), 0, 100, vec![]),
                ("events-b".to_string(), 0, 102, vec![1]),
                ("events-b".to_string(), 1, 7, vec![]),
                ("orders".to_string(), 0, 1, vec![]),
            ]
        );
        assert_eq!(got.responses[0].partition_responses[0].log_start_offset, 5);
    }

    fn logical_of(r: &Record) -> String {
        let h = r
            .headers
            .iter()
            .rfind(|h| h.key == LOGICAL_TOPIC_HEADER.as_bytes())
            .expect("tagged");
        String::from_utf8(h.value.clone().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn produce_refusals() {
        let t = tenant();
        let version = 9;
        // Idempotent batches: sequences are per logical partition.
        let idempotent = bytes_of(&[batch(0, 0, 42, vec![record(0, vec![])])]);
        let req = produce(vec![("events-a", vec![(0, idempotent.clone())])]);
        let r = refusal(&t, ApiKey::Produce, version, enc(&req, version));
        assert_eq!(r.code, codes::INVALID_RECORD);
        assert!(r.message.contains("events-a"), "{r}");
        // The same batch to a plain topic is not this module's business.
        let req = produce(vec![("orders", vec![(0, idempotent)])]);
        assert!(prepare_request(&t, 0, version, &enc(&req, version))
            .unwrap()
            .is_none());
        // Transactional producers.
        let plain = bytes_of(&[batch(0, 0, -1, vec![record(0, vec![])])]);
        let req = produce(vec![("events-a", vec![(0, plain.clone())])])
            .with_transactional_id(Some(StrBytes::from_static_str("tx").into()));
        let r = refusal(&t, ApiKey::Produce, version, enc(&req, version));
        assert_eq!(r.code, codes::INVALID_RECORD);
        // Records that are not whole v2 batches.
        let cut = plain.slice(..plain.len() - 1);
        let req = produce(vec![("events-a", vec![(0, cut)])]);
        let r = refusal(&t, ApiKey::Produce, version, enc(&req, version));
        assert_eq!(r.code, codes::CORRUPT_MESSAGE);
        let mut bad = plain.to_vec();
        *bad.last_mut().unwrap() ^= 0xff;
        let req = produce(vec![("events-a", vec![(0, Bytes::from(bad))])]);
        let r = refusal(&t, ApiKey::Produce, version, enc(&req, version));
        assert_eq!(r.code, codes::CORRUPT_MESSAGE);
        // Control batches.
        let control = bytes_of(&[batch(0, 0x20, -1, vec![record(0, vec![])])]);
        let req = produce(vec![("events-a", vec![(0, control)])]);
        let r = refusal(&t, ApiKey::Produce, version, enc(&req, version));
        assert_eq!(r.code, codes::INVALID_RECORD);
    }

    fn fetch_request(topics: &[&str]) -> FetchRequest {
        FetchRequest::default()
            .with_session_id(77)
            .with_session_epoch(3)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        FetchTopic::default()
                            .with_topic(name(t))
                            .with_partitions(vec![FetchPartition::default().with_partition(0)])
                    })
                    .collect(),
            )
            .with_forgotten_topics_data(vec![ForgottenTopic::default()
                .with_topic(name("orders"))
                .with_partitions(vec![1])])
    }

    #[test]
    fn fetch_keeps_only_the_logical_topics_records_and_every_offset() {
        let t = tenant();
        for version in [4i16, 7, 11, 12] {
            let mut req = fetch_request(&["events-a", "orders"]);
            if version < 7 {
                // No fetch sessions before v7.
                req = req
                    .with_session_id(0)
                    .with_session_epoch(-1)
                    .with_forgotten_topics_data(vec![]);
            }
            let (body, c) = prepare(&t, ApiKey::Fetch, version, enc(&req, version));
            let out: FetchRequest = dec(&body, version);
            assert_eq!(&*out.topics[0].topic, EVENTS);
            assert_eq!(&*out.topics[1].topic, "orders");
            if version >= 7 {
                // Session-less, so every answer names only what this request named.
                assert_eq!((out.session_id, out.session_epoch), (0, -1));
                assert!(out.forgotten_topics_data.is_empty());
            }

            let mixed = tagged(10, 1, &["events-a", "events-b", "events-a"]); // gzip
            let emptied = tagged(13, 3, &["events-b", "events-b"]); // lz4
            let mut control = tagged(15, 0x20, &["x"]);
            control.records[0].headers.clear();
            let kept = tagged(16, 4, &["events-a", "events-a"]); // zstd
            let snappy = tagged(18, 2, &["events-b", "events-a"]);
            // A record written to the physical topic directly belongs to no logical topic.
            let untagged = batch(20, 0, -1, vec![record(0, vec![]), record(1, vec![])]);
            let all = bytes_of(&[
                mixed.clone(),
                emptied,
                control,
                kept,
                snappy,
                untagged,
                tagged(22, 0, &["events-a"]),
            ]);
            // The last batch is cut by the fetch size limit.
            let data = all.slice(..all.len() - 5);
            let before = records::decode(&data).unwrap();
            assert_eq!(before.batches.len(), 6);
            let other = bytes_of(&[tagged(0, 0, &["whatever"])]);
            let resp = FetchResponse::default().with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic(name(EVENTS))
                    .with_partitions(vec![PartitionData::default()
                        .with_partition_index(0)
                        .with_high_watermark(23)
                        .with_records(Some(data))]),
                FetchableTopicResponse::default()
                    .with_topic(name("orders"))
                    .with_partitions(vec![PartitionData::default()
                        .with_partition_index(0)
                        .with_records(Some(other.clone()))]),
            ]);
            let got: FetchResponse = dec(
                &finish(&c, ApiKey::Fetch, version, enc(&resp, version)),
                version,
            );
            assert_eq!(&*got.responses[0].topic, "events-a");
            assert_eq!(&*got.responses[1].topic, "orders");
            assert_eq!(got.responses[1].partitions[0].records, Some(other));
            let p = &got.responses[0].partitions[0];
            assert_eq!(p.high_watermark, 23);
            let RecordSet { batches, trailing } =
                records::decode(p.records.as_ref().unwrap()).unwrap();
            assert!(trailing.is_empty(), "the cut batch is dropped");
            let shape: Vec<_> = batches
                .iter()
                .map(|b| {
                    (
                        b.base_offset,
                        b.last_offset_delta,
                        b.records.iter().map(|r| r.offset_delta).collect::<Vec<_>>(),
                    )
                })
                .collect();
            assert_eq!(
                shape,
                vec![
                    (10, 2, vec![0, 2]),
                    (13, 1, vec![]),
                    (15, 0, vec![0]),
                    (16, 1, vec![0, 1]),
                    (18, 1, vec![1]),
                    (20, 1, vec![]),
                ],
                "v{version}"
            );
            for b in &batches {
                if !b.is_control() {
                    assert!(b.records.iter().all(|r| logical_of(r) == "events-a"));
                }
            }
            // Codecs are kept, except on an emptied batch (as Kafka's log cleaner writes it).
            assert_eq!(batches[0].codec(), records::Codec::Gzip);
            assert_eq!(batches[1].codec(), records::Codec::None);
            assert_eq!(batches[1].partition_leader_epoch, 3);
            assert_eq!(batches[4].codec(), records::Codec::Snappy);
            // Batches the filter keeps whole, and control batches, are the broker's bytes.
            assert_eq!(batches[2].raw, before.batches[2].raw);
            assert_eq!(batches[3].raw, before.batches[3].raw);
            // The consumer of the other logical topic sees the rest.
            let mut c_b = Concentrated::default();
            c_b.add("events-b", EVENTS);
            let got: FetchResponse = dec(
                &finish(&c_b, ApiKey::Fetch, version, enc(&resp, version)),
                version,
            );
            let batches = records::decode(got.responses[0].partitions[0].records.as_ref().unwrap())
                .unwrap()
                .batches;
            let counts: Vec<_> = batches.iter().map(|b| b.records.len()).collect();
            assert_eq!(counts, vec![1, 2, 1, 0, 1, 0]);
            assert_eq!(batches[1].raw, before.batches[1].raw);
        }
    }

    #[test]
    fn fetch_answers_undecodable_records_with_an_error_not_unfiltered() {
        let t = tenant();
        let (_, c) = prepare(
            &t,
            ApiKey::Fetch,
            12,
            enc(&fetch_request(&["events-a"]), 12),
        );
        let mut bad = bytes_of(&[tagged(0, 0, &["events-b"])]).to_vec();
        *bad.last_mut().unwrap() ^= 0xff;
        let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(name(EVENTS))
            .with_partitions(vec![
                PartitionData::default().with_records(Some(Bytes::from(bad)))
            ])]);
        let got: FetchResponse = dec(&finish(&c, ApiKey::Fetch, 12, enc(&resp, 12)), 12);
        let p = &got.responses[0].partitions[0];
        assert_eq!(p.error_code, codes::CORRUPT_MESSAGE);
        assert_eq!(p.records.as_deref(), Some(&[][..]));
    }

    #[test]
    fn two_logical_topics_of_one_physical_topic_in_one_request_are_refused() {
        let t = tenant();
        let r = refusal(
            &t,
            ApiKey::Fetch,
            12,
            enc(&fetch_request(&["events-a", "events-b"]), 12),
        );
        assert_eq!(r.code, codes::INVALID_REQUEST);
        assert!(
            r.message.contains("events-a") && r.message.contains("events-b"),
            "{r}"
        );
        // Different physical topics are fine, and so is one logical topic named twice.
        let (body, c) = prepare(
            &t,
            ApiKey::Fetch,
            12,
            enc(&fetch_request(&["events-a", "logs-1", "events-a"]), 12),
        );
        let out: FetchRequest = dec(&body, 12);
        let names: Vec<_> = out.topics.iter().map(|t| t.topic.to_string()).collect();
        assert_eq!(names, vec![EVENTS, LOGS, EVENTS]);
        assert_eq!(c.logical_for(LOGS), Some("logs-1"));
        let list = ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default().with_name(name("events-a")),
            ListOffsetsTopic::default().with_name(name("events-b")),
        ]);
        assert_eq!(
            refusal(&t, ApiKey::ListOffsets, 7, enc(&list, 7)).code,
            codes::INVALID_REQUEST
        );
        let commit = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(StrBytes::from_static_str("g1").into())
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default().with_name(name("events-a"))
                ])),
            OffsetFetchRequestGroup::default()
                .with_group_id(StrBytes::from_static_str("g2").into())
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default().with_name(name("events-b"))
                ])),
        ]);
        assert_eq!(
            refusal(&t, ApiKey::OffsetFetch, 8, enc(&commit, 8)).code,
            codes::INVALID_REQUEST
        );
    }

    #[test]
    fn metadata_asks_once_and_answers_each_logical_topic_without_an_id() {
        let t = tenant();
        for version in [1i16, 9, 10, 12] {
            let req = MetadataRequest::default().with_topics(Some(
                ["events-a", "orders", "events-b"]
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(name(n))))
                    .collect(),
            ));
            let (body, c) = prepare(&t, ApiKey::Metadata, version, enc(&req, version));
            let out: MetadataRequest = dec(&body, version);
            let asked: Vec<_> = out
                .topics
                .unwrap()
                .iter()
                .map(|t| t.name.as_ref().unwrap().to_string())
                .collect();
            assert_eq!(asked, vec![EVENTS, "orders"]);
            let id = if version >= 10 {
                uuid::Uuid::from_u128(99)
            } else {
                uuid::Uuid::nil()
            };
            let partitions: Vec<_> = (0..3)
                .map(|i| MetadataResponsePartition::default().with_partition_index(i))
                .collect();
            let resp = MetadataResponse::default().with_topics(vec![
                MetadataResponseTopic::default()
                    .with_name(Some(name(EVENTS)))
                    .with_topic_id(id)
                    .with_partitions(partitions.clone()),
                MetadataResponseTopic::default()
                    .with_name(Some(name("orders")))
                    .with_topic_id(id),
            ]);
            let got: MetadataResponse = dec(
                &finish(&c, ApiKey::Metadata, version, enc(&resp, version)),
                version,
            );
            let shape: Vec<_> = got
                .topics
                .iter()
                .map(|t| {
                    (
                        t.name.as_ref().unwrap().to_string(),
                        t.topic_id,
                        t.partitions.len(),
                    )
                })
                .collect();
            let nil = uuid::Uuid::nil();
            assert_eq!(
                shape,
                vec![
                    ("events-a".to_string(), nil, 3),
                    ("events-b".to_string(), nil, 3),
                    ("orders".to_string(), id, 0),
                ]
            );
        }
    }

    #[test]
    fn offsets_apis_are_renamed_both_ways() {
        let t = tenant();
        // ListOffsets.
        let req = ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name("events-a"))
                .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)]),
            ListOffsetsTopic::default().with_name(name("orders")),
        ]);
        let (body, c) = prepare(&t, ApiKey::ListOffsets, 7, enc(&req, 7));
        let out: ListOffsetsRequest = dec(&body, 7);
        assert_eq!(&*out.topics[0].name, EVENTS);
        assert_eq!(&*out.topics[1].name, "orders");
        let resp = ListOffsetsResponse::default().with_topics(vec![
            ListOffsetsTopicResponse::default()
                .with_name(name(EVENTS))
                .with_partitions(vec![
                    ListOffsetsPartitionResponse::default().with_offset(500)
                ]),
            ListOffsetsTopicResponse::default().with_name(name("orders")),
        ]);
        let got: ListOffsetsResponse = dec(&finish(&c, ApiKey::ListOffsets, 7, enc(&resp, 7)), 7);
        assert_eq!(&*got.topics[0].name, "events-a");
        assert_eq!(
            got.topics[0].partitions[0].offset, 500,
            "the physical offset"
        );
        assert_eq!(&*got.topics[1].name, "orders");

        // OffsetCommit.
        let req = OffsetCommitRequest::default()
            .with_group_id(StrBytes::from_static_str("g").into())
            .with_topics(vec![
                OffsetCommitRequestTopic::default().with_name(name("logs-x"))
            ]);
        let (body, c) = prepare(&t, ApiKey::OffsetCommit, 8, enc(&req, 8));
        let out: OffsetCommitRequest = dec(&body, 8);
        assert_eq!(&*out.topics[0].name, LOGS);
        let resp = OffsetCommitResponse::default().with_topics(vec![
            OffsetCommitResponseTopic::default().with_name(name(LOGS)),
        ]);
        let got: OffsetCommitResponse = dec(&finish(&c, ApiKey::OffsetCommit, 8, enc(&resp, 8)), 8);
        assert_eq!(&*got.topics[0].name, "logs-x");

        // OffsetFetch, batched groups (v8+).
        let req =
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(StrBytes::from_static_str("g").into())
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default().with_name(name("events-a"))
                ]))]);
        let (body, c) = prepare(&t, ApiKey::OffsetFetch, 8, enc(&req, 8));
        let out: OffsetFetchRequest = dec(&body, 8);
        assert_eq!(&*out.groups[0].topics.as_ref().unwrap()[0].name, EVENTS);
        let resp =
            OffsetFetchResponse::default().with_groups(vec![OffsetFetchResponseGroup::default()
                .with_group_id(StrBytes::from_static_str("g").into())
                .with_topics(vec![
                    OffsetFetchResponseTopics::default().with_name(name(EVENTS))
                ])]);
        let got: OffsetFetchResponse = dec(&finish(&c, ApiKey::OffsetFetch, 8, enc(&resp, 8)), 8);
        assert_eq!(&*got.groups[0].topics[0].name, "events-a");

        // TxnOffsetCommit (committing consumed offsets in a transaction is fine).
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(StrBytes::from_static_str("tx").into())
            .with_group_id(StrBytes::from_static_str("g").into())
            .with_topics(vec![
                TxnOffsetCommitRequestTopic::default().with_name(name("events-a"))
            ]);
        let (body, c) = prepare(&t, ApiKey::TxnOffsetCommit, 3, enc(&req, 3));
        let out: TxnOffsetCommitRequest = dec(&body, 3);
        assert_eq!(&*out.topics[0].name, EVENTS);
        let resp = TxnOffsetCommitResponse::default().with_topics(vec![
            TxnOffsetCommitResponseTopic::default().with_name(name(EVENTS)),
        ]);
        let got: TxnOffsetCommitResponse =
            dec(&finish(&c, ApiKey::TxnOffsetCommit, 3, enc(&resp, 3)), 3);
        assert_eq!(&*got.topics[0].name, "events-a");

        // OffsetForLeaderEpoch.
        let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default().with_topic(name("events-a")),
        ]);
        let (body, c) = prepare(&t, ApiKey::OffsetForLeaderEpoch, 4, enc(&req, 4));
        let out: OffsetForLeaderEpochRequest = dec(&body, 4);
        assert_eq!(&*out.topics[0].topic, EVENTS);
        let resp = OffsetForLeaderEpochResponse::default().with_topics(vec![
            OffsetForLeaderTopicResult::default().with_topic(name(EVENTS)),
        ]);
        let got: OffsetForLeaderEpochResponse = dec(
            &finish(&c, ApiKey::OffsetForLeaderEpoch, 4, enc(&resp, 4)),
            4,
        );
        assert_eq!(&*got.topics[0].topic, "events-a");
    }

    #[test]
    fn describe_topic_partitions_and_offset_delete_are_renamed_both_ways() {
        use kafka_protocol::messages::describe_topic_partitions_request::{
            Cursor as RequestCursor, TopicRequest,
        };
        use kafka_protocol::messages::describe_topic_partitions_response::{
            Cursor as ResponseCursor, DescribeTopicPartitionsResponseTopic,
        };
        use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic;
        use kafka_protocol::messages::offset_delete_response::OffsetDeleteResponseTopic;
        let t = tenant();
        let req = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![
                TopicRequest::default().with_name(name("events-a")),
                TopicRequest::default().with_name(name("orders")),
            ])
            .with_cursor(Some(
                RequestCursor::default().with_topic_name(name("events-a")),
            ));
        let (body, c) = prepare(&t, ApiKey::DescribeTopicPartitions, 0, enc(&req, 0));
        let out: DescribeTopicPartitionsRequest = dec(&body, 0);
        assert_eq!(str_of(&out.topics[0].name), EVENTS);
        assert_eq!(str_of(&out.topics[1].name), "orders");
        assert_eq!(str_of(&out.cursor.unwrap().topic_name), EVENTS);
        let id = uuid::Uuid::from_u128(5);
        let resp = DescribeTopicPartitionsResponse::default()
            .with_topics(vec![
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(name(EVENTS)))
                    .with_topic_id(id),
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(name("orders")))
                    .with_topic_id(id),
            ])
            .with_next_cursor(Some(
                ResponseCursor::default().with_topic_name(name(EVENTS)),
            ));
        let got: DescribeTopicPartitionsResponse = dec(
            &finish(&c, ApiKey::DescribeTopicPartitions, 0, enc(&resp, 0)),
            0,
        );
        assert_eq!(got.topics[0].name.as_ref().map(str_of), Some("events-a"));
        assert_eq!(got.topics[0].topic_id, uuid::Uuid::nil());
        assert_eq!(got.topics[1].name.as_ref().map(str_of), Some("orders"));
        assert_eq!(got.topics[1].topic_id, id);
        assert_eq!(str_of(&got.next_cursor.unwrap().topic_name), "events-a");

        let req = OffsetDeleteRequest::default()
            .with_group_id(StrBytes::from_static_str("g").into())
            .with_topics(vec![
                OffsetDeleteRequestTopic::default().with_name(name("logs-9"))
            ]);
        let (body, c) = prepare(&t, ApiKey::OffsetDelete, 0, enc(&req, 0));
        let out: OffsetDeleteRequest = dec(&body, 0);
        assert_eq!(str_of(&out.topics[0].name), LOGS);
        let resp = OffsetDeleteResponse::default().with_topics(vec![
            OffsetDeleteResponseTopic::default().with_name(name(LOGS)),
        ]);
        let got: OffsetDeleteResponse = dec(&finish(&c, ApiKey::OffsetDelete, 0, enc(&resp, 0)), 0);
        assert_eq!(str_of(&got.topics[0].name), "logs-9");
    }

    #[test]
    fn create_topics_answers_concentrated_topics_locally() {
        let t = tenant();
        for version in [2i16, 4, 5, 7] {
            let req = CreateTopicsRequest::default().with_topics(vec![
                CreatableTopic::default()
                    .with_name(name("events-a"))
                    .with_num_partitions(12),
                CreatableTopic::default().with_name(name("orders")),
                CreatableTopic::default().with_name(name("events-a")),
            ]);
            let (body, c) = prepare(&t, ApiKey::CreateTopics, version, enc(&req, version));
            assert!(!c.is_empty());
            assert_eq!(c.created_locally().collect::<Vec<_>>(), vec!["events-a"]);
            let out: CreateTopicsRequest = dec(&body, version);
            let names: Vec<_> = out.topics.iter().map(|t| t.name.to_string()).collect();
            assert_eq!(names, vec!["orders"]);
            let resp = CreateTopicsResponse::default().with_topics(vec![TopicResult::default()
                .with_name(name("orders"))
                .with_error_message(None)]);
            let got: CreateTopicsResponse = dec(
                &finish(&c, ApiKey::CreateTopics, version, enc(&resp, version)),
                version,
            );
            let shape: Vec<_> = got
                .topics
                .iter()
                .map(|t| (t.name.to_string(), t.error_code, t.error_message.clone()))
                .collect();
            assert_eq!(
                shape,
                vec![
                    ("orders".to_string(), 0, None),
                    ("events-a".to_string(), 0, None),
                ],
                "v{version}"
            );
        }
    }

    #[test]
    fn destructive_and_unsupported_apis_are_refused() {
        let t = tenant();
        let delete_records = DeleteRecordsRequest::default().with_topics(vec![
            kafka_protocol::messages::delete_records_request::DeleteRecordsTopic::default()
                .with_name(name("events-a")),
        ]);
        let r = refusal(&t, ApiKey::DeleteRecords, 2, enc(&delete_records, 2));
        assert_eq!(r.code, codes::POLICY_VIOLATION);
        assert!(r.message.contains("events-a"), "{r}");
        for version in [1i16, 5] {
            let delete = DeleteTopicsRequest::default().with_topic_names(vec![name("logs-1")]);
            let r = refusal(&t, ApiKey::DeleteTopics, version, enc(&delete, version));
            assert_eq!(r.code, codes::POLICY_VIOLATION);
        }
        let delete = DeleteTopicsRequest::default().with_topics(vec![
            kafka_protocol::messages::delete_topics_request::DeleteTopicState::default()
                .with_name(Some(name("logs-1"))),
        ]);
        assert_eq!(
            refusal(&t, ApiKey::DeleteTopics, 6, enc(&delete, 6)).code,
            codes::POLICY_VIOLATION
        );
        // Deleting a plain topic is not this module's business.
        let plain = DeleteTopicsRequest::default().with_topic_names(vec![name("orders")]);
        assert!(prepare_request(&t, 20, 5, &enc(&plain, 5))
            .unwrap()
            .is_none());
        let partitions = CreatePartitionsRequest::default().with_topics(vec![
            kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name("events-z"))
                .with_count(10),
        ]);
        let r = refusal(&t, ApiKey::CreatePartitions, 3, enc(&partitions, 3));
        assert_eq!(r.code, codes::POLICY_VIOLATION);
        assert!(r.message.contains("CreatePartitions"), "{r}");
    }

    #[test]
    fn malformed_bodies_are_refused_before_decoding() {
        let t = tenant();
        let req = fetch_request(&["events-a"]);
        let body = enc(&req, 12);
        let cut = body.slice(..body.len() - 4);
        assert_eq!(
            refusal(&t, ApiKey::Fetch, 12, cut).code,
            codes::INVALID_REQUEST
        );
        // A forged topic count.
        let mut forged = enc(&ListOffsetsRequest::default(), 5).to_vec();
        let at = forged.len() - 4;
        forged[at..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(
            refusal(&t, ApiKey::ListOffsets, 5, Bytes::from(forged)).code,
            codes::INVALID_REQUEST
        );
        // A response that does not walk is an error, not a panic.
        let (_, c) = prepare(&t, ApiKey::Fetch, 12, body);
        assert!(finish_response(&c, 1, 12, &Bytes::from_static(&[0, 0, 0, 9])).is_err());
    }
}
