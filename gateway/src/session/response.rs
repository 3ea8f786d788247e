//! The response side of a connection: relays upstream responses and local answers in request order.
//!
//! A response some stage must read (address rewriting, ACL completion, tenant names,
//! interceptors, delegated SASL) is read whole, changed, and queued. Every other response is
//! streamed: once its header shows it is the expected answer, its bytes go to the client as
//! they arrive, through one reused buffer. A multi-MB Fetch answer then costs neither a
//! buffer of its size nor the time to receive all of it before the client gets the first byte.
//! A large Fetch v16+ answer, whose only change is the KIP-951 broker endpoints in its last
//! bytes, streams the same way with just that last section held back and rewritten.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::SaslAuthenticateResponse;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::admission::Activity;
use crate::advertise::tail::{self, Tail};
use crate::advertise::{self, ResponseAction};
use crate::auth;
use crate::authorize::{self};
use crate::frame::{self, FrameStatus};
use crate::identity::Identity;
use crate::intercept::{self, RequestMeta, ResponseMeta, TopicLookup};
use crate::metrics::secs;
use crate::schema::{self, TailFinder};
use crate::shared::{Shared, SharedBook};
use crate::tenancy;
use crate::tls::{ReadHalf, WriteHalf};

use super::pipeline::{ResponseStage, RESPONSE_STAGES};
use super::{
    DelegatedOutcome, DelegatedRound, Outbox, Pending, Slot, MAX_RESERVE_STEP, NO_RESPONSE_MEMORY,
    READ_CHUNK,
};

/// A response frame's length prefix and correlation id: what must be read before it is known
/// whose answer the frame is.
const RESPONSE_HEADER: usize = frame::LENGTH_PREFIX + 4;

/// Largest piece of a streamed response read at once (see [`ResponseSide::stream`]).
const STREAM_CHUNK: usize = 256 * 1024;

/// Whether `stage` has work on the response to `p`. A response no stage applies to is
/// streamed through instead of being held whole.
fn applies(stage: ResponseStage, p: &Pending) -> bool {
    match stage {
        ResponseStage::Authenticate => p.delegated.is_some(),
        ResponseStage::Intercept => p.intercept.is_some(),
        ResponseStage::Authorize => p.authz.is_some(),
        ResponseStage::Addresses => p.action != ResponseAction::Passthrough,
        ResponseStage::TenantNames => p.tenant.is_some(),
    }
}

/// A response read from upstream, waiting for its bytes to reach the client.
struct Delivered {
    api_key: i16,
    bytes: usize,
    /// Time in the gateway before the request was queued for the broker.
    gateway_request: Duration,
    /// Time in the gateway from reading the response to queueing it for the client.
    gateway_response: Duration,
    upstream: Duration,
}

struct ResponseSide {
    shared: Arc<Shared>,
    /// The connection's listener set: brokers in responses are named by its addresses.
    set: usize,
    /// acks=0 requests a non-conforming broker may still answer.
    no_response: std::collections::VecDeque<i32>,
    client: WriteHalf,
    upstream: Option<ReadHalf>,
    buf: BytesMut,
    out: Outbox,
    delivered: Vec<Delivered>,
    peer: SocketAddr,
    /// Answers queued in `out` since the last write, and where their delivery is noted.
    answers: usize,
    activity: Arc<Activity>,
}

pub(super) async fn response_side(
    shared: Arc<Shared>,
    client: WriteHalf,
    mut slots: mpsc::Receiver<Slot>,
    dead: CancellationToken,
    peer: SocketAddr,
    set: usize,
    activity: Arc<Activity>,
) {
    let mut side = ResponseSide {
        shared,
        set,
        no_response: std::collections::VecDeque::new(),
        client,
        upstream: None,
        buf: BytesMut::with_capacity(READ_CHUNK),
        out: Outbox::default(),
        delivered: Vec::new(),
        peer,
        answers: 0,
        activity,
    };
    let result = side.run(&mut slots).await;
    if let Err(e) = result {
        debug!(peer = %side.peer, "response path ended: {e}");
    }
    let _ = side.client.shutdown().await;
    dead.cancel();
}

