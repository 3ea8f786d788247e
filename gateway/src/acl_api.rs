//! The Kafka ACL APIs (DescribeAcls, CreateAcls, DeleteAcls) answered from the gateway's own
//! ACL store.
//!
//! With `authorization.enabled` the gateway's ACLs are the ones enforced (the broker sees the
//! gateway's identity, not the client's), so `kafka-acls`, AdminClient and Terraform providers
//! must read and write *those*, not the broker's. Each Kafka ACL binding (one principal, one
//! resource pattern, one operation, one permission) is one stored [`AclSpec`] with a single
//! operation; an ACL stored through the admin API with several operations shows as several
//! bindings, and deleting one of them leaves the others.
//!
//! A virtual cluster is a cluster of its own here: a tenant's bindings carry its vcluster,
//! apply only to its connections, name its logical resources, and are the only ones it can
//! see or delete. "The cluster" in a tenant's ACLs (`kafka-cluster`) is its virtual cluster:
//! ALTER on it lets a tenant administrator manage the tenant's ACLs (and nothing of the
//! physical cluster, which stays out of a tenant's reach).
//!
//! Who may call: as in Kafka, DESCRIBE on the cluster for DescribeAcls and ALTER for
//! CreateAcls/DeleteAcls; with authorization off, a tenant gets `SECURITY_DISABLED` (as a
//! broker without an authorizer answers), while other connections are relayed to the broker.
//! Only the host `*` exists: the gateway's ACLs do not depend on the client address.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    create_acls_response::AclCreationResult,
    delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl},
    describe_acls_response::{AclDescription, DescribeAclsResource},
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tracing::info;

use crate::acl::{
    Operation, PatternType, Permission, Permits, ResourceType, CLUSTER_NAME, WILDCARD,
};
use crate::message::response_frame;
use crate::security::{AclSpec, PrincipalPermits, SecurityStore};

use crate::message::codes;

/// Kafka's wire codes (`AclOperation`, `ResourceType`, `PatternType`, `AclPermissionType`).
mod wire {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// Whether `key` is one of the ACL APIs this module answers.
pub fn is_acl_api(key: Option<ApiKey>) -> bool {
    matches!(
        key,
        Some(ApiKey::DescribeAcls | ApiKey::CreateAcls | ApiKey::DeleteAcls)
    )
}

/// Who is calling, and where.
pub struct Caller<'a> {
    /// The gateway's ACL store.
    pub store: &'a SecurityStore,
    /// The caller's ACLs; `None` when authorization is off.
    pub permits: Option<&'a PrincipalPermits>,
    /// The caller's virtual cluster: the ACLs it sees and makes are that virtual cluster's.
    pub vcluster: Option<&'a str>,
    /// The caller's principal, for the log.
    pub principal: &'a str,
}

/// Answers an ACL API request (`body` without length prefix and header) with a whole
/// response frame. `Err` means the request cannot be decoded: close the connection.
pub fn answer(
    caller: &Caller<'_>,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &Bytes,
) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    let encoded = match key {
        ApiKey::DescribeAcls => {
            describe(caller, decode(key, body, version)?).encode(&mut out, version)
        }
        ApiKey::CreateAcls => create(caller, decode(key, body, version)?).encode(&mut out, version),
        ApiKey::DeleteAcls => delete(caller, decode(key, body, version)?).encode(&mut out, version),
        other => return Err(format!("{other:?} is not an ACL API")),
    };
    encoded.map_err(|e| format!("cannot encode the {key:?} v{version} answer: {e:#}"))?;
    Ok(response_frame(key, version, correlation_id, &out))
}

fn decode<T: Decodable>(key: ApiKey, body: &Bytes, version: i16) -> Result<T, String> {
    crate::schema::decode_request(key, version, body).map_err(|e| format!("{e:#}"))
}

