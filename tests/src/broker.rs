//! The tansu broker the end-to-end tests run against: a child process with in-memory
//! storage on a free port, killed on drop (see TESTING.md for what tansu does differently
//! from Kafka).

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// Where the tansu binary is: `$SLUICE_TANSU`, else the Makefile's install location.
pub fn tansu_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/sluice/tansu-0.6.0/tansu")
}

/// A tansu broker child process with in-memory storage, killed on drop.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:port`.
    pub addr: SocketAddr,
}

/// tansu's fixed node id.
pub const TANSU_NODE_ID: i32 = 111;

impl Tansu {
    /// Starts a broker on a free port and waits until it answers ApiVersions.
    pub async fn start() -> Result<Tansu> {
        Self::start_with_storage("memory://tansu/").await
    }

    /// Starts a broker with the given storage engine URL (`memory://tansu/`, `null://sink`).
    pub async fn start_with_storage(storage: &str) -> Result<Tansu> {
        Self::start_with_args(storage, &[]).await
    }

    /// Starts a broker with the given storage engine and extra `tansu broker` arguments.
    ///
    /// Readiness is an ApiVersions answer over plaintext. tansu 0.6.0 as packaged has no TLS
    /// listener (`--cert` is accepted and ignored, `--cert` with `--key` is refused by its
    /// argument parser) and cannot authenticate (`--authentication` needs SCRAM users, which
    /// its only storage engines, memory and S3, do not keep): secured upstreams are tested
    /// against [`MockBroker`](crate::mock::MockBroker) instead.
    pub async fn start_with_args(storage: &str, extra: &[&str]) -> Result<Tansu> {
        let bin = tansu_path();
        if !bin.exists() {
            bail!(
                "tansu not found at {} (run `make tansu`, or set SLUICE_TANSU)",
                bin.display()
            );
        }
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let child = Command::new(&bin)
                .arg("broker")
                .args(["--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", storage])
                .args(extra)
                .env_remove("CLUSTER_ID")
                .env("RUST_LOG", "error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let mut broker = Tansu {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            match broker.wait_ready(Duration::from_secs(15)).await {
                Ok(()) => return Ok(broker),
                Err(e) => last_err = Some(e), // port taken in the meantime: try another
            }
        }
        Err(last_err.unwrap())
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let addr = self.addr.to_string();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("tansu exited early: {status}");
            }
            let connector = sluice::upstream::Connector::plaintext(Duration::from_secs(1));
            if sluice::upstream::probe(
                &connector,
                std::slice::from_ref(&addr),
                Duration::from_secs(1),
            )
            .await
            .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("tansu on {addr} not ready within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `host:port` for clients.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Kills the broker (a broker failure).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}
