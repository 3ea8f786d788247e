//! Configs: DescribeConfigs (redacted on the way back), AlterConfigs and
//! IncrementalAlterConfigs (partial writes). A config resource maps to the ACL resource it
//! belongs to: topics and groups to themselves, brokers, loggers and client metrics to the
//! cluster.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;

use super::codes::*;
use super::{edit, merge, not_routed, pass, redact, split, Req, Resp, Step};
use crate::acl::{Operation as Op, Permits, ResourceType as Rt, CLUSTER_NAME};

/// The request side of the config APIs.
pub(super) fn check(r: &Req<'_>) -> Step {
    use ApiKey::*;
    match r.key {
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
        other => Err(not_routed(other)),
    }
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

/// What the config responses need.
#[derive(Debug, Clone)]
#[allow(clippy::enum_variant_names)] // named after the APIs whose responses they complete
pub(super) enum Fix {
    DescribeConfigs,
    AlterConfigs {
        order: Vec<(i8, String)>,
        denied: Vec<alter_configs_response::AlterConfigsResourceResponse>,
    },
    IncrementalAlterConfigs {
        order: Vec<(i8, String)>,
        denied: Vec<incremental_alter_configs_response::AlterConfigsResourceResponse>,
    },
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
        Fix::DescribeConfigs => edit(body, key, v, |m: &mut DescribeConfigsResponse| {
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
        Fix::AlterConfigs { order, denied } => {
            edit(body, key, v, |m: &mut AlterConfigsResponse| {
                merge(&mut m.responses, denied, order, |c| {
                    (c.resource_type, c.resource_name.to_string())
                })
            })?
        }
        Fix::IncrementalAlterConfigs { order, denied } => {
            edit(body, key, v, |m: &mut IncrementalAlterConfigsResponse| {
                merge(&mut m.responses, denied, order, |c| {
                    (c.resource_type, c.resource_name.to_string())
                })
            })?
        }
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
}
