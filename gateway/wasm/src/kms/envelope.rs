//! Envelope encryption for plugins: records sealed with data keys, data keys wrapped by a
//! provider's key-encryption keys, and crypto-shredding.
//!
//! `kms.encrypt(key-id, plaintext, aad)` seals with the *current data key* of `key-id`: a
//! random AES-256 key the provider generated and wrapped, used for [`KmsConfig::data_key_ttl_secs`]
//! (or 2^30 records, well inside AES-GCM's limit for random nonces) and then replaced. Its
//! wrapped form is appended to the gateway's data-key store (`kms-data-keys.jsonl` in the state
//! directory) before the first record it seals leaves the host, so a record can always find
//! its key. The provider is called once per key id and window, not per record.
//!
//! `kms.decrypt` reads the data key id from the ciphertext, takes the unwrapped key from a
//! bounded cache or unwraps it through the provider (once), and opens the record.
//!
//! Deleting a key id ([`Kms::shred`]) removes every data key it wrapped from the store (the
//! file is rewritten without them), from the cache and from the current keys, in one step
//! under one lock, and leaves a tombstone so the id is never used again; the built-in keystore
//! also deletes the key itself. Every record sealed under the id is then unreadable, for every
//! reader, at once and after a restart, whatever the provider.
//!
//! Per record, sealing costs one lock, the AES-GCM pass and one allocation: a data key is
//! expanded once into its cipher, and nonces are a random 4-byte prefix drawn with the data
//! key plus a count of the records it sealed (unique per key, no random-number call per
//! record; a data key is never shared between processes).
//!
//! Ciphertext layout (version 2): `0x02 ‖ key id length (u8) ‖ key id ‖ data key id (16) ‖
//! nonce (12) ‖ AES-256-GCM output (ciphertext ‖ 16-byte tag)`. Version 1 (sealed directly with
//! a built-in key, by earlier gateways) still decrypts.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::aead::{Cipher, NONCE_LEN, TAG_LEN};
use super::local::LocalKeystore;
use super::{hex, now_ms, unhex, KeyProvider, ProviderError, SecretKey};

/// The data-key store's file in the state directory.
pub const DATA_KEYS_FILE: &str = "kms-data-keys.jsonl";

/// The first ciphertext format: sealed directly with a built-in key.
const FORMAT_V1: u8 = 1;
/// Sealed with a data key.
const FORMAT_V2: u8 = 2;
/// Records one data key seals at most: AES-GCM with random 96-bit nonces stays far from a
/// nonce collision below 2^32 messages per key.
const MAX_USES: u64 = 1 << 30;

/// Which service holds the key-encryption keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// The built-in keystore in the state directory.
    #[default]
    Local,
    /// AWS KMS (`kms.aws`): key ids are AWS key ids, ARNs or aliases (`alias/orders`).
    AwsKms,
}

/// Key management settings (`kms` in the gateway configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct KmsConfig {
    /// The key provider: `local` (default) or `aws-kms`.
    pub provider: ProviderKind,
    /// AWS KMS settings, for `provider: aws-kms`.
    pub aws: Option<super::aws::AwsKmsConfig>,
    /// How long one data key seals new records, in seconds.
    pub data_key_ttl_secs: u64,
    /// Most unwrapped data keys kept in memory for decryption.
    pub data_key_cache: usize,
}

impl Default for KmsConfig {
    fn default() -> Self {
        KmsConfig {
            provider: ProviderKind::Local,
            aws: None,
            data_key_ttl_secs: 3600,
            data_key_cache: 10_000,
        }
    }
}

/// A key id as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySummary {
    /// The key id plugins name.
    pub id: String,
    /// The provider holding it.
    pub provider: &'static str,
    /// Versions of a built-in key (the newest wraps new data keys); absent for other providers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<u32>,
    /// Data keys it wrapped that the gateway stores.
    pub data_keys: usize,
    /// When it was created, in milliseconds since the epoch (built-in keys; 0 when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_ms: Option<i64>,
}

