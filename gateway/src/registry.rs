//! Installed interceptors: specs, scopes, the chain, and the registry that changes it.
//!
//! An interceptor is a plugin installed under a name with a priority, a scope, a JSON config,
//! a failure policy and limits. The chain for a client is every interceptor whose scope
//! matches it; an interceptor of the same name at a narrower scope overrides the wider one
//! (username > group > virtual cluster > global); order is ascending priority, ties broken by
//! name; responses go through in reverse.
//!
//! Every change builds a new [`Chain`] aside and swaps it in atomically (`ArcSwap`): requests
//! in flight keep the chain they started with, so a swap drops nothing.

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::state::{check_name, StateStore};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use sluice_wasm::kms::Kms;
use sluice_wasm::services::{KvStore, Published, Services};
use sluice_wasm::{Capabilities, Instances, Plugin, PluginError, Runtime, MAX_MEMORY_MB};

/// Document kinds in the state store.
const PLUGINS: &str = "plugins";
const INTERCEPTORS: &str = "interceptors";

/// What happens when a plugin call traps, times out or runs out of memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// The client gets a Kafka error for that request.
    #[default]
    FailClosed,
    /// The interceptor is skipped for that request.
    FailOpen,
}

/// Who an interceptor applies to. Empty: everyone. Several fields: all must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// A virtual cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcluster: Option<String>,
    /// A group of principals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// One principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl Scope {
    /// Narrowness: 0 global, 1 virtual cluster, 2 group, 3 username.
    pub fn level(&self) -> u8 {
        if self.username.is_some() {
            3
        } else if self.group.is_some() {
            2
        } else if self.vcluster.is_some() {
            1
        } else {
            0
        }
    }

    /// Whether a connection's identity matches.
    pub fn matches(&self, who: &Identity) -> bool {
        self.vcluster
            .as_ref()
            .is_none_or(|v| who.vcluster.as_ref() == Some(v))
            && self.group.as_ref().is_none_or(|g| who.groups.contains(g))
            && self
                .username
                .as_ref()
                .is_none_or(|u| who.principal.as_ref() == Some(u))
    }
}

fn default_priority() -> i32 {
    100
}
fn default_timeout() -> u64 {
    50
}
fn default_memory() -> u64 {
    64
}
fn default_config() -> Value {
    json!({})
}

/// An interceptor as the admin API and `sluice apply` describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterceptorSpec {
    /// Plugin name.
    pub plugin: String,
    /// Lower runs first on requests (last on responses).
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// Who it applies to.
    #[serde(default)]
    pub scope: Scope,
    /// JSON configuration handed to the plugin's `configure`.
    #[serde(default = "default_config")]
    pub config: Value,
    /// On trap, timeout or memory exhaustion.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Deadline of one call, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Memory cap, in MiB, of the linear memory of all the interceptor's instances together
    /// (calls running at once share it; one instance may use all of it).
    #[serde(default = "default_memory")]
    pub memory_mb: u64,
}

