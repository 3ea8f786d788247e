//! The admin HTTP listener: liveness, readiness, Prometheus metrics, and the resource API
//! (`/api/v1/plugins`, `/api/v1/interceptors`, `/api/v1/service-accounts`, `/api/v1/groups`,
//! `/api/v1/acls`, `/api/v1/virtual-clusters`, `/api/v1/alias-topics`,
//! `/api/v1/concentration-rules`) with its OpenAPI document.
//!
//! `GET /health` answers as long as the process serves; `GET /ready` checks that brokers have
//! been learnt (their ports are open) and that a bootstrap server answers ApiVersions right
//! now (a load balancer should route only to ready instances); `GET /metrics` is the
//! Prometheus text exposition.
//!
//! Access ([`AdminAuth`]): with an admin token configured, every request under `/api/v1`
//! (reads too: interceptor configs and ACLs are sensitive) needs `Authorization: Bearer
//! <token>`; the read-only token is enough for `GET` and `HEAD` and is answered 403 on writes.
//! A missing or unknown token is answered 401 with `WWW-Authenticate: Bearer`. `/health`,
//! `/ready` and the OpenAPI document (no data in it) stay open; `/metrics` is open unless
//! `admin.protectMetrics`. With `admin.tls` the listener speaks HTTPS only.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::config::{Config, Secret};

use crate::registry::{ApiError, InterceptorSpec};
use crate::security::{AclSpec, GroupSpec, SecurityStore, ServiceAccountSpec};
use crate::shared::Shared;
use crate::upstream;
use crate::vcluster::{
    AliasTopicSpec, ConcentrationRuleSpec, VirtualClusterSpec, VirtualClusterStore,
};

/// Longest a readiness probe waits for the cluster.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let auth = Arc::new(AdminAuth::from_config(&shared.config));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/plugins", get(list_plugins))
        .route(
            "/api/v1/plugins/{name}",
            get(get_plugin).put(put_plugin).delete(delete_plugin),
        )
        .route("/api/v1/interceptors", get(list_interceptors))
        .route(
            "/api/v1/interceptors/{name}",
            get(get_interceptor)
                .put(put_interceptor)
                .delete(delete_interceptor),
        )
        .route("/api/v1/kms/keys", get(list_kms_keys))
        .route(
            "/api/v1/kms/keys/{id}",
            get(get_kms_key).delete(delete_kms_key),
        )
        .route("/api/v1/kms/keys/{id}/rotate", post(rotate_kms_key))
        .merge(security_routes(shared.security.clone()))
        .merge(vcluster_routes(shared.vclusters.clone()))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(sluice_wasm::MAX_PLUGIN_BYTES))
        .layer(middleware::from_fn_with_state(auth, require_token))
        .with_state(shared)
}

/// The TLS acceptor of the admin listener when `admin.tls` is set; a certificate or key that
/// does not load is a start-up error.
pub(crate) fn tls_acceptor(config: &Config) -> anyhow::Result<Option<TlsAcceptor>> {
    use anyhow::Context;
    let Some(tls) = &config.admin_options.tls else {
        return Ok(None);
    };
    let server = crate::tls::server_config(&crate::config::ServerTls {
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        client_auth: crate::config::ClientAuth::None,
        client_ca_file: None,
        principal_mapping_rules: None,
    })
    .context("admin.tls")?;
    let mut server = (*server).clone();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// Serves the admin API on `listener`, over TLS when `tls` is given.
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    let stop = shared.force_close.clone();
    let drained = shared.shutdown.clone();
    let app = router(shared);
    // The admin API stays up while connections drain so probes can watch the shutdown.
    let shutdown = async move {
        drained.cancelled().await;
        stop.cancelled().await;
    };
    let result = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(acceptor) => {
            axum::serve(TlsListener::new(listener, acceptor), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    if let Err(e) = result {
        warn!("admin listener failed: {e}");
    }
}

/// Longest a client may take to complete the TLS handshake with the admin listener.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP listener whose connections are TLS: handshakes run concurrently (a slow client does
/// not hold up the others) and failed ones are dropped.
pub(crate) struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, std::net::SocketAddr)>>,
}

impl TlsListener {
    /// Accepts TLS connections on `tcp`.
    pub(crate) fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> TlsListener {
        TlsListener {
            tcp,
            acceptor,
            handshakes: JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => Some((tls, peer)),
                                Ok(Err(e)) => {
                                    debug!(%peer, "admin TLS handshake failed: {e}");
                                    None
                                }
                                Err(_) => {
                                    debug!(%peer, "admin TLS handshake timed out");
                                    None
                                }
                            }
                        });
                    }
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        warn!("admin listener accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let status = if shared.shutdown.is_cancelled() {
        "draining"
    } else {
        "ok"
    };
    Json(json!({ "status": status })).into_response()
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if shared.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
            .into_response();
    }
    if shared.broker_ports(0).is_empty() {
        // Clients would be told of no broker to connect to: not ready until discovery has
        // learnt at least one (and opened its port).
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "error": "no broker learnt yet",
                "details": [],
            })),
        )
            .into_response();
    }
    let timeout = READY_TIMEOUT.min(shared.config.request_timeout());
    match upstream::probe(
        &shared.connector,
        &shared.config.upstream.bootstrap,
        timeout,
    )
    .await
    {
        Ok(broker) => Json(json!({ "status": "ready", "broker": broker })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "error": "no bootstrap server answered",
                "details": [format!("{e:#}")],
            })),
        )
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not found", "details": [] })),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            warn!(status = self.status, error = %self.error, details = ?self.details, "admin API error");
        }
        (
            status,
            Json(json!({ "error": self.error, "details": self.details })),
        )
            .into_response()
    }
}

