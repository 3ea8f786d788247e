//! Per-API enforcement of ACLs on requests and responses (see [`crate::acl`]).
