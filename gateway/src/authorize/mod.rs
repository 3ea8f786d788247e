//! Per-API enforcement of ACLs on requests and responses (see [`crate::acl`]).
//!
//! The gateway authenticates clients itself and talks to the brokers under its own identity, so
//! the brokers' authorizer never sees the client's principal. This module applies Kafka's
//! authorization rules (those of the broker's request handlers) to each request of an
//! authenticated principal, asking a [`Permits`] for every resource the request names:
//!
//! - **Fast path.** When everything is allowed, [`check_request`] returns
//!   `Decision::Forward { frame: None, fix: None }`: the original bytes go upstream and nothing
//!   is re-encoded. Requests are decoded only for the fields that name resources.
//! - **Partial writes** (Produce, CreateTopics, DeleteTopics, DeleteRecords, CreatePartitions,
//!   OffsetCommit, TxnOffsetCommit, OffsetDelete, DeleteGroups, AlterConfigs,
//!   IncrementalAlterConfigs) and **Fetch**: denied entries are removed from the request (the
//!   header bytes are kept, only the body is re-encoded with the same version); the
//!   [`ResponseFix`] carries their error entries, which [`fix_response`] merges into the
//!   broker's response in request order. When nothing is left, the gateway answers alone.
//! - **Partial reads** without side effects (ListOffsets, OffsetForLeaderEpoch, OffsetFetch,
//!   FindCoordinator v4+, DescribeGroups, ConsumerGroupDescribe, ShareGroupDescribe,
//!   DescribeConfigs, DescribeProducers, DescribeTransactions, DescribeTopicPartitions,
//!   DescribeShareGroupOffsets) are forwarded whole and the response is redacted: entries the
//!   principal may not see get the authorization error in place, so the order is the broker's.
//! - **Listings** (Metadata for all topics, ListGroups, ListTransactions, OffsetFetch of all
//!   topics) are filtered on the way back.
//! - **Authorized operations** (`include_*_authorized_operations`) computed by the broker are
//!   those of the gateway's own identity; they are recomputed for the principal.
//! - **Whole-request checks** (group membership, transactions, cluster administration,
//!   inter-broker APIs) answer with the API's error form, or close the connection when the
//!   API has none.
//!
//! Every request body is checked by [`crate::frame`] before it is decoded: kafka-protocol
//! reserves memory for array counts read from the wire, so a forged count must never reach it.
//!
//! Choices where Kafka's behaviour cannot be reproduced exactly:
//!
//! - *Idempotent producers.* Kafka grants a producer id without a transactional id to a
//!   principal with IDEMPOTENT_WRITE on the cluster or WRITE on *any* topic. [`Permits`] cannot
//!   answer "any topic", so such InitProducerId requests are always allowed: a producer id alone
//!   grants nothing, and every Produce is checked per topic.
//! - *acks=0 Produce.* As in Kafka, which closes the connection of an acks=0 Produce that
//!   failed (there is no response to carry an error): the allowed topics are forwarded, then
//!   the connection is closed ([`Decision::ForwardThenClose`]), so the producer learns of the
//!   failure by the disconnection instead of losing records silently.
//! - *Fetch sessions.* Denied topics are removed from the request and answered by the gateway;
//!   the rest (possibly nothing) is forwarded so the broker's session epoch stays in step with
//!   the client's. A partition added to a session while it was allowed would keep being served
//!   by the broker's session after its ACL is revoked; so after any ACL change the session
//!   layer answers the next incremental Fetch FETCH_SESSION_ID_NOT_FOUND, and the client's new
//!   full Fetch is judged here again.
//! - *Auto-creation through Metadata.* From v4 the request flag is cleared when the principal
//!   lacks CREATE for a requested topic; v0-3 have no flag (the broker's setting decides), so
//!   only DESCRIBE is enforced there.
//! - *AddPartitionsToTxn v0-3* is all or nothing, as in Kafka: one denied topic fails the
//!   request (others get OPERATION_NOT_ATTEMPTED). *ShareFetch*, *ShareAcknowledge* and the
//!   share-group offset admin APIs are also all or nothing (top-level error) instead of
//!   per topic.
//! - *Delegation tokens* would be issued to the gateway's own broker identity, so creating,
//!   renewing or expiring one requires ALTER on the cluster, describing one DESCRIBE.
//!
//! ## Where to add an API's ACL rule
//!
//! The rules are grouped by API family, one file each, holding both halves of the family's
//! enforcement side by side: `check` (the request side: decode the fields that name resources,
//! decide) and `fix_response` (the response side: merge the denied entries, redact, filter),
//! with the family's `Fix` (what the request side leaves for the response side).
//!
//! | File | APIs |
//! |---|---|
//! | `produce_fetch.rs` | Produce, Fetch |
//! | `metadata.rs` | Metadata, DescribeTopicPartitions, DescribeCluster |
//! | `topics.rs` | CreateTopics, DeleteTopics, DeleteRecords, CreatePartitions, ListOffsets, OffsetForLeaderEpoch, DescribeProducers |
//! | `groups.rs` | FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ConsumerGroupHeartbeat, DescribeGroups, ConsumerGroupDescribe, ListGroups, DeleteGroups, OffsetCommit, OffsetFetch, OffsetDelete |
//! | `share.rs` | ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch, ShareAcknowledge, Describe/Alter/DeleteShareGroupOffsets |
//! | `transactions.rs` | InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit, DescribeTransactions, ListTransactions |
//! | `configs.rs` | DescribeConfigs, AlterConfigs, IncrementalAlterConfigs |
//! | `cluster.rs` | ACLs, quotas, SCRAM, delegation tokens, reassignments, elections, log dirs, features, quorum, inter-broker |
//!
//! This file holds what the families share: the [`Decision`] and [`ResponseFix`] types, the
//! request being checked (`Req`: decode, answer, rewrite, forward, the common checks), the
//! whole-request denial in each API's error form (`deny_whole`), the helpers that split a
//! request's entries and merge the answers back in request order, the authorized-operations
//! bits, and the two routers, `dispatch` and [`fix_response`].
//!
//! To add or change the rule of an API:
//!
//! 1. Route its key in `dispatch` to its family (or to the open connection set-up APIs). The
//!    match is exhaustive over kafka-protocol's `ApiKey`, so an API a new kafka-protocol
//!    release adds does not compile until it is routed here.
//! 2. Add its arm to the family's `check`: `r.cluster_only(op)` or `r.group_read(group)` for a
//!    whole-request check, `redact(Fix::..)` for a read fixed on the way back, or a function
//!    that `split`s the entries and `r.forward`s the allowed ones with the denied ones' errors.
//! 3. If the response needs completing, add the variant to the family's `Fix` and its arm to
//!    the family's `fix_response`, next to the request check that builds it.
//! 4. If a whole-request denial has an error form, add the API to `deny_whole`'s table
//!    (top-level error) or to `cluster::deny_entries` (an error per request entry); without
//!    one the connection is closed.
//! 5. Test it in the family's `tests`. The property tests at the end of this file run every
//!    API at every version (default and random bodies) and fail on an API that is not decided
//!    or answers in a frame that does not decode.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use std::collections::HashMap;
use std::hash::Hash;
use uuid::Uuid;

