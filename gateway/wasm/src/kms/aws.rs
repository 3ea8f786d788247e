//! AWS KMS as a key provider: key-encryption keys live in AWS KMS, data keys are made by
//! `GenerateDataKey` (`KeySpec=AES_256`) and unwrapped by `Decrypt`, over KMS's JSON HTTP API
//! (`POST /`, `X-Amz-Target: TrentService.*`) signed with AWS Signature Version 4.
//!
//! Why hand-written rather than the AWS SDK: the SDK brings an async runtime stack, its own
//! HTTP and TLS clients and a credential chain of its own, for two calls. SigV4 is small and
//! fully specified, and the gateway already links an HTTP client (`ureq`, blocking, with the
//! gateway's rustls and ring provider), `hmac` and `sha2`; the signer below is checked
//! against AWS's published SigV4 test-suite vectors (canonical request, string to sign,
//! signature) in this file's tests.
//!
//! Calls block (each bounded by `timeoutMs`): the host calls providers from plugin threads,
//! never from the workers that serve Kafka connections. Credentials come from the
//! configuration or, when it names none, from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN`. No credential, signature or key material reaches an error, a log line
//! or a `Debug` output: errors carry KMS's error code and, for refusals, its message with any
//! credential scrubbed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{hex, DataKey, KeyProvider, ProviderError, SecretKey};

/// The service name in SigV4 credential scopes.
const SERVICE: &str = "kms";
/// The largest KMS answer read (a data key answer is a few hundred bytes).
const MAX_ANSWER: u64 = 64 * 1024;
/// KMS's JSON protocol version.
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Where an [`AwsKms`] sends its calls and with which credentials.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsKmsConfig {
    /// The AWS region (`eu-west-1`): the default endpoint's and the signature's.
    pub region: String,
    /// The endpoint URL, `http(s)://host[:port]` (a local test server, a VPC endpoint);
    /// default `https://kms.REGION.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The access key id; with `secretAccessKey`, replaces the environment's credentials.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// The secret access key (never serialized back).
    #[serde(default, skip_serializing)]
    pub secret_access_key: Option<String>,
    /// A session token (temporary credentials), sent with the configured keys (never
    /// serialized back).
    #[serde(default, skip_serializing)]
    pub session_token: Option<String>,
    /// The bound on each call, connection included, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5000
}

/// "set" or "unset": what `Debug` shows of a credential.
fn presence(v: &Option<String>) -> &'static str {
    if v.is_some() {
        "<set>"
    } else {
        "<unset>"
    }
}

impl fmt::Debug for AwsKmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsConfig")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &presence(&self.access_key_id))
            .field("secret_access_key", &presence(&self.secret_access_key))
            .field("session_token", &presence(&self.session_token))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// AWS credentials; `Debug` prints none of them.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(..)")
    }
}

impl Credentials {
    /// Credentials from their parts.
    pub fn new(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> Self {
        Credentials {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            session_token: session_token.map(str::to_string),
        }
    }

    /// The configured credentials, else the environment's (read through `env`).
    fn resolve(config: &AwsKmsConfig, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => {
                return Ok(Credentials::new(
                    id,
                    secret,
                    config.session_token.as_deref(),
                ))
            }
            (None, None) if config.session_token.is_none() => {}
            _ => bail!(
                "aws-kms: accessKeyId and secretAccessKey are given together (and sessionToken \
                 only with them)"
            ),
        }
        let nonempty = |name: &str| env(name).filter(|v| !v.is_empty());
        match (
            nonempty("AWS_ACCESS_KEY_ID"),
            nonempty("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Ok(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: nonempty("AWS_SESSION_TOKEN"),
            }),
            _ => bail!(
                "aws-kms: no credentials: set accessKeyId and secretAccessKey, or \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ),
        }
    }