impl ResponseSide {
    async fn run(&mut self, slots: &mut mpsc::Receiver<Slot>) -> anyhow::Result<()> {
        loop {
            let slot = match slots.try_recv() {
                Ok(slot) => slot,
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.flush().await?;
                    match self.wait(slots).await? {
                        Some(slot) => slot,
                        None => return Ok(()),
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.flush().await?;
                    return Ok(());
                }
            };
            match slot {
                Slot::Attach(r) => self.upstream = Some(r),
                Slot::Local { api_key, bytes } => {
                    let api = self.shared.metrics.api(api_key);
                    api.local_responses.inc();
                    api.response_bytes.inc_by(bytes.len() as u64);
                    self.out.push(bytes);
                    self.answers += 1;
                }
                Slot::Upstream(p) => {
                    self.relay(p).await?;
                    self.answers += 1;
                }
                Slot::Internal {
                    correlation_id,
                    reply,
                } => {
                    let frame = self.next_frame(0, correlation_id).await?;
                    // The request side may have given up (timeout): nothing to deliver then.
                    let _ = reply.send(frame.freeze());
                }
                Slot::NoResponse { correlation_id } => {
                    if self.no_response.len() == NO_RESPONSE_MEMORY {
                        self.no_response.pop_front();
                    }
                    self.no_response.push_back(correlation_id);
                }
            }
        }
    }

    /// Waits for the next slot while watching the broker connection: a broker that closes it
    /// while nothing is pending (after an acks=0 produce it rejected, or when idle) must close
    /// the client connection too, so the client notices and reconnects.
    async fn wait(&mut self, slots: &mut mpsc::Receiver<Slot>) -> anyhow::Result<Option<Slot>> {
        loop {
            let Some(up) = self.upstream.as_mut() else {
                return Ok(slots.recv().await);
            };
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            let buf = &mut self.buf;
            tokio::select! {
                // Slots first: the slot of a request is queued before the request is written,
                // so its answer must never be taken for an unsolicited frame.
                biased;
                slot = slots.recv() => return Ok(slot),
                read = up.read_buf(buf) => {
                    if read? == 0 {
                        self.shared.metrics.upstream_disconnects.inc();
                        info!(peer = %self.peer, "broker closed an idle connection; closing client connection");
                        anyhow::bail!("upstream closed");
                    }
                    self.drop_unsolicited()?;
                }
            }
        }
    }

    /// Drops complete frames that answer acks=0 requests; any other unsolicited frame is a
    /// protocol error.
    fn drop_unsolicited(&mut self) -> anyhow::Result<()> {
        let max = self.shared.config.limits.max_frame_bytes;
        while let Ok(FrameStatus::Complete(n)) = frame::frame_len(&self.buf, max) {
            let cid = frame::response_correlation_id(&self.buf[frame::LENGTH_PREFIX..n])?;
            if !self.forget_no_response(cid) {
                self.shared.metrics.protocol_error("unsolicited_response");
                warn!(peer = %self.peer, correlation_id = cid, "broker sent a response nobody asked for; closing connection");
                anyhow::bail!("unsolicited response");
            }
            let _ = self.buf.split_to(n);
        }
        Ok(())
    }

    fn forget_no_response(&mut self, correlation_id: i32) -> bool {
        match self.no_response.iter().position(|c| *c == correlation_id) {
            Some(i) => {
                self.no_response.remove(i);
                debug!(peer = %self.peer, correlation_id, "dropping the broker's answer to an acks=0 produce");
                true
            }
            None => false,
        }
    }

    /// Reads the next response frame from upstream, the answer to `correlation_id`
    /// (`api_key` for the log): answers to acks=0 requests a broker sent anyway are skipped;
    /// anything else out of order ends the connection.
    async fn next_frame(&mut self, api_key: i16, correlation_id: i32) -> anyhow::Result<BytesMut> {
        let total = self.next_header(api_key, correlation_id).await?;
        while self.buf.len() < total {
            self.fill(total, api_key, correlation_id).await?;
        }
        Ok(self.buf.split_to(total))
    }

