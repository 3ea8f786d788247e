//! SASL OAUTHBEARER (RFC 7628) as Kafka uses it, with JWT validation against a JWKS.
//!
//! - [`parse_client_first`] reads the client's initial response
//!   (`n,[a=authzid],\x01auth=Bearer <token>\x01[key=value\x01]*\x01`).
//! - [`JwtValidator`] checks a token: signature by a key of the configured JWKS, an algorithm
//!   that fits that key, a mandatory `exp`, `nbf`, issuer and audience; it then reads the
//!   principal and groups from configurable claims.
//! - [`failure_challenge`] is the JSON error the server sends when a token is refused; the
//!   client then answers with a lone `\x01` ([`is_failure_ack`]) and the exchange fails.
//! - [`unverified_claim`] reads a claim without any check, for the delegated mode in which
//!   the broker behind the gateway validates the token.
//! - [`JwksSource`], [`JwksReader`] and [`spawn_jwks_refresh`] keep the keys current when they
//!   come from a file or an identity provider's JWKS URL (`http://`, or `https://` verified
//!   against the platform's trust store or a CA bundle): re-read periodically, and soon after
//!   a token names a key id the set lacks (the provider rotated its keys). The key set is
//!   swapped atomically, so validation never waits for I/O: such a token is refused at once
//!   and the client's retry finds the new key.
//!
//! Symmetric keys (JWKS `oct`, `HS*` algorithms) and `alg: none` are refused outright: a
//! gateway must never accept a token it could have minted itself or one with no signature.
//! No error message contains the token.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Largest token accepted (bytes); bounds parsing and signature work for hostile input.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Largest clock-skew allowance accepted in [`JwtSettings::leeway_secs`].
pub const MAX_LEEWAY_SECS: u64 = 3600;

/// Shortest time between two refreshes triggered by tokens with an unknown key id: anyone can
/// send such a token, and the identity provider must not be hammered on their behalf.
pub const MIN_ON_DEMAND_REFRESH: Duration = Duration::from_secs(30);

/// Default period of the background JWKS refresh.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);

/// Largest JWKS document read from a file or URL (real ones are a few kilobytes).
pub const MAX_JWKS_LEN: u64 = 1024 * 1024;

/// Bound on one JWKS download (connect, request and body).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an OAUTHBEARER message, token or configuration was refused. Messages never contain
/// the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OauthError {
    /// The JWKS or the settings are unusable.
    #[error("invalid OAUTHBEARER configuration: {0}")]
    InvalidConfig(String),
    /// The client's message does not follow RFC 7628.
    #[error("malformed OAUTHBEARER message: {0}")]
    Malformed(&'static str),
    /// The token is not a well-formed JWT.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// The token's algorithm is refused (`none`, HMAC) or unknown.
    #[error("invalid token: algorithm {0} is not accepted")]
    UnsupportedAlgorithm(&'static str),
    /// No key of the JWKS has the token's key id (or none was given and the JWKS has several).
    #[error("invalid token: no matching key in the JWKS")]
    UnknownKey,
    /// The token's algorithm does not fit the key that must verify it.
    #[error("invalid token: algorithm does not match the key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("invalid token: bad signature")]
    InvalidSignature,
    /// `exp` has passed.
    #[error("invalid token: expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("invalid token: not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("invalid token: wrong issuer")]
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    #[error("invalid token: wrong audience")]
    WrongAudience,
    /// A required claim is absent or of the wrong type.
    #[error("invalid token: missing or invalid claim `{0}`")]
    MissingClaim(String),
}

impl OauthError {
    /// The RFC 7628 / RFC 6750 status to put in [`failure_challenge`]: `invalid_request` for
    /// malformed messages, `invalid_token` for refused tokens.
    pub fn status(&self) -> &'static str {
        match self {
            OauthError::Malformed(_) => "invalid_request",
            _ => "invalid_token",
        }
    }
}

/// How tokens are validated.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The JSON Web Key Set (`{"keys":[...]}`) with the issuer's public keys (the initial
    /// set; [`JwtValidator::replace_keys`] installs later ones).
    pub jwks_json: String,
    /// Required `iss`; `None` accepts any issuer.
    pub issuer: Option<String>,
    /// Accepted audiences: `aud` must name at least one. Empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// Claim holding the principal name (default `sub`). A dotted name (`a.b`) that is not a
    /// top-level claim is looked up as a path into nested objects.
    pub principal_claim: String,
    /// Claim holding the groups: an array of strings, or a space-separated string.
    pub groups_claim: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, at most [`MAX_LEEWAY_SECS`].
    pub leeway_secs: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            jwks_json: String::new(),
            issuer: None,
            audiences: Vec::new(),
            principal_claim: "sub".to_string(),
            groups_claim: None,
            leeway_secs: 30,
        }
    }
}

/// One verification key of the JWKS.
struct VerificationKey {
    kid: Option<String>,
    key: DecodingKey,
    /// The algorithms this key may verify.
    algorithms: Vec<Algorithm>,
}

/// Validates JWT bearer tokens against a JWKS. Build once and share; the key set can be
/// replaced while tokens are being validated ([`JwtValidator::replace_keys`]).
pub struct JwtValidator {
    /// The current key set; readers take a snapshot without locking.
    keys: ArcSwap<Vec<VerificationKey>>,
    settings: JwtSettings,
    /// Signalled when a token names a key id the set lacks; a refresh task listens.
    unknown_kid: Notify,
    /// Counts installed key sets, so that callers can await a change.
    generation: watch::Sender<u64>,
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.load();
        let kids: Vec<&str> = keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("<none>"))
            .collect();
        f.debug_struct("JwtValidator")
            .field("key_ids", &kids)
            .field("issuer", &self.settings.issuer)
            .field("audiences", &self.settings.audiences)
            .field("principal_claim", &self.settings.principal_claim)
            .field("groups_claim", &self.settings.groups_claim)
            .finish()
    }
}

/// What a valid token says about its holder.
#[derive(Debug, Clone)]
pub struct ValidatedToken {
    /// The principal name (from [`JwtSettings::principal_claim`]).
    pub principal: String,
    /// Groups (from [`JwtSettings::groups_claim`]); empty without that claim.
    pub groups: Vec<String>,
    /// When the token expires; the session must re-authenticate by then.
    pub expires_at: SystemTime,
}

impl JwtValidator {
    /// Parses the JWKS. Symmetric (`oct`) keys and keys declaring `alg` `none` or `HS*` are
    /// refused; keys for encryption (`use: enc`), keys whose `key_ops` exclude `verify` and
    /// key types or curves that cannot verify JWTs here (e.g. P-521) are skipped. At least
    /// one usable key is required, and key ids must be unique.
    pub fn new(settings: JwtSettings) -> Result<Self, OauthError> {
        let config = |msg: String| OauthError::InvalidConfig(msg);
        if settings.principal_claim.is_empty() {
            return Err(config("principal claim must not be empty".into()));
        }
        if settings.groups_claim.as_deref() == Some("") {
            return Err(config("groups claim must not be empty".into()));
        }
        if settings.leeway_secs > MAX_LEEWAY_SECS {
            return Err(config(format!(
                "leeway of {}s exceeds the maximum of {MAX_LEEWAY_SECS}s",
                settings.leeway_secs
            )));
        }
        let keys = parse_jwks(&settings.jwks_json)?;
        Ok(JwtValidator {
            keys: ArcSwap::from_pointee(keys),
            settings,
            unknown_kid: Notify::new(),
            generation: watch::Sender::new(0),
        })
    }

    /// Installs a new key set (same rules as [`JwtValidator::new`]) and returns how many keys
    /// it has. Tokens being validated keep the set they started with; an unusable document
    /// leaves the current set in place.
    pub fn replace_keys(&self, jwks_json: &str) -> Result<usize, OauthError> {
        let keys = parse_jwks(jwks_json)?;
        let count = keys.len();
        self.keys.store(Arc::new(keys));
        self.generation.send_modify(|g| *g += 1);
        Ok(count)
    }

