//! A local AWS KMS: `moto_server` (the `moto[server]` PyPI package) as a child process on a
//! free 127.0.0.1 port, killed on drop, with helpers to create, disable and schedule the
//! deletion of KMS keys.
//!
//! moto answers KMS's real JSON API. It checks no signature unless started with
//! `INITIAL_NO_AUTH_ACTION_COUNT`: then the first that many requests pass unchecked and every
//! later one must carry a valid SigV4 signature by an IAM user's access key, and an IAM policy
//! allowing the action. [`Moto::start_authenticated`] uses this to test the gateway's signer
//! against a server that verifies it.
//!
//! The binary is `tests/py/.venv/bin/moto_server` (installed by `make py-deps`), else
//! `moto_server` on `PATH`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sluice_wasm::kms::aws::AwsKmsConfig;

use crate::free_port;

/// The region every key of these tests lives in.
pub const MOTO_REGION: &str = "us-east-1";

/// The IAM requests [`Moto::start_authenticated`] makes before keys are created.
const IAM_SETUP_REQUESTS: usize = 4;

/// Where `moto_server` is: the test virtual environment's, else the one on `PATH`.
pub fn moto_server_path() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/.venv/bin/moto_server");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("moto_server")
    }
}

/// A KMS key moto created.
#[derive(Debug, Clone)]
pub struct KmsKey {
    /// The key id (a UUID).
    pub key_id: String,
    /// The key's ARN.
    pub arn: String,
}

/// An IAM user's access key, allowed every KMS action.
#[derive(Debug, Clone)]
pub struct AwsUser {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

/// A `moto_server` child process, killed on drop.
pub struct Moto {
    child: Option<Child>,
    /// The server's port on 127.0.0.1.
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    agent: ureq::Agent,
}

impl Moto {
    /// Starts moto without signature checks and waits until it answers.
    pub fn start() -> Result<Moto> {
        Moto::spawn(None)
    }