use crate::acl::{Operation as Op, Permits, ResourceType as Rt, CLUSTER_NAME};
use crate::intercept::TopicLookup;
use crate::message::response_frame;

mod cluster;
mod configs;
mod groups;
mod metadata;
mod produce_fetch;
mod share;
#[cfg(test)]
mod testing;
mod topics;
mod transactions;

/// Kafka error codes, from the one table.
use crate::message::codes;
use codes::*;

/// Kafka's "authorized operations omitted" marker.
const OPS_OMITTED: i32 = i32::MIN;

/// What the request side does with one request of an authenticated principal.
#[derive(Debug)]
pub enum Decision {
    /// Forward, possibly rewritten (denied parts removed); `fix` says how to complete the
    /// response.
    Forward {
        /// The rewritten frame (length prefix, original header, new body), or `None` to
        /// forward the original bytes.
        frame: Option<Bytes>,
        /// What [`fix_response`] must do to the broker's response, if anything.
        fix: Option<ResponseFix>,
    },
    /// Denied entirely: answer with this complete framed response (length prefix + response
    /// header + body).
    Respond(Bytes),
    /// Partly or wholly denied and no response is expected (acks=0 Produce): forward the
    /// allowed part (`frame`, if anything is allowed), then close the connection.
    ForwardThenClose {
        /// The request without its denied topics, or `None` when nothing is left.
        frame: Option<Bytes>,
        /// Why the connection is closed, for the log.
        reason: String,
    },
    /// No answer can be built (a denied request of an API without an error form, an
    /// undecodable or malformed request, an unknown API key): close the connection.
    Close(String),
}

/// How to complete the response to a request that was rewritten or needs redaction.
///
/// Built by [`check_request`], consumed by [`fix_response`]. It holds the error entries of the
/// denied parts and the request's entry order, never credentials.
#[derive(Debug, Clone)]
pub struct ResponseFix(Fix);

/// A topic as a request names it: by id when it has one, else by name.
type TopicKey = (String, Uuid);

fn topic_key(name: &str, id: Uuid) -> TopicKey {
    if id.is_nil() {
        (name.to_string(), id)
    } else {
        (String::new(), id)
    }
}

/// What a family's response side must do, by family.
#[derive(Debug, Clone)]
enum Fix {
    ProduceFetch(produce_fetch::Fix),
    Metadata(metadata::Fix),
    Topics(topics::Fix),
    Groups(groups::Fix),
    Share(share::Fix),
    Transactions(transactions::Fix),
    Configs(configs::Fix),
}

macro_rules! family_fix {
    ($($variant:ident($family:ident)),* $(,)?) => {
        $(impl From<$family::Fix> for Fix {
            fn from(f: $family::Fix) -> Self {
                Fix::$variant(f)
            }
        })*
    };
}