    /// The key ids of the current set (`<none>` for a key without one), for logs.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys
            .load()
            .iter()
            .map(|k| k.kid.clone().unwrap_or_else(|| "<none>".into()))
            .collect()
    }

    /// Watches the number of key sets installed since creation (0 at first): changes when
    /// [`JwtValidator::replace_keys`] succeeds.
    pub fn key_updates(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Waits until a token names a key id the current set lacks (a refresh may find it). One
    /// such event is remembered while nobody waits, so none is lost between two waits.
    pub async fn unknown_key_seen(&self) {
        self.unknown_kid.notified().await
    }

    /// Validates a token and extracts the principal, groups and expiry.
    ///
    /// The verifying key is the one whose `kid` is the token's; a token without `kid`, or a
    /// JWKS of a single key without `kid`, uses the only key. The token's `alg` must be one
    /// the key fits (ES256 for P-256, ES384 for P-384, RS*/PS* for RSA, EdDSA for Ed25519, or
    /// the key's own `alg`).
    pub fn validate(&self, token: &str) -> Result<ValidatedToken, OauthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(OauthError::InvalidToken("too long"));
        }
        // Look at the raw algorithm first: `none` is not even representable in the typed
        // header, and deserves a precise error.
        let raw = raw_header(token).ok_or(OauthError::InvalidToken("malformed header"))?;
        match raw.get("alg").and_then(Value::as_str) {
            None => return Err(OauthError::InvalidToken("header has no algorithm")),
            Some(alg) if alg.eq_ignore_ascii_case("none") => {
                return Err(OauthError::UnsupportedAlgorithm("none"))
            }
            Some(alg) if alg.starts_with("HS") => {
                return Err(OauthError::UnsupportedAlgorithm("HMAC"))
            }
            Some(_) => {}
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| OauthError::UnsupportedAlgorithm("unknown"))?;
        // By key id; without one (or with one when the JWKS has a single key that has no
        // id, as hand-made key sets do) the only key.
        let keys = self.keys.load();
        let only_key = match keys.as_slice() {
            [single] => Some(single),
            _ => None,
        };
        let key = match &header.kid {
            Some(kid) => {
                let found = keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                    .or(only_key.filter(|k| k.kid.is_none()));
                if found.is_none() {
                    // Perhaps the issuer rotated its keys: ask for a refresh, but refuse this
                    // token now rather than wait on I/O; the client's retry may succeed.
                    self.unknown_kid.notify_one();
                }
                found
            }
            None => only_key,
        }
        .ok_or(OauthError::UnknownKey)?;
        if !key.algorithms.contains(&header.alg) {
            return Err(OauthError::AlgorithmMismatch);
        }

        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        // jsonwebtoken checks `iss` and `aud` only when present: make them mandatory when
        // configured.
        if let Some(issuer) = &self.settings.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if self.settings.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.settings.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);

        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(map_jwt_error)?;
        let claims = data.claims;

        let principal = lookup_claim(&claims, &self.settings.principal_claim)
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| OauthError::MissingClaim(self.settings.principal_claim.clone()))?
            .to_string();
        let groups = match &self.settings.groups_claim {
            Some(name) => groups_from(lookup_claim(&claims, name)),
            None => Vec::new(),
        };
        let exp = claims
            .get("exp")
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
            .ok_or_else(|| OauthError::MissingClaim("exp".to_string()))?;
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(exp))
            .ok_or_else(|| OauthError::MissingClaim("exp".to_string()))?;
        Ok(ValidatedToken {
            principal,
            groups,
            expires_at,
        })
    }
}

/// Parses a JWKS document into its usable verification keys (see [`JwtValidator::new`]).
fn parse_jwks(jwks_json: &str) -> Result<Vec<VerificationKey>, OauthError> {
    let config = |msg: String| OauthError::InvalidConfig(msg);
    let doc: Value =
        serde_json::from_str(jwks_json).map_err(|e| config(format!("JWKS is not JSON: {e}")))?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| config("JWKS has no `keys` array".into()))?;
    let mut keys = Vec::new();
    let mut kids = HashSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let Some(key) = parse_jwk(index, entry)? else {
            continue;
        };
        if let Some(kid) = &key.kid {
            if !kids.insert(kid.clone()) {
                return Err(config(format!("JWKS has two keys with kid `{kid}`")));
            }
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(config(
            "JWKS has no usable signature verification key".into(),
        ));
    }
    Ok(keys)
}

/// Turns one JWKS entry into a verification key; `Ok(None)` for keys that are skipped.
fn parse_jwk(index: usize, entry: &Value) -> Result<Option<VerificationKey>, OauthError> {
    let err = |msg: &str| OauthError::InvalidConfig(format!("JWKS key #{index}: {msg}"));
    let obj = entry.as_object().ok_or_else(|| err("not an object"))?;
    let kty = obj
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| err("no `kty`"))?;
    if kty == "oct" {
        return Err(err("symmetric (oct) keys are refused"));
    }
    let alg = match obj.get("alg") {
        None => None,
        Some(Value::String(alg)) => Some(alg.as_str()),
        Some(_) => return Err(err("`alg` is not a string")),
    };
    if let Some(alg) = alg {
        if alg.eq_ignore_ascii_case("none") {
            return Err(err("`alg: none` is refused"));
        }
        if alg.starts_with("HS") {
            return Err(err("HMAC algorithms are refused"));
        }
    }
    if obj.get("use").and_then(Value::as_str) == Some("enc") {
        return Ok(None);
    }
    if let Some(ops) = obj.get("key_ops").and_then(Value::as_array) {
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Ok(None);
        }
    }
    let crv = obj.get("crv").and_then(Value::as_str);
    let fitting: &[Algorithm] = match (kty, crv) {
        ("EC", Some("P-256")) => &[Algorithm::ES256],
        ("EC", Some("P-384")) => &[Algorithm::ES384],
        ("RSA", _) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        ("OKP", Some("Ed25519")) => &[Algorithm::EdDSA],
        // Other curves and key types cannot verify JWTs here.
        _ => return Ok(None),
    };
    let algorithms = match alg {
        None => fitting.to_vec(),
        Some(alg) => match Algorithm::from_str(alg) {
            Ok(a) if fitting.contains(&a) => vec![a],
            Ok(_) => return Err(err(&format!("`alg` {alg} does not fit a {kty} key"))),
            // An encryption or unknown algorithm: not a key for verifying JWTs.
            Err(_) => return Ok(None),
        },
    };
    // The algorithm is handled above; leaving it out keeps jsonwebtoken's stricter `alg`
    // enumeration from rejecting otherwise valid keys.
    let mut stripped = obj.clone();
    stripped.remove("alg");
    let jwk: Jwk = serde_json::from_value(Value::Object(stripped))
        .map_err(|e| err(&format!("not a valid {kty} key: {e}")))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| err(&format!("unusable key: {e}")))?;
    Ok(Some(VerificationKey {
        kid: jwk.common.key_id.clone(),
        key,
        algorithms,
    }))
}

/// Maps jsonwebtoken's errors to fixed messages (its own can quote claim contents).
fn map_jwt_error(e: jsonwebtoken::errors::Error) -> OauthError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => OauthError::InvalidSignature,
        ErrorKind::ExpiredSignature => OauthError::Expired,
        ErrorKind::ImmatureSignature => OauthError::NotYetValid,
        ErrorKind::InvalidIssuer => OauthError::WrongIssuer,
        ErrorKind::InvalidAudience => OauthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => OauthError::MissingClaim(claim.clone()),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            OauthError::AlgorithmMismatch
        }
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::Crypto(_) => {
            OauthError::InvalidSignature
        }
        ErrorKind::Json(_) => OauthError::InvalidToken("claims are not a JSON object"),
        _ => OauthError::InvalidToken("malformed token"),
    }
}

/// The decoded JSON object of one base64url JWT segment.
fn decode_segment(segment: &str) -> Option<Map<String, Value>> {
    // Padding is not allowed in JWS compact form, but tolerate it when only reading.
    let bytes = URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The three segments of a compact JWS.
fn segments(token: &str) -> Option<[&str; 3]> {
    let mut parts = token.split('.');
    let segs = [parts.next()?, parts.next()?, parts.next()?];
    parts.next().is_none().then_some(segs)
}

fn raw_header(token: &str) -> Option<Map<String, Value>> {
    decode_segment(segments(token)?[0])
}

/// A claim by name; a dotted name not present at top level is followed as a path.
fn lookup_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    if !name.contains('.') {
        return None;
    }
    let mut parts = name.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// Groups from a claim value: an array of strings, or a space-separated string.
fn groups_from(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Delegated mode: a claim of the token's payload, without verifying anything. Strings are
/// returned as they are, numbers in their JSON form; `None` for anything else or a token
/// that does not decode.
pub fn unverified_claim(token: &str, claim: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let payload = decode_segment(segments(token)?[1])?;
    match lookup_claim(&payload, claim)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The client's initial OAUTHBEARER response. `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientBearer {
    /// The bearer token.
    pub token: String,
    /// Authorization id from the GS2 header (`a=`), decoded.
    pub authzid: Option<String>,
    /// SASL extensions (Kafka's `key=value` pairs other than `auth`), in message order.
    pub extensions: Vec<(String, String)>,
}

impl fmt::Debug for ClientBearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBearer")
            .field("token", &"<redacted>")
            .field("authzid", &self.authzid)
            .field("extensions", &self.extensions)
            .finish()
    }
}

