//! Who is on the other end of a client connection: one value every stage reads.
//!
//! Authentication produces it (a principal, the mechanism, the credential's own groups and
//! expiry); the session completes it (the principal's groups from the security store, the
//! virtual cluster, the client id, the address, the listener set) and shares it as an
//! `Arc<Identity>`: ACLs judge its principal and groups, tenancy follows its virtual cluster,
//! interceptor scopes select on it and plugins receive it as their call context. A leaf
//! module: it imports nothing of the gateway, so every stage can import it.

use std::time::SystemTime;

/// Who a client connection is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The authenticated principal (a service account, a mapped certificate subject, a token
    /// subject, or Kafka's `User:ANONYMOUS`); `None` before authentication.
    pub principal: Option<String>,
    /// How it authenticated: a SASL mechanism name, `SSL`, or `NONE`.
    pub mechanism: Option<&'static str>,
    /// Groups carried by the credential itself (a token's groups claim).
    pub token_groups: Vec<String>,
    /// Every group of the principal: the security store's and the credential's, sorted.
    pub groups: Vec<String>,
    /// When the credential stops being valid (a token's expiry).
    pub expires_at: Option<SystemTime>,
    /// The virtual cluster the connection belongs to.
    pub vcluster: Option<String>,
    /// The client id of the connection's first request that named one.
    pub client_id: Option<String>,
    /// The client's address, `ip:port`.
    pub address: String,
    /// The name of the listener set the connection arrived on (`default` for the top-level).
    pub listener: String,
}

impl Identity {
    /// What an authentication mechanism established: `principal`, by `mechanism`.
    pub fn authenticated(principal: impl Into<String>, mechanism: &'static str) -> Identity {
        Identity {
            principal: Some(principal.into()),
            mechanism: Some(mechanism),
            ..Identity::default()
        }
    }

    /// The same identity with the credential's own groups.
    pub fn with_token_groups(mut self, groups: Vec<String>) -> Identity {
        self.token_groups = groups;
        self
    }

    /// The same identity with the credential's expiry.
    pub fn with_expiry(mut self, expires_at: SystemTime) -> Identity {
        self.expires_at = Some(expires_at);
        self
    }

    /// The principal, or `""` before authentication.
    pub fn principal(&self) -> &str {
        self.principal.as_deref().unwrap_or_default()
    }
}
