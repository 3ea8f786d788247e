//! The gateway process: listeners, the broker registry, discovery and graceful shutdown.
//!
//! Port-per-broker addressing: the bootstrap port (the `listen` address) reaches any live
//! broker; broker node `n` is served on `port + 1 + (n - brokers.minNodeId)`. Listeners for
//! broker ports are opened when a broker is first learnt, from the gateway's own discovery at
//! start and periodically, or from any response that names a broker. With `listen` port 0
//! every listener gets a free port instead (tests, single instances).
//!
//! Listener sets: the default set (top-level `listen`, `advertisedHost`, `security`) and each
//! entry of `listeners` has its own bootstrap port, broker ports (same formula from its own
//! base port), TLS acceptor and SASL settings. The registry keeps one port per (broker,
//! listener set) and a connection knows its set, so a client is only ever told the addresses
//! of the set it connected to: a SASL_SSL client is never redirected to a PLAINTEXT port.

use anyhow::{Context, Result};
use kafka_protocol::protocol::StrBytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn, Instrument};

use crate::admission::{self, Refusal, SourceLimiter};
use crate::auth::Authenticator;
use crate::config::{Config, ListenerConfig, DEFAULT_LISTENER};
use crate::intercept::TopicNames;
use crate::metrics::Metrics;
use crate::ratelimit::{limited, LogLimiter};
use crate::registry::Registry;
use crate::security::SecurityStore;
use crate::session;
use crate::shared::{Listener, Route, Shared};
use crate::state::{FileStore, StateStore};
use crate::upstream;
use crate::vcluster::VirtualClusterStore;

/// Longest pause of an accept loop after a failed accept.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Whether an accept failed for want of file descriptors (EMFILE, ENFILE), memory or buffers
/// (ENOMEM, ENOBUFS; Linux numbers): the listener stays readable, so retrying at once would
/// spin.
fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(12 | 23 | 24 | 105))
}

/// Accepts connections on `listener` for listener set `set` until shutdown.
fn spawn_accept_loop(shared: Arc<Shared>, listener: TcpListener, route: Route, set: usize) {
    let tracker = shared.tasks.clone();
    tracker.spawn(async move {
        let name = shared.listener(set).name.clone();
        let (accepted_here, open_here) = shared.metrics.listener_connections(&name);
        let mut backoff = Duration::ZERO;
        loop {
            let accepted = tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                r = listener.accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(x) => {
                    backoff = Duration::ZERO;
                    x
                }
                Err(e) => {
                    // EMFILE and friends: back off (growing, up to a second) instead of
                    // spinning on a listener that stays readable.
                    let kind = if out_of_resources(&e) {
                        "fd_exhausted"
                    } else {
                        "other"
                    };
                    shared.metrics.accept_error(kind);
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                    limited!(warn, shared.log_limit, "accept_failed",
                        listener = %name, retry_in = ?backoff, "accept failed: {e}");
                    tokio::select! {
                        _ = shared.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
            };
            let Some(source) = shared.sources.try_acquire(peer.ip()) else {
                refuse(&shared, Refusal::PerSource, peer, &name);
                continue;
            };
            let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
                refuse(&shared, shared.limit_refusal, peer, &name);
                continue;
            };
            let _ = stream.set_nodelay(true);
            shared.metrics.connections_total.inc();
            accepted_here.inc();
            let open_here = open_here.clone();
            let s = shared.clone();
            // Every log line of the connection names its listener set.
            let span = tracing::info_span!("conn", listener = %name);
            shared.tasks.spawn(
                async move {
                    s.metrics.connections_open.inc();
                    open_here.inc();
                    tokio::select! {
                        _ = session::run(s.clone(), stream, peer, route, set) => {}
                        _ = s.force_close.cancelled() => debug!(%peer, "closed at shutdown"),
                    }
                    s.metrics.connections_open.dec();
                    open_here.dec();
                    drop(permit);
                    drop(source);
                }
                .instrument(span),
            );
        }
        debug!(?route, listener = %name, "listener closed");
    });
}

