//! The built-in keystore: key-encryption keys kept by the gateway itself, in a private file of
//! the state directory (`kms-keys.json`, mode 0600), or in memory when there is none.
//!
//! Each key id has versions: the newest wraps new data keys, every older one still unwraps
//! what it wrapped ([`LocalKeystore::rotate`]). A key id is created on first use. Deleting a
//! key id removes all its versions from the file, so nothing wrapped by it can be unwrapped
//! again, by this process or after a restart.
//!
//! A wrapped data key is `version (u32, big-endian) ‖ nonce (12) ‖ AES-256-GCM(KEK_version,
//! data key, aad = key id)` (64 bytes): binding the key id means a wrapped key copied under
//! another id does not unwrap.
//!
//! Files written by earlier gateways (`{"id": "hex key"}`) are read as version 1 of each key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::aead::Cipher;
use super::{hex, now_ms, unhex, DataKey, KeyProvider, ProviderError, SecretKey};

/// The file's name in the state directory.
pub const FILE: &str = "kms-keys.json";

/// One key id: its versions, oldest first, and when it was created and last rotated.
#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    /// Hex key material, version `i + 1` at index `i`.
    versions: Vec<String>,
    /// Milliseconds since the epoch (0 when unknown: keys from earlier files).
    #[serde(default)]
    created_ms: i64,
    #[serde(default)]
    rotated_ms: i64,
}

/// What the keystore file holds.
#[derive(Serialize, Deserialize)]
struct File {
    format: u32,
    keys: BTreeMap<String, StoredKey>,
}

/// What the admin API shows of a key: never its material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    /// The key id.
    pub id: String,
    /// The number of versions; the newest wraps new data keys.
    pub versions: u32,
    /// When it was created, in milliseconds since the epoch (0 when unknown).
    pub created_ms: i64,
    /// When it was last rotated (0: never).
    pub rotated_ms: i64,
}

/// The built-in keystore; see the module docs.
pub struct LocalKeystore {
    path: Option<PathBuf>,
    keys: Mutex<BTreeMap<String, StoredKey>>,
}

impl LocalKeystore {
    /// Opens the keystore of state directory `dir` (in memory only when `None`).
    pub fn open(dir: Option<&Path>) -> Result<LocalKeystore> {
        let path = dir.map(|d| d.join(FILE));
        let mut keys = BTreeMap::new();
        if let Some(p) = path.as_deref().filter(|p| p.exists()) {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            keys = match serde_json::from_str::<File>(&text) {
                Ok(file) => file.keys,
                Err(_) => {
                    // The first format: one hex key per id.
                    let old: BTreeMap<String, String> = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not a keystore", p.display()))?;
                    old.into_iter()
                        .map(|(id, hex)| {
                            let key = StoredKey {
                                versions: vec![hex],
                                created_ms: 0,
                                rotated_ms: 0,
                            };
                            (id, key)
                        })
                        .collect()
                }
            };
            for (id, key) in &keys {
                anyhow::ensure!(!key.versions.is_empty(), "key `{id}` has no versions");
                for v in &key.versions {
                    material(v).map_err(|e| anyhow::anyhow!("bad material for key `{id}`: {e}"))?;
                }
            }
        }
        Ok(LocalKeystore {
            path,
            keys: Mutex::new(keys),
        })
    }

    /// Every key id, with what may be shown of it.
    pub fn list(&self) -> Vec<KeyInfo> {
        let keys = self.keys.lock().expect("keystore lock");
        keys.iter().map(|(id, k)| info(id, k)).collect()
    }

    /// One key id, if it exists.
    pub fn get(&self, id: &str) -> Option<KeyInfo> {
        let keys = self.keys.lock().expect("keystore lock");
        keys.get(id).map(|k| info(id, k))
    }

    /// Adds a version to `id` (creating it if needed) that wraps every data key from now on;
    /// older versions still unwrap theirs. Returns the key after rotation.
    pub fn rotate(&self, id: &str) -> Result<KeyInfo, ProviderError> {
        check_id(id)?;
        let mut keys = self.keys.lock().expect("keystore lock");
        let now = now_ms();
        let fresh = hex(&random_key()?.0);
        let key = keys.entry(id.to_string()).or_insert_with(|| StoredKey {
            versions: Vec::new(),
            created_ms: now,
            rotated_ms: 0,
        });
        if !key.versions.is_empty() {
            key.rotated_ms = now;
        }
        key.versions.push(fresh);
        let shown = info(id, key);
        self.save(&keys)?;
        Ok(shown)
    }

    /// Deletes every version of `id`: what they wrapped can never be unwrapped again.
    /// Returns whether the key existed.
    pub fn delete(&self, id: &str) -> Result<bool, ProviderError> {
        let mut keys = self.keys.lock().expect("keystore lock");
        let existed = keys.remove(id).is_some();
        if existed {
            self.save(&keys)?;
        }
        Ok(existed)
    }