/// Why a caller may not use the ACL APIs, as an error code and message.
fn refusal(caller: &Caller<'_>, op: Operation) -> Option<(i16, &'static str)> {
    match caller.permits {
        None => Some((
            codes::SECURITY_DISABLED,
            "authorization is not enabled on this gateway",
        )),
        Some(p) if !p.permits(ResourceType::Cluster, CLUSTER_NAME, op) => Some((
            codes::CLUSTER_AUTHORIZATION_FAILED,
            "cluster authorization failed",
        )),
        Some(_) => None,
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

// ---------------------------------------------------------------------------------------
// Bindings: the Kafka view of the stored ACLs.

/// One Kafka ACL binding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Binding {
    resource_type: i8,
    name: String,
    pattern_type: i8,
    /// `User:<name>`, `User:*` or `Group:<name>`.
    principal: String,
    operation: i8,
    permission: i8,
}

fn resource_code(rt: ResourceType) -> i8 {
    match rt {
        ResourceType::Topic => 2,
        ResourceType::Group => 3,
        ResourceType::Cluster => 4,
        ResourceType::TransactionalId => 5,
    }
}

fn resource_from(code: i8) -> Option<ResourceType> {
    Some(match code {
        2 => ResourceType::Topic,
        3 => ResourceType::Group,
        4 => ResourceType::Cluster,
        5 => ResourceType::TransactionalId,
        _ => return None,
    })
}

fn operation_code(op: Operation) -> i8 {
    match op {
        Operation::All => 2,
        Operation::Read => 3,
        Operation::Write => 4,
        Operation::Create => 5,
        Operation::Delete => 6,
        Operation::Alter => 7,
        Operation::Describe => 8,
        Operation::ClusterAction => 9,
        Operation::DescribeConfigs => 10,
        Operation::AlterConfigs => 11,
        Operation::IdempotentWrite => 12,
    }
}

fn operation_from(code: i8) -> Option<Operation> {
    Operation::EVERY
        .into_iter()
        .find(|op| operation_code(*op) == code)
}

fn pattern_code(p: PatternType) -> i8 {
    match p {
        PatternType::Literal => wire::LITERAL,
        PatternType::Prefixed => wire::PREFIXED,
    }
}

fn permission_code(p: Permission) -> i8 {
    match p {
        Permission::Allow => wire::ALLOW,
        Permission::Deny => wire::DENY,
    }
}

fn principal_text(spec: &AclSpec) -> String {
    match (&spec.principal, &spec.group) {
        (Some(p), _) => format!("User:{p}"),
        (None, Some(g)) => format!("Group:{g}"),
        (None, None) => String::new(),
    }
}

/// The bindings of one stored ACL.
fn bindings(spec: &AclSpec) -> impl Iterator<Item = Binding> + '_ {
    spec.operations.iter().map(move |op| Binding {
        resource_type: resource_code(spec.resource_type),
        name: spec.name.clone(),
        pattern_type: pattern_code(spec.pattern_type),
        principal: principal_text(spec),
        operation: operation_code(*op),
        permission: permission_code(spec.permission),
    })
}

/// The stored ACLs of `vcluster` (the global ones for `None`), by name.
fn scoped(caller: &Caller<'_>) -> Vec<(String, AclSpec)> {
    caller
        .store
        .acl_specs()
        .into_iter()
        .filter(|(_, spec)| spec.vcluster.as_deref() == caller.vcluster)
        .collect()
}

/// A DescribeAcls or DeleteAcls filter.
struct Filter {
    resource_type: i8,
    name: Option<String>,
    pattern_type: i8,
    principal: Option<String>,
    host: Option<String>,
    operation: i8,
    permission: i8,
}