    /// Reads until the header (length and correlation id) of the answer to `correlation_id`
    /// is buffered and returns the frame's size, prefix included; the body may still be on
    /// its way. Answers to acks=0 requests a broker sent anyway are skipped whole; anything
    /// else out of order ends the connection.
    async fn next_header(&mut self, api_key: i16, correlation_id: i32) -> anyhow::Result<usize> {
        let max = self.shared.config.limits.max_frame_bytes;
        loop {
            let total = match frame::frame_len(&self.buf, max) {
                Ok(FrameStatus::Complete(n)) => n,
                Ok(FrameStatus::Incomplete { total: Some(n) })
                    if self.buf.len() >= RESPONSE_HEADER =>
                {
                    n
                }
                Ok(FrameStatus::Incomplete { .. }) => {
                    // Only the header is needed here: a streamed body is read piece by piece.
                    self.fill(0, api_key, correlation_id).await?;
                    continue;
                }
                Err(e) => {
                    self.shared.metrics.protocol_error("bad_upstream_frame");
                    warn!(peer = %self.peer, "bad frame from broker: {e}; closing connection");
                    anyhow::bail!("bad upstream frame");
                }
            };
            let header = &self.buf[frame::LENGTH_PREFIX..total.min(self.buf.len())];
            let got = frame::response_correlation_id(header)?;
            if got == correlation_id {
                return Ok(total);
            }
            if !self.forget_no_response(got) {
                self.shared
                    .metrics
                    .protocol_error("correlation_id_mismatch");
                warn!(peer = %self.peer, expected = correlation_id, got,
                    "broker answered out of order; closing connection");
                anyhow::bail!("correlation id mismatch");
            }
            while self.buf.len() < total {
                self.fill(total, api_key, correlation_id).await?;
            }
            let _ = self.buf.split_to(total);
        }
    }

    /// Reads more of the upstream stream into the buffer, towards a frame of `total` bytes
    /// (0: not known yet). What is queued for the client is written first: nothing more
    /// will be ready until the broker answers, and the written buffers are free for reuse.
    async fn fill(
        &mut self,
        total: usize,
        api_key: i16,
        correlation_id: i32,
    ) -> anyhow::Result<()> {
        self.flush().await?;
        let want = total.saturating_sub(self.buf.len());
        self.buf
            .reserve(want.clamp(READ_CHUNK / 4, MAX_RESERVE_STEP));
        self.read_upstream(api_key, correlation_id).await
    }

    /// One read from the broker into the buffer; the broker closing the connection ends it.
    async fn read_upstream(&mut self, api_key: i16, correlation_id: i32) -> anyhow::Result<()> {
        let Some(up) = self.upstream.as_mut() else {
            anyhow::bail!("no upstream connection for a pending request");
        };
        if up.read_buf(&mut self.buf).await? == 0 {
            self.shared.metrics.upstream_disconnects.inc();
            warn!(peer = %self.peer, api_key, correlation_id,
                "broker closed the connection with requests in flight; closing client connection");
            anyhow::bail!("upstream closed");
        }
        Ok(())
    }