    /// The key material of version 1 of `id`, for ciphertexts of the first format, which were
    /// sealed with the key itself rather than with a data key.
    pub(crate) fn first_version(&self, id: &str) -> Option<SecretKey> {
        let keys = self.keys.lock().expect("keystore lock");
        material(keys.get(id)?.versions.first()?).ok()
    }

    /// The newest version of `id`, creating the key on first use.
    fn current(&self, id: &str) -> Result<(u32, SecretKey), ProviderError> {
        check_id(id)?;
        let mut keys = self.keys.lock().expect("keystore lock");
        if let Some(k) = keys.get(id) {
            let v = k.versions.len();
            let key = material(&k.versions[v - 1]).map_err(refused)?;
            return Ok((v as u32, key));
        }
        let key = random_key()?;
        keys.insert(
            id.to_string(),
            StoredKey {
                versions: vec![hex(&key.0)],
                created_ms: now_ms(),
                rotated_ms: 0,
            },
        );
        self.save(&keys)?;
        Ok((1, key))
    }

    fn version(&self, id: &str, version: u32) -> Result<SecretKey, ProviderError> {
        let keys = self.keys.lock().expect("keystore lock");
        let key = keys
            .get(id)
            .ok_or_else(|| ProviderError::UnknownKey(id.to_string()))?;
        let hex = (version as usize)
            .checked_sub(1)
            .and_then(|i| key.versions.get(i))
            .ok_or_else(|| {
                ProviderError::Refused(format!("key `{id}` has no version {version}"))
            })?;
        material(hex).map_err(refused)
    }

    fn save(&self, keys: &BTreeMap<String, StoredKey>) -> Result<(), ProviderError> {
        let Some(p) = &self.path else {
            return Ok(());
        };
        let file = File {
            format: 2,
            keys: keys.clone(),
        };
        let text = serde_json::to_vec(&file).map_err(refused)?;
        crate::atomic_file::write_atomic(p, &text, true)
            .map_err(|e| ProviderError::Unavailable(format!("storing the keystore: {e}")))
    }
}

impl KeyProvider for LocalKeystore {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn generate_data_key(&self, kek: &str) -> Result<DataKey, ProviderError> {
        let (version, key) = self.current(kek)?;
        let plaintext = random_key()?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(refused)?;
        let mut wrapped = Vec::with_capacity(4 + 12 + 32 + 16);
        wrapped.extend_from_slice(&version.to_be_bytes());
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&plaintext.0);
        Cipher::new(&key)
            .seal_tail(nonce, kek.as_bytes(), &mut wrapped, 16)
            .map_err(|_| ProviderError::Refused("wrapping failed".into()))?;
        Ok(DataKey { plaintext, wrapped })
    }

    fn unwrap_data_key(&self, kek: &str, wrapped: &[u8]) -> Result<SecretKey, ProviderError> {
        let bad = || ProviderError::Refused("not a data key wrapped by this keystore".into());
        if wrapped.len() < 4 + 12 + 16 {
            return Err(bad());
        }
        let version = u32::from_be_bytes(wrapped[..4].try_into().expect("four bytes"));
        let key = self.version(kek, version)?;
        let opened = Cipher::new(&key)
            .open(&wrapped[4..16], &wrapped[16..], kek.as_bytes())
            .map_err(|_| bad())?;
        let key: [u8; 32] = opened.as_slice().try_into().map_err(|_| bad())?;
        Ok(SecretKey(key))
    }

    fn rotate_key(&self, kek: &str) -> Result<(), ProviderError> {
        self.rotate(kek).map(|_| ())
    }

    fn delete_key(&self, kek: &str) -> Result<bool, ProviderError> {
        self.delete(kek)
    }
}

fn info(id: &str, k: &StoredKey) -> KeyInfo {
    KeyInfo {
        id: id.to_string(),
        versions: k.versions.len() as u32,
        created_ms: k.created_ms,
        rotated_ms: k.rotated_ms,
    }
}

fn check_id(id: &str) -> Result<(), ProviderError> {
    if id.is_empty() || id.len() > 255 {
        return Err(ProviderError::Refused(
            "a key id must be 1 to 255 bytes".into(),
        ));
    }
    Ok(())
}

fn refused(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Refused(e.to_string())
}

fn random_key() -> Result<SecretKey, ProviderError> {
    let mut key = SecretKey([0; 32]);
    getrandom::fill(&mut key.0).map_err(refused)?;
    Ok(key)
}

fn material(text: &str) -> Result<SecretKey, String> {
    let bytes = unhex(text).ok_or("not hex")?;
    let key: [u8; 32] = bytes.try_into().map_err(|_| "not 32 bytes")?;
    Ok(SecretKey(key))
}
