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

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use uuid::Uuid;

use crate::acl::{Operation as Op, Permits, ResourceType as Rt, CLUSTER_NAME};
use crate::intercept::{response_frame, TopicLookup};

/// Kafka error codes the authorizer answers with.
pub mod codes {
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
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
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

fn redact(fix: Fix) -> Decision {
    Decision::Forward {
        frame: None,
        fix: Some(ResponseFix(fix)),
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
        // Always completed: besides the groups, the members' subscriptions and assignments
        // name topics, which the principal must be allowed to describe (as in Kafka).
        ConsumerGroupDescribe => Ok(redact(Fix::ConsumerGroupDescribe)),
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
                return Ok(Decision::ForwardThenClose {
                    frame: None,
                    reason: "acks=0 Produce with a denied transactional id".into(),
                });
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
        let reason = format!("acks=0 Produce to {} denied topic(s)", denied.len());
        if kept.is_empty() {
            return Ok(Decision::ForwardThenClose {
                frame: None,
                reason,
            });
        }
        req.topic_data = kept;
        return match r.forward(&req, None)? {
            Decision::Forward { frame, .. } => Ok(Decision::ForwardThenClose { frame, reason }),
            other => Ok(other),
        };
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
    #[cfg(test)]
    pub const BROKER: i8 = 4;
    pub const GROUP: i8 = 32;
}

/// The error for `op` on a config resource, `None` when allowed. Broker, broker-logger,
/// client-metrics (and unknown) resources are the cluster's.
fn config_denied(permits: &dyn Permits, resource_type: i8, name: &str, op: Op) -> Option<i16> {
    let (rt, name, code) = match resource_type {
        config_type::TOPIC => (Rt::Topic, name, TOPIC_AUTHORIZATION_FAILED),
        config_type::GROUP => (Rt::Group, name, GROUP_AUTHORIZATION_FAILED),
        // BROKER, BROKER_LOGGER, CLIENT_METRICS, and types the gateway does not know (the
        // broker rejects those; only a cluster administrator learns that).
        _ => (Rt::Cluster, CLUSTER_NAME, CLUSTER_AUTHORIZATION_FAILED),
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
    topics: &dyn TopicLookup,
) -> anyhow::Result<Bytes> {
    let key =
        ApiKey::try_from(api_key).map_err(|()| anyhow::anyhow!("api key {api_key} is unknown"))?;
    anyhow::ensure!(frame.len() >= 4, "response frame without a length prefix");
    let mut body = frame.slice(4..);
    let header = crate::schema::decode_response_header(key, version, &mut body)?;
    let v = version;
    let p = permits;
    let out = match &fix.0 {
        Fix::Produce { order, denied } => edit(&mut body, key, v, |m: &mut ProduceResponse| {
            merge(&mut m.responses, denied, order, |t| {
                topic_key(&t.name, t.topic_id)
            })
        })?,
        Fix::Fetch { order, denied } => edit(&mut body, key, v, |m: &mut FetchResponse| {
            merge(&mut m.responses, denied, order, |t| {
                topic_key(&t.topic, t.topic_id)
            })
        })?,
        Fix::Metadata(f) => edit(&mut body, key, v, |m: &mut MetadataResponse| {
            fix_metadata(f, m, v, p, topics)
        })?,
        Fix::CreateTopics { order, denied } => {
            edit(&mut body, key, v, |m: &mut CreateTopicsResponse| {
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
            edit(&mut body, key, v, |m: &mut DeleteTopicsResponse| {
                merge(&mut m.responses, denied, order, |t| {
                    topic_key(t.name.as_deref().map_or("", |n| n.as_str()), t.topic_id)
                })
            })?
        }
        Fix::DeleteRecords { order, denied } => {
            edit(&mut body, key, v, |m: &mut DeleteRecordsResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                })
            })?
        }
        Fix::CreatePartitions { order, denied } => {
            edit(&mut body, key, v, |m: &mut CreatePartitionsResponse| {
                merge(&mut m.results, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                })
            })?
        }
        Fix::OffsetCommit { order, denied } => {
            edit(&mut body, key, v, |m: &mut OffsetCommitResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, t.topic_id)
                })
            })?
        }
        Fix::TxnOffsetCommit { order, denied } => {
            edit(&mut body, key, v, |m: &mut TxnOffsetCommitResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                })
            })?
        }
        Fix::OffsetDelete { order, denied } => {
            edit(&mut body, key, v, |m: &mut OffsetDeleteResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                })
            })?
        }
        Fix::DeleteGroups { order, denied } => {
            edit(&mut body, key, v, |m: &mut DeleteGroupsResponse| {
                merge(&mut m.results, denied, order, |g| g.group_id.to_string())
            })?
        }
        Fix::AlterConfigs { order, denied } => {
            edit(&mut body, key, v, |m: &mut AlterConfigsResponse| {
                merge(&mut m.responses, denied, order, |c| {
                    (c.resource_type, c.resource_name.to_string())
                })
            })?
        }
        Fix::IncrementalAlterConfigs { order, denied } => edit(
            &mut body,
            key,
            v,
            |m: &mut IncrementalAlterConfigsResponse| {
                merge(&mut m.responses, denied, order, |c| {
                    (c.resource_type, c.resource_name.to_string())
                })
            },
        )?,
        Fix::ListOffsets => edit(&mut body, key, v, |m: &mut ListOffsetsResponse| {
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
        Fix::OffsetForLeaderEpoch => {
            edit(&mut body, key, v, |m: &mut OffsetForLeaderEpochResponse| {
                for t in &mut m.topics {
                    if !p.permits(Rt::Topic, &t.topic, Op::Describe) {
                        for x in &mut t.partitions {
                            x.error_code = TOPIC_AUTHORIZATION_FAILED;
                            x.leader_epoch = -1;
                            x.end_offset = -1;
                        }
                    }
                }
            })?
        }
        Fix::DescribeProducers => edit(&mut body, key, v, |m: &mut DescribeProducersResponse| {
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
        Fix::DescribeConfigs => edit(&mut body, key, v, |m: &mut DescribeConfigsResponse| {
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
        Fix::DescribeGroups => edit(&mut body, key, v, |m: &mut DescribeGroupsResponse| {
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
            edit(
                &mut body,
                key,
                v,
                |m: &mut ConsumerGroupDescribeResponse| {
                    for g in &mut m.groups {
                        let hidden_topic = || {
                            g.members.iter().any(|member| {
                                let assigned = [&member.assignment, &member.target_assignment]
                                    .into_iter()
                                    .flat_map(|a| a.topic_partitions.iter())
                                    .map(|t| (t.topic_name.as_str(), t.topic_id));
                                member
                                    .subscribed_topic_names
                                    .iter()
                                    .map(|t| (t.as_str(), Uuid::nil()))
                                    .chain(assigned)
                                    .any(|(name, id)| {
                                        topic_check(p, topics, name, id, Op::Describe).is_err()
                                    })
                            })
                        };
                        if !p.permits(Rt::Group, &g.group_id, Op::Describe) {
                            *g = consumer_group_describe_response::DescribedGroup::default()
                                .with_group_id(g.group_id.clone())
                                .with_error_code(GROUP_AUTHORIZATION_FAILED);
                        } else if g.error_code == 0 && hidden_topic() {
                            // Kafka's answer: the group, but none of its members' topics.
                            *g = consumer_group_describe_response::DescribedGroup::default()
                            .with_group_id(g.group_id.clone())
                            .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                            .with_error_message(Some(StrBytes::from_static_str(
                                "The described group uses topics that the client is not authorized to describe.",
                            )));
                        } else if g.authorized_operations != OPS_OMITTED {
                            g.authorized_operations =
                                ops_bits(p, Rt::Group, &g.group_id, GROUP_OPS);
                        }
                    }
                },
            )?
        }
        Fix::ShareGroupDescribe => {
            edit(&mut body, key, v, |m: &mut ShareGroupDescribeResponse| {
                for g in &mut m.groups {
                    if !p.permits(Rt::Group, &g.group_id, Op::Describe) {
                        *g = share_group_describe_response::DescribedGroup::default()
                            .with_group_id(g.group_id.clone())
                            .with_error_code(GROUP_AUTHORIZATION_FAILED);
                    } else if g.authorized_operations != OPS_OMITTED {
                        g.authorized_operations = ops_bits(p, Rt::Group, &g.group_id, GROUP_OPS);
                    }
                }
            })?
        }
        Fix::OffsetFetch { all_topics } => {
            edit(&mut body, key, v, |m: &mut OffsetFetchResponse| {
                fix_offset_fetch(m, v, all_topics, p, topics)
            })?
        }
        Fix::FindCoordinator { key_type } => {
            edit(&mut body, key, v, |m: &mut FindCoordinatorResponse| {
                for c in &mut m.coordinators {
                    if let Some(code) = coordinator_denied(p, *key_type, &c.key) {
                        coordinator_error(c, code);
                    }
                }
            })?
        }
        Fix::DescribeTransactions => {
            edit(&mut body, key, v, |m: &mut DescribeTransactionsResponse| {
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
            })?
        }
        Fix::ListTransactions => edit(&mut body, key, v, |m: &mut ListTransactionsResponse| {
            m.transaction_states
                .retain(|s| p.permits(Rt::TransactionalId, &s.transactional_id, Op::Describe));
        })?,
        Fix::ListGroups => edit(&mut body, key, v, |m: &mut ListGroupsResponse| {
            m.groups
                .retain(|g| p.permits(Rt::Group, &g.group_id, Op::Describe));
        })?,
        Fix::DescribeTopicPartitions { all } => {
            edit(
                &mut body,
                key,
                v,
                |m: &mut DescribeTopicPartitionsResponse| {
                    let allowed = |t: &describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic| {
                    let name = t.name.as_deref().map_or("", |n| n.as_str());
                    topic_check(p, topics, name, t.topic_id, Op::Describe).is_ok()
                };
                    if *all {
                        m.topics.retain(|t| allowed(t));
                    }
                    // The cursor names the first topic of the next page: never one the principal
                    // may not see. Ending the listing there is the safe answer (a gateway cannot
                    // page past a topic it hides without naming it).
                    let hidden_cursor = m.next_cursor.as_ref().is_some_and(|c| {
                        topic_check(p, topics, c.topic_name.as_str(), Uuid::nil(), Op::Describe)
                            .is_err()
                    });
                    if hidden_cursor {
                        m.next_cursor = None;
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
                            t.topic_authorized_operations =
                                ops_bits(p, Rt::Topic, &name, TOPIC_OPS);
                        }
                    }
                },
            )?
        }
        Fix::DescribeShareGroupOffsets { all_topics } => edit(
            &mut body,
            key,
            v,
            |m: &mut DescribeShareGroupOffsetsResponse| {
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
            },
        )?,
        Fix::DescribeCluster => edit(&mut body, key, v, |m: &mut DescribeClusterResponse| {
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

fn fix_metadata(
    f: &MetadataFix,
    m: &mut MetadataResponse,
    version: i16,
    p: &dyn Permits,
    topics: &dyn TopicLookup,
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
            let hidden = name.as_deref().is_some_and(|n| !p.visible(Rt::Topic, n));
            let code = match (hidden, t.topic_id.is_nil()) {
                (false, _) => TOPIC_AUTHORIZATION_FAILED,
                (true, true) => UNKNOWN_TOPIC_OR_PARTITION,
                (true, false) => UNKNOWN_TOPIC_ID,
            };
            t = metadata_response::MetadataResponseTopic::default()
                .with_error_code(code)
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
    topics: &dyn TopicLookup,
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

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    use super::*;
    use std::sync::RwLock;

    /// Allows exactly the listed (resource type, name, operation) triples.
    #[derive(Default)]
    struct Acl(HashSet<(Rt, String, Op)>);

    impl Acl {
        fn allow(mut self, rt: Rt, name: &str, op: Op) -> Self {
            self.0.insert((rt, name.to_string(), op));
            self
        }
    }

    impl Permits for Acl {
        fn permits(&self, rt: Rt, name: &str, op: Op) -> bool {
            self.0.contains(&(rt, name.to_string(), op))
        }
    }

    fn names(pairs: &[(Uuid, &str)]) -> crate::intercept::TopicNames {
        RwLock::new(pairs.iter().map(|(id, n)| (*id, n.to_string())).collect())
    }

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    fn tn(v: &str) -> TopicName {
        TopicName(s(v))
    }

    /// A request frame: length prefix, header (client id "app"), body.
    fn frame<T: Encodable>(key: ApiKey, version: i16, msg: &T) -> (Bytes, usize) {
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

    fn check<T: Encodable>(
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
    fn rewritten<T: Decodable + Encodable>(
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

    fn response<T: Decodable>(key: ApiKey, version: i16, f: &Bytes) -> T {
        let len = i32::from_be_bytes(f[..4].try_into().unwrap()) as usize;
        assert_eq!(len, f.len() - 4, "length prefix");
        let mut b = f.slice(4..);
        let h = ResponseHeader::decode(&mut b, key.response_header_version(version)).unwrap();
        assert_eq!(h.correlation_id, 7);
        T::decode(&mut b, version).unwrap()
    }

    fn broker<T: Encodable>(key: ApiKey, version: i16, msg: &T) -> Bytes {
        let mut b = BytesMut::new();
        msg.encode(&mut b, version).unwrap();
        response_frame(key, version, 7, &b)
    }

    fn respond<T: Decodable>(d: Decision, key: ApiKey, version: i16) -> T {
        match d {
            Decision::Respond(f) => response(key, version, &f),
            other => panic!("expected a local response, got {other:?}"),
        }
    }

    /// Forward with a rewritten frame and a fix.
    fn forward(d: Decision) -> (Option<Bytes>, Option<ResponseFix>) {
        match d {
            Decision::Forward { frame, fix } => (frame, fix),
            other => panic!("expected forward, got {other:?}"),
        }
    }

    fn fixed<T: Encodable, R: Decodable>(
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

    fn is_pass(d: &Decision) -> bool {
        matches!(
            d,
            Decision::Forward {
                frame: None,
                fix: None
            }
        )
    }

    fn produce_req(topics: &[&str], acks: i16) -> ProduceRequest {
        ProduceRequest::default().with_acks(acks).with_topic_data(
            topics
                .iter()
                .map(|t| {
                    produce_request::TopicProduceData::default()
                        .with_name(tn(t))
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(Bytes::from_static(b"batch"))),
                            produce_request::PartitionProduceData::default().with_index(1),
                        ])
                })
                .collect(),
        )
    }

    fn produce_ok(t: &str) -> produce_response::TopicProduceResponse {
        produce_response::TopicProduceResponse::default()
            .with_name(tn(t))
            .with_partition_responses(vec![
                produce_response::PartitionProduceResponse::default()
                    .with_index(0)
                    .with_base_offset(10),
                produce_response::PartitionProduceResponse::default()
                    .with_index(1)
                    .with_base_offset(20),
            ])
    }

    fn writer(topics: &[&str]) -> Acl {
        topics
            .iter()
            .fold(Acl::default(), |a, t| a.allow(Rt::Topic, t, Op::Write))
    }

    #[test]
    fn consumer_group_describe_hides_groups_using_undescribable_topics() {
        use consumer_group_describe_response::{
            Assignment, DescribedGroup, Member, TopicPartitions,
        };
        let none = names(&[]);
        let acl = Acl::default()
            .allow(Rt::Group, "g1", Op::Describe)
            .allow(Rt::Group, "g2", Op::Describe)
            .allow(Rt::Topic, "public", Op::Describe);
        let req = ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![s("g1").into(), s("g2").into()]);
        let (frame, fix) = forward(check(ApiKey::ConsumerGroupDescribe, 0, &req, &acl, &none));
        assert!(frame.is_none(), "the request itself is allowed");
        let member = |subscribed: &str, assigned: &str| {
            Member::default()
                .with_member_id(s("m"))
                .with_subscribed_topic_names(vec![tn(subscribed)])
                .with_assignment(Assignment::default().with_topic_partitions(vec![
                    TopicPartitions::default()
                        .with_topic_name(tn(assigned))
                        .with_partitions(vec![0]),
                ]))
        };
        let resp = ConsumerGroupDescribeResponse::default().with_groups(vec![
            DescribedGroup::default()
                .with_group_id(s("g1").into())
                .with_members(vec![member("public", "public")]),
            DescribedGroup::default()
                .with_group_id(s("g2").into())
                .with_members(vec![member("public", "secret")]),
        ]);
        let got: ConsumerGroupDescribeResponse = fixed(
            &fix.expect("always completed"),
            ApiKey::ConsumerGroupDescribe,
            0,
            &resp,
            &acl,
            &none,
        );
        assert_eq!(got.groups[0].error_code, 0);
        assert_eq!(got.groups[0].members.len(), 1);
        assert_eq!(got.groups[1].error_code, TOPIC_AUTHORIZATION_FAILED);
        assert!(
            got.groups[1].members.is_empty(),
            "no member, no topic named"
        );
    }

    #[test]
    fn describe_topic_partitions_cursor_never_names_a_hidden_topic() {
        use describe_topic_partitions_response::{Cursor, DescribeTopicPartitionsResponseTopic};
        let none = names(&[]);
        let acl = Acl::default().allow(Rt::Topic, "a", Op::Describe);
        let req = DescribeTopicPartitionsRequest::default();
        let (_, fix) = forward(check(ApiKey::DescribeTopicPartitions, 0, &req, &acl, &none));
        let fix = fix.expect("listings are always filtered");
        let page = |cursor: &str| {
            DescribeTopicPartitionsResponse::default()
                .with_topics(vec![
                    DescribeTopicPartitionsResponseTopic::default().with_name(Some(tn("a"))),
                    DescribeTopicPartitionsResponseTopic::default().with_name(Some(tn("b"))),
                ])
                .with_next_cursor(Some(
                    Cursor::default()
                        .with_topic_name(tn(cursor))
                        .with_partition_index(3),
                ))
        };
        let got: DescribeTopicPartitionsResponse = fixed(
            &fix,
            ApiKey::DescribeTopicPartitions,
            0,
            &page("b"),
            &acl,
            &none,
        );
        let listed: Vec<_> = got.topics.iter().filter_map(|t| t.name.clone()).collect();
        assert_eq!(listed, vec![tn("a")]);
        assert!(got.next_cursor.is_none(), "the cursor named the hidden `b`");
        let got: DescribeTopicPartitionsResponse = fixed(
            &fix,
            ApiKey::DescribeTopicPartitions,
            0,
            &page("a"),
            &acl,
            &none,
        );
        assert_eq!(got.next_cursor.unwrap().topic_name, tn("a"));
    }

    #[test]
    fn produce_fast_path_forwards_the_original_bytes() {
        let none = names(&[]);
        let d = check(
            ApiKey::Produce,
            9,
            &produce_req(&["a", "b"], -1),
            &writer(&["a", "b"]),
            &none,
        );
        assert!(is_pass(&d), "{d:?}");
    }

    #[test]
    fn produce_partial_denial_is_merged_in_request_order() {
        let none = names(&[]);
        let acl = writer(&["a", "c"]);
        for version in [3i16, 8, 9, 12] {
            let req = produce_req(&["a", "b", "c"], -1);
            let (out, fix) = forward(check(ApiKey::Produce, version, &req, &acl, &none));
            let sent: ProduceRequest = rewritten(ApiKey::Produce, version, &req, &out.unwrap());
            let sent: Vec<_> = sent.topic_data.iter().map(|t| t.name.to_string()).collect();
            assert_eq!(sent, ["a", "c"]);
            // The broker answers in its own order.
            let resp =
                ProduceResponse::default().with_responses(vec![produce_ok("c"), produce_ok("a")]);
            let got: ProduceResponse =
                fixed(&fix.unwrap(), ApiKey::Produce, version, &resp, &acl, &none);
            let got: Vec<_> = got
                .responses
                .iter()
                .map(|t| {
                    let codes: Vec<_> = t
                        .partition_responses
                        .iter()
                        .map(|p| (p.index, p.error_code, p.base_offset))
                        .collect();
                    (t.name.to_string(), codes)
                })
                .collect();
            assert_eq!(
                got,
                [
                    ("a".to_string(), vec![(0, 0, 10), (1, 0, 20)]),
                    ("b".to_string(), vec![(0, 29, -1), (1, 29, -1)]),
                    ("c".to_string(), vec![(0, 0, 10), (1, 0, 20)]),
                ],
                "v{version}"
            );
        }
    }

    #[test]
    fn produce_all_denied_is_answered_locally() {
        let none = names(&[]);
        let resp: ProduceResponse = respond(
            check(
                ApiKey::Produce,
                9,
                &produce_req(&["x", "y"], 1),
                &writer(&["a"]),
                &none,
            ),
            ApiKey::Produce,
            9,
        );
        let codes: Vec<_> = resp
            .responses
            .iter()
            .flat_map(|t| {
                t.partition_responses
                    .iter()
                    .map(|p| (t.name.to_string(), p.index, p.error_code))
            })
            .collect();
        assert_eq!(
            codes,
            [
                ("x".into(), 0, TOPIC_AUTHORIZATION_FAILED),
                ("x".into(), 1, TOPIC_AUTHORIZATION_FAILED),
                ("y".into(), 0, TOPIC_AUTHORIZATION_FAILED),
                ("y".into(), 1, TOPIC_AUTHORIZATION_FAILED),
            ]
        );
    }

    #[test]
    fn produce_acks_zero_forwards_the_allowed_topics_then_closes() {
        let none = names(&[]);
        let acl = writer(&["a"]);
        let req = produce_req(&["a", "b"], 0);
        let Decision::ForwardThenClose {
            frame: Some(out),
            reason,
        } = check(ApiKey::Produce, 9, &req, &acl, &none)
        else {
            panic!("acks=0 with a denied topic must forward the rest and close");
        };
        assert!(reason.contains("1 denied topic"), "{reason}");
        let sent: ProduceRequest = rewritten(ApiKey::Produce, 9, &req, &out);
        assert_eq!(sent.topic_data.len(), 1);
        assert_eq!(sent.topic_data[0].name.as_str(), "a");
        assert!(matches!(
            check(ApiKey::Produce, 9, &produce_req(&["b"], 0), &acl, &none),
            Decision::ForwardThenClose { frame: None, .. }
        ));
        // Nothing denied: forwarded as is, the connection stays.
        assert!(matches!(
            check(ApiKey::Produce, 9, &produce_req(&["a"], 0), &acl, &none),
            Decision::Forward {
                frame: None,
                fix: None
            }
        ));
    }

    #[test]
    fn produce_transactional_id_denied_fails_every_partition() {
        let none = names(&[]);
        let req = produce_req(&["a", "b"], -1).with_transactional_id(Some(s("tx").into()));
        let resp: ProduceResponse = respond(
            check(ApiKey::Produce, 9, &req, &writer(&["a", "b"]), &none),
            ApiKey::Produce,
            9,
        );
        assert!(resp
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .all(|p| p.error_code == TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
        assert_eq!(
            resp.responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .count(),
            4
        );
        // Allowed transactional id: per-topic checks still apply.
        let acl = writer(&["a", "b"]).allow(Rt::TransactionalId, "tx", Op::Write);
        assert!(is_pass(&check(ApiKey::Produce, 9, &req, &acl, &none)));
    }

    #[test]
    fn produce_by_topic_id_resolves_names_and_denies_unknown_ids() {
        let (a, b, unknown) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let map = names(&[(a, "a"), (b, "b")]);
        let mut req = produce_req(&["", "", ""], -1);
        for (t, id) in req.topic_data.iter_mut().zip([a, b, unknown]) {
            t.topic_id = id;
        }
        let acl = writer(&["a"]);
        let (out, fix) = forward(check(ApiKey::Produce, 13, &req, &acl, &map));
        let sent: ProduceRequest = rewritten(ApiKey::Produce, 13, &req, &out.unwrap());
        assert_eq!(
            sent.topic_data
                .iter()
                .map(|t| t.topic_id)
                .collect::<Vec<_>>(),
            [a]
        );
        let mut ok = produce_ok("");
        ok.topic_id = a;
        let got: ProduceResponse = fixed(
            &fix.unwrap(),
            ApiKey::Produce,
            13,
            &ProduceResponse::default().with_responses(vec![ok]),
            &acl,
            &map,
        );
        let got: Vec<_> = got
            .responses
            .iter()
            .map(|t| (t.topic_id, t.partition_responses[0].error_code))
            .collect();
        assert_eq!(
            got,
            [
                (a, 0),
                (b, TOPIC_AUTHORIZATION_FAILED),
                (unknown, UNKNOWN_TOPIC_ID)
            ]
        );
    }

    #[test]
    fn forged_array_count_closes_instead_of_aborting() {
        let none = names(&[]);
        let (f, hl) = frame(ApiKey::Produce, 9, &produce_req(&["a"], -1));
        let mut forged = f.to_vec();
        // Body: transactional id (1: null), acks (2), timeout (4), then the topic count.
        let at = 4 + hl + 1 + 2 + 4;
        forged.splice(at..at + 1, [0xff, 0xff, 0xff, 0xff, 0x07]);
        let len = (forged.len() - 4) as i32;
        forged[..4].copy_from_slice(&len.to_be_bytes());
        let d = check_request(0, 9, 7, hl, &Bytes::from(forged), &writer(&["a"]), &none);
        assert!(matches!(d, Decision::Close(_)), "{d:?}");
        // Any API: a Metadata v9 request whose topic count claims billions of entries.
        let req = MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(tn("a"))),
        ]));
        let (f, hl) = frame(ApiKey::Metadata, 9, &req);
        let mut forged = f.to_vec();
        forged.splice(4 + hl..4 + hl + 1, [0xff, 0xff, 0xff, 0xff, 0x07]);
        let len = (forged.len() - 4) as i32;
        forged[..4].copy_from_slice(&len.to_be_bytes());
        let acl = Acl::default().allow(Rt::Topic, "a", Op::Describe);
        let d = check_request(3, 9, 7, hl, &Bytes::from(forged), &acl, &none);
        assert!(matches!(d, Decision::Close(_)), "{d:?}");
        // A header longer than the frame is refused too.
        let d = check_request(0, 9, 7, f.len(), &f, &writer(&["a"]), &none);
        assert!(matches!(d, Decision::Close(_)), "{d:?}");
    }

    fn fetch_req(topics: &[(&str, Uuid)]) -> FetchRequest {
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(500)
            .with_session_id(5)
            .with_session_epoch(3)
            .with_topics(
                topics
                    .iter()
                    .map(|(n, id)| {
                        fetch_request::FetchTopic::default()
                            .with_topic(tn(n))
                            .with_topic_id(*id)
                            .with_partitions(vec![fetch_request::FetchPartition::default()
                                .with_partition(0)
                                .with_fetch_offset(42)])
                    })
                    .collect(),
            )
    }

    fn fetch_ok(n: &str, id: Uuid) -> fetch_response::FetchableTopicResponse {
        fetch_response::FetchableTopicResponse::default()
            .with_topic(tn(n))
            .with_topic_id(id)
            .with_partitions(vec![fetch_response::PartitionData::default()
                .with_partition_index(0)
                .with_high_watermark(100)
                .with_records(Some(Bytes::from_static(b"recs")))])
    }

    #[test]
    fn fetch_by_name_removes_denied_topics_and_merges_errors() {
        let none = names(&[]);
        let acl = Acl::default().allow(Rt::Topic, "a", Op::Read);
        let req = fetch_req(&[("b", Uuid::nil()), ("a", Uuid::nil())]);
        let (out, fix) = forward(check(ApiKey::Fetch, 12, &req, &acl, &none));
        let sent: FetchRequest = rewritten(ApiKey::Fetch, 12, &req, &out.unwrap());
        assert_eq!(sent.topics.len(), 1);
        assert_eq!(sent.topics[0].topic.as_str(), "a");
        // The session stays the client's.
        assert_eq!((sent.session_id, sent.session_epoch), (5, 3));
        let resp = FetchResponse::default()
            .with_session_id(5)
            .with_responses(vec![fetch_ok("a", Uuid::nil())]);
        let got: FetchResponse = fixed(&fix.unwrap(), ApiKey::Fetch, 12, &resp, &acl, &none);
        assert_eq!(got.session_id, 5);
        let got: Vec<_> = got
            .responses
            .iter()
            .map(|t| {
                (
                    t.topic.to_string(),
                    t.partitions[0].error_code,
                    t.partitions[0].high_watermark,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("b".to_string(), TOPIC_AUTHORIZATION_FAILED, -1),
                ("a".to_string(), 0, 100)
            ]
        );
    }

    #[test]
    fn fetch_by_id_resolves_names() {
        let (a, b, unknown) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let map = names(&[(a, "a"), (b, "b")]);
        let acl = Acl::default().allow(Rt::Topic, "a", Op::Read);
        for version in [13i16, 16, 17] {
            let req = fetch_req(&[("", a), ("", b), ("", unknown)]);
            let (out, fix) = forward(check(ApiKey::Fetch, version, &req, &acl, &map));
            let sent: FetchRequest = rewritten(ApiKey::Fetch, version, &req, &out.unwrap());
            assert_eq!(
                sent.topics.iter().map(|t| t.topic_id).collect::<Vec<_>>(),
                [a]
            );
            let resp = FetchResponse::default().with_responses(vec![fetch_ok("", a)]);
            let got: FetchResponse =
                fixed(&fix.unwrap(), ApiKey::Fetch, version, &resp, &acl, &map);
            let got: Vec<_> = got
                .responses
                .iter()
                .map(|t| (t.topic_id, t.partitions[0].error_code))
                .collect();
            assert_eq!(
                got,
                [
                    (a, 0),
                    (b, TOPIC_AUTHORIZATION_FAILED),
                    (unknown, UNKNOWN_TOPIC_ID)
                ]
            );
        }
    }

    #[test]
    fn fetch_everything_denied_still_forwards_for_the_session() {
        let none = names(&[]);
        let req = fetch_req(&[("b", Uuid::nil())]);
        let (out, fix) = forward(check(ApiKey::Fetch, 12, &req, &Acl::default(), &none));
        let sent: FetchRequest = rewritten(ApiKey::Fetch, 12, &req, &out.unwrap());
        assert!(sent.topics.is_empty());
        let got: FetchResponse = fixed(
            &fix.unwrap(),
            ApiKey::Fetch,
            12,
            &FetchResponse::default().with_session_id(5),
            &Acl::default(),
            &none,
        );
        assert_eq!(
            got.responses[0].partitions[0].error_code,
            TOPIC_AUTHORIZATION_FAILED
        );
    }

    #[test]
    fn follower_fetch_needs_cluster_action() {
        let none = names(&[]);
        let req = fetch_req(&[("a", Uuid::nil())]).with_replica_id(BrokerId(2));
        let resp: FetchResponse = respond(
            check(ApiKey::Fetch, 12, &req, &Acl::default(), &none),
            ApiKey::Fetch,
            12,
        );
        assert_eq!(
            resp.responses[0].partitions[0].error_code,
            TOPIC_AUTHORIZATION_FAILED
        );
        let acl = Acl::default().allow(Rt::Cluster, CLUSTER_NAME, Op::ClusterAction);
        assert!(is_pass(&check(ApiKey::Fetch, 12, &req, &acl, &none)));
    }

    fn meta_topic(n: &str) -> metadata_response::MetadataResponseTopic {
        metadata_response::MetadataResponseTopic::default()
            .with_name(Some(tn(n)))
            .with_partitions(vec![metadata_response::MetadataResponsePartition::default()])
    }

    #[test]
    fn metadata_all_topics_is_filtered() {
        let none = names(&[]);
        let acl = Acl::default().allow(Rt::Topic, "a", Op::Describe);
        for version in [1i16, 9, 12] {
            let req = MetadataRequest::default().with_topics(None);
            let (out, fix) = forward(check(ApiKey::Metadata, version, &req, &acl, &none));
            assert!(out.is_none());
            let resp = MetadataResponse::default()
                .with_topics(vec![meta_topic("a"), meta_topic("secret")]);
            let got: MetadataResponse =
                fixed(&fix.unwrap(), ApiKey::Metadata, version, &resp, &acl, &none);
            let got: Vec<_> = got
                .topics
                .iter()
                .map(|t| t.name.clone().unwrap().to_string())
                .collect();
            assert_eq!(got, ["a"], "v{version}");
        }
    }

    #[test]
    fn metadata_explicit_topics_denied_and_auto_create_cleared() {
        let none = names(&[]);
        // "a": may describe but not create; "b": may not describe.
        let acl = Acl::default().allow(Rt::Topic, "a", Op::Describe);
        let req = MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(
                ["b", "a"]
                    .iter()
                    .map(|n| {
                        metadata_request::MetadataRequestTopic::default().with_name(Some(tn(n)))
                    })
                    .collect(),
            ));
        let (out, fix) = forward(check(ApiKey::Metadata, 9, &req, &acl, &none));
        let sent: MetadataRequest = rewritten(ApiKey::Metadata, 9, &req, &out.unwrap());
        assert!(!sent.allow_auto_topic_creation);
        let sent: Vec<_> = sent
            .topics
            .unwrap()
            .iter()
            .map(|t| t.name.clone().unwrap().to_string())
            .collect();
        assert_eq!(sent, ["a"]);
        let resp = MetadataResponse::default().with_topics(vec![meta_topic("a")]);
        let got: MetadataResponse = fixed(&fix.unwrap(), ApiKey::Metadata, 9, &resp, &acl, &none);
        let got: Vec<_> = got
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.clone().unwrap().to_string(),
                    t.error_code,
                    t.partitions.len(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("b".to_string(), TOPIC_AUTHORIZATION_FAILED, 0),
                ("a".to_string(), 0, 1)
            ]
        );

        // With CREATE on the topic the flag stays and nothing is rewritten.
        let acl = acl.allow(Rt::Topic, "a", Op::Create);
        let only_a = MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(tn("a")))]));
        assert!(is_pass(&check(ApiKey::Metadata, 9, &only_a, &acl, &none)));
    }

    #[test]
    fn metadata_authorized_operations_are_the_principals() {
        let none = names(&[]);
        let acl = Acl::default()
            .allow(Rt::Topic, "a", Op::Describe)
            .allow(Rt::Topic, "a", Op::Read)
            .allow(Rt::Cluster, CLUSTER_NAME, Op::Describe);
        let req = MetadataRequest::default()
            .with_topics(None)
            .with_include_cluster_authorized_operations(true)
            .with_include_topic_authorized_operations(true);
        let (_, fix) = forward(check(ApiKey::Metadata, 10, &req, &acl, &none));
        let resp = MetadataResponse::default()
            .with_cluster_authorized_operations(0xffff)
            .with_topics(vec![
                meta_topic("a").with_topic_authorized_operations(0xffff)
            ]);
        let got: MetadataResponse = fixed(&fix.unwrap(), ApiKey::Metadata, 10, &resp, &acl, &none);
        assert_eq!(
            got.topics[0].topic_authorized_operations,
            (1 << 3) | (1 << 8)
        );
        assert_eq!(got.cluster_authorized_operations, 1 << 8);
    }

    #[test]
    fn create_topics_partial() {
        let none = names(&[]);
        let acl = Acl::default().allow(Rt::Topic, "a", Op::Create).allow(
            Rt::Topic,
            "a",
            Op::DescribeConfigs,
        );
        let req = CreateTopicsRequest::default().with_topics(
            ["a", "b"]
                .iter()
                .map(|n| {
                    create_topics_request::CreatableTopic::default()
                        .with_name(tn(n))
                        .with_num_partitions(3)
                })
                .collect(),
        );
        let (out, fix) = forward(check(ApiKey::CreateTopics, 7, &req, &acl, &none));
        let sent: CreateTopicsRequest = rewritten(ApiKey::CreateTopics, 7, &req, &out.unwrap());
        assert_eq!(sent.topics.len(), 1);
        assert_eq!(sent.topics[0].name.as_str(), "a");
        let resp = CreateTopicsResponse::default().with_topics(vec![
            create_topics_response::CreatableTopicResult::default()
                .with_name(tn("a"))
                .with_num_partitions(3),
        ]);
        let got: CreateTopicsResponse =
            fixed(&fix.unwrap(), ApiKey::CreateTopics, 7, &resp, &acl, &none);
        let got: Vec<_> = got
            .topics
            .iter()
            .map(|t| (t.name.to_string(), t.error_code))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), 0),
                ("b".to_string(), TOPIC_AUTHORIZATION_FAILED)
            ]
        );
        // CREATE on the cluster covers every topic.
        let acl = Acl::default()
            .allow(Rt::Cluster, CLUSTER_NAME, Op::Create)
            .allow(Rt::Topic, "a", Op::DescribeConfigs)
            .allow(Rt::Topic, "b", Op::DescribeConfigs);
        assert!(is_pass(&check(ApiKey::CreateTopics, 7, &req, &acl, &none)));
    }

    #[test]
    fn delete_topics_by_id() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let map = names(&[(a, "a"), (b, "b")]);
        let acl = Acl::default().allow(Rt::Topic, "a", Op::Delete);
        let req = DeleteTopicsRequest::default().with_topics(
            [b, a]
                .iter()
                .map(|id| delete_topics_request::DeleteTopicState::default().with_topic_id(*id))
                .collect(),
        );
        let (out, fix) = forward(check(ApiKey::DeleteTopics, 6, &req, &acl, &map));
        let sent: DeleteTopicsRequest = rewritten(ApiKey::DeleteTopics, 6, &req, &out.unwrap());
        assert_eq!(
            sent.topics.iter().map(|t| t.topic_id).collect::<Vec<_>>(),
            [a]
        );
        let resp = DeleteTopicsResponse::default().with_responses(vec![
            delete_topics_response::DeletableTopicResult::default()
                .with_name(Some(tn("a")))
                .with_topic_id(a),
        ]);
        let got: DeleteTopicsResponse =
            fixed(&fix.unwrap(), ApiKey::DeleteTopics, 6, &resp, &acl, &map);
        let got: Vec<_> = got
            .responses
            .iter()
            .map(|t| (t.topic_id, t.error_code))
            .collect();
        assert_eq!(got, [(b, TOPIC_AUTHORIZATION_FAILED), (a, 0)]);
    }

    fn commit_req() -> OffsetCommitRequest {
        OffsetCommitRequest::default()
            .with_group_id(s("g").into())
            .with_topics(
                ["a", "b"]
                    .iter()
                    .map(|n| {
                        offset_commit_request::OffsetCommitRequestTopic::default()
                            .with_name(tn(n))
                            .with_partitions(vec![
                                offset_commit_request::OffsetCommitRequestPartition::default()
                                    .with_partition_index(0),
                                offset_commit_request::OffsetCommitRequestPartition::default()
                                    .with_partition_index(1),
                            ])
                    })
                    .collect(),
            )
    }

    #[test]
    fn offset_commit_group_denied() {
        let none = names(&[]);
        let acl = Acl::default()
            .allow(Rt::Topic, "a", Op::Read)
            .allow(Rt::Topic, "b", Op::Read);
        let resp: OffsetCommitResponse = respond(
            check(ApiKey::OffsetCommit, 8, &commit_req(), &acl, &none),
            ApiKey::OffsetCommit,
            8,
        );
        let codes: Vec<_> = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect();
        assert_eq!(codes, [GROUP_AUTHORIZATION_FAILED; 4]);
        // Group allowed, one topic denied: partial.
        let acl = Acl::default()
            .allow(Rt::Group, "g", Op::Read)
            .allow(Rt::Topic, "b", Op::Read);
        let (out, fix) = forward(check(ApiKey::OffsetCommit, 8, &commit_req(), &acl, &none));
        let sent: OffsetCommitRequest =
            rewritten(ApiKey::OffsetCommit, 8, &commit_req(), &out.unwrap());
        assert_eq!(sent.topics.len(), 1);
        let resp = OffsetCommitResponse::default().with_topics(vec![
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(tn("b"))
                .with_partitions(vec![
                    offset_commit_response::OffsetCommitResponsePartition::default(),
                ]),
        ]);
        let got: OffsetCommitResponse =
            fixed(&fix.unwrap(), ApiKey::OffsetCommit, 8, &resp, &acl, &none);
        let got: Vec<_> = got
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.to_string(),
                    t.partitions
                        .iter()
                        .map(|p| p.error_code)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), vec![TOPIC_AUTHORIZATION_FAILED; 2]),
                ("b".to_string(), vec![0])
            ]
        );
    }

    #[test]
    fn find_coordinator_single_key() {
        let none = names(&[]);
        let acl = Acl::default().allow(Rt::Group, "g", Op::Describe);
        let group = FindCoordinatorRequest::default().with_key(s("g"));
        assert!(is_pass(&check(
            ApiKey::FindCoordinator,
            3,
            &group,
            &acl,
            &none
        )));
        let other = FindCoordinatorRequest::default().with_key(s("h"));
        let resp: FindCoordinatorResponse = respond(
            check(ApiKey::FindCoordinator, 3, &other, &acl, &none),
            ApiKey::FindCoordinator,
            3,
        );
        assert_eq!(
            (resp.error_code, resp.node_id.0),
            (GROUP_AUTHORIZATION_FAILED, -1)
        );
        let txn = FindCoordinatorRequest::default()
            .with_key(s("g"))
            .with_key_type(key_type::TRANSACTION);
        let resp: FindCoordinatorResponse = respond(
            check(ApiKey::FindCoordinator, 3, &txn, &acl, &none),
            ApiKey::FindCoordinator,
            3,
        );
        assert_eq!(resp.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        // v0 has no key type: always a group.
        let resp: FindCoordinatorResponse = respond(
            check(ApiKey::FindCoordinator, 0, &other, &acl, &none),
            ApiKey::FindCoordinator,
            0,
        );
        assert_eq!(resp.error_code, GROUP_AUTHORIZATION_FAILED);
    }

    #[test]
    fn find_coordinator_batched_keys() {
        let none = names(&[]);
        let acl = Acl::default().allow(Rt::TransactionalId, "t1", Op::Describe);
        let req = FindCoordinatorRequest::default()
            .with_key_type(key_type::TRANSACTION)
            .with_coordinator_keys(vec![s("t1"), s("t2")]);
        let (out, fix) = forward(check(ApiKey::FindCoordinator, 4, &req, &acl, &none));
        assert!(
            out.is_none(),
            "read-only: forwarded whole, redacted on the way back"
        );
        let coordinator = |k: &str| {
            find_coordinator_response::Coordinator::default()
                .with_key(s(k))
                .with_node_id(BrokerId(1))
                .with_host(s("broker"))
                .with_port(9092)
        };
        let resp = FindCoordinatorResponse::default()
            .with_coordinators(vec![coordinator("t1"), coordinator("t2")]);
        let got: FindCoordinatorResponse = fixed(
            &fix.unwrap(),
            ApiKey::FindCoordinator,
            4,
            &resp,
            &acl,
            &none,
        );
        let got: Vec<_> = got
            .coordinators
            .iter()
            .map(|c| (c.key.to_string(), c.node_id.0, c.error_code))
            .collect();
        assert_eq!(
            got,
            [
                ("t1".to_string(), 1, 0),
                ("t2".to_string(), -1, TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            ]
        );
        // Every key denied: answered locally.
        let resp: FindCoordinatorResponse = respond(
            check(ApiKey::FindCoordinator, 4, &req, &Acl::default(), &none),
            ApiKey::FindCoordinator,
            4,
        );
        assert_eq!(resp.coordinators.len(), 2);
        assert!(resp
            .coordinators
            .iter()
            .all(|c| c.error_code == TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
    }

    #[test]
    fn describe_groups_partial() {
        let none = names(&[]);
        let acl = Acl::default().allow(Rt::Group, "g1", Op::Describe);
        let req =
            DescribeGroupsRequest::default().with_groups(vec![s("g1").into(), s("g2").into()]);
        let (out, fix) = forward(check(ApiKey::DescribeGroups, 5, &req, &acl, &none));
        assert!(out.is_none());
        let group = |g: &str| {
            describe_groups_response::DescribedGroup::default()
                .with_group_id(s(g).into())
                .with_group_state(s("Stable"))
                .with_members(vec![
                    describe_groups_response::DescribedGroupMember::default(),
                ])
        };
        let resp = DescribeGroupsResponse::default().with_groups(vec![group("g1"), group("g2")]);
        let got: DescribeGroupsResponse =
            fixed(&fix.unwrap(), ApiKey::DescribeGroups, 5, &resp, &acl, &none);
        let got: Vec<_> = got
            .groups
            .iter()
            .map(|g| {
                (
                    g.group_id.to_string(),
                    g.error_code,
                    g.members.len(),
                    g.group_state.to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("g1".to_string(), 0, 1, "Stable".to_string()),
                (
                    "g2".to_string(),
                    GROUP_AUTHORIZATION_FAILED,
                    0,
                    String::new()
                )
            ]
        );
    }

    #[test]
    fn list_groups_filtered_unless_cluster_describe() {
        let none = names(&[]);
        let acl = Acl::default().allow(Rt::Group, "mine", Op::Describe);
        let req = ListGroupsRequest::default();
        let (_, fix) = forward(check(ApiKey::ListGroups, 4, &req, &acl, &none));
        let resp = ListGroupsResponse::default().with_groups(
            ["mine", "theirs"]
                .iter()
                .map(|g| list_groups_response::ListedGroup::default().with_group_id(s(g).into()))
                .collect(),
        );
        let got: ListGroupsResponse =
            fixed(&fix.unwrap(), ApiKey::ListGroups, 4, &resp, &acl, &none);
        assert_eq!(
            got.groups
                .iter()
                .map(|g| g.group_id.to_string())
                .collect::<Vec<_>>(),
            ["mine"]
        );
        let admin = Acl::default().allow(Rt::Cluster, CLUSTER_NAME, Op::Describe);
        assert!(is_pass(&check(ApiKey::ListGroups, 4, &req, &admin, &none)));
    }

    #[test]
    fn join_group_denied() {
        let none = names(&[]);
        let req = JoinGroupRequest::default()
            .with_group_id(s("g").into())
            .with_protocol_type(s("consumer"));
        for version in [0i16, 5, 9] {
            let resp: JoinGroupResponse = respond(
                check(ApiKey::JoinGroup, version, &req, &Acl::default(), &none),
                ApiKey::JoinGroup,
                version,
            );
            assert_eq!(resp.error_code, GROUP_AUTHORIZATION_FAILED);
        }
        let acl = Acl::default().allow(Rt::Group, "g", Op::Read);
        assert!(is_pass(&check(ApiKey::JoinGroup, 9, &req, &acl, &none)));
        let hb = ConsumerGroupHeartbeatRequest::default().with_group_id(s("h").into());
        let resp: ConsumerGroupHeartbeatResponse = respond(
            check(ApiKey::ConsumerGroupHeartbeat, 0, &hb, &acl, &none),
            ApiKey::ConsumerGroupHeartbeat,
            0,
        );
        assert_eq!(resp.error_code, GROUP_AUTHORIZATION_FAILED);
    }

    #[test]
    fn offset_fetch_batched_groups_and_all_topics() {
        let none = names(&[]);
        let acl =
            Acl::default()
                .allow(Rt::Group, "g1", Op::Describe)
                .allow(Rt::Topic, "a", Op::Describe);
        let req = OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(s("g1").into())
                .with_topics(None),
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(s("g2").into())
                .with_topics(None),
        ]);
        let (out, fix) = forward(check(ApiKey::OffsetFetch, 8, &req, &acl, &none));
        assert!(out.is_none());
        let topics = |names: &[&str]| {
            names
                .iter()
                .map(|n| {
                    offset_fetch_response::OffsetFetchResponseTopics::default()
                        .with_name(tn(n))
                        .with_partitions(vec![
                            offset_fetch_response::OffsetFetchResponsePartitions::default()
                                .with_committed_offset(5),
                        ])
                })
                .collect()
        };
        let resp = OffsetFetchResponse::default().with_groups(vec![
            offset_fetch_response::OffsetFetchResponseGroup::default()
                .with_group_id(s("g1").into())
                .with_topics(topics(&["a", "secret"])),
            offset_fetch_response::OffsetFetchResponseGroup::default()
                .with_group_id(s("g2").into())
                .with_topics(topics(&["a"])),
        ]);
        let got: OffsetFetchResponse =
            fixed(&fix.unwrap(), ApiKey::OffsetFetch, 8, &resp, &acl, &none);
        let got: Vec<_> = got
            .groups
            .iter()
            .map(|g| {
                (
                    g.group_id.to_string(),
                    g.error_code,
                    g.topics
                        .iter()
                        .map(|t| t.name.to_string())
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("g1".to_string(), 0, vec!["a".to_string()]),
                ("g2".to_string(), GROUP_AUTHORIZATION_FAILED, vec![])
            ]
        );
        // v7, one group denied: top-level error.
        let old = OffsetFetchRequest::default()
            .with_group_id(s("g2").into())
            .with_topics(None);
        let resp: OffsetFetchResponse = respond(
            check(ApiKey::OffsetFetch, 7, &old, &acl, &none),
            ApiKey::OffsetFetch,
            7,
        );
        assert_eq!(resp.error_code, GROUP_AUTHORIZATION_FAILED);
    }

    #[test]
    fn cluster_apis() {
        let none = names(&[]);
        let resp: DescribeAclsResponse = respond(
            check(
                ApiKey::DescribeAcls,
                3,
                &DescribeAclsRequest::default(),
                &Acl::default(),
                &none,
            ),
            ApiKey::DescribeAcls,
            3,
        );
        assert_eq!(resp.error_code, CLUSTER_AUTHORIZATION_FAILED);
        let create = CreateAclsRequest::default().with_creations(vec![
            create_acls_request::AclCreation::default(),
            create_acls_request::AclCreation::default(),
        ]);
        let resp: CreateAclsResponse = respond(
            check(ApiKey::CreateAcls, 3, &create, &Acl::default(), &none),
            ApiKey::CreateAcls,
            3,
        );
        assert_eq!(
            resp.results
                .iter()
                .map(|r| r.error_code)
                .collect::<Vec<_>>(),
            [CLUSTER_AUTHORIZATION_FAILED; 2]
        );
        let admin = Acl::default().allow(Rt::Cluster, CLUSTER_NAME, Op::Alter);
        assert!(is_pass(&check(
            ApiKey::CreateAcls,
            3,
            &create,
            &admin,
            &none
        )));
        // No error form: close.
        let markers = WriteTxnMarkersRequest::default();
        assert!(matches!(
            check(ApiKey::WriteTxnMarkers, 1, &markers, &Acl::default(), &none),
            Decision::Close(_)
        ));
        // Unknown API keys cannot be authorized.
        let (f, hl) = frame(ApiKey::DescribeAcls, 3, &DescribeAclsRequest::default());
        assert!(matches!(
            check_request(9999, 0, 7, hl, &f, &admin, &none),
            Decision::Close(_)
        ));
        // Open to everyone.
        assert!(is_pass(&check(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default(),
            &Acl::default(),
            &none
        )));
        assert!(is_pass(&check(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest::default(),
            &Acl::default(),
            &none
        )));
    }

    #[test]
    fn transactions() {
        let none = names(&[]);
        let init = InitProducerIdRequest::default().with_transactional_id(Some(s("tx").into()));
        let resp: InitProducerIdResponse = respond(
            check(ApiKey::InitProducerId, 4, &init, &Acl::default(), &none),
            ApiKey::InitProducerId,
            4,
        );
        assert_eq!(resp.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        // Idempotent producers: allowed (see the module docs).
        assert!(is_pass(&check(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default().with_transactional_id(None),
            &Acl::default(),
            &none
        )));
        let acl = Acl::default()
            .allow(Rt::TransactionalId, "tx", Op::Write)
            .allow(Rt::Topic, "a", Op::Write);
        let add = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(s("tx").into())
            .with_v3_and_below_topics(
                ["a", "b"]
                    .iter()
                    .map(|n| {
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(tn(n))
                            .with_partitions(vec![0])
                    })
                    .collect(),
            );
        let resp: AddPartitionsToTxnResponse = respond(
            check(ApiKey::AddPartitionsToTxn, 3, &add, &acl, &none),
            ApiKey::AddPartitionsToTxn,
            3,
        );
        let codes: Vec<_> = resp
            .results_by_topic_v3_and_below
            .iter()
            .map(|t| {
                (
                    t.name.to_string(),
                    t.results_by_partition[0].partition_error_code,
                )
            })
            .collect();
        assert_eq!(
            codes,
            [
                ("a".to_string(), OPERATION_NOT_ATTEMPTED),
                ("b".to_string(), TOPIC_AUTHORIZATION_FAILED)
            ]
        );
        let end = EndTxnRequest::default().with_transactional_id(s("other").into());
        let resp: EndTxnResponse = respond(
            check(ApiKey::EndTxn, 3, &end, &acl, &none),
            ApiKey::EndTxn,
            3,
        );
        assert_eq!(resp.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        let offsets = AddOffsetsToTxnRequest::default()
            .with_transactional_id(s("tx").into())
            .with_group_id(s("g").into());
        let resp: AddOffsetsToTxnResponse = respond(
            check(ApiKey::AddOffsetsToTxn, 3, &offsets, &acl, &none),
            ApiKey::AddOffsetsToTxn,
            3,
        );
        assert_eq!(resp.error_code, GROUP_AUTHORIZATION_FAILED);
    }

    #[test]
    fn config_resources_map_to_their_acl_resource() {
        let none = names(&[]);
        let acl = Acl::default().allow(Rt::Topic, "a", Op::AlterConfigs);
        let resource = |t: i8, n: &str| {
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(t)
                .with_resource_name(s(n))
        };
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            resource(config_type::BROKER, "1"),
            resource(config_type::TOPIC, "a"),
            resource(config_type::GROUP, "g"),
        ]);
        let (out, fix) = forward(check(ApiKey::IncrementalAlterConfigs, 1, &req, &acl, &none));
        let sent: IncrementalAlterConfigsRequest =
            rewritten(ApiKey::IncrementalAlterConfigs, 1, &req, &out.unwrap());
        assert_eq!(sent.resources.len(), 1);
        let resp = IncrementalAlterConfigsResponse::default().with_responses(vec![
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(config_type::TOPIC)
                .with_resource_name(s("a")),
        ]);
        let got: IncrementalAlterConfigsResponse = fixed(
            &fix.unwrap(),
            ApiKey::IncrementalAlterConfigs,
            1,
            &resp,
            &acl,
            &none,
        );
        let got: Vec<_> = got
            .responses
            .iter()
            .map(|r| (r.resource_type, r.error_code))
            .collect();
        assert_eq!(
            got,
            [
                (config_type::BROKER, CLUSTER_AUTHORIZATION_FAILED),
                (config_type::TOPIC, 0),
                (config_type::GROUP, GROUP_AUTHORIZATION_FAILED)
            ]
        );
    }

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
        use crate::schema::tests::{synth_body, Rng, SMALL};
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
            let range = crate::rewrite::gateway_versions(key);
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
                    let resp_frame = crate::intercept::response_frame(key, version, 7, &resp);
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