/// What deleting a key did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shredded {
    /// The key id.
    pub id: String,
    /// Data keys forgotten.
    pub data_keys: usize,
    /// Whether the provider deleted the key itself too.
    pub provider_deleted: bool,
}

/// Counts of what the KMS did, for `/metrics`.
#[derive(Debug, Default)]
pub struct KmsStats {
    /// Data keys generated (provider round trips on the encrypt side).
    pub data_keys_generated: AtomicU64,
    /// Data keys unwrapped (provider round trips on the decrypt side).
    pub data_keys_unwrapped: AtomicU64,
    /// Provider calls that failed.
    pub provider_errors: AtomicU64,
    /// Key ids deleted.
    pub keys_shredded: AtomicU64,
}

/// One stored data key: which key id wrapped it, and the wrapped bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredDataKey {
    id: String,
    kek: String,
    wrapped: String,
    created_ms: i64,
}

/// A line of the data-key store.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Key(StoredDataKey),
    Shredded {
        shredded: String,
        #[serde(rename = "atMs")]
        at_ms: i64,
    },
}

/// The data key sealing new records of one key id.
struct Current {
    id: [u8; 16],
    /// The key, expanded once (not per record).
    cipher: Arc<Cipher>,
    /// Nonces are this random prefix and the count of records sealed so far: unique for the
    /// key without a random-number call per record (the key itself is fresh and used by this
    /// process only).
    nonce_prefix: [u8; 4],
    until: Instant,
    uses: u64,
}

/// What sealing one record takes: the data key's id, the key, the record's nonce.
struct Sealer {
    id: [u8; 16],
    cipher: Arc<Cipher>,
    nonce: [u8; 12],
}

struct Cached {
    kek: String,
    cipher: Arc<Cipher>,
    last_used: Instant,
}

/// Everything that must change together when a key is shredded.
#[derive(Default)]
struct Inner {
    /// Data key id → the stored data key.
    stored: HashMap<[u8; 16], StoredDataKey>,
    /// Deleted key ids.
    shredded: BTreeSet<String>,
    /// Key id → its current data key.
    current: HashMap<String, Current>,
    /// Unwrapped data keys, by data key id.
    cache: HashMap<[u8; 16], Cached>,
}

/// Envelope encryption over a [`KeyProvider`]; see the module docs.
pub struct Kms {
    provider: Arc<dyn KeyProvider>,
    /// The built-in keystore, when it is the provider (key listing, version-1 ciphertexts).
    local: Option<Arc<LocalKeystore>>,
    path: Option<PathBuf>,
    config: KmsConfig,
    inner: Mutex<Inner>,
    /// What the KMS did.
    pub stats: KmsStats,
}

impl Kms {
    /// The KMS of state directory `dir` (in memory when `None`) on the built-in keystore.
    pub fn open(dir: Option<&Path>) -> Result<Kms> {
        Self::with_config(dir, KmsConfig::default())
    }

    /// The KMS of state directory `dir` with the provider `config` names.
    pub fn with_config(dir: Option<&Path>, config: KmsConfig) -> Result<Kms> {
        match config.provider {
            ProviderKind::Local => {
                let local = Arc::new(LocalKeystore::open(dir)?);
                Self::with_provider(dir, config, local.clone(), Some(local))
            }
            ProviderKind::AwsKms => {
                let aws = config
                    .aws
                    .as_ref()
                    .context("kms.provider is aws-kms but kms.aws is not set")?;
                let provider = Arc::new(super::aws::AwsKms::new(aws).context("kms.aws")?);
                Self::with_provider(dir, config, provider, None)
            }
        }
    }