/// Who may do what on the admin listener.
#[derive(Debug, Clone, Default)]
pub(crate) struct AdminAuth {
    /// Reads and writes. None: the whole API is open.
    admin: Option<Secret>,
    /// Reads only.
    read: Option<Secret>,
    /// `/metrics` needs a token too.
    protect_metrics: bool,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    /// Nothing: probes and the OpenAPI document.
    Open,
    /// Either token.
    Read,
    /// The admin token.
    Write,
}

const REALM: &str = "Bearer realm=\"sluice-admin\"";

impl AdminAuth {
    /// The tokens and switches of `config`.
    pub(crate) fn from_config(config: &Config) -> AdminAuth {
        AdminAuth {
            admin: config.admin_token.clone(),
            read: config.admin_read_token.clone(),
            protect_metrics: config.admin_options.protect_metrics,
        }
    }

    /// What `method` on `path` needs.
    fn needs(&self, method: &Method, path: &str) -> Access {
        match path {
            "/health" | "/ready" | "/api/v1/openapi.json" => Access::Open,
            "/metrics" if !self.protect_metrics => Access::Open,
            _ if matches!(*method, Method::GET | Method::HEAD) => Access::Read,
            _ => Access::Write,
        }
    }

    /// What `token` grants. Both tokens are always compared, each in constant time.
    fn grants(&self, token: &str) -> Option<Access> {
        let admin = self.admin.as_ref().is_some_and(|s| s.matches(token));
        let read = self.read.as_ref().is_some_and(|s| s.matches(token));
        if admin {
            Some(Access::Write)
        } else if read {
            Some(Access::Read)
        } else {
            None
        }
    }
}

/// The bearer token of `Authorization` (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A 401 or 403 with the `WWW-Authenticate` challenge of RFC 6750.
fn refuse(status: u16, error: &str, challenge: String) -> Response {
    let mut resp = ApiError::new(status, error, vec![]).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// Checks the bearer token when one is configured: see [`AdminAuth`].
async fn require_token(State(auth): State<Arc<AdminAuth>>, req: Request, next: Next) -> Response {
    if auth.admin.is_none() {
        return next.run(req).await;
    }
    let needs = auth.needs(req.method(), req.uri().path());
    if needs == Access::Open {
        return next.run(req).await;
    }
    let granted = match bearer(req.headers()) {
        None => {
            return refuse(401, "a bearer token is required", REALM.to_string());
        }
        Some(token) => auth.grants(token),
    };
    match granted {
        None => {
            warn!(method = %req.method(), path = req.uri().path(), "admin API request with an unknown token refused");
            refuse(
                401,
                "invalid bearer token",
                format!("{REALM}, error=\"invalid_token\""),
            )
        }
        Some(granted) if granted < needs => refuse(
            403,
            "the read-only token cannot change resources",
            format!("{REALM}, error=\"insufficient_scope\""),
        ),
        Some(_) => next.run(req).await,
    }
}

/// Runs blocking registry work (compiling, instantiating) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::new(500, "internal error", vec![e.to_string()])))
}

fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

async fn list_plugins(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({ "items": shared.registry.list_plugins() })).into_response()
}

