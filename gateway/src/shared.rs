//! What every connection of one gateway shares: the configuration, the stores, the metrics,
//! the listener sets and the registry of brokers with their gateway ports.
//!
//! It lives apart from the server (which builds it and runs the accept loops) and from the
//! sessions and the admin API (which read it), so that none of them imports another: the server
//! hands in its accept loop as [`SpawnAccept`] for the broker ports opened later.

use anyhow::{Context, Result};
use kafka_protocol::protocol::StrBytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::admission::{Refusal, SourceLimiter};
use crate::advertise::AddressBook;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::intercept::TopicNames;
use crate::metrics::Metrics;
use crate::ratelimit::LogLimiter;
use crate::registry::Registry;
use crate::security::SecurityStore;
use crate::upstream;
use crate::vcluster::VirtualClusterStore;

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// The bootstrap port: any live broker.
    Bootstrap,
    /// A broker port: that broker only.
    Node(i32),
}

/// Starts the accept loop of a bound listener: `(shared, listener, route, listener set)`.
pub(crate) type SpawnAccept = fn(Arc<Shared>, TcpListener, Route, usize);

/// A broker known to the gateway.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Where the broker listens (as it advertises itself).
    upstream: String,
    /// The gateway port standing for it in each listener set, in [`Shared::listeners`] order.
    ports: Vec<NodePort>,
}

/// The gateway port of one broker in one listener set.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NodePort {
    /// The port (the wanted one while it could not be opened).
    port: u16,
    /// Whether the gateway listener for it is open.
    listening: bool,
}

/// One listener set as served: its bootstrap address, the host its clients are told, and how
/// they authenticate.
pub(crate) struct Listener {
    /// The set's name (`default` for the top-level one), for logs and lookups.
    pub name: String,
    /// Host advertised to this set's clients in broker lists.
    pub advertised_host: StrBytes,
    /// Client authentication on this set (TLS acceptor, SASL mechanisms).
    pub auth: Arc<Authenticator>,
    /// The bound bootstrap address.
    pub bootstrap: SocketAddr,
    /// Base port broker ports are counted from; 0: free ports.
    pub base_port: u16,
}

/// State shared by every connection of one gateway.
pub(crate) struct Shared {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// Stop accepting and reading new requests; drain in-flight ones.
    pub shutdown: CancellationToken,
    /// Close every connection now (drain timeout expired).
    pub force_close: CancellationToken,
    pub tasks: TaskTracker,
    /// Client connection slots: the effective limit ([`Shared::connection_limit`]).
    pub connections: Arc<Semaphore>,
    /// `limits.maxConnections`, lowered to what the open-file limit allows.
    pub connection_limit: usize,
    /// What a refusal at the connection limit is counted as (`fd_limit` when the open-file
    /// limit is the lower one).
    pub limit_refusal: Refusal,
    /// Connections per source address.
    pub sources: SourceLimiter,
    /// Budget of connection-level log lines.
    pub log_limit: LogLimiter,
    /// Installed plugins and interceptors; the live chain.
    pub registry: Arc<Registry>,
    /// Service accounts, groups and ACLs; the live security snapshot.
    pub security: Arc<SecurityStore>,
    /// Virtual clusters, alias topics and concentration rules; the live tenancy snapshot.
    pub vclusters: Arc<VirtualClusterStore>,
    /// Topic ids seen in Metadata responses.
    pub topic_names: TopicNames,
    /// Opens broker connections (TLS, the gateway's own SASL).
    pub connector: upstream::Connector,
    /// The listener sets, the default one first; connections refer to them by index.
    pub listeners: Vec<Listener>,
    /// Starts accepting on a listener (the server's accept loop), for broker ports opened
    /// when a broker is first learnt.
    pub spawn_accept: SpawnAccept,
    pub(crate) nodes: RwLock<HashMap<i32, Node>>,
    pub(crate) next_bootstrap: AtomicUsize,
}

impl Shared {
    /// Listener set `index` (an index a connection was given at accept).
    pub fn listener(&self, index: usize) -> &Listener {
        &self.listeners[index]
    }

    /// The index of the listener set called `name`.
    pub fn listener_index(&self, name: &str) -> Option<usize> {
        self.listeners.iter().position(|l| l.name == name)
    }

    /// The gateway port for `node_id` in listener set `set` in deterministic mode, if it lies
    /// in the reserved range.
    fn fixed_port(&self, set: usize, node_id: i32) -> Option<u16> {
        let base = self.listeners[set].base_port;
        if base == 0 {
            return None;
        }
        let offset = i64::from(node_id) - i64::from(self.config.brokers.min_node_id);
        if offset < 0 || offset >= i64::from(self.config.brokers.max_nodes) {
            return None;
        }
        u16::try_from(i64::from(base) + 1 + offset).ok()
    }

