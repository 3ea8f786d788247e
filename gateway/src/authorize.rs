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
//! - *acks=0 Produce.* Denied topics are dropped silently (there is no response to carry an
//!   error); when nothing is left the request is swallowed ([`Decision::Drop`]).
//! - *Fetch sessions.* Denied topics are removed from the request and answered by the gateway;
//!   the rest (possibly nothing) is forwarded so the broker's session epoch stays in step with
//!   the client's. A partition added to a session while it was allowed keeps being served by
//!   the broker's session after its ACL is revoked, until the session is re-created (closing the
//!   principal's connections on ACL changes ends that).
//! - *Auto-creation through Metadata.* From v4 the request flag is cleared when the principal
//!   lacks CREATE for a requested topic; v0-3 have no flag (the broker's setting decides), so
//!   only DESCRIBE is enforced there.
//! - *AddPartitionsToTxn v0-3* is all or nothing, as in Kafka: one denied topic fails the
//!   request (others get OPERATION_NOT_ATTEMPTED). *ShareFetch*, *ShareAcknowledge* and the
//!   share-group offset admin APIs are also all or nothing (top-level error) instead of
//!   per topic.
//! - *Delegation tokens* would be issued to the gateway's own broker identity, so creating,
//!   renewing or expiring one requires ALTER on the cluster, describing one DESCRIBE.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use uuid::Uuid;

use crate::acl::{Operation as Op, Permits, ResourceType as Rt, CLUSTER_NAME};
use crate::intercept::{response_frame, TopicNames};

/// Kafka error codes the authorizer answers with.
pub mod codes {
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    /// TOPIC_AUTHORIZATION_FAILED.
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    /// GROUP_AUTHORIZATION_FAILED.
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    /// CLUSTER_AUTHORIZATION_FAILED.
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    /// OPERATION_NOT_ATTEMPTED.
    pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
    /// UNKNOWN_TOPIC_ID.
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
}
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
    /// Denied entirely and no response is expected (acks=0 Produce): forward nothing, answer
    /// nothing.
    Drop,
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

#[derive(Debug, Clone)]
enum Fix {
    Produce {
        order: Vec<TopicKey>,
        denied: Vec<produce_response::TopicProduceResponse>,
    },
    Fetch {
        order: Vec<TopicKey>,
        denied: Vec<fetch_response::FetchableTopicResponse>,
    },
    Metadata(MetadataFix),
    CreateTopics {
        order: Vec<TopicKey>,
        denied: Vec<create_topics_response::CreatableTopicResult>,
    },
    DeleteTopics {
        order: Vec<TopicKey>,
        denied: Vec<delete_topics_response::DeletableTopicResult>,
    },
    DeleteRecords {
        order: Vec<TopicKey>,
        denied: Vec<delete_records_response::DeleteRecordsTopicResult>,
    },
    CreatePartitions {
        order: Vec<TopicKey>,
        denied: Vec<create_partitions_response::CreatePartitionsTopicResult>,
    },
    OffsetCommit {
        order: Vec<TopicKey>,
        denied: Vec<offset_commit_response::OffsetCommitResponseTopic>,
    },
    TxnOffsetCommit {
        order: Vec<TopicKey>,
        denied: Vec<txn_offset_commit_response::TxnOffsetCommitResponseTopic>,
    },
    OffsetDelete {
        order: Vec<TopicKey>,
        denied: Vec<offset_delete_response::OffsetDeleteResponseTopic>,
    },
    DeleteGroups {
        order: Vec<String>,
        denied: Vec<delete_groups_response::DeletableGroupResult>,
    },
    AlterConfigs {
        order: Vec<(i8, String)>,
        denied: Vec<alter_configs_response::AlterConfigsResourceResponse>,
    },
    IncrementalAlterConfigs {
        order: Vec<(i8, String)>,
        denied: Vec<incremental_alter_configs_response::AlterConfigsResourceResponse>,
    },
    ListOffsets,
    OffsetForLeaderEpoch,
    DescribeProducers,
    DescribeConfigs,
    DescribeGroups,
    ConsumerGroupDescribe,
    ShareGroupDescribe,
    /// `all_topics`: the groups (or, before v8, the one group) whose topics were not listed.
    OffsetFetch {
        all_topics: HashSet<String>,
    },
    FindCoordinator {
        key_type: i8,
    },
    DescribeTransactions,
    ListTransactions,
    ListGroups,
    DescribeTopicPartitions {
        all: bool,
    },
    DescribeShareGroupOffsets {
        all_topics: HashSet<String>,
    },
    DescribeCluster,
}

#[derive(Debug, Clone)]
struct MetadataFix {
    /// Topics were not listed: filter the response.
    all: bool,
    /// The request's topics in order, denied ones included.
    order: Vec<TopicKey>,
    denied: Vec<metadata_response::MetadataResponseTopic>,
    /// v0 request whose every topic was denied: the forwarded empty list means "all topics"
    /// there, so the broker's topics are all dropped.
    none_forwarded: bool,
    topic_ops: bool,
    cluster_ops: bool,
}

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
    topics: &TopicNames,
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

