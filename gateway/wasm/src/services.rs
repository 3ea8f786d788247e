//! Host services behind the plugin imports: logging, metrics, key-value, KMS, publishing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tracing::{debug, error, info, trace, warn};

use crate::bindings::sluice::interceptor::{host, types};

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

/// Keys for plugin encryption. They live in the gateway (a file in the state directory,
/// created on first use of a key id) and never enter plugin memory.
pub struct Kms {
    path: Option<PathBuf>,
    keys: Mutex<HashMap<String, [u8; 32]>>,
}

/// Ciphertext layout: version byte, key id length (u8), key id, 12-byte nonce, AES-GCM output.
const KMS_FORMAT: u8 = 1;

impl Kms {
    /// A KMS persisting its keys in `dir/kms-keys.json` (mode 0600), or in memory only.
    pub fn open(dir: Option<&Path>) -> Result<Kms> {
        let path = dir.map(|d| d.join("kms-keys.json"));
        let mut keys = HashMap::new();
        if let Some(p) = &path {
            if p.exists() {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                let hex: HashMap<String, String> = serde_json::from_str(&text)?;
                for (id, k) in hex {
                    let bytes = hex_decode(&k).context("bad key in KMS file")?;
                    let key: [u8; 32] = bytes
                        .try_into()
                        .map_err(|_| anyhow::anyhow!("bad key length"))?;
                    keys.insert(id, key);
                }
            }
        }
        Ok(Kms {
            path,
            keys: Mutex::new(keys),
        })
    }

    fn key(&self, id: &str) -> Result<[u8; 32], String> {
        let mut keys = self.keys.lock().expect("kms lock");
        if let Some(k) = keys.get(id) {
            return Ok(*k);
        }
        if id.is_empty() || id.len() > 255 {
            return Err("key id must be 1 to 255 bytes".into());
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| e.to_string())?;
        keys.insert(id.to_string(), key);
        if let Some(p) = &self.path {
            let hex: HashMap<&String, String> =
                keys.iter().map(|(k, v)| (k, hex_encode(v))).collect();
            let text = serde_json::to_string(&hex).map_err(|e| e.to_string())?;
            crate::atomic_file::write_atomic(p, text.as_bytes(), true)
                .map_err(|e| format!("storing key: {e}"))?;
        }
        Ok(key)
    }

    /// Encrypts with key `key_id` (created on first use).
    pub fn encrypt(&self, key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
        let key = self.key(key_id)?;
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| e.to_string())?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| "encryption failed".to_string())?;
        let mut out = Vec::with_capacity(2 + key_id.len() + 12 + sealed.len());
        out.push(KMS_FORMAT);
        out.push(key_id.len() as u8);
        out.extend_from_slice(key_id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`Kms::encrypt`] produced.
    pub fn decrypt(&self, data: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
        let bad = || "not a Sluice ciphertext".to_string();
        if data.len() < 2 || data[0] != KMS_FORMAT {
            return Err(bad());
        }
        let id_len = data[1] as usize;
        let rest = data.get(2..).ok_or_else(bad)?;
        if rest.len() < id_len + 12 {
            return Err(bad());
        }
        let id = std::str::from_utf8(&rest[..id_len]).map_err(|_| bad())?;
        let known = self.keys.lock().expect("kms lock").get(id).copied();
        let key = known.ok_or_else(|| format!("unknown key id `{id}`"))?;
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| e.to_string())?;
        let nonce = &rest[id_len..id_len + 12];
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: &rest[id_len + 12..],
                    aad,
                },
            )
            .map_err(|_| "decryption failed (wrong key, AAD or corrupted data)".to_string())
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_round_trip_and_persistence() {
        let dir = std::env::temp_dir().join(format!("sluice-kms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kms = Kms::open(Some(&dir)).unwrap();
        let c = kms.encrypt("k1", b"secret", b"topic-a").unwrap();
        assert!(!c.windows(6).any(|w| w == b"secret"));
        assert_eq!(kms.decrypt(&c, b"topic-a").unwrap(), b"secret");
        assert!(kms.decrypt(&c, b"topic-b").is_err());
        // A new KMS on the same directory still decrypts: keys persisted.
        let again = Kms::open(Some(&dir)).unwrap();
        assert_eq!(again.decrypt(&c, b"topic-a").unwrap(), b"secret");
        assert!(again.decrypt(b"junk", b"").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
