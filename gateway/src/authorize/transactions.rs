//! Transactions: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
//! TxnOffsetCommit, DescribeTransactions and ListTransactions.
//!
//! Changing a transaction needs WRITE on its transactional id (and READ on the group or WRITE
//! on the topics it touches); AddPartitionsToTxn v0-3 is all or nothing, as in Kafka, and v4+
//! (batched verification) is broker to broker. Descriptions and listings are redacted or
//! filtered on the way back.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use uuid::Uuid;

use super::codes::*;
use super::{
    deny_whole, edit, merge, not_routed, pass, redact, split, topic_key, Req, Resp, Step, TopicKey,
};
use crate::acl::{Operation as Op, ResourceType as Rt};

/// The request side of the transaction APIs.
pub(super) fn check(r: &Req<'_>) -> Step {
    use ApiKey::*;
    match r.key {
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
        other => Err(not_routed(other)),
    }
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

/// What the transaction responses need.
#[derive(Debug, Clone)]
pub(super) enum Fix {
    TxnOffsetCommit {
        order: Vec<TopicKey>,
        denied: Vec<txn_offset_commit_response::TxnOffsetCommitResponseTopic>,
    },
    DescribeTransactions,
    ListTransactions,
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
        Fix::TxnOffsetCommit { order, denied } => {
            edit(body, key, v, |m: &mut TxnOffsetCommitResponse| {
                merge(&mut m.topics, denied, order, |t| {
                    topic_key(&t.name, Uuid::nil())
                })
            })?
        }
        Fix::DescribeTransactions => edit(body, key, v, |m: &mut DescribeTransactionsResponse| {
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
        Fix::ListTransactions => edit(body, key, v, |m: &mut ListTransactionsResponse| {
            m.transaction_states
                .retain(|s| p.permits(Rt::TransactionalId, &s.transactional_id, Op::Describe));
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
}