    /// The KMS of state directory `dir` over `provider`; `local` is the built-in keystore
    /// when it is the provider.
    pub fn with_provider(
        dir: Option<&Path>,
        config: KmsConfig,
        provider: Arc<dyn KeyProvider>,
        local: Option<Arc<LocalKeystore>>,
    ) -> Result<Kms> {
        let path = dir.map(|d| d.join(DATA_KEYS_FILE));
        let mut inner = Inner::default();
        if let Some(p) = path.as_deref().filter(|p| p.exists()) {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let line: Line = serde_json::from_str(line)
                    .with_context(|| format!("{} line {}", p.display(), n + 1))?;
                match line {
                    Line::Key(k) => {
                        let id = data_key_id(&k.id)
                            .with_context(|| format!("{} line {}", p.display(), n + 1))?;
                        inner.stored.insert(id, k);
                    }
                    Line::Shredded { shredded, .. } => {
                        inner.stored.retain(|_, k| k.kek != shredded);
                        inner.shredded.insert(shredded);
                    }
                }
            }
        }
        Ok(Kms {
            provider,
            local,
            path,
            config,
            inner: Mutex::new(inner),
            stats: KmsStats::default(),
        })
    }

    /// The provider's kind (`local`, `aws-kms`).
    pub fn provider_kind(&self) -> &'static str {
        self.provider.kind()
    }

    /// Seals `plaintext` under key id `kek`, binding `aad`.
    pub fn encrypt(&self, kek: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
        self.encrypt_after(kek, &[], plaintext, aad)
    }

    /// `prefix` followed by what [`Kms::encrypt`] makes of `plaintext`, in one buffer (the
    /// record hooks seal a record's value into its new value without a second copy).
    pub fn encrypt_after(
        &self,
        kek: &str,
        prefix: &[u8],
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, String> {
        if kek.is_empty() || kek.len() > 255 {
            return Err("a key id must be 1 to 255 bytes".into());
        }
        let Sealer { id, cipher, nonce } = self.current(kek)?;
        let mut out = Vec::with_capacity(
            prefix.len() + 2 + kek.len() + 16 + NONCE_LEN + plaintext.len() + TAG_LEN,
        );
        out.extend_from_slice(prefix);
        out.push(FORMAT_V2);
        out.push(kek.len() as u8);
        out.extend_from_slice(kek.as_bytes());
        out.extend_from_slice(&id);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        cipher.seal_tail(nonce, aad, &mut out, start)?;
        Ok(out)
    }

    /// Opens what [`Kms::encrypt`] sealed with the same `aad`.
    pub fn decrypt(&self, data: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
        let bad = || "not a Sluice ciphertext".to_string();
        let (&format, rest) = data.split_first().ok_or_else(bad)?;
        let (&kek_len, rest) = rest.split_first().ok_or_else(bad)?;
        let kek_len = usize::from(kek_len);
        if rest.len() < kek_len {
            return Err(bad());
        }
        let (kek, rest) = rest.split_at(kek_len);
        let kek = std::str::from_utf8(kek).map_err(|_| bad())?;
        match format {
            FORMAT_V1 => {
                if rest.len() < 12 {
                    return Err(bad());
                }
                if self.is_shredded(kek) {
                    return Err(format!("key `{kek}` was deleted"));
                }
                let key = self
                    .local
                    .as_ref()
                    .and_then(|l| l.first_version(kek))
                    .ok_or_else(|| format!("unknown key `{kek}`"))?;
                open(&key, &rest[..12], &rest[12..], aad)
            }
            FORMAT_V2 => {
                if rest.len() < 16 + 12 {
                    return Err(bad());
                }
                let id: [u8; 16] = rest[..16].try_into().expect("sixteen bytes");
                let cipher = self.data_key(kek, &id)?;
                cipher.open(&rest[16..28], &rest[28..], aad)
            }
            _ => Err(bad()),
        }
    }

    /// Makes a new version of `kek` wrap data keys from now on (the built-in keystore);
    /// records sealed before still decrypt.
    pub fn rotate(&self, kek: &str) -> Result<(), ProviderError> {
        if self.is_shredded(kek) {
            return Err(ProviderError::Refused(format!("key `{kek}` was deleted")));
        }
        self.provider.rotate_key(kek)?;
        // The next record gets a data key wrapped by the new version.
        self.lock().current.remove(kek);
        Ok(())
    }

    /// Deletes key id `kek` for good: see the module docs. `Ok(None)` when the gateway never
    /// knew it.
    pub fn shred(&self, kek: &str) -> Result<Option<Shredded>, ProviderError> {
        let known_locally = self.local.as_ref().is_some_and(|l| l.get(kek).is_some());
        let mut inner = self.lock();
        let data_keys = inner.stored.values().filter(|k| k.kek == kek).count();
        if data_keys == 0 && !known_locally && !inner.current.contains_key(kek) {
            return Ok(None);
        }
        // The file first: if it cannot be rewritten, nothing changes.
        let mut kept: Vec<Line> = inner
            .stored
            .values()
            .filter(|k| k.kek != kek)
            .cloned()
            .map(Line::Key)
            .collect();
        let now = now_ms();
        for s in inner
            .shredded
            .iter()
            .chain(std::iter::once(&kek.to_string()))
        {
            kept.push(Line::Shredded {
                shredded: s.clone(),
                at_ms: now,
            });
        }
        self.rewrite(&kept)?;
        inner.stored.retain(|_, k| k.kek != kek);
        inner.cache.retain(|_, c| c.kek != kek);
        inner.current.remove(kek);
        inner.shredded.insert(kek.to_string());
        drop(inner);
        let provider_deleted = self.provider.delete_key(kek)?;
        self.stats.keys_shredded.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Shredded {
            id: kek.to_string(),
            data_keys,
            provider_deleted,
        }))
    }

    /// Every key id the gateway knows: the built-in keystore's, and those that wrapped a stored
    /// data key.
    pub fn keys(&self) -> Vec<KeySummary> {
        let inner = self.lock();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for k in inner.stored.values() {
            *counts.entry(k.kek.as_str()).or_default() += 1;
        }
        let mut out: Vec<KeySummary> = Vec::new();
        if let Some(local) = &self.local {
            for k in local.list() {
                out.push(KeySummary {
                    data_keys: counts.remove(k.id.as_str()).unwrap_or(0),
                    id: k.id,
                    provider: self.provider.kind(),
                    versions: Some(k.versions),
                    created_ms: Some(k.created_ms),
                });
            }
        }
        for (id, n) in counts {
            out.push(KeySummary {
                id: id.to_string(),
                provider: self.provider.kind(),
                versions: None,
                data_keys: n,
                created_ms: None,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Whether `kek` was deleted.
    pub fn is_shredded(&self, kek: &str) -> bool {
        self.lock().shredded.contains(kek)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("kms lock")
    }

    /// The current data key of `kek` (made and stored when there is none or it expired) and
    /// the nonce for the next record it seals.
    fn current(&self, kek: &str) -> Result<Sealer, String> {
        {
            let mut inner = self.lock();
            if inner.shredded.contains(kek) {
                return Err(format!("key `{kek}` was deleted"));
            }
            if let Some(c) = inner.current.get_mut(kek) {
                if c.until > Instant::now() && c.uses < MAX_USES {
                    let nonce = nonce(&c.nonce_prefix, c.uses);
                    c.uses += 1;
                    return Ok(Sealer {
                        id: c.id,
                        cipher: c.cipher.clone(),
                        nonce,
                    });
                }
            }
        }
        // The provider call (maybe a network round trip) runs without the lock. Two callers
        // may both make a data key for the same id; both are stored, the second one stays.
        let made = self.provider.generate_data_key(kek).inspect_err(|_| {
            self.stats.provider_errors.fetch_add(1, Ordering::Relaxed);
        });
        let made = made.map_err(|e| e.to_string())?;
        self.stats
            .data_keys_generated
            .fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 16];
        let mut nonce_prefix = [0u8; 4];
        getrandom::fill(&mut id).map_err(|e| e.to_string())?;
        getrandom::fill(&mut nonce_prefix).map_err(|e| e.to_string())?;
        let cipher = Arc::new(Cipher::new(&made.plaintext));
        let stored = StoredDataKey {
            id: hex(&id),
            kek: kek.to_string(),
            wrapped: hex(&made.wrapped),
            created_ms: now_ms(),
        };
        let mut inner = self.lock();
        if inner.shredded.contains(kek) {
            return Err(format!("key `{kek}` was deleted"));
        }
        // Stored before any record sealed with it leaves the host.
        self.append(&Line::Key(stored.clone()))
            .map_err(|e| format!("storing a data key: {e}"))?;
        inner.stored.insert(id, stored);
        let ttl = Duration::from_secs(self.config.data_key_ttl_secs.max(1));
        inner.current.insert(
            kek.to_string(),
            Current {
                id,
                cipher: cipher.clone(),
                nonce_prefix,
                until: Instant::now() + ttl,
                uses: 1,
            },
        );
        Ok(Sealer {
            id,
            cipher,
            nonce: nonce(&nonce_prefix, 0),
        })
    }

    /// The unwrapped data key `id` of `kek`, from the cache or through the provider.
    fn data_key(&self, kek: &str, id: &[u8; 16]) -> Result<Arc<Cipher>, String> {
        let wrapped = {
            let mut inner = self.lock();
            if let Some(c) = inner.cache.get_mut(id) {
                if c.kek != kek {
                    return Err("the ciphertext names another key than its data key's".into());
                }
                c.last_used = Instant::now();
                return Ok(c.cipher.clone());
            }
            if inner.shredded.contains(kek) {
                return Err(format!("key `{kek}` was deleted"));
            }
            let stored = inner
                .stored
                .get(id)
                .ok_or_else(|| format!("unknown data key of key `{kek}`"))?;
            if stored.kek != kek {
                return Err("the ciphertext names another key than its data key's".into());
            }
            unhex(&stored.wrapped).ok_or("a stored data key is not hex")?
        };
        let key = self
            .provider
            .unwrap_data_key(kek, &wrapped)
            .inspect_err(|_| {
                self.stats.provider_errors.fetch_add(1, Ordering::Relaxed);
            })
            .map_err(|e| e.to_string())?;
        self.stats
            .data_keys_unwrapped
            .fetch_add(1, Ordering::Relaxed);
        let cipher = Arc::new(Cipher::new(&key));
        let mut inner = self.lock();
        // Shredded while the provider answered: the key must not come back through the cache.
        if !inner.stored.contains_key(id) {
            return Err(format!("key `{kek}` was deleted"));
        }
        if inner.cache.len() >= self.config.data_key_cache.max(1) {
            let oldest = inner
                .cache
                .iter()
                .min_by_key(|(_, c)| c.last_used)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                inner.cache.remove(&oldest);
            }
        }
        inner.cache.insert(
            *id,
            Cached {
                kek: kek.to_string(),
                cipher: cipher.clone(),
                last_used: Instant::now(),
            },
        );
        Ok(cipher)
    }

    fn append(&self, line: &Line) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut text = serde_json::to_vec(line)?;
        text.push(b'\n');
        let mut file = open_private_append(path)?;
        file.write_all(&text)?;
        file.sync_data()
    }

    fn rewrite(&self, lines: &[Line]) -> Result<(), ProviderError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut text = Vec::new();
        for line in lines {
            serde_json::to_writer(&mut text, line)
                .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
            text.push(b'\n');
        }
        crate::atomic_file::write_atomic(path, &text, true)
            .map_err(|e| ProviderError::Unavailable(format!("storing data keys: {e}")))
    }
}