impl ClientBearer {
    /// Encodes the initial response (for the gateway's own upstream connections):
    /// `n,[a=authzid],\x01auth=Bearer <token>\x01[k=v\x01]*\x01`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::from("n,");
        if let Some(authzid) = &self.authzid {
            out.push_str("a=");
            out.push_str(&authzid.replace('=', "=3D").replace(',', "=2C"));
        }
        out.push_str(",\x01auth=Bearer ");
        out.push_str(&self.token);
        out.push('\x01');
        for (k, v) in &self.extensions {
            out.push_str(k);
            out.push('=');
            out.push_str(v);
            out.push('\x01');
        }
        out.push('\x01');
        out.into_bytes()
    }
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn valid_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Decodes a GS2 `saslname` (`=2C` → `,`, `=3D` → `=`).
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('=') {
        out.push_str(&rest[..pos]);
        match rest.get(pos + 1..pos + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Parses the client's initial response:
/// GS2 header `n,[a=authzid],` then `\x01auth=Bearer <token>\x01[key=value\x01]*\x01`.
/// Channel binding (`p=`) is refused; keys are letters only; values are printable (plus
/// space, tab, CR, LF); keys must not repeat.
pub fn parse_client_first(msg: &[u8]) -> Result<ClientBearer, OauthError> {
    if msg.len() > MAX_TOKEN_LEN + 4096 {
        return Err(OauthError::Malformed("message too long"));
    }
    let text = std::str::from_utf8(msg).map_err(|_| OauthError::Malformed("not UTF-8"))?;
    let (cbind, rest) = text
        .split_once(',')
        .ok_or(OauthError::Malformed("missing GS2 header"))?;
    match cbind {
        "n" | "y" => {}
        _ if cbind.starts_with("p=") => {
            return Err(OauthError::Malformed("channel binding is not supported"))
        }
        _ => return Err(OauthError::Malformed("invalid channel binding flag")),
    }
    let (authzid, rest) = rest
        .split_once(',')
        .ok_or(OauthError::Malformed("missing GS2 header"))?;
    let authzid = if authzid.is_empty() {
        None
    } else {
        let name = authzid
            .strip_prefix("a=")
            .and_then(decode_saslname)
            .filter(|n| !n.is_empty())
            .ok_or(OauthError::Malformed("invalid authorization id"))?;
        Some(name)
    };
    let pairs = rest
        .strip_prefix('\x01')
        .and_then(|r| r.strip_suffix('\x01'))
        .ok_or(OauthError::Malformed(
            "key/value section must be delimited by \\x01",
        ))?;
    if !pairs.is_empty() && !pairs.ends_with('\x01') {
        return Err(OauthError::Malformed("unterminated key/value pair"));
    }

    let mut seen: HashSet<&str> = HashSet::new();
    let mut token = None;
    let mut extensions = Vec::new();
    for pair in pairs.split_terminator('\x01') {
        let (key, value) = pair
            .split_once('=')
            .ok_or(OauthError::Malformed("key/value pair without `=`"))?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(OauthError::Malformed("invalid key"));
        }
        if !value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) || b" \t\r\n".contains(&b))
        {
            return Err(OauthError::Malformed("invalid value"));
        }
        if !seen.insert(key) {
            return Err(OauthError::Malformed("repeated key"));
        }
        if key == "auth" {
            let (scheme, credentials) = value
                .split_once(' ')
                .ok_or(OauthError::Malformed("auth value must be `Bearer <token>`"))?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(OauthError::Malformed("auth scheme must be Bearer"));
            }
            let credentials = credentials.trim_start_matches(' ');
            if !valid_b64token(credentials) {
                return Err(OauthError::Malformed("invalid bearer token syntax"));
            }
            token = Some(credentials.to_string());
        } else {
            extensions.push((key.to_string(), value.to_string()));
        }
    }
    let token = token.ok_or(OauthError::Malformed("missing auth"))?;
    Ok(ClientBearer {
        token,
        authzid,
        extensions,
    })
}

/// The server's error challenge after a refused token (RFC 7628 section 3.2.2), e.g.
/// `{"status":"invalid_token"}`. The client must answer with [`is_failure_ack`]'s `\x01`.
pub fn failure_challenge(status: &str) -> Vec<u8> {
    serde_json::json!({ "status": status })
        .to_string()
        .into_bytes()
}

/// True for the client's acknowledgement of a [`failure_challenge`] (a single `\x01`).
pub fn is_failure_ack(msg: &[u8]) -> bool {
    msg == b"\x01"
}

/// Where a refreshable JWKS comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file, re-read on every refresh (an agent may rewrite it when keys rotate).
    File(PathBuf),
    /// An `http://` or `https://` URL (typically an OpenID provider's `jwks_uri`). Read
    /// through a bare `JwksSource`, an `https://` server's certificate is verified against
    /// the platform's trust store; a [`JwksReader`] can name a CA bundle instead.
    Url(String),
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for JwksSource {
    /// The file's path, or the URL without user info, query or fragment (they may carry
    /// credentials).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksSource::File(path) => write!(f, "{}", path.display()),
            JwksSource::Url(url) => f.write_str(&redact_url(url)),
        }
    }
}

/// `url` without its user info, query and fragment, which may carry credentials.
pub fn redact_url(url: &str) -> String {
    let (prefix, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let before_query = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) =
        before_query.split_at(before_query.find('/').unwrap_or(before_query.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let mut out = format!("{prefix}{host}{path}");
    if before_query.len() < rest.len() || host.len() < authority.len() {
        // Say that something was left out, so the text is not taken for the whole URL.
        out.push_str(" (credentials and query omitted)");
    }
    out
}

/// Checks that `url` is a JWKS URL this build can fetch: `http://` or `https://`, with a
/// host. Errors never quote the URL's user info or query.
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    url_is_https(url).map(drop)
}

/// Whether `url`, a JWKS URL that passes [`check_jwks_url`], is `https://`.
fn url_is_https(url: &str) -> Result<bool, String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|_| format!("`{}` is not a valid URL", redact_url(url)))?;
    // Only the spellings the HTTP client itself recognises: anything else (`HTTPS://`) would
    // not be sure to get TLS.
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(format!(
                "`{}` must be an http:// or https:// URL",
                redact_url(url)
            ))
        }
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{}` has no host", redact_url(url)));
    }
    Ok(https)
}

/// What an `https://` JWKS server's certificate must chain to.
#[derive(Clone)]
enum HttpsTrust {
    /// The platform's trust store, loaded on every fetch: an update of the store (a CA
    /// added or withdrawn) applies without a restart, and the cost is nothing next to a
    /// download every few minutes.
    Platform,
    /// The certificates of a PEM CA bundle, loaded when the reader is built so that a
    /// missing or broken bundle fails the start, not a refresh minutes later.
    Bundle {
        path: PathBuf,
        certs: Arc<Vec<ureq::tls::Certificate<'static>>>,
    },
}

impl fmt::Display for HttpsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpsTrust::Platform => f.write_str("the platform's trust store"),
            HttpsTrust::Bundle { path, .. } => write!(f, "the CA bundle {}", path.display()),
        }
    }
}

/// A [`JwksSource`] with what reading it takes: the trust anchors an `https://` server's
/// certificate is verified against (the platform's trust store, or a PEM CA bundle). Cheap to
/// clone; the background refresh keeps one.
///
/// Downloads use rustls with the ring provider the rest of the gateway uses, the HTTP
/// client's own TLS 1.2/1.3 defaults, a 10 s bound on the whole request, no redirects (a JWKS
/// URL is configured exactly) and a 1 MiB cap on the document. Errors name the source with
/// its user info and query left out, and never contain the document.
#[derive(Clone)]
pub struct JwksReader {
    source: JwksSource,
    trust: HttpsTrust,
}

impl fmt::Debug for JwksReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksReader")
            .field("source", &self.source)
            .field("trust", &format_args!("{}", self.trust))
            .finish()
    }
}

impl fmt::Display for JwksReader {
    /// The source, redacted as [`JwksSource`]'s `Display`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl From<JwksSource> for JwksReader {
    /// `source`, with `https://` servers verified against the platform's trust store.
    fn from(source: JwksSource) -> JwksReader {
        JwksReader {
            source,
            trust: HttpsTrust::Platform,
        }
    }
}

impl JwksReader {
    /// `source`, with an `https://` server's certificate verified against the PEM CA bundle
    /// `ca_file` when given (read now: an unreadable file, one with no certificate or one
    /// with a certificate that is no usable CA is an error naming the file), else against
    /// the platform's trust store. A CA bundle is refused for anything but an `https://`
    /// URL: it would have no effect, and its presence says that TLS was expected.
    pub fn new(source: JwksSource, ca_file: Option<&Path>) -> Result<JwksReader, OauthError> {
        let Some(path) = ca_file else {
            return Ok(JwksReader::from(source));
        };
        let https = match &source {
            JwksSource::Url(url) => url_is_https(url).map_err(OauthError::InvalidConfig)?,
            JwksSource::File(_) => false,
        };
        if !https {
            return Err(OauthError::InvalidConfig(format!(
                "a CA bundle ({}) applies only to an https:// URL, not to {source}",
                path.display()
            )));
        }
        Ok(JwksReader {
            source,
            trust: HttpsTrust::Bundle {
                path: path.to_path_buf(),
                certs: Arc::new(load_ca_bundle(path)?),
            },
        })
    }

