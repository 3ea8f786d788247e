//! The admin HTTP listener: liveness, readiness, Prometheus metrics, and the resource API
//! (`/api/v1/plugins`, `/api/v1/interceptors`, `/api/v1/service-accounts`, `/api/v1/groups`,
//! `/api/v1/acls`, `/api/v1/virtual-clusters`, `/api/v1/alias-topics`,
//! `/api/v1/concentration-rules`) with its OpenAPI document.
//!
//! `GET /health` answers as long as the process serves; `GET /ready` checks that brokers have
//! been learnt (their ports are open) and that a bootstrap server answers ApiVersions right
//! now (a load balancer should route only to ready instances); `GET /metrics` is the
//! Prometheus text exposition.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::warn;

use crate::interceptors::{ApiError, InterceptorSpec};
use crate::security::{AclSpec, GroupSpec, SecurityStore, ServiceAccountSpec};
use crate::server::Shared;
use crate::upstream;
use crate::vcluster::{
    AliasTopicSpec, ConcentrationRuleSpec, VirtualClusterSpec, VirtualClusterStore,
};

/// Longest a readiness probe waits for the cluster.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn router(shared: Arc<Shared>) -> Router {
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
        .merge(security_routes(shared.security.clone()))
        .merge(vcluster_routes(shared.vclusters.clone()))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(crate::wasm::MAX_PLUGIN_BYTES))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ))
        .with_state(shared)
}

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let stop = shared.force_close.clone();
    let drained = shared.shutdown.clone();
    let app = router(shared);
    // The admin API stays up while connections drain so probes can watch the shutdown.
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            drained.cancelled().await;
            stop.cancelled().await;
        })
        .await;
    if let Err(e) = result {
        warn!("admin listener failed: {e}");
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

/// Writes need `Authorization: Bearer <token>` when a token is configured.
async fn require_token(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if let (true, Some(token)) = (write, shared.config.admin_token.as_ref()) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            None => {
                return ApiError::new(401, "a bearer token is required for writes", vec![])
                    .into_response()
            }
            Some(t) if !token.matches(t) => {
                warn!("admin API write with a wrong token refused");
                return ApiError::new(403, "wrong bearer token", vec![]).into_response();
            }
            Some(_) => {}
        }
    }
    next.run(req).await
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
    use crate::client::AdminClient;
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
        // Every schema reference resolves.
        let text = doc.to_string();
        for r in text.split("\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }
}
