//! Local resources of a test: free ports on 127.0.0.1 and scratch directories.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

/// A free TCP port on 127.0.0.1 (free at the time of asking).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

/// A fresh directory under the system temp dir (not removed: tests may restart a gateway on it).
pub fn temp_dir(label: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-test-{}-{}-{label}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    dir
}

/// Runs the calling test alone in a child process of the test binary, for a test that
/// measures its process (peak memory): in the one integration test binary the other tests
/// run in the same process, and their memory would be counted (or would have raised the peak
/// already). `module` is the test's `module_path!()`, `test` its function name.
///
/// Returns `true` in the child, which runs the test's body; in the parent it runs the child,
/// panics unless exactly that one test ran and passed there, and returns `false`.
pub fn alone_in_process(module: &str, test: &str) -> bool {
    const VAR: &str = "SLUICE_TEST_ALONE";
    // libtest names a test by its path inside the crate: without the crate's own name.
    let path = match module.split_once("::") {
        Some((_crate, rest)) => format!("{rest}::{test}"),
        None => test.to_string(),
    };
    if std::env::var(VAR).is_ok_and(|v| v == path) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([path.as_str(), "--exact", "--test-threads=1", "--nocapture"])
        .env(VAR, &path)
        .output()
        .expect("running the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{path} alone in its own process:\n{stdout}\n{stderr}"
    );
    false
}
