//! Access control: who may do what to which Kafka resource.
//!
//! The model is Kafka's: an ACL binds a principal (or a group of principals) to an operation on
//! a resource (topic, consumer group, transactional id, the cluster), matched by a literal or a
//! prefixed name pattern, and allows or denies it. A deny always wins over an allow; with
//! authorization on, nothing is allowed that no ACL allows (super users excepted).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Kafka resource types an ACL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceType {
    /// A topic, by name.
    Topic,
    /// A consumer group, by group id.
    Group,
    /// A transactional producer, by transactional id.
    TransactionalId,
    /// The cluster as a whole (the name is `kafka-cluster`).
    Cluster,
}

/// Operations, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Every operation.
    All,
    /// Consume from a topic; join or commit in a group.
    Read,
    /// Produce to a topic; use a transactional id.
    Write,
    /// Create topics.
    Create,
    /// Delete topics, records or groups.
    Delete,
    /// Change partitions or ACLs.
    Alter,
    /// See that a resource exists and its metadata.
    Describe,
    /// Inter-broker calls.
    ClusterAction,
    /// Read configurations.
    DescribeConfigs,
    /// Change configurations.
    AlterConfigs,
    /// Idempotent produce (producer ids).
    IdempotentWrite,
}

/// The name Kafka gives the cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// Answers "may this connection's principal do `op` on `resource_type` `name`?".
///
/// Implemented by the authorizer over the ACLs for one authenticated identity; the per-API
/// enforcement in [`crate::authorize`] only needs this question answered.
pub trait Permits {
    /// Whether the operation is allowed.
    fn permits(&self, resource_type: ResourceType, name: &str, op: Operation) -> bool;

    /// Whether the resource exists for this principal at all. A virtual cluster hides other
    /// tenants' resources: they are answered as unknown, not as forbidden, so a tenant cannot
    /// even learn that they exist.
    fn visible(&self, _resource_type: ResourceType, _name: &str) -> bool {
        true
    }
}

/// How an ACL's resource name matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatternType {
    /// The exact name; the literal name `*` matches every name.
    #[default]
    Literal,
    /// Every name starting with the pattern's name.
    Prefixed,
}

/// Whether an ACL allows or denies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Allows the operations (unless a deny matches too).
    #[default]
    Allow,
    /// Denies the operations; always wins over an allow.
    Deny,
}

/// The literal resource name that matches every name.
pub const WILDCARD: &str = "*";

impl ResourceType {
    /// Every resource type.
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::TransactionalId,
        ResourceType::Cluster,
    ];

    /// The name used in ACL specs (`topic`, `group`, `transactional-id`, `cluster`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::TransactionalId => "transactional-id",
            ResourceType::Cluster => "cluster",
        }
    }

    /// The operations that mean something on this resource type, as Kafka defines them;
    /// an ACL naming any other operation could never match a request and is refused.
    pub fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                All,
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[All, Read, Delete, Describe, DescribeConfigs, AlterConfigs],
            ResourceType::TransactionalId => &[All, Write, Describe],
            ResourceType::Cluster => &[
                All,
                Create,
                Alter,
                Describe,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
            ],
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Operation {
    /// Every operation.
    pub const EVERY: [Operation; 11] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
    ];

    /// The name used in ACL specs (`read`, `describe-configs`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::All => "all",
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Alter => "alter",
            Operation::Describe => "describe",
            Operation::ClusterAction => "cluster-action",
            Operation::DescribeConfigs => "describe-configs",
            Operation::AlterConfigs => "alter-configs",
            Operation::IdempotentWrite => "idempotent-write",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Operations an ALLOW of `self` grants: Kafka's implications (`all` grants everything,
    /// `read`/`write`/`delete`/`alter` grant `describe`, `alter-configs` grants
    /// `describe-configs`).
    fn allow_mask(self) -> u16 {
        match self {
            Operation::All => u16::MAX,
            Operation::Read | Operation::Write | Operation::Delete | Operation::Alter => {
                self.bit() | Operation::Describe.bit()
            }
            Operation::AlterConfigs => self.bit() | Operation::DescribeConfigs.bit(),
            _ => self.bit(),
        }
    }

    /// Operations a DENY of `self` refuses: only itself, or everything for `all`. As in
    /// Kafka, denying `read` does not deny `describe`.
    fn deny_mask(self) -> u16 {
        match self {
            Operation::All => u16::MAX,
            _ => self.bit(),
        }
    }
}

