//! Virtual clusters in the request path: a tenant's names mapped to physical names on the way
//! in and back on the way out, and everything outside the tenant made invisible.
//!
//! The mapping is generic: the schema walker ([`crate::schema`]) knows every string of every
//! request and response with its entity type, and [`crate::schema::rewrite`] rewrites all the
//! topic names, group ids and transactional ids of a body in one pass. Fields that name a topic
//! or a group without an entity type in the schema (FindCoordinator keys, config resource
//! names, ConsumerGroupHeartbeat regexes) are special-cased here.
//!
//! Isolation does not rest on the mapping alone: a tenant can still reach another tenant's
//! topic by *id*, and listings (Metadata of all topics, ListGroups, ...) name everything. The
//! ACL enforcement of [`crate::authorize`] runs for every tenant connection with
//! [`TenantPermits`], which denies whatever the tenant does not own (and the cluster itself),
//! and with [`TenantTopics`], which resolves only the tenant's own topic ids; its listing
//! filters then drop other tenants' entries, and an unknown id answers `UNKNOWN_TOPIC_ID`, as
//! if the topic did not exist.

use anyhow::{Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, ApiKey, ConsumerGroupHeartbeatRequest,
    DescribeConfigsRequest, DescribeConfigsResponse, DescribeTopicPartitionsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, MetadataResponse, OffsetFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::sync::Arc;

use crate::acl::{Operation, Permits, ResourceType};
use crate::concentrate::{self, Concentrated};
use crate::intercept::{TopicLookup, TopicNames};
use crate::message::codes::{
    INVALID_TOPIC_EXCEPTION, POLICY_VIOLATION, UNKNOWN_TOPIC_OR_PARTITION,
};
use crate::schema::rewrite::{rewrite_frame, Direction};
use crate::schema::Entity;
use crate::security::PrincipalPermits;
use crate::vcluster::Tenant;

/// Whether `body` contains the bytes of a shadowed name's start (prefix and mark): the cheap
/// test before decoding a response to fix its error codes.
fn mentions_shadow(tenant: &Tenant, body: &[u8]) -> bool {
    let needle = tenant.shadow_topic("");
    body.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Config resource types (DescribeConfigs and friends).
const CONFIG_TOPIC: i8 = 2;
const CONFIG_GROUP: i8 = 32;

/// ACL answers for a tenant connection: only the tenant's own topics, groups and
/// transactional ids exist; the cluster's own resources are out of reach; inside, the
/// principal's ACLs (if enforced) decide, on the names the tenant uses.
pub struct TenantPermits {
    /// The tenant.
    pub tenant: Arc<Tenant>,
    /// The principal's ACLs (authorization on), else everything the tenant owns is allowed.
    pub inner: Option<Arc<PrincipalPermits>>,
}

impl Permits for TenantPermits {
    fn permits(&self, resource_type: ResourceType, name: &str, op: Operation) -> bool {
        let t = &self.tenant;
        let logical = match resource_type {
            ResourceType::Topic => {
                if !t.owns_topic(name) {
                    return false;
                }
                t.logical_topic(name)
                    .map_or_else(|| name.to_string(), |l| l.into_owned())
            }
            ResourceType::Group => match t.logical_group(name) {
                Some(l) => l.into_owned(),
                None => return false,
            },
            ResourceType::TransactionalId => match t.logical_transactional_id(name) {
                Some(l) => l.into_owned(),
                None => return false,
            },
            // Brokers, cluster configs, quotas: not a tenant's business (its ACL calls are
            // answered before this stage, see `acl_api`). Denying the cluster also keeps
            // listings (ListGroups) filtered.
            ResourceType::Cluster => return false,
        };
        self.inner
            .as_ref()
            .is_none_or(|p| p.permits(resource_type, &logical, op))
    }

    fn visible(&self, resource_type: ResourceType, name: &str) -> bool {
        let t = &self.tenant;
        match resource_type {
            ResourceType::Topic => t.owns_topic(name),
            ResourceType::Group => t.logical_group(name).is_some(),
            ResourceType::TransactionalId => t.logical_transactional_id(name).is_some(),
            ResourceType::Cluster => true,
        }
    }
}

/// Topic ids a tenant may resolve: its own topics only.
pub struct TenantTopics<'a> {
    /// The tenant.
    pub tenant: &'a Tenant,
    /// Every id the gateway learnt.
    pub names: &'a TopicNames,
}

impl TopicLookup for TenantTopics<'_> {
    fn topic_name(&self, id: uuid::Uuid) -> Option<String> {
        self.names
            .topic_name(id)
            .filter(|n| self.tenant.owns_topic(n))
    }
}

