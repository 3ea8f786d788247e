//! Access control: who may do what to which Kafka resource.
//!
//! The model is Kafka's: an ACL binds a principal (or a group of principals) to an operation on
//! a resource (topic, consumer group, transactional id, the cluster), matched by a literal or a
//! prefixed name pattern, and allows or denies it. A deny always wins over an allow; with
//! authorization on, nothing is allowed that no ACL allows (super users excepted).

use serde::{Deserialize, Serialize};

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
}