/// Counts and (within the log budget) logs a connection refused at accept; the stream was
/// dropped, which closes it.
fn refuse(shared: &Shared, why: Refusal, peer: SocketAddr, listener: &str) {
    shared.metrics.connection_refused(why.label());
    let limit = match why {
        Refusal::PerSource => shared.sources.limit(peer.ip()),
        Refusal::MaxConnections | Refusal::FdLimit => shared.connection_limit,
    };
    limited!(warn, shared.log_limit, "connection_refused",
        %peer, listener, reason = why.label(), limit, "connection limit reached; closing");
}

/// The effective connection limit: `limits.maxConnections`, or less when the open-file limit
/// (raised to its hard limit first) cannot hold that many connections; with what a refusal
/// at it is counted as.
fn connection_limit(config: &Config) -> (usize, Refusal) {
    let max = config.limits.max_connections;
    let Some((soft, hard)) = admission::raise_fd_limit() else {
        return (max, Refusal::MaxConnections);
    };
    let fits = admission::fd_capacity(soft);
    if fits >= max {
        return (max, Refusal::MaxConnections);
    }
    // The limit is the process's: say it once, not at every start of an embedded gateway.
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        warn!(
            soft,
            hard,
            max_connections = max,
            allowed = fits,
            reserve = admission::fd_reserve(soft),
            "the open-file limit allows only {fits} client connections (two descriptors each,              plus a reserve for listeners and the admin API), below limits.maxConnections;              connections beyond it are refused. Raise the limit (ulimit -n, LimitNOFILE)"
        );
    });
    (fits.max(1), Refusal::FdLimit)
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    kafka_addr: SocketAddr,
    admin_addr: SocketAddr,
    /// Completes when the admin listener has stopped.
    admin_task: oneshot::Receiver<()>,
}