/// Splits a request frame into (length prefix + header, body).
fn split_request(frame: &Bytes, header_len: usize) -> Result<(Bytes, Bytes)> {
    let at = 4usize
        .checked_add(header_len)
        .filter(|&a| a <= frame.len())
        .context("request header longer than the frame")?;
    Ok((frame.slice(..at), frame.slice(at..)))
}

/// The rewritten frame (if the rewriter changed anything) and its body as a view into the
/// same bytes, or the unchanged `body`: later stages read the body, the frame goes out as is.
fn framed_and_body(
    generic: Option<Bytes>,
    head_len: usize,
    body: &Bytes,
) -> (Option<Bytes>, Bytes) {
    match generic {
        Some(f) => {
            let mapped = f.slice(head_len..);
            (Some(f), mapped)
        }
        None => (None, body.clone()),
    }
}

/// Joins a header (length prefix included, recomputed here) and a new body.
fn join(head: &[u8], body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(head.len() + body.len());
    out.put_i32((head.len() - 4 + body.len()) as i32);
    out.put_slice(&head[4..]);
    out.put_slice(body);
    out.freeze()
}

fn decode_req<T: Decodable>(key: ApiKey, body: &Bytes, version: i16) -> Result<T> {
    crate::schema::decode_request(key, version, body)
}

fn decode_resp<T: Decodable>(key: ApiKey, body: &Bytes, version: i16) -> Result<T> {
    crate::schema::decode_response(key, version, body)
}