impl Filter {
    /// Checks the codes as Kafka does: UNKNOWN (0) or out-of-range values are invalid.
    fn validate(&self) -> Result<(), String> {
        if !(1..=7).contains(&self.resource_type) {
            return Err(format!("invalid resource type {}", self.resource_type));
        }
        if !(1..=4).contains(&self.pattern_type) {
            return Err(format!("invalid pattern type {}", self.pattern_type));
        }
        if !(1..=14).contains(&self.operation) {
            return Err(format!("invalid operation {}", self.operation));
        }
        if !(1..=3).contains(&self.permission) {
            return Err(format!("invalid permission type {}", self.permission));
        }
        Ok(())
    }

    fn matches(&self, b: &Binding) -> bool {
        let name_ok = match (self.pattern_type, &self.name) {
            (wire::MATCH, Some(name)) => {
                (b.pattern_type == wire::LITERAL && (b.name == *name || b.name == WILDCARD))
                    || (b.pattern_type == wire::PREFIXED && name.starts_with(b.name.as_str()))
            }
            (wire::MATCH | wire::ANY, None) => true,
            (wire::ANY, Some(name)) => b.name == *name,
            (pattern, name) => {
                b.pattern_type == pattern && name.as_ref().is_none_or(|n| b.name == *n)
            }
        };
        name_ok
            && (self.resource_type == wire::ANY || self.resource_type == b.resource_type)
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_deref().is_none_or(|h| h == WILDCARD)
            && (self.operation == wire::ANY || self.operation == b.operation)
            && (self.permission == wire::ANY || self.permission == b.permission)
    }
}

/// The [`Filter`] of a DescribeAcls request or a DeleteAcls filter (same field names).
macro_rules! filter_of {
    ($f:expr) => {{
        let opt = |s: &Option<StrBytes>| s.as_ref().map(|s| s.to_string());
        Filter {
            resource_type: $f.resource_type_filter,
            name: opt(&$f.resource_name_filter),
            pattern_type: $f.pattern_type_filter,
            principal: opt(&$f.principal_filter),
            host: opt(&$f.host_filter),
            operation: $f.operation,
            permission: $f.permission_type,
        }
    }};
}

// ---------------------------------------------------------------------------------------
// The three APIs.

fn describe(caller: &Caller<'_>, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let mut resp = DescribeAclsResponse::default();
    if let Some((code, message)) = refusal(caller, Operation::Describe) {
        resp.error_code = code;
        resp.error_message = Some(text(message));
        return resp;
    }
    let filter = filter_of!(req);
    if let Err(message) = filter.validate() {
        resp.error_code = codes::INVALID_REQUEST;
        resp.error_message = Some(text(&message));
        return resp;
    }
    // Grouped by resource pattern, in a stable order.
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<Binding>> = BTreeMap::new();
    for (_, spec) in scoped(caller) {
        for b in bindings(&spec).filter(|b| filter.matches(b)) {
            let key = (b.resource_type, b.name.clone(), b.pattern_type);
            let list = by_resource.entry(key).or_default();
            if !list.contains(&b) {
                list.push(b);
            }
        }
    }
    resp.resources = by_resource
        .into_iter()
        .map(|((resource_type, name, pattern_type), mut list)| {
            list.sort();
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(text(&name))
                .with_pattern_type(pattern_type)
                .with_acls(
                    list.into_iter()
                        .map(|b| {
                            AclDescription::default()
                                .with_principal(text(&b.principal))
                                .with_host(text(WILDCARD))
                                .with_operation(b.operation)
                                .with_permission_type(b.permission)
                        })
                        .collect(),
                )
        })
        .collect();
    resp
}

