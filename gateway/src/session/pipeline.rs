//! The request path as a declared pipeline: the stages every request meets, in order, and the
//! one type each stage answers with.
//!
//! A request read from the client becomes an [`InFlight`]: its header peek, its frame as it
//! will be forwarded, and what later stages and the response side need (the tenant, the
//! concentrated topics, the ACL fix and the interceptor chain of its response). The request
//! side then runs [`REQUEST_STAGES`] over it; each stage returns a [`Verdict`]:
//!
//! - [`Verdict::Continue`]: on to the next stage;
//! - [`Verdict::Respond`]: the gateway answers the request itself and forwards nothing;
//! - [`Verdict::Handled`]: the stage queued its own answer (a SASL exchange the gateway runs);
//! - [`Verdict::ForwardThenClose`]: forward what is left, then close (Kafka's answer to a
//!   failed acks=0 produce);
//! - [`Verdict::Close`]: close the connection now, counted under a reason.
//!
//! After the last stage the request is forwarded and its [`Pending`](super::Pending) entry
//! queued for the response side, whose stages ([`RESPONSE_STAGES`]) undo what the request
//! stages did, in reverse order.
//!
//! To add a stage: add a variant to [`RequestStage`] at its place in [`REQUEST_STAGES`], a
//! method on the request side that returns a [`Verdict`], its arm in
//! `RequestSide::run_stage`, and its line in the README's phase chart. A stage that must also
//! touch the response records what it needs in [`InFlight`] (and so in `Pending`).

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use std::sync::Arc;
use std::time::Instant;

use crate::acl::Permits;
use crate::authorize::ResponseFix;
use crate::concentrate::Concentrated;
use crate::frame::RequestPeek;
use crate::vcluster::Tenant;

use super::{DelegatedRound, End, ResponseIntercept};

/// The stages of the request path, in the order each request meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestStage {
    /// ApiVersions newer than the gateway's answered here (KIP-511); a version the gateway
    /// never advertised closes the connection; an acks=0 Produce is marked as expecting no
    /// answer.
    Versions,
    /// SASL: answered here (gateway-managed) or relayed and watched (delegated); nothing but
    /// ApiVersions and SASL before authentication or after the session expired (KIP-368).
    Authenticate,
    /// Kafka's ACL APIs answered from the gateway's own ACLs when those are enforced.
    AclApis,
    /// Virtual cluster: the tenant's names become physical names.
    TenantNames,
    /// Virtual cluster: topic and partition creation within the tenant's limits.
    TenantLimits,
    /// A fetch session opened before an ACL change is refused, so a client cannot keep
    /// reading what it may no longer read.
    FetchSession,
    /// ACLs: denied parts answered here, the rest forwarded.
    Authorize,
    /// The interceptor chain (WebAssembly plugins), in priority order.
    Intercept,
}

/// Every request stage, in order.
pub(super) const REQUEST_STAGES: [RequestStage; 8] = [
    RequestStage::Versions,
    RequestStage::Authenticate,
    RequestStage::AclApis,
    RequestStage::TenantNames,
    RequestStage::TenantLimits,
    RequestStage::FetchSession,
    RequestStage::Authorize,
    RequestStage::Intercept,
];

/// The stages of the response path, in the order each held upstream response meets them:
/// the request stages' response halves, innermost first. Before them the response is read
/// and its correlation id checked against the request it answers (an unsolicited response
/// closes the connection); a response no stage needs is streamed through instead, never held
/// (`ResponseSide::stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResponseStage {
    /// A relayed SaslAuthenticate's answer decides the principal (delegated SASL).
    Authenticate,
    /// The interceptor chain's response hooks, in reverse priority order.
    Intercept,
    /// Denied parts merged back and listings filtered to what the principal may see.
    Authorize,
    /// Brokers named in the response rewritten to the gateway's addresses; ApiVersions
    /// intersected with what the gateway supports.
    Addresses,
    /// Virtual cluster: physical names mapped back to the tenant's (after the addresses,
    /// which learn topic ids with their physical names).
    TenantNames,
}

/// Every response stage, in order.
pub(super) const RESPONSE_STAGES: [ResponseStage; 5] = [
    ResponseStage::Authenticate,
    ResponseStage::Intercept,
    ResponseStage::Authorize,
    ResponseStage::Addresses,
    ResponseStage::TenantNames,
];

/// What a stage decides about a request.
pub(super) enum Verdict {
    /// On to the next stage.
    Continue,
    /// Answer with this frame; nothing is forwarded. `physical`: the answer names physical
    /// topics and goes back through the tenant's name mapping first; otherwise it already
    /// names what the client sent.
    Respond { frame: Bytes, physical: bool },
    /// The stage queued its own answer.
    Handled,
    /// Forward what the request still holds, then close the connection.
    ForwardThenClose,
    /// Close the connection now. `error`: the `sluice_protocol_errors_total` reason to count
    /// (none when the stage counted it already). The stage has logged why.
    Close {
        end: End,
        error: Option<&'static str>,
    },
}

impl Verdict {
    /// Close the connection now, counting `error`.
    pub(super) fn close(error: &'static str) -> Verdict {
        Verdict::Close {
            end: End::Abort,
            error: Some(error),
        }
    }
}

impl From<End> for Verdict {
    /// A stage helper's early end (already logged and counted).
    fn from(end: End) -> Verdict {
        Verdict::Close { end, error: None }
    }
}

/// The ACL fix a response needs, and the permits it is judged with.
pub(super) type AuthzFix = Box<(ResponseFix, Arc<dyn Permits + Send + Sync>)>;

/// One request on its way through the stages.
pub(super) struct InFlight {
    /// The header peek (API key, version, correlation id, where the body starts).
    pub peek: RequestPeek,
    /// The API key, when the gateway knows it.
    pub key: Option<ApiKey>,
    /// When the request was read, for the gateway-time metric.
    pub received: Instant,
    /// False for an acks=0 Produce: nothing is answered, not even an error.
    pub expects_response: bool,
    /// The whole frame (length prefix included) as it will be forwarded.
    pub frame: Bytes,
    /// The connection's virtual cluster, for the requests it maps.
    pub tenant: Option<Arc<Tenant>>,
    /// The concentrated topics the request named (virtual clusters).
    pub concentrated: Option<Concentrated>,
    /// The ACL fix of the response.
    pub authz: Option<AuthzFix>,
    /// The interceptor chain of the response.
    pub intercept: Option<Box<ResponseIntercept>>,
    /// A relayed SaslAuthenticate round (delegated SASL).
    pub delegated: Option<DelegatedRound>,
    /// Close the connection once the request is forwarded.
    pub close_after: bool,
}

impl InFlight {
    /// ApiVersions or SASL: the gateway's own business, never tenant-mapped or authorized.
    pub fn gateway_api(&self) -> bool {
        matches!(
            self.key,
            Some(ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
        )
    }
}