impl InterceptorSpec {
    /// Checks the values, every problem reported.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = check_name(&self.plugin) {
            problems.push(format!("plugin: {e}"));
        }
        if !(-1_000_000..=1_000_000).contains(&self.priority) {
            problems.push("priority: must be between -1000000 and 1000000".into());
        }
        if !(1..=10_000).contains(&self.timeout_ms) {
            problems.push("timeoutMs: must be between 1 and 10000".into());
        }
        if !(1..=MAX_MEMORY_MB).contains(&self.memory_mb) {
            problems.push(format!("memoryMb: must be between 1 and {MAX_MEMORY_MB}"));
        }
        if !self.config.is_object() {
            problems.push("config: must be a JSON object".into());
        }
        for (field, v) in [
            ("scope.vcluster", &self.scope.vcluster),
            ("scope.group", &self.scope.group),
            ("scope.username", &self.scope.username),
        ] {
            if v.as_deref().is_some_and(str::is_empty) {
                problems.push(format!("{field}: must not be empty"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// An interceptor ready to run.
pub struct Installed {
    /// Name.
    pub name: String,
    /// Its spec.
    pub spec: InterceptorSpec,
    /// The plugin's hooks.
    pub caps: Capabilities,
    /// Configured instances.
    pub instances: Arc<Instances>,
    /// Call counters and durations per hook (request, response, produce, fetch).
    hooks: [(Counter, Histogram); 4],
}

/// Hook indices of [`Installed::observe`].
#[derive(Debug, Clone, Copy)]
pub enum Hook {
    /// `on-request`.
    Request = 0,
    /// `on-response`.
    Response = 1,
    /// `on-produce`.
    Produce = 2,
    /// `on-fetch`.
    Fetch = 3,
}

impl Installed {
    /// Counts one call of `hook` that took `elapsed`.
    pub fn observe(&self, hook: Hook, elapsed: Duration) {
        let (calls, seconds) = &self.hooks[hook as usize];
        calls.inc();
        seconds.observe(elapsed.as_secs_f64());
    }
}

/// One immutable set of installed interceptors.
#[derive(Default)]
pub struct Chain {
    /// Changes with every swap.
    pub generation: u64,
    all: Vec<Arc<Installed>>,
}

impl Chain {
    /// Whether no interceptor is installed.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The interceptors that apply to `who`, in request order.
    pub fn for_identity(&self, who: &Identity) -> Vec<Arc<Installed>> {
        choose(
            self.all
                .iter()
                .map(|i| (i.name.as_str(), i.spec.priority, &i.spec.scope, i.clone())),
            who,
        )
    }
}

/// Scope matching, override and ordering over `(name, priority, scope, item)` candidates:
/// keeps, per name, the narrowest scope matching `who`, then sorts by (priority, name).
fn choose<'a, T>(
    candidates: impl Iterator<Item = (&'a str, i32, &'a Scope, T)>,
    who: &Identity,
) -> Vec<T> {
    let mut best: HashMap<&'a str, (i32, u8, T)> = HashMap::new();
    for (name, priority, scope, item) in candidates {
        if !scope.matches(who) {
            continue;
        }
        let level = scope.level();
        if best.get(name).is_none_or(|(_, l, _)| level > *l) {
            best.insert(name, (priority, level, item));
        }
    }
    let mut chosen: Vec<(&str, i32, T)> =
        best.into_iter().map(|(n, (p, _, t))| (n, p, t)).collect();
    chosen.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
    chosen.into_iter().map(|(_, _, t)| t).collect()
}

/// An error for the admin API: an HTTP status, a message and details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Summary.
    pub error: String,
    /// Details.
    pub details: Vec<String>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: u16, error: impl Into<String>, details: Vec<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            details,
        }
    }
}

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> ApiError {
        let status = match e {
            PluginError::TooLarge(_) => 413,
            _ => 400,
        };
        let error = match e {
            PluginError::Invalid(_) => "not a valid WebAssembly component",
            PluginError::WrongWorld(_) => {
                "the component does not implement sluice:interceptor/interceptor@0.1.0"
            }
            PluginError::TooLarge(_) => "plugin too large",
        };
        ApiError::new(status, error, vec![e.to_string()])
    }
}

/// The admin API's answer when the state store fails.
pub(crate) fn internal(e: anyhow::Error) -> ApiError {
    ApiError::new(500, "state store error", vec![format!("{e:#}")])
}

/// A 400 unless `name` is a valid resource name (see [`check_name`]).
pub(crate) fn invalid_name(kind: &str, name: &str) -> Result<(), ApiError> {
    check_name(name)
        .map_err(|e| ApiError::new(400, format!("invalid {kind} name"), vec![e.to_string()]))
}

/// The admin API's 404 for a resource of `kind`.
pub(crate) fn not_found(kind: &str, name: &str) -> ApiError {
    ApiError::new(404, format!("no {kind} named `{name}`"), vec![])
}

/// A resource as the admin API shows it: `{"name", "spec"}`.
pub(crate) fn with_name(name: &str, spec: &impl Serialize) -> Value {
    json!({ "name": name, "spec": serde_json::to_value(spec).expect("spec serializes") })
}

/// Validation's outcome: every problem found, or none.
pub(crate) fn done(problems: Vec<String>) -> Result<(), Vec<String>> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A plugin as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    /// Name.
    pub name: String,
    /// SHA-256 of the component.
    pub sha256: String,
    /// Size in bytes.
    pub size: usize,
    /// Hooks it implements.
    pub hooks: Vec<&'static str>,
    /// API keys of its generic hooks (empty: all).
    pub api_keys: Vec<i16>,
    /// Interceptors using it.
    pub used_by: Vec<String>,
}

