//! AES-256-GCM, the one cipher the KMS seals with: data keys sealing records, and the built-in
//! keystore wrapping data keys.
//!
//! Backed by ring (already linked for TLS), whose AES-GCM is BoringSSL's AES-NI / VAES and
//! carry-less-multiply assembly. With the pure-Rust `aes-gcm` crate, GHASH and AES were the
//! largest host-side items in a profile of the encryption benchmark arm; they are per-record
//! costs of every encryption interceptor.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use super::SecretKey;

/// Length of the authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;
/// Length of a nonce.
pub const NONCE_LEN: usize = 12;

/// An AES-256-GCM key, expanded once.
pub struct Cipher(LessSafeKey);

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

impl Cipher {
    /// The cipher of `key`.
    pub fn new(key: &SecretKey) -> Cipher {
        let key = UnboundKey::new(&AES_256_GCM, &key.0).expect("a 256-bit key is valid");
        Cipher(LessSafeKey::new(key))
    }

    /// Encrypts `buf[start..]` in place and appends the tag. The caller guarantees that
    /// `nonce` is never used twice with this key.
    pub fn seal_tail(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), String> {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf[start..],
            )
            .map_err(|_| "encryption failed".to_string())?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `sealed` (ciphertext ‖ tag) into `out` (appended), or fails without touching
    /// `out`'s existing bytes.
    pub fn open_into(
        &self,
        nonce: &[u8],
        sealed: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let failed = || "decryption failed (wrong key, AAD or corrupted data)".to_string();
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| failed())?;
        if sealed.len() < TAG_LEN {
            return Err(failed());
        }
        let start = out.len();
        out.extend_from_slice(sealed);
        let opened = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[start..],
            )
            .map(|plain| plain.len());
        match opened {
            Ok(len) => {
                out.truncate(start + len);
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(failed())
            }
        }
    }

    /// Opens `sealed` (ciphertext ‖ tag) into a new buffer.
    pub fn open(&self, nonce: &[u8], sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(sealed.len());
        self.open_into(nonce, sealed, aad, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_the_standard_aes_256_gcm() {
        // NIST GCM test vector (gcmEncryptExtIV256.rsp: 96-bit IV, no AAD, 128-bit
        // plaintext, Count 0): the format stays AES-256-GCM whatever implements it.
        let key = SecretKey(
            *b"\x31\xbd\xad\xd9\x66\x98\xc2\x04\xaa\x9c\xe1\x44\x8e\xa9\x4a\xe1\
               \xfb\x4a\x9a\x0b\x3c\x9d\x77\x3b\x51\xbb\x18\x22\x66\x6b\x8f\x22",
        );
        let nonce: [u8; 12] = *b"\x0d\x18\xe0\x6c\x7c\x72\x5a\xc9\xe3\x62\xe1\xce";
        let plain = b"\x2d\xb5\x16\x8e\x93\x25\x56\xf8\x08\x9a\x06\x22\x98\x1d\x01\x7d";
        let cipher = Cipher::new(&key);
        let mut buf = b"hdr".to_vec();
        buf.extend_from_slice(plain);
        cipher.seal_tail(nonce, b"", &mut buf, 3).unwrap();
        assert_eq!(
            &buf[3..19],
            b"\xfa\x43\x62\x18\x96\x61\xd1\x63\xfc\xd6\xa5\x6d\x8b\xf0\x40\x5a"
        );
        assert_eq!(
            &buf[19..],
            b"\xd6\x36\xac\x1b\xbe\xdd\x5c\xc3\xee\x72\x7d\xc2\xab\x4a\x94\x89"
        );
        assert_eq!(cipher.open(&nonce, &buf[3..], b"").unwrap(), plain);

        let mut out = b"kept".to_vec();
        let mut tampered = buf[3..].to_vec();
        tampered[0] ^= 1;
        assert!(cipher.open_into(&nonce, &tampered, b"", &mut out).is_err());
        assert_eq!(out, b"kept");
        assert!(cipher.open(&nonce, &buf[3..], b"other aad").is_err());
        assert!(cipher.open(&nonce[..11], &buf[3..], b"").is_err());
        assert!(cipher.open(&nonce, &buf[3..10], b"").is_err());
    }
}