    /// Passes the response to `p` on as it arrives: once its header is checked, the bytes
    /// already buffered are queued, and the rest is read and written in pieces of at most
    /// [`STREAM_CHUNK`], each written before the next is read so the same buffer serves them
    /// all. The client sees the first bytes of a multi-MB Fetch answer while the rest is still
    /// arriving, and the gateway never holds it whole.
    ///
    /// With `tail`, the response's KIP-951 endpoints are rewritten on the way: the finder
    /// passes everything before the top-level tagged fields, and only that last section is
    /// held and rewritten, in the same number of bytes (the length prefix has gone out).
    async fn stream(&mut self, p: Pending, mut tail: Option<TailFinder>) -> anyhow::Result<()> {
        let total = self.next_header(p.api_key, p.correlation_id).await?;
        let mut left = total;
        if tail.is_some() {
            // The finder reads from the header on; the prefix goes as it is.
            self.out
                .push(self.buf.split_to(frame::LENGTH_PREFIX).freeze());
            left -= frame::LENGTH_PREFIX;
        }
        loop {
            let take = left.min(self.buf.len());
            let pass = match tail.as_mut() {
                None => take,
                Some(finder) => {
                    let pass = finder
                        .advance(&self.buf[..take])
                        .map_err(|e| self.cannot_rewrite(&p, e))?;
                    if !finder.found() && take == left {
                        // The whole rest of the frame was offered and did not reach the end.
                        return Err(self.cannot_rewrite(&p, "it ends inside a value"));
                    }
                    pass
                }
            };
            if pass > 0 {
                self.out.push(self.buf.split_to(pass).freeze());
                left -= pass;
            }
            if left == 0 || tail.as_ref().is_some_and(TailFinder::found) {
                break;
            }
            // Written before the next read: the buffer is then ours alone again, and
            // `reserve` reuses it instead of allocating.
            self.flush().await?;
            self.buf.reserve(left.min(STREAM_CHUNK));
            self.read_upstream(p.api_key, p.correlation_id).await?;
        }
        let mut gateway_response = Duration::ZERO;
        if tail.is_some() {
            while self.buf.len() < left {
                self.flush().await?;
                self.buf.reserve(left - self.buf.len());
                self.read_upstream(p.api_key, p.correlation_id).await?;
            }
            let started = Instant::now();
            let section = self.buf.split_to(left).freeze();
            let section = self.rewrite_tail(&p, section)?;
            self.out.push(section);
            gateway_response = started.elapsed();
        }
        self.delivered.push(Delivered {
            api_key: p.api_key,
            bytes: total,
            gateway_request: p.gateway_request,
            // Only the tail's rewrite is the gateway's work; the rest is I/O.
            gateway_response,
            upstream: p.queued.elapsed(),
        });
        Ok(())
    }

    /// Rewrites the endpoints in the tail of a streamed response (see [`Self::stream`]).
    fn rewrite_tail(&self, p: &Pending, section: Bytes) -> anyhow::Result<Bytes> {
        let key = ApiKey::try_from(p.api_key).expect("rewrite actions are for known keys");
        let book = SharedBook(&self.shared, self.set);
        match tail::rewrite_tail(key, p.version, &section, &book) {
            Ok(Tail::Unchanged) => Ok(section),
            Ok(Tail::Rewritten(b)) => Ok(b),
            Ok(Tail::Dropped(b)) => {
                self.shared.metrics.node_endpoints_dropped.inc();
                debug!(peer = %self.peer, api = ?key, version = p.version,
                    "leader endpoints left out of a streamed response: the gateway's address is longer than the broker's");
                Ok(b)
            }
            Err(e) => Err(self.cannot_rewrite(p, format!("{e:#}"))),
        }
    }

    /// Counts and logs a streamed response whose endpoints cannot be rewritten: the
    /// connection closes (part of the frame has gone to the client).
    fn cannot_rewrite(&self, p: &Pending, why: impl std::fmt::Display) -> anyhow::Error {
        self.shared.metrics.protocol_error("undecodable_response");
        warn!(peer = %self.peer, api_key = p.api_key, version = p.version,
            "cannot rewrite broker response: {why}; closing connection");
        anyhow::anyhow!("undecodable response")
    }

