//! A JWT issuer for OAUTHBEARER tests: an ES256 key generated at test time, its JWKS document
//! and signed tokens (valid, expired, for another issuer or audience, or signed by a key the
//! JWKS does not hold).
//!
//! ```ignore
//! let idp = JwtIssuer::new("test-kid");
//! let good = idp.mint(&idp.claims("alice", 300));
//! let expired = idp.mint(&idp.claims("alice", -600));
//! let forged = JwtIssuer::new("test-kid").mint(&idp.claims("alice", 300)); // same kid, other key
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Issuer (`iss`) of the tokens [`JwtIssuer::claims`] builds.
pub const ISSUER: &str = "https://idp.test.invalid/";
/// Audience (`aud`) of the tokens [`JwtIssuer::claims`] builds.
pub const AUDIENCE: &str = "sluice";

/// An ES256 signing key with its JWKS.
pub struct JwtIssuer {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

impl std::fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtIssuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

impl JwtIssuer {
    /// A fresh P-256 key published under key id `kid`.
    pub fn new(kid: &str) -> JwtIssuer {
        let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let key = EncodingKey::from_ec_der(&pair.serialize_der());
        // Uncompressed SEC1 point: 0x04 || X (32 bytes) || Y (32 bytes).
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        assert_eq!(point[0], 4, "uncompressed P-256 point");
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "use": "sig",
            "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        JwtIssuer {
            kid: kid.to_string(),
            key,
            jwk,
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// This key's JWK (public part only).
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The JWKS document (`{"keys": [jwk]}`) as JSON text.
    pub fn jwks_json(&self) -> String {
        json!({ "keys": [self.jwk] }).to_string()
    }

    /// Standard claims: subject `sub`, [`ISSUER`], [`AUDIENCE`], issued now, expiring in
    /// `ttl_secs` (negative: already expired that long ago).
    pub fn claims(&self, sub: &str, ttl_secs: i64) -> Value {
        let now = now_secs();
        json!({
            "sub": sub,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now.min(now + ttl_secs) - 60,
            "nbf": now.min(now + ttl_secs) - 60,
            "exp": now + ttl_secs,
            "scope": "kafka",
        })
    }

    /// Signs `claims` with this key (ES256, header `kid` set).
    pub fn mint(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("signing a JWT")
    }
}

/// Expiry (`exp`, seconds since the epoch) of a token minted by [`JwtIssuer::mint`], read
/// without verification; librdkafka needs it alongside the token.
pub fn expiry_of(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_i64()
}
