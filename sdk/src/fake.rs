//! The in-memory host used natively (unit tests): one per thread, inspected through
//! [`crate::testing`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

use crate::{KafkaRecord, Level};

/// State of the fake host of one thread.
pub(crate) struct FakeHost {
    pub(crate) logs: Vec<(Level, String)>,
    pub(crate) counters: BTreeMap<String, u64>,
    pub(crate) gauges: BTreeMap<String, f64>,
    pub(crate) kv: BTreeMap<String, Vec<u8>>,
    pub(crate) published: Vec<(String, KafkaRecord)>,
    pub(crate) publish_error: Option<String>,
    pub(crate) kms_error: Option<String>,
    /// Key ids deleted with [`crate::testing::delete_kms_key`] (crypto-shredding).
    pub(crate) kms_deleted: std::collections::BTreeSet<String>,
    pub(crate) fixed_now_millis: Option<i64>,
    rng: u64,
}

const RNG_SEED: u64 = 0x5EED_5EED_5EED_5EED;

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost {
            logs: Vec::new(),
            counters: BTreeMap::new(),
            gauges: BTreeMap::new(),
            kv: BTreeMap::new(),
            published: Vec::new(),
            publish_error: None,
            kms_error: None,
            kms_deleted: Default::default(),
            fixed_now_millis: None,
            rng: RNG_SEED,
        }
    }
}

impl FakeHost {
    pub(crate) fn now_millis(&self) -> i64 {
        self.fixed_now_millis.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        })
    }

    /// xorshift64*: deterministic, not secure.
    pub(crate) fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let word = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            let n = (len - out.len()).min(8);
            out.extend_from_slice(&word[..n]);
        }
        out
    }
}

thread_local! {
    static HOST: RefCell<FakeHost> = RefCell::new(FakeHost::default());
    static START: Instant = Instant::now();
}

/// Runs `f` on this thread's fake host.
pub(crate) fn with<R>(f: impl FnOnce(&mut FakeHost) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

pub(crate) fn reset() {
    with(|h| *h = FakeHost::default());
}

pub(crate) fn monotonic_nanos() -> u64 {
    START.with(|s| s.elapsed().as_nanos() as u64)
}

const KMS_MAGIC: &[u8; 8] = b"FAKEKMS1";
const KMS_MASK: u8 = 0xA5;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The fake's authentication tag: FNV-1a over the key id, the AAD and the plaintext (with
/// separators), so a changed key id, AAD or body fails like AES-GCM's tag would.
fn kms_tag(key_id: &[u8], aad: &[u8], plaintext: &[u8]) -> u64 {
    let mut all = Vec::with_capacity(key_id.len() + aad.len() + plaintext.len() + 16);
    for part in [key_id, aad, plaintext] {
        all.extend_from_slice(&(part.len() as u64).to_be_bytes());
        all.extend_from_slice(part);
    }
    fnv1a(&all)
}

/// `FAKEKMS1 | key-id length (u16 BE) | key id | tag (u64 BE) | plaintext ^ 0xA5`, the tag
/// being [`kms_tag`].
pub(crate) fn kms_encrypt(key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
    if let Some(e) = with(|h| h.kms_error.clone()) {
        return Err(e);
    }
    if key_id.is_empty() {
        return Err("unknown key ''".to_string());
    }
    if with(|h| h.kms_deleted.contains(key_id)) {
        return Err(format!("key `{key_id}` was deleted"));
    }
    let key_len = u16::try_from(key_id.len()).map_err(|_| "key id too long".to_string())?;
    let mut out = Vec::with_capacity(8 + 2 + key_id.len() + 8 + plaintext.len());
    out.extend_from_slice(KMS_MAGIC);
    out.extend_from_slice(&key_len.to_be_bytes());
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(&kms_tag(key_id.as_bytes(), aad, plaintext).to_be_bytes());
    out.extend(plaintext.iter().map(|b| b ^ KMS_MASK));
    Ok(out)
}

pub(crate) fn kms_decrypt(ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
    if let Some(e) = with(|h| h.kms_error.clone()) {
        return Err(e);
    }
    let bad = || "not a ciphertext produced by kms::encrypt".to_string();
    let rest = ciphertext.strip_prefix(KMS_MAGIC).ok_or_else(bad)?;
    if rest.len() < 2 {
        return Err(bad());
    }
    let key_len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    let rest = &rest[2..];
    if rest.len() < key_len + 8 {
        return Err(bad());
    }
    let key_id = &rest[..key_len];
    if with(|h| {
        h.kms_deleted
            .contains(String::from_utf8_lossy(key_id).as_ref())
    }) {
        return Err(format!(
            "key `{}` was deleted",
            String::from_utf8_lossy(key_id)
        ));
    }
    let tag = u64::from_be_bytes(rest[key_len..key_len + 8].try_into().expect("8 bytes"));
    let plaintext: Vec<u8> = rest[key_len + 8..].iter().map(|b| b ^ KMS_MASK).collect();
    if tag != kms_tag(key_id, aad, &plaintext) {
        return Err("authentication failed (wrong aad or corrupted ciphertext)".to_string());
    }
    Ok(plaintext)
}