/// The structure check every request body passes before it is decoded.
fn structure_ok(api_key: i16, version: i16, body: &[u8]) -> bool {
    // Switch to `crate::frame::check_request_structure(api_key, version, body)` once it covers
    // every API; until then only Produce has a structural check.
    if api_key == ApiKey::Produce as i16 {
        crate::frame::check_produce_body(body, version)
    } else {
        true
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
    topics: &'a TopicNames,
}

/// A handler's result; `Err` carries an early decision (close, deny) for `?`.
type Step = Result<Decision, Decision>;

fn pass() -> Decision {
    Decision::Forward {
        frame: None,
        fix: None,
    }
}

fn redact(fix: Fix) -> Decision {
    Decision::Forward {
        frame: None,
        fix: Some(ResponseFix(fix)),
    }
}

impl Req<'_> {
    fn decode<T: Decodable>(&self) -> Result<T, Decision> {
        if !structure_ok(self.key as i16, self.version, &self.body) {
            return Err(Decision::Close(format!(
                "malformed {:?} v{} request",
                self.key, self.version
            )));
        }
        T::decode(&mut self.body.clone(), self.version).map_err(|e| {
            Decision::Close(format!(
                "undecodable {:?} v{} request: {e:#}",
                self.key, self.version
            ))
        })
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

    fn forward<T: Encodable>(&self, msg: &T, fix: Option<Fix>) -> Step {
        Ok(Decision::Forward {
            frame: Some(self.rewrite(msg)?),
            fix: fix.map(ResponseFix),
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
}

fn lookup(topics: &TopicNames, id: Uuid) -> Option<String> {
    let map = topics.read().unwrap_or_else(|e| e.into_inner());
    map.get(&id).cloned()
}

fn topic_check(
    permits: &dyn Permits,
    topics: &TopicNames,
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

fn dispatch(r: &Req<'_>) -> Step {
    use ApiKey::*;
    match r.key {
        // Connection set-up, telemetry and cluster discovery are open to every principal.
        ApiVersions
        | SaslHandshake
        | SaslAuthenticate
        | GetTelemetrySubscriptions
        | PushTelemetry => Ok(pass()),
        DescribeCluster => {
            let req: DescribeClusterRequest = r.decode()?;
            Ok(if req.include_cluster_authorized_operations {
                redact(Fix::DescribeCluster)
            } else {
                pass()
            })
        }
        Produce => produce(r),
        Fetch => fetch(r),
        ListOffsets => {
            let req: ListOffsetsRequest = r.decode()?;
            let denied = req
                .topics
                .iter()
                .any(|t| !r.may(Rt::Topic, &t.name, Op::Describe));
            Ok(if denied {
                redact(Fix::ListOffsets)
            } else {
                pass()
            })
        }
        OffsetForLeaderEpoch => {
            // Followers (CLUSTER_ACTION) may read every topic; others need DESCRIBE.
            if r.cluster(Op::ClusterAction) {
                return Ok(pass());
            }
            let req: OffsetForLeaderEpochRequest = r.decode()?;
            let denied = req
                .topics
                .iter()
                .any(|t| !r.may(Rt::Topic, &t.topic, Op::Describe));
            Ok(if denied {
                redact(Fix::OffsetForLeaderEpoch)
            } else {
                pass()
            })
        }
        Metadata => metadata(r),
        DescribeTopicPartitions => {
            // The response always carries authorized operations: always recomputed.
            let req: DescribeTopicPartitionsRequest = r.decode()?;
            Ok(redact(Fix::DescribeTopicPartitions {
                all: req.topics.is_empty(),
            }))
        }
        CreateTopics => create_topics(r),
        DeleteTopics => delete_topics(r),
        DeleteRecords => delete_records(r),
        CreatePartitions => create_partitions(r),
        OffsetCommit => offset_commit(r),
        OffsetFetch => offset_fetch(r),
        OffsetDelete => offset_delete(r),
        FindCoordinator => find_coordinator(r),
        JoinGroup => group_read(r, r.decode::<JoinGroupRequest>()?.group_id.as_str()),
        SyncGroup => group_read(r, r.decode::<SyncGroupRequest>()?.group_id.as_str()),
        Heartbeat => group_read(r, r.decode::<HeartbeatRequest>()?.group_id.as_str()),
        LeaveGroup => group_read(r, r.decode::<LeaveGroupRequest>()?.group_id.as_str()),
        ConsumerGroupHeartbeat => group_read(
            r,
            r.decode::<ConsumerGroupHeartbeatRequest>()?
                .group_id
                .as_str(),
        ),
        ShareGroupHeartbeat => group_read(
            r,
            r.decode::<ShareGroupHeartbeatRequest>()?.group_id.as_str(),
        ),
        DescribeGroups => {
            let req: DescribeGroupsRequest = r.decode()?;
            let denied = req
                .groups
                .iter()
                .any(|g| !r.may(Rt::Group, g, Op::Describe));
            Ok(if denied || req.include_authorized_operations {
                redact(Fix::DescribeGroups)
            } else {
                pass()
            })
        }
        ConsumerGroupDescribe => {
            let req: ConsumerGroupDescribeRequest = r.decode()?;
            let denied = req
                .group_ids
                .iter()
                .any(|g| !r.may(Rt::Group, g, Op::Describe));
            Ok(if denied || req.include_authorized_operations {
                redact(Fix::ConsumerGroupDescribe)
            } else {
                pass()
            })
        }
        ShareGroupDescribe => {
            let req: ShareGroupDescribeRequest = r.decode()?;
            let denied = req
                .group_ids
                .iter()
                .any(|g| !r.may(Rt::Group, g, Op::Describe));
            Ok(if denied || req.include_authorized_operations {
                redact(Fix::ShareGroupDescribe)
            } else {
                pass()
            })
        }
        ListGroups => Ok(if r.cluster(Op::Describe) {
            pass()
        } else {
            redact(Fix::ListGroups)
        }),
        DeleteGroups => delete_groups(r),
        InitProducerId => {
            let req: InitProducerIdRequest = r.decode()?;
            match &req.transactional_id {
                Some(id) if !r.may(Rt::TransactionalId, id, Op::Write) => {
                    Err(deny_whole(r, TRANSACTIONAL_ID_AUTHORIZATION_FAILED))
                }
                // Without a transactional id: see the module docs (idempotent producers).
                _ => Ok(pass()),
            }
        }
        AddPartitionsToTxn => add_partitions_to_txn(r),
        AddOffsetsToTxn => {
            let req: AddOffsetsToTxnRequest = r.decode()?;
            if !r.may(Rt::TransactionalId, &req.transactional_id, Op::Write) {
                Err(deny_whole(r, TRANSACTIONAL_ID_AUTHORIZATION_FAILED))
            } else if !r.may(Rt::Group, &req.group_id, Op::Read) {
                Err(deny_whole(r, GROUP_AUTHORIZATION_FAILED))
            } else {
                Ok(pass())
            }
        }
        EndTxn => {
            let req: EndTxnRequest = r.decode()?;
            if r.may(Rt::TransactionalId, &req.transactional_id, Op::Write) {
                Ok(pass())
            } else {
                Err(deny_whole(r, TRANSACTIONAL_ID_AUTHORIZATION_FAILED))
            }
        }
        TxnOffsetCommit => txn_offset_commit(r),
        DescribeTransactions => Ok(redact(Fix::DescribeTransactions)),
        ListTransactions => Ok(redact(Fix::ListTransactions)),
        DescribeProducers => {
            let req: DescribeProducersRequest = r.decode()?;
            let denied = req
                .topics
                .iter()
                .any(|t| !r.may(Rt::Topic, &t.name, Op::Read));
            Ok(if denied {
                redact(Fix::DescribeProducers)
            } else {
                pass()
            })
        }
        DescribeConfigs => {
            let req: DescribeConfigsRequest = r.decode()?;
            let denied = req.resources.iter().any(|c| {
                config_denied(
                    r.permits,
                    c.resource_type,
                    &c.resource_name,
                    Op::DescribeConfigs,
                )
                .is_some()
            });
            Ok(if denied {
                redact(Fix::DescribeConfigs)
            } else {
                pass()
            })
        }
        AlterConfigs => alter_configs(r),
        IncrementalAlterConfigs => incremental_alter_configs(r),
        DescribeAcls
        | ListPartitionReassignments
        | DescribeUserScramCredentials
        | DescribeQuorum
        | DescribeDelegationToken
        | DescribeLogDirs => r.cluster_only(Op::Describe),
        CreateAcls
        | DeleteAcls
        | AlterPartitionReassignments
        | ElectLeaders
        | AlterReplicaLogDirs
        | AlterUserScramCredentials
        | UpdateFeatures
        | CreateDelegationToken
        | RenewDelegationToken
        | ExpireDelegationToken
        | UnregisterBroker
        | AddRaftVoter
        | RemoveRaftVoter => r.cluster_only(Op::Alter),
        DescribeClientQuotas | ListConfigResources => r.cluster_only(Op::DescribeConfigs),
        AlterClientQuotas => r.cluster_only(Op::AlterConfigs),
        WriteTxnMarkers => {
            if r.cluster(Op::Alter) {
                Ok(pass())
            } else {
                r.cluster_only(Op::ClusterAction)
            }
        }
        // Inter-broker and controller APIs.
        Vote
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
        | UpdateRaftVoter
        | InitializeShareGroupState
        | ReadShareGroupState
        | WriteShareGroupState
        | DeleteShareGroupState
        | ReadShareGroupStateSummary => r.cluster_only(Op::ClusterAction),
        ShareFetch => {
            let req: ShareFetchRequest = r.decode()?;
            share_check(
                r,
                req.group_id.as_deref().map(|g| g.as_str()),
                req.topics.iter().map(|t| t.topic_id),
            )
        }
        ShareAcknowledge => {
            let req: ShareAcknowledgeRequest = r.decode()?;
            share_check(
                r,
                req.group_id.as_deref().map(|g| g.as_str()),
                req.topics.iter().map(|t| t.topic_id),
            )
        }
        DescribeShareGroupOffsets => {
            let req: DescribeShareGroupOffsetsRequest = r.decode()?;
            let mut all_topics = HashSet::new();
            let mut denied = false;
            for g in &req.groups {
                denied |= !r.may(Rt::Group, &g.group_id, Op::Describe);
                match &g.topics {
                    None => {
                        all_topics.insert(g.group_id.to_string());
                    }
                    Some(ts) => {
                        denied |= ts
                            .iter()
                            .any(|t| !r.may(Rt::Topic, &t.topic_name, Op::Describe))
                    }
                }
            }
            Ok(if denied || !all_topics.is_empty() {
                redact(Fix::DescribeShareGroupOffsets { all_topics })
            } else {
                pass()
            })
        }
        AlterShareGroupOffsets => {
            let req: AlterShareGroupOffsetsRequest = r.decode()?;
            if !r.may(Rt::Group, &req.group_id, Op::Read) {
                Err(deny_whole(r, GROUP_AUTHORIZATION_FAILED))
            } else if req
                .topics
                .iter()
                .any(|t| !r.may(Rt::Topic, &t.topic_name, Op::Read))
            {
                Err(deny_whole(r, TOPIC_AUTHORIZATION_FAILED))
            } else {
                Ok(pass())
            }
        }
        DeleteShareGroupOffsets => {
            let req: DeleteShareGroupOffsetsRequest = r.decode()?;
            if !r.may(Rt::Group, &req.group_id, Op::Delete) {
                Err(deny_whole(r, GROUP_AUTHORIZATION_FAILED))
            } else if req
                .topics
                .iter()
                .any(|t| !r.may(Rt::Topic, &t.topic_name, Op::Read))
            {
                Err(deny_whole(r, TOPIC_AUTHORIZATION_FAILED))
            } else {
                Ok(pass())
            }
        }
    }
}

/// READ on the group, else the API's top-level GROUP_AUTHORIZATION_FAILED.
fn group_read(r: &Req<'_>, group: &str) -> Step {
    if r.may(Rt::Group, group, Op::Read) {
        Ok(pass())
    } else {
        Err(deny_whole(r, GROUP_AUTHORIZATION_FAILED))
    }
}

/// ShareFetch / ShareAcknowledge: READ on the group and on every topic (all or nothing).
fn share_check(r: &Req<'_>, group: Option<&str>, ids: impl Iterator<Item = Uuid>) -> Step {
    if let Some(g) = group {
        if !r.may(Rt::Group, g, Op::Read) {
            return Err(deny_whole(r, GROUP_AUTHORIZATION_FAILED));
        }
    }
    for id in ids {
        if let Err(code) = r.topic("", id, Op::Read) {
            return Err(deny_whole(r, code));
        }
    }
    Ok(pass())
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
    match deny_entries(r, code) {
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

/// Whole-request denials of APIs whose error is carried per entry (or not at all in some
/// versions). `Ok(None)`: not one of those.
fn deny_entries(r: &Req<'_>, code: i16) -> Result<Option<Decision>, Decision> {
    let d = match r.key {
        ApiKey::CreateAcls => {
            let req: CreateAclsRequest = r.decode()?;
            let results = req
                .creations
                .iter()
                .map(|_| create_acls_response::AclCreationResult::default().with_error_code(code))
                .collect();
            r.respond(&CreateAclsResponse::default().with_results(results))
        }
        ApiKey::DeleteAcls => {
            let req: DeleteAclsRequest = r.decode()?;
            let results = req
                .filters
                .iter()
                .map(|_| {
                    delete_acls_response::DeleteAclsFilterResult::default().with_error_code(code)
                })
                .collect();
            r.respond(&DeleteAclsResponse::default().with_filter_results(results))
        }
        ApiKey::ElectLeaders => {
            let req: ElectLeadersRequest = r.decode()?;
            let mut resp = ElectLeadersResponse::default();
            if r.version >= 1 {
                resp.error_code = code;
            }
            resp.replica_election_results = req
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    elect_leaders_response::ReplicaElectionResult::default()
                        .with_topic(t.topic)
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    elect_leaders_response::PartitionResult::default()
                                        .with_partition_id(*p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            r.respond(&resp)
        }
        ApiKey::AlterReplicaLogDirs => {
            let req: AlterReplicaLogDirsRequest = r.decode()?;
            let results = req
                .dirs
                .iter()
                .flat_map(|d| d.topics.iter())
                .map(|t| {
                    alter_replica_log_dirs_response::AlterReplicaLogDirTopicResult::default()
                        .with_topic_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    alter_replica_log_dirs_response::AlterReplicaLogDirPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            r.respond(&AlterReplicaLogDirsResponse::default().with_results(results))
        }
        ApiKey::AlterClientQuotas => {
            let req: AlterClientQuotasRequest = r.decode()?;
            let entries = req
                .entries
                .iter()
                .map(|e| {
                    alter_client_quotas_response::EntryData::default()
                        .with_error_code(code)
                        .with_entity(
                            e.entity
                                .iter()
                                .map(|x| {
                                    alter_client_quotas_response::EntityData::default()
                                        .with_entity_type(x.entity_type.clone())
                                        .with_entity_name(x.entity_name.clone())
                                })
                                .collect(),
                        )
                })
                .collect();
            r.respond(&AlterClientQuotasResponse::default().with_entries(entries))
        }
        ApiKey::AlterUserScramCredentials => {
            let req: AlterUserScramCredentialsRequest = r.decode()?;
            let users = req
                .deletions
                .iter()
                .map(|d| d.name.clone())
                .chain(req.upsertions.iter().map(|u| u.name.clone()));
            let results = users
                .map(|user| {
                    alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default(
                    )
                    .with_user(user)
                    .with_error_code(code)
                })
                .collect();
            r.respond(&AlterUserScramCredentialsResponse::default().with_results(results))
        }
        ApiKey::UpdateFeatures => {
            let req: UpdateFeaturesRequest = r.decode()?;
            let mut resp = UpdateFeaturesResponse::default().with_error_code(code);
            if r.version < 2 {
                resp.results = req
                    .feature_updates
                    .iter()
                    .map(|f| {
                        update_features_response::UpdatableFeatureResult::default()
                            .with_feature(f.feature.clone())
                            .with_error_code(code)
                    })
                    .collect();
            }
            r.respond(&resp)
        }
        ApiKey::DescribeLogDirs => {
            // Before v3 Kafka answers an unauthorized request with no log dirs.
            let mut resp = DescribeLogDirsResponse::default();
            if r.version >= 3 {
                resp.error_code = code;
            }
            r.respond(&resp)
        }
        _ => return Ok(None),
    };
    Ok(Some(d))
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

fn produce_denied(
    t: &produce_request::TopicProduceData,
    code: i16,
) -> produce_response::TopicProduceResponse {
    produce_response::TopicProduceResponse::default()
        .with_name(t.name.clone())
        .with_topic_id(t.topic_id)
        .with_partition_responses(
            t.partition_data
                .iter()
                .map(|p| {
                    produce_response::PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(code)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                })
                .collect(),
        )
}

fn produce(r: &Req<'_>) -> Step {
    let mut req: ProduceRequest = r.decode()?;
    let no_response = req.acks == 0;
    if let Some(id) = &req.transactional_id {
        if !r.may(Rt::TransactionalId, id, Op::Write) {
            if no_response {
                return Ok(Decision::Drop);
            }
            let resp = ProduceResponse::default().with_responses(
                req.topic_data
                    .iter()
                    .map(|t| produce_denied(t, TRANSACTIONAL_ID_AUTHORIZATION_FAILED))
                    .collect(),
            );
            return Ok(r.respond(&resp));
        }
    }
    let (kept, denied, order) = split(
        std::mem::take(&mut req.topic_data),
        |t| topic_key(&t.name, t.topic_id),
        |t| r.topic(&t.name, t.topic_id, Op::Write),
        produce_denied,
    );
    if denied.is_empty() {
        return Ok(pass());
    }
    if no_response {
        if kept.is_empty() {
            return Ok(Decision::Drop);
        }
        req.topic_data = kept;
        return r.forward(&req, None);
    }
    if kept.is_empty() {
        return Ok(r.respond(&ProduceResponse::default().with_responses(denied)));
    }
    req.topic_data = kept;
    r.forward(&req, Some(Fix::Produce { order, denied }))
}

fn fetch_partition_denied(partition: i32, code: i16) -> fetch_response::PartitionData {
    fetch_response::PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_aborted_transactions(None)
        .with_records(Some(Bytes::new()))
}

fn fetch_denied(
    t: &fetch_request::FetchTopic,
    code: i16,
) -> fetch_response::FetchableTopicResponse {
    fetch_response::FetchableTopicResponse::default()
        .with_topic(t.topic.clone())
        .with_topic_id(t.topic_id)
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| fetch_partition_denied(p.partition, code))
                .collect(),
        )
}

fn fetch(r: &Req<'_>) -> Step {
    let mut req: FetchRequest = r.decode()?;
    let replica = if r.version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    if replica >= 0 {
        // A follower fetch: inter-broker traffic.
        if r.cluster(Op::ClusterAction) {
            return Ok(pass());
        }
        let resp = FetchResponse::default().with_responses(
            req.topics
                .iter()
                .map(|t| fetch_denied(t, TOPIC_AUTHORIZATION_FAILED))
                .collect(),
        );
        return Ok(r.respond(&resp));
    }
    let (kept, denied, order) = split(
        std::mem::take(&mut req.topics),
        |t| topic_key(&t.topic, t.topic_id),
        |t| r.topic(&t.topic, t.topic_id, Op::Read),
        fetch_denied,
    );
    if denied.is_empty() {
        return Ok(pass());
    }
    // Even with nothing left the request is forwarded: the broker's fetch session (if any)
    // must see this epoch, and an empty fetch is answered at once.
    req.topics = kept;
    r.forward(&req, Some(Fix::Fetch { order, denied }))
}

fn metadata_denied(
    t: &metadata_request::MetadataRequestTopic,
    version: i16,
) -> metadata_response::MetadataResponseTopic {
    metadata_response::MetadataResponseTopic::default()
        .with_error_code(TOPIC_AUTHORIZATION_FAILED)
        // A lookup by id does not learn the name; before v12 the name is not nullable.
        .with_name(
            t.name
                .clone()
                .or_else(|| (version < 12).then(TopicName::default)),
        )
        .with_topic_id(t.topic_id)
        .with_topic_authorized_operations(OPS_OMITTED)
}

fn metadata(r: &Req<'_>) -> Step {
    let mut req: MetadataRequest = r.decode()?;
    let topic_ops = r.version >= 8 && req.include_topic_authorized_operations;
    let cluster_ops = (8..=10).contains(&r.version) && req.include_cluster_authorized_operations;
    let all = match &req.topics {
        None => true,
        Some(list) => r.version == 0 && list.is_empty(),
    };
    if all {
        return Ok(redact(Fix::Metadata(MetadataFix {
            all: true,
            order: Vec::new(),
            denied: Vec::new(),
            none_forwarded: false,
            topic_ops,
            cluster_ops,
        })));
    }
    let auto_create = r.version >= 4 && req.allow_auto_topic_creation;
    let may_create_any = auto_create && r.cluster(Op::Create);
    let mut unresolved = false;
    let mut no_create = false;
    let mut kept = Vec::new();
    let mut denied = Vec::new();
    let mut order = Vec::new();
    for t in req.topics.take().unwrap_or_default() {
        let name = t.name.as_ref().map(|n| n.to_string());
        order.push(topic_key(name.as_deref().unwrap_or(""), t.topic_id));
        let name = name.or_else(|| lookup(r.topics, t.topic_id));
        match name {
            // An id the gateway has not learnt: the broker answers it and the response is
            // checked by name.
            None => {
                unresolved = true;
                kept.push(t);
            }
            Some(n) if r.may(Rt::Topic, &n, Op::Describe) => {
                if auto_create && !may_create_any && !r.may(Rt::Topic, &n, Op::Create) {
                    no_create = true;
                }
                kept.push(t);
            }
            Some(_) => denied.push(metadata_denied(&t, r.version)),
        }
    }
    let none_forwarded = kept.is_empty() && r.version == 0;
    let rewrite = !denied.is_empty() || no_create;
    let fix = (!denied.is_empty() || unresolved || topic_ops || cluster_ops).then(|| {
        Fix::Metadata(MetadataFix {
            all: false,
            order,
            denied,
            none_forwarded,
            topic_ops,
            cluster_ops,
        })
    });
    if !rewrite {
        return Ok(Decision::Forward {
            frame: None,
            fix: fix.map(ResponseFix),
        });
    }
    req.topics = Some(kept);
    if no_create {
        req.allow_auto_topic_creation = false;
    }
    r.forward(&req, fix)
}

fn create_topics(r: &Req<'_>) -> Step {
    let mut req: CreateTopicsRequest = r.decode()?;
    let cluster = r.cluster(Op::Create);
    let (kept, denied, order) = split(
        std::mem::take(&mut req.topics),
        |t| topic_key(&t.name, Uuid::nil()),
        |t| {
            if cluster || r.may(Rt::Topic, &t.name, Op::Create) {
                Ok(())
            } else {
                Err(TOPIC_AUTHORIZATION_FAILED)
            }
        },
        |t, code| {
            create_topics_response::CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
        },
    );
    // From v5 the response carries the new topics' configs, which need DESCRIBE_CONFIGS.
    let hide = r.version >= 5
        && kept
            .iter()
            .any(|t| !r.may(Rt::Topic, &t.name, Op::DescribeConfigs));
    if denied.is_empty() {
        return Ok(if hide {
            redact(Fix::CreateTopics {
                order: Vec::new(),
                denied: Vec::new(),
            })
        } else {
            pass()
        });
    }
    if kept.is_empty() {
        return Ok(r.respond(&CreateTopicsResponse::default().with_topics(denied)));
    }
    req.topics = kept;
    r.forward(&req, Some(Fix::CreateTopics { order, denied }))
}

fn delete_topics(r: &Req<'_>) -> Step {
    let mut req: DeleteTopicsRequest = r.decode()?;
    let error = |name: Option<TopicName>, id: Uuid, code: i16| {
        delete_topics_response::DeletableTopicResult::default()
            .with_name(name)
            .with_topic_id(id)
            .with_error_code(code)
    };
    let (denied, order) = if r.version >= 6 {
        let (kept, denied, order) = split(
            std::mem::take(&mut req.topics),
            |t| topic_key(t.name.as_deref().map_or("", |n| n.as_str()), t.topic_id),
            |t| {
                let name = t.name.as_deref().map_or("", |n| n.as_str());
                r.topic(name, t.topic_id, Op::Delete)
            },
            |t, code| error(t.name.clone(), t.topic_id, code),
        );
        req.topics = kept;
        (denied, order)
    } else {
        let (kept, denied, order) = split(
            std::mem::take(&mut req.topic_names),
            |t| topic_key(t, Uuid::nil()),
            |t| r.topic(t, Uuid::nil(), Op::Delete),
            |t, code| error(Some(t.clone()), Uuid::nil(), code),
        );
        req.topic_names = kept;
        (denied, order)
    };
    if denied.is_empty() {
        return Ok(pass());
    }
    if req.topics.is_empty() && req.topic_names.is_empty() {
        return Ok(r.respond(&DeleteTopicsResponse::default().with_responses(denied)));
    }
    r.forward(&req, Some(Fix::DeleteTopics { order, denied }))
}

fn delete_records(r: &Req<'_>) -> Step {
    let mut req: DeleteRecordsRequest = r.decode()?;
    let (kept, denied, order) = split(
        std::mem::take(&mut req.topics),
        |t| topic_key(&t.name, Uuid::nil()),
        |t| r.topic(&t.name, Uuid::nil(), Op::Delete),
        |t, code| {
            delete_records_response::DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            delete_records_response::DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        },
    );
    if denied.is_empty() {
        return Ok(pass());
    }
    if kept.is_empty() {
        return Ok(r.respond(&DeleteRecordsResponse::default().with_topics(denied)));
    }
    req.topics = kept;
    r.forward(&req, Some(Fix::DeleteRecords { order, denied }))
}

fn create_partitions(r: &Req<'_>) -> Step {
    let mut req: CreatePartitionsRequest = r.decode()?;
    let (kept, denied, order) = split(
        std::mem::take(&mut req.topics),
        |t| topic_key(&t.name, Uuid::nil()),
        |t| r.topic(&t.name, Uuid::nil(), Op::Alter),
        |t, code| {
            create_partitions_response::CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
        },
    );
    if denied.is_empty() {
        return Ok(pass());
    }
    if kept.is_empty() {
        return Ok(r.respond(&CreatePartitionsResponse::default().with_results(denied)));
    }
    req.topics = kept;
    r.forward(&req, Some(Fix::CreatePartitions { order, denied }))
}

fn commit_denied(
    t: &offset_commit_request::OffsetCommitRequestTopic,
    code: i16,
) -> offset_commit_response::OffsetCommitResponseTopic {
    offset_commit_response::OffsetCommitResponseTopic::default()
        .with_name(t.name.clone())
        .with_topic_id(t.topic_id)
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    offset_commit_response::OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect(),
        )
}

fn offset_commit(r: &Req<'_>) -> Step {
    let mut req: OffsetCommitRequest = r.decode()?;
    if !r.may(Rt::Group, &req.group_id, Op::Read) {
        let topics = req
            .topics
            .iter()
            .map(|t| commit_denied(t, GROUP_AUTHORIZATION_FAILED))
            .collect();
        return Ok(r.respond(&OffsetCommitResponse::default().with_topics(topics)));
    }
    let (kept, denied, order) = split(
        std::mem::take(&mut req.topics),
        |t| topic_key(&t.name, t.topic_id),
        |t| r.topic(&t.name, t.topic_id, Op::Read),
        commit_denied,
    );
    if denied.is_empty() {
        return Ok(pass());
    }
    if kept.is_empty() {
        return Ok(r.respond(&OffsetCommitResponse::default().with_topics(denied)));
    }
    req.topics = kept;
    r.forward(&req, Some(Fix::OffsetCommit { order, denied }))
}

fn txn_commit_denied(
    t: &txn_offset_commit_request::TxnOffsetCommitRequestTopic,
    code: i16,
) -> txn_offset_commit_response::TxnOffsetCommitResponseTopic {
    txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
        .with_name(t.name.clone())
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect(),
        )
}

fn txn_offset_commit(r: &Req<'_>) -> Step {
    let mut req: TxnOffsetCommitRequest = r.decode()?;
    let whole = if !r.may(Rt::TransactionalId, &req.transactional_id, Op::Write) {
        Some(TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if !r.may(Rt::Group, &req.group_id, Op::Read) {
        Some(GROUP_AUTHORIZATION_FAILED)
    } else {
        None
    };
    if let Some(code) = whole {
        let topics = req
            .topics
            .iter()
            .map(|t| txn_commit_denied(t, code))
            .collect();
        return Ok(r.respond(&TxnOffsetCommitResponse::default().with_topics(topics)));
    }
    let (kept, denied, order) = split(
        std::mem::take(&mut req.topics),
        |t| topic_key(&t.name, Uuid::nil()),
        |t| r.topic(&t.name, Uuid::nil(), Op::Read),
        txn_commit_denied,
    );
    if denied.is_empty() {
        return Ok(pass());
    }
    if kept.is_empty() {
        return Ok(r.respond(&TxnOffsetCommitResponse::default().with_topics(denied)));
    }
    req.topics = kept;
    r.forward(&req, Some(Fix::TxnOffsetCommit { order, denied }))
}

fn offset_delete(r: &Req<'_>) -> Step {
    let mut req: OffsetDeleteRequest = r.decode()?;
    if !r.may(Rt::Group, &req.group_id, Op::Delete) {
        return Ok(r.respond(
            &OffsetDeleteResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED),
        ));
    }
    let (kept, denied, order) = split(
        std::mem::take(&mut req.topics),
        |t| topic_key(&t.name, Uuid::nil()),
        |t| r.topic(&t.name, Uuid::nil(), Op::Read),
        |t, code| {
            offset_delete_response::OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            offset_delete_response::OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        },
    );
    if denied.is_empty() {
        return Ok(pass());
    }
    if kept.is_empty() {
        return Ok(r.respond(&OffsetDeleteResponse::default().with_topics(denied)));
    }
    req.topics = kept;
    r.forward(&req, Some(Fix::OffsetDelete { order, denied }))
}

fn delete_groups(r: &Req<'_>) -> Step {
    let mut req: DeleteGroupsRequest = r.decode()?;
    let (kept, denied, order) = split(
        std::mem::take(&mut req.groups_names),
        |g| g.to_string(),
        |g| {
            if r.may(Rt::Group, g, Op::Delete) {
                Ok(())
            } else {
                Err(GROUP_AUTHORIZATION_FAILED)
            }
        },
        |g, code| {
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(code)
        },
    );
    if denied.is_empty() {
        return Ok(pass());
    }
    if kept.is_empty() {
        return Ok(r.respond(&DeleteGroupsResponse::default().with_results(denied)));
    }
    req.groups_names = kept;
    r.forward(&req, Some(Fix::DeleteGroups { order, denied }))
}

/// Config resource types (`ConfigResource.Type`).
mod config_type {
    pub const TOPIC: i8 = 2;
    pub const BROKER: i8 = 4;
    pub const BROKER_LOGGER: i8 = 8;
    pub const CLIENT_METRICS: i8 = 16;
    pub const GROUP: i8 = 32;
}

/// The error for `op` on a config resource, `None` when allowed. Broker, broker-logger,
/// client-metrics (and unknown) resources are the cluster's.
fn config_denied(permits: &dyn Permits, resource_type: i8, name: &str, op: Op) -> Option<i16> {
    let (rt, name, code) = match resource_type {
        config_type::TOPIC => (Rt::Topic, name, TOPIC_AUTHORIZATION_FAILED),
        config_type::GROUP => (Rt::Group, name, GROUP_AUTHORIZATION_FAILED),
        config_type::BROKER | config_type::BROKER_LOGGER | config_type::CLIENT_METRICS | _ => {
            (Rt::Cluster, CLUSTER_NAME, CLUSTER_AUTHORIZATION_FAILED)
        }
    };
    (!permits.permits(rt, name, op)).then_some(code)
}

fn alter_configs(r: &Req<'_>) -> Step {
    let mut req: AlterConfigsRequest = r.decode()?;
    let (kept, denied, order) = split(
        std::mem::take(&mut req.resources),
        |c| (c.resource_type, c.resource_name.to_string()),
        |c| match config_denied(
            r.permits,
            c.resource_type,
            &c.resource_name,
            Op::AlterConfigs,
        ) {
            Some(code) => Err(code),
            None => Ok(()),
        },
        |c, code| {
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_resource_type(c.resource_type)
                .with_resource_name(c.resource_name.clone())
        },
    );
    if denied.is_empty() {
        return Ok(pass());
    }
    if kept.is_empty() {
        return Ok(r.respond(&AlterConfigsResponse::default().with_responses(denied)));
    }
    req.resources = kept;
    r.forward(&req, Some(Fix::AlterConfigs { order, denied }))
}

fn incremental_alter_configs(r: &Req<'_>) -> Step {
    let mut req: IncrementalAlterConfigsRequest = r.decode()?;
    let (kept, denied, order) = split(
        std::mem::take(&mut req.resources),
        |c| (c.resource_type, c.resource_name.to_string()),
        |c| match config_denied(
            r.permits,
            c.resource_type,
            &c.resource_name,
            Op::AlterConfigs,
        ) {
            Some(code) => Err(code),
            None => Ok(()),
        },
        |c, code| {
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_resource_type(c.resource_type)
                .with_resource_name(c.resource_name.clone())
        },
    );
    if denied.is_empty() {
        return Ok(pass());
    }
    if kept.is_empty() {
        return Ok(r.respond(&IncrementalAlterConfigsResponse::default().with_responses(denied)));
    }
    req.resources = kept;
    r.forward(&req, Some(Fix::IncrementalAlterConfigs { order, denied }))
}

fn offset_fetch(r: &Req<'_>) -> Step {
    let req: OffsetFetchRequest = r.decode()?;
    let mut all_topics = HashSet::new();
    if r.version >= 8 {
        let mut any_denied = false;
        let mut any_allowed = false;
        for g in &req.groups {
            if !r.may(Rt::Group, &g.group_id, Op::Describe) {
                any_denied = true;
                continue;
            }
            any_allowed = true;
            match &g.topics {
                None => {
                    all_topics.insert(g.group_id.to_string());
                }
                Some(ts) => {
                    any_denied |= ts
                        .iter()
                        .any(|t| r.topic(&t.name, t.topic_id, Op::Describe).is_err())
                }
            }
        }
        if !any_allowed && !req.groups.is_empty() {
            let groups = req
                .groups
                .iter()
                .map(|g| {
                    offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(GROUP_AUTHORIZATION_FAILED)
                })
                .collect();
            return Ok(r.respond(&OffsetFetchResponse::default().with_groups(groups)));
        }
        return Ok(if any_denied || !all_topics.is_empty() {
            redact(Fix::OffsetFetch { all_topics })
        } else {
            pass()
        });
    }
    if !r.may(Rt::Group, &req.group_id, Op::Describe) {
        let mut resp = OffsetFetchResponse::default();
        if r.version >= 2 {
            resp.error_code = GROUP_AUTHORIZATION_FAILED;
        } else {
            // v1 has no top-level error: every requested partition carries it.
            resp.topics = req
                .topics
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    offset_fetch_response::OffsetFetchResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|p| offset_fetch_denied(*p, GROUP_AUTHORIZATION_FAILED))
                                .collect(),
                        )
                })
                .collect();
        }
        return Ok(r.respond(&resp));
    }
    match &req.topics {
        None => {
            all_topics.insert(req.group_id.to_string());
            Ok(redact(Fix::OffsetFetch { all_topics }))
        }
        Some(ts) if ts.iter().any(|t| !r.may(Rt::Topic, &t.name, Op::Describe)) => {
            Ok(redact(Fix::OffsetFetch { all_topics }))
        }
        Some(_) => Ok(pass()),
    }
}

fn offset_fetch_denied(
    partition: i32,
    code: i16,
) -> offset_fetch_response::OffsetFetchResponsePartition {
    offset_fetch_response::OffsetFetchResponsePartition::default()
        .with_partition_index(partition)
        .with_committed_offset(-1)
        .with_committed_leader_epoch(-1)
        .with_metadata(Some(StrBytes::default()))
        .with_error_code(code)
}

/// FindCoordinator key types.
mod key_type {
    pub const GROUP: i8 = 0;
    pub const TRANSACTION: i8 = 1;
    pub const SHARE: i8 = 2;
}

/// The error for looking up the coordinator of `key`, `None` when allowed (unknown key types
/// are left to the broker, which rejects them).
fn coordinator_denied(permits: &dyn Permits, kind: i8, key: &str) -> Option<i16> {
    let (rt, name, op, code) = match kind {
        key_type::GROUP => (Rt::Group, key, Op::Describe, GROUP_AUTHORIZATION_FAILED),
        key_type::TRANSACTION => (
            Rt::TransactionalId,
            key,
            Op::Describe,
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        ),
        key_type::SHARE => (
            Rt::Cluster,
            CLUSTER_NAME,
            Op::ClusterAction,
            CLUSTER_AUTHORIZATION_FAILED,
        ),
        _ => return None,
    };
    (!permits.permits(rt, name, op)).then_some(code)
}

fn coordinator_error(c: &mut find_coordinator_response::Coordinator, code: i16) {
    c.node_id = BrokerId(-1);
    c.host = StrBytes::default();
    c.port = -1;
    c.error_code = code;
    c.error_message = None;
}

fn find_coordinator(r: &Req<'_>) -> Step {
    let req: FindCoordinatorRequest = r.decode()?;
    let kind = if r.version >= 1 {
        req.key_type
    } else {
        key_type::GROUP
    };
    if r.version < 4 {
        return Ok(match coordinator_denied(r.permits, kind, &req.key) {
            None => pass(),
            Some(code) => r.respond(
                &FindCoordinatorResponse::default()
                    .with_error_code(code)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1),
            ),
        });
    }
    let denied: Vec<_> = req
        .coordinator_keys
        .iter()
        .map(|k| coordinator_denied(r.permits, kind, k))
        .collect();
    if denied.iter().all(Option::is_none) {
        return Ok(pass());
    }
    if denied.iter().all(Option::is_some) {
        let coordinators = req
            .coordinator_keys
            .iter()
            .zip(&denied)
            .map(|(k, code)| {
                let mut c = find_coordinator_response::Coordinator::default().with_key(k.clone());
                coordinator_error(&mut c, code.unwrap_or(GROUP_AUTHORIZATION_FAILED));
                c
            })
            .collect();
        return Ok(r.respond(&FindCoordinatorResponse::default().with_coordinators(coordinators)));
    }
    Ok(redact(Fix::FindCoordinator { key_type: kind }))
}

fn add_partitions_to_txn(r: &Req<'_>) -> Step {
    if r.version >= 4 {
        // Batched verification requests are broker to broker.
        return r.cluster_only(Op::ClusterAction);
    }
    let req: AddPartitionsToTxnRequest = r.decode()?;
    let txn_ok = r.may(
        Rt::TransactionalId,
        &req.v3_and_below_transactional_id,
        Op::Write,
    );
    let topic_errors: Vec<Option<i16>> = req
        .v3_and_below_topics
        .iter()
        .map(|t| r.topic(&t.name, Uuid::nil(), Op::Write).err())
        .collect();
    if txn_ok && topic_errors.iter().all(Option::is_none) {
        return Ok(pass());
    }
    // All or nothing: the partitions that were allowed are not attempted.
    let results = req
        .v3_and_below_topics
        .iter()
        .zip(&topic_errors)
        .map(|(t, err)| {
            let code = if !txn_ok {
                TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            } else {
                err.unwrap_or(OPERATION_NOT_ATTEMPTED)
            };
            add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    Ok(r.respond(
        &AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
    ))
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
    topics: &TopicNames,
) -> anyhow::Result<Bytes> {
    let key =
        ApiKey::try_from(api_key).map_err(|()| anyhow::anyhow!("api key {api_key} is unknown"))?;
    anyhow::ensure!(frame.len() >= 4, "response frame without a length prefix");
    let mut body = frame.slice(4..);
    let header = ResponseHeader::decode(&mut body, key.response_header_version(version))?;
    let v = version;
    let p = permits;
    let out = match &fix.0 {
        Fix::Produce { order, denied } => edit(&mut body, v, |m: &mut ProduceResponse| {
            merge(&mut m.responses, denied, order, |t| {
                topic_key(&t.name, t.topic_id)
            })
        })?,
        Fix::Fetch { order, denied } => edit(&mut body, v, |m: &mut FetchResponse| {
            merge(&mut m.responses, denied, order, |t| {
                topic_key(&t.topic, t.topic_id)
            })
        })?,
        Fix::Metadata(f) => edit(&mut body, v, |m: &mut MetadataResponse| {
            fix_metadata(f, m, v, p, topics)
        })?,
        Fix::CreateTopics { order, denied } => {
            edit(&mut body, v, |m: &mut CreateTopicsResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                });
                if v >= 5 {
                    for t in m.topics.iter_mut().filter(|t| t.error_code == 0) {
                        if !p.permits(Rt::Topic, &t.name, Op::DescribeConfigs) {
                            t.topic_config_error_code = TOPIC_AUTHORIZATION_FAILED;
                            t.configs = Some(Vec::new());
                            t.num_partitions = -1;
                            t.replication_factor = -1;
                        }
                    }
                }
            })?
        }
        Fix::DeleteTopics { order, denied } => {
            edit(&mut body, v, |m: &mut DeleteTopicsResponse| {
                merge(&mut m.responses, denied, order, |t| {
                    topic_key(t.name.as_deref().map_or("", |n| n.as_str()), t.topic_id)
                })
            })?
        }
        Fix::DeleteRecords { order, denied } => {
            edit(&mut body, v, |m: &mut DeleteRecordsResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                })
            })?
        }
        Fix::CreatePartitions { order, denied } => {
            edit(&mut body, v, |m: &mut CreatePartitionsResponse| {
                merge(&mut m.results, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                })
            })?
        }
        Fix::OffsetCommit { order, denied } => {
            edit(&mut body, v, |m: &mut OffsetCommitResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, t.topic_id)
                })
            })?
        }
        Fix::TxnOffsetCommit { order, denied } => {
            edit(&mut body, v, |m: &mut TxnOffsetCommitResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                })
            })?
        }
        Fix::OffsetDelete { order, denied } => {
            edit(&mut body, v, |m: &mut OffsetDeleteResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                })
            })?
        }
        Fix::DeleteGroups { order, denied } => {
            edit(&mut body, v, |m: &mut DeleteGroupsResponse| {
                merge(&mut m.results, denied, order, |g| g.group_id.to_string())
            })?
        }
        Fix::AlterConfigs { order, denied } => {
            edit(&mut body, v, |m: &mut AlterConfigsResponse| {
                merge(&mut m.responses, denied, order, |c| {
                    (c.resource_type, c.resource_name.to_string())
                })
            })?
        }
        Fix::IncrementalAlterConfigs { order, denied } => {
            edit(&mut body, v, |m: &mut IncrementalAlterConfigsResponse| {
                merge(&mut m.responses, denied, order, |c| {
                    (c.resource_type, c.resource_name.to_string())
                })
            })?
        }
        Fix::ListOffsets => edit(&mut body, v, |m: &mut ListOffsetsResponse| {
            for t in &mut m.topics {
                if !p.permits(Rt::Topic, &t.name, Op::Describe) {
                    for x in &mut t.partitions {
                        x.error_code = TOPIC_AUTHORIZATION_FAILED;
                        x.timestamp = -1;
                        x.offset = -1;
                        x.leader_epoch = -1;
                    }
                }
            }
        })?,
        Fix::OffsetForLeaderEpoch => edit(&mut body, v, |m: &mut OffsetForLeaderEpochResponse| {
            for t in &mut m.topics {
                if !p.permits(Rt::Topic, &t.topic, Op::Describe) {
                    for x in &mut t.partitions {
                        x.error_code = TOPIC_AUTHORIZATION_FAILED;
                        x.leader_epoch = -1;
                        x.end_offset = -1;
                    }
                }
            }
        })?,
        Fix::DescribeProducers => edit(&mut body, v, |m: &mut DescribeProducersResponse| {
            for t in &mut m.topics {
                if !p.permits(Rt::Topic, &t.name, Op::Read) {
                    for x in &mut t.partitions {
                        x.error_code = TOPIC_AUTHORIZATION_FAILED;
                        x.error_message = None;
                        x.active_producers.clear();
                    }
                }
            }
        })?,
        Fix::DescribeConfigs => edit(&mut body, v, |m: &mut DescribeConfigsResponse| {
            for c in &mut m.results {
                if let Some(code) =
                    config_denied(p, c.resource_type, &c.resource_name, Op::DescribeConfigs)
                {
                    c.error_code = code;
                    c.error_message = None;
                    c.configs.clear();
                }
            }
        })?,
        Fix::DescribeGroups => edit(&mut body, v, |m: &mut DescribeGroupsResponse| {
            for g in &mut m.groups {
                if !p.permits(Rt::Group, &g.group_id, Op::Describe) {
                    *g = describe_groups_response::DescribedGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(GROUP_AUTHORIZATION_FAILED);
                } else if g.authorized_operations != OPS_OMITTED {
                    g.authorized_operations = ops_bits(p, Rt::Group, &g.group_id, GROUP_OPS);
                }
            }
        })?,
        Fix::ConsumerGroupDescribe => {
            edit(&mut body, v, |m: &mut ConsumerGroupDescribeResponse| {
                for g in &mut m.groups {
                    if !p.permits(Rt::Group, &g.group_id, Op::Describe) {
                        *g = consumer_group_describe_response::DescribedGroup::default()
                            .with_group_id(g.group_id.clone())
                            .with_error_code(GROUP_AUTHORIZATION_FAILED);
                    } else if g.authorized_operations != OPS_OMITTED {
                        g.authorized_operations = ops_bits(p, Rt::Group, &g.group_id, GROUP_OPS);
                    }
                }
            })?
        }
        Fix::ShareGroupDescribe => edit(&mut body, v, |m: &mut ShareGroupDescribeResponse| {
            for g in &mut m.groups {
                if !p.permits(Rt::Group, &g.group_id, Op::Describe) {
                    *g = share_group_describe_response::DescribedGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(GROUP_AUTHORIZATION_FAILED);
                } else if g.authorized_operations != OPS_OMITTED {
                    g.authorized_operations = ops_bits(p, Rt::Group, &g.group_id, GROUP_OPS);
                }
            }
        })?,
        Fix::OffsetFetch { all_topics } => edit(&mut body, v, |m: &mut OffsetFetchResponse| {
            fix_offset_fetch(m, v, all_topics, p, topics)
        })?,
        Fix::FindCoordinator { key_type } => {
            edit(&mut body, v, |m: &mut FindCoordinatorResponse| {
                for c in &mut m.coordinators {
                    if let Some(code) = coordinator_denied(p, *key_type, &c.key) {
                        coordinator_error(c, code);
                    }
                }
            })?
        }
        Fix::DescribeTransactions => edit(&mut body, v, |m: &mut DescribeTransactionsResponse| {
            for s in &mut m.transaction_states {
                if !p.permits(Rt::TransactionalId, &s.transactional_id, Op::Describe) {
                    *s = describe_transactions_response::TransactionState::default()
                        .with_transactional_id(s.transactional_id.clone())
                        .with_error_code(TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
                } else {
                    s.topics
                        .retain(|t| p.permits(Rt::Topic, &t.topic, Op::Describe));
                }
            }
        })?,
        Fix::ListTransactions => edit(&mut body, v, |m: &mut ListTransactionsResponse| {
            m.transaction_states
                .retain(|s| p.permits(Rt::TransactionalId, &s.transactional_id, Op::Describe));
        })?,
        Fix::ListGroups => edit(&mut body, v, |m: &mut ListGroupsResponse| {
            m.groups
                .retain(|g| p.permits(Rt::Group, &g.group_id, Op::Describe));
        })?,
        Fix::DescribeTopicPartitions { all } => {
            edit(&mut body, v, |m: &mut DescribeTopicPartitionsResponse| {
                let allowed = |t: &describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic| {
                    let name = t.name.as_deref().map_or("", |n| n.as_str());
                    topic_check(p, topics, name, t.topic_id, Op::Describe).is_ok()
                };
                if *all {
                    m.topics.retain(|t| allowed(t));
                }
                for t in &mut m.topics {
                    if !allowed(t) {
                        *t = describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                            .with_topic_authorized_operations(OPS_OMITTED);
                    } else if t.topic_authorized_operations != OPS_OMITTED {
                        let name = t.name.as_deref().map_or("", |n| n.as_str()).to_string();
                        t.topic_authorized_operations = ops_bits(p, Rt::Topic, &name, TOPIC_OPS);
                    }
                }
            })?
        }
        Fix::DescribeShareGroupOffsets { all_topics } => {
            edit(&mut body, v, |m: &mut DescribeShareGroupOffsetsResponse| {
                for g in &mut m.groups {
                    if !p.permits(Rt::Group, &g.group_id, Op::Describe) {
                        g.error_code = GROUP_AUTHORIZATION_FAILED;
                        g.error_message = None;
                        g.topics.clear();
                        continue;
                    }
                    let allowed = |t: &describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseTopic| {
                        topic_check(p, topics, &t.topic_name, t.topic_id, Op::Describe).is_ok()
                    };
                    if all_topics.contains(g.group_id.as_str()) {
                        g.topics.retain(|t| allowed(t));
                    }
                    for t in &mut g.topics {
                        if !allowed(t) {
                            for x in &mut t.partitions {
                                x.error_code = TOPIC_AUTHORIZATION_FAILED;
                                x.error_message = None;
                                x.start_offset = -1;
                                x.leader_epoch = -1;
                            }
                        }
                    }
                }
            })?
        }
        Fix::DescribeCluster => edit(&mut body, v, |m: &mut DescribeClusterResponse| {
            if m.cluster_authorized_operations != OPS_OMITTED {
                m.cluster_authorized_operations =
                    ops_bits(p, Rt::Cluster, CLUSTER_NAME, CLUSTER_OPS);
            }
        })?,
    };
    Ok(response_frame(key, version, header.correlation_id, &out))
}