fn encode<T: Encodable>(msg: &T, version: i16) -> Result<Bytes> {
    let mut out = BytesMut::new();
    msg.encode(&mut out, version).context("re-encoding")?;
    Ok(out.freeze())
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// A request in physical names.
#[derive(Debug, Default)]
pub struct Mapped {
    /// The rewritten frame; `None`: forward the original.
    pub frame: Option<Bytes>,
    /// Concentrated topics the request named, to undo on the response.
    pub concentrated: Option<Concentrated>,
}

/// Why a request cannot be mapped.
#[derive(Debug)]
pub enum MapError {
    /// Refused with this Kafka error (e.g. idempotent produce to a concentrated topic).
    Refused {
        /// Kafka error code.
        code: i16,
        /// Why.
        message: String,
    },
    /// Not mappable at all: the connection is closed.
    Broken(anyhow::Error),
}

impl From<anyhow::Error> for MapError {
    fn from(e: anyhow::Error) -> MapError {
        MapError::Broken(e)
    }
}

/// Config resource names (a topic or a group, by resource type) carry no entity type in the
/// schema: decode the message, map each `resource_name` with `$map`, encode it again.
macro_rules! config_names {
    ($tenant:expr, $decode:ident($key:expr), $body:expr, $version:expr, $ty:ty, $field:ident, $map:ident) => {{
        let mut msg: $ty = $decode($key, $body, $version)?;
        for r in &mut msg.$field {
            r.resource_name = $map($tenant, r.resource_type, &r.resource_name);
        }
        Some(encode(&msg, $version)?)
    }};
}

/// Maps a tenant's request to physical names. Errors mean the request is refused or cannot be
/// mapped.
pub fn map_request(
    tenant: &Tenant,
    api_key: i16,
    version: i16,
    header_len: usize,
    frame: &Bytes,
) -> Result<Mapped, MapError> {
    let (head, body) = split_request(frame, header_len)?;
    let (body, concentrated) = if tenant.has_concentration() {
        match concentrate::prepare_request(tenant, api_key, version, &body) {
            Ok(Some((b, c))) => (b, Some(c)),
            Ok(None) => (body, None),
            Err(r) => {
                return Err(MapError::Refused {
                    code: r.code,
                    message: r.message,
                })
            }
        }
    } else {
        (body, None)
    };
    // Concentrated topics are already physical.
    let keep: std::collections::HashSet<&str> = concentrated
        .iter()
        .flat_map(|c| c.pairs().map(|(_, physical)| physical))
        .collect();
    let generic = rewrite_frame(
        Direction::Request,
        api_key,
        version,
        &head,
        &body,
        &mut |r, current| match r.entity {
            Entity::TopicName if keep.contains(current) => None,
            // Its plain physical form is an alias target or a concentrated topic: the raw
            // topic must not be reachable under a second name.
            Entity::TopicName if tenant.is_shadowed(current) => Some(tenant.shadow_topic(current)),
            Entity::TopicName => Some(tenant.physical_topic(current).into_owned()),
            Entity::GroupId => Some(tenant.physical_group(current).into_owned()),
            Entity::TransactionalId => Some(tenant.physical_transactional_id(current).into_owned()),
            _ => None,
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot map names: {e}"))?;
    let changed = generic.is_some();
    let (framed, mapped) = framed_and_body(generic, head.len(), &body);
    let special = match ApiKey::try_from(api_key) {
        Ok(ApiKey::FindCoordinator) => {
            let mut req: FindCoordinatorRequest =
                decode_req(ApiKey::FindCoordinator, &mapped, version)?;
            let key_type = req.key_type;
            // 0: group, 1: transactional id, 2: share key `group:topicId:partition` (the
            // group comes first, so prefixing the whole key prefixes the group).
            let map = |k: &StrBytes| -> StrBytes {
                match key_type {
                    1 => s(tenant.physical_transactional_id(k).into_owned()),
                    _ => s(tenant.physical_group(k).into_owned()),
                }
            };
            // One key up to v3, a batch of keys from v4 (the single key is then absent: an
            // empty one mapped to a prefix would not encode).
            if version < 4 {
                req.key = map(&req.key);
            } else {
                req.coordinator_keys = req.coordinator_keys.iter().map(map).collect();
            }
            Some(encode(&req, version)?)
        }
        Ok(ApiKey::DescribeConfigs) => {
            config_names!(
                tenant,
                decode_req(ApiKey::DescribeConfigs),
                &mapped,
                version,
                DescribeConfigsRequest,
                resources,
                map_resource
            )
        }
        Ok(ApiKey::AlterConfigs) => config_names!(
            tenant,
            decode_req(ApiKey::AlterConfigs),
            &mapped,
            version,
            AlterConfigsRequest,
            resources,
            map_resource
        ),
        Ok(ApiKey::IncrementalAlterConfigs) => {
            config_names!(
                tenant,
                decode_req(ApiKey::IncrementalAlterConfigs),
                &mapped,
                version,
                IncrementalAlterConfigsRequest,
                resources,
                map_resource
            )
        }
        Ok(ApiKey::Metadata)
            if version >= 4
                && (tenant.limits.max_topics.is_some()
                    || tenant.limits.max_partitions.is_some()) =>
        {
            // Auto-creation would pass the tenant's limits unseen (they are checked on
            // CreateTopics): a limited tenant creates its topics explicitly.
            let mut req: kafka_protocol::messages::MetadataRequest =
                decode_req(ApiKey::Metadata, &mapped, version)?;
            if req.allow_auto_topic_creation {
                req.allow_auto_topic_creation = false;
                Some(encode(&req, version)?)
            } else {
                None
            }
        }
        Ok(ApiKey::ListTransactions) => {
            let mut req: kafka_protocol::messages::ListTransactionsRequest =
                decode_req(ApiKey::ListTransactions, &mapped, version)?;
            match req.transactional_id_pattern.take() {
                Some(re) if !re.is_empty() => {
                    req.transactional_id_pattern = Some(s(tenant_regex(tenant, &re)));
                    Some(encode(&req, version)?)
                }
                other => {
                    req.transactional_id_pattern = other;
                    None
                }
            }
        }
        Ok(ApiKey::ConsumerGroupHeartbeat) => {
            let mut req: ConsumerGroupHeartbeatRequest =
                decode_req(ApiKey::ConsumerGroupHeartbeat, &mapped, version)?;
            match req.subscribed_topic_regex.take() {
                Some(re) if !re.is_empty() => {
                    req.subscribed_topic_regex = Some(s(tenant_regex(tenant, &re)));
                    Some(encode(&req, version)?)
                }
                other => {
                    req.subscribed_topic_regex = other;
                    None
                }
            }
        }
        _ => None,
    };
    let changed = changed || concentrated.is_some();
    Ok(Mapped {
        frame: match (special, changed) {
            (Some(b), _) => Some(join(&head, &b)),
            (None, true) => Some(framed.unwrap_or_else(|| join(&head, &mapped))),
            (None, false) => None,
        },
        concentrated,
    })
}

/// A regex over logical names (a subscription, a transactional-id pattern), as a regex over
/// the tenant's physical names (Kafka matches the whole name).
fn tenant_regex(tenant: &Tenant, logical: &str) -> String {
    format!("{}(?:{logical})", regex::escape(&tenant.prefix))
}

/// The tenant's own regex back from [`tenant_regex`]'s form.
fn logical_regex(tenant: &Tenant, physical: &str) -> Option<String> {
    physical
        .strip_prefix(&regex::escape(&tenant.prefix))?
        .strip_prefix("(?:")?
        .strip_suffix(')')
        .map(str::to_string)
}

fn map_resource(tenant: &Tenant, resource_type: i8, name: &StrBytes) -> StrBytes {
    match resource_type {
        CONFIG_TOPIC => s(tenant.physical_topic(name).into_owned()),
        CONFIG_GROUP => s(tenant.physical_group(name).into_owned()),
        _ => name.clone(),
    }
}

fn unmap_resource(tenant: &Tenant, resource_type: i8, name: &StrBytes) -> StrBytes {
    let logical = match resource_type {
        CONFIG_TOPIC => tenant.logical_topic(name).map(|c| c.into_owned()),
        CONFIG_GROUP => tenant.logical_group(name).map(|c| c.into_owned()),
        _ => None,
    };
    logical.map_or_else(|| name.clone(), s)
}

/// Maps a response back to the tenant's names. Names the tenant does not own are left as
/// they are: the ACL filtering before this has removed every listing entry they could be in.
pub fn unmap_response(
    tenant: &Tenant,
    concentrated: Option<&Concentrated>,
    api_key: i16,
    version: i16,
    frame: Bytes,
) -> Result<Bytes> {
    let key = ApiKey::try_from(api_key).map_err(|()| anyhow::anyhow!("unknown api key"))?;
    anyhow::ensure!(frame.len() >= 4, "response frame without a length prefix");
    let mut rest = frame.slice(4..);
    let total = rest.len();
    crate::schema::decode_response_header(key, version, &mut rest)?;
    let header_len = total - rest.len();
    let (head, body) = split_request(&frame, header_len)?;
    // Concentrated topics first: records filtered, physical names back to logical ones.
    let finished = match concentrated {
        Some(c) => concentrate::finish_response(c, api_key, version, &body)?,
        None => None,
    };
    let finished_any = finished.is_some();
    let body = finished.unwrap_or(body);
    // A shadowed name is the tenant's own topic under a second name: it does not exist, so
    // the broker's INVALID_TOPIC_EXCEPTION for its impossible physical name becomes
    // UNKNOWN_TOPIC_OR_PARTITION, as for any missing topic.
    //
    // And a concentrated topic's physical topic is not one of the tenant's topics: listings
    // (all topics) leave it out; the logical topics it holds are answered by name only
    // (`concentrate` turned those entries into logical ones above).
    let is_hidden = |name: &str| tenant.is_concentrated(name);
    let unshadowed = match key {
        ApiKey::Metadata
            if tenant.has_concentration()
                || (tenant.may_shadow() && mentions_shadow(tenant, &body)) =>
        {
            let mut resp: MetadataResponse = decode_resp(key, &body, version)?;
            let before = resp.topics.len();
            resp.topics
                .retain(|t| t.name.as_ref().is_none_or(|n| !is_hidden(n)));
            let mut changed = resp.topics.len() != before;
            for t in &mut resp.topics {
                let shadowed = t
                    .name
                    .as_ref()
                    .is_some_and(|n| tenant.shadowed_logical(n).is_some());
                if shadowed && t.error_code == INVALID_TOPIC_EXCEPTION {
                    t.error_code = UNKNOWN_TOPIC_OR_PARTITION;
                    changed = true;
                }
            }
            changed.then(|| encode(&resp, version)).transpose()?
        }
        // A group's committed offsets, all topics: the physical topic's are not the tenant's
        // to see (its logical topics' offsets are answered when asked for by name).
        ApiKey::OffsetFetch if tenant.has_concentration() => {
            let mut resp: OffsetFetchResponse = decode_resp(key, &body, version)?;
            let before =
                resp.topics.len() + resp.groups.iter().map(|g| g.topics.len()).sum::<usize>();
            resp.topics.retain(|t| !is_hidden(&t.name));
            for g in &mut resp.groups {
                g.topics.retain(|t| !is_hidden(&t.name));
            }
            let after =
                resp.topics.len() + resp.groups.iter().map(|g| g.topics.len()).sum::<usize>();
            (after != before)
                .then(|| encode(&resp, version))
                .transpose()?
        }
        ApiKey::DescribeTopicPartitions if tenant.has_concentration() => {
            let mut resp: DescribeTopicPartitionsResponse = decode_resp(key, &body, version)?;
            let before = resp.topics.len();
            resp.topics
                .retain(|t| t.name.as_ref().is_none_or(|n| !is_hidden(n)));
            let mut changed = resp.topics.len() != before;
            if resp
                .next_cursor
                .as_ref()
                .is_some_and(|c| is_hidden(&c.topic_name))
            {
                // Ending the listing is the safe answer (see the ACL stage's cursor rule).
                resp.next_cursor = None;
                changed = true;
            }
            changed.then(|| encode(&resp, version)).transpose()?
        }
        _ => None,
    };
    let finished_any = finished_any || unshadowed.is_some();
    let body = unshadowed.unwrap_or(body);
    let logical_names: std::collections::HashSet<&str> = concentrated
        .iter()
        .flat_map(|c| c.pairs().map(|(logical, _)| logical))
        .collect();
    let generic = rewrite_frame(
        Direction::Response,
        api_key,
        version,
        &head,
        &body,
        &mut |r, current| {
            if r.entity == Entity::TopicName && logical_names.contains(current) {
                return None;
            }
            let logical = match r.entity {
                Entity::TopicName => tenant.logical_topic(current),
                Entity::GroupId => tenant.logical_group(current),
                Entity::TransactionalId => tenant.logical_transactional_id(current),
                // Free text from the broker may quote physical names.
                _ if r.field.ends_with("error_message") => {
                    return tenant.scrub_text(current);
                }
                _ => None,
            };
            logical.map(|l| l.into_owned())
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot map names back: {e}"))?;
    let changed = generic.is_some();
    let (framed, mapped) = framed_and_body(generic, head.len(), &body);
    let special = match key {
        ApiKey::FindCoordinator if version >= 4 => {
            let mut resp: FindCoordinatorResponse = decode_resp(key, &mapped, version)?;
            for c in &mut resp.coordinators {
                let logical = tenant
                    .logical_group(&c.key)
                    .or_else(|| tenant.logical_transactional_id(&c.key))
                    .map(|l| l.into_owned());
                if let Some(l) = logical {
                    c.key = s(l);
                }
            }
            Some(encode(&resp, version)?)
        }
        ApiKey::ConsumerGroupDescribe => {
            let mut resp: kafka_protocol::messages::ConsumerGroupDescribeResponse =
                decode_resp(key, &mapped, version)?;
            let mut changed = false;
            for member in resp.groups.iter_mut().flat_map(|g| g.members.iter_mut()) {
                if let Some(re) = &member.subscribed_topic_regex {
                    if let Some(logical) = logical_regex(tenant, re) {
                        member.subscribed_topic_regex = Some(s(logical));
                        changed = true;
                    }
                }
            }
            if changed {
                Some(encode(&resp, version)?)
            } else {
                None
            }
        }
        ApiKey::DescribeConfigs => config_names!(
            tenant,
            decode_resp(ApiKey::DescribeConfigs),
            &mapped,
            version,
            DescribeConfigsResponse,
            results,
            unmap_resource
        ),
        ApiKey::AlterConfigs => config_names!(
            tenant,
            decode_resp(ApiKey::AlterConfigs),
            &mapped,
            version,
            AlterConfigsResponse,
            responses,
            unmap_resource
        ),
        ApiKey::IncrementalAlterConfigs => {
            config_names!(
                tenant,
                decode_resp(ApiKey::IncrementalAlterConfigs),
                &mapped,
                version,
                IncrementalAlterConfigsResponse,
                responses,
                unmap_resource
            )
        }
        _ => None,
    };
    Ok(match (special, changed || finished_any) {
        (Some(b), _) => join(&head, &b),
        (None, true) => framed.unwrap_or_else(|| join(&head, &mapped)),
        (None, false) => frame,
    })
}

/// Whether a request may grow the tenant past its `maxTopics` / `maxPartitions`.
pub fn limited(tenant: &Tenant, api_key: i16) -> bool {
    let l = &tenant.limits;
    (l.max_topics.is_some() || l.max_partitions.is_some())
        && matches!(
            ApiKey::try_from(api_key),
            Ok(ApiKey::CreateTopics | ApiKey::CreatePartitions)
        )
}

/// Checks a CreateTopics or CreatePartitions request (physical names) against the tenant's
/// limits, given the cluster's topics and partition counts now. `Ok(None)`: within limits;
/// `Ok(Some(frame))`: the answer refusing every topic of the request with POLICY_VIOLATION.
/// Two concurrent requests may both pass: the check is as of this request.
pub fn check_limits(
    tenant: &Tenant,
    usage: &[(String, usize)],
    api_key: i16,
    version: i16,
    correlation_id: i32,
    header_len: usize,
    frame: &Bytes,
) -> Result<Option<Bytes>> {
    use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
    use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
    use kafka_protocol::messages::{
        CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
        CreateTopicsResponse,
    };
    let (_, body) = split_request(frame, header_len)?;
    let owned: Vec<(&str, usize)> = usage
        .iter()
        .filter(|(t, _)| tenant.owns_topic(t))
        .map(|(t, n)| (t.as_str(), *n))
        .collect();
    let (topics_now, partitions_now) = (owned.len(), owned.iter().map(|(_, n)| n).sum::<usize>());
    let limits = &tenant.limits;
    let over = |topics: usize, partitions: usize| -> Option<String> {
        if let Some(max) = limits.max_topics.filter(|&m| topics > m as usize) {
            return Some(format!(
                "virtual cluster `{}` may have at most {max} topics",
                tenant.name
            ));
        }
        limits
            .max_partitions
            .filter(|&m| partitions > m as usize)
            .map(|max| {
                format!(
                    "virtual cluster `{}` may have at most {max} partitions",
                    tenant.name
                )
            })
    };
    let key = ApiKey::try_from(api_key).map_err(|()| anyhow::anyhow!("unknown api key"))?;
    match key {
        ApiKey::CreateTopics => {
            let req: CreateTopicsRequest = decode_req(ApiKey::CreateTopics, &body, version)?;
            let new: Vec<_> = req
                .topics
                .iter()
                .filter(|t| !owned.iter().any(|(n, _)| **n == *t.name.0))
                .collect();
            // An unspecified count (-1) takes the broker's default: count at least one.
            let partitions: usize = new
                .iter()
                .map(|t| {
                    if t.assignments.is_empty() {
                        t.num_partitions.max(1) as usize
                    } else {
                        t.assignments.len()
                    }
                })
                .sum();
            Ok(
                over(topics_now + new.len(), partitions_now + partitions).map(|m| {
                    let resp = CreateTopicsResponse::default().with_topics(
                        req.topics
                            .iter()
                            .map(|t| {
                                CreatableTopicResult::default()
                                    .with_name(t.name.clone())
                                    .with_error_code(POLICY_VIOLATION)
                                    .with_error_message(Some(s(m.clone())))
                                    .with_num_partitions(-1)
                                    .with_replication_factor(-1)
                            })
                            .collect(),
                    );
                    crate::message::encode_response(key, version, correlation_id, &resp)
                }),
            )
        }
        ApiKey::CreatePartitions => {
            let req: CreatePartitionsRequest =
                decode_req(ApiKey::CreatePartitions, &body, version)?;
            let added: usize = req
                .topics
                .iter()
                .map(|t| {
                    let now = owned
                        .iter()
                        .find(|(n, _)| **n == *t.name.0)
                        .map_or(0, |(_, c)| *c);
                    (t.count.max(0) as usize).saturating_sub(now)
                })
                .sum();
            Ok(over(topics_now, partitions_now + added).map(|m| {
                let resp = CreatePartitionsResponse::default().with_results(
                    req.topics
                        .iter()
                        .map(|t| {
                            CreatePartitionsTopicResult::default()
                                .with_name(t.name.clone())
                                .with_error_code(POLICY_VIOLATION)
                                .with_error_message(Some(s(m.clone())))
                        })
                        .collect(),
                );
                crate::message::encode_response(key, version, correlation_id, &resp)
            }))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    use super::*;
    use crate::state::FileStore;
    use crate::vcluster::VirtualClusterStore;
    use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::messages::{CreateTopicsResponse, TopicName};
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn regexes_are_confined_to_the_prefix_and_come_back() {
        let store = crate::vcluster::VirtualClusterStore::new(std::sync::Arc::new(
            crate::state::FileStore::open(&crate::state::test_dir("tenancy")).unwrap(),
        ));
        store
            .put_virtual_cluster(
                "a",
                serde_json::from_value(serde_json::json!({"prefix": "a.b-"})).unwrap(),
            )
            .unwrap();
        let tenant = store.snapshot().get("a").unwrap();
        let physical = tenant_regex(&tenant, "orders|pay.*");
        let re = regex::Regex::new(&format!("^(?:{physical})$")).unwrap();
        assert!(re.is_match("a.b-orders") && re.is_match("a.b-payments"));
        assert!(!re.is_match("orders") && !re.is_match("aXb-orders") && !re.is_match("z.orders"));
        assert_eq!(
            logical_regex(&tenant, &physical).as_deref(),
            Some("orders|pay.*")
        );
        assert_eq!(logical_regex(&tenant, "other.*"), None);
    }

    /// Tenant `a` (prefix `a.`).
    fn tenant() -> (Arc<Tenant>, std::path::PathBuf) {
        let dir = crate::state::test_dir("tenancy");
        let store = VirtualClusterStore::new(Arc::new(FileStore::open(&dir).unwrap()));
        store.restore().unwrap();
        store
            .put_virtual_cluster("a", serde_json::from_value(serde_json::json!({})).unwrap())
            .unwrap();
        let t = store.snapshot().get("a").unwrap();
        (t, dir)
    }

    #[test]
    fn broker_messages_come_back_in_the_tenants_terms() {
        let (t, dir) = tenant();
        let version = 5;
        let resp =
            CreateTopicsResponse::default().with_topics(vec![CreatableTopicResult::default()
                .with_name(TopicName(s("a.orders")))
                .with_error_code(36)
                .with_error_message(Some(s("Topic 'a.orders' already exists.")))]);
        let mut body = BytesMut::new();
        resp.encode(&mut body, version).unwrap();
        let frame = crate::message::response_frame(ApiKey::CreateTopics, version, 9, &body);
        let out = unmap_response(&t, None, ApiKey::CreateTopics as i16, version, frame).unwrap();
        let mut rest = out.slice(4..);
        ResponseHeader::decode(
            &mut rest,
            ApiKey::CreateTopics.response_header_version(version),
        )
        .unwrap();
        let got = CreateTopicsResponse::decode(&mut rest, version).unwrap();
        assert_eq!(got.topics[0].name.as_str(), "orders");
        assert_eq!(
            got.topics[0].error_message.as_deref(),
            Some("Topic 'orders' already exists.")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Tenants that take every hand-written path of the mapping: plain (prefix `q`), with
    /// topic limits (prefix `r`) (Metadata's auto-creation turned off), and with an alias and a
    /// concentration rule that match about half of the random names.
    fn tenants() -> (Vec<Arc<Tenant>>, std::path::PathBuf) {
        use crate::vcluster::{AliasTopicSpec, ConcentrationRuleSpec};
        let dir = crate::state::test_dir("tenancy-every-version");
        let store = VirtualClusterStore::new(Arc::new(FileStore::open(&dir).unwrap()));
        store.restore().unwrap();
        let put = |name: &str, spec: serde_json::Value| {
            store
                .put_virtual_cluster(name, serde_json::from_value(spec).unwrap())
                .unwrap();
        };
        put("plain", serde_json::json!({"prefix": "q"}));
        put(
            "limited",
            serde_json::json!({"prefix": "r", "limits": {"maxTopics": 5, "maxPartitions": 50}}),
        );
        put("mixed", serde_json::json!({"prefix": "s"}));
        store
            .put_alias_topic(
                "mixed-alias",
                AliasTopicSpec {
                    vcluster: "mixed".into(),
                    logical_topic: "zz".into(),
                    physical_topic: "shared".into(),
                },
            )
            .unwrap();
        store
            .put_concentration_rule(
                "mixed-rule",
                ConcentrationRuleSpec {
                    vcluster: "mixed".into(),
                    logical_topic_pattern: "[a-m][a-z]*".into(),
                    physical_topic: "sconc".into(),
                },
            )
            .unwrap();
        let snap = store.snapshot();
        let tenants = ["plain", "limited", "mixed"]
            .iter()
            .map(|n| snap.get(n).unwrap())
            .collect();
        (tenants, dir)
    }

    fn request_frame(key: ApiKey, version: i16, body: &[u8]) -> (Bytes, usize) {
        let header = kafka_protocol::messages::RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(11)
            .with_client_id(Some(s("prop")));
        let mut head = BytesMut::new();
        header
            .encode(&mut head, key.request_header_version(version))
            .unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32((head.len() + body.len()) as i32);
        frame.put_slice(&head);
        frame.put_slice(body);
        (frame.freeze(), head.len())
    }

    /// Every API the gateway advertises, at every version, both directions, through the
    /// tenant mapping (generic renames and every hand-written special case: coordinator
    /// keys, config resources, regexes, limits, concentrated and alias topics, listings):
    /// what comes out must be a frame of the same API and version that passes the structure
    /// check and decodes. A request may be refused with a Kafka error; it may never fail to
    /// encode (that closed kafka-python's connections on FindCoordinator v4+).
    #[test]
    fn every_api_and_version_maps_both_ways_to_decodable_frames() {
        use crate::schema::synth::{synth_body, Rng, SMALL};
        let (tenants, dir) = tenants();
        let mut rng = Rng(0x7e9a);
        let (mut mapped, mut refused, mut unmapped) = (0usize, 0usize, 0usize);
        for def in crate::schema::messages() {
            let Ok(key) = ApiKey::try_from(def.api_key) else {
                continue;
            };
            let range = crate::advertise::gateway_versions(key);
            for version in range.min..=range.max {
                for tenant in &tenants {
                    for _ in 0..6 {
                        let body = synth_body(&mut rng, &SMALL, def, version);
                        let what = format!(
                            "{key:?} v{version} {} tenant {}",
                            if def.response { "response" } else { "request" },
                            tenant.name
                        );
                        let out = if def.response {
                            let frame = crate::message::response_frame(key, version, 11, &body);
                            let out = unmap_response(tenant, None, key as i16, version, frame)
                                .unwrap_or_else(|e| panic!("{what}: {e:#} body {body:02x?}"));
                            unmapped += 1;
                            let mut rest = out.slice(4..);
                            crate::schema::decode_response_header(key, version, &mut rest)
                                .unwrap_or_else(|e| panic!("{what}: {e:#}"));
                            rest
                        } else {
                            let (frame, header_len) = request_frame(key, version, &body);
                            match map_request(tenant, key as i16, version, header_len, &frame) {
                                Ok(m) => {
                                    mapped += 1;
                                    m.frame.unwrap_or(frame).slice(4 + header_len..)
                                }
                                Err(MapError::Refused { .. }) => {
                                    refused += 1;
                                    continue;
                                }
                                Err(MapError::Broken(e)) => {
                                    panic!("{what}: {e:#} body {body:02x?}")
                                }
                            }
                        };
                        let walked = if def.response {
                            crate::schema::walk_response(def.api_key, version, &out, &mut ())
                        } else {
                            crate::schema::walk_request(def.api_key, version, &out, &mut ())
                        }
                        .unwrap_or_else(|e| panic!("{what}: mapped frame: {e}"));
                        assert_eq!(walked, out.len(), "{what}: trailing bytes after mapping");
                    }
                }
            }
        }
        assert!(
            mapped > 1000 && unmapped > 1000,
            "mapped {mapped}, unmapped {unmapped}"
        );
        eprintln!("mapped {mapped} requests ({refused} refused), {unmapped} responses");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