    /// Whether the response to `p` is streamed with its endpoints rewritten in its tail
    /// rather than held: it is large (its first bytes are worth sending before the rest
    /// arrives), address rewriting is the only stage that reads it, and its endpoints are in
    /// the tagged fields at its end (Fetch v16+, Produce v10+). A small response is held:
    /// the held rewrite may change its length, so it never has to leave endpoints out.
    async fn tail_finder(&mut self, p: &Pending) -> anyhow::Result<Option<TailFinder>> {
        let key = match ApiKey::try_from(p.api_key) {
            Ok(key) if p.action == ResponseAction::NodeEndpoints && tail::rewrites_tail(key) => key,
            _ => return Ok(None),
        };
        let only_addresses = RESPONSE_STAGES
            .iter()
            .all(|&s| s == ResponseStage::Addresses || !applies(s, p));
        if !only_addresses {
            return Ok(None);
        }
        let total = self.next_header(p.api_key, p.correlation_id).await?;
        if total <= STREAM_CHUNK {
            return Ok(None);
        }
        TailFinder::response(key, p.version)
            .map(Some)
            .map_err(|e| self.cannot_rewrite(p, e))
    }

    /// Reads the response to `p` from upstream and queues it for the client.
    async fn relay(&mut self, p: Pending) -> anyhow::Result<()> {
        if !RESPONSE_STAGES.iter().any(|&s| applies(s, &p)) {
            return self.stream(p, None).await;
        }
        if let Some(finder) = self.tail_finder(&p).await? {
            return self.stream(p, Some(finder)).await;
        }
        let frame = self.next_frame(p.api_key, p.correlation_id).await?;
        let read_at = Instant::now();
        let n = frame.len();
        let delivered = Delivered {
            api_key: p.api_key,
            bytes: n,
            gateway_request: p.gateway_request,
            gateway_response: Duration::ZERO,
            upstream: read_at.duration_since(p.queued),
        };
        let mut frame = frame.freeze();
        for stage in RESPONSE_STAGES.into_iter().filter(|&s| applies(s, &p)) {
            frame = self.run_stage(stage, &p, frame).await?;
        }
        // Gateway time ends here: writing to the client is the client's pace, not ours.
        self.delivered.push(Delivered {
            bytes: frame.len(),
            gateway_response: read_at.elapsed(),
            ..delivered
        });
        self.out.push(frame);
        Ok(())
    }

    /// Runs one response stage (one that [`applies`]) over a held response; an error closes
    /// the connection (the stage has logged and counted it).
    async fn run_stage(
        &mut self,
        stage: ResponseStage,
        p: &Pending,
        frame: Bytes,
    ) -> anyhow::Result<Bytes> {
        match stage {
            ResponseStage::Authenticate => {
                if let Some(d) = &p.delegated {
                    self.delegated_answer(d, p.version, &frame);
                }
                Ok(frame)
            }
            ResponseStage::Intercept => self.intercept(p, frame).await,
            ResponseStage::Authorize => self.authorize(p, frame),
            ResponseStage::Addresses => self.addresses(p, frame),
            ResponseStage::TenantNames => self.tenant_names(p, frame),
        }
    }

    /// [`ResponseStage::Intercept`].
    async fn intercept(&mut self, p: &Pending, frame: Bytes) -> anyhow::Result<Bytes> {
        let Some(ic) = &p.intercept else {
            return Ok(frame);
        };
        let meta = ResponseMeta {
            request: RequestMeta {
                api_key: p.api_key,
                version: p.version,
                correlation_id: p.correlation_id,
                header_len: 0,
                client: &ic.client,
            },
            request_body: ic.request_body.clone(),
        };
        match intercept::on_response(
            &ic.chain,
            &meta,
            frame.clone(),
            &ic.produce_extra,
            &self.shared.metrics,
            &self.shared.topic_names,
        )
        .await
        {
            Ok(None) => Ok(frame),
            Ok(Some(b)) => Ok(b),
            Err(reason) => {
                self.shared.metrics.protocol_error("interceptor");
                warn!(peer = %self.peer, "closing connection: {reason}");
                anyhow::bail!("interceptor failure");
            }
        }
    }

