//! SASL SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the way Kafka speaks them.
//!
//! The gateway plays both roles:
//!
//! - [`ScramServer`] authenticates clients against stored [`ScramCredential`]s (salted, hashed
//!   keys, never passwords). One value runs one exchange:
//!   [`client_first`](ScramServer::client_first) → [`server_first`](ScramServer::server_first) →
//!   [`client_final`](ScramServer::client_final).
//! - [`ScramClient`] authenticates the gateway's own connections to brokers.
//!
//! Kafka specifics followed here:
//!
//! - Passwords are used as their UTF-8 bytes; like Kafka, no SASLprep normalisation is applied,
//!   so credentials interoperate with ones created by Kafka tooling.
//! - Channel binding is not offered (there are no `-PLUS` mechanisms), so a client asking for
//!   it (`p=`) is refused; `n` and `y` are accepted.
//! - The `tokenauth=true` extension (Kafka delegation tokens) is refused explicitly.
//! - An authorization id, if sent, must equal the username.
//!
//! Unknown users are answered with a deterministic fake salt and the default iteration count,
//! and their exchange fails at the proof check with the same error as a wrong password, so an
//! attacker cannot enumerate usernames. Every secret comparison is constant time, and no error
//! message carries secret material.

use std::fmt;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// A SCRAM mechanism: the hash function of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-256` (RFC 7677).
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    /// `SCRAM-SHA-512`.
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    /// Every supported mechanism, strongest last.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name, e.g. `SCRAM-SHA-256`.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism with this SASL name (exact, as Kafka compares them).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Output length of the hash in bytes (and so of every key and proof).
    pub fn hash_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    /// HMAC(key, data).
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .expect("HMAC accepts keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key)
                    .expect("HMAC accepts keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// H(data).
    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// SaltedPassword := Hi(password, salt, i), i.e. PBKDF2 with HMAC-H.
    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.hash_len()];
        // Zero iterations is not a valid SCRAM count; Hi() needs at least one round.
        let rounds = iterations.max(1);
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, rounds, &mut out)
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, rounds, &mut out)
            }
        }
        out
    }

    /// (ClientKey, StoredKey, ServerKey) from a salted password.
    fn keys(self, salted_password: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let client_key = self.hmac(salted_password, b"Client Key");
        let stored_key = self.hash(&client_key);
        let server_key = self.hmac(salted_password, b"Server Key");
        (client_key, stored_key, server_key)
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a SCRAM exchange or credential was refused. Messages are safe to log: they never
/// contain passwords, keys, proofs or message contents.
#[derive(Debug, thiserror::Error)]
pub enum ScramError {
    /// The message does not follow the SCRAM grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding, which the gateway does not offer.
    #[error("SCRAM channel binding is not supported")]
    ChannelBindingUnsupported,
    /// Kafka's `tokenauth=true` extension: delegation tokens are not supported.
    #[error("SCRAM delegation token authentication (tokenauth=true) is not supported")]
    DelegationTokenUnsupported,
    /// A mandatory extension (`m=`) was sent; none is supported.
    #[error("SCRAM mandatory extension is not supported")]
    MandatoryExtension,
    /// The authorization id differs from the username (Kafka refuses impersonation).
    #[error("SCRAM authorization id differs from the username")]
    AuthzidMismatch,
    /// The channel binding attribute of client-final does not repeat the GS2 header.
    #[error("SCRAM channel binding attribute does not match the GS2 header")]
    ChannelBindingMismatch,
    /// The nonce does not continue the exchange's nonce (replay or confusion).
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// Wrong password or unknown user (deliberately indistinguishable).
    #[error("authentication failed: invalid credentials")]
    AuthenticationFailed,
    /// The server's signature does not prove knowledge of the credential.
    #[error("SCRAM server signature is invalid")]
    InvalidServerSignature,
    /// The server answered `e=...`; its (sanitised) message.
    #[error("SCRAM server rejected authentication: {0}")]
    ServerError(String),
    /// The iteration count is outside the accepted range.
    #[error("SCRAM iteration count {0} is outside the accepted range")]
    IterationCount(u32),
    /// A message arrived in the wrong state of the exchange (including a replay after the end).
    #[error("SCRAM message out of sequence: {0}")]
    OutOfSequence(&'static str),
    /// A stored credential is unusable.
    #[error("invalid SCRAM credential: {0}")]
    InvalidCredential(&'static str),
}

/// What the gateway stores instead of a password: the salt, the iteration count and the two
/// derived keys of RFC 5802 (`StoredKey = H(ClientKey)`, `ServerKey`). Serialised with the
/// byte fields as standard base64 strings; `Debug` shows no key material.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScramCredential {
    /// Random salt.
    #[serde(with = "b64_bytes")]
    pub salt: Vec<u8>,
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    #[serde(with = "b64_bytes")]
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    #[serde(with = "b64_bytes")]
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

impl ScramCredential {
    /// Iteration count for new credentials (Kafka's minimum and usual choice).
    pub const DEFAULT_ITERATIONS: u32 = 4096;
    /// Fewest iterations accepted (Kafka's minimum for both mechanisms).
    pub const MIN_ITERATIONS: u32 = 4096;
    /// Most iterations accepted in a stored credential (Kafka's maximum); bounds the CPU an
    /// authentication can cost.
    pub const MAX_ITERATIONS: u32 = 16384;
    /// Length of the random salt of new credentials.
    pub const SALT_LEN: usize = 32;

    /// Derives a credential for `password` with a fresh random salt.
    pub fn derive(mech: ScramMechanism, password: &str, iterations: u32) -> ScramCredential {
        let mut salt = vec![0u8; Self::SALT_LEN];
        fill_random(&mut salt);
        Self::derive_with_salt(mech, password, &salt, iterations)
    }

    /// Derives a credential for `password` with the given salt (deterministic).
    pub fn derive_with_salt(
        mech: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let salted = mech.salted_password(password, salt, iterations);
        let (_client_key, stored_key, server_key) = mech.keys(&salted);
        ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key,
            server_key,
        }
    }

    /// Constant-time check of a cleartext password (used to verify SASL/PLAIN against the
    /// same store). Costs one PBKDF2 derivation of `iterations` rounds, so stores should
    /// [`validate`](Self::validate) credentials when loading them.
    pub fn verify_password(&self, mech: ScramMechanism, password: &str) -> bool {
        let salted = mech.salted_password(password, &self.salt, self.iterations);
        let (_client_key, stored_key, server_key) = mech.keys(&salted);
        // Evaluate both comparisons (no short-circuit) so timing does not depend on which
        // key differs.
        let stored_ok = ct_eq(&stored_key, &self.stored_key);
        let server_ok = ct_eq(&server_key, &self.server_key);
        stored_ok & server_ok
    }

    /// Checks that the credential is usable with `mech`: key lengths match the hash, the salt
    /// is not empty and the iteration count is within
    /// [`MIN_ITERATIONS`](Self::MIN_ITERATIONS)..=[`MAX_ITERATIONS`](Self::MAX_ITERATIONS).
    /// Stores call this when loading credentials.
    pub fn validate(&self, mech: ScramMechanism) -> Result<(), ScramError> {
        if self.salt.is_empty() {
            return Err(ScramError::InvalidCredential("empty salt"));
        }
        if !(Self::MIN_ITERATIONS..=Self::MAX_ITERATIONS).contains(&self.iterations) {
            return Err(ScramError::IterationCount(self.iterations));
        }
        if self.stored_key.len() != mech.hash_len() || self.server_key.len() != mech.hash_len() {
            return Err(ScramError::InvalidCredential(
                "key length does not match the mechanism",
            ));
        }
        Ok(())
    }
}

/// Serde helpers: `Vec<u8>` as a standard base64 string.
mod b64_bytes {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text.as_bytes())
            .map_err(|_| serde::de::Error::custom("invalid base64"))
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// Fills `buf` from the operating system's CSPRNG. Without working randomness no secure
/// nonce or salt can be made, so failure is fatal rather than silently weak.
fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("operating system random number generator failed");
}

/// A fresh nonce: 24 random bytes in base64 (printable, never a comma).
fn random_nonce() -> String {
    let mut bytes = [0u8; 24];
    fill_random(&mut bytes);
    B64.encode(bytes)
}

/// Per-process secret behind the fake salts of unknown users.
fn fake_salt_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        fill_random(&mut secret);
        secret
    })
}