family_fix!(
    ProduceFetch(produce_fetch),
    Metadata(metadata),
    Topics(topics),
    Groups(groups),
    Share(share),
    Transactions(transactions),
    Configs(configs),
);

/// Decides what to do with one request of an authenticated principal.
///
/// `frame` is the whole request frame (4-byte length prefix, header of `header_len` bytes,
/// body). `topics` resolves the topic ids of id-based versions; an id it does not know is
/// treated as unknown (UNKNOWN_TOPIC_ID) for APIs that change or read data.
pub fn check_request(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    header_len: usize,
    frame: &Bytes,
    permits: &dyn Permits,
    topics: &dyn TopicLookup,
) -> Decision {
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Decision::Close(format!(
            "api key {api_key} is unknown to the gateway and cannot be authorized"
        ));
    };
    let Some(body) = 4usize
        .checked_add(header_len)
        .filter(|start| *start <= frame.len())
        .map(|start| frame.slice(start..))
    else {
        return Decision::Close("request frame shorter than its header".into());
    };
    let r = Req {
        key,
        version,
        correlation_id,
        header_len,
        frame,
        body,
        permits,
        topics,
    };
    match dispatch(&r) {
        Ok(d) | Err(d) => d,
    }
}

/// One request being checked.
struct Req<'a> {
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    header_len: usize,
    frame: &'a Bytes,
    body: Bytes,
    permits: &'a dyn Permits,
    topics: &'a dyn TopicLookup,
}

/// A handler's result; `Err` carries an early decision (close, deny) for `?`.
type Step = Result<Decision, Decision>;

fn pass() -> Decision {
    Decision::Forward {
        frame: None,
        fix: None,
    }
}

fn redact(fix: impl Into<Fix>) -> Decision {
    Decision::Forward {
        frame: None,
        fix: Some(ResponseFix(fix.into())),
    }
}

impl Req<'_> {
    fn decode<T: Decodable>(&self) -> Result<T, Decision> {
        crate::schema::decode_request(self.key, self.version, &self.body)
            .map_err(|e| Decision::Close(format!("{e:#}")))
    }

    fn respond<T: Encodable>(&self, msg: &T) -> Decision {
        let mut body = BytesMut::new();
        match msg.encode(&mut body, self.version) {
            Ok(()) => Decision::Respond(response_frame(
                self.key,
                self.version,
                self.correlation_id,
                &body,
            )),
            Err(e) => Decision::Close(format!(
                "cannot build the {:?} v{} denial: {e:#}",
                self.key, self.version
            )),
        }
    }

    /// The request frame with the original header and `msg` as its body.
    fn rewrite<T: Encodable>(&self, msg: &T) -> Result<Bytes, Decision> {
        let mut body = BytesMut::new();
        msg.encode(&mut body, self.version).map_err(|e| {
            Decision::Close(format!(
                "cannot re-encode the {:?} v{} request: {e:#}",
                self.key, self.version
            ))
        })?;
        let header = &self.frame[4..4 + self.header_len];
        let mut out = BytesMut::with_capacity(4 + header.len() + body.len());
        out.put_i32((header.len() + body.len()) as i32);
        out.put_slice(header);
        out.put_slice(&body);
        Ok(out.freeze())
    }

    fn forward<T: Encodable, F: Into<Fix>>(&self, msg: &T, fix: Option<F>) -> Step {
        Ok(Decision::Forward {
            frame: Some(self.rewrite(msg)?),
            fix: fix.map(|f| ResponseFix(f.into())),
        })
    }

    fn may(&self, rt: Rt, name: &str, op: Op) -> bool {
        self.permits.permits(rt, name, op)
    }

    fn cluster(&self, op: Op) -> bool {
        self.permits.permits(Rt::Cluster, CLUSTER_NAME, op)
    }

    /// Checks `op` on a topic named by name or, when the name is empty, by id.
    fn topic(&self, name: &str, id: Uuid, op: Op) -> Result<(), i16> {
        topic_check(self.permits, self.topics, name, id, op)
    }

    /// Whole-request check on the cluster.
    fn cluster_only(&self, op: Op) -> Step {
        if self.cluster(op) {
            Ok(pass())
        } else {
            Err(deny_whole(self, CLUSTER_AUTHORIZATION_FAILED))
        }
    }

    /// READ on the group, else the API's top-level GROUP_AUTHORIZATION_FAILED.
    fn group_read(&self, group: &str) -> Step {
        if self.may(Rt::Group, group, Op::Read) {
            Ok(pass())
        } else {
            Err(deny_whole(self, GROUP_AUTHORIZATION_FAILED))
        }
    }
}

fn lookup(topics: &dyn TopicLookup, id: Uuid) -> Option<String> {
    topics.topic_name(id)
}