struct Inner {
    plugins: BTreeMap<String, Arc<Plugin>>,
    interceptors: BTreeMap<String, Arc<Installed>>,
    kv: HashMap<String, Arc<KvStore>>,
    generation: u64,
}

/// Plugins and interceptors, persisted in the state store; the source of the live chain.
pub struct Registry {
    runtime: Arc<Runtime>,
    store: Arc<dyn StateStore>,
    metrics: Arc<Metrics>,
    kms: Arc<Kms>,
    publisher: Option<mpsc::Sender<Published>>,
    inner: Mutex<Inner>,
    chain: ArcSwap<Chain>,
}

impl Registry {
    /// The key management plugins' `kms` calls use (the admin API lists, rotates and deletes
    /// its keys).
    pub fn kms(&self) -> &Arc<Kms> {
        &self.kms
    }

    /// A registry over `store`; call [`Registry::restore`] to load what it holds.
    pub fn new(
        runtime: Arc<Runtime>,
        store: Arc<dyn StateStore>,
        metrics: Arc<Metrics>,
        publisher: Option<mpsc::Sender<Published>>,
        kms: Arc<Kms>,
    ) -> anyhow::Result<Registry> {
        Ok(Registry {
            runtime,
            store,
            metrics,
            kms,
            publisher,
            inner: Mutex::new(Inner {
                plugins: BTreeMap::new(),
                interceptors: BTreeMap::new(),
                kv: HashMap::new(),
                generation: 0,
            }),
            chain: ArcSwap::from_pointee(Chain::default()),
        })
    }

    /// The live chain.
    pub fn chain(&self) -> Arc<Chain> {
        self.chain.load_full()
    }

    /// Loads every stored plugin and interceptor (blocking). A stored interceptor that cannot
    /// be installed is an error: silently running without a policy is worse than not starting.
    pub fn restore(&self) -> anyhow::Result<()> {
        let mut inner = self.inner.lock().expect("registry lock");
        for (name, doc) in self.store.list_docs(PLUGINS)? {
            let sha = doc["sha256"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("plugin {name}: no sha256 in its document"))?;
            let bytes = self
                .store
                .get_blob(sha)?
                .ok_or_else(|| anyhow::anyhow!("plugin {name}: blob {sha} missing"))?;
            let plugin = self
                .runtime
                .load_plugin(&name, &bytes)
                .map_err(|e| anyhow::anyhow!("plugin {name}: {e}"))?;
            inner.plugins.insert(name, plugin);
        }
        for (name, doc) in self.store.list_docs(INTERCEPTORS)? {
            let spec: InterceptorSpec = serde_json::from_value(doc)
                .map_err(|e| anyhow::anyhow!("interceptor {name}: {e}"))?;
            let installed = self
                .install(&mut inner, &name, spec)
                .map_err(|e| anyhow::anyhow!("interceptor {name}: {} {:?}", e.error, e.details))?;
            inner.interceptors.insert(name, installed);
        }
        info!(
            plugins = inner.plugins.len(),
            interceptors = inner.interceptors.len(),
            "restored plugins and interceptors"
        );
        self.publish_chain(&mut inner);
        Ok(())
    }

    fn services(&self, inner: &mut Inner, name: &str) -> Arc<Services> {
        let kv = inner.kv.entry(name.to_string()).or_default().clone();
        Arc::new(Services::new(
            name,
            kv,
            self.kms.clone(),
            self.metrics.clone(),
            self.publisher.clone(),
        ))
    }

    fn install(
        &self,
        inner: &mut Inner,
        name: &str,
        spec: InterceptorSpec,
    ) -> Result<Arc<Installed>, ApiError> {
        let plugin = inner.plugins.get(&spec.plugin).cloned().ok_or_else(|| {
            ApiError::new(
                400,
                "unknown plugin",
                vec![format!(
                    "plugin `{}` is not uploaded (PUT /api/v1/plugins/{})",
                    spec.plugin, spec.plugin
                )],
            )
        })?;
        self.install_with(inner, name, spec, plugin)
    }

