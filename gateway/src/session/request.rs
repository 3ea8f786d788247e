//! The request side of a connection: reads client frames and runs them through the stages.

use anyhow::Context as _;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{FetchRequest, FetchResponse, RequestHeader};
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::acl::Permits;
use crate::acl_api;
use crate::admission::Activity;
use crate::advertise;
use crate::auth::{self, Exchange, Step};
use crate::authorize::{self, Decision};
use crate::config::SaslMode;
use crate::frame::{self, FrameError, FrameStatus, RequestPeek};
use crate::identity::Identity;
use crate::intercept::{self, Outcome, RequestMeta, TopicLookup};
use crate::message::codes::{
    ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM,
};
use crate::ratelimit::limited;
use crate::registry::Installed;
use crate::schema;
use crate::security::PrincipalPermits;
use crate::shared::Shared;
use crate::tenancy;
use crate::tls::{ReadHalf, WriteHalf};
use crate::upstream::{SaslClient, UpstreamSession};
use crate::vcluster::{ConnectionGuard, Tenant};

use super::pipeline::{InFlight, RequestStage, Verdict, REQUEST_STAGES};
use super::{
    detach_small, far_future, renewal_time, DelegatedOutcome, DelegatedRound, End, Outbox, Pending,
    ResponseIntercept, Route, Slot, FAILED_AUTH_LINGER, MAX_RESERVE_STEP, READ_CHUNK,
};

/// SASL state of one connection.
#[derive(Default)]
pub(super) struct ConnAuth {
    /// When the session expires (KIP-368); past it only re-authentication is accepted.
    deadline: Option<Instant>,
    /// The mechanism of the exchange in progress.
    mechanism: Option<&'static str>,
    /// Gateway-managed exchange in progress.
    exchange: Option<Exchange>,
    /// SaslHandshake v0: the next frames are raw SASL tokens, not Kafka requests.
    raw: bool,
    /// Delegated: SaslAuthenticate rounds relayed in this exchange.
    rounds: usize,
    /// Delegated: the principal the client claimed in this exchange.
    claimed: Option<String>,
    /// Delegated: where the response side leaves what the broker decided.
    outcome: Arc<Mutex<Option<DelegatedOutcome>>>,
}

pub(super) struct RequestSide {
    pub(super) shared: Arc<Shared>,
    pub(super) route: Route,
    /// The listener set the connection arrived on (index into `Shared::listeners`): its
    /// authentication, and the only addresses the client is told.
    pub(super) set: usize,
    pub(super) peer: SocketAddr,
    pub(super) client: ReadHalf,
    pub(super) upstream: Option<WriteHalf>,
    pub(super) slots: mpsc::Sender<Slot>,
    pub(super) buf: BytesMut,
    /// Identity for interceptor scopes and contexts.
    pub(super) ident: Arc<Identity>,
    /// The chain selected for this client, with the generation it was selected from.
    pub(super) chain: (u64, Arc<[Arc<Installed>]>),
    pub(super) auth: ConnAuth,
    /// What the ACL stage asks: the principal's ACLs (authorization on), within its
    /// virtual cluster's walls (a tenant connection always has them).
    pub(super) authz: Option<Arc<dyn Permits + Send + Sync>>,
    /// The principal's own ACLs (authorization on): who may use the Kafka ACL APIs.
    pub(super) acls: Option<Arc<PrincipalPermits>>,
    /// The security generation the connection's fetch session was last authorized under
    /// (a full Fetch): an incremental Fetch after the ACLs changed must start over.
    pub(super) fetch_generation: u64,
    /// The connection's virtual cluster, unless none or passthrough.
    pub(super) tenant: Option<Arc<Tenant>>,
    /// Holds the connection's place in its virtual cluster's connection limit.
    pub(super) _tenant_slot: Option<ConnectionGuard>,
    /// The TLS server name the client asked for (virtual cluster by host).
    pub(super) sni: Option<String>,
    /// The gateway's SASL session on the upstream connection, and when to renew it in place.
    pub(super) upstream_session: Option<(UpstreamSession, Option<Instant>)>,
    /// Correlation id of the gateway's own next request on the upstream connection.
    pub(super) internal_cid: i32,
    /// Requests in flight and last activity, for the idle timeout.
    pub(super) activity: Arc<Activity>,
    /// When the first request (and SASL authentication) must have arrived.
    pub(super) handshake_deadline: tokio::time::Instant,
    /// Whether a complete request has arrived.
    pub(super) seen_request: bool,
    /// Whether the handshake (first request, SASL) is over: the idle timeout applies.
    pub(super) handshake_done: bool,
}

fn error_kind(e: &FrameError) -> &'static str {
    match e {
        FrameError::NegativeLength(_) => "negative_length",
        FrameError::TooLarge { .. } => "too_large",
        FrameError::LooksLikeTls => "tls_on_plaintext",
        FrameError::LooksLikeHttp => "http_on_kafka_port",
        FrameError::TruncatedHeader(_) => "truncated_header",
        FrameError::BadClientId { .. } => "bad_client_id",
        FrameError::BadTaggedFields => "bad_tagged_fields",
    }
}

