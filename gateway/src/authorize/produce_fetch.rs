//! Produce and Fetch: writing and reading records.
//!
//! A Produce keeps its allowed topics and is answered for the denied ones (in request order,
//! merged into the broker's response); an acks=0 Produce that loses topics is forwarded and
//! then closed, since it has no response to carry the error. A Fetch always reaches the
//! broker, even with nothing left, so the broker's fetch session stays in step with the
//! client's; follower fetches need CLUSTER_ACTION.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;

use super::codes::*;
use super::{edit, merge, not_routed, pass, split, topic_key, Decision, Req, Resp, Step, TopicKey};
use crate::acl::{Operation as Op, ResourceType as Rt};

/// The request side of Produce and Fetch.
pub(super) fn check(r: &Req<'_>) -> Step {
    use ApiKey::*;
    match r.key {
        Produce => produce(r),
        Fetch => fetch(r),
        other => Err(not_routed(other)),
    }
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
        return match r.forward(&req, None::<Fix>)? {
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

/// The denied topics' error entries and the request's topic order.
#[derive(Debug, Clone)]
pub(super) enum Fix {
    Produce {
        order: Vec<TopicKey>,
        denied: Vec<produce_response::TopicProduceResponse>,
    },
    Fetch {
        order: Vec<TopicKey>,
        denied: Vec<fetch_response::FetchableTopicResponse>,
    },
}

/// Completes the response of a request of this family that got `fix`.
pub(super) fn fix_response(fix: &Fix, r: Resp<'_>, body: &mut Bytes) -> anyhow::Result<BytesMut> {
    let Resp {
        key, version: v, ..
    } = r;
    Ok(match fix {
        Fix::Produce { order, denied } => edit(body, key, v, |m: &mut ProduceResponse| {
            merge(&mut m.responses, denied, order, |t| {
                topic_key(&t.name, t.topic_id)
            })
        })?,
        Fix::Fetch { order, denied } => edit(body, key, v, |m: &mut FetchResponse| {
            merge(&mut m.responses, denied, order, |t| {
                topic_key(&t.topic, t.topic_id)
            })
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
}