impl Gateway {
    /// Validates the configuration, opens the listeners and starts serving.
    pub async fn start(config: Config) -> Result<Gateway> {
        config.validate("configuration")?;
        let connector = upstream::Connector::from_config(&config).context("upstream.tls")?;
        let mut listeners = Vec::new();
        let mut bootstrap_sockets = Vec::new();
        for (index, set) in config.listener_sets().iter().enumerate() {
            let (listener, socket) = bind_listener_set(set, index).await?;
            listeners.push(listener);
            bootstrap_sockets.push(socket);
        }
        let kafka_addr = listeners[0].bootstrap;
        let admin_listener = TcpListener::bind(config.admin_addr())
            .await
            .with_context(|| format!("binding the admin listener {}", config.admin))?;
        let admin_addr = admin_listener.local_addr()?;
        let admin_tls = crate::admin::tls_acceptor(&config)?;
        let metrics = Metrics::new();
        let (limit, limit_refusal) = connection_limit(&config);
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(&config.state_dir)?);
        let runtime = sluice_wasm::Runtime::new(store.cache_dir())?;
        let shutdown = CancellationToken::new();
        let publisher = crate::plugin_publisher::spawn(
            connector.clone(),
            config.upstream.bootstrap.clone(),
            config.request_timeout(),
            metrics.clone(),
            shutdown.clone(),
        );
        let security = Arc::new(SecurityStore::new(store.clone()));
        {
            let security = security.clone();
            tokio::task::spawn_blocking(move || security.restore())
                .await?
                .context("restoring service accounts, groups and ACLs from the state directory")?;
        }
        let vclusters = Arc::new(VirtualClusterStore::new(store.clone()));
        {
            let vclusters = vclusters.clone();
            tokio::task::spawn_blocking(move || vclusters.restore())
                .await?
                .context(
                    "restoring virtual clusters, alias topics and concentration rules from the state directory",
                )?;
        }
        let kms = Arc::new(
            sluice_wasm::kms::Kms::with_config(store.root().as_deref(), config.kms.clone())
                .context("opening the key store of plugin encryption")?,
        );
        metrics.watch_kms(kms.clone());
        let registry = Arc::new(Registry::new(
            runtime,
            store,
            metrics.clone(),
            Some(publisher),
            kms,
        )?);
        {
            let registry = registry.clone();
            tokio::task::spawn_blocking(move || registry.restore())
                .await?
                .context("restoring plugins and interceptors from the state directory")?;
        }
        let shared = Arc::new(Shared {
            metrics,
            registry,
            security,
            vclusters,
            topic_names: TopicNames::default(),
            connector,
            listeners,
            shutdown,
            force_close: CancellationToken::new(),
            tasks: TaskTracker::new(),
            connections: Arc::new(Semaphore::new(limit)),
            connection_limit: limit,
            limit_refusal,
            sources: SourceLimiter::new(&config.limits, limit),
            log_limit: LogLimiter::default(),
            nodes: RwLock::new(HashMap::new()),
            next_bootstrap: AtomicUsize::new(0),
            spawn_accept: spawn_accept_loop,
            config,
        });
        info!(listen = %kafka_addr, admin = %admin_addr, bootstrap = ?shared.config.upstream.bootstrap,
            security = ?shared.config.security.protocol, upstream = ?shared.connector, "sluice gateway started");
        for (index, socket) in bootstrap_sockets.into_iter().enumerate() {
            let set = shared.listener(index);
            if index > 0 {
                info!(listener = %set.name, listen = %set.bootstrap, advertised_host = %set.advertised_host,
                    security = ?shared.config.listeners[index - 1].security.protocol, "serving listener set");
            }
            spawn_accept_loop(shared.clone(), socket, Route::Bootstrap, index);
        }
        spawn_discovery(shared.clone());
        spawn_log_summaries(shared.clone());
        let admin_task = spawn_admin(shared.clone(), admin_listener, admin_tls)?;
        Ok(Gateway {
            shared,
            kafka_addr,
            admin_addr,
            admin_task,
        })
    }

    /// The bootstrap address clients connect to.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    /// The admin HTTP address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The gateway address serving broker `node_id` in the default listener set, once that
    /// broker is known.
    pub fn broker_addr(&self, node_id: i32) -> Option<SocketAddr> {
        self.listener_broker_addr(DEFAULT_LISTENER, node_id)
    }

    /// The bootstrap address of the listener set called `name` (`default`: the top-level
    /// `listen`), if there is one.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        let index = self.shared.listener_index(name)?;
        Some(self.shared.listener(index).bootstrap)
    }

    /// The address serving broker `node_id` in the listener set called `name`, once that
    /// broker is known and its port is open.
    pub fn listener_broker_addr(&self, name: &str, node_id: i32) -> Option<SocketAddr> {
        let index = self.shared.listener_index(name)?;
        let ip = self.shared.listener(index).bootstrap.ip();
        self.shared
            .broker_ports(index)
            .into_iter()
            .find(|(id, _)| *id == node_id)
            .map(|(_, port)| SocketAddr::new(ip, port))
    }

    /// Learns the brokers now (normally done in the background at start).
    pub async fn refresh_brokers(&self) -> Result<usize> {
        self.shared.refresh_brokers().await
    }

    /// The Prometheus text the admin endpoint serves.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.render()
    }

    /// Graceful shutdown: stop accepting, let in-flight requests finish for up to the drain
    /// timeout, then close what is left.
    pub async fn shutdown(self) {
        let drain = Duration::from_millis(self.shared.config.shutdown.drain_timeout_ms);
        info!(?drain, "shutting down: draining in-flight requests");
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        if tokio::time::timeout(drain, self.shared.tasks.wait())
            .await
            .is_err()
        {
            warn!("drain timeout reached; closing remaining connections");
            self.shared.force_close.cancel();
            self.shared.tasks.wait().await;
        }
        // Connections are done; this also stops the admin listener.
        self.shared.force_close.cancel();
        let _ = self.admin_task.await;
        info!("shutdown complete");
    }
}