    /// Records a broker and makes sure a listener stands for it in every listener set;
    /// returns its gateway port in set `set` (the one the asking connection is on).
    pub fn ensure_node(self: &Arc<Self>, node_id: i32, host: &str, port: i32, set: usize) -> u16 {
        let upstream = format!("{host}:{port}");
        {
            let nodes = self.nodes.read().expect("node registry lock");
            if let Some(n) = nodes.get(&node_id) {
                if n.upstream == upstream && n.ports.iter().all(|p| p.listening) {
                    return n.ports[set].port;
                }
            }
        }
        let mut nodes = self.nodes.write().expect("node registry lock");
        let node = nodes.entry(node_id).or_insert_with(|| Node {
            upstream: upstream.clone(),
            ports: vec![NodePort::default(); self.listeners.len()],
        });
        if node.upstream != upstream {
            info!(node_id, old = %node.upstream, new = %upstream, "broker address changed");
            node.upstream = upstream;
        }
        for (index, slot) in node.ports.iter_mut().enumerate() {
            if slot.listening {
                continue;
            }
            let name = &self.listeners[index].name;
            let wanted = self.fixed_port(index, node_id);
            if wanted.is_none() && self.listeners[index].base_port != 0 {
                warn!(
                    node_id,
                    listener = %name,
                    min_node_id = self.config.brokers.min_node_id,
                    max_nodes = self.config.brokers.max_nodes,
                    "broker node id outside brokers.minNodeId..+maxNodes: serving it on a free port \
                     (only valid for a single gateway instance; widen the range)"
                );
            }
            // A port that cannot be opened now is retried the next time the broker is named.
            *slot = match self.open_listener(index, node_id, wanted.unwrap_or(0)) {
                Ok(port) => NodePort {
                    port,
                    listening: true,
                },
                Err(e) => {
                    error!(node_id, listener = %name, port = wanted, "cannot open broker listener: {e:#}");
                    NodePort {
                        port: wanted.unwrap_or(0),
                        listening: false,
                    }
                }
            };
        }
        node.ports[set].port
    }

    fn open_listener(self: &Arc<Self>, set: usize, node_id: i32, port: u16) -> Result<u16> {
        let addr = SocketAddr::new(self.listeners[set].bootstrap.ip(), port);
        let std_listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        std_listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std_listener)?;
        let local = listener.local_addr()?;
        info!(node_id, listener = %self.listeners[set].name, listen = %local, "serving broker");
        (self.spawn_accept)(self.clone(), listener, Route::Node(node_id), set);
        Ok(local.port())
    }

    /// Where node `node_id` is reachable upstream, if known.
    pub fn upstream_of(&self, node_id: i32) -> Option<String> {
        let nodes = self.nodes.read().expect("node registry lock");
        nodes.get(&node_id).map(|n| n.upstream.clone())
    }

    /// Bootstrap servers in the order to try for the next connection (rotating, so bootstrap
    /// connections spread over the servers).
    pub fn bootstrap_order(&self) -> Vec<String> {
        let servers = &self.config.upstream.bootstrap;
        let start = self.next_bootstrap.fetch_add(1, Ordering::Relaxed) % servers.len().max(1);
        servers[start..]
            .iter()
            .chain(&servers[..start])
            .cloned()
            .collect()
    }

    /// Asks the cluster for its brokers and registers each.
    pub async fn refresh_brokers(self: &Arc<Self>) -> Result<usize> {
        let brokers = upstream::discover(
            &self.connector,
            &self.config.upstream.bootstrap,
            self.config.request_timeout(),
        )
        .await?;
        for b in &brokers {
            // Opens the broker's port in every listener set; the default set's port is unused.
            self.ensure_node(b.node_id, &b.host, b.port, 0);
        }
        Ok(brokers.len())
    }

    /// Gateway ports of every known broker in listener set `set`.
    pub fn broker_ports(&self, set: usize) -> Vec<(i32, u16)> {
        let nodes = self.nodes.read().expect("node registry lock");
        let mut v: Vec<_> = nodes
            .iter()
            .filter(|(_, n)| n.ports[set].listening)
            .map(|(id, n)| (*id, n.ports[set].port))
            .collect();
        v.sort();
        v
    }
}

/// Lowest version of `key` clients may use: with ACLs on, Metadata needs v4+, the first
/// version whose auto-creation flag the gateway can turn off for a principal that may not
/// create topics.
pub(crate) fn version_floor(config: &Config, key: kafka_protocol::messages::ApiKey) -> i16 {
    if config.authorization.enabled && key == kafka_protocol::messages::ApiKey::Metadata {
        4
    } else {
        0
    }
}

/// An [`AddressBook`] over the shared registry for the connections of one listener set (the
/// index), used by response rewriting: brokers are named by that set's host and ports only.
pub(crate) struct SharedBook<'a>(pub &'a Arc<Shared>, pub usize);

impl AddressBook for SharedBook<'_> {
    fn gateway_endpoint(&self, node_id: i32, host: &str, port: i32) -> (StrBytes, i32) {
        let gw_port = self.0.ensure_node(node_id, host, port, self.1);
        (
            self.0.listener(self.1).advertised_host.clone(),
            i32::from(gw_port),
        )
    }

    fn version_floor(&self, key: kafka_protocol::messages::ApiKey) -> i16 {
        version_floor(&self.0.config, key)
    }

    fn answered_locally(&self, key: kafka_protocol::messages::ApiKey) -> bool {
        self.0.config.authorization.enabled && crate::acl_api::is_acl_api(Some(key))
    }

    fn version_ceiling(&self, key: kafka_protocol::messages::ApiKey) -> i16 {
        use kafka_protocol::messages::ApiKey;
        let concentration = || {
            self.0
                .vclusters
                .current()
                .tenants()
                .any(|t| t.has_concentration())
        };
        if matches!(key, ApiKey::Fetch | ApiKey::Produce) && concentration() {
            crate::concentrate::MAX_NAMED_FETCH_VERSION
                .min(crate::concentrate::MAX_NAMED_PRODUCE_VERSION)
        } else {
            i16::MAX
        }
    }

    fn learn_topic(&self, id: uuid::Uuid, name: &str) {
        let known = self
            .0
            .topic_names
            .read()
            .expect("topic names lock")
            .get(&id)
            .is_some_and(|n| n == name);
        if !known {
            self.0
                .topic_names
                .write()
                .expect("topic names lock")
                .insert(id, name.to_string());
        }
    }
}