    /// Where the document comes from.
    pub fn source(&self) -> &JwksSource {
        &self.source
    }

    /// Reads the document, blocking (file I/O, or an HTTP(S) GET bounded by a timeout).
    /// Errors name the source (redacted) and never contain the document.
    pub fn read_blocking(&self) -> Result<String, OauthError> {
        match &self.source {
            JwksSource::File(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| OauthError::InvalidConfig(format!("reading {self}: {e}")))?;
                let mut text = String::new();
                std::io::Read::read_to_string(
                    &mut std::io::Read::take(file, MAX_JWKS_LEN + 1),
                    &mut text,
                )
                .map_err(|e| OauthError::InvalidConfig(format!("reading {self}: {e}")))?;
                if text.len() as u64 > MAX_JWKS_LEN {
                    return Err(OauthError::InvalidConfig(format!(
                        "{self} is larger than {MAX_JWKS_LEN} bytes"
                    )));
                }
                Ok(text)
            }
            JwksSource::Url(url) => self
                .fetch(url)
                .map_err(|what| OauthError::InvalidConfig(format!("fetching {self}: {what}"))),
        }
    }

    /// Reads the document on tokio's blocking pool, so that no runtime thread waits on I/O.
    pub async fn read(&self) -> Result<String, OauthError> {
        let reader = self.clone();
        tokio::task::spawn_blocking(move || reader.read_blocking())
            .await
            .map_err(|e| OauthError::InvalidConfig(format!("reading {self}: {e}")))?
    }

    /// GETs `url`; the error says what went wrong without naming the URL (the caller does,
    /// redacted).
    fn fetch(&self, url: &str) -> Result<String, String> {
        let https = url_is_https(url)?;
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(FETCH_TIMEOUT))
            .http_status_as_error(false)
            // A redirect could lead anywhere; a JWKS URL is configured exactly.
            .max_redirects(0);
        if https {
            config = config.tls_config(self.tls_config()?);
        }
        let agent: ureq::Agent = config.build().into();
        let mut response = agent
            .get(url)
            .header("Accept", "application/json, application/jwk-set+json")
            .call()
            .map_err(|e| self.describe(e))?;
        let status = response.status();
        if status != ureq::http::StatusCode::OK {
            return Err(format!("HTTP status {}", status.as_u16()));
        }
        response
            .body_mut()
            .with_config()
            .limit(MAX_JWKS_LEN)
            .read_to_string()
            .map_err(|e| self.describe(e))
    }

    /// The TLS settings of one download: rustls, the ring provider and this reader's roots.
    fn tls_config(&self) -> Result<ureq::tls::TlsConfig, String> {
        use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
        let roots = match &self.trust {
            HttpsTrust::Platform => Arc::new(platform_roots()?),
            HttpsTrust::Bundle { certs, .. } => certs.clone(),
        };
        Ok(TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(roots))
            // The client is built without a provider of its own: this one is the gateway's,
            // so no second cryptography library is linked. (The client's API calls this
            // setter "unversioned": it is outside its semver promise because it exposes
            // rustls' type; Cargo.lock pins the release.)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build())
    }

    /// A download error as text, with the likely cause spelled out for the TLS failure an
    /// operator meets first (a certificate from a CA that is not trusted).
    fn describe(&self, e: ureq::Error) -> String {
        use rustls::{CertificateError, Error as TlsError};
        let tls = match &e {
            ureq::Error::Rustls(tls) => Some(tls),
            ureq::Error::Io(io) => io.get_ref().and_then(|inner| inner.downcast_ref()),
            _ => None,
        };
        match tls {
            Some(TlsError::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                let hint = match self.trust {
                    HttpsTrust::Platform => {
                        "; set jwksCaFile to the bundle of the CA that issued it"
                    }
                    HttpsTrust::Bundle { .. } => "",
                };
                format!(
                    "TLS: the server's certificate is not issued by a CA of {}{hint}",
                    self.trust
                )
            }
            Some(tls) => format!("TLS: {tls}"),
            // Its text would quote the URL.
            None if matches!(e, ureq::Error::BadUri(_)) => "invalid URL".into(),
            None => e.to_string(),
        }
    }
}

/// The CA certificates of the PEM bundle at `path`, each checked to be a usable trust anchor
/// (the HTTP client would silently skip one that is not).
fn load_ca_bundle(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, OauthError> {
    let certs = crate::pem::load_certs(path)
        .map_err(|e| OauthError::InvalidConfig(format!("CA bundle: {e:#}")))?;
    let mut store = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| {
            OauthError::InvalidConfig(format!(
                "CA bundle {}: certificate {} is not a usable CA certificate: {e}",
                path.display(),
                i + 1
            ))
        })?;
    }
    Ok(certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect())
}

/// The CA certificates of the platform's trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` are
/// honoured).
fn platform_roots() -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!(
            "the platform's trust store has no CA certificates{why}; set jwksCaFile to a CA \
             bundle"
        ));
    }
    Ok(found
        .certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect())
}

impl JwksSource {
    /// Reads the document, blocking (file I/O or an HTTP(S) GET bounded by a timeout; an
    /// `https://` server is verified against the platform's trust store). Errors name the
    /// source (redacted) and never contain the document.
    pub fn read_blocking(&self) -> Result<String, OauthError> {
        JwksReader::from(self.clone()).read_blocking()
    }

    /// [`JwksSource::read_blocking`] on tokio's blocking pool, so that no runtime thread
    /// waits on I/O.
    pub async fn read(&self) -> Result<String, OauthError> {
        JwksReader::from(self.clone()).read().await
    }
}

/// When a refresh asked for by an unknown key id may run: at once the first time, then at
/// least [`MIN_ON_DEMAND_REFRESH`] (or the configured gap) after the previous one.
#[derive(Debug, Clone)]
struct OnDemandLimit {
    gap: Duration,
    last: Option<Instant>,
}

impl OnDemandLimit {
    /// The earliest time the next on-demand refresh may run, given `now`.
    fn ready_at(&self, now: Instant) -> Instant {
        self.last.map_or(now, |last| (last + self.gap).max(now))
    }
}

/// The background refresh of a validator's keys; stops when dropped.
#[derive(Debug)]
pub struct JwksRefresh {
    task: tokio::task::AbortHandle,
}

