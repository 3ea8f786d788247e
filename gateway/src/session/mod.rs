//! One client connection: the request path and the response path.
//!
//! Each client connection gets one upstream connection, opened on its first request: to any
//! live bootstrap server on the bootstrap port, to broker `n` on broker `n`'s port. That keeps
//! Kafka's per-connection ordering without remapping correlation ids.
//!
//! Two tasks run per connection. The *request side* reads client frames, decides what each
//! needs, queues a [`Slot`] per expected response (in request order) and forwards frames
//! upstream. The *response side* takes the slots in order: a local answer is written as is, an
//! upstream slot consumes the next upstream frame, checks its correlation id, rewrites it if
//! needed, and writes it to the client. Slot order is response order, so pipelining keeps
//! Kafka's in-order guarantee, and acks=0 produce requests simply get no slot.
//!
//! Backpressure: the slot queue is bounded (`limits.maxInFlight`), frames are bounded
//! (`limits.maxFrameBytes`), and neither side reads while its write is blocked, so a slow
//! client or broker slows the other side instead of growing buffers.
//!
//! Passthrough frames are never copied: each frame is split off the read buffer as a shared
//! `Bytes`, queued in an [`Outbox`], and the queue is written with one vectored write.
//!
//! Security runs first on the request side: a TLS listener completes its handshake (and maps
//! a client certificate to a principal) before the first frame; a SASL listener answers
//! SaslHandshake and SaslAuthenticate itself (gateway-managed) or relays them to the broker
//! and watches the answer (delegated), and closes a connection that sends anything but
//! ApiVersions or SASL before it has authenticated or after its session expired (KIP-368).
//! With authorization on, every other request then passes the ACLs before the interceptors.

use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use crate::admission::Activity;
use crate::advertise::ResponseAction;
use crate::auth;
use crate::concentrate::Concentrated;
use crate::identity::Identity;
use crate::message::PartitionResult;
use crate::ratelimit::limited;
use crate::registry::Installed;
use crate::shared::{Route, Shared};
use crate::tls::{ReadHalf, WriteHalf};
use crate::vcluster::Tenant;
use pipeline::AuthzFix;

mod pipeline;
mod request;
mod response;

use request::{ConnAuth, RequestSide};
use response::response_side;

/// Minimum free space before a socket read; frames larger than this are read in one piece
/// once their length is known.
const READ_CHUNK: usize = 64 * 1024;

/// One expected response, in request order.
enum Slot {
    /// The upstream connection is open; here is its read half.
    Attach(ReadHalf),
    /// A response the gateway produced (framed).
    Local { api_key: i16, bytes: Bytes },
    /// The next upstream frame answers this request.
    Upstream(Pending),
    /// An acks=0 Produce was forwarded: a correct broker does not answer it, but some brokers
    /// do; such an answer is dropped instead of being taken for the next response.
    NoResponse { correlation_id: i32 },
    /// A request of the gateway's own on the client's upstream connection (re-authentication):
    /// its answer goes back to the request side, never to the client.
    Internal {
        correlation_id: i32,
        reply: tokio::sync::oneshot::Sender<Bytes>,
    },
}

/// When to renew a broker SASL session of `lifetime`: at 85 % of it (Kafka's own clients
/// pick 85–95 %), so the exchange is over well before the broker would close the connection.
fn renewal_time(lifetime: Option<Duration>) -> Option<Instant> {
    lifetime.map(|l| Instant::now() + l.mul_f64(0.85))
}

/// acks=0 correlation ids remembered, in case the broker answers them anyway.
const NO_RESPONSE_MEMORY: usize = 256;
/// Largest single buffer reservation made ahead of a frame's bytes: a peer that announces a
/// 100 MiB frame and sends nothing does not get 100 MiB reserved at once.
const MAX_RESERVE_STEP: usize = 8 * 1024 * 1024;