/// The salt shown for an unknown user: stable for the life of the process (so repeated
/// probes see the same salt, as for a real user) and unpredictable without the secret.
fn fake_salt(mech: ScramMechanism, username: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(mech.name().len() + 1 + username.len());
    data.extend_from_slice(mech.name().as_bytes());
    data.push(0);
    data.extend_from_slice(username.as_bytes());
    ScramMechanism::Sha256.hmac(fake_salt_secret(), &data)
}

/// Decodes a `saslname` (`=2C` → `,`, `=3D` → `=`); any other `=` is malformed.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('=') {
        out.push_str(&rest[..pos]);
        let escape = rest.get(pos + 1..pos + 3);
        match escape {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(ScramError::Malformed("invalid escape in username")),
        }
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Encodes a username as a `saslname`.
fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// `printable = %x21-2B / %x2D-7E` (no comma), at least one character.
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Splits `k=value`, requiring a non-empty alphanumeric key.
fn split_attr(attr: &str) -> Option<(&str, &str)> {
    let (key, value) = attr.split_once('=')?;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some((key, value))
}

/// The parts of a client-first-message the exchange needs.
struct ClientFirst {
    gs2_header: String,
    bare: String,
    username: String,
    authzid: Option<String>,
    nonce: String,
}

fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let (cbind, rest) = text
        .split_once(',')
        .ok_or(ScramError::Malformed("missing GS2 header"))?;
    match cbind {
        "n" | "y" => {}
        _ if cbind.starts_with("p=") => return Err(ScramError::ChannelBindingUnsupported),
        _ => return Err(ScramError::Malformed("invalid channel binding flag")),
    }
    let (authzid_part, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("missing GS2 header"))?;
    let authzid = if authzid_part.is_empty() {
        None
    } else {
        let raw = authzid_part
            .strip_prefix("a=")
            .ok_or(ScramError::Malformed("invalid authorization id"))?;
        Some(decode_saslname(raw)?)
    };
    let gs2_header = text[..text.len() - bare.len()].to_string();

    let mut attrs = bare.split(',');
    let first = attrs.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(ScramError::MandatoryExtension);
    }
    let username = decode_saslname(
        first
            .strip_prefix("n=")
            .ok_or(ScramError::Malformed("missing username"))?,
    )?;
    if username.is_empty() {
        return Err(ScramError::Malformed("empty username"));
    }
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::Malformed("missing nonce"))?;
    if !valid_nonce(nonce) {
        return Err(ScramError::Malformed("invalid nonce"));
    }
    for ext in attrs {
        let (key, value) = split_attr(ext).ok_or(ScramError::Malformed("invalid extension"))?;
        // Kafka's delegation-token extension; other extensions are informational and ignored.
        if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
            return Err(ScramError::DelegationTokenUnsupported);
        }
    }
    Ok(ClientFirst {
        gs2_header,
        bare: bare.to_string(),
        username,
        authzid,
        nonce: nonce.to_string(),
    })
}