fn topic_check(
    permits: &dyn Permits,
    topics: &dyn TopicLookup,
    name: &str,
    id: Uuid,
    op: Op,
) -> Result<(), i16> {
    let resolved;
    let name = if name.is_empty() && !id.is_nil() {
        resolved = lookup(topics, id).ok_or(UNKNOWN_TOPIC_ID)?;
        resolved.as_str()
    } else {
        name
    };
    if permits.permits(Rt::Topic, name, op) {
        Ok(())
    } else {
        Err(TOPIC_AUTHORIZATION_FAILED)
    }
}

/// Routes a request to its API family's check (see "Where to add an API's ACL rule").
fn dispatch(r: &Req<'_>) -> Step {
    use ApiKey::*;
    match r.key {
        // Connection set-up and telemetry are open to every principal.
        ApiVersions
        | SaslHandshake
        | SaslAuthenticate
        | GetTelemetrySubscriptions
        | PushTelemetry => Ok(pass()),
        Produce | Fetch => produce_fetch::check(r),
        Metadata | DescribeTopicPartitions | DescribeCluster => metadata::check(r),
        CreateTopics | DeleteTopics | DeleteRecords | CreatePartitions | ListOffsets
        | OffsetForLeaderEpoch | DescribeProducers => topics::check(r),
        FindCoordinator
        | JoinGroup
        | SyncGroup
        | Heartbeat
        | LeaveGroup
        | ConsumerGroupHeartbeat
        | DescribeGroups
        | ConsumerGroupDescribe
        | ListGroups
        | DeleteGroups
        | OffsetCommit
        | OffsetFetch
        | OffsetDelete => groups::check(r),
        ShareGroupHeartbeat
        | ShareGroupDescribe
        | ShareFetch
        | ShareAcknowledge
        | DescribeShareGroupOffsets
        | AlterShareGroupOffsets
        | DeleteShareGroupOffsets => share::check(r),
        InitProducerId | AddPartitionsToTxn | AddOffsetsToTxn | EndTxn | TxnOffsetCommit
        | DescribeTransactions | ListTransactions => transactions::check(r),
        DescribeConfigs | AlterConfigs | IncrementalAlterConfigs => configs::check(r),
        DescribeAcls
        | CreateAcls
        | DeleteAcls
        | DescribeClientQuotas
        | AlterClientQuotas
        | ListConfigResources
        | DescribeUserScramCredentials
        | AlterUserScramCredentials
        | CreateDelegationToken
        | RenewDelegationToken
        | ExpireDelegationToken
        | DescribeDelegationToken
        | ListPartitionReassignments
        | AlterPartitionReassignments
        | ElectLeaders
        | DescribeLogDirs
        | AlterReplicaLogDirs
        | UpdateFeatures
        | DescribeQuorum
        | UnregisterBroker
        | AddRaftVoter
        | RemoveRaftVoter
        | UpdateRaftVoter
        | WriteTxnMarkers
        | Vote
        | BeginQuorumEpoch
        | EndQuorumEpoch
        | AlterPartition
        | Envelope
        | FetchSnapshot
        | BrokerRegistration
        | BrokerHeartbeat
        | AllocateProducerIds
        | ControllerRegistration
        | AssignReplicasToDirs
        | InitializeShareGroupState
        | ReadShareGroupState
        | WriteShareGroupState
        | DeleteShareGroupState
        | ReadShareGroupStateSummary => cluster::check(r),
    }
}

/// A family's `check` was given an API `dispatch` routes elsewhere: a routing bug, answered by
/// closing the connection rather than by guessing a rule.
fn not_routed(key: ApiKey) -> Decision {
    Decision::Close(format!("{key:?} is not routed to this API family's check"))
}

macro_rules! top_level_error {
    ($r:expr, $code:expr, $($api:ident => $resp:ty),* $(,)?) => {
        match $r.key {
            $(ApiKey::$api => {
                let mut m = <$resp>::default();
                m.error_code = $code;
                Some($r.respond(&m))
            })*
            _ => None,
        }
    };
}