struct Pending {
    api_key: i16,
    version: i16,
    correlation_id: i32,
    action: ResponseAction,
    /// Time the request spent in the gateway before being queued for the broker.
    gateway_request: Duration,
    queued: Instant,
    /// Response interception, when some interceptor wants this response.
    intercept: Option<Box<ResponseIntercept>>,
    /// ACL completion of the response (denied parts merged back, listings filtered).
    authz: Option<AuthzFix>,
    /// The virtual cluster whose names the response is mapped back to, and the concentrated
    /// topics the request named.
    tenant: Option<Box<(Arc<Tenant>, Option<Concentrated>)>>,
    /// A relayed SaslAuthenticate (delegated mode) whose answer decides the principal.
    delegated: Option<DelegatedRound>,
}

/// One relayed SaslAuthenticate round.
struct DelegatedRound {
    mechanism: &'static str,
    /// The principal the client claimed in its first message.
    principal: Option<String>,
    /// Whether a successful answer completes the exchange.
    last: bool,
    outcome: Arc<Mutex<Option<DelegatedOutcome>>>,
}

/// What the response side learnt from the broker's last SaslAuthenticate answer.
struct DelegatedOutcome {
    who: Identity,
    lifetime: Option<Duration>,
}

/// What the response side needs to run the chain on a response.
struct ResponseIntercept {
    /// The chain the request ran on (a swap meanwhile does not change it).
    chain: Arc<[Arc<Installed>]>,
    client: Arc<Identity>,
    /// The request body as forwarded, to build error answers.
    request_body: Bytes,
    /// Produce partitions the gateway answers itself.
    produce_extra: Vec<PartitionResult>,
}

/// Why the request side stopped.
enum End {
    /// The client closed its connection.
    ClientClosed,
    /// Shutdown: stop reading, deliver what is in flight.
    Shutdown,
    /// Protocol error or upstream failure: close now.
    Abort,
    /// Deliver the answers already queued, then close.
    Finish,
    /// A failed authentication's error is queued: deliver it, then keep the connection open
    /// for [`FAILED_AUTH_LINGER`] (or until the client closes) before closing, as Kafka delays
    /// the close after such an answer. A client that reads the answer and the close in one go
    /// may act on the close alone: kafka-python then reports a lost connection and retries
    /// until its bootstrap timeout instead of an authentication failure.
    AuthFailed,
}

/// How long a connection stays open after its failed authentication was answered (nothing
/// it sends meanwhile is read as a request).
const FAILED_AUTH_LINGER: Duration = Duration::from_millis(500);

/// Aborts a spawned task when dropped, so a closed session leaves nothing behind.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Frames waiting to be written, as shared buffers: joining them costs no copy, and one
/// vectored write sends them all.
#[derive(Default)]
struct Outbox {
    chunks: Vec<Bytes>,
}

/// Most buffers handed to one `writev`.
const MAX_IOVECS: usize = 64;

impl Outbox {
    fn push(&mut self, frame: Bytes) {
        self.chunks.push(frame);
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Writes everything queued, then empties the queue.
    async fn write_to<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
    ) -> std::io::Result<()> {
        let (mut first, mut offset) = (0, 0);
        while first < self.chunks.len() {
            let slices: Vec<std::io::IoSlice<'_>> = self.chunks[first..]
                .iter()
                .take(MAX_IOVECS)
                .enumerate()
                .map(|(i, c)| std::io::IoSlice::new(if i == 0 { &c[offset..] } else { c }))
                .collect();
            let mut n = w.write_vectored(&slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while n > 0 {
                let left = self.chunks[first].len() - offset;
                if n >= left {
                    n -= left;
                    first += 1;
                    offset = 0;
                } else {
                    offset += n;
                    n = 0;
                }
            }
        }
        self.chunks.clear();
        Ok(())
    }
}

/// Requests kept for error answers are copied out of the read buffer when small; large ones
/// (produce batches) are not kept at all: holding a slice would pin the whole read buffer until
/// the response arrives, and the gateway builds a produce error answer from the response.
const KEEP_REQUEST_MAX: usize = 64 * 1024;

fn detach_small(body: Bytes) -> Bytes {
    if body.len() <= KEEP_REQUEST_MAX {
        Bytes::copy_from_slice(&body)
    } else {
        Bytes::new()
    }
}

/// Socket read buffer under TLS. rustls reads at most 4 KiB per call; without a buffer below
/// it, a bulk transfer costs one `recv` per TLS record (about 60 times the syscalls of
/// plaintext). Writes pass straight through.
const TLS_READ_BUFFER: usize = 64 * 1024;

fn tls_reader(tcp: TcpStream) -> tokio::io::BufReader<TcpStream> {
    tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, tcp)
}

