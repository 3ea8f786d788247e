//! Topic administration and per-partition reads: CreateTopics, DeleteTopics, DeleteRecords,
//! CreatePartitions (partial writes: denied topics are removed from the request and answered
//! by the gateway in request order), ListOffsets, OffsetForLeaderEpoch and DescribeProducers
//! (forwarded whole, denied topics redacted in the broker's answer).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use uuid::Uuid;

use super::codes::*;
use super::{edit, merge, not_routed, pass, redact, split, topic_key, Req, Resp, Step, TopicKey};
use crate::acl::{Operation as Op, ResourceType as Rt};

/// The request side of the topic APIs.
pub(super) fn check(r: &Req<'_>) -> Step {
    use ApiKey::*;
    match r.key {
        CreateTopics => create_topics(r),
        DeleteTopics => delete_topics(r),
        DeleteRecords => delete_records(r),
        CreatePartitions => create_partitions(r),
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
        other => Err(not_routed(other)),
    }
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

/// What the topic responses need: denied entries to merge, or redaction.
#[derive(Debug, Clone)]
pub(super) enum Fix {
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
    ListOffsets,
    OffsetForLeaderEpoch,
    DescribeProducers,
}

/// Completes the response of a request of this family that got `fix`.
pub(super) fn fix_response(fix: &Fix, r: Resp<'_>, body: &mut Bytes) -> anyhow::Result<BytesMut> {
    let Resp {
        key,
        version: v,
        permits: p,
        ..
    } = r;
    Ok(match fix {
        Fix::CreateTopics { order, denied } => {
            edit(body, key, v, |m: &mut CreateTopicsResponse| {
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
            edit(body, key, v, |m: &mut DeleteTopicsResponse| {
                merge(&mut m.responses, denied, order, |t| {
                    topic_key(t.name.as_deref().map_or("", |n| n.as_str()), t.topic_id)
                })
            })?
        }
        Fix::DeleteRecords { order, denied } => {
            edit(body, key, v, |m: &mut DeleteRecordsResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                })
            })?
        }
        Fix::CreatePartitions { order, denied } => {
            edit(body, key, v, |m: &mut CreatePartitionsResponse| {
                merge(&mut m.results, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                })
            })?
        }
        Fix::ListOffsets => edit(body, key, v, |m: &mut ListOffsetsResponse| {
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
        Fix::OffsetForLeaderEpoch => edit(body, key, v, |m: &mut OffsetForLeaderEpochResponse| {
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
        Fix::DescribeProducers => edit(body, key, v, |m: &mut DescribeProducersResponse| {
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
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    use super::*;
    use crate::authorize::testing::*;
    // The test helper, not this family's `check`: tests go through the router.
    use crate::authorize::testing::check;

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
}