/// The whole request denied with `code`: the API's error response, or `Close` when it has
/// no error form.
fn deny_whole(r: &Req<'_>, code: i16) -> Decision {
    match cluster::deny_entries(r, code) {
        Ok(Some(d)) => return d,
        Ok(None) => {}
        Err(d) => return d,
    }
    top_level_error!(r, code,
        JoinGroup => JoinGroupResponse,
        SyncGroup => SyncGroupResponse,
        Heartbeat => HeartbeatResponse,
        LeaveGroup => LeaveGroupResponse,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
        ShareGroupHeartbeat => ShareGroupHeartbeatResponse,
        InitProducerId => InitProducerIdResponse,
        AddOffsetsToTxn => AddOffsetsToTxnResponse,
        EndTxn => EndTxnResponse,
        AddPartitionsToTxn => AddPartitionsToTxnResponse,
        DescribeAcls => DescribeAclsResponse,
        ListPartitionReassignments => ListPartitionReassignmentsResponse,
        AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
        DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
        DescribeQuorum => DescribeQuorumResponse,
        CreateDelegationToken => CreateDelegationTokenResponse,
        RenewDelegationToken => RenewDelegationTokenResponse,
        ExpireDelegationToken => ExpireDelegationTokenResponse,
        DescribeDelegationToken => DescribeDelegationTokenResponse,
        UnregisterBroker => UnregisterBrokerResponse,
        AddRaftVoter => AddRaftVoterResponse,
        RemoveRaftVoter => RemoveRaftVoterResponse,
        UpdateRaftVoter => UpdateRaftVoterResponse,
        DescribeClientQuotas => DescribeClientQuotasResponse,
        ListConfigResources => ListConfigResourcesResponse,
        Vote => VoteResponse,
        BeginQuorumEpoch => BeginQuorumEpochResponse,
        EndQuorumEpoch => EndQuorumEpochResponse,
        AlterPartition => AlterPartitionResponse,
        Envelope => EnvelopeResponse,
        FetchSnapshot => FetchSnapshotResponse,
        BrokerRegistration => BrokerRegistrationResponse,
        BrokerHeartbeat => BrokerHeartbeatResponse,
        AllocateProducerIds => AllocateProducerIdsResponse,
        ControllerRegistration => ControllerRegistrationResponse,
        AssignReplicasToDirs => AssignReplicasToDirsResponse,
        ShareFetch => ShareFetchResponse,
        ShareAcknowledge => ShareAcknowledgeResponse,
        AlterShareGroupOffsets => AlterShareGroupOffsetsResponse,
        DeleteShareGroupOffsets => DeleteShareGroupOffsetsResponse,
    )
    .unwrap_or_else(|| {
        Decision::Close(format!(
            "{:?} v{} denied (error {code}) and the API has no error response form",
            r.key, r.version
        ))
    })
}

/// Keeps the request's entries that pass `check`, collecting the error entries of the others.
/// Returns (kept, denied errors, request order).
fn split<T, E, K>(
    entries: Vec<T>,
    key: impl Fn(&T) -> K,
    mut check: impl FnMut(&T) -> Result<(), i16>,
    error: impl Fn(&T, i16) -> E,
) -> (Vec<T>, Vec<E>, Vec<K>) {
    let mut kept = Vec::with_capacity(entries.len());
    let mut denied = Vec::new();
    let mut order = Vec::with_capacity(entries.len());
    for e in entries {
        order.push(key(&e));
        match check(&e) {
            Ok(()) => kept.push(e),
            Err(code) => denied.push(error(&e, code)),
        }
    }
    (kept, denied, order)
}

// ---------------------------------------------------------------------------------------------
// Response side.

/// Completes a response (frame = length prefix + response header + body) for a request that
/// got `fix`: merges denied entries in request order, redacts or filters what the principal
/// may not describe, recomputes authorized operations. Errors mean the response is
/// undecodable (or cannot be re-encoded).
pub fn fix_response(
    fix: &ResponseFix,
    api_key: i16,
    version: i16,
    frame: Bytes,
    permits: &dyn Permits,
    topics: &dyn TopicLookup,
) -> anyhow::Result<Bytes> {
    let key =
        ApiKey::try_from(api_key).map_err(|()| anyhow::anyhow!("api key {api_key} is unknown"))?;
    anyhow::ensure!(frame.len() >= 4, "response frame without a length prefix");
    let mut body = frame.slice(4..);
    let header = crate::schema::decode_response_header(key, version, &mut body)?;
    let r = Resp {
        key,
        version,
        permits,
        topics,
    };
    let out = match &fix.0 {
        Fix::ProduceFetch(f) => produce_fetch::fix_response(f, r, &mut body)?,
        Fix::Metadata(f) => metadata::fix_response(f, r, &mut body)?,
        Fix::Topics(f) => topics::fix_response(f, r, &mut body)?,
        Fix::Groups(f) => groups::fix_response(f, r, &mut body)?,
        Fix::Share(f) => share::fix_response(f, r, &mut body)?,
        Fix::Transactions(f) => transactions::fix_response(f, r, &mut body)?,
        Fix::Configs(f) => configs::fix_response(f, r, &mut body)?,
    };
    Ok(response_frame(key, version, header.correlation_id, &out))
}

/// The response being completed: what the families' `fix_response` need besides the body.
#[derive(Clone, Copy)]
struct Resp<'a> {
    key: ApiKey,
    version: i16,
    permits: &'a dyn Permits,
    topics: &'a dyn TopicLookup,
}

/// Decodes a response body, lets `f` change it, encodes it again.
fn edit<T: Decodable + Encodable>(
    body: &mut Bytes,
    key: ApiKey,
    version: i16,
    f: impl FnOnce(&mut T),
) -> anyhow::Result<BytesMut> {
    let mut msg: T = crate::schema::decode_response(key, version, body)?;
    f(&mut msg);
    let mut out = BytesMut::new();
    msg.encode(&mut out, version)?;
    Ok(out)
}

