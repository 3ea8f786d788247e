//! Host services: logging, clocks, randomness and plugin metrics; and the [`kv`], [`kms`]
//! and [`publish`] services.
//!
//! On wasm each function calls the gateway. Natively (unit tests) they run against an
//! in-memory fake, per thread, that [`crate::testing`] inspects and resets: logs and metrics
//! are captured, `kv` is a map, `kms` is a reversible fake cipher, published records are
//! captured.

#[cfg(target_arch = "wasm32")]
use crate::bindings::sluice::interceptor as wit;
pub use crate::Level;

/// Writes a line to the gateway's log, tagged with the interceptor name (rate limited).
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    wit::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::fake::with(|h| h.logs.push((level, message.to_string())));
}

/// Logs at [`Level::Trace`].
pub fn trace(message: &str) {
    log(Level::Trace, message)
}

/// Logs at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message)
}

/// Logs at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message)
}

/// Logs at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message)
}

/// Logs at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message)
}

/// Wall-clock time in milliseconds since the Unix epoch. Natively: the real clock, unless a
/// test fixed it with [`crate::testing::set_now_millis`].
pub fn now_millis() -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        wit::host::now_millis()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::fake::with(|h| h.now_millis())
    }
}

/// Monotonic time in nanoseconds, for measuring durations.
pub fn monotonic_nanos() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        wit::host::monotonic_nanos()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::fake::monotonic_nanos()
    }
}

/// `len` bytes from the host's cryptographically secure generator (the SDK asks in chunks of
/// 1024, the host's limit per call). Natively: a deterministic pseudo-random sequence, reset
/// by [`crate::testing::reset`]; never use the native fake for secrets.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let chunk = (len - out.len()).min(1024) as u32;
        #[cfg(target_arch = "wasm32")]
        let bytes = wit::host::random_bytes(chunk);
        #[cfg(not(target_arch = "wasm32"))]
        let bytes = crate::fake::with(|h| h.random_bytes(chunk as usize));
        if bytes.is_empty() {
            break;
        }
        out.extend_from_slice(&bytes);
    }
    out.truncate(len);
    out
}

/// Adds `delta` to the plugin counter `name` (exported by the gateway as
/// `sluice_plugin_counter_total{interceptor, name}`).
pub fn counter_add(name: &str, delta: u64) {
    #[cfg(target_arch = "wasm32")]
    wit::host::counter_add(name, delta);
    #[cfg(not(target_arch = "wasm32"))]
    crate::fake::with(|h| *h.counters.entry(name.to_string()).or_default() += delta);
}

/// Sets the plugin gauge `name` (exported as `sluice_plugin_gauge{interceptor, name}`).
pub fn gauge_set(name: &str, value: f64) {
    #[cfg(target_arch = "wasm32")]
    wit::host::gauge_set(name, value);
    #[cfg(not(target_arch = "wasm32"))]
    crate::fake::with(|h| {
        h.gauges.insert(name.to_string(), value);
    });
}

/// A key-value store private to each installed interceptor, shared by all its instances in
/// the gateway process (rate limits, counters, caches). Natively: an in-memory map.
pub mod kv {
    #[cfg(target_arch = "wasm32")]
    use crate::bindings::sluice::interceptor::kv as wit;

    /// The value of `key`, if any.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        #[cfg(target_arch = "wasm32")]
        {
            wit::get(key)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::fake::with(|h| h.kv.get(key).cloned())
        }
    }

    /// Sets `key` to `value`.
    pub fn set(key: &str, value: &[u8]) {
        #[cfg(target_arch = "wasm32")]
        wit::set(key, value);
        #[cfg(not(target_arch = "wasm32"))]
        crate::fake::with(|h| {
            h.kv.insert(key.to_string(), value.to_vec());
        });
    }

    /// Removes `key`.
    pub fn delete(key: &str) {
        #[cfg(target_arch = "wasm32")]
        wit::delete(key);
        #[cfg(not(target_arch = "wasm32"))]
        crate::fake::with(|h| {
            h.kv.remove(key);
        });
    }

    /// Adds `delta` to the signed 64-bit integer stored at `key` (0 when absent) and returns
    /// the new value, atomically. The integer is stored as 8 bytes, big-endian (natively; the
    /// host defines its own encoding, so read it back only through `increment`).
    pub fn increment(key: &str, delta: i64) -> i64 {
        #[cfg(target_arch = "wasm32")]
        {
            wit::increment(key, delta)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::fake::with(|h| {
                let old =
                    h.kv.get(key)
                        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                        .map(i64::from_be_bytes)
                        .unwrap_or(0);
                let new = old.wrapping_add(delta);
                h.kv.insert(key.to_string(), new.to_be_bytes().to_vec());
                new
            })
        }
    }
}

/// Encryption with keys held by the host's key management: keys never enter plugin memory.
///
/// Natively a fake, reversible cipher stands in (NOT encryption): the ciphertext names the
/// key and carries a checksum of the key id, the AAD and the plaintext, so
/// [`decrypt`](kms::decrypt) fails on a different AAD, on changed bytes or on bytes `encrypt`
/// did not produce, like the real thing. An empty key id is an unknown key;
/// [`crate::testing::set_kms_error`] makes both calls fail and
/// [`crate::testing::delete_kms_key`] shreds one key.
pub mod kms {
    #[cfg(target_arch = "wasm32")]
    use crate::bindings::sluice::interceptor::kms as wit;

    /// Encrypts `plaintext` with the key `key_id` (AES-256-GCM; `aad` is authenticated, not
    /// encrypted). The result carries the nonce and names the key.
    pub fn encrypt(key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
        #[cfg(target_arch = "wasm32")]
        {
            wit::encrypt(key_id, plaintext, aad)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::fake::kms_encrypt(key_id, plaintext, aad)
        }
    }

    /// Decrypts what [`encrypt`] produced, with the same `aad`.
    pub fn decrypt(ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
        #[cfg(target_arch = "wasm32")]
        {
            wit::decrypt(ciphertext, aad)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::fake::kms_decrypt(ciphertext, aad)
        }
    }
}

/// Producing records on the gateway's own account (audit trails, dead-letter queues).
pub mod publish {
    use crate::KafkaRecord;

    /// Queues `rec` for `topic` (partition chosen by key hash). Delivery is asynchronous and
    /// at-most-once; the host counts and logs delivery errors. `Err` means it was not queued.
    /// Natively the record is captured ([`crate::testing::published`]).
    pub fn produce(topic: &str, rec: &KafkaRecord) -> Result<(), String> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::sluice::interceptor::publish::produce(topic, rec)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::fake::with(|h| match &h.publish_error {
                Some(e) => Err(e.clone()),
                None => {
                    h.published.push((topic.to_string(), rec.clone()));
                    Ok(())
                }
            })
        }
    }
}

/// Logs a formatted line at a level: `sluice_sdk::log!(Level::Info, "saw {n} records")`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::host::log($level, &::std::format!($($arg)+))
    };
}