/// Serves the admin API on a thread and runtime of its own, so `/health`, `/metrics` and the
/// resource API answer however busy the proxy's workers are (a probe that times out gets a
/// healthy gateway restarted). Blocking admin work (compiling a plugin) still goes to that
/// runtime's blocking pool. The receiver completes when the listener has stopped.
fn spawn_admin(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<oneshot::Receiver<()>> {
    // A tokio listener belongs to the runtime it was made in: hand over the socket itself.
    let listener = listener.into_std()?;
    let (done, stopped) = oneshot::channel();
    // The admin listener also stops when the runtime that started the gateway goes away
    // without a shutdown (as a task of that runtime did): a task of it holds the guard.
    let orphaned = CancellationToken::new();
    let guard = orphaned.clone().drop_guard();
    tokio::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("sluice-admin")
        .build()
        .context("starting the admin runtime")?;
    std::thread::Builder::new()
        .name("sluice-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => tokio::select! {
                        () = crate::admin::serve(shared, listener, tls) => {}
                        () = orphaned.cancelled() => {}
                    },
                    Err(e) => error!("admin listener: {e}"),
                }
            });
            let _ = done.send(());
        })
        .context("starting the admin thread")?;
    Ok(stopped)
}

/// Builds listener set `index` (its authenticator) and binds its bootstrap port.
async fn bind_listener_set(set: &ListenerConfig, index: usize) -> Result<(Listener, TcpListener)> {
    let key = if index == 0 {
        "security".to_string()
    } else {
        format!("listeners[{}].security", index - 1)
    };
    let auth = Arc::new(Authenticator::from_listener(&set.security, &key)?);
    let listen = set.listen_addr();
    let socket = TcpListener::bind(listen).await.with_context(|| {
        if index == 0 {
            format!("binding the Kafka listener {listen}")
        } else {
            format!("binding the Kafka listener `{}` {listen}", set.name)
        }
    })?;
    let listener = Listener {
        name: set.name.clone(),
        advertised_host: StrBytes::from_string(set.advertised_host()),
        auth,
        bootstrap: socket.local_addr()?,
        base_port: listen.port(),
    };
    Ok((listener, socket))
}

/// Every window of the connection log budget, one line per kind that had lines suppressed.
fn spawn_log_summaries(shared: Arc<Shared>) {
    shared.tasks.clone().spawn(async move {
        loop {
            tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                _ = tokio::time::sleep(crate::ratelimit::WINDOW) => shared.log_limit.summarise(),
            }
        }
        shared.log_limit.summarise();
    });
}

fn spawn_discovery(shared: Arc<Shared>) {
    let every = Duration::from_millis(shared.config.upstream.metadata_refresh_ms);
    shared.tasks.clone().spawn(async move {
        let mut failures = 0u32;
        loop {
            // A round stuck on an unresponsive broker must not hold up shutdown.
            let round = tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                r = shared.refresh_brokers() => r,
            };
            match round {
                // A broker that is still starting may answer before it lists itself: that is
                // not a cluster to settle on for a whole refresh period.
                Ok(0) => {
                    failures += 1;
                    if failures == 1 || failures % 10 == 0 {
                        warn!(
                            failures,
                            "broker discovery: the cluster answered with no brokers yet"
                        );
                    }
                }
                Ok(n) => {
                    if failures > 0 {
                        info!(brokers = n, "upstream cluster reachable again");
                    }
                    debug!(brokers = n, "broker discovery");
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    // Log the first failure and then every tenth, not every retry.
                    if failures == 1 || failures % 10 == 0 {
                        warn!(failures, "broker discovery failed: {e:#}");
                    }
                }
            }
            // Retry quickly while the cluster is unreachable, then settle to the refresh period.
            let wait = if failures == 0 {
                every
            } else {
                Duration::from_millis(500).min(every)
            };
            tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    });
}