    fn install_with(
        &self,
        inner: &mut Inner,
        name: &str,
        spec: InterceptorSpec,
        plugin: Arc<Plugin>,
    ) -> Result<Arc<Installed>, ApiError> {
        let services = self.services(inner, name);
        let config = serde_json::to_string(&spec.config).expect("JSON value serializes");
        let instances = Instances::new(
            plugin.clone(),
            services,
            config,
            Duration::from_millis(spec.timeout_ms),
            spec.memory_mb,
        )
        .map_err(|e| ApiError::new(400, "the plugin refused this interceptor", vec![e]))?;
        let caps = instances.capabilities().map_err(|e| {
            ApiError::new(
                400,
                "the plugin failed to describe itself after configure",
                vec![e.to_string()],
            )
        })?;
        let hooks = ["on-request", "on-response", "on-produce", "on-fetch"]
            .map(|h| self.metrics.interceptor_hook(name, h));
        Ok(Arc::new(Installed {
            name: name.to_string(),
            hooks,
            caps,
            spec,
            instances,
        }))
    }

    fn publish_chain(&self, inner: &mut Inner) {
        inner.generation += 1;
        self.chain.store(Arc::new(Chain {
            generation: inner.generation,
            all: inner.interceptors.values().cloned().collect(),
        }));
    }

    fn plugin_info(inner: &Inner, p: &Plugin) -> PluginInfo {
        PluginInfo {
            name: p.name.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
            hooks: p.capabilities.hook_names(),
            api_keys: p.capabilities.api_keys.clone(),
            used_by: inner
                .interceptors
                .values()
                .filter(|i| i.spec.plugin == p.name)
                .map(|i| i.name.clone())
                .collect(),
        }
    }

    /// Uploads or replaces a plugin (blocking: compiles). Interceptors using a replaced plugin
    /// are re-created on the new version and swapped in together; if any refuses its config,
    /// nothing changes.
    pub fn put_plugin(&self, name: &str, bytes: &[u8]) -> Result<(PluginInfo, bool), ApiError> {
        check_name(name)
            .map_err(|e| ApiError::new(400, "invalid plugin name", vec![e.to_string()]))?;
        let plugin = self.runtime.load_plugin(name, bytes)?;
        let mut inner = self.inner.lock().expect("registry lock");
        let created = !inner.plugins.contains_key(name);
        let users: Vec<Arc<Installed>> = inner
            .interceptors
            .values()
            .filter(|i| i.spec.plugin == name)
            .cloned()
            .collect();
        let mut replaced = Vec::new();
        let mut refusals = Vec::new();
        for old in &users {
            match self.install_with(&mut inner, &old.name, old.spec.clone(), plugin.clone()) {
                Ok(new) => replaced.push(new),
                Err(e) => refusals.push(format!(
                    "interceptor `{}`: {}",
                    old.name,
                    e.details.join("; ")
                )),
            }
        }
        if !refusals.is_empty() {
            return Err(ApiError::new(
                409,
                "the new plugin version refuses the configuration of interceptors using it",
                refusals,
            ));
        }
        self.store
            .put_blob(&plugin.sha256, bytes)
            .map_err(internal)?;
        self.store
            .put_doc(
                PLUGINS,
                name,
                &json!({"sha256": plugin.sha256, "size": plugin.size}),
            )
            .map_err(internal)?;
        if let Some(old) = inner.plugins.insert(name.to_string(), plugin.clone()) {
            if old.sha256 != plugin.sha256
                && !inner.plugins.values().any(|p| p.sha256 == old.sha256)
            {
                let _ = self.store.delete_blob(&old.sha256);
            }
        }
        for new in replaced {
            if let Some(old) = inner.interceptors.insert(new.name.clone(), new) {
                old.instances.retire();
            }
        }
        self.publish_chain(&mut inner);
        info!(plugin = name, sha256 = %plugin.sha256, hooks = ?plugin.capabilities.hook_names(), "plugin stored");
        Ok((Self::plugin_info(&inner, &plugin), created))
    }

    /// Every plugin.
    pub fn list_plugins(&self) -> Vec<PluginInfo> {
        let inner = self.inner.lock().expect("registry lock");
        inner
            .plugins
            .values()
            .map(|p| Self::plugin_info(&inner, p))
            .collect()
    }