/// The stored form of one creation, or why it is invalid.
fn creation_spec(
    c: &kafka_protocol::messages::create_acls_request::AclCreation,
    vcluster: Option<&str>,
) -> Result<AclSpec, String> {
    let resource_type = resource_from(c.resource_type).ok_or_else(|| {
        format!(
            "resource type {} is not one the gateway's ACLs cover (topic, group, cluster, transactional id)",
            c.resource_type
        )
    })?;
    let pattern_type = match c.resource_pattern_type {
        wire::LITERAL => PatternType::Literal,
        wire::PREFIXED => PatternType::Prefixed,
        other => return Err(format!("invalid pattern type {other} for an ACL")),
    };
    let operation = operation_from(c.operation)
        .ok_or_else(|| format!("invalid operation {} for an ACL", c.operation))?;
    let permission = match c.permission_type {
        wire::ALLOW => Permission::Allow,
        wire::DENY => Permission::Deny,
        other => return Err(format!("invalid permission type {other}")),
    };
    if c.host.as_str() != WILDCARD {
        return Err("the gateway's ACLs apply to every host: give host `*`".into());
    }
    let (principal, group) = match c.principal.as_str().split_once(':') {
        Some(("User", name)) if !name.is_empty() => (Some(name.to_string()), None),
        Some(("Group", name)) if !name.is_empty() && name != WILDCARD => {
            (None, Some(name.to_string()))
        }
        _ => {
            return Err(format!(
                "invalid principal `{}`: give `User:<name>`, `User:*` or `Group:<name>`",
                c.principal.as_str()
            ))
        }
    };
    let spec = AclSpec {
        principal,
        group,
        resource_type,
        pattern_type,
        name: c.resource_name.to_string(),
        operations: vec![operation],
        permission,
        vcluster: vcluster.map(str::to_string),
    };
    spec.validate().map_err(|problems| problems.join("; "))?;
    Ok(spec)
}

/// The stored name of a binding: the same binding always gets the same name, so creating
/// it twice is harmless (as in Kafka).
fn stored_name(spec: &AclSpec) -> String {
    let canonical = serde_json::to_vec(spec).expect("acl serializes");
    let digest = Sha256::digest(&canonical);
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    match &spec.vcluster {
        Some(_) => format!("kafka-vc-{hex}"),
        None => format!("kafka-{hex}"),
    }
}

