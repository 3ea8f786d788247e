//! Host services behind the plugin imports: logging, metrics, key-value, KMS, publishing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use tokio::sync::mpsc;
use tracing::{debug, error, info, trace, warn};

use crate::bindings::sluice::interceptor::{host, types};
use crate::kms::Kms;

/// Plugin log lines allowed per interceptor per second; the rest are counted and dropped.
const LOG_LINES_PER_SECOND: u64 = 100;
/// Longest plugin log line kept.
const LOG_LINE_MAX: usize = 4096;

/// Where the counters and gauges plugins maintain go: the embedding gateway's metrics
/// registry. A trait so that this crate knows no registry (the gateway exports these as
/// `plugin_counter` and `plugin_gauge`, labelled by interceptor and name).
pub trait PluginMetrics: Send + Sync {
    /// Adds `delta` to counter `name` of interceptor `interceptor`.
    fn counter_add(&self, interceptor: &str, name: &str, delta: u64);
    /// Sets gauge `name` of interceptor `interceptor` to `value`.
    fn gauge_set(&self, interceptor: &str, name: &str, value: f64);
}

/// Metrics that go nowhere: for calls whose metrics nobody reads (the `describe` call that
/// checks a plugin at load time, tests).
pub struct DiscardMetrics;

impl PluginMetrics for DiscardMetrics {
    fn counter_add(&self, _interceptor: &str, _name: &str, _delta: u64) {}
    fn gauge_set(&self, _interceptor: &str, _name: &str, _value: f64) {}
}

/// A record a plugin asked to publish.
pub struct Published {
    /// Topic.
    pub topic: String,
    /// Record.
    pub record: types::KafkaRecord,
    /// Interceptor that published it.
    pub interceptor: String,
}

/// Services of one installed interceptor.
pub struct Services {
    /// Interceptor name.
    pub name: String,
    pub(crate) kv: Arc<KvStore>,
    pub(crate) kms: Arc<Kms>,
    pub(crate) started: Instant,
    metrics: Arc<dyn PluginMetrics>,
    publisher: Option<mpsc::Sender<Published>>,
    log_window: Mutex<(u64, u64)>,
    dropped_logs: AtomicU64,
}

impl Services {
    /// Services for interceptor `name`.
    pub fn new(
        name: &str,
        kv: Arc<KvStore>,
        kms: Arc<Kms>,
        metrics: Arc<dyn PluginMetrics>,
        publisher: Option<mpsc::Sender<Published>>,
    ) -> Services {
        Services {
            name: name.to_string(),
            kv,
            kms,
            started: origin(),
            metrics,
            publisher,
            log_window: Mutex::new((0, 0)),
            dropped_logs: AtomicU64::new(0),
        }
    }

    /// Whether one more plugin line may be logged this second (the host `log` function and
    /// the plugin's stdout and stderr share the limit); reports the lines dropped in the
    /// previous window.
    fn log_allowed(&self) -> bool {
        let second = self.started.elapsed().as_secs();
        let mut w = self.log_window.lock().expect("log window lock");
        if w.0 != second {
            let dropped = self.dropped_logs.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                warn!(interceptor = %self.name, dropped, "plugin log lines dropped (rate limit)");
            }
            *w = (second, 0);
        }
        w.1 += 1;
        if w.1 > LOG_LINES_PER_SECOND {
            self.dropped_logs.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// A line the plugin wrote to `stream` (`stdout`: info, `stderr`: warn), already cut to
    /// [`crate::output::LINE_MAX`].
    pub(crate) fn plugin_output(&self, stream: &'static str, line: &str) {
        if !self.log_allowed() {
            return;
        }
        let name = &self.name;
        if stream == "stderr" {
            warn!(interceptor = %name, stream, "plugin: {line}");
        } else {
            info!(interceptor = %name, stream, "plugin: {line}");
        }
    }

    pub(crate) fn log(&self, level: host::Level, message: &str) {
        if !self.log_allowed() {
            return;
        }
        let mut end = message.len().min(LOG_LINE_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        let name = &self.name;
        match level {
            host::Level::Trace => trace!(interceptor = %name, "plugin: {message}"),
            host::Level::Debug => debug!(interceptor = %name, "plugin: {message}"),
            host::Level::Info => info!(interceptor = %name, "plugin: {message}"),
            host::Level::Warn => warn!(interceptor = %name, "plugin: {message}"),
            host::Level::Error => error!(interceptor = %name, "plugin: {message}"),
        }
    }

    pub(crate) fn counter_add(&self, name: &str, delta: u64) {
        self.metrics.counter_add(&self.name, name, delta);
    }

    pub(crate) fn gauge_set(&self, name: &str, value: f64) {
        self.metrics.gauge_set(&self.name, name, value);
    }

    pub(crate) fn publish(&self, topic: String, record: types::KafkaRecord) -> Result<(), String> {
        let Some(tx) = &self.publisher else {
            return Err("publishing is not available in this gateway".into());
        };
        tx.try_send(Published {
            topic,
            record,
            interceptor: self.name.clone(),
        })
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => "publish queue full".to_string(),
            mpsc::error::TrySendError::Closed(_) => "publisher stopped".to_string(),
        })
    }
}

/// A per-interceptor key-value store shared by its instances.
#[derive(Default)]
pub struct KvStore {
    map: Mutex<HashMap<String, Vec<u8>>>,
}

/// Most keys one interceptor may hold.
const KV_MAX_KEYS: usize = 100_000;

impl KvStore {
    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.map.lock().expect("kv lock").get(key).cloned()
    }

    pub(crate) fn set(&self, key: String, value: Vec<u8>) {
        let mut map = self.map.lock().expect("kv lock");
        if map.len() < KV_MAX_KEYS || map.contains_key(&key) {
            map.insert(key, value);
        }
    }

    pub(crate) fn delete(&self, key: &str) {
        self.map.lock().expect("kv lock").remove(key);
    }

    pub(crate) fn increment(&self, key: String, delta: i64) -> i64 {
        let mut map = self.map.lock().expect("kv lock");
        let current = map
            .get(&key)
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, i64::from_le_bytes);
        let next = current.wrapping_add(delta);
        if map.len() < KV_MAX_KEYS || map.contains_key(&key) {
            map.insert(key, next.to_le_bytes().to_vec());
        }
        next
    }
}

/// Time origin of `monotonic-nanos`.
pub fn origin() -> Instant {
    Instant::now()
}
