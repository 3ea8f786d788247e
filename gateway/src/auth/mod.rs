//! Authentication: SASL mechanisms, mTLS principals and the per-connection state machine.

pub mod mtls;
pub mod oauth;
pub mod plain;
pub mod scram;