fn open_private_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn open(key: &SecretKey, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
    Cipher::new(key).open(nonce, msg, aad)
}

/// The nonce of the `n`th record a data key seals.
fn nonce(prefix: &[u8; 4], n: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(prefix);
    nonce[4..].copy_from_slice(&n.to_be_bytes());
    nonce
}

fn data_key_id(text: &str) -> Result<[u8; 16]> {
    unhex(text)
        .and_then(|b| b.try_into().ok())
        .context("a data key id is 16 hex bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seals as the first format did: with the key itself.
    fn seal(key: &SecretKey, nonce: &[u8; 12], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = msg.to_vec();
        Cipher::new(key).seal_tail(*nonce, aad, &mut out, 0)?;
        Ok(out)
    }

    /// A private state directory, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("sluice-kms-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn generated(kms: &Kms) -> u64 {
        kms.stats.data_keys_generated.load(Ordering::Relaxed)
    }

    fn unwrapped(kms: &Kms) -> u64 {
        kms.stats.data_keys_unwrapped.load(Ordering::Relaxed)
    }

    #[test]
    fn round_trip_one_data_key_per_window_and_persistence() {
        let dir = Dir::new("round-trip");
        let kms = Kms::open(Some(&dir.0)).unwrap();
        let sealed: Vec<Vec<u8>> = (0..100)
            .map(|i| {
                kms.encrypt("k1", format!("secret {i}").as_bytes(), b"value")
                    .unwrap()
            })
            .collect();
        assert_eq!(generated(&kms), 1, "one data key for the window");
        let nonces: std::collections::HashSet<&[u8]> = sealed
            .iter()
            .map(|c| &c[2 + 2 + 16..2 + 2 + 16 + 12])
            .collect();
        assert_eq!(nonces.len(), sealed.len(), "every record its own nonce");
        assert!(!sealed[0].windows(6).any(|w| w == b"secret"));
        assert_eq!(kms.decrypt(&sealed[7], b"value").unwrap(), b"secret 7");
        assert!(kms.decrypt(&sealed[7], b"key").is_err(), "AAD is bound");
        // A restarted gateway: the data key comes from the store, unwrapped once.
        let again = Kms::open(Some(&dir.0)).unwrap();
        for (i, c) in sealed.iter().enumerate() {
            assert_eq!(
                again.decrypt(c, b"value").unwrap(),
                format!("secret {i}").as_bytes()
            );
        }
        assert_eq!(unwrapped(&again), 1);
        assert!(again.decrypt(b"junk", b"").is_err());
        // The files are private.
        use std::os::unix::fs::PermissionsExt;
        for f in [DATA_KEYS_FILE, super::super::local::FILE] {
            let mode = std::fs::metadata(dir.0.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
        }
    }

    #[test]
    fn an_expired_window_makes_a_new_data_key() {
        let kms = Kms::with_config(
            None,
            KmsConfig {
                data_key_ttl_secs: 1,
                ..KmsConfig::default()
            },
        )
        .unwrap();
        let a = kms.encrypt("k", b"a", b"").unwrap();
        kms.lock().current.get_mut("k").unwrap().until = Instant::now();
        let b = kms.encrypt("k", b"b", b"").unwrap();
        assert_eq!(generated(&kms), 2);
        assert_ne!(a[3..19], b[3..19], "another data key id");
        assert_eq!(kms.decrypt(&a, b"").unwrap(), b"a");
        assert_eq!(kms.decrypt(&b, b"").unwrap(), b"b");
    }

    #[test]
    fn rotation_keeps_old_records_readable() {
        let dir = Dir::new("rotate");
        let kms = Kms::open(Some(&dir.0)).unwrap();
        let before = kms.encrypt("k", b"before", b"").unwrap();
        kms.rotate("k").unwrap();
        let after = kms.encrypt("k", b"after", b"").unwrap();
        assert_eq!(generated(&kms), 2, "a new data key under the new version");
        let keys = kms.keys();
        assert_eq!(keys.len(), 1);
        assert_eq!((keys[0].versions, keys[0].data_keys), (Some(2), 2));
        let again = Kms::open(Some(&dir.0)).unwrap();
        assert_eq!(again.decrypt(&before, b"").unwrap(), b"before");
        assert_eq!(again.decrypt(&after, b"").unwrap(), b"after");
    }

    #[test]
    fn shredding_a_key_makes_its_records_unreadable_at_once_and_after_restart() {
        let dir = Dir::new("shred");
        let kms = Kms::open(Some(&dir.0)).unwrap();
        let gone = kms.encrypt("customer-1", b"one", b"").unwrap();
        let kept = kms.encrypt("customer-2", b"two", b"").unwrap();
        // Cached on both sides before the shred.
        assert_eq!(kms.decrypt(&gone, b"").unwrap(), b"one");
        let report = kms.shred("customer-1").unwrap().unwrap();
        assert_eq!(
            report,
            Shredded {
                id: "customer-1".into(),
                data_keys: 1,
                provider_deleted: true
            }
        );
        assert!(kms.decrypt(&gone, b"").unwrap_err().contains("deleted"));
        assert_eq!(kms.decrypt(&kept, b"").unwrap(), b"two");
        assert!(
            kms.encrypt("customer-1", b"again", b"").is_err(),
            "a deleted id stays deleted"
        );
        assert!(kms.rotate("customer-1").is_err());
        assert_eq!(kms.shred("never-seen").unwrap(), None);
        let ids: Vec<String> = kms.keys().into_iter().map(|k| k.id).collect();
        assert_eq!(ids, ["customer-2"]);
        let again = Kms::open(Some(&dir.0)).unwrap();
        assert!(again.decrypt(&gone, b"").is_err());
        assert!(again.encrypt("customer-1", b"again", b"").is_err());
        assert_eq!(again.decrypt(&kept, b"").unwrap(), b"two");
        // Nothing of the shredded key is left on disk.
        let keystore = std::fs::read_to_string(dir.0.join(super::super::local::FILE)).unwrap();
        assert!(!keystore.contains("customer-1"));
        let data_keys = std::fs::read_to_string(dir.0.join(DATA_KEYS_FILE)).unwrap();
        assert!(!data_keys.contains("\"kek\":\"customer-1\""));
    }

    #[test]
    fn tampered_ciphertexts_fail() {
        let kms = Kms::open(None).unwrap();
        let c = kms.encrypt("k", b"payload", b"aad").unwrap();
        for i in 0..c.len() {
            let mut t = c.clone();
            t[i] ^= 0x01;
            assert!(kms.decrypt(&t, b"aad").is_err(), "byte {i} flipped");
        }
        assert!(kms.decrypt(&c[..c.len() - 1], b"aad").is_err());
        // Another key's ciphertext with this key's name on it.
        let other = kms.encrypt("other", b"payload", b"aad").unwrap();
        let mut swapped = c[..3].to_vec();
        swapped.extend_from_slice(&other[2 + "other".len()..]);
        assert!(kms.decrypt(&swapped, b"aad").is_err());
    }

    #[test]
    fn first_format_ciphertexts_and_keystores_still_work() {
        let dir = Dir::new("v1");
        let key = [7u8; 32];
        std::fs::write(
            dir.0.join(super::super::local::FILE),
            format!("{{\"old\":\"{}\"}}", hex(&key)),
        )
        .unwrap();
        let nonce = [1u8; 12];
        let sealed = seal(&SecretKey(key), &nonce, b"legacy", b"t").unwrap();
        let mut v1 = vec![FORMAT_V1, 3];
        v1.extend_from_slice(b"old");
        v1.extend_from_slice(&nonce);
        v1.extend_from_slice(&sealed);
        let kms = Kms::open(Some(&dir.0)).unwrap();
        assert_eq!(kms.decrypt(&v1, b"t").unwrap(), b"legacy");
        // New records under the same id use data keys wrapped by that same key.
        let v2 = kms.encrypt("old", b"new", b"t").unwrap();
        assert_eq!(v2[0], FORMAT_V2);
        assert_eq!(kms.keys()[0].versions, Some(1));
        kms.shred("old").unwrap();
        assert!(kms.decrypt(&v1, b"t").is_err());
    }

    /// A provider that is down.
    struct Down;

    impl KeyProvider for Down {
        fn kind(&self) -> &'static str {
            "down"
        }
        fn generate_data_key(&self, _kek: &str) -> Result<super::super::DataKey, ProviderError> {
            Err(ProviderError::Unavailable("connection refused".into()))
        }
        fn unwrap_data_key(&self, _kek: &str, _w: &[u8]) -> Result<SecretKey, ProviderError> {
            Err(ProviderError::Unavailable("connection refused".into()))
        }
    }

    #[test]
    fn a_provider_that_is_down_fails_encryption_and_is_counted() {
        let kms = Kms::with_provider(None, KmsConfig::default(), Arc::new(Down), None).unwrap();
        let e = kms.encrypt("k", b"x", b"").unwrap_err();
        assert!(e.contains("unavailable"), "{e}");
        assert_eq!(kms.stats.provider_errors.load(Ordering::Relaxed), 1);
        assert!(
            kms.rotate("k").is_err(),
            "only the built-in keystore rotates here"
        );
    }
}