/// A deadline that never comes, for a timer branch that is disabled.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Serves one client connection, accepted on listener set `set`, until it closes.
pub(crate) async fn run(
    shared: Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    route: Route,
    set: usize,
) {
    let activity = Arc::new(Activity::new());
    // The TLS handshake, the first request and SASL share one budget from accept.
    let handshake_deadline = tokio::time::Instant::from_std(
        activity.started() + shared.config.limits.handshake_timeout(),
    );
    let mut tls_principal = None;
    let mut sni = None;
    let authn = shared.listener(set).auth.clone();
    let (client_r, client_w): (ReadHalf, WriteHalf) = match authn.tls() {
        None => {
            let (r, w) = client.into_split();
            (Box::new(r), Box::new(w))
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout_at(handshake_deadline, acceptor.accept(tls_reader(client)))
                    .await;
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    shared.metrics.authentication("SSL", "failure");
                    limited!(warn, shared.log_limit, "tls_failed", %peer, ?route, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    shared.metrics.authentication("SSL", "failure");
                    shared.metrics.connection_closed("handshake_timeout");
                    limited!(warn, shared.log_limit, "handshake_timeout", %peer, ?route,
                        timeout_ms = shared.config.limits.handshake_timeout_ms,
                        "TLS handshake not done within limits.handshakeTimeoutMs; closing connection");
                    return;
                }
            };
            match authn.tls_principal(stream.get_ref().1.peer_certificates()) {
                Ok(p) => tls_principal = p,
                Err(e) => {
                    shared.metrics.authentication("SSL", "failure");
                    warn!(%peer, "client certificate refused: {e:#}");
                    return;
                }
            }
            if tls_principal.is_some() {
                shared.metrics.authentication("SSL", "success");
            }
            sni = stream.get_ref().1.server_name().map(str::to_string);
            let (r, w) = tokio::io::split(stream);
            (Box::new(r), Box::new(w))
        }
    };
    let (tx, rx) = mpsc::channel(shared.config.limits.max_in_flight);
    let dead = CancellationToken::new();
    let mut writer = AbortOnDrop(tokio::spawn(
        response_side(
            shared.clone(),
            client_w,
            rx,
            dead.clone(),
            peer,
            set,
            activity.clone(),
        )
        .in_current_span(),
    ));
    let mut requests = RequestSide {
        shared: shared.clone(),
        route,
        set,
        peer,
        client: client_r,
        upstream: None,
        slots: tx,
        buf: BytesMut::with_capacity(READ_CHUNK),
        ident: Arc::new(Identity {
            address: peer.to_string(),
            listener: shared.listener(set).name.clone(),
            ..Identity::default()
        }),
        chain: (u64::MAX, Arc::from(Vec::new())),
        auth: ConnAuth::default(),
        authz: None,
        acls: None,
        fetch_generation: 0,
        tenant: None,
        _tenant_slot: None,
        sni,
        upstream_session: None,
        internal_cid: i32::MIN,
        activity,
        handshake_deadline,
        seen_request: false,
        handshake_done: false,
    };
    if !authn.requires_sasl() && authn.tls().is_some() {
        // SSL listeners: the certificate is the identity (Kafka's ANONYMOUS without one).
        let principal = tls_principal.unwrap_or_else(|| auth::ANONYMOUS.to_string());
        let identity = Identity::authenticated(principal, "SSL");
        if requests.set_identity(identity).is_err() {
            return;
        }
    } else if !authn.requires_sasl() && shared.config.authorization.enabled {
        let identity = Identity::authenticated(auth::ANONYMOUS, "NONE");
        if requests.set_identity(identity).is_err() {
            return;
        }
    }
    let end = requests.run(&dead).await;
    if matches!(end, End::AuthFailed) {
        requests.linger(&dead).await;
    }
    drop(requests); // closes the slot queue: the response side ends after the last slot
    match end {
        End::Shutdown | End::Finish | End::AuthFailed => {
            let _ = (&mut writer.0).await;
        }
        End::ClientClosed | End::Abort => {}
    }
    debug!(%peer, ?route, "connection closed");
}
