//! The two other client implementations, run as child processes: kafkajs (`tests/js`) and
//! kafka-python (`tests/py`). They send different API versions and SASL code than
//! librdkafka, so they reach paths it does not.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where the kafkajs test client lives (`tests/js/client.js`, dependencies installed by
/// `make js-deps`).
pub fn kafkajs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Runs one command of the kafkajs client (`tests/js/client.js`: `create`, `produce`,
/// `consume`, `topics`, `metadata`) against `bootstrap`, authenticating with SASL
/// `(mechanism, user, password)` when given. Returns the client's JSON answer, or its
/// `{"error": {"type", "message"}}` document as the error; panics if node cannot run it or it
/// takes longer than `limit` (the process is killed then).
pub async fn kafkajs(
    bootstrap: &str,
    sasl: Option<(&str, &str, &str)>,
    args: &[&str],
    limit: Duration,
) -> std::result::Result<serde_json::Value, serde_json::Value> {
    kafkajs_tls(bootstrap, None, sasl, args, limit).await
}

/// [`kafkajs`] over TLS when `ca` (a PEM CA bundle to verify the server with) is given.
pub async fn kafkajs_tls(
    bootstrap: &str,
    ca: Option<&Path>,
    sasl: Option<(&str, &str, &str)>,
    args: &[&str],
    limit: Duration,
) -> std::result::Result<serde_json::Value, serde_json::Value> {
    let mut env: Vec<(&str, String)> = Vec::new();
    if let Some(ca) = ca {
        env.push(("KAFKA_CA", ca.display().to_string()));
    }
    if let Some((mechanism, user, password)) = sasl {
        env.push(("KAFKA_MECHANISM", mechanism.to_string()));
        env.push(("KAFKA_USER", user.to_string()));
        env.push(("KAFKA_PASSWORD", password.to_string()));
    }
    kafkajs_env(bootstrap, &env, args, limit).await
}

/// [`kafkajs`] with the client's settings as `tests/js/client.js` reads them from its
/// environment (`KAFKA_CA`, `KAFKA_CERT`/`KAFKA_KEY` for mutual TLS, `KAFKA_USER`,
/// `KAFKA_PASSWORD`, `KAFKA_MECHANISM`, `KAFKA_TOKEN` for OAUTHBEARER).
pub async fn kafkajs_env(
    bootstrap: &str,
    env: &[(&str, String)],
    args: &[&str],
    limit: Duration,
) -> std::result::Result<serde_json::Value, serde_json::Value> {
    let dir = kafkajs_dir();
    assert!(
        dir.join("node_modules/kafkajs").is_dir(),
        "kafkajs is not installed in {}: run `make js-deps`",
        dir.display()
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("client.js")).current_dir(&dir);
    run_client("kafkajs", cmd, bootstrap, env, args, limit).await
}

/// Where the kafka-python test client lives (`tests/py/client.py`, its virtual environment
/// made by `make py-deps`).
pub fn kafka_python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py")
}

/// Runs one command of the kafka-python client (`tests/py/client.py`: `create`, `produce`,
/// `consume`, `topics`, `groups`) against `bootstrap`, authenticating with SASL
/// `(mechanism, user, password)` when given; `env` adds settings (`KAFKA_COMPRESSION`,
/// `KAFKA_CA`). Returns its JSON answer, or its `{"error": {"type", "message"}}` document as
/// the error; panics if it cannot run or takes longer than `limit`.
pub async fn kafka_python(
    bootstrap: &str,
    sasl: Option<(&str, &str, &str)>,
    env: &[(&str, String)],
    args: &[&str],
    limit: Duration,
) -> std::result::Result<serde_json::Value, serde_json::Value> {
    let dir = kafka_python_dir();
    let python = dir.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "kafka-python is not installed in {}: run `make py-deps`",
        dir.display()
    );
    let mut all: Vec<(&str, String)> = env.to_vec();
    if let Some((mechanism, user, password)) = sasl {
        all.push(("KAFKA_MECHANISM", mechanism.to_string()));
        all.push(("KAFKA_USER", user.to_string()));
        all.push(("KAFKA_PASSWORD", password.to_string()));
    }
    let mut cmd = Command::new(python);
    cmd.arg(dir.join("client.py")).current_dir(&dir);
    run_client("kafka-python", cmd, bootstrap, &all, args, limit).await
}

/// Runs one command of an external test client (`cmd`, program and script already set)
/// with `env` as its only `KAFKA_*` settings; reads the one JSON line it answers with.
async fn run_client(
    name: &str,
    mut cmd: Command,
    bootstrap: &str,
    env: &[(&str, String)],
    args: &[&str],
    limit: Duration,
) -> std::result::Result<serde_json::Value, serde_json::Value> {
    cmd.args(args)
        .env("KAFKA_BOOTSTRAP", bootstrap)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Only what the caller gives: nothing inherited from the test's own environment.
    for key in [
        "KAFKA_USER",
        "KAFKA_PASSWORD",
        "KAFKA_MECHANISM",
        "KAFKA_CA",
        "KAFKA_CERT",
        "KAFKA_KEY",
        "KAFKA_TOKEN",
        "KAFKA_COMPRESSION",
        "KAFKA_BOOTSTRAP_TIMEOUT_MS",
    ] {
        cmd.env_remove(key);
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("running the {name} client: {e}"));
    let pid = rustix::process::Pid::from_raw(child.id() as i32);
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    let output = match tokio::time::timeout(limit, waiting).await {
        Ok(done) => done
            .expect("joining the client waiter")
            .expect("client output"),
        Err(_) => {
            // The pid is our own child's; its waiter has not returned, so it is not reaped and
            // the pid not reused (the test panics right after either way).
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            panic!("{name} {args:?} did not finish within {limit:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let answer: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{name} {args:?}: no JSON answer (status {}); stdout: {stdout} stderr: {stderr}",
                output.status
            )
        });
    if output.status.success() {
        Ok(answer)
    } else {
        assert!(
            answer.get("error").is_some(),
            "{name} {args:?} failed without an error document: {answer} (stderr: {stderr})"
        );
        Err(answer["error"].clone())
    }
}