impl Drop for JwksRefresh {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts refreshing `validator`'s keys from `source` on the current tokio runtime: every
/// `every`, and — at most once per [`MIN_ON_DEMAND_REFRESH`] — soon after a token names an
/// unknown key id. A failed refresh keeps the keys in place and logs a warning naming the
/// (redacted) source. The keys are expected to have been read once already, at start.
/// `source` is a [`JwksReader`], or a bare [`JwksSource`] (`https://` servers then verified
/// against the platform's trust store).
pub fn spawn_jwks_refresh(
    validator: Arc<JwtValidator>,
    source: impl Into<JwksReader>,
    every: Duration,
) -> JwksRefresh {
    spawn_refresh_with(validator, source.into(), every, MIN_ON_DEMAND_REFRESH)
}

fn spawn_refresh_with(
    validator: Arc<JwtValidator>,
    source: JwksReader,
    every: Duration,
    on_demand_gap: Duration,
) -> JwksRefresh {
    // The task holds the validator weakly: once the listener that owns it is gone there is
    // nothing left to refresh.
    let weak = Arc::downgrade(&validator);
    drop(validator);
    let task = tokio::spawn(async move {
        let mut limit = OnDemandLimit {
            gap: on_demand_gap,
            last: None,
        };
        let mut next_periodic = Instant::now() + every;
        loop {
            let Some(validator) = weak.upgrade() else {
                return;
            };
            let on_demand = tokio::select! {
                _ = tokio::time::sleep_until(next_periodic) => false,
                _ = validator.unknown_key_seen() => true,
            };
            drop(validator);
            if on_demand {
                let ready = limit.ready_at(Instant::now());
                // Tokens arriving meanwhile are covered by this refresh (the notification
                // is consumed); a periodic refresh due earlier serves as well.
                tokio::time::sleep_until(ready.min(next_periodic)).await;
                limit.last = Some(Instant::now());
            }
            let result = source.read().await;
            let Some(validator) = weak.upgrade() else {
                return;
            };
            let outcome = result.and_then(|json| validator.replace_keys(&json));
            match outcome {
                Ok(count) => tracing::debug!(
                    source = %source,
                    keys = count,
                    key_ids = ?validator.key_ids(),
                    on_demand,
                    "OAUTHBEARER JWKS refreshed"
                ),
                Err(e) => tracing::warn!(
                    source = %source,
                    "OAUTHBEARER JWKS refresh failed, keeping the previous keys: {e}"
                ),
            }
            next_periodic = Instant::now() + every;
        }
    });
    JwksRefresh {
        task: task.abort_handle(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};
    use serde_json::json;

    const ISSUER: &str = "https://issuer.example";
    const AUDIENCE: &str = "kafka";

    struct TestKey {
        encoding: EncodingKey,
        jwk: Value,
    }

    /// A P-256 (or P-384) key: the signing key and its public JWK.
    fn ec_key(kid: Option<&str>, p384: bool) -> TestKey {
        let pair = if p384 {
            KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap()
        } else {
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
        };
        let point = pair.public_key_raw();
        assert_eq!(point[0], 0x04, "uncompressed point");
        let half = (point.len() - 1) / 2;
        let mut jwk = json!({
            "kty": "EC",
            "crv": if p384 { "P-384" } else { "P-256" },
            "x": URL_SAFE_NO_PAD.encode(&point[1..1 + half]),
            "y": URL_SAFE_NO_PAD.encode(&point[1 + half..]),
            "use": "sig",
        });
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        TestKey {
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk,
        }
    }

    fn jwks(keys: &[&Value]) -> String {
        json!({ "keys": keys }).to_string()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn settings(jwks_json: String) -> JwtSettings {
        JwtSettings {
            jwks_json,
            issuer: Some(ISSUER.to_string()),
            audiences: vec![AUDIENCE.to_string(), "other".to_string()],
            groups_claim: Some("groups".to_string()),
            ..JwtSettings::default()
        }
    }

    fn claims() -> Value {
        json!({
            "sub": "alice",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": now() + 600,
            "iat": now(),
            "groups": ["admins", "devs"],
        })
    }

    fn sign(key: &TestKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    /// A token with a hand-made header and signature.
    fn forge(header: Value, claims: &Value, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    fn setup() -> (TestKey, JwtValidator) {
        let key = ec_key(Some("k1"), false);
        let validator = JwtValidator::new(settings(jwks(&[&key.jwk]))).unwrap();
        (key, validator)
    }

    /// Asserts the refusal and that the message does not leak the token.
    fn refused(validator: &JwtValidator, token: &str) -> OauthError {
        let err = validator.validate(token).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains(token), "{text}");
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!text.contains(part), "{text}");
        }
        assert_eq!(err.status(), "invalid_token");
        err
    }

    #[test]
    fn valid_token_is_accepted() {
        let (key, validator) = setup();
        let claims = claims();
        let token = sign(&key, Algorithm::ES256, Some("k1"), &claims);
        let valid = validator.validate(&token).unwrap();
        assert_eq!(valid.principal, "alice");
        assert_eq!(valid.groups, ["admins", "devs"]);
        let exp = claims["exp"].as_u64().unwrap();
        assert_eq!(valid.expires_at, UNIX_EPOCH + Duration::from_secs(exp));
        // Audience given as an array containing one of ours.
        let mut multi = claims.clone();
        multi["aud"] = json!(["x", "other"]);
        validator
            .validate(&sign(&key, Algorithm::ES256, Some("k1"), &multi))
            .unwrap();
    }

    #[test]
    fn expired_and_immature_tokens() {
        let (key, validator) = setup();
        let mut c = claims();
        c["exp"] = json!(now() - 600);
        let token = sign(&key, Algorithm::ES256, Some("k1"), &c);
        assert_eq!(refused(&validator, &token), OauthError::Expired);
        // Within the leeway: still accepted.
        c["exp"] = json!(now() - 5);
        validator
            .validate(&sign(&key, Algorithm::ES256, Some("k1"), &c))
            .unwrap();
        let mut c = claims();
        c["nbf"] = json!(now() + 600);
        let token = sign(&key, Algorithm::ES256, Some("k1"), &c);
        assert_eq!(refused(&validator, &token), OauthError::NotYetValid);
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        let token = sign(&key, Algorithm::ES256, Some("k1"), &c);
        assert_eq!(
            refused(&validator, &token),
            OauthError::MissingClaim("exp".into())
        );
        c["exp"] = json!("tomorrow");
        let token = sign(&key, Algorithm::ES256, Some("k1"), &c);
        assert_eq!(
            refused(&validator, &token),
            OauthError::MissingClaim("exp".into())
        );
    }

    #[test]
    fn issuer_and_audience() {
        let (key, validator) = setup();
        let mut c = claims();
        c["iss"] = json!("https://evil.example");
        let token = sign(&key, Algorithm::ES256, Some("k1"), &c);
        assert_eq!(refused(&validator, &token), OauthError::WrongIssuer);
        c.as_object_mut().unwrap().remove("iss");
        let token = sign(&key, Algorithm::ES256, Some("k1"), &c);
        assert_eq!(
            refused(&validator, &token),
            OauthError::MissingClaim("iss".into())
        );

        let mut c = claims();
        c["aud"] = json!("someone-else");
        let token = sign(&key, Algorithm::ES256, Some("k1"), &c);
        assert_eq!(refused(&validator, &token), OauthError::WrongAudience);
        c["aud"] = json!(["a", "b"]);
        let token = sign(&key, Algorithm::ES256, Some("k1"), &c);
        assert_eq!(refused(&validator, &token), OauthError::WrongAudience);
        c.as_object_mut().unwrap().remove("aud");
        let token = sign(&key, Algorithm::ES256, Some("k1"), &c);
        assert_eq!(
            refused(&validator, &token),
            OauthError::MissingClaim("aud".into())
        );

        // Without configured issuer and audiences, neither is checked.
        let open = JwtValidator::new(JwtSettings {
            jwks_json: jwks(&[&key.jwk]),
            ..JwtSettings::default()
        })
        .unwrap();
        let mut c = claims();
        c["iss"] = json!("anyone");
        c["aud"] = json!("anything");
        assert_eq!(
            open.validate(&sign(&key, Algorithm::ES256, Some("k1"), &c))
                .unwrap()
                .principal,
            "alice"
        );
    }

    #[test]
    fn signature_and_key_selection() {
        let (_key, validator) = setup();
        let other = ec_key(Some("k1"), false);
        let token = sign(&other, Algorithm::ES256, Some("k1"), &claims());
        assert_eq!(refused(&validator, &token), OauthError::InvalidSignature);

        let (key, validator) = setup();
        let token = sign(&key, Algorithm::ES256, Some("k2"), &claims());
        assert_eq!(refused(&validator, &token), OauthError::UnknownKey);

        // No kid: the single key is used.
        let token = sign(&key, Algorithm::ES256, None, &claims());
        assert_eq!(validator.validate(&token).unwrap().principal, "alice");

        // A kid, and a single key without one: that key.
        let mut anonymous = key.jwk.clone();
        anonymous.as_object_mut().unwrap().remove("kid");
        let single = JwtValidator::new(settings(jwks(&[&anonymous]))).unwrap();
        single
            .validate(&sign(&key, Algorithm::ES256, Some("whatever"), &claims()))
            .unwrap();

        // No kid with two keys: ambiguous.
        let second = ec_key(Some("k2"), false);
        let two = JwtValidator::new(settings(jwks(&[&key.jwk, &second.jwk]))).unwrap();
        assert_eq!(refused(&two, &token), OauthError::UnknownKey);
        // With kids, each key verifies its own tokens only.
        two.validate(&sign(&key, Algorithm::ES256, Some("k1"), &claims()))
            .unwrap();
        two.validate(&sign(&second, Algorithm::ES256, Some("k2"), &claims()))
            .unwrap();
        let swapped = sign(&second, Algorithm::ES256, Some("k1"), &claims());
        assert_eq!(refused(&two, &swapped), OauthError::InvalidSignature);

        // A tampered payload breaks the signature.
        let token = sign(&key, Algorithm::ES256, Some("k1"), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut evil = claims();
        evil["sub"] = json!("root");
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(evil.to_string()),
            parts[2]
        );
        assert_eq!(refused(&validator, &tampered), OauthError::InvalidSignature);
    }

    #[test]
    fn p384_keys_verify_es384() {
        let key = ec_key(Some("big"), true);
        let validator = JwtValidator::new(settings(jwks(&[&key.jwk]))).unwrap();
        let token = sign(&key, Algorithm::ES384, Some("big"), &claims());
        assert_eq!(validator.validate(&token).unwrap().principal, "alice");
    }

    #[test]
    fn refused_algorithms() {
        let (key, validator) = setup();
        let claims = claims();
        let none = forge(json!({"alg": "none", "kid": "k1"}), &claims, b"");
        assert_eq!(
            refused(&validator, &none),
            OauthError::UnsupportedAlgorithm("none")
        );
        let none = forge(json!({"alg": "None"}), &claims, b"");
        assert_eq!(
            refused(&validator, &none),
            OauthError::UnsupportedAlgorithm("none")
        );
        // HS256 keyed with the public key: the classic confusion attack.
        let public = serde_json::to_vec(&key.jwk).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let hs =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&public)).unwrap();
        assert_eq!(
            refused(&validator, &hs),
            OauthError::UnsupportedAlgorithm("HMAC")
        );
        // An algorithm of another family, or another curve, than the key's.
        let rs = forge(json!({"alg": "RS256", "kid": "k1"}), &claims, &[1; 256]);
        assert_eq!(refused(&validator, &rs), OauthError::AlgorithmMismatch);
        let es384 = forge(json!({"alg": "ES384", "kid": "k1"}), &claims, &[1; 96]);
        assert_eq!(refused(&validator, &es384), OauthError::AlgorithmMismatch);
        let unknown = forge(json!({"alg": "XX999", "kid": "k1"}), &claims, &[1; 8]);
        assert!(matches!(
            refused(&validator, &unknown),
            OauthError::UnsupportedAlgorithm(_)
        ));
        let missing = forge(json!({"kid": "k1"}), &claims, &[1; 8]);
        assert!(matches!(
            refused(&validator, &missing),
            OauthError::InvalidToken(_)
        ));
    }

