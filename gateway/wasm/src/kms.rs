//! Key management for plugin encryption: where key-encryption keys live and how data keys are
//! made and unwrapped.
//!
//! Plugins name a key (`kms.encrypt(key-id, ...)`); key material never enters plugin memory.
//! The host encrypts records with *data keys* (AES-256-GCM) and keeps those data keys only
//! wrapped (encrypted) by a *key-encryption key* (KEK) that a [`KeyProvider`] holds: the
//! built-in keystore in the state directory, AWS KMS, or any other service that can wrap and
//! unwrap a 256-bit key. A provider is called rarely (a data key is cached and reused for many
//! records), and always from a plugin thread, never from the async workers that serve Kafka
//! connections, so a provider may block on network I/O (with a timeout).
//!
//! Adding a provider (Vault transit, GCP KMS, Azure Key Vault): implement [`KeyProvider`]
//! with the service's "generate data key" (or "random bytes" + "encrypt") and "decrypt"
//! calls, and add it to the configuration. Credentials come from configuration or the
//! environment and must never appear in errors, logs or metrics: [`ProviderError`] carries
//! only what an operator may read.

use std::fmt;

pub mod aead;
pub mod aws;
pub mod envelope;
pub mod local;

pub use envelope::{KeySummary, Kms, KmsConfig, KmsStats, ProviderKind, Shredded};
pub use local::LocalKeystore;

/// A 256-bit data key in clear. Overwritten when dropped; never logged (its `Debug` prints
/// nothing of it).
#[derive(Clone)]
pub struct SecretKey(pub [u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        // Best effort: the compiler may not elide a write to memory about to be freed when
        // it goes through `black_box`.
        self.0 = [0; 32];
        std::hint::black_box(&self.0);
    }
}

/// A fresh data key: in clear for encrypting now, and wrapped by its KEK for storing.
#[derive(Debug, Clone)]
pub struct DataKey {
    /// The key in clear.
    pub plaintext: SecretKey,
    /// The key encrypted by the KEK, as the provider returns it (opaque to the host).
    pub wrapped: Vec<u8>,
}

/// Why a provider call failed, in words an operator may read (no credentials, no key
/// material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider does not know the key (never created, or deleted).
    #[error("unknown key `{0}`")]
    UnknownKey(String),
    /// The provider could not be reached or did not answer in time; a retry may succeed.
    #[error("key provider unavailable: {0}")]
    Unavailable(String),
    /// The provider answered with a refusal (access denied, key disabled, wrapped key that
    /// does not decrypt).
    #[error("key provider refused: {0}")]
    Refused(String),
}

/// Holds key-encryption keys and wraps and unwraps data keys with them.
///
/// Calls block (they may be network round trips) and are made from plugin threads only.
pub trait KeyProvider: Send + Sync + 'static {
    /// The provider's kind, for logs, metrics and the admin API (`local`, `aws-kms`).
    fn kind(&self) -> &'static str;

    /// A fresh random 256-bit data key, in clear and wrapped by the KEK `kek` (AWS KMS:
    /// `GenerateDataKey` with `KeySpec=AES_256`).
    fn generate_data_key(&self, kek: &str) -> Result<DataKey, ProviderError>;

    /// The data key `wrapped` holds, which [`KeyProvider::generate_data_key`] wrapped under
    /// `kek` (AWS KMS: `Decrypt` with that `KeyId`).
    fn unwrap_data_key(&self, kek: &str, wrapped: &[u8]) -> Result<SecretKey, ProviderError>;

    /// Makes a new version of `kek` wrap data keys from now on, older versions still
    /// unwrapping theirs. Providers that rotate on their own schedule (AWS KMS automatic
    /// rotation) refuse.
    fn rotate_key(&self, kek: &str) -> Result<(), ProviderError> {
        Err(ProviderError::Refused(format!(
            "{} keys are rotated by the provider, not through the gateway (key `{kek}`)",
            self.kind()
        )))
    }

    /// Deletes `kek` from the provider if the provider lets the gateway do that; returns
    /// whether it did. Crypto-shredding does not depend on it: the gateway forgets every data
    /// key wrapped by `kek` either way.
    fn delete_key(&self, _kek: &str) -> Result<bool, ProviderError> {
        Ok(false)
    }
}

/// Lower-case hex of `b` (key material and ids in the state files).
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The bytes of lower- or upper-case hex `s`.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