impl RequestSide {
    pub(super) async fn run(&mut self, dead: &CancellationToken) -> End {
        loop {
            let mut out = Outbox::default();
            let end = self.process_buffered(&mut out).await;
            if let Err(e) = self.write_upstream(&mut out).await {
                warn!(peer = %self.peer, "writing to broker failed: {e}");
                return End::Abort;
            }
            if let Some(end) = end {
                return end;
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                _ = self.shared.shutdown.cancelled() => return End::Shutdown,
                _ = dead.cancelled() => return End::Abort,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                    if let Some(end) = self.timed_out() {
                        return end;
                    }
                }
                read = self.client.read_buf(&mut self.buf) => match read {
                    Ok(0) => {
                        if !self.buf.is_empty() {
                            debug!(peer = %self.peer, pending = self.buf.len(), "client closed mid-frame");
                        }
                        return End::ClientClosed;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        debug!(peer = %self.peer, "client read error: {e}");
                        return End::ClientClosed;
                    }
                },
            }
        }
    }

    /// After a failed authentication: the answer is on its way (the response side flushes as
    /// soon as its queue is empty); wait until the client closes or [`FAILED_AUTH_LINGER`]
    /// passes, discarding anything it sends.
    pub(super) async fn linger(&mut self, dead: &CancellationToken) {
        let until = tokio::time::Instant::now() + FAILED_AUTH_LINGER;
        let mut sink = [0u8; 4096];
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                _ = self.shared.shutdown.cancelled() => return,
                _ = dead.cancelled() => return,
                read = self.client.read(&mut sink) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
            }
        }
    }

    /// When the connection's current timeout expires: the handshake deadline until the
    /// handshake is over, then the idle deadline (re-checked after the idle time while
    /// requests are in flight); None: no timeout.
    fn next_deadline(&mut self) -> Option<tokio::time::Instant> {
        if !self.handshake_done {
            self.handshake_done = self.seen_request && self.authenticated_or_deciding();
        }
        if !self.handshake_done {
            return Some(self.handshake_deadline);
        }
        let idle = self.shared.config.limits.idle_timeout()?;
        let at = self
            .activity
            .idle_deadline(idle)
            .unwrap_or_else(|| std::time::Instant::now() + idle);
        Some(tokio::time::Instant::from_std(at))
    }

    /// Whether SASL is over, or not needed: authenticated, or the broker has accepted the
    /// client's credentials (delegated: taken in at the next request).
    fn authenticated_or_deciding(&self) -> bool {
        !self.shared.listener(self.set).auth.requires_sasl()
            || self.ident.principal.is_some()
            || (self.auth.rounds > 0
                && self
                    .auth
                    .outcome
                    .lock()
                    .expect("sasl outcome lock")
                    .is_some())
    }

    /// A timeout fired: the end of the connection if it has expired (counted and logged).
    fn timed_out(&mut self) -> Option<End> {
        let now = tokio::time::Instant::now();
        if self.next_deadline().is_none_or(|d| d > now) {
            return None; // activity meanwhile
        }
        let limits = &self.shared.config.limits;
        if self.handshake_done {
            self.shared.metrics.connection_closed("idle_timeout");
            limited!(info, self.shared.log_limit, "idle_timeout", peer = %self.peer,
                client_id = ?self.ident.client_id, timeout_ms = limits.idle_timeout_ms,
                "connection idle for limits.idleTimeoutMs; closing it");
        } else {
            self.shared.metrics.connection_closed("handshake_timeout");
            let stage = if self.seen_request {
                "authentication"
            } else {
                "first request"
            };
            limited!(warn, self.shared.log_limit, "handshake_timeout", peer = %self.peer,
                client_id = ?self.ident.client_id, timeout_ms = limits.handshake_timeout_ms,
                pending = self.buf.len(), "{stage} not done within limits.handshakeTimeoutMs; closing connection");
        }
        Some(End::Abort)
    }

    /// Runs every complete frame in the buffer through the request stages
    /// ([`REQUEST_STAGES`]) and forwards what they let through.
    async fn process_buffered(&mut self, out: &mut Outbox) -> Option<End> {
        loop {
            let n = match self.next_frame_len() {
                Ok(Some(n)) => n,
                Ok(None) => return None,
                Err(end) => return Some(end),
            };
            if self.auth.raw {
                // After SaslHandshake v0 the client sends bare SASL tokens.
                let token = self.buf.split_to(n).freeze().slice(frame::LENGTH_PREFIX..);
                if let Err(end) = self.raw_token(&token, out).await {
                    return Some(end);
                }
                continue;
            }
            let mut req = match self.intake(n) {
                Ok(req) => req,
                Err(end) => return Some(end),
            };
            let mut answered = false;
            for stage in REQUEST_STAGES {
                match self.run_stage(stage, &mut req, out).await {
                    Verdict::Continue => {}
                    Verdict::Respond { frame, physical } => {
                        if let Err(end) = self.answer_locally(&req, physical, frame, out).await {
                            return Some(end);
                        }
                        answered = true;
                        break;
                    }
                    Verdict::Handled => {
                        answered = true;
                        break;
                    }
                    Verdict::ForwardThenClose => req.close_after = true,
                    Verdict::Close { end, error } => {
                        if let Some(error) = error {
                            self.shared.metrics.protocol_error(error);
                        }
                        return Some(end);
                    }
                }
            }
            if answered {
                continue;
            }
            let close_after = req.close_after;
            if let Err(end) = self.forward(req, out).await {
                return Some(end);
            }
            if close_after {
                // Written upstream before the connection ends (see `run`).
                return Some(End::Finish);
            }
        }
    }

    /// The length of the next complete frame in the buffer; `None` until one is complete.
    fn next_frame_len(&mut self) -> Result<Option<usize>, End> {
        let max = self.shared.config.limits.max_frame_bytes;
        match frame::frame_len(&self.buf, max) {
            Ok(FrameStatus::Complete(n)) => {
                // Only complete requests count: a trickle of bytes keeps nothing alive.
                self.seen_request = true;
                self.activity.touch();
                Ok(Some(n))
            }
            Ok(FrameStatus::Incomplete { total }) => {
                if let Some(total) = total {
                    self.buf
                        .reserve(total.saturating_sub(self.buf.len()).min(MAX_RESERVE_STEP));
                }
                Ok(None)
            }
            Err(e) => Err(self.reject(&e)),
        }
    }

    /// Takes the next frame (`n` bytes) off the buffer: its header peek, the client id, the
    /// request metrics, and whether it expects an answer.
    fn intake(&mut self, n: usize) -> Result<InFlight, End> {
        let received = Instant::now();
        let peek =
            frame::peek_request(&self.buf[frame::LENGTH_PREFIX..n]).map_err(|e| self.reject(&e))?;
        if self.ident.client_id.is_none() {
            if let Some(r) = &peek.client_id {
                let body = &self.buf[frame::LENGTH_PREFIX..n];
                self.ident = Arc::new(Identity {
                    client_id: Some(String::from_utf8_lossy(&body[r.clone()]).into_owned()),
                    ..(*self.ident).clone()
                });
            }
        }
        let api = self.shared.metrics.api(peek.api_key);
        api.requests.inc();
        api.request_bytes.inc_by(n as u64);
        let key = peek.known_key();
        let mut req = InFlight {
            key,
            received,
            expects_response: true,
            frame: self.buf.split_to(n).freeze(),
            tenant: None,
            concentrated: None,
            authz: None,
            intercept: None,
            delegated: None,
            close_after: false,
            peek,
        };
        req.tenant = self.tenant.clone().filter(|_| !req.gateway_api());
        Ok(req)
    }

    /// Runs one request stage.
    async fn run_stage(
        &mut self,
        stage: RequestStage,
        req: &mut InFlight,
        out: &mut Outbox,
    ) -> Verdict {
        match stage {
            RequestStage::Versions => self.versions(req),
            RequestStage::Authenticate => self.authenticate(req, out).await,
            RequestStage::AclApis => self.acl_apis(req),
            RequestStage::TenantNames => self.tenant_names(req),
            RequestStage::TenantLimits => self.tenant_limits(req).await,
            RequestStage::FetchSession => self.fetch_session(req),
            RequestStage::Authorize => self.authorize(req),
            RequestStage::Intercept => self.intercept(req).await,
        }
    }

    /// [`RequestStage::Versions`].
    fn versions(&mut self, req: &mut InFlight) -> Verdict {
        let (peek, Some(k)) = (&req.peek, req.key) else {
            return Verdict::Continue;
        };
        if k == ApiKey::ApiVersions && peek.api_version > advertise::gateway_versions(k).max {
            // KIP-511: answer a too-new ApiVersions ourselves so the client retries lower.
            return Verdict::Respond {
                frame: advertise::unsupported_api_versions(peek.correlation_id),
                physical: false,
            };
        }
        let mut range = advertise::gateway_versions(k);
        range.min = range
            .min
            .max(crate::shared::version_floor(&self.shared.config, k));
        if peek.api_version < range.min || peek.api_version > range.max {
            // The gateway never advertised this version: a broker closes the connection
            // here too, and forwarding could leak what the gateway cannot rewrite.
            limited!(warn, self.shared.log_limit, "protocol_error", peer = %self.peer, client_id = ?self.ident.client_id,
                api = ?k, version = peek.api_version, supported = %range,
                "unsupported request version; closing connection");
            return Verdict::close("unsupported_version");
        }
        if k == ApiKey::Produce {
            match frame::produce_expects_response(&req.frame[frame::LENGTH_PREFIX..], &req.peek) {
                Ok(expects) => req.expects_response = expects,
                Err(e) => return self.reject(&e).into(),
            }
        }
        Verdict::Continue
    }

    /// [`RequestStage::Authenticate`].
    async fn authenticate(&mut self, req: &mut InFlight, out: &mut Outbox) -> Verdict {
        if !self.shared.listener(self.set).auth.requires_sasl() {
            return Verdict::Continue;
        }
        let managed = self.shared.listener(self.set).auth.mode() == SaslMode::GatewayManaged;
        let step = match req.key {
            Some(ApiKey::ApiVersions) => Ok(()),
            Some(k @ (ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)) if managed => {
                return match self.sasl_local(k, &req.peek, &req.frame, out).await {
                    Ok(()) => Verdict::Handled,
                    Err(end) => end.into(),
                };
            }
            // Delegated: relayed to the broker; a copy (a few bytes) is read here, so the
            // exchange does not hold on to the read buffer.
            Some(ApiKey::SaslHandshake) => {
                let copy = Bytes::copy_from_slice(&req.frame);
                self.delegated_handshake(&req.peek, &copy, out).await
            }
            Some(ApiKey::SaslAuthenticate) => {
                let copy = Bytes::copy_from_slice(&req.frame);
                self.delegated_authenticate(&req.peek, &copy)
                    .map(|d| req.delegated = Some(d))
            }
            _ => self.check_authenticated(&req.peek),
        };
        match step {
            Ok(()) => Verdict::Continue,
            Err(end) => end.into(),
        }
    }

    /// [`RequestStage::AclApis`]: the Kafka ACL APIs manage the gateway's ACLs when those are
    /// the ones enforced (and a tenant's are always its own); otherwise they go to the broker.
    fn acl_apis(&mut self, req: &InFlight) -> Verdict {
        if !acl_api::is_acl_api(req.key) || (self.acls.is_none() && self.tenant.is_none()) {
            return Verdict::Continue;
        }
        let peek = &req.peek;
        let body = peek.body_of(&req.frame);
        let caller = acl_api::Caller {
            store: &self.shared.security,
            permits: self.acls.as_deref(),
            vcluster: self.ident.vcluster.as_deref(),
            principal: self.principal().unwrap_or_default(),
        };
        let key = req.key.expect("an ACL API key");
        match acl_api::answer(&caller, key, peek.api_version, peek.correlation_id, &body) {
            Ok(frame) => Verdict::Respond {
                frame,
                physical: false,
            },
            Err(reason) => {
                warn!(peer = %self.peer, principal = ?self.principal(), api = ?key, "closing connection: {reason}");
                Verdict::close("malformed_request")
            }
        }
    }

    /// [`RequestStage::TenantNames`]: the tenant's names become physical names first; the
    /// ACLs (and the tenant's walls) then judge physical names.
    fn tenant_names(&mut self, req: &mut InFlight) -> Verdict {
        let Some(t) = req.tenant.clone() else {
            return Verdict::Continue;
        };
        let peek = &req.peek;
        match tenancy::map_request(
            &t,
            peek.api_key,
            peek.api_version,
            peek.body_offset.unwrap_or(0),
            &req.frame,
        ) {
            Ok(mapped) => {
                if let Some(f) = mapped.frame {
                    req.frame = f;
                }
                req.concentrated = mapped.concentrated;
                Verdict::Continue
            }
            Err(tenancy::MapError::Refused { code, message }) => {
                debug!(peer = %self.peer, vcluster = %t.name, api = ?req.key, "request refused: {message}");
                let body = peek.body_of(&req.frame);
                let Some(frame) = crate::message::error_response(
                    peek.api_key,
                    peek.api_version,
                    peek.correlation_id,
                    &body,
                    code,
                    &message,
                ) else {
                    warn!(peer = %self.peer, vcluster = %t.name, api = ?req.key,
                        "closing connection: {message} (no error form for this API)");
                    return End::Abort.into();
                };
                // The refused request was never mapped: its answer names what the client
                // sent.
                Verdict::Respond {
                    frame,
                    physical: false,
                }
            }
            Err(tenancy::MapError::Broken(e)) => {
                warn!(peer = %self.peer, principal = ?self.principal(), vcluster = %t.name, api = ?req.key,
                    "closing connection: {e:#}");
                Verdict::close("unmappable_request")
            }
        }
    }

    /// [`RequestStage::TenantLimits`].
    async fn tenant_limits(&mut self, req: &InFlight) -> Verdict {
        let Some(t) = req
            .tenant
            .clone()
            .filter(|t| tenancy::limited(t, req.peek.api_key))
        else {
            return Verdict::Continue;
        };
        match self.tenant_usage_check(&t, &req.peek, &req.frame).await {
            Ok(None) => Verdict::Continue,
            Ok(Some(refusal)) => Verdict::Respond {
                frame: refusal,
                physical: true,
            },
            Err(e) => {
                warn!(peer = %self.peer, vcluster = %t.name, "closing connection: cannot check the tenant's limits: {e:#}");
                End::Abort.into()
            }
        }
    }

    /// [`RequestStage::FetchSession`].
    fn fetch_session(&mut self, req: &InFlight) -> Verdict {
        if req.key != Some(ApiKey::Fetch) || self.acls.is_none() {
            return Verdict::Continue;
        }
        match self.stale_fetch_session(&req.peek, &req.frame) {
            Some(frame) => Verdict::Respond {
                frame,
                physical: false,
            },
            None => Verdict::Continue,
        }
    }

    /// [`RequestStage::Authorize`].
    fn authorize(&mut self, req: &mut InFlight) -> Verdict {
        let Some(permits) = self.authz.clone().filter(|_| !req.gateway_api()) else {
            return Verdict::Continue;
        };
        let peek = &req.peek;
        let tenant_view = req.tenant.as_deref().map(|t| tenancy::TenantTopics {
            tenant: t,
            names: &self.shared.topic_names,
        });
        let topics: &dyn TopicLookup = match &tenant_view {
            Some(v) => v,
            None => &self.shared.topic_names,
        };
        let decision = authorize::check_request(
            peek.api_key,
            peek.api_version,
            peek.correlation_id,
            peek.body_offset.unwrap_or(0),
            &req.frame,
            permits.as_ref(),
            topics,
        );
        match decision {
            Decision::Forward { frame, fix } => {
                if let Some(f) = frame {
                    self.shared.metrics.authorization_denied(peek.api_key);
                    req.frame = f;
                }
                req.authz = fix.map(|f| Box::new((f, permits)));
                Verdict::Continue
            }
            Decision::Respond(frame) => {
                self.shared.metrics.authorization_denied(peek.api_key);
                debug!(peer = %self.peer, principal = ?self.principal(), api = ?req.key, "request denied by ACLs");
                Verdict::Respond {
                    frame,
                    physical: true,
                }
            }
            Decision::ForwardThenClose { frame, reason } => {
                // Kafka closes the connection of a failed acks=0 Produce: the client learns
                // of the failure by the disconnection.
                self.shared.metrics.authorization_denied(peek.api_key);
                info!(peer = %self.peer, principal = ?self.principal(), api = ?req.key,
                    "closing connection after forwarding what is allowed: {reason}");
                match frame {
                    Some(f) => {
                        req.frame = f;
                        Verdict::ForwardThenClose
                    }
                    None => End::Finish.into(),
                }
            }
            Decision::Close(reason) => {
                warn!(peer = %self.peer, principal = ?self.principal(), api = ?req.key, "closing connection: {reason}");
                Verdict::close("unauthorized")
            }
        }
    }

    /// [`RequestStage::Intercept`].
    async fn intercept(&mut self, req: &mut InFlight) -> Verdict {
        let chain = self.current_chain();
        let Some(header_len) = req.peek.body_offset.filter(|_| !chain.is_empty()) else {
            return Verdict::Continue;
        };
        let peek = &req.peek;
        let mut produce_extra = Vec::new();
        if intercept::wants_request(&chain, peek.api_key) {
            let meta = RequestMeta {
                api_key: peek.api_key,
                version: peek.api_version,
                correlation_id: peek.correlation_id,
                header_len,
                client: &self.ident,
            };
            match intercept::on_request(
                &chain,
                &meta,
                &req.frame,
                &self.shared.metrics,
                &self.shared.topic_names,
            )
            .await
            {
                Outcome::Forward {
                    frame,
                    produce_extra: extra,
                } => {
                    if let Some(f) = frame {
                        req.frame = f;
                    }
                    produce_extra = extra;
                }
                Outcome::Respond(frame) => {
                    return Verdict::Respond {
                        frame,
                        physical: true,
                    }
                }
                Outcome::Close(reason) => {
                    warn!(peer = %self.peer, client_id = ?self.ident.client_id, "closing connection: {reason}");
                    return Verdict::close("interceptor");
                }
            }
        }
        if !produce_extra.is_empty() || intercept::wants_response(&chain, peek.api_key) {
            req.intercept = Some(Box::new(ResponseIntercept {
                chain: chain.clone(),
                client: self.ident.clone(),
                request_body: detach_small(req.frame.slice(frame::LENGTH_PREFIX + header_len..)),
                produce_extra,
            }));
        }
        Verdict::Continue
    }

    /// After the last stage: opens the upstream connection if needed, queues the response's
    /// slot and the frame.
    async fn forward(&mut self, req: InFlight, out: &mut Outbox) -> Result<(), End> {
        if self.upstream.is_none() {
            self.open_upstream(&req.peek).await?;
        }
        if self.reauth_due() {
            self.reauthenticate_upstream(out).await?;
        }
        let peek = &req.peek;
        let slot = if req.expects_response {
            Slot::Upstream(Pending {
                api_key: peek.api_key,
                version: peek.api_version,
                correlation_id: peek.correlation_id,
                action: advertise::action_for(req.key, peek.api_version),
                gateway_request: req.received.elapsed(),
                queued: Instant::now(),
                intercept: req.intercept,
                authz: req.authz,
                delegated: req.delegated,
                tenant: req.tenant.map(|t| Box::new((t, req.concentrated))),
            })
        } else {
            Slot::NoResponse {
                correlation_id: peek.correlation_id,
            }
        };
        self.push(slot, out).await?;
        out.push(req.frame);
        Ok(())
    }

    /// The interceptors that apply to this client, re-selected when the chain changes.
    fn current_chain(&mut self) -> Arc<[Arc<Installed>]> {
        let chain = self.shared.registry.chain();
        if chain.generation != self.chain.0 {
            self.chain = (chain.generation, chain.for_identity(&self.ident).into());
        }
        self.chain.1.clone()
    }

    /// Queues a slot. When the queue is full, frames held in `out` are flushed first: the
    /// response side may be waiting for exactly those requests' responses.
    async fn push(&mut self, slot: Slot, out: &mut Outbox) -> Result<(), End> {
        if matches!(slot, Slot::Local { .. } | Slot::Upstream(_)) {
            self.activity.request_queued();
        }
        match self.slots.try_send(slot) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(End::Abort),
            Err(mpsc::error::TrySendError::Full(slot)) => {
                if let Err(e) = self.write_upstream(out).await {
                    warn!(peer = %self.peer, "writing to broker failed: {e}");
                    return Err(End::Abort);
                }
                self.slots.send(slot).await.map_err(|_| End::Abort)
            }
        }
    }

    async fn write_upstream(&mut self, out: &mut Outbox) -> std::io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        match &mut self.upstream {
            Some(w) => out.write_to(w).await,
            None => Err(std::io::Error::other("no upstream connection")),
        }
    }

    fn reject(&self, e: &FrameError) -> End {
        limited!(warn, self.shared.log_limit, "protocol_error", peer = %self.peer,
            client_id = ?self.ident.client_id, route = ?self.route, "closing connection: {e}");
        self.shared.metrics.protocol_error(error_kind(e));
        End::Abort
    }

    /// Queues an answer the gateway made for a request; an answer in `physical` names is
    /// mapped back to the tenant's first.
    async fn answer_locally(
        &mut self,
        req: &InFlight,
        physical: bool,
        mut bytes: Bytes,
        out: &mut Outbox,
    ) -> Result<(), End> {
        let peek = &req.peek;
        if let Some(t) = req.tenant.as_deref().filter(|_| physical) {
            bytes = tenancy::unmap_response(
                t,
                req.concentrated.as_ref(),
                peek.api_key,
                peek.api_version,
                bytes,
            )
            .map_err(|e| {
                warn!(peer = %self.peer, vcluster = %t.name, "closing connection: {e:#}");
                End::Abort
            })?;
        }
        if !req.expects_response {
            return Ok(());
        }
        self.push(
            Slot::Local {
                api_key: peek.api_key,
                bytes,
            },
            out,
        )
        .await
    }

    /// Checks a topic or partition creation against the tenant's limits, counting what the
    /// cluster holds now.
    async fn tenant_usage_check(
        &mut self,
        tenant: &Tenant,
        peek: &RequestPeek,
        frame: &Bytes,
    ) -> anyhow::Result<Option<Bytes>> {
        let usage = crate::upstream::topic_partitions(
            &self.shared.connector,
            &self.shared.bootstrap_order(),
            self.shared.config.request_timeout(),
        )
        .await?;
        let refusal = tenancy::check_limits(
            tenant,
            &usage,
            peek.api_key,
            peek.api_version,
            peek.correlation_id,
            peek.body_offset.unwrap_or(0),
            frame,
        )?;
        if refusal.is_some() {
            info!(peer = %self.peer, vcluster = %tenant.name, principal = ?self.principal(),
                "topic or partition creation refused: over the virtual cluster's limits");
        }
        Ok(refusal)
    }

    fn principal(&self) -> Option<&str> {
        self.ident.principal.as_deref()
    }

    /// Takes what authentication established (`who`: principal, mechanism, the credential's
    /// groups and expiry) into the connection's identity, completed with the principal's
    /// groups and virtual cluster: then ACLs, tenancy, interceptor scopes and plugin contexts
    /// follow it. Fails when the virtual cluster is at its connection limit.
    pub(super) fn set_identity(&mut self, who: Identity) -> Result<(), End> {
        let principal = who.principal().to_string();
        let snapshot = self.shared.security.snapshot();
        let groups = snapshot.groups_of(&principal, &who.token_groups);
        let tenancy = self.shared.vclusters.snapshot();
        let account_vcluster = snapshot.account_vcluster(&principal);
        let tenant = tenancy
            .for_principal(&principal, account_vcluster)
            .or_else(|| self.sni.as_deref().and_then(|h| tenancy.for_sni(h)));
        if let (None, Some(missing)) = (&tenant, account_vcluster) {
            // Fail closed: an account meant for a tenant never sees the physical cluster.
            warn!(peer = %self.peer, principal = %principal, vcluster = missing,
                "the principal's virtual cluster does not exist; closing connection");
            self.shared.metrics.protocol_error("unknown_vcluster");
            return Err(End::Abort);
        }
        if self.ident.principal.is_none() {
            if let Some(t) = &tenant {
                match t.try_connect() {
                    Some(slot) => self._tenant_slot = Some(slot),
                    None => {
                        warn!(peer = %self.peer, principal = %principal, vcluster = %t.name,
                            "virtual cluster connection limit reached; closing connection");
                        self.shared
                            .metrics
                            .protocol_error("vcluster_connection_limit");
                        return Err(End::Abort);
                    }
                }
            }
        }
        let vcluster = tenant.as_ref().map(|t| t.name.clone());
        self.ident = Arc::new(Identity {
            principal: Some(principal.clone()),
            mechanism: who.mechanism,
            token_groups: who.token_groups.clone(),
            groups,
            expires_at: who.expires_at,
            vcluster,
            ..(*self.ident).clone()
        });
        // The chain depends on the identity: select it again.
        self.chain.0 = u64::MAX;
        let config = &self.shared.config.authorization;
        let acls = config.enabled.then(|| {
            Arc::new(
                PrincipalPermits::new(
                    self.shared.security.clone(),
                    principal,
                    who.token_groups,
                    &config.super_users,
                )
                .in_vcluster(self.ident.vcluster.clone()),
            )
        });
        self.acls = acls.clone();
        self.fetch_generation = snapshot.generation();
        self.tenant = tenant.filter(|t| !t.passthrough);
        self.authz = match (&self.tenant, acls) {
            (Some(t), inner) => Some(Arc::new(tenancy::TenantPermits {
                tenant: t.clone(),
                inner,
            })),
            (None, Some(acls)) => Some(acls),
            (None, None) => None,
        };
        Ok(())
    }

    /// Lets a request through only from an authenticated connection whose session is live.
    fn check_authenticated(&mut self, peek: &RequestPeek) -> Result<(), End> {
        // Only a relayed exchange in progress can have an outcome waiting: no lock otherwise.
        if self.auth.rounds > 0 {
            let decided = self.auth.outcome.lock().expect("sasl outcome lock").take();
            if let Some(o) = decided {
                self.auth.rounds = 0;
                self.auth.deadline = o.lifetime.map(|l| Instant::now() + l);
                self.set_identity(o.who)?;
            }
        }
        let expired = self.auth.deadline.is_some_and(|d| Instant::now() >= d);
        if self.ident.principal.is_some() && !expired {
            return Ok(());
        }
        let api = ApiKey::try_from(peek.api_key).ok();
        if expired {
            info!(peer = %self.peer, principal = ?self.principal(), ?api,
                "session expired without re-authentication; closing connection");
            self.shared.metrics.protocol_error("session_expired");
        } else {
            if let Some(reason) = self
                .auth
                .exchange
                .as_ref()
                .and_then(|e| e.pending_failure())
            {
                // The client took the error challenge for success (some clients do not
                // acknowledge it as RFC 7628 asks): its authentication failed all the same.
                let mechanism = self.auth.mechanism.unwrap_or("SASL");
                self.shared.metrics.authentication(mechanism, "failure");
                warn!(peer = %self.peer, client_id = ?self.ident.client_id, mechanism,
                    "authentication failed: {reason}");
            }
            warn!(peer = %self.peer, client_id = ?self.ident.client_id, ?api,
                "request before authentication; closing connection");
            self.shared
                .metrics
                .protocol_error("unauthenticated_request");
        }
        Err(End::Abort)
    }

    /// Gateway-managed SaslHandshake and SaslAuthenticate, answered here.
    async fn sasl_local(
        &mut self,
        key: ApiKey,
        peek: &RequestPeek,
        frame: &Bytes,
        out: &mut Outbox,
    ) -> Result<(), End> {
        let Some(offset) = peek.body_offset else {
            return Err(self.bad_sasl("unparsable header"));
        };
        let body = frame.slice(frame::LENGTH_PREFIX + offset..);
        let (version, cid) = (peek.api_version, peek.correlation_id);
        if key == ApiKey::SaslHandshake {
            let req: SaslHandshakeRequest = schema::decode_request(key, version, &body)
                .map_err(|e| self.bad_sasl(&format!("{e:#}")))?;
            let mechanism = self
                .shared
                .listener(self.set)
                .auth
                .mechanism(&req.mechanism);
            let names = self.shared.listener(self.set).auth.mechanism_names();
            let resp = SaslHandshakeResponse::default()
                .with_error_code(if mechanism.is_some() {
                    0
                } else {
                    UNSUPPORTED_SASL_MECHANISM
                })
                .with_mechanisms(names.iter().map(|n| StrBytes::from_static_str(n)).collect());
            let bytes = crate::message::encode_response(key, version, cid, &resp);
            self.push(
                Slot::Local {
                    api_key: peek.api_key,
                    bytes,
                },
                out,
            )
            .await?;
            return match mechanism {
                None => {
                    warn!(peer = %self.peer, mechanism = %req.mechanism.escape_debug(), enabled = ?names,
                        "client asked for a SASL mechanism that is not enabled; closing connection");
                    self.shared.metrics.authentication("unsupported", "failure");
                    Err(End::AuthFailed)
                }
                Some(m) => {
                    self.auth.exchange = Some(self.shared.listener(self.set).auth.start(m));
                    self.auth.mechanism = Some(m.name());
                    self.auth.raw = version == 0;
                    Ok(())
                }
            };
        }
        let req: SaslAuthenticateRequest = schema::decode_request(key, version, &body)
            .map_err(|e| self.bad_sasl(&format!("{e:#}")))?;
        let step = match self.auth.exchange.as_mut() {
            Some(exchange) => exchange.step(&req.auth_bytes, &self.shared.security.snapshot()),
            None => {
                let resp = SaslAuthenticateResponse::default()
                    .with_error_code(ILLEGAL_SASL_STATE)
                    .with_error_message(Some(StrBytes::from_static_str(
                        "SaslAuthenticate without a SaslHandshake",
                    )));
                let bytes = crate::message::encode_response(key, version, cid, &resp);
                self.push(
                    Slot::Local {
                        api_key: peek.api_key,
                        bytes,
                    },
                    out,
                )
                .await?;
                warn!(peer = %self.peer, "SaslAuthenticate without a SaslHandshake; closing connection");
                self.shared.metrics.protocol_error("illegal_sasl_state");
                return Err(End::Finish);
            }
        };
        match self.after_step(step).await {
            Ok((token, lifetime)) => {
                let resp = SaslAuthenticateResponse::default()
                    .with_auth_bytes(Bytes::from(token))
                    .with_session_lifetime_ms(
                        lifetime.map_or(0, |l| i64::try_from(l.as_millis()).unwrap_or(i64::MAX)),
                    );
                let bytes = crate::message::encode_response(key, version, cid, &resp);
                self.push(
                    Slot::Local {
                        api_key: peek.api_key,
                        bytes,
                    },
                    out,
                )
                .await
            }
            Err(()) => {
                let mechanism = self.auth.mechanism.unwrap_or("SASL");
                let resp = SaslAuthenticateResponse::default()
                    .with_error_code(SASL_AUTHENTICATION_FAILED)
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Authentication failed: invalid credentials with SASL mechanism {mechanism}"
                    ))));
                let bytes = crate::message::encode_response(key, version, cid, &resp);
                self.push(
                    Slot::Local {
                        api_key: peek.api_key,
                        bytes,
                    },
                    out,
                )
                .await?;
                Err(End::AuthFailed)
            }
        }
    }

    /// A bare token after SaslHandshake v0; answered with a bare token.
    async fn raw_token(&mut self, token: &Bytes, out: &mut Outbox) -> Result<(), End> {
        let step = match self.auth.exchange.as_mut() {
            Some(exchange) => exchange.step(token, &self.shared.security.snapshot()),
            None => return Err(self.bad_sasl("a SASL token outside an exchange")),
        };
        match self.after_step(step).await {
            Ok((answer, _)) => {
                if self.auth.exchange.is_none() {
                    self.auth.raw = false;
                }
                let mut framed = bytes::BytesMut::with_capacity(4 + answer.len());
                framed.extend_from_slice(&(answer.len() as i32).to_be_bytes());
                framed.extend_from_slice(&answer);
                self.push(
                    Slot::Local {
                        api_key: ApiKey::SaslAuthenticate as i16,
                        bytes: framed.freeze(),
                    },
                    out,
                )
                .await
            }
            // A v0 exchange has no error message: the connection just closes.
            Err(()) => Err(End::Abort),
        }
    }

    /// Applies an exchange step: `Ok((token to send, session lifetime once done))`; a failure
    /// is logged, counted and delayed before the caller answers it.
    async fn after_step(&mut self, step: Step) -> Result<(Vec<u8>, Option<Duration>), ()> {
        let mechanism = self.auth.mechanism.unwrap_or("SASL");
        let reason = match step {
            Step::Continue(challenge) => return Ok((challenge, None)),
            Step::Done(last, who) => {
                self.auth.exchange = None;
                match self.ident.principal.as_deref() {
                    Some(prev) if Some(prev) != who.principal.as_deref() => format!(
                        "re-authentication as `{}` on a connection of `{}`",
                        who.principal(),
                        prev
                    ),
                    prev => {
                        let reauth = prev.is_some();
                        let lifetime = self
                            .shared
                            .listener(self.set)
                            .auth
                            .session_lifetime(who.expires_at);
                        let (principal, mechanism) =
                            (who.principal().to_string(), who.mechanism.unwrap_or("SASL"));
                        if self.set_identity(who).is_err() {
                            // Its virtual cluster is full: refused like a failed login.
                            "its virtual cluster is at its connection limit".to_string()
                        } else {
                            self.auth.deadline = lifetime.map(|l| Instant::now() + l);
                            self.shared.metrics.authentication(mechanism, "success");
                            info!(peer = %self.peer, principal = %principal, mechanism,
                                reauth, session_ms = lifetime.map(|l| l.as_millis() as u64), "client authenticated");
                            return Ok((last, lifetime));
                        }
                    }
                }
            }
            Step::Failed(reason) => {
                self.auth.exchange = None;
                reason
            }
        };
        self.shared.metrics.authentication(mechanism, "failure");
        warn!(peer = %self.peer, client_id = ?self.ident.client_id, mechanism, "authentication failed: {reason}");
        tokio::time::sleep(self.shared.listener(self.set).auth.failed_delay()).await;
        Err(())
    }

    fn bad_sasl(&self, what: &str) -> End {
        warn!(peer = %self.peer, "malformed SASL request ({what}); closing connection");
        self.shared.metrics.protocol_error("bad_sasl");
        End::Abort
    }

    /// Delegated SaslHandshake: noted, then relayed. A mechanism that is not enabled is
    /// refused here, as the broker would.
    async fn delegated_handshake(
        &mut self,
        peek: &RequestPeek,
        frame: &Bytes,
        out: &mut Outbox,
    ) -> Result<(), End> {
        let Some(offset) = peek.body_offset else {
            return Err(self.bad_sasl("unparsable header"));
        };
        let req: SaslHandshakeRequest = schema::decode_request(
            ApiKey::SaslHandshake,
            peek.api_version,
            &frame.slice(frame::LENGTH_PREFIX + offset..),
        )
        .map_err(|e| self.bad_sasl(&format!("{e:#}")))?;
        if peek.api_version == 0 {
            // v0 tokens carry no correlation id, so they cannot be matched with relayed
            // answers; every client since Kafka 1.0 uses v1.
            warn!(peer = %self.peer, "delegated SASL needs SaslHandshake v1 or later; closing connection");
            self.shared.metrics.protocol_error("sasl_v0_delegated");
            return Err(End::Abort);
        }
        match self
            .shared
            .listener(self.set)
            .auth
            .mechanism(&req.mechanism)
        {
            Some(m) => {
                self.auth.mechanism = Some(m.name());
                self.auth.rounds = 0;
                self.auth.claimed = None;
                Ok(())
            }
            None => {
                let names = self.shared.listener(self.set).auth.mechanism_names();
                let resp = SaslHandshakeResponse::default()
                    .with_error_code(UNSUPPORTED_SASL_MECHANISM)
                    .with_mechanisms(names.iter().map(|n| StrBytes::from_static_str(n)).collect());
                let bytes = crate::message::encode_response(
                    ApiKey::SaslHandshake,
                    peek.api_version,
                    peek.correlation_id,
                    &resp,
                );
                self.push(
                    Slot::Local {
                        api_key: peek.api_key,
                        bytes,
                    },
                    out,
                )
                .await?;
                self.shared.metrics.authentication("unsupported", "failure");
                warn!(peer = %self.peer, mechanism = %req.mechanism.escape_debug(), "SASL mechanism not enabled; closing connection");
                Err(End::AuthFailed)
            }
        }
    }

    /// Delegated SaslAuthenticate: relayed; the claimed principal is read from the first token.
    fn delegated_authenticate(
        &mut self,
        peek: &RequestPeek,
        frame: &Bytes,
    ) -> Result<DelegatedRound, End> {
        let (Some(mechanism), Some(offset)) = (self.auth.mechanism, peek.body_offset) else {
            return Err(self.bad_sasl("SaslAuthenticate without a SaslHandshake"));
        };
        let req: SaslAuthenticateRequest = schema::decode_request(
            ApiKey::SaslAuthenticate,
            peek.api_version,
            &frame.slice(frame::LENGTH_PREFIX + offset..),
        )
        .map_err(|e| self.bad_sasl(&format!("{e:#}")))?;
        self.auth.rounds += 1;
        if self.auth.rounds == 1 {
            self.auth.claimed = auth::delegated_principal(
                mechanism,
                &req.auth_bytes,
                self.shared.listener(self.set).auth.principal_claim(),
            );
        }
        Ok(DelegatedRound {
            mechanism,
            principal: self.auth.claimed.clone(),
            last: self.auth.rounds >= auth::rounds(mechanism),
            outcome: self.auth.outcome.clone(),
        })
    }

    /// An incremental Fetch (KIP-227) names only what changed in its session, so partitions
    /// added to the session earlier are served without being named, and could not be checked
    /// again after an ACL change. After any change of the security resources, the next
    /// incremental Fetch is answered crate::message::codes::FETCH_SESSION_ID_NOT_FOUND: the client starts a new
    /// session with a full Fetch naming every partition, which the ACLs then judge. A full
    /// Fetch records the generation it was judged under.
    fn stale_fetch_session(&mut self, peek: &RequestPeek, frame: &Bytes) -> Option<Bytes> {
        let generation = self.shared.security.current().generation();
        if generation == self.fetch_generation || peek.api_version < 7 {
            return None;
        }
        peek.body_offset?; // an unknown header format: nothing to read
        let body = peek.body_of(frame);
        // A malformed body is refused here; the ACL stage closes the connection for it.
        let req: FetchRequest =
            schema::decode_request(ApiKey::Fetch, peek.api_version, &body).ok()?;
        let incremental = req.session_id != 0 && req.session_epoch > 0;
        if !incremental {
            self.fetch_generation = generation;
            return None;
        }
        info!(peer = %self.peer, principal = ?self.principal(), session_id = req.session_id,
            "ACLs changed: the client's fetch session starts over");
        let resp = FetchResponse::default()
            .with_error_code(crate::message::codes::FETCH_SESSION_ID_NOT_FOUND)
            .with_session_id(0);
        Some(crate::message::encode_response(
            ApiKey::Fetch,
            peek.api_version,
            peek.correlation_id,
            &resp,
        ))
    }

    /// Whether the gateway's SASL session on the upstream connection is due for renewal.
    fn reauth_due(&self) -> bool {
        self.upstream_session
            .is_some_and(|(_, at)| at.is_some_and(|at| Instant::now() >= at))
    }

    /// Renews the gateway's SASL session on the upstream connection in place (KIP-368),
    /// before the broker's session lifetime ends: a broker closes a connection whose session
    /// expired at its next request, which would end the client's connection too. The
    /// requests already queued go first; the client's next ones wait until the exchange is
    /// done (the request side does not read meanwhile). A failure closes the connection, as
    /// the broker would.
    async fn reauthenticate_upstream(&mut self, out: &mut Outbox) -> Result<(), End> {
        let Some((session, _)) = self.upstream_session else {
            return Ok(());
        };
        let Some(sasl) = self.shared.connector.sasl().cloned() else {
            self.upstream_session = None;
            return Ok(());
        };
        if let Err(e) = self.write_upstream(out).await {
            warn!(peer = %self.peer, "writing to broker failed: {e}");
            return Err(End::Abort);
        }
        let limit = self.shared.config.request_timeout();
        let exchange = async {
            let hs: SaslHandshakeResponse = self
                .internal_call(
                    &SaslHandshakeRequest::default()
                        .with_mechanism(StrBytes::from_string(sasl.mechanism.clone())),
                    1,
                )
                .await?;
            crate::upstream::check_handshake(&sasl, &hs)?;
            let mut client = SaslClient::new(&sasl);
            let mut token = client.first();
            loop {
                let resp: SaslAuthenticateResponse = self
                    .internal_call(
                        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
                        session.auth_version,
                    )
                    .await?;
                match client.next(&resp)? {
                    Some(next) => token = next,
                    None => break anyhow::Ok(crate::upstream::session_lifetime(&resp)),
                }
            }
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(lifetime)) => {
                self.shared.metrics.upstream_reauthentications.inc();
                debug!(peer = %self.peer, lifetime_ms = ?lifetime.map(|l| l.as_millis()),
                    "re-authenticated with the broker");
                self.upstream_session = Some((
                    UpstreamSession {
                        lifetime,
                        ..session
                    },
                    renewal_time(lifetime),
                ));
                Ok(())
            }
            Ok(Err(e)) => {
                warn!(peer = %self.peer, "re-authentication with the broker failed: {e:#}; closing connection");
                Err(End::Abort)
            }
            Err(_) => {
                warn!(peer = %self.peer, "re-authentication with the broker timed out; closing connection");
                Err(End::Abort)
            }
        }
    }

    /// Sends a request of the gateway's own on the upstream connection and waits for its
    /// answer, which the response side hands back in order instead of relaying it.
    async fn internal_call<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> anyhow::Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|()| anyhow::anyhow!("unknown api key"))?;
        // Negative ids, apart from the client's own (which the client never sees anyway).
        self.internal_cid = self.internal_cid.wrapping_add(1).min(-1);
        let correlation_id = self.internal_cid;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-gateway")));
        let header_version = R::header_version(version);
        let size = header.compute_size(header_version)? + req.compute_size(version)?;
        let mut frame = BytesMut::with_capacity(4 + size);
        frame.put_i32(i32::try_from(size)?);
        header.encode(&mut frame, header_version)?;
        req.encode(&mut frame, version)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.slots
            .send(Slot::Internal {
                correlation_id,
                reply,
            })
            .await
            .map_err(|_| anyhow::anyhow!("the connection is closing"))?;
        let upstream = self.upstream.as_mut().context("no upstream connection")?;
        upstream.write_all(&frame).await?;
        upstream.flush().await?;
        let mut body = answer
            .await
            .map_err(|_| anyhow::anyhow!("the broker connection ended"))?
            .slice(frame::LENGTH_PREFIX..);
        schema::decode_response_header(key, version, &mut body)?;
        schema::decode_response(key, version, &body)
    }

    async fn open_upstream(&mut self, peek: &RequestPeek) -> Result<(), End> {
        let shared = &self.shared;
        let candidates = match self.route {
            Route::Bootstrap => shared.bootstrap_order(),
            Route::Node(id) => {
                let known = match shared.upstream_of(id) {
                    Some(addr) => Some(addr),
                    None => {
                        // A client may reach a broker port before the gateway has learnt that
                        // broker (e.g. after a gateway restart): learn it now.
                        if let Err(e) = shared.refresh_brokers().await {
                            warn!(peer = %self.peer, node_id = id, "cannot learn brokers: {e:#}");
                        }
                        shared.upstream_of(id)
                    }
                };
                match known {
                    Some(addr) => vec![addr],
                    None => {
                        warn!(peer = %self.peer, node_id = id, "no such broker in the cluster; closing connection");
                        return Err(End::Abort);
                    }
                }
            }
        };
        // Delegated SASL: the client's own exchange authenticates this connection.
        let delegated = self.shared.listener(self.set).auth.requires_sasl()
            && self.shared.listener(self.set).auth.mode() == SaslMode::Delegated;
        for addr in &candidates {
            let connected = if delegated {
                shared.connector.transport(addr).await.map(|s| (s, None))
            } else {
                shared.connector.connect_session(addr).await
            };
            match connected {
                Ok((stream, session)) => {
                    let (r, w) = stream.into_split();
                    self.upstream = Some(w);
                    self.upstream_session = session.map(|s| (s, renewal_time(s.lifetime)));
                    debug!(peer = %self.peer, upstream = %addr, api_key = peek.api_key, "upstream connected");
                    return self
                        .slots
                        .send(Slot::Attach(r))
                        .await
                        .map_err(|_| End::Abort);
                }
                Err(e) => {
                    shared.metrics.upstream_connect_errors.inc();
                    warn!(peer = %self.peer, upstream = %addr, "cannot connect to broker: {e:#}");
                }
            }
        }
        info!(peer = %self.peer, route = ?self.route, "no broker reachable; closing client connection so it retries");
        Err(End::Abort)
    }
}