/// Username from a client-first-message without running an exchange (delegated mode learns
/// the principal this way). `None` if the message is not a valid client-first-message.
pub fn client_first_username(msg: &[u8]) -> Option<String> {
    parse_client_first(msg).ok().map(|m| m.username)
}

/// Where a server exchange stands.
enum ServerState {
    /// Waiting for client-first.
    Initial,
    /// Client-first parsed; waiting for the credential lookup.
    ClientFirst(ClientFirst),
    /// Server-first sent; waiting for client-final.
    ServerFirst {
        gs2_header: String,
        /// `client-first-message-bare "," server-first-message`.
        auth_prefix: String,
        nonce: String,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
        /// False for an unknown user: the proof can never be accepted.
        known_user: bool,
    },
    /// Authenticated.
    Done,
    /// Failed; every further message is refused.
    Failed,
}

impl ServerState {
    fn name(&self) -> &'static str {
        match self {
            ServerState::Initial => "initial",
            ServerState::ClientFirst(_) => "client-first received",
            ServerState::ServerFirst { .. } => "server-first sent",
            ServerState::Done => "done",
            ServerState::Failed => "failed",
        }
    }
}

/// The server side of one SCRAM exchange.
pub struct ScramServer {
    mech: ScramMechanism,
    server_nonce: String,
    state: ServerState,
    /// The iteration count offered to unknown users (see [`ScramServer::offer_to_unknown`]).
    unknown_iterations: u32,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mech)
            .field("state", &self.state.name())
            .finish()
    }
}

impl ScramServer {
    /// A new exchange for `mech`, with a fresh random server nonce.
    pub fn new(mech: ScramMechanism) -> Self {
        Self::with_server_nonce(mech, random_nonce())
    }

    /// A new exchange with a fixed server nonce (test vectors only: a predictable nonce
    /// allows replay).
    #[cfg(test)]
    fn with_fixed_nonce(mech: ScramMechanism, server_nonce: &str) -> Self {
        Self::with_server_nonce(mech, server_nonce.to_string())
    }

    fn with_server_nonce(mech: ScramMechanism, server_nonce: String) -> Self {
        ScramServer {
            mech,
            server_nonce,
            state: ServerState::Initial,
            unknown_iterations: ScramCredential::DEFAULT_ITERATIONS,
        }
    }

    /// The iteration count to offer an unknown user: the one real accounts mostly have, so
    /// that the `i=` of the answer does not tell unknown users apart (default 4096).
    pub fn offer_to_unknown(&mut self, iterations: u32) {
        self.unknown_iterations = iterations;
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mech
    }

    /// True once [`client_final`](Self::client_final) has accepted the client's proof.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, ServerState::Done)
    }

    /// Parses client-first-message; returns the (decoded `=2C` / `=3D`) username to look up.
    /// Channel binding requests (`p=`), mandatory extensions, Kafka's `tokenauth=true`
    /// extension and an authorization id other than the username are refused.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        if !matches!(self.state, ServerState::Initial) {
            return Err(self.fail(ScramError::OutOfSequence("client-first already received")));
        }
        let parsed = match parse_client_first(msg) {
            Ok(parsed) => parsed,
            Err(e) => return Err(self.fail(e)),
        };
        if parsed
            .authzid
            .as_deref()
            .is_some_and(|a| a != parsed.username)
        {
            return Err(self.fail(ScramError::AuthzidMismatch));
        }
        let username = parsed.username.clone();
        self.state = ServerState::ClientFirst(parsed);
        Ok(username)
    }

    /// Builds server-first-message for the user's credential. With `None` (unknown user) the
    /// answer looks the same, with a fake salt derived from a per-process secret and the
    /// username (stable across calls) and the iteration count of
    /// [`offer_to_unknown`](Self::offer_to_unknown); the exchange then
    /// fails at [`client_final`](Self::client_final) exactly as a wrong password does.
    ///
    /// Called out of sequence, the exchange is marked failed and an empty message returned;
    /// the following `client_final` reports the error.
    pub fn server_first(&mut self, credential: Option<&ScramCredential>) -> Vec<u8> {
        let state = std::mem::replace(&mut self.state, ServerState::Failed);
        let ServerState::ClientFirst(first) = state else {
            return Vec::new();
        };
        let (salt, iterations, stored_key, server_key, known_user) = match credential {
            Some(c) => (
                c.salt.clone(),
                c.iterations,
                c.stored_key.clone(),
                c.server_key.clone(),
                true,
            ),
            None => {
                // Random keys keep the proof check doing the same work as for a real user.
                let mut stored = vec![0u8; self.mech.hash_len()];
                let mut server = vec![0u8; self.mech.hash_len()];
                fill_random(&mut stored);
                fill_random(&mut server);
                (
                    fake_salt(self.mech, &first.username),
                    self.unknown_iterations,
                    stored,
                    server,
                    false,
                )
            }
        };
        let nonce = format!("{}{}", first.nonce, self.server_nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        self.state = ServerState::ServerFirst {
            gs2_header: first.gs2_header,
            auth_prefix: format!("{},{}", first.bare, server_first),
            nonce,
            stored_key,
            server_key,
            known_user,
        };
        server_first.into_bytes()
    }

    /// Verifies client-final-message (channel binding repeating the GS2 header, e.g. `biws`
    /// for `n,,`; the combined nonce; the proof) and returns server-final-message (`v=...`).
    pub fn client_final(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        let state = std::mem::replace(&mut self.state, ServerState::Failed);
        let ServerState::ServerFirst {
            gs2_header,
            auth_prefix,
            nonce,
            stored_key,
            server_key,
            known_user,
        } = state
        else {
            return Err(ScramError::OutOfSequence(
                "client-final without a preceding server-first",
            ));
        };
        let text = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // The proof is the last attribute; everything before it is signed.
        let (without_proof, proof_b64) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("missing proof"))?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("missing channel binding"))?;
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("missing nonce"))?;
        if attrs.any(|ext| split_attr(ext).is_none()) {
            return Err(ScramError::Malformed("invalid extension"));
        }
        let cbind = B64
            .decode(cbind)
            .map_err(|_| ScramError::Malformed("invalid channel binding encoding"))?;
        if cbind != gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if !ct_eq(client_nonce.as_bytes(), nonce.as_bytes()) {
            return Err(ScramError::NonceMismatch);
        }
        let proof = B64
            .decode(proof_b64)
            .map_err(|_| ScramError::Malformed("invalid proof encoding"))?;
        if proof.len() != self.mech.hash_len() {
            return Err(ScramError::Malformed("proof has the wrong length"));
        }

        let auth_message = format!("{auth_prefix},{without_proof}");
        let client_signature = self.mech.hmac(&stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let proof_ok = ct_eq(&self.mech.hash(&client_key), &stored_key);
        if !(proof_ok & known_user) {
            return Err(ScramError::AuthenticationFailed);
        }
        let server_signature = self.mech.hmac(&server_key, auth_message.as_bytes());
        self.state = ServerState::Done;
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }

    /// Marks the exchange failed and passes the error through.
    fn fail(&mut self, e: ScramError) -> ScramError {
        self.state = ServerState::Failed;
        e
    }
}