    /// [`ResponseStage::Authorize`].
    fn authorize(&mut self, p: &Pending, frame: Bytes) -> anyhow::Result<Bytes> {
        let Some(authz) = &p.authz else {
            return Ok(frame);
        };
        let (fix, permits) = authz.as_ref();
        let tenant_view = p.tenant.as_deref().map(|(t, _)| tenancy::TenantTopics {
            tenant: t,
            names: &self.shared.topic_names,
        });
        let topics: &dyn TopicLookup = match &tenant_view {
            Some(v) => v,
            None => &self.shared.topic_names,
        };
        authorize::fix_response(fix, p.api_key, p.version, frame, permits.as_ref(), topics)
            .inspect_err(|e| {
                self.shared.metrics.protocol_error("undecodable_response");
                warn!(peer = %self.peer, api_key = p.api_key, version = p.version,
                    "cannot apply ACLs to broker response: {e:#}; closing connection");
            })
    }

    /// [`ResponseStage::Addresses`].
    fn addresses(&mut self, p: &Pending, frame: Bytes) -> anyhow::Result<Bytes> {
        let key = ApiKey::try_from(p.api_key).expect("rewrite actions are for known keys");
        let book = SharedBook(&self.shared, self.set);
        match advertise::rewrite_response(p.action, key, p.version, frame.clone(), &book) {
            Ok(None) => Ok(frame),
            Ok(Some(rewritten)) => Ok(rewritten),
            Err(e) => {
                self.shared.metrics.protocol_error("undecodable_response");
                warn!(peer = %self.peer, api = ?key, version = p.version,
                    "cannot rewrite broker response: {e:#}; closing connection");
                Err(e)
            }
        }
    }

    /// [`ResponseStage::TenantNames`].
    fn tenant_names(&mut self, p: &Pending, frame: Bytes) -> anyhow::Result<Bytes> {
        let Some((t, concentrated)) = p.tenant.as_deref() else {
            return Ok(frame);
        };
        tenancy::unmap_response(t, concentrated.as_ref(), p.api_key, p.version, frame)
            .inspect_err(|e| {
                self.shared.metrics.protocol_error("undecodable_response");
                warn!(peer = %self.peer, api_key = p.api_key, version = p.version, vcluster = %t.name,
                    "cannot map broker response back to the tenant's names: {e:#}; closing connection");
            })
    }

    /// Reads the broker's verdict on a relayed SaslAuthenticate (delegated mode).
    fn delegated_answer(&self, d: &DelegatedRound, version: i16, frame: &Bytes) {
        let mut body = frame.slice(frame::LENGTH_PREFIX..);
        let decoded = schema::decode_response_frame::<SaslAuthenticateResponse>(
            ApiKey::SaslAuthenticate,
            version,
            &mut body,
        );
        let resp = match decoded {
            Ok((_, r)) => r,
            Err(e) => {
                warn!(peer = %self.peer, "undecodable SaslAuthenticate answer from the broker: {e:#}");
                return;
            }
        };
        if resp.error_code != 0 {
            self.shared.metrics.authentication(d.mechanism, "failure");
            warn!(peer = %self.peer, principal = ?d.principal, mechanism = d.mechanism, code = resp.error_code,
                "the broker refused the client's credentials");
            return;
        }
        if d.last {
            let principal = d
                .principal
                .clone()
                .unwrap_or_else(|| auth::ANONYMOUS.to_string());
            self.shared.metrics.authentication(d.mechanism, "success");
            info!(peer = %self.peer, principal = %principal, mechanism = d.mechanism, "client authenticated by the broker");
            *d.outcome.lock().expect("sasl outcome lock") = Some(DelegatedOutcome {
                who: Identity::authenticated(principal, d.mechanism),
                lifetime: (resp.session_lifetime_ms > 0)
                    .then(|| Duration::from_millis(resp.session_lifetime_ms as u64)),
            });
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.out.write_to(&mut self.client).await?;
        }
        self.activity.answered(std::mem::take(&mut self.answers));
        for d in self.delivered.drain(..) {
            let api = self.shared.metrics.api(d.api_key);
            api.response_bytes.inc_by(d.bytes as u64);
            api.gateway_seconds
                .observe(secs(d.gateway_request + d.gateway_response));
            api.upstream_seconds.observe(secs(d.upstream));
        }
        Ok(())
    }
}