    /// The strings that must never appear in an error (the access key id too: it names the
    /// account's key even if it is not the secret).
    fn secrets(&self) -> impl Iterator<Item = &str> {
        [
            Some(self.access_key_id.as_str()),
            Some(self.secret_access_key.as_str()),
            self.session_token.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
    }
}

/// The AWS KMS key provider; see the module docs.
pub struct AwsKms {
    region: String,
    /// `scheme://authority/`, where every call is POSTed.
    url: String,
    /// The `Host` header sent and signed (the URL's authority).
    host: String,
    credentials: Credentials,
    agent: ureq::Agent,
    timeout: Duration,
}

impl fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKms")
            .field("region", &self.region)
            .field("url", &self.url)
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AwsKms {
    /// A provider for `config`, credentials from the process environment when the
    /// configuration has none.
    pub fn new(config: &AwsKmsConfig) -> Result<AwsKms> {
        AwsKms::with_env(config, |name| std::env::var(name).ok())
    }

    /// A provider for `config`, reading environment variables through `env` (tests give
    /// their own instead of changing the process's).
    pub fn with_env(config: &AwsKmsConfig, env: impl Fn(&str) -> Option<String>) -> Result<AwsKms> {
        let credentials = Credentials::resolve(config, env)?;
        AwsKms::with_credentials(config, credentials)
    }

    /// A provider for `config` with these credentials (those of `config` are ignored).
    pub fn with_credentials(config: &AwsKmsConfig, credentials: Credentials) -> Result<AwsKms> {
        let region = config.region.trim();
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            bail!("aws-kms: region `{region}` is not a region name");
        }
        if config.timeout_ms == 0 {
            bail!("aws-kms: timeoutMs must be above 0");
        }
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://kms.{region}.amazonaws.com"));
        let uri: ureq::http::Uri = endpoint
            .parse()
            .with_context(|| format!("aws-kms: endpoint `{endpoint}` is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("aws-kms: endpoint `{endpoint}` is not an http:// or https:// URL"),
        };
        let authority = uri
            .authority()
            .with_context(|| format!("aws-kms: endpoint `{endpoint}` has no host"))?;
        if authority.as_str().contains('@') {
            // Credentials in a URL would be printed wherever the endpoint is.
            bail!("aws-kms: the endpoint may not carry credentials (user@host)");
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            bail!("aws-kms: endpoint `{endpoint}` has a path or query; KMS is called at `/`");
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // A redirect would need signing again for another host: KMS does not redirect.
            .max_redirects(0)
            .user_agent("sluice-gateway");
        if https {
            agent = agent.tls_config(tls_config()?);
        }
        let scheme = if https { "https" } else { "http" };
        Ok(AwsKms {
            region: region.to_string(),
            url: format!("{scheme}://{authority}/"),
            host: authority.as_str().to_string(),
            credentials,
            agent: agent.build().into(),
            timeout,
        })
    }

    /// Calls KMS operation `target` (`TrentService.Decrypt`) with `body`; its JSON answer on
    /// HTTP 200, else the error KMS's answer maps to. `kek` names the key in errors.
    fn call(&self, target: &str, body: &Value, kek: &str) -> Result<Value, ProviderError> {
        let payload = serde_json::to_vec(body)
            .map_err(|e| ProviderError::Refused(format!("encoding the {target} request: {e}")))?;
        let amz_date = amz_date(now_secs());
        let target_header = format!("TrentService.{target}");
        let mut headers: Vec<(&str, &str)> = vec![
            ("content-type", CONTENT_TYPE),
            ("host", &self.host),
            ("x-amz-date", &amz_date),
            ("x-amz-target", &target_header),
        ];
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-amz-security-token", token));
        }
        let authorization = authorization(
            &self.credentials,
            &self.region,
            SERVICE,
            &amz_date,
            &Signable {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                payload: &payload,
            },
        );
        let mut request = self.agent.post(&self.url);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let mut response = request
            .header("authorization", &authorization)
            .send(&payload[..])
            .map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        let answer: Value = match serde_json::from_str(&text) {
            Ok(answer) => answer,
            // Errors of AWS's authentication layer (and of moto's) come as XML: the same
            // two fields, `Code` and `Message`.
            Err(_) => json!({
                "__type": xml_field(&text, "Code"),
                "message": xml_field(&text, "Message"),
            }),
        };
        if status == 200 {
            return Ok(answer);
        }
        Err(self.refusal(status, &answer, kek))
    }

    /// A transport failure: the endpoint is down, slow or not KMS.
    fn unreachable(&self, e: ureq::Error) -> ProviderError {
        let what = match e {
            ureq::Error::Timeout(_) => format!("no answer within {} ms", self.timeout.as_millis()),
            ureq::Error::Io(io) => format!("I/O: {}", io.kind()),
            ureq::Error::HostNotFound => "host not found".into(),
            ureq::Error::ConnectionFailed => "connection failed".into(),
            ureq::Error::BodyExceedsLimit(_) => "answer too large".into(),
            e => self.scrub(&e.to_string()),
        };
        ProviderError::Unavailable(format!("AWS KMS at {}: {what}", self.url))
    }

    /// The error an HTTP error answer maps to: an unknown key, a refusal, or (throttling,
    /// KMS's own faults, 5xx) unavailability.
    fn refusal(&self, status: u16, answer: &Value, kek: &str) -> ProviderError {
        // `__type` is `NotFoundException` or `com.amazonaws.kms#NotFoundException`.
        let code = answer
            .get("__type")
            .and_then(Value::as_str)
            .map(|t| t.rsplit('#').next().unwrap_or(t))
            .unwrap_or("")
            .to_string();
        let message = ["message", "Message"]
            .iter()
            .find_map(|k| answer.get(*k).and_then(Value::as_str))
            .unwrap_or("");
        let code_text = if code.is_empty() {
            format!("HTTP status {status}")
        } else {
            format!("{code} (HTTP status {status})")
        };
        match code.as_str() {
            "NotFoundException" => ProviderError::UnknownKey(kek.to_string()),
            "ThrottlingException"
            | "LimitExceededException"
            | "KMSInternalException"
            | "DependencyTimeoutException"
            | "KeyUnavailableException"
            | "ServiceUnavailableException"
            | "InternalFailure" => ProviderError::Unavailable(format!("AWS KMS: {code_text}")),
            _ if status >= 500 || status == 429 => {
                ProviderError::Unavailable(format!("AWS KMS: {code_text}"))
            }
            // Signature and token errors: the code says enough, and their messages can
            // quote what was signed.
            "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "ExpiredTokenException"
            | "MissingAuthenticationToken" => {
                ProviderError::Refused(format!("AWS KMS: {code_text} for key `{kek}`"))
            }
            _ => {
                let message = self.scrub(message);
                let message: String = message.chars().take(300).collect();
                let sep = if message.is_empty() { "" } else { ": " };
                ProviderError::Refused(format!(
                    "AWS KMS: {code_text} for key `{kek}`{sep}{message}"
                ))
            }
        }
    }

    /// `text` with every credential replaced (an answer could echo the access key id).
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in self.credentials.secrets() {
            text = text.replace(secret, "<redacted>");
        }
        text
    }
}