async fn get_plugin(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match shared.registry.get_plugin(&name) {
        Ok(p) => Json(p).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn put_plugin(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        if ct != "application/wasm" && ct != "application/octet-stream" {
            return ApiError::new(
                415,
                "plugins are uploaded as raw component bytes",
                vec![format!("Content-Type `{ct}`; use application/wasm")],
            )
            .into_response();
        }
    }
    if body.is_empty() {
        return ApiError::new(400, "empty body: send the component bytes", vec![]).into_response();
    }
    let registry = shared.registry.clone();
    match blocking(move || registry.put_plugin(&name, &body)).await {
        Ok((info, created)) => (created_or_ok(created), Json(info)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn delete_plugin(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match shared.registry.delete_plugin(&name) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_kms_keys(State(shared): State<Arc<Shared>>) -> Response {
    let kms = shared.registry.kms();
    Json(json!({ "provider": kms.provider_kind(), "items": kms.keys() })).into_response()
}

async fn get_kms_key(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared
        .registry
        .kms()
        .keys()
        .into_iter()
        .find(|k| k.id == id)
    {
        Some(k) => Json(k).into_response(),
        None => ApiError::new(404, format!("no KMS key `{id}`"), vec![]).into_response(),
    }
}

/// A KMS call that may wait on the key provider (a network round trip), off the async workers.
async fn kms_call<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&sluice_wasm::kms::Kms) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let kms = shared.registry.kms().clone();
    tokio::task::spawn_blocking(move || f(&kms))
        .await
        .map_err(|e| ApiError::new(500, "KMS call failed", vec![e.to_string()]))
}

fn provider_error(id: &str, e: sluice_wasm::kms::ProviderError) -> ApiError {
    use sluice_wasm::kms::ProviderError as E;
    let status = match &e {
        E::UnknownKey(_) => 404,
        E::Unavailable(_) => 503,
        E::Refused(_) => 409,
    };
    ApiError::new(status, format!("KMS key `{id}`: {e}"), vec![])
}

/// Deletes a key id for good (crypto-shredding): every record sealed under it becomes
/// unreadable, for every reader, at once and after restarts.
async fn delete_kms_key(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    let result = match kms_call(&shared, move |kms| kms.shred(&key)).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match result {
        Ok(Some(report)) => {
            info!(key = %id, data_keys = report.data_keys, "KMS key deleted (crypto-shredded)");
            Json(report).into_response()
        }
        Ok(None) => ApiError::new(404, format!("no KMS key `{id}`"), vec![]).into_response(),
        Err(e) => provider_error(&id, e).into_response(),
    }
}

/// Makes a new version of a built-in key wrap data keys from now on.
async fn rotate_kms_key(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    let result = match kms_call(&shared, move |kms| kms.rotate(&key)).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match result {
        Ok(()) => {
            info!(key = %id, "KMS key rotated");
            let kms = shared.registry.kms();
            match kms.keys().into_iter().find(|k| k.id == id) {
                Some(k) => Json(k).into_response(),
                None => StatusCode::NO_CONTENT.into_response(),
            }
        }
        Err(e) => provider_error(&id, e).into_response(),
    }
}

async fn list_interceptors(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({ "items": shared.registry.list_interceptors() })).into_response()
}

async fn get_interceptor(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match shared.registry.get_interceptor(&name) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn put_interceptor(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    // The spec may come bare or wrapped as {"spec": {...}} (the shape GET returns).
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return ApiError::new(400, "body is not valid JSON", vec![e.to_string()])
                .into_response()
        }
    };
    let value = match value.get("spec") {
        Some(spec)
            if value
                .as_object()
                .is_some_and(|o| o.keys().all(|k| k == "spec" || k == "name")) =>
        {
            spec.clone()
        }
        _ => value,
    };
    let spec: InterceptorSpec = match serde_json::from_value(value) {
        Ok(s) => s,
        Err(e) => {
            return ApiError::new(400, "invalid interceptor spec", vec![e.to_string()])
                .into_response()
        }
    };
    let registry = shared.registry.clone();
    match blocking(move || registry.put_interceptor(&name, spec)).await {
        Ok((doc, created)) => (created_or_ok(created), Json(doc)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn delete_interceptor(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Response {
    match shared.registry.delete_interceptor(&name) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// One kind of named JSON resource under `/api/v1`: the store holding it and the store's
/// methods that list, show, create-or-replace and delete it. Everything HTTP about these
/// kinds (status codes, JSON shapes, body parsing) is the same, so it lives in one set of
/// generic handlers.
trait Resource: 'static {
    /// The store holding the resources, shared as the routes' state.
    type Store: Send + Sync + 'static;
    /// What a PUT body deserializes to.
    type Spec: DeserializeOwned + Send + 'static;
    /// The kind in words (`"service account"`), for error messages.
    const KIND: &'static str;
    /// Every resource of the kind, each as GET shows it.
    fn list(store: &Self::Store) -> Vec<Value>;
    /// One resource as GET shows it.
    fn get(store: &Self::Store, name: &str) -> Result<Value, ApiError>;
    /// Creates (`true`) or replaces (`false`) a resource. May block: see [`put_resource`].
    fn put(store: &Self::Store, name: &str, spec: Self::Spec) -> Result<(Value, bool), ApiError>;
    /// Deletes a resource.
    fn delete(store: &Self::Store, name: &str) -> Result<(), ApiError>;
}

/// Declares a unit type per kind implementing [`Resource`] with the named store methods.
macro_rules! resources {
    ($($(#[$doc:meta])* $ty:ident($store:ty, $spec:ty, $kind:literal):
        $list:ident, $get:ident, $put:ident, $delete:ident;)*) => {$(
        $(#[$doc])*
        struct $ty;

        impl Resource for $ty {
            type Store = $store;
            type Spec = $spec;
            const KIND: &'static str = $kind;
            fn list(store: &$store) -> Vec<Value> {
                store.$list()
            }
            fn get(store: &$store, name: &str) -> Result<Value, ApiError> {
                store.$get(name)
            }
            fn put(store: &$store, name: &str, spec: $spec) -> Result<(Value, bool), ApiError> {
                store.$put(name, spec)
            }
            fn delete(store: &$store, name: &str) -> Result<(), ApiError> {
                store.$delete(name)
            }
        }
    )*};
}

resources! {
    /// `/api/v1/service-accounts`.
    ServiceAccounts(SecurityStore, ServiceAccountSpec, "service account"):
        list_service_accounts, get_service_account, put_service_account, delete_service_account;
    /// `/api/v1/groups`.
    Groups(SecurityStore, GroupSpec, "group"): list_groups, get_group, put_group, delete_group;
    /// `/api/v1/acls`.
    Acls(SecurityStore, AclSpec, "acl"): list_acls, get_acl, put_acl, delete_acl;
    /// `/api/v1/virtual-clusters`.
    VirtualClusters(VirtualClusterStore, VirtualClusterSpec, "virtual cluster"):
        list_virtual_clusters, get_virtual_cluster, put_virtual_cluster, delete_virtual_cluster;
    /// `/api/v1/alias-topics`.
    AliasTopics(VirtualClusterStore, AliasTopicSpec, "alias topic"):
        list_alias_topics, get_alias_topic, put_alias_topic, delete_alias_topic;
    /// `/api/v1/concentration-rules`.
    ConcentrationRules(VirtualClusterStore, ConcentrationRuleSpec, "concentration rule"):
        list_concentration_rules, get_concentration_rule, put_concentration_rule,
        delete_concentration_rule;
}

/// `GET path` lists the kind; `GET`, `PUT` and `DELETE path/{name}` work on one resource.
fn resource_routes<R: Resource>(path: &str) -> Router<Arc<R::Store>> {
    Router::new().route(path, get(list_resources::<R>)).route(
        &format!("{path}/{{name}}"),
        get(get_resource::<R>)
            .put(put_resource::<R>)
            .delete(delete_resource::<R>),
    )
}

/// Largest security resource document accepted (a group of 10000 long DNs fits).
const MAX_SECURITY_BODY: usize = 4 << 20;

/// Service accounts, groups and ACLs; their own state so tests can serve them alone.
fn security_routes<S: Clone + Send + Sync + 'static>(store: Arc<SecurityStore>) -> Router<S> {
    Router::new()
        .merge(resource_routes::<ServiceAccounts>(
            "/api/v1/service-accounts",
        ))
        .merge(resource_routes::<Groups>("/api/v1/groups"))
        .merge(resource_routes::<Acls>("/api/v1/acls"))
        .layer(DefaultBodyLimit::max(MAX_SECURITY_BODY))
        .with_state(store)
}

/// Largest tenancy resource document accepted (a vcluster listing 10000 long principals fits).
const MAX_TENANCY_BODY: usize = 4 << 20;

/// Virtual clusters, alias topics and concentration rules; their own state so tests can serve
/// them alone.
fn vcluster_routes<S: Clone + Send + Sync + 'static>(store: Arc<VirtualClusterStore>) -> Router<S> {
    Router::new()
        .merge(resource_routes::<VirtualClusters>(
            "/api/v1/virtual-clusters",
        ))
        .merge(resource_routes::<AliasTopics>("/api/v1/alias-topics"))
        .merge(resource_routes::<ConcentrationRules>(
            "/api/v1/concentration-rules",
        ))
        .layer(DefaultBodyLimit::max(MAX_TENANCY_BODY))
        .with_state(store)
}

async fn list_resources<R: Resource>(State(store): State<Arc<R::Store>>) -> Response {
    Json(json!({ "items": R::list(&store) })).into_response()
}

async fn get_resource<R: Resource>(
    State(store): State<Arc<R::Store>>,
    Path(name): Path<String>,
) -> Response {
    match R::get(&store, &name) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn put_resource<R: Resource>(
    State(store): State<Arc<R::Store>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let spec: R::Spec = match parse_spec(R::KIND, &headers, body) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    // Puts derive SCRAM credentials (PBKDF2), compile patterns, and write and fsync the state
    // store: off the async workers.
    match blocking(move || R::put(&store, &name, spec)).await {
        Ok((v, created)) => (created_or_ok(created), Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn delete_resource<R: Resource>(
    State(store): State<Arc<R::Store>>,
    Path(name): Path<String>,
) -> Response {
    match R::delete(&store, &name) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Parses a JSON resource spec, bare or wrapped as `{"spec": {...}}` (the shape GET returns).
///
/// Serde's messages for these specs name fields and types, never values, so a mistyped
/// password cannot echo back in an error.
fn parse_spec<T: DeserializeOwned>(
    what: &str,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        // curl's `-d` labels bodies as form data; the body is still read as JSON.
        let json = essence == "application/json"
            || essence.ends_with("+json")
            || essence == "application/x-www-form-urlencoded";
        if !json {
            return Err(ApiError::new(
                415,
                format!("{what}s are sent as JSON"),
                vec![format!("Content-Type `{ct}`; use application/json")],
            ));
        }
    }
    let body = body.map_err(|e| {
        let status = e.status().as_u16();
        ApiError::new(status, "cannot read the request body", vec![e.body_text()])
    })?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(400, "body is not valid JSON", vec![e.to_string()]))?;
    let value = match value.get("spec") {
        Some(spec)
            if value
                .as_object()
                .is_some_and(|o| o.keys().all(|k| k == "spec" || k == "name")) =>
        {
            spec.clone()
        }
        _ => value,
    };
    serde_json::from_value(value)
        .map_err(|e| ApiError::new(400, format!("invalid {what} spec"), vec![e.to_string()]))
}

async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_client::AdminClient;
    use crate::state::FileStore;

    /// Serves the security routes alone on a free port.
    async fn serve_security(dir: &std::path::Path) -> (String, Arc<SecurityStore>) {
        let store = Arc::new(SecurityStore::new(Arc::new(FileStore::open(dir).unwrap())));
        store.restore().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = security_routes::<()>(store.clone()).fallback(not_found);
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), store)
    }

    fn raw_put(
        base: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent
            .put(&format!("{base}/api/v1/{path}"))
            .content_type(content_type)
            .send(body)
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn security_resources_over_http() {
        let dir = crate::state::test_dir("admin-sec");
        let (base, store) = serve_security(&dir).await;
        let password = "s3cret-over-http";
        tokio::task::spawn_blocking(move || {
            let c = AdminClient::new(&base, None);
            let alice = json!({"password": password, "groups": ["ops"]});
            assert!(
                c.put_json("service-accounts/alice", &alice).unwrap(),
                "created"
            );
            assert!(
                !c.put_json("service-accounts/alice", &alice).unwrap(),
                "replaced"
            );
            let shown = c.get("service-accounts/alice").unwrap();
            assert_eq!(
                shown["spec"]["mechanisms"],
                json!(["SCRAM-SHA-256", "SCRAM-SHA-512"])
            );
            assert_eq!(shown["spec"]["iterations"], 4096);
            let listed = c.get("service-accounts").unwrap().to_string();
            for secret in [password, "salt", "storedKey", "serverKey"] {
                assert!(!listed.contains(secret) && !shown.to_string().contains(secret));
            }
            // The shape GET returns is accepted back.
            let group = json!({"name": "ops", "spec": {"members": ["CN=app1,O=acme"]}});
            assert!(c.put_json("groups/ops", &group).unwrap());
            let acl = json!({"group": "ops", "resourceType": "topic", "patternType": "prefixed",
                "name": "ops.", "operations": ["read"]});
            assert!(c.put_json("acls/ops-read", &acl).unwrap());
            assert_eq!(
                c.get("acls").unwrap()["items"][0]["spec"]["permission"],
                "allow"
            );
            assert_eq!(
                c.get("groups/ops").unwrap()["spec"]["members"],
                json!(["CN=app1,O=acme"])
            );
            // Errors: JSON with every detail, and never the password.
            let e = c
                .put_json(
                    "acls/bad",
                    &json!({"principal": "a", "group": "b", "resourceType": "cluster",
                        "name": "x", "operations": ["read"]}),
                )
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("HTTP 400") && e.contains("invalid acl spec"),
                "{e}"
            );
            assert_eq!(e.matches("\n  - ").count(), 3, "{e}");
            let e = c
                .put_json(
                    "service-accounts/bob",
                    &json!({"password": password, "pasword": "x"}),
                )
                .unwrap_err()
                .to_string();
            assert!(e.contains("HTTP 400") && e.contains("unknown field"), "{e}");
            assert!(!e.contains(password), "{e}");
            let e = c
                .put_json("service-accounts/bob", &json!({"password": 123456789}))
                .unwrap_err()
                .to_string();
            assert!(e.contains("HTTP 400") && !e.contains("123456789"), "{e}");
            let e = c
                .put_json("groups/Bad", &json!({}))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("HTTP 400") && e.contains("invalid group name"),
                "{e}"
            );
            for path in ["acls/none", "groups/none", "service-accounts/none"] {
                let e = c.delete(path).unwrap_err().to_string();
                assert!(e.contains("HTTP 404"), "{e}");
                let e = c.get(path).unwrap_err().to_string();
                assert!(e.contains("HTTP 404"), "{e}");
            }
            let (status, body) = raw_put(&base, "groups/g", "application/wasm", b"{}");
            assert_eq!(status, 415);
            assert!(
                body["error"].is_string() && body["details"].is_array(),
                "{body}"
            );
            let (status, body) = raw_put(&base, "groups/g", "application/json", b"{not json");
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("body is not valid JSON"))
            );
            c.delete("service-accounts/alice").unwrap();
        })
        .await
        .unwrap();
        let snapshot = store.snapshot();
        assert!(!snapshot.account_exists("alice"));
        assert_eq!(snapshot.acl_count(), 1);
        assert!(snapshot.permits(
            "CN=app1,O=acme",
            &[],
            &[],
            crate::acl::ResourceType::Topic,
            "ops.logs",
            crate::acl::Operation::Describe
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Serves the tenancy routes alone on a free port.
    async fn serve_vclusters(dir: &std::path::Path) -> (String, Arc<VirtualClusterStore>) {
        let store = Arc::new(VirtualClusterStore::new(Arc::new(
            FileStore::open(dir).unwrap(),
        )));
        store.restore().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = vcluster_routes::<()>(store.clone()).fallback(not_found);
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn virtual_clusters_over_http() {
        let dir = crate::state::test_dir("admin-vc");
        let (base, store) = serve_vclusters(&dir).await;
        tokio::task::spawn_blocking(move || {
            let c = AdminClient::new(&base, None);
            let a = json!({"serviceAccounts": ["alice"], "sniHosts": ["a.kafka.example.com"],
                "limits": {"maxConnections": 10}});
            assert!(
                c.put_json("virtual-clusters/tenant-a", &a).unwrap(),
                "created"
            );
            assert!(
                !c.put_json("virtual-clusters/tenant-a", &a).unwrap(),
                "replaced"
            );
            let shown = c.get("virtual-clusters/tenant-a").unwrap();
            assert_eq!(
                shown,
                json!({"name": "tenant-a", "spec": {"prefix": "tenant-a.", "passthrough": false,
                    "serviceAccounts": ["alice"], "sniHosts": ["a.kafka.example.com"],
                    "limits": {"maxTopics": null, "maxPartitions": null, "maxConnections": 10}}})
            );
            // The shape GET returns is accepted back.
            assert!(!c.put_json("virtual-clusters/tenant-a", &shown).unwrap());
            assert!(c
                .put_json("virtual-clusters/ops", &json!({"passthrough": true}))
                .unwrap());
            assert!(c
                .put_json(
                    "alias-topics/a-orders",
                    &json!({"vcluster": "tenant-a", "logicalTopic": "orders",
                        "physicalTopic": "legacy.orders"}),
                )
                .unwrap());
            assert!(c
                .put_json(
                    "concentration-rules/a-events",
                    &json!({"vcluster": "tenant-a", "logicalTopicPattern": "events-.*",
                        "physicalTopic": "tenant-a.concentrated"}),
                )
                .unwrap());
            assert_eq!(
                c.get("virtual-clusters").unwrap()["items"]
                    .as_array()
                    .unwrap()
                    .len(),
                2
            );
            assert_eq!(
                c.get("alias-topics").unwrap()["items"][0]["spec"]["physicalTopic"],
                "legacy.orders"
            );
            assert_eq!(
                c.get("concentration-rules/a-events").unwrap()["spec"]["logicalTopicPattern"],
                "events-.*"
            );
            // 409 naming the other vcluster; 400 with every detail.
            let e = c
                .put_json(
                    "virtual-clusters/tenant-b",
                    &json!({"prefix": "tenant-a.b.", "serviceAccounts": ["alice"]}),
                )
                .unwrap_err()
                .to_string();
            assert!(e.contains("HTTP 409") && e.contains("`tenant-a`"), "{e}");
            assert_eq!(e.matches("\n  - ").count(), 2, "{e}");
            let e = c
                .put_json(
                    "concentration-rules/bad",
                    &json!({"vcluster": "ghost", "logicalTopicPattern": "(",
                        "physicalTopic": "a/b"}),
                )
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("HTTP 400") && e.contains("invalid concentration rule spec"),
                "{e}"
            );
            assert_eq!(e.matches("\n  - ").count(), 3, "{e}");
            let e = c
                .put_json(
                    "alias-topics/bad",
                    &json!({"vcluster": "tenant-a", "logicalTopic": "x", "physical": "y"}),
                )
                .unwrap_err()
                .to_string();
            assert!(e.contains("HTTP 400") && e.contains("unknown field"), "{e}");
            let e = c
                .put_json("virtual-clusters/Bad", &json!({}))
                .unwrap_err()
                .to_string();
            assert!(e.contains("invalid virtual cluster name"), "{e}");
            let e = c
                .delete("virtual-clusters/tenant-a")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("HTTP 409") && e.contains("alias topic `a-orders`"),
                "{e}"
            );
            for path in [
                "virtual-clusters/none",
                "alias-topics/none",
                "concentration-rules/none",
            ] {
                assert!(c.get(path).unwrap_err().to_string().contains("HTTP 404"));
                assert!(c.delete(path).unwrap_err().to_string().contains("HTTP 404"));
            }
            let (status, body) = raw_put(&base, "virtual-clusters/v", "text/plain", b"{}");
            assert_eq!(status, 415);
            assert!(body["error"].is_string() && body["details"].is_array());
            c.delete("concentration-rules/a-events").unwrap();
            c.delete("virtual-clusters/ops").unwrap();
        })
        .await
        .unwrap();
        let s = store.snapshot();
        let a = s.for_sni("A.kafka.example.com").unwrap();
        assert_eq!(a.physical_topic("orders"), "legacy.orders");
        assert_eq!(a.physical_topic("events-1"), "tenant-a.events-1");
        assert!(s.get("ops").is_none());
        assert_eq!(s.for_principal("alice", None).unwrap().name, "tenant-a");
        let _ = std::fs::remove_dir_all(&dir);
    }

    const ADMIN: &str = "admin-token-0123456789";
    const READER: &str = "reader-token-0123456789";

    /// The security routes behind the token check, with stand-ins for the probes, the
    /// metrics and the OpenAPI document; over TLS when `tls` is given.
    async fn serve_guarded(
        dir: &std::path::Path,
        auth: AdminAuth,
        tls: Option<TlsAcceptor>,
    ) -> String {
        let store = Arc::new(SecurityStore::new(Arc::new(FileStore::open(dir).unwrap())));
        store.restore().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = security_routes::<()>(store)
            .route("/health", get(|| async { "ok" }))
            .route("/ready", get(|| async { "ok" }))
            .route("/metrics", get(|| async { "sluice_up 1" }))
            .route("/api/v1/openapi.json", get(openapi))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(
                Arc::new(auth),
                require_token,
            ));
        match tls {
            None => {
                tokio::spawn(async move { axum::serve(listener, app).await });
                format!("http://{addr}")
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    axum::serve(TlsListener::new(listener, acceptor), app).await
                });
                format!("https://{addr}")
            }
        }
    }

    fn tokens(protect_metrics: bool) -> AdminAuth {
        AdminAuth {
            admin: Some(Secret::new(ADMIN)),
            read: Some(Secret::new(READER)),
            protect_metrics,
        }
    }

    /// `method path` with `token`: the status and the `WWW-Authenticate` header.
    fn call(base: &str, method: &str, path: &str, token: Option<&str>) -> (u16, Option<String>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{base}{path}");
        let auth = token.map(|t| format!("Bearer {t}"));
        let resp = match method {
            "GET" => {
                let mut r = agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            "DELETE" => {
                let mut r = agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            _ => {
                let mut r = agent.put(&url).content_type("application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(br#"{"members": ["alice"]}"#.as_slice())
            }
        }
        .unwrap();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        (resp.status().as_u16(), challenge)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_need_a_token_and_the_read_only_token_cannot_write() {
        let dir = crate::state::test_dir("admin-auth");
        let base = serve_guarded(&dir, tokens(false), None).await;
        tokio::task::spawn_blocking(move || {
            // Reads of resources need a token: none, or an unknown one, is a 401 challenge.
            for path in [
                "/api/v1/service-accounts",
                "/api/v1/acls",
                "/api/v1/groups/x",
            ] {
                let (status, challenge) = call(&base, "GET", path, None);
                assert_eq!(status, 401, "{path}");
                assert_eq!(challenge.as_deref(), Some(REALM), "{path}");
                let (status, challenge) = call(&base, "GET", path, Some("wrong-token-0123456789"));
                assert_eq!(status, 401, "{path}");
                assert!(challenge.unwrap().contains("invalid_token"));
            }
            // Unknown paths are no way to probe without a token.
            assert_eq!(call(&base, "GET", "/api/v1/nothing", None).0, 401);
            // Writes: the admin token; the read-only token is a 403; nothing or junk a 401.
            assert_eq!(call(&base, "PUT", "/api/v1/groups/ops", None).0, 401);
            assert_eq!(
                call(
                    &base,
                    "PUT",
                    "/api/v1/groups/ops",
                    Some(ADMIN.trim_end_matches('9'))
                )
                .0,
                401
            );
            let (status, challenge) = call(&base, "PUT", "/api/v1/groups/ops", Some(READER));
            assert_eq!(status, 403);
            assert!(challenge.unwrap().contains("insufficient_scope"));
            assert_eq!(
                call(&base, "DELETE", "/api/v1/groups/ops", Some(READER)).0,
                403
            );
            assert_eq!(call(&base, "PUT", "/api/v1/groups/ops", Some(ADMIN)).0, 201);
            // Either token reads.
            assert_eq!(
                call(&base, "GET", "/api/v1/groups/ops", Some(READER)).0,
                200
            );
            assert_eq!(call(&base, "GET", "/api/v1/groups", Some(ADMIN)).0, 200);
            assert_eq!(
                call(&base, "GET", "/api/v1/groups/none", Some(READER)).0,
                404
            );
            // The error body keeps the API's shape.
            let c = AdminClient::new(&base, None);
            let e = c.get("acls").unwrap_err().to_string();
            assert!(
                e.contains("HTTP 401") && e.contains("bearer token is required"),
                "{e}"
            );
            let c = AdminClient::new(&base, Some(READER.into()));
            let e = c.delete("groups/ops").unwrap_err().to_string();
            assert!(e.contains("HTTP 403") && e.contains("read-only"), "{e}");
            // Probes, the metrics (by default) and the OpenAPI document stay open.
            for path in ["/health", "/ready", "/metrics", "/api/v1/openapi.json"] {
                assert_eq!(call(&base, "GET", path, None).0, 200, "{path}");
            }
            AdminClient::new(&base, Some(ADMIN.into()))
                .delete("groups/ops")
                .unwrap();
        })
        .await
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn protected_metrics_need_either_token() {
        let dir = crate::state::test_dir("admin-metrics");
        let base = serve_guarded(&dir, tokens(true), None).await;
        tokio::task::spawn_blocking(move || {
            assert_eq!(call(&base, "GET", "/metrics", None).0, 401);
            assert_eq!(
                call(&base, "GET", "/metrics", Some("nope-nope-nope-nope")).0,
                401
            );
            assert_eq!(call(&base, "GET", "/metrics", Some(READER)).0, 200);
            assert_eq!(call(&base, "GET", "/metrics", Some(ADMIN)).0, 200);
            assert_eq!(call(&base, "GET", "/health", None).0, 200);
            assert_eq!(call(&base, "GET", "/ready", None).0, 200);
        })
        .await
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_token_the_api_is_open() {
        let dir = crate::state::test_dir("admin-open");
        let base = serve_guarded(&dir, AdminAuth::default(), None).await;
        tokio::task::spawn_blocking(move || {
            assert_eq!(call(&base, "PUT", "/api/v1/groups/ops", None).0, 201);
            assert_eq!(call(&base, "GET", "/api/v1/groups/ops", None).0, 200);
            assert_eq!(call(&base, "GET", "/metrics", None).0, 200);
        })
        .await
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bearer_scheme_and_token() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        let auth = tokens(false);
        assert_eq!(auth.grants(ADMIN), Some(Access::Write));
        assert_eq!(auth.grants(READER), Some(Access::Read));
        assert_eq!(auth.grants(""), None);
        assert_eq!(
            auth.needs(&Method::GET, "/api/v1/openapi.json"),
            Access::Open
        );
        assert_eq!(auth.needs(&Method::HEAD, "/api/v1/acls"), Access::Read);
        assert_eq!(auth.needs(&Method::POST, "/health"), Access::Open);
        assert_eq!(auth.needs(&Method::OPTIONS, "/api/v1/acls"), Access::Write);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_https_to_a_client_trusting_its_ca() {
        let dir = crate::state::test_dir("admin-tls");
        std::fs::create_dir_all(&dir).unwrap();
        // A CA and a localhost certificate it signs.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sluice admin test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let (ca_file, cert_file, key_file) = (
            dir.join("ca.pem"),
            dir.join("admin.pem"),
            dir.join("admin.key"),
        );
        std::fs::write(&ca_file, ca.pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let mut config = Config::default();
        config.admin_options.tls = Some(crate::config::AdminTls {
            cert_file,
            key_file,
        });
        let acceptor = tls_acceptor(&config).unwrap().expect("TLS configured");
        let base = serve_guarded(&dir.join("state"), tokens(false), Some(acceptor)).await;
        tokio::task::spawn_blocking(move || {
            let c = AdminClient::with_tls(&base, Some(ADMIN.into()), Some(&ca_file)).unwrap();
            assert!(c
                .put_json("groups/ops", &json!({"members": ["alice"]}))
                .unwrap());
            let reader = AdminClient::with_tls(&base, Some(READER.into()), Some(&ca_file)).unwrap();
            assert_eq!(
                reader.get("groups/ops").unwrap()["spec"]["members"],
                json!(["alice"])
            );
            // A client that does not trust the CA gets no answer.
            let e = AdminClient::with_tls(&base, Some(ADMIN.into()), None)
                .unwrap()
                .get("groups")
                .unwrap_err();
            assert!(format!("{e:#}").contains("cannot reach"), "{e:#}");
            // Plain HTTP on the TLS port gets no answer either.
            let plain = base.replace("https://", "http://");
            assert!(AdminClient::new(&plain, Some(ADMIN.into()))
                .get("groups")
                .is_err());
        })
        .await
        .unwrap();
        // A key that does not load is a start-up error naming the setting.
        config.admin_options.tls.as_mut().unwrap().key_file = dir.join("missing.key");
        let e = tls_acceptor(&config).err().expect("missing key");
        assert!(format!("{e:#}").contains("admin.tls"), "{e:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn openapi_documents_the_security_resources() {
        let doc = crate::openapi::document();
        for path in [
            "/api/v1/service-accounts",
            "/api/v1/service-accounts/{name}",
            "/api/v1/groups/{name}",
            "/api/v1/acls/{name}",
            "/api/v1/virtual-clusters",
            "/api/v1/virtual-clusters/{name}",
            "/api/v1/alias-topics/{name}",
            "/api/v1/concentration-rules/{name}",
        ] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
        for schema in [
            "ServiceAccountSpec",
            "ServiceAccount",
            "GroupSpec",
            "Group",
            "AclSpec",
            "Acl",
            "VirtualClusterSpec",
            "VirtualCluster",
            "AliasTopicSpec",
            "AliasTopic",
            "ConcentrationRuleSpec",
            "ConcentrationRule",
        ] {
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
        }
        // Security: reads need a token (401 documented), the probes and the document do not.
        assert_eq!(doc["security"], json!([{"bearer": []}]));
        for path in ["/health", "/ready", "/api/v1/openapi.json"] {
            assert_eq!(doc["paths"][path]["get"]["security"], json!([]), "{path}");
        }
        for path in [
            "/api/v1/acls",
            "/api/v1/interceptors/{name}",
            "/api/v1/plugins",
        ] {
            assert!(
                doc["paths"][path]["get"]["responses"]["401"].is_object(),
                "{path}"
            );
        }
        // Every schema reference resolves.
        let text = doc.to_string();
        for r in text.split("\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }
}