    /// Starts moto with signature checks: makes an IAM user allowed every KMS action and its
    /// access key, then creates `keys` KMS keys; every later request must be signed by that
    /// user (a wrong secret is refused with `SignatureDoesNotMatch`).
    pub fn start_authenticated(keys: usize) -> Result<(Moto, AwsUser, Vec<KmsKey>)> {
        let moto = Moto::spawn(Some(IAM_SETUP_REQUESTS + keys))?;
        moto.iam(&[("Action", "CreateUser"), ("UserName", "gateway")])?;
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]
        })
        .to_string();
        let created = moto.iam(&[
            ("Action", "CreatePolicy"),
            ("PolicyName", "kms-all"),
            ("PolicyDocument", &policy),
        ])?;
        let policy_arn = xml_field(&created, "Arn").context("CreatePolicy: no Arn")?;
        moto.iam(&[
            ("Action", "AttachUserPolicy"),
            ("UserName", "gateway"),
            ("PolicyArn", &policy_arn),
        ])?;
        let key = moto.iam(&[("Action", "CreateAccessKey"), ("UserName", "gateway")])?;
        let user = AwsUser {
            access_key_id: xml_field(&key, "AccessKeyId").context("no AccessKeyId")?,
            secret_access_key: xml_field(&key, "SecretAccessKey").context("no SecretAccessKey")?,
        };
        let keys = (0..keys)
            .map(|_| moto.create_key())
            .collect::<Result<Vec<_>>>()?;
        Ok((moto, user, keys))
    }

    fn spawn(no_auth_requests: Option<usize>) -> Result<Moto> {
        let bin = moto_server_path();
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port();
            let mut command = Command::new(&bin);
            command
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(n) = no_auth_requests {
                command.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
            } else {
                command.env_remove("INITIAL_NO_AUTH_ACTION_COUNT");
            }
            let child = command.spawn().with_context(|| {
                format!(
                    "starting {} (run `make py-deps`, or install moto[server])",
                    bin.display()
                )
            })?;
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .http_status_as_error(false)
                .build()
                .into();
            let mut moto = Moto {
                child: Some(child),
                port,
                endpoint: format!("http://127.0.0.1:{port}"),
                agent,
            };
            match moto.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return Ok(moto),
                Err(e) => last_err = Some(e), // port taken in the meantime: try another
            }
        }
        Err(last_err.unwrap())
    }

    /// Polls moto's own API (not an AWS action, so not counted against
    /// `INITIAL_NO_AUTH_ACTION_COUNT`) until it answers.
    fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let url = format!("{}/moto-api/data.json", self.endpoint);
        let probe: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(500)))
            .build()
            .into();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("moto_server exited early: {status}");
            }
            if probe.get(&url).call().is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "moto_server on port {} not ready within {within:?}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An [`AwsKmsConfig`] for this server with these credentials and call timeout.
    pub fn kms_config(&self, access_key_id: &str, secret: &str, timeout_ms: u64) -> AwsKmsConfig {
        serde_json::from_value(json!({
            "region": MOTO_REGION,
            "endpoint": self.endpoint,
            "accessKeyId": access_key_id,
            "secretAccessKey": secret,
            "timeoutMs": timeout_ms,
        }))
        .expect("a valid AwsKmsConfig")
    }

    /// Calls KMS operation `target` unsigned (only for servers without signature checks, or
    /// within the unchecked first requests): the `Authorization` header only names the
    /// region, which moto reads from the credential scope.
    pub fn kms_call(&self, target: &str, body: &Value) -> Result<Value> {
        let mut response = self
            .agent
            .post(&format!("{}/", self.endpoint))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", &format!("TrentService.{target}"))
            .header("authorization", &unsigned_authorization("kms"))
            .send(body.to_string().as_bytes())
            .with_context(|| format!("moto {target}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        if status != 200 {
            bail!("moto {target}: HTTP {status}: {text}");
        }
        // Some actions (DisableKey) answer an empty body.
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// An IAM (query protocol) call; its XML answer.
    fn iam(&self, params: &[(&str, &str)]) -> Result<String> {
        let mut form: Vec<(&str, &str)> = vec![("Version", "2010-05-08")];
        form.extend_from_slice(params);
        let mut response = self
            .agent
            .post(&format!("{}/", self.endpoint))
            .header("authorization", &unsigned_authorization("iam"))
            .send_form(form)
            .context("moto IAM")?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        if status != 200 {
            bail!("moto IAM {params:?}: HTTP {status}: {text}");
        }
        Ok(text)
    }

    /// Creates a symmetric KMS key.
    pub fn create_key(&self) -> Result<KmsKey> {
        let answer = self.kms_call("CreateKey", &json!({}))?;
        let meta = &answer["KeyMetadata"];
        Ok(KmsKey {
            key_id: meta["KeyId"].as_str().context("no KeyId")?.to_string(),
            arn: meta["Arn"].as_str().context("no Arn")?.to_string(),
        })
    }

    /// A key's state (`Enabled`, `Disabled`, `PendingDeletion`), from `DescribeKey`.
    pub fn key_state(&self, key_id: &str) -> Result<String> {
        let answer = self.kms_call("DescribeKey", &json!({"KeyId": key_id}))?;
        let state = answer["KeyMetadata"]["KeyState"].as_str();
        Ok(state.context("DescribeKey: no KeyState")?.to_string())
    }

    /// Disables a key. (moto records the state but, unlike AWS, still lets the key make and
    /// unwrap data keys.)
    pub fn disable_key(&self, key_id: &str) -> Result<()> {
        self.kms_call("DisableKey", &json!({"KeyId": key_id}))
            .map(drop)
    }

    /// Schedules a key's deletion in `days` (7 to 30, as AWS allows); moto, unlike AWS, still
    /// lets the key make and unwrap data keys meanwhile.
    pub fn schedule_key_deletion(&self, key_id: &str, days: u32) -> Result<()> {
        self.kms_call(
            "ScheduleKeyDeletion",
            &json!({"KeyId": key_id, "PendingWindowInDays": days}),
        )
        .map(drop)
    }

    /// Kills the server (an outage); later calls to it fail to connect.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An `Authorization` header that only names the region and service (moto routes and
/// scopes requests by them; it checks signatures only when told to).
fn unsigned_authorization(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=test/20260101/{MOTO_REGION}/{service}/aws4_request, \
         SignedHeaders=host, Signature=0"
    )
}

/// The text of the first `<name>` element of an XML answer.
fn xml_field(text: &str, name: &str) -> Option<String> {
    let (_, rest) = text.split_once(&format!("<{name}>"))?;
    let (value, _) = rest.split_once(&format!("</{name}>"))?;
    Some(value.to_string())
}