impl KeyProvider for AwsKms {
    fn kind(&self) -> &'static str {
        "aws-kms"
    }

    fn generate_data_key(&self, kek: &str) -> Result<DataKey, ProviderError> {
        let answer = self.call(
            "GenerateDataKey",
            &json!({"KeyId": kek, "KeySpec": "AES_256"}),
            kek,
        )?;
        let plaintext = secret_key(field_bytes(&answer, "Plaintext")?)?;
        let wrapped = field_bytes(&answer, "CiphertextBlob")?;
        Ok(DataKey { plaintext, wrapped })
    }

    fn unwrap_data_key(&self, kek: &str, wrapped: &[u8]) -> Result<SecretKey, ProviderError> {
        let answer = self.call(
            "Decrypt",
            &json!({"KeyId": kek, "CiphertextBlob": BASE64.encode(wrapped)}),
            kek,
        )?;
        secret_key(field_bytes(&answer, "Plaintext")?)
    }
}

/// The text of the first `<name>` element of an XML answer (empty when there is none).
fn xml_field<'a>(text: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    text.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
        .map_or("", |(value, _)| value)
}

/// The bytes of base64 field `name` of a KMS answer.
fn field_bytes(answer: &Value, name: &str) -> Result<Vec<u8>, ProviderError> {
    let text = answer
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::Unavailable(format!("AWS KMS answered without `{name}`")))?;
    BASE64.decode(text).map_err(|_| {
        ProviderError::Unavailable(format!("AWS KMS answered a `{name}` that is not base64"))
    })
}