/// Adds the denied entries to the broker's and puts everything in request order (entries the
/// request did not name keep their place after the others).
fn merge<T: Clone, K: Eq + Hash>(
    got: &mut Vec<T>,
    denied: &[T],
    order: &[K],
    key: impl Fn(&T) -> K,
) {
    got.extend(denied.iter().cloned());
    let mut position = HashMap::with_capacity(order.len());
    for (i, k) in order.iter().enumerate() {
        position.entry(k).or_insert(i);
    }
    // Stable: entries of one key keep the broker's order.
    got.sort_by_cached_key(|e| position.get(&key(e)).copied().unwrap_or(usize::MAX));
}

/// Kafka's `AclOperation` codes, as bits of an authorized-operations field.
const TOPIC_OPS: &[(Op, u8)] = &[
    (Op::Read, 3),
    (Op::Write, 4),
    (Op::Create, 5),
    (Op::Delete, 6),
    (Op::Alter, 7),
    (Op::Describe, 8),
    (Op::DescribeConfigs, 10),
    (Op::AlterConfigs, 11),
];

const GROUP_OPS: &[(Op, u8)] = &[
    (Op::Read, 3),
    (Op::Delete, 6),
    (Op::Describe, 8),
    (Op::DescribeConfigs, 10),
    (Op::AlterConfigs, 11),
];

const CLUSTER_OPS: &[(Op, u8)] = &[
    (Op::Create, 5),
    (Op::Alter, 7),
    (Op::Describe, 8),
    (Op::ClusterAction, 9),
    (Op::DescribeConfigs, 10),
    (Op::AlterConfigs, 11),
    (Op::IdempotentWrite, 12),
];