fn create(caller: &Caller<'_>, req: CreateAclsRequest) -> CreateAclsResponse {
    let refused = refusal(caller, Operation::Alter);
    let results = req
        .creations
        .iter()
        .map(|c| {
            let (code, message) = match refused {
                Some((code, message)) => (code, Some(message.to_string())),
                None => match creation_spec(c, caller.vcluster) {
                    Err(message) => (codes::INVALID_REQUEST, Some(message)),
                    Ok(spec) => {
                        let name = stored_name(&spec);
                        match caller.store.put_acl(&name, spec) {
                            Ok(_) => {
                                info!(principal = caller.principal, vcluster = caller.vcluster,
                                    acl = %name, "ACL created through the Kafka API");
                                (codes::NONE, None)
                            }
                            Err(e) => (codes::UNKNOWN_SERVER_ERROR, Some(e.error)),
                        }
                    }
                },
            };
            AclCreationResult::default()
                .with_error_code(code)
                .with_error_message(message.map(|m| text(&m)))
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

fn delete(caller: &Caller<'_>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let refused = refusal(caller, Operation::Alter);
    let stored = if refused.is_none() {
        scoped(caller)
    } else {
        Vec::new()
    };
    // Every filter is matched against the ACLs as they were before this request; what any
    // filter matched is then deleted once.
    let mut doomed: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    let mut results = Vec::with_capacity(req.filters.len());
    for f in &req.filters {
        if let Some((code, message)) = refused {
            results.push(
                DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(text(message))),
            );
            continue;
        }
        let filter = filter_of!(f);
        if let Err(message) = filter.validate() {
            results.push(
                DeleteAclsFilterResult::default()
                    .with_error_code(codes::INVALID_REQUEST)
                    .with_error_message(Some(text(&message))),
            );
            continue;
        }
        let mut matching = Vec::new();
        for (name, spec) in &stored {
            for (op, b) in spec.operations.iter().zip(bindings(spec)) {
                if filter.matches(&b) {
                    doomed.entry(name.clone()).or_default().push(*op);
                    matching.push(
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type)
                            .with_resource_name(text(&b.name))
                            .with_pattern_type(b.pattern_type)
                            .with_principal(text(&b.principal))
                            .with_host(text(WILDCARD))
                            .with_operation(b.operation)
                            .with_permission_type(b.permission),
                    );
                }
            }
        }
        results.push(DeleteAclsFilterResult::default().with_matching_acls(matching));
    }
    let mut failure = None;
    for (name, ops) in doomed {
        let Some((_, spec)) = stored.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let left: Vec<Operation> = spec
            .operations
            .iter()
            .copied()
            .filter(|op| !ops.contains(op))
            .collect();
        let outcome = if left.is_empty() {
            caller.store.delete_acl(&name)
        } else {
            let mut rest = spec.clone();
            rest.operations = left;
            caller.store.put_acl(&name, rest).map(drop)
        };
        match outcome {
            Ok(()) => info!(principal = caller.principal, vcluster = caller.vcluster,
                acl = %name, "ACL deleted through the Kafka API"),
            // Deleted meanwhile by someone else: what was asked is done.
            Err(e) if e.status == 404 => {}
            Err(e) => failure = Some(e.error),
        }
    }
    if let Some(message) = failure {
        // The store failed part-way: say so on every filter rather than claim success.
        for r in &mut results {
            if r.error_code == codes::NONE {
                r.error_code = codes::UNKNOWN_SERVER_ERROR;
                r.error_message = Some(text(&message));
                r.matching_acls.clear();
            }
        }
    }
    DeleteAclsResponse::default().with_filter_results(results)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    use super::*;
    use crate::state::FileStore;
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
    use kafka_protocol::messages::ResponseHeader;
    use std::sync::Arc;

    fn store() -> (Arc<SecurityStore>, std::path::PathBuf) {
        let dir = crate::state::test_dir("acl-api");
        let store = Arc::new(SecurityStore::new(Arc::new(FileStore::open(&dir).unwrap())));
        store.restore().unwrap();
        (store, dir)
    }

    fn call<Req: Encodable, Resp: Decodable>(
        caller: &Caller<'_>,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        let mut body = BytesMut::new();
        req.encode(&mut body, version).unwrap();
        let mut frame = answer(caller, key, version, 7, &body.freeze()).unwrap();
        let _len = bytes::Buf::get_i32(&mut frame);
        let header =
            ResponseHeader::decode(&mut frame, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, 7);
        Resp::decode(&mut frame, version).unwrap()
    }

    fn creation(rt: i8, name: &str, pattern: i8, principal: &str, op: i8) -> AclCreation {
        AclCreation::default()
            .with_resource_type(rt)
            .with_resource_name(text(name))
            .with_resource_pattern_type(pattern)
            .with_principal(text(principal))
            .with_host(text("*"))
            .with_operation(op)
            .with_permission_type(wire::ALLOW)
    }

    fn create_codes(caller: &Caller<'_>, creations: Vec<AclCreation>) -> Vec<i16> {
        let resp: CreateAclsResponse = call(
            caller,
            ApiKey::CreateAcls,
            3,
            &CreateAclsRequest::default().with_creations(creations),
        );
        resp.results.iter().map(|r| r.error_code).collect()
    }

    fn describe_filter(pattern: i8, name: Option<&str>) -> DescribeAclsRequest {
        DescribeAclsRequest::default()
            .with_resource_type_filter(wire::ANY)
            .with_resource_name_filter(name.map(text))
            .with_pattern_type_filter(pattern)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_operation(wire::ANY)
            .with_permission_type(wire::ANY)
    }

    /// (resource name, pattern type, principal, operation) of every described binding.
    fn describe_all(
        caller: &Caller<'_>,
        req: DescribeAclsRequest,
    ) -> Vec<(String, i8, String, i8)> {
        let resp: DescribeAclsResponse = call(caller, ApiKey::DescribeAcls, 3, &req);
        assert_eq!(resp.error_code, codes::NONE, "{:?}", resp.error_message);
        let mut out = Vec::new();
        for r in resp.resources {
            for a in r.acls {
                out.push((
                    r.resource_name.to_string(),
                    r.pattern_type,
                    a.principal.to_string(),
                    a.operation,
                ));
            }
        }
        out
    }

    fn admin(store: &Arc<SecurityStore>, supers: &[String]) -> PrincipalPermits {
        PrincipalPermits::new(store.clone(), "root", vec![], supers)
    }

    #[test]
    fn bindings_round_trip_and_stay_in_their_virtual_cluster() {
        let (store, dir) = store();
        let supers = vec!["root".to_string()];
        let root = admin(&store, &supers);
        let tenant_root = admin(&store, &supers).in_vcluster(Some("a".into()));
        let global = Caller {
            store: &store,
            permits: Some(&root),
            vcluster: None,
            principal: "root",
        };
        let tenant = Caller {
            vcluster: Some("a"),
            permits: Some(&tenant_root),
            ..global
        };
        assert_eq!(
            create_codes(
                &tenant,
                vec![
                    creation(2, "orders", wire::LITERAL, "User:carol", 4),
                    creation(2, "orders", wire::LITERAL, "User:carol", 4),
                    creation(3, "app-", wire::PREFIXED, "Group:ops", 3),
                ]
            ),
            vec![0, 0, 0]
        );
        assert_eq!(
            create_codes(&global, vec![creation(2, "*", wire::LITERAL, "User:*", 8)]),
            vec![0]
        );
        // The same binding twice is stored once.
        let stored = store.acl_specs();
        assert_eq!(stored.len(), 3);
        let carol = stored
            .iter()
            .find(|(_, s)| s.principal.as_deref() == Some("carol"))
            .unwrap();
        assert_eq!(carol.1.vcluster.as_deref(), Some("a"));
        assert_eq!(carol.1.operations, vec![Operation::Write]);
        assert!(carol.0.starts_with("kafka-vc-"), "{}", carol.0);

        let everything = describe_filter(wire::ANY, None);
        assert_eq!(
            describe_all(&tenant, everything.clone()),
            vec![
                ("orders".into(), wire::LITERAL, "User:carol".into(), 4),
                ("app-".into(), wire::PREFIXED, "Group:ops".into(), 3),
            ]
        );
        assert_eq!(
            describe_all(&global, everything),
            vec![("*".into(), wire::LITERAL, "User:*".into(), 8)]
        );
        // A tenant's binding applies only inside its virtual cluster.
        let carol_a = PrincipalPermits::new(store.clone(), "carol", vec![], &[])
            .in_vcluster(Some("a".into()));
        let carol_b = PrincipalPermits::new(store.clone(), "carol", vec![], &[])
            .in_vcluster(Some("b".into()));
        let carol_none = PrincipalPermits::new(store.clone(), "carol", vec![], &[]);
        assert!(carol_a.permits(ResourceType::Topic, "orders", Operation::Write));
        assert!(!carol_b.permits(ResourceType::Topic, "orders", Operation::Write));
        assert!(!carol_none.permits(ResourceType::Topic, "orders", Operation::Write));
        // The global describe-everything applies everywhere.
        assert!(carol_b.permits(ResourceType::Topic, "x", Operation::Describe));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn match_filters_find_what_applies_to_a_name() {
        let (store, dir) = store();
        let supers = vec!["root".to_string()];
        let root = admin(&store, &supers);
        let caller = Caller {
            store: &store,
            permits: Some(&root),
            vcluster: None,
            principal: "root",
        };
        let codes = create_codes(
            &caller,
            vec![
                creation(2, "orders", wire::LITERAL, "User:a", 3),
                creation(2, "*", wire::LITERAL, "User:b", 3),
                creation(2, "ord", wire::PREFIXED, "User:c", 3),
                creation(2, "pay", wire::PREFIXED, "User:d", 3),
                creation(2, "orders-eu", wire::LITERAL, "User:e", 3),
            ],
        );
        assert_eq!(codes, vec![0; 5]);
        let principals = |pattern, name| -> Vec<String> {
            let mut p: Vec<String> = describe_all(&caller, describe_filter(pattern, name))
                .into_iter()
                .map(|(_, _, p, _)| p)
                .collect();
            p.sort();
            p
        };
        assert_eq!(
            principals(wire::MATCH, Some("orders")),
            ["User:a", "User:b", "User:c"]
        );
        assert_eq!(principals(wire::LITERAL, Some("orders")), ["User:a"]);
        assert_eq!(
            principals(wire::LITERAL, None),
            ["User:a", "User:b", "User:e"]
        );
        assert_eq!(principals(wire::PREFIXED, None), ["User:c", "User:d"]);
        assert_eq!(principals(wire::ANY, Some("ord")), ["User:c"]);
        assert_eq!(principals(wire::MATCH, Some("paris")), ["User:b"]);
        // Only the host `*` exists.
        let on_host = describe_filter(wire::ANY, None).with_host_filter(Some(text("10.0.0.1")));
        assert!(describe_all(&caller, on_host).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn deleting_a_binding_keeps_the_other_operations_of_an_acl() {
        let (store, dir) = store();
        store
            .put_acl(
                "ops",
                serde_json::from_value(serde_json::json!({"principal": "ops",
                    "resourceType": "topic", "name": "logs",
                    "operations": ["read", "write"]}))
                .unwrap(),
            )
            .unwrap();
        let supers = vec!["root".to_string()];
        let root = admin(&store, &supers);
        let caller = Caller {
            store: &store,
            permits: Some(&root),
            vcluster: None,
            principal: "root",
        };
        let filter = |op: i8| {
            DeleteAclsFilter::default()
                .with_resource_type_filter(2)
                .with_resource_name_filter(Some(text("logs")))
                .with_pattern_type_filter(wire::LITERAL)
                .with_principal_filter(Some(text("User:ops")))
                .with_host_filter(None)
                .with_operation(op)
                .with_permission_type(wire::ANY)
        };
        let resp: DeleteAclsResponse = call(
            &caller,
            ApiKey::DeleteAcls,
            3,
            &DeleteAclsRequest::default().with_filters(vec![filter(4), filter(4)]),
        );
        // Both filters report the match; it is deleted once.
        assert_eq!(resp.filter_results.len(), 2);
        for r in &resp.filter_results {
            assert_eq!(r.error_code, 0);
            assert_eq!(r.matching_acls.len(), 1);
            assert_eq!(r.matching_acls[0].operation, 4);
        }
        let stored = store.acl_specs();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].1.operations, vec![Operation::Read]);
        let resp: DeleteAclsResponse = call(
            &caller,
            ApiKey::DeleteAcls,
            3,
            &DeleteAclsRequest::default().with_filters(vec![filter(wire::ANY)]),
        );
        assert_eq!(resp.filter_results[0].matching_acls.len(), 1);
        assert!(store.acl_specs().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refusals_and_invalid_bindings() {
        let (store, dir) = store();
        let off = Caller {
            store: &store,
            permits: None,
            vcluster: Some("a"),
            principal: "alice",
        };
        assert_eq!(
            create_codes(&off, vec![creation(2, "t", wire::LITERAL, "User:x", 3)]),
            vec![codes::SECURITY_DISABLED]
        );
        let resp: DescribeAclsResponse = call(
            &off,
            ApiKey::DescribeAcls,
            1,
            &describe_filter(wire::ANY, None),
        );
        assert_eq!(resp.error_code, codes::SECURITY_DISABLED);
        // No ALTER on the cluster: nothing created.
        let nobody = PrincipalPermits::new(store.clone(), "nobody", vec![], &[]);
        let denied = Caller {
            permits: Some(&nobody),
            ..off
        };
        assert_eq!(
            create_codes(&denied, vec![creation(2, "t", wire::LITERAL, "User:x", 3)]),
            vec![codes::CLUSTER_AUTHORIZATION_FAILED]
        );
        let resp: DeleteAclsResponse = call(
            &denied,
            ApiKey::DeleteAcls,
            1,
            &DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
                .with_resource_type_filter(wire::ANY)
                .with_pattern_type_filter(wire::LITERAL)
                .with_operation(wire::ANY)
                .with_permission_type(wire::ANY)]),
        );
        assert_eq!(
            resp.filter_results[0].error_code,
            codes::CLUSTER_AUTHORIZATION_FAILED
        );
        assert!(store.acl_specs().is_empty());
        // Invalid bindings, each with its own answer; the valid one is created.
        let supers = vec!["root".to_string()];
        let root = admin(&store, &supers);
        let caller = Caller {
            permits: Some(&root),
            ..off
        };
        let mut on_host = creation(2, "t", wire::LITERAL, "User:x", 3);
        on_host.host = text("10.0.0.1");
        let codes = create_codes(
            &caller,
            vec![
                on_host,
                creation(2, "t", wire::LITERAL, "x", 3),
                creation(6, "t", wire::LITERAL, "User:x", 3),
                creation(2, "t", wire::LITERAL, "User:x", 12),
                creation(2, "t", wire::MATCH, "User:x", 3),
                creation(4, "kafka-cluster", wire::LITERAL, "User:x", 7),
            ],
        );
        assert_eq!(codes, vec![42, 42, 42, 42, 42, 0]);
        assert_eq!(store.acl_specs().len(), 1);
        // A request that does not decode closes the connection.
        let garbage = Bytes::from_static(&[0xff, 0xff, 0xff, 0x7f]);
        assert!(answer(&caller, ApiKey::CreateAcls, 3, 1, &garbage).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The three ACL APIs at every version the gateway advertises, with random bodies (most
    /// bindings invalid, some valid: resource types and operations are random bytes), for a
    /// super user globally and inside a virtual cluster: every answer is a frame of the same
    /// API and version that passes the structure check and decodes.
    #[test]
    fn every_version_answers_random_requests_with_decodable_frames() {
        use crate::schema::synth::{synth_body, Rng, SMALL};
        let (store, dir) = store();
        let supers = vec!["root".to_string()];
        let root = admin(&store, &supers);
        let tenant_root = admin(&store, &supers).in_vcluster(Some("a".into()));
        let global = Caller {
            store: &store,
            permits: Some(&root),
            vcluster: None,
            principal: "root",
        };
        let tenant = Caller {
            vcluster: Some("a"),
            permits: Some(&tenant_root),
            ..global
        };
        let mut rng = Rng(0xac1a);
        let mut answered = 0;
        for key in [ApiKey::DescribeAcls, ApiKey::CreateAcls, ApiKey::DeleteAcls] {
            let def = crate::schema::request_def(key as i16).unwrap();
            let range = crate::advertise::gateway_versions(key);
            for version in range.min..=range.max {
                for caller in [&global, &tenant] {
                    for _ in 0..40 {
                        let body = Bytes::from(synth_body(&mut rng, &SMALL, def, version));
                        let frame = answer(caller, key, version, 7, &body)
                            .unwrap_or_else(|e| panic!("{key:?} v{version}: {e} {body:02x?}"));
                        let mut rest = frame.slice(4..);
                        crate::schema::decode_response_header(key, version, &mut rest).unwrap();
                        let walked =
                            crate::schema::walk_response(key as i16, version, &rest, &mut ())
                                .unwrap_or_else(|e| panic!("{key:?} v{version}: answer: {e}"));
                        assert_eq!(walked, rest.len(), "{key:?} v{version}");
                        answered += 1;
                    }
                }
            }
        }
        assert!(answered > 300, "{answered}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