/// Whom an ACL applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// One principal, by name.
    Principal(String),
    /// Every authenticated principal (`principal: "*"`).
    AnyPrincipal,
    /// Every member of a group.
    Group(String),
}

impl Subject {
    fn matches(&self, principal: &str, is_member: &impl Fn(&str) -> bool) -> bool {
        match self {
            Subject::Principal(p) => p == principal,
            // An empty principal is no identity at all; `*` means "anyone authenticated".
            Subject::AnyPrincipal => !principal.is_empty(),
            Subject::Group(g) => is_member(g),
        }
    }
}

/// One validated ACL, the input of an [`AclIndex`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    /// Whom it applies to.
    pub subject: Subject,
    /// The resource type.
    pub resource_type: ResourceType,
    /// How `name` matches.
    pub pattern_type: PatternType,
    /// Resource name or prefix; literal `*` is every name.
    pub name: String,
    /// Operations it allows or denies.
    pub operations: Vec<Operation>,
    /// Allow or deny.
    pub permission: Permission,
}

/// An ACL reduced to what the per-request check needs.
#[derive(Debug, Clone)]
struct Compiled {
    subject: Subject,
    /// Operations it matches, implications included (see [`Operation::allow_mask`]).
    ops: u16,
    deny: bool,
}

/// The ACLs of one resource type, indexed by name so a check looks at the few that can match.
#[derive(Debug, Default)]
struct TypeIndex {
    /// Literal `*`.
    any: Vec<Compiled>,
    literal: HashMap<Box<str>, Vec<Compiled>>,
    prefixed: HashMap<Box<str>, Vec<Compiled>>,
    /// Distinct byte lengths of the prefixes, ascending: a name is looked up once per length
    /// instead of scanning every prefixed ACL.
    prefix_lens: Vec<usize>,
}

impl TypeIndex {
    /// Visits the ACLs whose pattern matches `name` until `f` says stop (returns false).
    fn visit(&self, name: &str, mut f: impl FnMut(&Compiled) -> bool) -> bool {
        let all = self
            .any
            .iter()
            .chain(self.literal.get(name).into_iter().flatten());
        for c in all {
            if !f(c) {
                return false;
            }
        }
        for &len in &self.prefix_lens {
            if len > name.len() {
                break;
            }
            if !name.is_char_boundary(len) {
                continue;
            }
            for c in self.prefixed.get(&name[..len]).into_iter().flatten() {
                if !f(c) {
                    return false;
                }
            }
        }
        true
    }
}

/// ACLs indexed for the per-request decision: by resource type, then by literal name, the
/// `*` wildcard, and prefix.
#[derive(Debug, Default)]
pub struct AclIndex {
    by_type: [TypeIndex; 4],
    len: usize,
}

impl AclIndex {
    /// Builds the index.
    pub fn new(rules: impl IntoIterator<Item = AclRule>) -> AclIndex {
        let mut index = AclIndex::default();
        for rule in rules {
            let deny = rule.permission == Permission::Deny;
            let ops = rule.operations.iter().fold(0u16, |m, op| {
                m | if deny {
                    op.deny_mask()
                } else {
                    op.allow_mask()
                }
            });
            let compiled = Compiled {
                subject: rule.subject,
                ops,
                deny,
            };
            let t = &mut index.by_type[rule.resource_type.index()];
            match rule.pattern_type {
                PatternType::Literal if rule.name == WILDCARD => t.any.push(compiled),
                PatternType::Literal => t
                    .literal
                    .entry(rule.name.into_boxed_str())
                    .or_default()
                    .push(compiled),
                PatternType::Prefixed => {
                    if !t.prefix_lens.contains(&rule.name.len()) {
                        t.prefix_lens.push(rule.name.len());
                    }
                    t.prefixed
                        .entry(rule.name.into_boxed_str())
                        .or_default()
                        .push(compiled);
                }
            }
            index.len += 1;
        }
        for t in &mut index.by_type {
            t.prefix_lens.sort_unstable();
        }
        index
    }

