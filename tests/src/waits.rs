//! Waiting for conditions instead of sleeping: poll until true within a limit, or bound a
//! future by a deadline that names what was awaited.

use std::time::{Duration, Instant};

/// Polls `cond` every 20 ms until it returns true or `within` passes.
pub async fn eventually<F: FnMut() -> bool>(within: Duration, mut cond: F) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Awaits `f` for at most `limit`; a step that hangs fails the test with `what`.
pub async fn within<T>(limit: Duration, what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}