    #[test]
    fn malformed_tokens() {
        let (_key, validator) = setup();
        for token in [
            "",
            "a",
            "a.b",
            "a.b.c",
            "a.b.c.d",
            "....",
            "eyJhbGciOiJFUzI1NiJ9",
            "eyJhbGciOiJFUzI1NiJ9.!!!.abc",
            "eyJhbGciOiJFUzI1NiJ9.e30.",
            "W10.e30.abc",
        ] {
            assert!(validator.validate(token).is_err(), "accepted {token:?}");
        }
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            validator.validate(&long).unwrap_err(),
            OauthError::InvalidToken("too long")
        );
    }

    #[test]
    fn principal_and_group_claims() {
        let key = ec_key(Some("k1"), false);
        let validator = JwtValidator::new(JwtSettings {
            principal_claim: "preferred_username".into(),
            groups_claim: Some("realm_access.roles".into()),
            ..settings(jwks(&[&key.jwk]))
        })
        .unwrap();
        let mut c = claims();
        c["preferred_username"] = json!("bob");
        c["realm_access"] = json!({"roles": ["ops", 7, "", "sre"]});
        let valid = validator
            .validate(&sign(&key, Algorithm::ES256, Some("k1"), &c))
            .unwrap();
        assert_eq!(valid.principal, "bob");
        assert_eq!(valid.groups, ["ops", "sre"]);

        // Missing or non-string principal.
        let c = claims();
        let token = sign(&key, Algorithm::ES256, Some("k1"), &c);
        assert_eq!(
            refused(&validator, &token),
            OauthError::MissingClaim("preferred_username".into())
        );
        let mut c = claims();
        c["preferred_username"] = json!(42);
        let token = sign(&key, Algorithm::ES256, Some("k1"), &c);
        assert!(matches!(
            refused(&validator, &token),
            OauthError::MissingClaim(_)
        ));

        // Space-separated string groups; a claim name containing dots at top level.
        let validator = JwtValidator::new(JwtSettings {
            groups_claim: Some("https://example.com/groups".into()),
            ..settings(jwks(&[&key.jwk]))
        })
        .unwrap();
        let mut c = claims();
        c["https://example.com/groups"] = json!("a b  c");
        let valid = validator
            .validate(&sign(&key, Algorithm::ES256, Some("k1"), &c))
            .unwrap();
        assert_eq!(valid.groups, ["a", "b", "c"]);
    }

    #[test]
    fn jwks_parsing() {
        let key = ec_key(Some("k1"), false);
        let bad = |json: String| JwtValidator::new(settings(json)).unwrap_err();
        assert!(matches!(
            bad("not json".into()),
            OauthError::InvalidConfig(_)
        ));
        assert!(matches!(bad("{}".into()), OauthError::InvalidConfig(_)));
        assert!(matches!(bad(jwks(&[])), OauthError::InvalidConfig(_)));
        let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "s"});
        let err = bad(jwks(&[&key.jwk, &oct])).to_string();
        assert!(err.contains("symmetric"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
        let mut none = key.jwk.clone();
        none["alg"] = json!("none");
        assert!(bad(jwks(&[&none])).to_string().contains("none"));
        let mut hs = key.jwk.clone();
        hs["alg"] = json!("HS256");
        assert!(matches!(bad(jwks(&[&hs])), OauthError::InvalidConfig(_)));
        let mut wrong_alg = key.jwk.clone();
        wrong_alg["alg"] = json!("RS256");
        assert!(matches!(
            bad(jwks(&[&wrong_alg])),
            OauthError::InvalidConfig(_)
        ));
        let twin = ec_key(Some("k1"), false);
        assert!(bad(jwks(&[&key.jwk, &twin.jwk])).to_string().contains("k1"));
        let mut broken = key.jwk.clone();
        broken.as_object_mut().unwrap().remove("y");
        assert!(matches!(
            bad(jwks(&[&broken])),
            OauthError::InvalidConfig(_)
        ));
        assert!(matches!(
            bad(jwks(&[&json!("string")])),
            OauthError::InvalidConfig(_)
        ));
        assert!(matches!(
            JwtValidator::new(JwtSettings {
                leeway_secs: MAX_LEEWAY_SECS + 1,
                ..settings(jwks(&[&key.jwk]))
            }),
            Err(OauthError::InvalidConfig(_))
        ));

        // Encryption keys, unknown types and unsupported curves are skipped, not fatal.
        let mut enc = ec_key(Some("e"), false).jwk;
        enc["use"] = json!("enc");
        let mut ops = ec_key(Some("o"), false).jwk;
        ops["key_ops"] = json!(["encrypt"]);
        let p521 = json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p"});
        let odd = json!({"kty": "XYZ", "kid": "x"});
        let mut with_alg = key.jwk.clone();
        with_alg["alg"] = json!("ES256");
        let validator =
            JwtValidator::new(settings(jwks(&[&enc, &ops, &p521, &odd, &with_alg]))).unwrap();
        assert_eq!(validator.keys.load().len(), 1);
        validator
            .validate(&sign(&key, Algorithm::ES256, Some("k1"), &claims()))
            .unwrap();
        assert!(!format!("{validator:?}").contains(key.jwk["x"].as_str().unwrap()));
        assert!(matches!(bad(jwks(&[&enc])), OauthError::InvalidConfig(_)));
    }

    #[test]
    fn client_first_parsing() {
        let msg = b"n,,\x01auth=Bearer eyJ.abc-_~+/.sig==\x01\x01";
        let parsed = parse_client_first(msg).unwrap();
        assert_eq!(parsed.token, "eyJ.abc-_~+/.sig==");
        assert_eq!(parsed.authzid, None);
        assert!(parsed.extensions.is_empty());

        let msg =
            b"n,a=us=2Cer,\x01auth=bearer tok\x01traceId=abc 123\x01logicalCluster=lc-1\x01\x01";
        let parsed = parse_client_first(msg).unwrap();
        assert_eq!(parsed.token, "tok");
        assert_eq!(parsed.authzid.as_deref(), Some("us,er"));
        assert_eq!(
            parsed.extensions,
            [
                ("traceId".to_string(), "abc 123".to_string()),
                ("logicalCluster".to_string(), "lc-1".to_string())
            ]
        );
        // Round trip through the encoder.
        assert_eq!(parse_client_first(&parsed.encode()).unwrap(), parsed);
        let debug = format!("{parsed:?}");
        assert!(!debug.contains("tok\""), "{debug}");
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn client_first_malformed() {
        let cases: &[&[u8]] = &[
            b"",
            b"\x01",
            b"n",
            b"n,",
            b"n,,",
            b"n,,\x01",
            b"n,,\x01\x01",
            b"n,,auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01auth=Bearer t",
            b"p=tls-unique,,\x01auth=Bearer t\x01\x01",
            b"x,,\x01auth=Bearer t\x01\x01",
            b"n,b=x,\x01auth=Bearer t\x01\x01",
            b"n,a=,\x01auth=Bearer t\x01\x01",
            b"n,a=x=4,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Basic dXNlcjpwdw==\x01\x01",
            b"n,,\x01auth=Bearer\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01auth=Bearer t t\x01\x01",
            b"n,,\x01auth=Bearer t!\x01\x01",
            b"n,,\x01auth=Bearer ===\x01\x01",
            b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
            b"n,,\x01auth=Bearer t\x01k1=v\x01\x01",
            b"n,,\x01auth=Bearer t\x01=v\x01\x01",
            b"n,,\x01auth=Bearer t\x01kv\x01\x01",
            b"n,,\x01auth=Bearer t\x01k=\x00\x01\x01",
            b"n,,\x01auth=Bearer t\x01\x01k=v\x01\x01",
            b"n,,\x01k=v\x01\x01",
            b"n,,\x01auth=Bearer \xff\x01\x01",
        ];
        for case in cases {
            let err = parse_client_first(case).unwrap_err();
            assert_eq!(err.status(), "invalid_request", "{err}");
        }
        assert!(is_failure_ack(b"\x01"));
        assert!(!is_failure_ack(b"\x01\x01"));
    }

    #[test]
    fn failure_challenge_json() {
        let challenge = failure_challenge("invalid_token");
        assert_eq!(challenge, br#"{"status":"invalid_token"}"#);
        let quoted: Value = serde_json::from_slice(&failure_challenge("a\"b")).unwrap();
        assert_eq!(quoted["status"], "a\"b");
    }

    #[test]
    fn unverified_claims() {
        let key = ec_key(None, false);
        let mut c = claims();
        c["n"] = json!(12);
        c["nested"] = json!({"name": "x"});
        let token = sign(&key, Algorithm::ES256, None, &c);
        assert_eq!(unverified_claim(&token, "sub").as_deref(), Some("alice"));
        assert_eq!(unverified_claim(&token, "n").as_deref(), Some("12"));
        assert_eq!(
            unverified_claim(&token, "nested.name").as_deref(),
            Some("x")
        );
        assert_eq!(unverified_claim(&token, "groups"), None);
        assert_eq!(unverified_claim(&token, "absent"), None);
        assert_eq!(unverified_claim("garbage", "sub"), None);
        assert_eq!(unverified_claim("a.b.c", "sub"), None);
        assert_eq!(unverified_claim("a.W10.c", "sub"), None);
        // Unsigned tokens are read too: this mode trusts the broker to verify.
        let unsigned = forge(json!({"alg": "none"}), &json!({"sub": "bob"}), b"");
        assert_eq!(unverified_claim(&unsigned, "sub").as_deref(), Some("bob"));
    }

    /// A JWKS file in the temporary directory, removed when dropped.
    struct TempJwks(PathBuf);

    impl TempJwks {
        fn new(name: &str, json: &str) -> TempJwks {
            let path = std::env::temp_dir()
                .join(format!("sluice-jwks-{}-{name}.json", std::process::id()));
            std::fs::write(&path, json).unwrap();
            TempJwks(path)
        }
    }

    impl Drop for TempJwks {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn replacing_keys_is_atomic_and_keeps_the_last_good_set() {
        let k1 = ec_key(Some("k1"), false);
        let k2 = ec_key(Some("k2"), false);
        let validator = JwtValidator::new(settings(jwks(&[&k1.jwk]))).unwrap();
        let updates = validator.key_updates();
        let t1 = sign(&k1, Algorithm::ES256, Some("k1"), &claims());
        let t2 = sign(&k2, Algorithm::ES256, Some("k2"), &claims());
        assert_eq!(refused(&validator, &t2), OauthError::UnknownKey);

        assert_eq!(validator.replace_keys(&jwks(&[&k2.jwk])).unwrap(), 1);
        assert_eq!(*updates.borrow(), 1);
        assert_eq!(validator.validate(&t2).unwrap().principal, "alice");
        assert_eq!(refused(&validator, &t1), OauthError::UnknownKey);
        assert_eq!(validator.key_ids(), ["k2"]);

        // An unusable document leaves the current keys in place.
        for bad in ["not json".to_string(), jwks(&[]), jwks(&[&k2.jwk, &k2.jwk])] {
            assert!(validator.replace_keys(&bad).is_err());
            validator.validate(&t2).unwrap();
        }
        assert_eq!(*updates.borrow(), 1);
    }

    #[tokio::test]
    async fn unknown_key_id_triggers_a_refresh_that_finds_the_rotated_key() {
        let k1 = ec_key(Some("k1"), false);
        let k2 = ec_key(Some("k2"), false);
        let file = TempJwks::new("rotate", &jwks(&[&k1.jwk]));
        let source = JwksSource::File(file.0.clone());
        let validator =
            Arc::new(JwtValidator::new(settings(source.read().await.unwrap())).unwrap());
        // A periodic refresh far away: only the unknown key id can cause the one awaited.
        let _refresh = spawn_jwks_refresh(validator.clone(), source, Duration::from_secs(3600));
        let mut updates = validator.key_updates();

        let t1 = sign(&k1, Algorithm::ES256, Some("k1"), &claims());
        validator.validate(&t1).unwrap();
        // The issuer rotates: the file now holds key 2 only.
        std::fs::write(&file.0, jwks(&[&k2.jwk])).unwrap();
        let t2 = sign(&k2, Algorithm::ES256, Some("k2"), &claims());
        // Refused at once (no waiting for I/O), and a refresh is asked for.
        assert_eq!(refused(&validator, &t2), OauthError::UnknownKey);
        tokio::time::timeout(Duration::from_secs(10), updates.changed())
            .await
            .expect("a refresh after the unknown key id")
            .unwrap();
        assert_eq!(validator.validate(&t2).unwrap().principal, "alice");
        assert_eq!(refused(&validator, &t1), OauthError::UnknownKey);
    }

    #[tokio::test]
    async fn periodic_refresh_rereads_the_file_and_stops_when_dropped() {
        let k1 = ec_key(Some("k1"), false);
        let k2 = ec_key(Some("k2"), false);
        let file = TempJwks::new("periodic", &jwks(&[&k1.jwk]));
        let source = JwksSource::File(file.0.clone());
        let validator = Arc::new(JwtValidator::new(settings(jwks(&[&k1.jwk]))).unwrap());
        let mut updates = validator.key_updates();
        let refresh = spawn_jwks_refresh(validator.clone(), source, Duration::from_millis(20));
        std::fs::write(&file.0, jwks(&[&k1.jwk, &k2.jwk])).unwrap();
        let t2 = sign(&k2, Algorithm::ES256, Some("k2"), &claims());
        tokio::time::timeout(Duration::from_secs(10), async {
            while validator.validate(&t2).is_err() {
                updates.changed().await.unwrap();
            }
        })
        .await
        .expect("the periodic refresh installs key 2");
        drop(refresh);
        // The aborted task releases its hold on the validator.
        tokio::time::timeout(Duration::from_secs(10), async {
            while Arc::strong_count(&validator) > 1 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the refresh task ends");
    }

    #[test]
    fn on_demand_refreshes_are_rate_limited() {
        let now = Instant::now();
        let mut limit = OnDemandLimit {
            gap: MIN_ON_DEMAND_REFRESH,
            last: None,
        };
        assert_eq!(limit.ready_at(now), now, "the first one runs at once");
        limit.last = Some(now);
        assert_eq!(limit.ready_at(now), now + MIN_ON_DEMAND_REFRESH);
        let later = now + Duration::from_secs(10);
        assert_eq!(limit.ready_at(later), now + MIN_ON_DEMAND_REFRESH);
        let much_later = now + Duration::from_secs(31);
        assert_eq!(limit.ready_at(much_later), much_later);
    }

    #[test]
    fn jwks_urls_are_checked_and_redacted() {
        check_jwks_url("http://idp.example:8080/realms/x/protocol/openid-connect/certs").unwrap();
        check_jwks_url("http://127.0.0.1/jwks").unwrap();
        check_jwks_url("https://idp.example/jwks").unwrap();
        check_jwks_url("https://user:pw@idp.example:8443/realms/x/certs?a=b").unwrap();
        assert_eq!(url_is_https("https://idp.example/jwks"), Ok(true));
        assert_eq!(url_is_https("http://idp.example/jwks"), Ok(false));
        for bad in [
            "ftp://idp.example/jwks",
            "file:///etc/jwks.json",
            "ws://idp.example/jwks",
            "idp.example/jwks",
            "http://",
            "https://",
            "https:///jwks",
            "not a url",
            "",
        ] {
            assert!(check_jwks_url(bad).is_err(), "{bad}");
        }
        let ftp = check_jwks_url("ftp://idp.example/jwks").unwrap_err();
        assert!(ftp.contains("http:// or https://"), "{ftp}");
        let secret = "http://user:s3cret@idp.example/jwks?token=t0ken#frag";
        let err = check_jwks_url(&secret.replace("http:", "ftp:")).unwrap_err();
        assert!(!err.contains("s3cret") && !err.contains("t0ken"), "{err}");
        let shown = redact_url(secret);
        assert!(shown.starts_with("http://idp.example/jwks "), "{shown}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("t0ken"),
            "{shown}"
        );
        assert_eq!(
            redact_url("http://idp.example/jwks"),
            "http://idp.example/jwks"
        );
        assert_eq!(
            format!("{:?}", JwksSource::Url(secret.into())),
            redact_url(secret)
        );
    }

    /// Serves each accepted connection one canned HTTP response (blocking, on a thread).
    fn serve_http(responses: Vec<String>) -> std::net::SocketAddr {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for response in responses {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // Read the request head up to its blank line.
                while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                    line.clear();
                }
                let mut stream = reader.into_inner();
                stream.write_all(response.as_bytes()).unwrap();
            }
        });
        addr
    }

    fn http_response(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn jwks_is_fetched_over_http_and_failures_name_the_url_only() {
        let key = ec_key(Some("k1"), false);
        let doc = jwks(&[&key.jwk]);
        let addr = serve_http(vec![
            http_response("200 OK", &doc),
            http_response("404 Not Found", "{}"),
        ]);
        let url = format!("http://user:s3cret@{addr}/jwks?token=t0ken");
        let source = JwksSource::Url(url.clone());
        assert_eq!(source.read_blocking().unwrap(), doc);
        let err = source.read_blocking().unwrap_err().to_string();
        assert!(err.contains("404"), "{err}");
        assert!(err.contains(&format!("http://{addr}/jwks")), "{err}");
        assert!(!err.contains("s3cret") && !err.contains("t0ken"), "{err}");

        // Nobody listening any more: a connection error, still naming the URL.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let gone = closed.local_addr().unwrap();
        drop(closed);
        let err = JwksSource::Url(format!("http://{gone}/keys"))
            .read_blocking()
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("http://{gone}/keys")), "{err}");

        let err = JwksSource::File("/nonexistent/jwks.json".into())
            .read_blocking()
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/jwks.json"), "{err}");
    }

    /// A CA made for one test, its certificate written as a PEM bundle into `dir`.
    struct TestCa {
        cert: rcgen::Certificate,
        key: KeyPair,
        file: PathBuf,
    }

    impl TestCa {
        fn new(dir: &Path, name: &str) -> TestCa {
            use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let file = dir.join(format!("{name}.pem"));
            std::fs::write(&file, cert.pem()).unwrap();
            TestCa { cert, key, file }
        }

        /// A server certificate for `127.0.0.1` issued by this CA, and its key.
        fn issue_server(
            &self,
        ) -> (
            rustls_pki_types::CertificateDer<'static>,
            rustls_pki_types::PrivateKeyDer<'static>,
        ) {
            use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, SanType};
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, "jwks server");
            params.subject_alt_names =
                vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
            let key = rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
            (cert.der().clone(), key.into())
        }
    }

    /// Serves each accepted connection one canned HTTP response over TLS with `ca`'s server
    /// certificate (blocking, on a thread). A connection whose handshake fails (the client
    /// does not trust the certificate) uses its response up. The thread ends after the last.
    fn serve_https(ca: &TestCa, responses: Vec<String>) -> std::net::SocketAddr {
        use std::io::{BufRead, BufReader, Write};
        let (cert, key) = ca.issue_server();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for response in responses {
                let (stream, _) = listener.accept().unwrap();
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut reader = BufReader::new(rustls::StreamOwned::new(conn, stream));
                let mut line = String::new();
                // Read the request head up to its blank line; a failed handshake ends it.
                let mut complete = false;
                while let Ok(n) = reader.read_line(&mut line) {
                    if n == 0 {
                        break;
                    }
                    if line == "\r\n" {
                        complete = true;
                        break;
                    }
                    line.clear();
                }
                if complete {
                    let mut tls = reader.into_inner();
                    let _ = tls.write_all(response.as_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            }
        });
        addr
    }

    #[test]
    fn jwks_is_fetched_over_https_from_a_server_of_the_configured_ca() {
        let dir = crate::state::test_dir("jwks-https");
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa::new(&dir, "jwks-ca");
        let key = ec_key(Some("k1"), false);
        let doc = jwks(&[&key.jwk]);
        let addr = serve_https(
            &ca,
            vec![
                http_response("200 OK", &doc),
                http_response("500 Internal Server Error", "{}"),
            ],
        );
        let url = format!("https://user:s3cret@{addr}/jwks?token=t0ken");
        let reader = JwksReader::new(JwksSource::Url(url.clone()), Some(&ca.file)).unwrap();
        assert_eq!(reader.source(), &JwksSource::Url(url.clone()));
        let shown = format!("{reader} {reader:?}");
        assert!(shown.contains(&format!("https://{addr}/jwks")), "{shown}");
        assert!(shown.contains("jwks-ca.pem"), "{shown}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("t0ken"),
            "{shown}"
        );

        assert_eq!(reader.read_blocking().unwrap(), doc);
        // An HTTP error over TLS is reported as such, naming the URL only.
        let err = reader.read_blocking().unwrap_err().to_string();
        assert!(err.contains("HTTP status 500"), "{err}");
        assert!(err.contains(&format!("https://{addr}/jwks")), "{err}");
        assert!(!err.contains("s3cret") && !err.contains("t0ken"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_untrusted_https_server_is_refused_and_the_previous_keys_stay() {
        let dir = crate::state::test_dir("jwks-untrusted");
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa::new(&dir, "server-ca");
        let other = TestCa::new(&dir, "other-ca");
        let (k1, k2) = (ec_key(Some("k1"), false), ec_key(Some("k2"), false));
        let rotated = jwks(&[&k2.jwk]);
        // Three connections, one per refused fetch below: none gets its answer.
        let addr = serve_https(&ca, vec![http_response("200 OK", &rotated); 3]);
        let url = format!("https://svc:s3cret@{addr}/jwks?token=t0ken");
        let validator = JwtValidator::new(settings(jwks(&[&k1.jwk]))).unwrap();

        // Verified against another CA's bundle.
        let reader = JwksReader::new(JwksSource::Url(url.clone()), Some(&other.file)).unwrap();
        let outcome = reader
            .read_blocking()
            .and_then(|json| validator.replace_keys(&json));
        let err = outcome.unwrap_err().to_string();
        assert!(err.contains("TLS"), "{err}");
        assert!(err.contains("not issued by a CA of the CA bundle"), "{err}");
        assert!(err.contains("other-ca.pem"), "{err}");
        assert!(err.contains(&format!("https://{addr}/jwks")), "{err}");
        assert!(!err.contains("s3cret") && !err.contains("t0ken"), "{err}");
        assert_eq!(validator.key_ids(), ["k1"]);

        // Verified against the platform's store (which cannot hold a CA made just now): the
        // error points at jwksCaFile.
        let err = JwksSource::Url(url)
            .read_blocking()
            .and_then(|json| validator.replace_keys(&json))
            .unwrap_err()
            .to_string();
        assert!(err.contains("platform's trust store"), "{err}");
        assert!(err.contains("jwksCaFile"), "{err}");
        assert!(!err.contains("s3cret") && !err.contains("t0ken"), "{err}");
        assert_eq!(validator.key_ids(), ["k1"]);

        // The right CA, but the certificate is for 127.0.0.1, not localhost.
        let by_name = format!("https://localhost:{}/jwks", addr.port());
        let err = JwksReader::new(JwksSource::Url(by_name), Some(&ca.file))
            .unwrap()
            .read_blocking()
            .and_then(|json| validator.replace_keys(&json))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("TLS") && err.contains("not valid for name"),
            "{err}"
        );
        assert_eq!(validator.key_ids(), ["k1"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_ca_bundle_is_checked_when_the_reader_is_built() {
        let dir = crate::state::test_dir("jwks-bundle");
        std::fs::create_dir_all(&dir).unwrap();
        let url = JwksSource::Url("https://idp.example/jwks".into());
        let missing = dir.join("missing.pem");
        let err = JwksReader::new(url.clone(), Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let err = JwksReader::new(url.clone(), Some(&empty))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("empty.pem") && err.contains("no PEM certificate"),
            "{err}"
        );

        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = JwksReader::new(url.clone(), Some(&broken))
            .unwrap_err()
            .to_string();
        assert!(err.contains("broken.pem"), "{err}");

        // A bundle only makes sense for https://: refused elsewhere rather than ignored.
        let ca = TestCa::new(&dir, "ca");
        for source in [
            JwksSource::Url("http://user:s3cret@idp.example/jwks".into()),
            JwksSource::File(dir.join("jwks.json")),
        ] {
            let err = JwksReader::new(source, Some(&ca.file))
                .unwrap_err()
                .to_string();
            assert!(err.contains("only to an https:// URL"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
        JwksReader::new(url, Some(&ca.file)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_background_refresh_reads_an_https_url_with_the_readers_ca() {
        let dir = crate::state::test_dir("jwks-https-refresh");
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa::new(&dir, "ca");
        let (k1, k2) = (ec_key(Some("k1"), false), ec_key(Some("k2"), false));
        let addr = serve_https(&ca, vec![http_response("200 OK", &jwks(&[&k2.jwk]))]);
        let reader = JwksReader::new(
            JwksSource::Url(format!("https://{addr}/jwks")),
            Some(&ca.file),
        )
        .unwrap();
        let validator = Arc::new(JwtValidator::new(settings(jwks(&[&k1.jwk]))).unwrap());
        let mut updates = validator.key_updates();
        let _refresh = spawn_jwks_refresh(validator.clone(), reader, Duration::from_millis(20));
        tokio::time::timeout(Duration::from_secs(10), async {
            while validator.key_ids() != ["k2"] {
                updates.changed().await.unwrap();
            }
        })
        .await
        .expect("the refresh installs the key served over https");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
