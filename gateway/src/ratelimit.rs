//! Rate limiting of connection-level log lines.
//!
//! Every bad or refused connection used to log its own WARN line: a fuzzer or a client
//! retrying against `limits.maxConnections` wrote megabytes of near-identical lines. Each
//! kind of connection event (`protocol_error`, `refused`, `handshake_timeout`, ...) may now
//! log at most [`BURST`] lines per [`WINDOW`]; the rest are counted, and one summary line per
//! kind and window says how many were suppressed. The metrics still count every event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Length of one rate-limiting window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Lines of one kind logged per window; the rest are suppressed and summarised.
pub const BURST: u32 = 20;

/// Per-kind log line budget.
pub struct LogLimiter {
    window: Duration,
    burst: u32,
    kinds: Mutex<HashMap<&'static str, KindState>>,
}

struct KindState {
    window_start: Instant,
    logged: u32,
    /// Lines suppressed since the last summary.
    suppressed: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new(WINDOW, BURST)
    }
}

impl LogLimiter {
    /// A limiter allowing `burst` lines per kind per `window`.
    pub fn new(window: Duration, burst: u32) -> LogLimiter {
        LogLimiter {
            window,
            burst,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a line of `kind` may be logged now; false: it is counted as suppressed.
    pub fn allow(&self, kind: &'static str) -> bool {
        self.allow_at(kind, Instant::now())
    }

    fn allow_at(&self, kind: &'static str, now: Instant) -> bool {
        let mut kinds = self.kinds.lock().expect("log limiter lock");
        let state = kinds.entry(kind).or_insert(KindState {
            window_start: now,
            logged: 0,
            suppressed: 0,
        });
        if now.duration_since(state.window_start) >= self.window {
            state.window_start = now;
            state.logged = 0;
        }
        if state.logged < self.burst {
            state.logged += 1;
            true
        } else {
            state.suppressed += 1;
            false
        }
    }

    /// Takes the suppressed counts (kinds with none are left out), for the summary lines.
    pub fn take_suppressed(&self) -> Vec<(&'static str, u64)> {
        let mut kinds = self.kinds.lock().expect("log limiter lock");
        let mut out: Vec<_> = kinds
            .iter_mut()
            .filter(|(_, s)| s.suppressed > 0)
            .map(|(k, s)| (*k, std::mem::take(&mut s.suppressed)))
            .collect();
        out.sort();
        out
    }

    /// Logs one summary line per kind with suppressed lines since the last call.
    pub fn summarise(&self) {
        for (kind, n) in self.take_suppressed() {
            tracing::warn!(
                kind,
                suppressed = n,
                "suppressed {n} similar `{kind}` connection log lines (at most {} per {:?}; \
                 the metrics count every event)",
                self.burst,
                self.window
            );
        }
    }
}

/// Logs with `tracing::$level!` when the limiter `$limiter` allows a line of `$kind`.
macro_rules! limited {
    ($level:ident, $limiter:expr, $kind:expr, $($arg:tt)+) => {
        if $limiter.allow($kind) {
            tracing::$level!($($arg)+);
        }
    };
}
pub(crate) use limited;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_per_kind_then_suppressed_and_counted() {
        let l = LogLimiter::new(Duration::from_secs(10), 3);
        let t0 = Instant::now();
        let allowed = (0..10).filter(|_| l.allow_at("refused", t0)).count();
        assert_eq!(allowed, 3);
        // Kinds have their own budgets.
        assert!(l.allow_at("idle_timeout", t0));
        assert_eq!(l.take_suppressed(), vec![("refused", 7)]);
        // Taken: the next summary starts from zero.
        assert!(l.take_suppressed().is_empty());
        assert!(!l.allow_at("refused", t0 + Duration::from_secs(9)));
        assert_eq!(l.take_suppressed(), vec![("refused", 1)]);
    }

    #[test]
    fn a_new_window_has_a_new_budget() {
        let l = LogLimiter::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        assert!(l.allow_at("k", t0));
        assert!(l.allow_at("k", t0));
        assert!(!l.allow_at("k", t0 + Duration::from_secs(5)));
        let t1 = t0 + Duration::from_secs(10);
        assert!(l.allow_at("k", t1));
        assert!(l.allow_at("k", t1));
        assert!(!l.allow_at("k", t1));
        assert_eq!(l.take_suppressed(), vec![("k", 2)]);
    }

    #[test]
    fn many_threads_stay_within_the_budget() {
        let l = std::sync::Arc::new(LogLimiter::new(Duration::from_secs(3600), 50));
        let allowed: usize = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..1000).filter(|_| l.allow("x")).count())
            })
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(allowed, 50);
        assert_eq!(l.take_suppressed(), vec![("x", 3950)]);
    }
}