/// The principal's authorized operations on a resource, as Kafka encodes them.
fn ops_bits(p: &dyn Permits, rt: Rt, name: &str, table: &[(Op, u8)]) -> i32 {
    table
        .iter()
        .filter(|(op, _)| p.permits(rt, name, *op))
        .fold(0, |bits, (_, code)| bits | (1 << code))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    use super::testing::*;
    use super::*;
    use std::collections::HashSet;

    macro_rules! every_request {
        ($($api:ident => $req:ty),* $(,)?) => {
            /// Runs `f` on a default request of every API at every version.
            fn every_request(mut f: impl FnMut(ApiKey, i16, Bytes, usize)) {
                let mut seen = HashSet::new();
                $(
                    let key = ApiKey::$api;
                    seen.insert(key as i16);
                    let range = key.valid_versions();
                    for version in range.min..=range.max {
                        // kafka-protocol advertises a few versions its types cannot encode
                        // (OffsetCommit v10 in 0.18): there is no request to build.
                        let mut probe = BytesMut::new();
                        if <$req>::default().encode(&mut probe, version).is_err() {
                            continue;
                        }
                        let (frame, header_len) = frame(key, version, &<$req>::default());
                        f(key, version, frame, header_len);
                    }
                )*
                let missing: Vec<_> = ApiKey::iter().filter(|k| !seen.contains(&(*k as i16))).collect();
                assert!(missing.is_empty(), "APIs missing from the test: {missing:?}");
            }
        };
    }

    every_request!(
        Produce => ProduceRequest, Fetch => FetchRequest, ListOffsets => ListOffsetsRequest,
        Metadata => MetadataRequest, OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest, FindCoordinator => FindCoordinatorRequest,
        JoinGroup => JoinGroupRequest, Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest, SyncGroup => SyncGroupRequest,
        DescribeGroups => DescribeGroupsRequest, ListGroups => ListGroupsRequest,
        SaslHandshake => SaslHandshakeRequest, ApiVersions => ApiVersionsRequest,
        CreateTopics => CreateTopicsRequest, DeleteTopics => DeleteTopicsRequest,
        DeleteRecords => DeleteRecordsRequest, InitProducerId => InitProducerIdRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest, EndTxn => EndTxnRequest,
        WriteTxnMarkers => WriteTxnMarkersRequest, TxnOffsetCommit => TxnOffsetCommitRequest,
        DescribeAcls => DescribeAclsRequest, CreateAcls => CreateAclsRequest,
        DeleteAcls => DeleteAclsRequest, DescribeConfigs => DescribeConfigsRequest,
        AlterConfigs => AlterConfigsRequest, AlterReplicaLogDirs => AlterReplicaLogDirsRequest,
        DescribeLogDirs => DescribeLogDirsRequest, SaslAuthenticate => SaslAuthenticateRequest,
        CreatePartitions => CreatePartitionsRequest,
        CreateDelegationToken => CreateDelegationTokenRequest,
        RenewDelegationToken => RenewDelegationTokenRequest,
        ExpireDelegationToken => ExpireDelegationTokenRequest,
        DescribeDelegationToken => DescribeDelegationTokenRequest,
        DeleteGroups => DeleteGroupsRequest, ElectLeaders => ElectLeadersRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
        ListPartitionReassignments => ListPartitionReassignmentsRequest,
        OffsetDelete => OffsetDeleteRequest, DescribeClientQuotas => DescribeClientQuotasRequest,
        AlterClientQuotas => AlterClientQuotasRequest,
        DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
        AlterUserScramCredentials => AlterUserScramCredentialsRequest, Vote => VoteRequest,
        BeginQuorumEpoch => BeginQuorumEpochRequest, EndQuorumEpoch => EndQuorumEpochRequest,
        DescribeQuorum => DescribeQuorumRequest, AlterPartition => AlterPartitionRequest,
        UpdateFeatures => UpdateFeaturesRequest, Envelope => EnvelopeRequest,
        FetchSnapshot => FetchSnapshotRequest, DescribeCluster => DescribeClusterRequest,
        DescribeProducers => DescribeProducersRequest,
        BrokerRegistration => BrokerRegistrationRequest,
        BrokerHeartbeat => BrokerHeartbeatRequest, UnregisterBroker => UnregisterBrokerRequest,
        DescribeTransactions => DescribeTransactionsRequest,
        ListTransactions => ListTransactionsRequest,
        AllocateProducerIds => AllocateProducerIdsRequest,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
        ControllerRegistration => ControllerRegistrationRequest,
        GetTelemetrySubscriptions => GetTelemetrySubscriptionsRequest,
        PushTelemetry => PushTelemetryRequest, AssignReplicasToDirs => AssignReplicasToDirsRequest,
        ListConfigResources => ListConfigResourcesRequest,
        DescribeTopicPartitions => DescribeTopicPartitionsRequest,
        ShareGroupHeartbeat => ShareGroupHeartbeatRequest,
        ShareGroupDescribe => ShareGroupDescribeRequest, ShareFetch => ShareFetchRequest,
        ShareAcknowledge => ShareAcknowledgeRequest, AddRaftVoter => AddRaftVoterRequest,
        RemoveRaftVoter => RemoveRaftVoterRequest, UpdateRaftVoter => UpdateRaftVoterRequest,
        InitializeShareGroupState => InitializeShareGroupStateRequest,
        ReadShareGroupState => ReadShareGroupStateRequest,
        WriteShareGroupState => WriteShareGroupStateRequest,
        DeleteShareGroupState => DeleteShareGroupStateRequest,
        ReadShareGroupStateSummary => ReadShareGroupStateSummaryRequest,
        DescribeShareGroupOffsets => DescribeShareGroupOffsetsRequest,
        AlterShareGroupOffsets => AlterShareGroupOffsetsRequest,
        DeleteShareGroupOffsets => DeleteShareGroupOffsetsRequest,
    );

    #[test]
    fn every_api_is_decided_at_every_version() {
        use ApiKey::*;
        let none = names(&[]);
        // The principal may do nothing.
        every_request(|key, version, f, hl| {
            let d = check_request(key as i16, version, 7, hl, &f, &Acl::default(), &none);
            match (key, &d) {
                (
                    ApiVersions
                    | SaslHandshake
                    | SaslAuthenticate
                    | GetTelemetrySubscriptions
                    | PushTelemetry
                    | DescribeCluster,
                    d,
                ) => {
                    assert!(is_pass(d), "{key:?} v{version} is open: {d:?}")
                }
                // No error form: the connection closes.
                (
                    WriteTxnMarkers
                    | InitializeShareGroupState
                    | ReadShareGroupState
                    | WriteShareGroupState
                    | DeleteShareGroupState
                    | ReadShareGroupStateSummary,
                    d,
                ) => {
                    assert!(matches!(d, Decision::Close(_)), "{key:?} v{version}: {d:?}")
                }
                (_, Decision::Close(why)) => panic!("{key:?} v{version} closed: {why}"),
                (_, Decision::Respond(out)) => {
                    let len = i32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
                    assert_eq!(len, out.len() - 4);
                    let mut b = out.slice(4..);
                    let h = ResponseHeader::decode(&mut b, key.response_header_version(version))
                        .unwrap();
                    assert_eq!(h.correlation_id, 7, "{key:?} v{version}");
                }
                // Default requests name nothing or only empty names, or are answered from the
                // response (listings): forwarding is right for them.
                (_, Decision::Forward { .. } | Decision::ForwardThenClose { .. }) => {}
            }
        });
        // A principal that may do everything is never stopped, and nothing is rewritten.
        struct All;
        impl Permits for All {
            fn permits(&self, _: Rt, _: &str, _: Op) -> bool {
                true
            }
        }
        every_request(|key, version, f, hl| {
            let d = check_request(key as i16, version, 7, hl, &f, &All, &none);
            let ok = match &d {
                Decision::Forward { frame: None, .. } => true,
                // Unknown topic ids (none in default requests) would be denied.
                _ => false,
            };
            assert!(ok, "{key:?} v{version}: {d:?}");
        });
    }

    /// Allows the operations of `Acl`-less tests by name: everything on names that start with
    /// a letter up to `m`, nothing on the others (so random bodies get partial answers).
    struct Half;

    impl Permits for Half {
        fn permits(&self, _: Rt, name: &str, _: Op) -> bool {
            name.bytes().next().is_some_and(|b| b <= b'm')
        }
    }

    /// A local decision on a random request: an answer that walks, or a close for the APIs
    /// without an error form.
    fn check_local(what: &str, key: ApiKey, version: i16, api: i16, body: &[u8], d: Decision) {
        use ApiKey::*;
        match d {
            Decision::Respond(out) => {
                let mut rest = out.slice(4..);
                crate::schema::decode_response_header(key, version, &mut rest)
                    .unwrap_or_else(|e| panic!("{what}: {e:#}"));
                crate::schema::walk_response(api, version, &rest, &mut ())
                    .unwrap_or_else(|e| panic!("{what}: local answer: {e} from {body:02x?}"));
            }
            Decision::Close(why) => assert!(
                matches!(
                    key,
                    WriteTxnMarkers
                        | InitializeShareGroupState
                        | ReadShareGroupState
                        | WriteShareGroupState
                        | DeleteShareGroupState
                        | ReadShareGroupStateSummary
                ),
                "{what} closed: {why} ({body:02x?})"
            ),
            other => unreachable!("{what}: {other:?} is not local"),
        }
    }

    /// Every API at every version the gateway advertises, with random request bodies (nested
    /// arrays, nulls, tagged fields) and a principal allowed on about half of the names: a
    /// rewritten request, a local answer and a fixed broker response (random too) must each
    /// pass the structure check of their API and version. A decision may close the connection
    /// only for the APIs that have no error form.
    #[test]
    fn every_api_and_version_is_rewritten_and_answered_in_decodable_frames() {
        use crate::schema::synth::{synth_body, Rng, SMALL};
        let mut rng = Rng(0xac1);
        let ids = names(&[]);
        let (mut rewritten, mut answered, mut fixed, mut unfixable) = (0, 0, 0, 0);
        for def in crate::schema::messages().iter().filter(|d| !d.response) {
            let Ok(key) = ApiKey::try_from(def.api_key) else {
                continue;
            };
            let Some(resp_def) = crate::schema::response_def(def.api_key) else {
                continue;
            };
            let range = crate::advertise::gateway_versions(key);
            for version in range.min..=range.max {
                for _ in 0..8 {
                    let body = synth_body(&mut rng, &SMALL, def, version);
                    let header = RequestHeader::default()
                        .with_request_api_key(key as i16)
                        .with_request_api_version(version)
                        .with_correlation_id(7)
                        .with_client_id(Some(s("app")));
                    let mut h = BytesMut::new();
                    header
                        .encode(&mut h, key.request_header_version(version))
                        .unwrap();
                    let mut f = BytesMut::new();
                    f.put_i32((h.len() + body.len()) as i32);
                    f.put_slice(&h);
                    f.put_slice(&body);
                    let f = f.freeze();
                    let what = format!("{key:?} v{version}");
                    let decision = check_request(key as i16, version, 7, h.len(), &f, &Half, &ids);
                    let forwarded = match decision {
                        Decision::Forward { frame, fix } => Some((frame, fix)),
                        Decision::ForwardThenClose { frame, .. } => Some((frame, None)),
                        other => {
                            check_local(&what, key, version, def.api_key, &body, other);
                            answered += 1;
                            None
                        }
                    };
                    let fix = match forwarded {
                        Some((frame, fix)) => {
                            if let Some(out) = frame {
                                let out_body = out.slice(4 + h.len()..);
                                crate::schema::walk_request(
                                    def.api_key,
                                    version,
                                    &out_body,
                                    &mut (),
                                )
                                .unwrap_or_else(|e| {
                                    panic!("{what}: rewritten request: {e} from {body:02x?}")
                                });
                                rewritten += 1;
                            }
                            fix
                        }
                        None => None,
                    };
                    let Some(fix) = fix else { continue };
                    let resp = synth_body(&mut rng, &SMALL, resp_def, version);
                    let resp_frame = crate::message::response_frame(key, version, 7, &resp);
                    match fix_response(&fix, key as i16, version, resp_frame, &Half, &ids) {
                        Ok(out) => {
                            let mut rest = out.slice(4..);
                            crate::schema::decode_response_header(key, version, &mut rest)
                                .unwrap_or_else(|e| panic!("{what}: {e:#}"));
                            crate::schema::walk_response(def.api_key, version, &rest, &mut ())
                                .unwrap_or_else(|e| panic!("{what}: fixed response: {e}"));
                            fixed += 1;
                        }
                        // A response that cannot answer its request (random entries) may be
                        // refused; it must never be mis-encoded.
                        Err(e) => {
                            let e = format!("{e:#}");
                            assert!(
                                !e.contains("not available on the selected protocol version"),
                                "{what}: {e}"
                            );
                            unfixable += 1;
                        }
                    }
                }
            }
        }
        eprintln!(
            "rewritten {rewritten}, answered {answered}, fixed {fixed}, unfixable {unfixable}"
        );
        assert!(
            rewritten > 100 && answered > 100 && fixed > 100,
            "rewritten {rewritten}, answered {answered}, fixed {fixed}"
        );
    }
}