    /// Number of ACLs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no ACLs.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `principal` (a member of the groups `is_member` accepts) may do `op` on
    /// `resource_type` `name`: some matching ACL allows it and none denies it. Super users
    /// are the caller's business.
    pub fn decide(
        &self,
        principal: &str,
        is_member: impl Fn(&str) -> bool,
        resource_type: ResourceType,
        name: &str,
        op: Operation,
    ) -> bool {
        self.verdict(principal, is_member, resource_type, name, op) == Some(Permission::Allow)
    }

    /// What the matching ACLs say: `Deny` if any denies, else `Allow` if any allows, else
    /// nothing. Lets a caller combine several indexes with deny still winning.
    pub fn verdict(
        &self,
        principal: &str,
        is_member: impl Fn(&str) -> bool,
        resource_type: ResourceType,
        name: &str,
        op: Operation,
    ) -> Option<Permission> {
        let bit = op.bit();
        let mut allowed = false;
        let no_deny = self.by_type[resource_type.index()].visit(name, |c| {
            if c.ops & bit == 0 || !c.subject.matches(principal, &is_member) {
                return true;
            }
            if c.deny {
                return false;
            }
            allowed = true;
            true
        });
        match (no_deny, allowed) {
            (false, _) => Some(Permission::Deny),
            (true, true) => Some(Permission::Allow),
            (true, false) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;
    use ResourceType::*;

    fn rule(
        subject: Subject,
        rt: ResourceType,
        pattern: PatternType,
        name: &str,
        ops: &[Operation],
        permission: Permission,
    ) -> AclRule {
        AclRule {
            subject,
            resource_type: rt,
            pattern_type: pattern,
            name: name.into(),
            operations: ops.to_vec(),
            permission,
        }
    }

    fn user(u: &str) -> Subject {
        Subject::Principal(u.into())
    }

    fn no_groups(_: &str) -> bool {
        false
    }

    #[test]
    fn literal_prefixed_and_wildcard_names() {
        use PatternType::*;
        use Permission::*;
        let index = AclIndex::new([
            rule(user("alice"), Topic, Literal, "orders", &[Read], Allow),
            rule(user("alice"), Topic, Prefixed, "pay.", &[Write], Allow),
            rule(user("alice"), Topic, Prefixed, "pay.eu.", &[Read], Allow),
            rule(user("bob"), Topic, Literal, WILDCARD, &[Read], Allow),
            rule(user("carol"), Topic, Literal, "x*", &[Read], Allow),
        ]);
        assert_eq!(index.len(), 5);
        let alice = |name: &str, op| index.decide("alice", no_groups, Topic, name, op);
        assert!(alice("orders", Read));
        assert!(!alice("orders2", Read), "literal is exact");
        assert!(!alice("order", Read));
        assert!(alice("pay.", Write), "a prefix matches itself");
        assert!(alice("pay.eu.tx", Write));
        assert!(alice("pay.eu.tx", Read), "longer prefix");
        assert!(!alice("pay.us.tx", Read));
        assert!(!alice("pay", Write), "shorter than the prefix");
        assert!(!alice("orders", Write));
        // Multi-byte names: a prefix length inside a character is skipped, not a panic.
        assert!(!alice("páy.", Write));
        assert!(index.decide("bob", no_groups, Topic, "anything", Read));
        assert!(
            !index.decide("bob", no_groups, Group, "anything", Read),
            "per type"
        );
        // `*` is only a wildcard on its own; `x*` is a literal name.
        assert!(index.decide("carol", no_groups, Topic, "x*", Read));
        assert!(!index.decide("carol", no_groups, Topic, "xy", Read));
        assert!(
            !index.decide("dave", no_groups, Topic, "orders", Read),
            "no ACL: deny"
        );
    }

    #[test]
    fn deny_wins_over_any_allow() {
        use PatternType::*;
        use Permission::*;
        let index = AclIndex::new([
            rule(
                Subject::AnyPrincipal,
                Topic,
                Literal,
                WILDCARD,
                &[All],
                Allow,
            ),
            rule(user("mallory"), Topic, Prefixed, "secret", &[Read], Deny),
            rule(
                Subject::Group("contractors".into()),
                Topic,
                Literal,
                "hr",
                &[All],
                Deny,
            ),
        ]);
        assert!(index.decide("mallory", no_groups, Topic, "orders", Read));
        assert!(!index.decide("mallory", no_groups, Topic, "secret.keys", Read));
        // Denying read leaves describe (Kafka: implications apply to allows only).
        assert!(index.decide("mallory", no_groups, Topic, "secret.keys", Describe));
        assert!(index.decide("mallory", no_groups, Topic, "secret.keys", Write));
        let contractor = |g: &str| g == "contractors";
        assert!(
            !index.decide("eve", contractor, Topic, "hr", Describe),
            "deny all"
        );
        assert!(!index.decide("eve", contractor, Topic, "hr", Write));
        assert!(index.decide("eve", contractor, Topic, "hr2", Write));
        assert!(index.decide("eve", no_groups, Topic, "hr", Write));
        // `*` is every authenticated principal, not an anonymous empty one.
        assert!(!index.decide("", no_groups, Topic, "orders", Read));
    }

    #[test]
    fn implied_operations() {
        use PatternType::*;
        use Permission::*;
        let index = AclIndex::new([
            rule(user("r"), Topic, Literal, "t", &[Read], Allow),
            rule(user("w"), Topic, Literal, "t", &[Write], Allow),
            rule(user("d"), Topic, Literal, "t", &[Delete], Allow),
            rule(user("a"), Topic, Literal, "t", &[Alter], Allow),
            rule(user("ac"), Topic, Literal, "t", &[AlterConfigs], Allow),
            rule(user("all"), Topic, Literal, "t", &[All], Allow),
            rule(user("c"), Topic, Literal, "t", &[Create], Allow),
        ]);
        let can = |u: &str, op| index.decide(u, no_groups, Topic, "t", op);
        for u in ["r", "w", "d", "a"] {
            assert!(can(u, Describe), "{u} implies describe");
            assert!(!can(u, DescribeConfigs), "{u}");
        }
        assert!(!can("r", Write) && !can("w", Read));
        assert!(can("ac", DescribeConfigs) && !can("ac", Describe));
        assert!(!can("c", Describe), "create implies nothing");
        for op in Operation::EVERY {
            assert!(can("all", op), "all implies {op:?}");
        }
        // Describe does not imply read.
        let describe = AclIndex::new([rule(user("x"), Topic, Literal, "t", &[Describe], Allow)]);
        assert!(!describe.decide("x", no_groups, Topic, "t", Read));
    }

    #[test]
    fn valid_operations_per_resource_type() {
        assert!(ResourceType::Cluster
            .operations()
            .contains(&IdempotentWrite));
        assert!(!ResourceType::Topic.operations().contains(&IdempotentWrite));
        assert!(!ResourceType::TransactionalId.operations().contains(&Read));
        for rt in ResourceType::ALL {
            assert!(rt.operations().contains(&All));
            let json = serde_json::to_value(rt).unwrap();
            assert_eq!(json, rt.as_str());
        }
        for op in Operation::EVERY {
            assert_eq!(serde_json::to_value(op).unwrap(), op.as_str());
        }
    }
}