/// Where a client exchange stands.
enum ClientState {
    Initial,
    FirstSent { bare: String, nonce: String },
    FinalSent { server_signature: Vec<u8> },
    Done,
    Failed,
}

/// The client side of one SCRAM exchange, for the gateway's own upstream connections.
pub struct ScramClient {
    mech: ScramMechanism,
    username: String,
    password: String,
    nonce: String,
    state: ClientState,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mech)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl ScramClient {
    /// Most iterations a server may ask for: bounds the CPU a hostile or misconfigured server
    /// can make the gateway spend, while leaving room above Kafka's own maximum.
    pub const MAX_SERVER_ITERATIONS: u32 = 100_000;

    /// A new exchange authenticating `username` with `password`.
    pub fn new(mech: ScramMechanism, username: &str, password: &str) -> Self {
        Self::with_nonce(mech, username, password, random_nonce())
    }

    /// A client with a fixed nonce (test vectors only).
    #[cfg(test)]
    fn with_fixed_nonce(mech: ScramMechanism, username: &str, password: &str, nonce: &str) -> Self {
        Self::with_nonce(mech, username, password, nonce.to_string())
    }

    fn with_nonce(mech: ScramMechanism, username: &str, password: &str, nonce: String) -> Self {
        ScramClient {
            mech,
            username: username.to_string(),
            password: password.to_string(),
            nonce,
            state: ClientState::Initial,
        }
    }

    /// client-first-message: `n,,n=<user>,r=<nonce>`. Called a second time, the exchange is
    /// failed and an empty message returned (a nonce is never reused).
    pub fn client_first(&mut self) -> Vec<u8> {
        if !matches!(self.state, ClientState::Initial) {
            self.state = ClientState::Failed;
            return Vec::new();
        }
        let bare = format!("n={},r={}", encode_saslname(&self.username), self.nonce);
        let msg = format!("n,,{bare}");
        self.state = ClientState::FirstSent {
            bare,
            nonce: self.nonce.clone(),
        };
        msg.into_bytes()
    }

    /// Processes server-first-message and returns client-final-message with the proof.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        let state = std::mem::replace(&mut self.state, ClientState::Failed);
        let ClientState::FirstSent {
            bare,
            nonce: client_nonce,
        } = state
        else {
            return Err(ScramError::OutOfSequence(
                "server-first before client-first or after server-first",
            ));
        };
        let text = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut attrs = text.split(',');
        let first = attrs.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(ScramError::MandatoryExtension);
        }
        let nonce = first
            .strip_prefix("r=")
            .ok_or(ScramError::Malformed("missing nonce"))?;
        if !valid_nonce(nonce) {
            return Err(ScramError::Malformed("invalid nonce"));
        }
        // The server must extend our nonce with a part of its own.
        if nonce.len() <= client_nonce.len() || !nonce.starts_with(&client_nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let salt = attrs
            .next()
            .and_then(|a| a.strip_prefix("s="))
            .ok_or(ScramError::Malformed("missing salt"))?;
        let salt = B64
            .decode(salt)
            .map_err(|_| ScramError::Malformed("invalid salt encoding"))?;
        if salt.is_empty() {
            return Err(ScramError::Malformed("empty salt"));
        }
        let iterations = attrs
            .next()
            .and_then(|a| a.strip_prefix("i="))
            .ok_or(ScramError::Malformed("missing iteration count"))?;
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ScramError::Malformed("invalid iteration count"));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::Malformed("invalid iteration count"))?;
        if !(ScramCredential::MIN_ITERATIONS..=Self::MAX_SERVER_ITERATIONS).contains(&iterations) {
            return Err(ScramError::IterationCount(iterations));
        }
        if attrs.any(|ext| split_attr(ext).is_none()) {
            return Err(ScramError::Malformed("invalid extension"));
        }

        let salted = self.mech.salted_password(&self.password, &salt, iterations);
        let (client_key, stored_key, server_key) = self.mech.keys(&salted);
        // We only ever send the `n,,` GS2 header, whose base64 is "biws".
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{bare},{text},{without_proof}");
        let client_signature = self.mech.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_signature = self.mech.hmac(&server_key, auth_message.as_bytes());
        self.state = ClientState::FinalSent { server_signature };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Verifies server-final-message. `v=<signature>` must prove the server knows the
    /// credential; `e=<message>` is an error carrying the server's (sanitised) message.
    pub fn server_final(&mut self, msg: &[u8]) -> Result<(), ScramError> {
        let state = std::mem::replace(&mut self.state, ClientState::Failed);
        let ClientState::FinalSent { server_signature } = state else {
            return Err(ScramError::OutOfSequence(
                "server-final before client-final or after the end",
            ));
        };
        let text = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let first = text.split(',').next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            return Err(ScramError::ServerError(sanitize_server_message(error)));
        }
        let verifier = first
            .strip_prefix("v=")
            .ok_or(ScramError::Malformed("missing verifier"))?;
        let verifier = B64
            .decode(verifier)
            .map_err(|_| ScramError::Malformed("invalid verifier encoding"))?;
        if !ct_eq(&verifier, &server_signature) {
            return Err(ScramError::InvalidServerSignature);
        }
        self.state = ClientState::Done;
        Ok(())
    }

    /// True once the server's signature was verified.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }
}

