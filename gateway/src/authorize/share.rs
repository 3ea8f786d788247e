//! Share groups (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch,
//! ShareAcknowledge and the share-group offset admin APIs.
//!
//! ShareFetch, ShareAcknowledge and the offset changes are all or nothing (a top-level error)
//! instead of per topic; descriptions are redacted on the way back.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use std::collections::HashSet;
use uuid::Uuid;

use super::codes::*;
use super::{
    deny_whole, edit, not_routed, ops_bits, pass, redact, topic_check, Req, Resp, Step, GROUP_OPS,
    OPS_OMITTED,
};
use crate::acl::{Operation as Op, ResourceType as Rt};

/// The request side of the share-group APIs.
pub(super) fn check(r: &Req<'_>) -> Step {
    use ApiKey::*;
    match r.key {
        ShareGroupHeartbeat => {
            r.group_read(r.decode::<ShareGroupHeartbeatRequest>()?.group_id.as_str())
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
        other => Err(not_routed(other)),
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

/// What the share-group descriptions need.
#[derive(Debug, Clone)]
pub(super) enum Fix {
    ShareGroupDescribe,
    DescribeShareGroupOffsets { all_topics: HashSet<String> },
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
        Fix::ShareGroupDescribe => edit(body, key, v, |m: &mut ShareGroupDescribeResponse| {
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
        Fix::DescribeShareGroupOffsets { all_topics } => {
            edit(body, key, v, |m: &mut DescribeShareGroupOffsetsResponse| {
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
    })
}