/// Decodes a response body, lets `f` change it, encodes it again.
fn edit<T: Decodable + Encodable>(
    body: &mut Bytes,
    version: i16,
    f: impl FnOnce(&mut T),
) -> anyhow::Result<BytesMut> {
    let mut msg = T::decode(body, version)?;
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

fn fix_metadata(
    f: &MetadataFix,
    m: &mut MetadataResponse,
    version: i16,
    p: &dyn Permits,
    topics: &TopicNames,
) {
    if f.none_forwarded {
        m.topics.clear();
    }
    // Redact what the broker returned (ids the request side could not resolve, all topics).
    let mut kept = Vec::with_capacity(m.topics.len());
    for mut t in std::mem::take(&mut m.topics) {
        let name = t
            .name
            .as_ref()
            .map(|n| n.to_string())
            .or_else(|| lookup(topics, t.topic_id));
        let allowed = name
            .as_deref()
            .is_none_or(|n| p.permits(Rt::Topic, n, Op::Describe));
        if !allowed {
            if f.all {
                continue;
            }
            t = metadata_response::MetadataResponseTopic::default()
                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                .with_name((version < 12).then(TopicName::default))
                .with_topic_id(t.topic_id)
                .with_topic_authorized_operations(OPS_OMITTED);
        } else if f.topic_ops && t.topic_authorized_operations != OPS_OMITTED {
            if let Some(n) = &name {
                t.topic_authorized_operations = ops_bits(p, Rt::Topic, n, TOPIC_OPS);
            }
        }
        kept.push(t);
    }
    m.topics = kept;
    if !f.all {
        merge(&mut m.topics, &f.denied, &f.order, |t| {
            topic_key(t.name.as_deref().map_or("", |n| n.as_str()), t.topic_id)
        });
    }
    if f.cluster_ops && m.cluster_authorized_operations != OPS_OMITTED {
        m.cluster_authorized_operations = ops_bits(p, Rt::Cluster, CLUSTER_NAME, CLUSTER_OPS);
    }
}

fn fix_offset_fetch(
    m: &mut OffsetFetchResponse,
    version: i16,
    all_topics: &HashSet<String>,
    p: &dyn Permits,
    topics: &TopicNames,
) {
    if version >= 8 {
        for g in &mut m.groups {
            if !p.permits(Rt::Group, &g.group_id, Op::Describe) {
                g.error_code = GROUP_AUTHORIZATION_FAILED;
                g.topics.clear();
                continue;
            }
            let allowed = |t: &offset_fetch_response::OffsetFetchResponseTopics| {
                topic_check(p, topics, &t.name, t.topic_id, Op::Describe).is_ok()
            };
            if all_topics.contains(g.group_id.as_str()) {
                g.topics.retain(|t| allowed(t));
            }
            for t in &mut g.topics {
                if !allowed(t) {
                    for x in &mut t.partitions {
                        x.committed_offset = -1;
                        x.committed_leader_epoch = -1;
                        x.metadata = Some(StrBytes::default());
                        x.error_code = TOPIC_AUTHORIZATION_FAILED;
                    }
                }
            }
        }
        return;
    }
    let allowed = |t: &offset_fetch_response::OffsetFetchResponseTopic| {
        p.permits(Rt::Topic, &t.name, Op::Describe)
    };
    if !all_topics.is_empty() {
        m.topics.retain(|t| allowed(t));
    }
    for t in &mut m.topics {
        if !allowed(t) {
            for x in &mut t.partitions {
                *x = offset_fetch_denied(x.partition_index, TOPIC_AUTHORIZATION_FAILED);
            }
        }
    }
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
