//! Metadata, DescribeTopicPartitions and DescribeCluster: what a client learns of the cluster.
//!
//! Listings (all topics) are filtered on the way back; explicitly named topics the principal
//! may not describe are answered by the gateway and merged in request order; auto-creation is
//! switched off when the principal may not create a requested topic; and the authorized
//! operations the broker computed for the gateway's identity are recomputed for the principal.
//! DescribeTopicPartitions' cursor never names a hidden topic.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use uuid::Uuid;

use super::codes::*;
use super::{
    edit, lookup, merge, not_routed, ops_bits, pass, redact, topic_check, topic_key, Decision, Req,
    Resp, ResponseFix, Step, TopicKey, CLUSTER_OPS, OPS_OMITTED, TOPIC_OPS,
};
use crate::acl::{Operation as Op, Permits, ResourceType as Rt, CLUSTER_NAME};
use crate::intercept::TopicLookup;

/// The request side of the cluster-discovery APIs.
pub(super) fn check(r: &Req<'_>) -> Step {
    use ApiKey::*;
    match r.key {
        DescribeCluster => {
            let req: DescribeClusterRequest = r.decode()?;
            Ok(if req.include_cluster_authorized_operations {
                redact(Fix::DescribeCluster)
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
        other => Err(not_routed(other)),
    }
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
            fix: fix.map(|f| ResponseFix(f.into())),
        });
    }
    req.topics = Some(kept);
    if no_create {
        req.allow_auto_topic_creation = false;
    }
    r.forward(&req, fix)
}

/// What the discovery responses need.
#[derive(Debug, Clone)]
pub(super) enum Fix {
    Metadata(MetadataFix),
    DescribeTopicPartitions { all: bool },
    DescribeCluster,
}

#[derive(Debug, Clone)]
pub(super) struct MetadataFix {
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
        Fix::Metadata(f) => edit(body, key, v, |m: &mut MetadataResponse| {
            fix_metadata(f, m, v, p, topics)
        })?,
        Fix::DescribeTopicPartitions { all } => {
            edit(body, key, v, |m: &mut DescribeTopicPartitionsResponse| {
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
                        t.topic_authorized_operations = ops_bits(p, Rt::Topic, &name, TOPIC_OPS);
                    }
                }
            })?
        }
        Fix::DescribeCluster => edit(body, key, v, |m: &mut DescribeClusterResponse| {
            if m.cluster_authorized_operations != OPS_OMITTED {
                m.cluster_authorized_operations =
                    ops_bits(p, Rt::Cluster, CLUSTER_NAME, CLUSTER_OPS);
            }
        })?,
    })
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

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    use super::*;
    use crate::authorize::testing::*;
    // The test helper, not this family's `check`: tests go through the router.
    use crate::authorize::testing::check;

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
}
