//! Consumer groups: FindCoordinator, the membership APIs (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, ConsumerGroupHeartbeat), DescribeGroups, ConsumerGroupDescribe, ListGroups,
//! DeleteGroups and the committed offsets (OffsetCommit, OffsetFetch, OffsetDelete).
//!
//! Membership needs READ on the group (a top-level error otherwise). Offsets need the group
//! and, per topic, READ or DESCRIBE; descriptions and listings are redacted or filtered on the
//! way back. FindCoordinator also looks up transaction and share coordinators: its key type
//! says which resource is checked.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::HashSet;
use uuid::Uuid;

use super::codes::*;
use super::{
    edit, merge, not_routed, ops_bits, pass, redact, split, topic_check, topic_key, Req, Resp,
    Step, TopicKey, GROUP_OPS, OPS_OMITTED,
};
use crate::acl::{Operation as Op, Permits, ResourceType as Rt, CLUSTER_NAME};
use crate::intercept::TopicLookup;

/// The request side of the group APIs.
pub(super) fn check(r: &Req<'_>) -> Step {
    use ApiKey::*;
    match r.key {
        FindCoordinator => find_coordinator(r),
        JoinGroup => r.group_read(r.decode::<JoinGroupRequest>()?.group_id.as_str()),
        SyncGroup => r.group_read(r.decode::<SyncGroupRequest>()?.group_id.as_str()),
        Heartbeat => r.group_read(r.decode::<HeartbeatRequest>()?.group_id.as_str()),
        LeaveGroup => r.group_read(r.decode::<LeaveGroupRequest>()?.group_id.as_str()),
        ConsumerGroupHeartbeat => r.group_read(
            r.decode::<ConsumerGroupHeartbeatRequest>()?
                .group_id
                .as_str(),
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
        ListGroups => Ok(if r.cluster(Op::Describe) {
            pass()
        } else {
            redact(Fix::ListGroups)
        }),
        DeleteGroups => delete_groups(r),
        OffsetCommit => offset_commit(r),
        OffsetFetch => offset_fetch(r),
        OffsetDelete => offset_delete(r),
        other => Err(not_routed(other)),
    }
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

/// What the group responses need.
#[derive(Debug, Clone)]
pub(super) enum Fix {
    DescribeGroups,
    ConsumerGroupDescribe,
    ListGroups,
    DeleteGroups {
        order: Vec<String>,
        denied: Vec<delete_groups_response::DeletableGroupResult>,
    },
    OffsetCommit {
        order: Vec<TopicKey>,
        denied: Vec<offset_commit_response::OffsetCommitResponseTopic>,
    },
    /// `all_topics`: the groups (or, before v8, the one group) whose topics were not listed.
    OffsetFetch {
        all_topics: HashSet<String>,
    },
    OffsetDelete {
        order: Vec<TopicKey>,
        denied: Vec<offset_delete_response::OffsetDeleteResponseTopic>,
    },
    FindCoordinator {
        key_type: i8,
    },
}

/// Completes the response of a request of this family that got `fix`.
pub(super) fn fix_response(fix: &Fix, r: Resp<'_>, body: &mut Bytes) -> anyhow::Result<BytesMut> {
    let Resp {
        key,
        version: v,
        permits: p,
        topics,
        ..
    } = r;
    Ok(match fix {
        Fix::DescribeGroups => edit(body, key, v, |m: &mut DescribeGroupsResponse| {
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
            edit(body, key, v, |m: &mut ConsumerGroupDescribeResponse| {
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
                        g.authorized_operations = ops_bits(p, Rt::Group, &g.group_id, GROUP_OPS);
                    }
                }
            })?
        }
        Fix::ListGroups => edit(body, key, v, |m: &mut ListGroupsResponse| {
            m.groups
                .retain(|g| p.permits(Rt::Group, &g.group_id, Op::Describe));
        })?,
        Fix::DeleteGroups { order, denied } => {
            edit(body, key, v, |m: &mut DeleteGroupsResponse| {
                merge(&mut m.results, denied, order, |g| g.group_id.to_string())
            })?
        }
        Fix::OffsetCommit { order, denied } => {
            edit(body, key, v, |m: &mut OffsetCommitResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, t.topic_id)
                })
            })?
        }
        Fix::OffsetFetch { all_topics } => edit(body, key, v, |m: &mut OffsetFetchResponse| {
            fix_offset_fetch(m, v, all_topics, p, topics)
        })?,
        Fix::OffsetDelete { order, denied } => {
            edit(body, key, v, |m: &mut OffsetDeleteResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                })
            })?
        }
        Fix::FindCoordinator { key_type } => {
            edit(body, key, v, |m: &mut FindCoordinatorResponse| {
                for c in &mut m.coordinators {
                    if let Some(code) = coordinator_denied(p, *key_type, &c.key) {
                        coordinator_error(c, code);
                    }
                }
            })?
        }
    })
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

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    use super::*;
    use crate::authorize::testing::*;
    // The test helper, not this family's `check`: tests go through the router.
    use crate::authorize::testing::check;

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
}