/// A 32-byte data key from `bytes` (which are overwritten).
fn secret_key(mut bytes: Vec<u8>) -> Result<SecretKey, ProviderError> {
    let key = <[u8; 32]>::try_from(bytes.as_slice()).map(SecretKey);
    bytes.fill(0);
    std::hint::black_box(&bytes);
    key.map_err(|_| {
        ProviderError::Refused(format!(
            "AWS KMS returned a {}-byte data key where 32 were asked",
            bytes.len()
        ))
    })
}

/// TLS for `https://` endpoints: rustls with the gateway's ring provider and the platform's
/// CAs (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured).
fn tls_config() -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        bail!("aws-kms: the platform's trust store has no CA certificates (set SSL_CERT_FILE)");
    }
    let roots: Vec<Certificate<'static>> = found
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    Ok(TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        // The gateway's provider, so no second cryptography library is linked. (ureq calls
        // this setter "unversioned": it exposes rustls' type; Cargo.lock pins the release.)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build())
}

/// Seconds since the Unix epoch.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYYMMDDTHHMMSSZ` (SigV4's ISO 8601 basic format, UTC) for `secs` since the epoch.
fn amz_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// What SigV4 signs of a request.
struct Signable<'a> {
    method: &'a str,
    /// The canonical (already URI-encoded) path.
    path: &'a str,
    /// The canonical query string (sorted, encoded); empty for KMS.
    query: &'a str,
    /// Every header to sign, `host` and `x-amz-date` included.
    headers: &'a [(&'a str, &'a str)],
    payload: &'a [u8],
}

/// The canonical request and the `SignedHeaders` list of `req`.
fn canonical_request(req: &Signable<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| {
            // Values trimmed, inner runs of spaces made one.
            let value = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (n.to_ascii_lowercase(), value)
        })
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let payload_hash = hex(&Sha256::digest(req.payload));
    let creq = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{payload_hash}",
        req.method, req.path, req.query
    );
    (creq, signed)
}

/// The credential scope: `DATE/REGION/SERVICE/aws4_request`.
fn scope(amz_date: &str, region: &str, service: &str) -> String {
    format!("{}/{region}/{service}/aws4_request", &amz_date[..8])
}

/// The string to sign for canonical request `creq`.
fn string_to_sign(amz_date: &str, scope: &str, creq: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(creq.as_bytes()))
    )
}