    /// One plugin.
    pub fn get_plugin(&self, name: &str) -> Result<PluginInfo, ApiError> {
        let inner = self.inner.lock().expect("registry lock");
        inner
            .plugins
            .get(name)
            .map(|p| Self::plugin_info(&inner, p))
            .ok_or_else(|| not_found("plugin", name))
    }

    /// Deletes a plugin no interceptor uses.
    pub fn delete_plugin(&self, name: &str) -> Result<(), ApiError> {
        let mut inner = self.inner.lock().expect("registry lock");
        let Some(plugin) = inner.plugins.get(name).cloned() else {
            return Err(not_found("plugin", name));
        };
        let users = Self::plugin_info(&inner, &plugin).used_by;
        if !users.is_empty() {
            return Err(ApiError::new(
                409,
                format!("plugin `{name}` is in use"),
                users
                    .into_iter()
                    .map(|u| format!("used by interceptor `{u}`"))
                    .collect(),
            ));
        }
        self.store.delete_doc(PLUGINS, name).map_err(internal)?;
        inner.plugins.remove(name);
        if !inner.plugins.values().any(|p| p.sha256 == plugin.sha256) {
            let _ = self.store.delete_blob(&plugin.sha256);
        }
        info!(plugin = name, "plugin deleted");
        Ok(())
    }

    /// Installs or replaces an interceptor (blocking: instantiates and configures).
    pub fn put_interceptor(
        &self,
        name: &str,
        spec: InterceptorSpec,
    ) -> Result<(Value, bool), ApiError> {
        check_name(name)
            .map_err(|e| ApiError::new(400, "invalid interceptor name", vec![e.to_string()]))?;
        spec.validate()
            .map_err(|d| ApiError::new(400, "invalid interceptor spec", d))?;
        let mut inner = self.inner.lock().expect("registry lock");
        let installed = self.install(&mut inner, name, spec.clone())?;
        let doc = serde_json::to_value(&spec).expect("spec serializes");
        self.store
            .put_doc(INTERCEPTORS, name, &doc)
            .map_err(internal)?;
        let replaced = inner.interceptors.insert(name.to_string(), installed);
        let created = replaced.is_none();
        if let Some(old) = replaced {
            old.instances.retire();
        }
        self.publish_chain(&mut inner);
        info!(interceptor = name, plugin = %spec.plugin, priority = spec.priority, scope = ?spec.scope, "interceptor installed");
        Ok((with_name(name, &doc), created))
    }

    /// Every interceptor.
    pub fn list_interceptors(&self) -> Vec<Value> {
        let inner = self.inner.lock().expect("registry lock");
        inner
            .interceptors
            .values()
            .map(|i| with_name(&i.name, &i.spec))
            .collect()
    }

    /// One interceptor.
    pub fn get_interceptor(&self, name: &str) -> Result<Value, ApiError> {
        let inner = self.inner.lock().expect("registry lock");
        inner
            .interceptors
            .get(name)
            .map(|i| with_name(&i.name, &i.spec))
            .ok_or_else(|| not_found("interceptor", name))
    }

    /// Removes an interceptor.
    pub fn delete_interceptor(&self, name: &str) -> Result<(), ApiError> {
        let mut inner = self.inner.lock().expect("registry lock");
        if !inner.interceptors.contains_key(name) {
            return Err(not_found("interceptor", name));
        }
        self.store
            .delete_doc(INTERCEPTORS, name)
            .map_err(internal)?;
        if let Some(old) = inner.interceptors.remove(name) {
            // Its memory goes back now, not when the last connection that saw it moves on.
            old.instances.retire();
        }
        inner.kv.remove(name);
        self.publish_chain(&mut inner);
        info!(interceptor = name, "interceptor removed");
        Ok(())
    }
}