/// A server's `e=` value made safe to log: printable ASCII only, bounded length.
fn sanitize_server_message(s: &str) -> String {
    const MAX: usize = 200;
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 section 3.
    const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
        s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_credential() -> ScramCredential {
        let salt = B64.decode(RFC_SALT).unwrap();
        ScramCredential::derive_with_salt(ScramMechanism::Sha256, "pencil", &salt, 4096)
    }

    /// The server's verdict (server-final on success) and, if it accepted, the client's.
    type Verdicts = (Result<Vec<u8>, ScramError>, Option<Result<(), ScramError>>);

    /// Runs a full exchange; returns the server's and client's verdicts.
    fn exchange(
        mech: ScramMechanism,
        user: &str,
        password: &str,
        stored: Option<&ScramCredential>,
    ) -> Verdicts {
        let mut client = ScramClient::new(mech, user, password);
        let mut server = ScramServer::new(mech);
        let first = client.client_first();
        assert_eq!(server.client_first(&first).unwrap(), user);
        let server_first = server.server_first(stored);
        let client_final = client.server_first(&server_first).unwrap();
        let server_final = server.client_final(&client_final);
        let client_verdict = server_final
            .as_ref()
            .ok()
            .map(|msg| client.server_final(msg));
        (server_final, client_verdict)
    }

    #[test]
    fn mechanism_names() {
        for mech in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_name(mech.name()), Some(mech));
            let json = serde_json::to_string(&mech).unwrap();
            assert_eq!(json, format!("\"{}\"", mech.name()));
        }
        assert_eq!(ScramMechanism::from_name("SCRAM-SHA-1"), None);
        assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
    }

    #[test]
    fn rfc7677_client_side() {
        let mut client = ScramClient::with_fixed_nonce(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            RFC_CLIENT_NONCE,
        );
        assert_eq!(client.client_first(), RFC_CLIENT_FIRST.as_bytes());
        let client_final = client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(client_final).unwrap(), RFC_CLIENT_FINAL);
        client.server_final(RFC_SERVER_FINAL.as_bytes()).unwrap();
        assert!(client.is_authenticated());
    }

    #[test]
    fn rfc7677_server_side() {
        let credential = rfc_credential();
        let mut server = ScramServer::with_fixed_nonce(ScramMechanism::Sha256, RFC_SERVER_NONCE);
        assert_eq!(
            server.client_first(RFC_CLIENT_FIRST.as_bytes()).unwrap(),
            "user"
        );
        let server_first = server.server_first(Some(&credential));
        assert_eq!(String::from_utf8(server_first).unwrap(), RFC_SERVER_FIRST);
        let server_final = server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(server_final).unwrap(), RFC_SERVER_FINAL);
        assert!(server.is_authenticated());
    }

    #[test]
    fn round_trip_both_mechanisms() {
        for mech in ScramMechanism::ALL {
            let credential = ScramCredential::derive(mech, "s3cret=,pw", 4096);
            credential.validate(mech).unwrap();
            let (server, client) = exchange(mech, "alice,=x", "s3cret=,pw", Some(&credential));
            assert!(server.is_ok(), "{mech}: {server:?}");
            client.unwrap().unwrap();
        }
    }

    #[test]
    fn wrong_password_fails() {
        for mech in ScramMechanism::ALL {
            let credential = ScramCredential::derive(mech, "right", 4096);
            let (server, client) = exchange(mech, "alice", "wrong", Some(&credential));
            assert!(matches!(server, Err(ScramError::AuthenticationFailed)));
            assert!(client.is_none());
        }
    }

    #[test]
    fn unknown_user_looks_like_wrong_password() {
        let mech = ScramMechanism::Sha256;
        let credential = ScramCredential::derive(mech, "right", 4096);

        let server_first_for = |user: &str, cred: Option<&ScramCredential>| {
            let mut server = ScramServer::new(mech);
            server
                .client_first(format!("n,,n={user},r=abcdef").as_bytes())
                .unwrap();
            String::from_utf8(server.server_first(cred)).unwrap()
        };
        let shape = |msg: &str| {
            let parts: Vec<(String, usize)> = msg
                .split(',')
                .map(|a| (a[..2].to_string(), a.len()))
                .collect();
            parts
        };
        let known = server_first_for("alice", Some(&credential));
        let unknown1 = server_first_for("mallory", None);
        let unknown2 = server_first_for("mallory", None);
        let other = server_first_for("eve", None);
        // Same attributes with the same lengths (salt of the same size, same iterations).
        assert_eq!(shape(&known), shape(&unknown1));
        let salt = |m: &str| m.split(',').nth(1).unwrap().to_string();
        let iterations = |m: &str| m.split(',').nth(2).unwrap().to_string();
        assert_eq!(iterations(&known), iterations(&unknown1));
        // Stable fake salt per user, different between users and mechanisms.
        assert_eq!(salt(&unknown1), salt(&unknown2));
        assert_ne!(salt(&unknown1), salt(&other));
        assert_ne!(
            fake_salt(ScramMechanism::Sha256, "mallory"),
            fake_salt(ScramMechanism::Sha512, "mallory")
        );

        let (unknown, _) = exchange(mech, "mallory", "whatever", None);
        let (wrong, _) = exchange(mech, "alice", "whatever", Some(&credential));
        assert_eq!(
            unknown.unwrap_err().to_string(),
            wrong.unwrap_err().to_string()
        );
    }

    #[test]
    fn unknown_users_are_offered_the_accounts_iteration_count() {
        let mut server = ScramServer::new(ScramMechanism::Sha512);
        server.client_first(b"n,,n=ghost,r=abcdef").unwrap();
        server.offer_to_unknown(8192);
        let first = String::from_utf8(server.server_first(None)).unwrap();
        assert!(first.ends_with(",i=8192"), "{first}");
    }

    #[test]
    fn unknown_user_with_correct_looking_proof_still_fails() {
        // Even a client computing a proof from the fake salt (any password) cannot succeed.
        for mech in ScramMechanism::ALL {
            let (server, _) = exchange(mech, "ghost", "", None);
            assert!(matches!(server, Err(ScramError::AuthenticationFailed)));
        }
    }

    fn server_after_first(credential: &ScramCredential) -> (ScramServer, String) {
        let mut server = ScramServer::with_fixed_nonce(ScramMechanism::Sha256, RFC_SERVER_NONCE);
        server.client_first(RFC_CLIENT_FIRST.as_bytes()).unwrap();
        let first = String::from_utf8(server.server_first(Some(credential))).unwrap();
        (server, first)
    }

    #[test]
    fn mismatched_nonce_is_refused() {
        let credential = rfc_credential();
        let (mut server, _) = server_after_first(&credential);
        let tampered = RFC_CLIENT_FINAL.replace("k0,p=", "k1,p=");
        assert!(matches!(
            server.client_final(tampered.as_bytes()),
            Err(ScramError::NonceMismatch)
        ));
        // After a failure the exchange stays failed, even with the right message.
        assert!(matches!(
            server.client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::OutOfSequence(_))
        ));
    }

    #[test]
    fn replayed_client_final_is_refused() {
        let credential = rfc_credential();
        let (mut server, _) = server_after_first(&credential);
        server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        assert!(matches!(
            server.client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::OutOfSequence(_))
        ));
        // A fresh exchange has a fresh server nonce: the recorded final message is useless.
        let mut fresh = ScramServer::new(ScramMechanism::Sha256);
        fresh.client_first(RFC_CLIENT_FIRST.as_bytes()).unwrap();
        fresh.server_first(Some(&credential));
        assert!(matches!(
            fresh.client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::NonceMismatch)
        ));
    }

    #[test]
    fn channel_binding_is_checked() {
        let credential = rfc_credential();
        let (mut server, _) = server_after_first(&credential);
        // "eSws" is base64("y,,"), not the header this client sent.
        let tampered = RFC_CLIENT_FINAL.replace("c=biws", "c=eSws");
        assert!(matches!(
            server.client_final(tampered.as_bytes()),
            Err(ScramError::ChannelBindingMismatch)
        ));
    }

    #[test]
    fn client_first_refusals() {
        let refuse = |msg: &str| {
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            server.client_first(msg.as_bytes()).unwrap_err()
        };
        assert!(matches!(
            refuse("p=tls-unique,,n=user,r=abc"),
            ScramError::ChannelBindingUnsupported
        ));
        assert!(matches!(
            refuse("n,,n=user,r=abc,tokenauth=true"),
            ScramError::DelegationTokenUnsupported
        ));
        assert!(matches!(
            refuse("n,,n=user,r=abc,tokenauth=TRUE"),
            ScramError::DelegationTokenUnsupported
        ));
        assert!(matches!(
            refuse("n,,m=ext,n=user,r=abc"),
            ScramError::MandatoryExtension
        ));
        assert!(matches!(
            refuse("n,a=admin,n=user,r=abc"),
            ScramError::AuthzidMismatch
        ));
        let err = refuse("n,,n=user,r=abc,tokenauth=true").to_string();
        assert!(err.contains("delegation token"), "{err}");

        // Accepted variants: authzid equal to the user, the `y` flag, harmless extensions.
        for ok in [
            "n,a=user,n=user,r=abc",
            "y,,n=user,r=abc",
            "n,,n=user,r=abc,tokenauth=false",
            "n,,n=user,r=abc,foo=bar",
        ] {
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            assert_eq!(server.client_first(ok.as_bytes()).unwrap(), "user", "{ok}");
        }
    }

    #[test]
    fn authzid_exchange_binds_the_full_gs2_header() {
        // With an authzid the channel binding attribute is base64("n,a=user,").
        let mech = ScramMechanism::Sha256;
        let credential = ScramCredential::derive(mech, "pw", 4096);
        let mut server = ScramServer::new(mech);
        server.client_first(b"n,a=user,n=user,r=nonce1").unwrap();
        let server_first = String::from_utf8(server.server_first(Some(&credential))).unwrap();
        let nonce = server_first.split(',').next().unwrap();
        let salted = mech.salted_password("pw", &credential.salt, credential.iterations);
        let (client_key, stored_key, _) = mech.keys(&salted);
        let without_proof = format!("c={},{nonce}", B64.encode("n,a=user,"));
        let auth = format!("n=user,r=nonce1,{server_first},{without_proof}");
        let sig = mech.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let msg = format!("{without_proof},p={}", B64.encode(proof));
        server.client_final(msg.as_bytes()).unwrap();
        assert!(server.is_authenticated());
    }

    #[test]
    fn usernames_are_decoded() {
        assert_eq!(
            client_first_username(b"n,,n=a=2Cb=3Dc,r=xyz").as_deref(),
            Some("a,b=c")
        );
        assert_eq!(
            client_first_username(b"n,,n=bob,r=xyz").as_deref(),
            Some("bob")
        );
        assert_eq!(client_first_username(b"n,,n=bo=4Fb,r=xyz"), None);
        assert_eq!(client_first_username(b"garbage"), None);
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
    }

    #[test]
    fn malformed_client_first_never_panics() {
        let cases: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"n,,",
            b"x,,n=user,r=abc",
            b"n,b=user,n=user,r=abc",
            b"n,,n=,r=abc",
            b"n,,r=abc,n=user",
            b"n,,n=user",
            b"n,,n=user,r=",
            b"n,,n=user,r=a b",
            b"n,,n=user,r=abc,=x",
            b"n,,n=user,r=abc,noequals",
            b"n,,n=us=er,r=abc",
            b"n,,n=user=,r=abc",
            b"n,,n=user=2,r=abc",
            b"n,,n=\xff\xfe,r=abc",
            b"n,,user,r=abc",
            b"\x00\x00\x00",
            b"n,,n=user,r=\xc3\xa9",
        ];
        for case in cases {
            let mut server = ScramServer::new(ScramMechanism::Sha512);
            assert!(
                server.client_first(case).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(case)
            );
            // The exchange is dead afterwards.
            assert!(server.server_first(None).is_empty());
            assert!(server.client_final(b"c=biws,r=x,p=AAAA").is_err());
        }
    }

    #[test]
    fn malformed_client_final_never_panics() {
        let credential = rfc_credential();
        let nonce = format!("{RFC_CLIENT_NONCE}{RFC_SERVER_NONCE}");
        let cases = [
            String::new(),
            "p=".to_string(),
            ",p=".to_string(),
            "c=biws".to_string(),
            format!("c=biws,r={nonce}"),
            format!("c=biws,r={nonce},p="),
            format!("c=biws,r={nonce},p=!!!"),
            format!("c=biws,r={nonce},p=AAAA"),
            format!("r={nonce},c=biws,p=AAAA"),
            format!("c=%%%,r={nonce},p=AAAA"),
            format!("c=biws,x={nonce},p=AAAA"),
            format!("c=biws,r={nonce},bad,p=AAAA"),
            format!("c=biws,r={nonce},p={}", B64.encode([0u8; 64])),
            "\u{0}\u{0}".to_string(),
        ];
        for case in &cases {
            let (mut server, _) = server_after_first(&credential);
            assert!(
                server.client_final(case.as_bytes()).is_err(),
                "accepted {case:?}"
            );
        }
        let (mut server, _) = server_after_first(&credential);
        assert!(server.client_final(b"\xff,p=AAAA").is_err());
    }

    #[test]
    fn out_of_sequence_calls() {
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        assert!(server.server_first(None).is_empty());
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        assert!(matches!(
            server.client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::OutOfSequence(_))
        ));
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        server.client_first(RFC_CLIENT_FIRST.as_bytes()).unwrap();
        assert!(matches!(
            server.client_first(RFC_CLIENT_FIRST.as_bytes()),
            Err(ScramError::OutOfSequence(_))
        ));

        let mut client = ScramClient::new(ScramMechanism::Sha256, "u", "p");
        assert!(client.server_first(RFC_SERVER_FIRST.as_bytes()).is_err());
        let mut client = ScramClient::new(ScramMechanism::Sha256, "u", "p");
        assert!(client.server_final(RFC_SERVER_FINAL.as_bytes()).is_err());
        let mut client = ScramClient::new(ScramMechanism::Sha256, "u", "p");
        client.client_first();
        assert!(client.client_first().is_empty());
    }

    #[test]
    fn client_refuses_bad_server_messages() {
        let first = |server_first: &str| {
            let mut client = ScramClient::with_fixed_nonce(
                ScramMechanism::Sha256,
                "user",
                "pencil",
                RFC_CLIENT_NONCE,
            );
            client.client_first();
            client.server_first(server_first.as_bytes())
        };
        let n = format!("{RFC_CLIENT_NONCE}{RFC_SERVER_NONCE}");
        assert!(matches!(
            first(&format!("r=other{RFC_SERVER_NONCE},s={RFC_SALT},i=4096")),
            Err(ScramError::NonceMismatch)
        ));
        // The server must add to the nonce.
        assert!(matches!(
            first(&format!("r={RFC_CLIENT_NONCE},s={RFC_SALT},i=4096")),
            Err(ScramError::NonceMismatch)
        ));
        assert!(matches!(
            first(&format!("r={n},s={RFC_SALT},i=1")),
            Err(ScramError::IterationCount(1))
        ));
        assert!(matches!(
            first(&format!("r={n},s={RFC_SALT},i=4000000000")),
            Err(ScramError::IterationCount(4_000_000_000))
        ));
        assert!(matches!(
            first(&format!("m=x,r={n},s={RFC_SALT},i=4096")),
            Err(ScramError::MandatoryExtension)
        ));
        for bad in [
            String::new(),
            format!("r={n}"),
            format!("r={n},s=,i=4096"),
            format!("r={n},s=***,i=4096"),
            format!("r={n},s={RFC_SALT}"),
            format!("r={n},s={RFC_SALT},i="),
            format!("r={n},s={RFC_SALT},i=-4096"),
            format!("r={n},s={RFC_SALT},i=+4096"),
            format!("r={n},s={RFC_SALT},i=99999999999999999999"),
            format!("s={RFC_SALT},r={n},i=4096"),
            format!("r={n},s={RFC_SALT},i=4096,junk"),
        ] {
            assert!(first(&bad).is_err(), "accepted {bad:?}");
        }
        assert!(first(&format!("r={n},s={RFC_SALT},i=4096,x=ext")).is_ok());
    }

    #[test]
    fn client_checks_server_final() {
        let fresh = || {
            let mut client = ScramClient::with_fixed_nonce(
                ScramMechanism::Sha256,
                "user",
                "pencil",
                RFC_CLIENT_NONCE,
            );
            client.client_first();
            client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
            client
        };
        let mut client = fresh();
        let forged = format!("v={}", B64.encode([7u8; 32]));
        assert!(matches!(
            client.server_final(forged.as_bytes()),
            Err(ScramError::InvalidServerSignature)
        ));
        let mut client = fresh();
        match client.server_final(b"e=invalid-proof") {
            Err(ScramError::ServerError(m)) => assert_eq!(m, "invalid-proof"),
            other => panic!("unexpected {other:?}"),
        }
        let mut client = fresh();
        match client.server_final(b"e=bad\x01\nthing") {
            Err(ScramError::ServerError(m)) => assert_eq!(m, "badthing"),
            other => panic!("unexpected {other:?}"),
        }
        for bad in [&b""[..], b"v=", b"v=!!", b"x=1", b"\xff"] {
            let mut client = fresh();
            assert!(client.server_final(bad).is_err());
            assert!(!client.is_authenticated());
        }
    }

    #[test]
    fn verify_password_and_validate() {
        for mech in ScramMechanism::ALL {
            let credential =
                ScramCredential::derive(mech, "pa55", ScramCredential::DEFAULT_ITERATIONS);
            assert!(credential.verify_password(mech, "pa55"));
            assert!(!credential.verify_password(mech, "pa56"));
            assert!(!credential.verify_password(mech, ""));
            credential.validate(mech).unwrap();
        }
        let credential = ScramCredential::derive(ScramMechanism::Sha256, "pw", 4096);
        assert!(credential.validate(ScramMechanism::Sha512).is_err());
        let mut weak = credential.clone();
        weak.iterations = 1;
        assert!(matches!(
            weak.validate(ScramMechanism::Sha256),
            Err(ScramError::IterationCount(1))
        ));
        let mut saltless = credential.clone();
        saltless.salt.clear();
        assert!(saltless.validate(ScramMechanism::Sha256).is_err());
        // Random salts differ.
        let again = ScramCredential::derive(ScramMechanism::Sha256, "pw", 4096);
        assert_ne!(credential.salt, again.salt);
        assert_ne!(credential.stored_key, again.stored_key);
    }

    #[test]
    fn credential_serde_and_debug() {
        let credential = rfc_credential();
        let json = serde_json::to_value(&credential).unwrap();
        assert_eq!(json["salt"], RFC_SALT);
        assert_eq!(json["iterations"], 4096);
        assert!(json["storedKey"].is_string());
        assert!(json["serverKey"].is_string());
        let back: ScramCredential = serde_json::from_value(json).unwrap();
        assert_eq!(back, credential);
        assert!(serde_json::from_str::<ScramCredential>(
            r#"{"salt":"%%","iterations":4096,"storedKey":"","serverKey":""}"#
        )
        .is_err());

        let debug = format!("{credential:?}");
        let stored = B64.encode(&credential.stored_key);
        assert!(!debug.contains(&stored));
        assert!(!debug.contains(&format!("{:?}", credential.stored_key)));
        assert!(debug.contains("redacted"));
        let client = ScramClient::new(ScramMechanism::Sha256, "user", "hunter2");
        assert!(!format!("{client:?}").contains("hunter2"));
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