/// HMAC-SHA256 of `data` under `key`.
fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The signing key of `secret` for one day, region and service.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The `Authorization` header value of `req`, signed at `amz_date`.
fn authorization(
    credentials: &Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
    req: &Signable<'_>,
) -> String {
    let (creq, signed) = canonical_request(req);
    let scope = scope(amz_date, region, service);
    let sts = string_to_sign(amz_date, &scope, &creq);
    let key = signing_key(
        &credentials.secret_access_key,
        &amz_date[..8],
        region,
        service,
    );
    let signature = hex(&hmac(&key, sts.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        credentials.access_key_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // The credentials, date, region and service of AWS's SigV4 test suite.
    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";
    const HOST: &str = "example.amazonaws.com";

    fn suite_credentials() -> Credentials {
        Credentials::new(AKID, SECRET, None)
    }

    /// Checks the canonical request, string to sign and `Authorization` of one suite case.
    fn check(req: &Signable<'_>, creq: &str, sts: &str, authz: &str) {
        let (got_creq, _) = canonical_request(req);
        assert_eq!(got_creq, creq, "canonical request");
        let scope = scope(DATE, "us-east-1", "service");
        assert_eq!(
            string_to_sign(DATE, &scope, &got_creq),
            sts,
            "string to sign"
        );
        assert_eq!(
            authorization(&suite_credentials(), "us-east-1", "service", DATE, req),
            authz,
            "authorization"
        );
    }

    #[test]
    fn sigv4_suite_get_vanilla() {
        check(
            &Signable {
                method: "GET",
                path: "/",
                query: "",
                headers: &[("Host", HOST), ("X-Amz-Date", DATE)],
                payload: b"",
            },
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
    }

    #[test]
    fn sigv4_suite_post_x_www_form_urlencoded() {
        check(
            &Signable {
                method: "POST",
                path: "/",
                query: "",
                headers: &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Host", HOST),
                    ("X-Amz-Date", DATE),
                ],
                payload: b"Param1=value1",
            },
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n\
             host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             content-type;host;x-amz-date\n\
             9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        );
    }

    #[test]
    fn sigv4_suite_post_vanilla_and_header_order() {
        // Headers given in any order and case sign the same.
        let req = Signable {
            method: "POST",
            path: "/",
            query: "",
            headers: &[("X-Amz-Date", DATE), ("host", HOST)],
            payload: b"",
        };
        assert!(
            authorization(&suite_credentials(), "us-east-1", "service", DATE, &req).ends_with(
                "SignedHeaders=host;x-amz-date, \
             Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn sigv4_documented_signing_key() {
        // The derived key of AWS's IAM example (same secret and day, us-east-1, iam).
        assert_eq!(
            hex(&signing_key(SECRET, "20150830", "us-east-1", "iam")),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    #[test]
    fn amz_dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_440_938_160), DATE);
        // A leap day and the end of a century leap year.
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(1_709_251_199), "20240229T235959Z");
    }

    fn config(json: &str) -> Result<AwsKmsConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn config_fields_defaults_and_unknown_fields() {
        let c = config(r#"{"region":"eu-west-1"}"#).unwrap();
        assert_eq!(c.timeout_ms, 5000);
        assert!(c.endpoint.is_none() && c.access_key_id.is_none());
        let e = config(r#"{"region":"eu-west-1","secretKey":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `secretKey`"), "{e}");
        let c = config(
            r#"{"region":"us-east-1","endpoint":"http://127.0.0.1:1","accessKeyId":"A",
                "secretAccessKey":"S","sessionToken":"T","timeoutMs":250}"#,
        )
        .unwrap();
        assert_eq!(c.timeout_ms, 250);
        let kms = AwsKms::with_env(&c, |_| None).unwrap();
        assert_eq!(kms.url, "http://127.0.0.1:1/");
        assert_eq!(kms.host, "127.0.0.1:1");
        let kms = AwsKms::with_env(&config(r#"{"region":"eu-west-1"}"#).unwrap(), |n| {
            Some(format!("env-{n}"))
        })
        .unwrap();
        assert_eq!(kms.url, "https://kms.eu-west-1.amazonaws.com/");
        assert_eq!(kms.credentials.access_key_id, "env-AWS_ACCESS_KEY_ID");
        assert_eq!(
            kms.credentials.session_token.as_deref(),
            Some("env-AWS_SESSION_TOKEN")
        );
    }

    #[test]
    fn config_errors() {
        let none = |_: &str| None;
        for (json, want) in [
            (r#"{"region":"eu-west-1"}"#, "no credentials"),
            (r#"{"region":"eu-west-1","accessKeyId":"A"}"#, "together"),
            (
                r#"{"region":"eu west","accessKeyId":"A","secretAccessKey":"S"}"#,
                "region",
            ),
            (
                r#"{"region":"x","endpoint":"ftp://h","accessKeyId":"A","secretAccessKey":"S"}"#,
                "http",
            ),
            (
                r#"{"region":"x","endpoint":"http://u:p@h","accessKeyId":"A","secretAccessKey":"S"}"#,
                "credentials",
            ),
            (
                r#"{"region":"x","endpoint":"http://h/kms","accessKeyId":"A","secretAccessKey":"S"}"#,
                "path",
            ),
            (
                r#"{"region":"x","timeoutMs":0,"accessKeyId":"A","secretAccessKey":"S"}"#,
                "timeoutMs",
            ),
        ] {
            let e = AwsKms::with_env(&config(json).unwrap(), none).unwrap_err();
            assert!(format!("{e:#}").contains(want), "{json}: {e:#}");
        }
    }

    #[test]
    fn xml_error_fields() {
        let text = "<?xml version=\"1.0\"?>\n<ErrorResponse><Errors><Error>\
                    <Code>SignatureDoesNotMatch</Code><Message>m</Message><Type>Sender</Type>\
                    </Error></Errors></ErrorResponse>";
        assert_eq!(xml_field(text, "Code"), "SignatureDoesNotMatch");
        assert_eq!(xml_field(text, "Message"), "m");
        assert_eq!(xml_field(text, "Detail"), "");
        assert_eq!(xml_field("not xml", "Code"), "");
    }

    #[test]
    fn error_codes_map_to_provider_errors() {
        let kms = AwsKms::with_credentials(
            &config(r#"{"region":"us-east-1","endpoint":"http://127.0.0.1:9"}"#).unwrap(),
            suite_credentials(),
        )
        .unwrap();
        let map =
            |status, ty: &str| kms.refusal(status, &json!({"__type": ty, "message": "m"}), "k1");
        assert_eq!(
            map(400, "NotFoundException"),
            ProviderError::UnknownKey("k1".into())
        );
        assert_eq!(
            map(400, "com.amazonaws.kms#NotFoundException"),
            ProviderError::UnknownKey("k1".into())
        );
        for ty in [
            "ThrottlingException",
            "KMSInternalException",
            "DependencyTimeoutException",
        ] {
            assert!(
                matches!(map(400, ty), ProviderError::Unavailable(_)),
                "{ty}"
            );
        }
        assert!(matches!(map(503, ""), ProviderError::Unavailable(_)));
        assert!(matches!(
            map(500, "Whatever"),
            ProviderError::Unavailable(_)
        ));
        for ty in [
            "AccessDeniedException",
            "DisabledException",
            "InvalidCiphertextException",
            "IncorrectKeyException",
            "KMSInvalidStateException",
            "UnrecognizedClientException",
        ] {
            let e = map(400, ty);
            assert!(matches!(e, ProviderError::Refused(_)), "{ty}: {e:?}");
            assert!(e.to_string().contains(ty), "{e}");
        }
    }

    #[test]
    fn no_secret_in_errors_or_debug() {
        const KEY_ID: &str = "AKIAUNIQUEKEYID00001";
        const SECRET_KEY: &str = "very-secret-access-key-0123456789abcdef";
        const TOKEN: &str = "session-token-0123456789-unique";
        let json = format!(
            r#"{{"region":"us-east-1","endpoint":"http://127.0.0.1:9","accessKeyId":"{KEY_ID}",
                "secretAccessKey":"{SECRET_KEY}","sessionToken":"{TOKEN}","timeoutMs":300}}"#
        );
        let c = config(&json).unwrap();
        let kms = AwsKms::with_env(&c, |_| None).unwrap();
        // An answer that echoes every credential, for every error code path.
        let echo = format!("user {KEY_ID} secret {SECRET_KEY} token {TOKEN}");
        let mut texts = vec![
            format!("{c:?}"),
            format!("{kms:?}"),
            format!("{:?}", kms.credentials),
            format!("{:?}", SecretKey([7; 32])),
        ];
        for (status, ty) in [
            (400, "NotFoundException"),
            (400, "AccessDeniedException"),
            (400, "InvalidSignatureException"),
            (400, "UnrecognizedClientException"),
            (400, "ThrottlingException"),
            (500, ""),
            (400, ""),
        ] {
            let e = kms.refusal(status, &json!({"__type": ty, "message": echo}), "k");
            texts.push(format!("{e}"));
            texts.push(format!("{e:?}"));
        }
        // A real transport failure (nothing listens on port 9).
        let e = kms.generate_data_key("k").unwrap_err();
        assert!(matches!(e, ProviderError::Unavailable(_)), "{e:?}");
        texts.push(format!("{e} {e:?}"));
        for text in &texts {
            for secret in [KEY_ID, SECRET_KEY, TOKEN] {
                assert!(!text.contains(secret), "`{secret}` in `{text}`");
            }
            assert!(!text.contains("Signature="), "{text}");
            assert!(!text.contains("[7, 7"), "{text}");
        }
    }
}