/// Warns once per failure kind; used by the request path.
pub fn log_failure(interceptor: &str, policy: FailurePolicy, failure: &sluice_wasm::CallFailure) {
    warn!(
        interceptor,
        ?policy,
        kind = failure.kind(),
        "interceptor call failed: {failure}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(priority: i32, scope: Scope) -> InterceptorSpec {
        InterceptorSpec {
            plugin: "p".into(),
            priority,
            scope,
            config: json!({}),
            failure_policy: FailurePolicy::FailClosed,
            timeout_ms: 50,
            memory_mb: 64,
        }
    }

    #[test]
    fn spec_defaults_and_validation() {
        let s: InterceptorSpec = serde_json::from_value(json!({"plugin": "noop"})).unwrap();
        assert_eq!((s.priority, s.timeout_ms, s.memory_mb), (100, 50, 64));
        assert_eq!(s.failure_policy, FailurePolicy::FailClosed);
        assert!(
            serde_json::from_value::<InterceptorSpec>(json!({"plugin": "x", "bogus": 1})).is_err()
        );
        let p: InterceptorSpec =
            serde_json::from_value(json!({"plugin": "x", "failurePolicy": "fail-open"})).unwrap();
        assert_eq!(p.failure_policy, FailurePolicy::FailOpen);
        let bad = InterceptorSpec {
            timeout_ms: 0,
            memory_mb: 100_000,
            config: json!([1]),
            ..spec(5_000_000, Scope::default())
        };
        assert_eq!(bad.validate().unwrap_err().len(), 4);
    }

    #[test]
    fn scope_matching_and_levels() {
        let who = Identity {
            vcluster: Some("a".into()),
            principal: Some("alice".into()),
            groups: vec!["ops".into()],
            ..Identity::default()
        };
        let s = |v: Option<&str>, g: Option<&str>, u: Option<&str>| Scope {
            vcluster: v.map(Into::into),
            group: g.map(Into::into),
            username: u.map(Into::into),
        };
        assert!(s(None, None, None).matches(&who));
        assert!(s(Some("a"), None, None).matches(&who));
        assert!(!s(Some("b"), None, None).matches(&who));
        assert!(s(None, Some("ops"), None).matches(&who));
        assert!(!s(None, Some("dev"), None).matches(&who));
        assert!(s(Some("a"), None, Some("alice")).matches(&who));
        assert!(!s(Some("b"), None, Some("alice")).matches(&who));
        assert!(!s(None, None, Some("alice")).matches(&Identity::default()));
        assert_eq!(s(None, None, None).level(), 0);
        assert_eq!(s(Some("a"), None, None).level(), 1);
        assert_eq!(s(Some("a"), Some("g"), None).level(), 2);
        assert_eq!(s(None, Some("g"), Some("u")).level(), 3);
    }

    fn select(entries: &[(&str, i32, Scope)], who: &Identity) -> Vec<(String, i32)> {
        choose(
            entries
                .iter()
                .map(|(n, p, s)| (*n, *p, s, (n.to_string(), *p))),
            who,
        )
    }

    #[test]
    fn narrower_scope_overrides_and_priority_orders() {
        let vc = |v: &str| Scope {
            vcluster: Some(v.into()),
            ..Scope::default()
        };
        let user = |u: &str| Scope {
            username: Some(u.into()),
            ..Scope::default()
        };
        let group = |g: &str| Scope {
            group: Some(g.into()),
            ..Scope::default()
        };
        let entries = [
            ("mask", 10, Scope::default()),
            ("mask", 50, vc("a")),
            ("mask", 70, group("ops")),
            ("mask", 90, user("alice")),
            ("audit", 20, Scope::default()),
            ("limit", 20, vc("b")),
            ("zeta", 20, Scope::default()),
        ];
        let alice = Identity {
            vcluster: Some("a".into()),
            principal: Some("alice".into()),
            groups: vec!["ops".into()],
            ..Identity::default()
        };
        assert_eq!(
            select(&entries, &alice),
            vec![
                ("audit".into(), 20),
                ("zeta".into(), 20),
                ("mask".into(), 90)
            ]
        );
        let bob = Identity {
            vcluster: Some("a".into()),
            principal: Some("bob".into()),
            groups: vec!["ops".into()],
            ..Identity::default()
        };
        assert_eq!(select(&entries, &bob)[2], ("mask".into(), 70));
        let carol = Identity {
            vcluster: Some("a".into()),
            ..Identity::default()
        };
        assert_eq!(select(&entries, &carol)[2], ("mask".into(), 50));
        let anon = Identity::default();
        assert_eq!(
            select(&entries, &anon),
            vec![
                ("mask".into(), 10),
                ("audit".into(), 20),
                ("zeta".into(), 20)
            ]
        );
        let in_b = Identity {
            vcluster: Some("b".into()),
            ..Identity::default()
        };
        assert!(select(&entries, &in_b).contains(&("limit".into(), 20)));
    }
}
