//! The threads plugin calls run on, so a misbehaving plugin cannot stall the proxy.
//!
//! Plugin calls are synchronous wasmtime calls: CPU-bound, bounded only by their deadline
//! (up to 10 s of CPU with `timeoutMs` at its maximum, more with a large batch). Run on the
//! tokio workers, a plugin that spins to its deadline holds a worker for that long, and with a
//! few such calls every worker is held: on a 2-core machine a spinning plugin installed
//! globally with 4 clients made `/health` time out after 8 s and ApiVersions on unrelated
//! connections take 2.1 s. So calls run here instead:
//!
//! - A fixed set of dedicated threads ([`threads`]: one per core, at least two) takes calls
//!   from one queue; the session awaits the answer on a oneshot channel, so its worker serves
//!   other connections meanwhile.
//! - Each interceptor may run at most [`per_interceptor`] calls at once (half the threads, at
//!   least one): a slow or spinning interceptor can hold only its share of the threads and the
//!   others still get theirs. Its further calls wait for a slot asynchronously, for no longer
//!   than the call's wall-clock ceiling; then the call fails as `busy` (REQUEST_TIMED_OUT to
//!   the client, as a timeout), so the damage stays with the clients whose chain holds that
//!   interceptor.
//! - The threads run at a lower scheduling priority ([`NICE`]) so that, when plugins and the
//!   proxy want more CPU than there is, the proxy's own threads (tokio workers, the admin
//!   listener) win it. Deadlines are charged in the calling thread's CPU time, so a plugin
//!   thread that the scheduler holds back is not failed for it.
//!
//! Why not wasmtime's async support with epoch yielding, which keeps calls on the workers?
//! A yielding call still spends the worker's CPU: a plugin spinning to its deadline then takes
//! a share of the proxy's own threads instead of its own. Its CPU time could no longer be read
//! from the thread clock (a call would hop between workers and interleave with other tasks),
//! so CPU deadlines would need fuel, which costs on every call. And async calls cost ~250 ns
//! more each (measured with wasmtime 48 on a 2-core machine: 0.50 vs 0.28 µs for an empty
//! Rust call). The cost here is a hand-off between threads per call: a queue push, a
//! thread wake and a oneshot answer, measured by `the_hand_off_costs_microseconds` below
//! (~6 µs in a debug build).
//!
//! Measured with `sluice-bench --mode isolation` (debug build, 2 cores under other load):
//! with `spin` hit by four connections of another username, an outside client's p99 produce
//! latency was 17.9 s and `/health` took up to 17.9 s with calls on the workers; with this
//! pool, 0.9-2.3 ms against 0.8-2.9 ms with no plugin, and `/health` under 5 ms but for
//! machine noise.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tracing::{debug, warn};

/// Nice value of the plugin threads (0 is the default, 19 the lowest priority). Under CPU
/// contention a nice-10 thread gets about a tenth of the CPU of a nice-0 one: the proxy keeps
/// its latency while plugins are busy (measured with `spin` hit on another scope: outside p99
/// 1.1-1.6 ms at nice 10 against 1.5-2.9 ms at nice 5, no-plugin 0.5-0.9 ms, debug build), and
/// plugins still get enough on a machine shared with other work for a 100 ms CPU budget to be
/// used up well before the 2 s wall-clock ceiling (nice 19 would starve them there).
pub const NICE: i32 = 10;

/// A unit of work for a plugin thread.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Number of plugin threads: one per core, at least two.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// Calls one interceptor may run at once: half the plugin threads, at least one.
pub fn per_interceptor() -> usize {
    (threads() / 2).max(1)
}

/// The plugin threads. Dropping the pool lets the threads finish the queued jobs and exit.
pub struct CallPool {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
}

impl CallPool {
    /// Starts `n` plugin threads.
    pub fn start(n: usize) -> std::io::Result<CallPool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("sluice-plugin-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job, never while
                        // running one.
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => break,
                        }
                    }
                })?;
        }
        Ok(CallPool {
            queue: Mutex::new(Some(tx)),
        })
    }

    /// Queues `job`; `false` when the pool is shut down.
    pub fn submit(&self, job: Job) -> bool {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }

    /// Stops taking jobs; the threads exit once the queue is empty.
    pub fn shutdown(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Sets the calling thread's nice value to [`NICE`] (on Linux the nice value is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        match rustix::process::setpriority_process(Some(tid), NICE) {
            Ok(()) => debug!(nice = NICE, "plugin thread started"),
            Err(e) => warn!("cannot lower the plugin thread's priority: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn jobs_run_on_lower_priority_threads() {
        let pool = CallPool::start(2).unwrap();
        let (tx, rx) = mpsc::channel();
        for _ in 0..4 {
            let tx = tx.clone();
            assert!(pool.submit(Box::new(move || {
                let name = std::thread::current().name().map(str::to_string);
                let nice = rustix::process::getpriority_process(None).ok();
                let _ = tx.send((name, nice));
            })));
        }
        for _ in 0..4 {
            let (name, nice) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(name.unwrap().starts_with("sluice-plugin-"));
            // getpriority(PRIO_PROCESS, 0) reads the calling thread's nice value on Linux.
            #[cfg(target_os = "linux")]
            assert_eq!(nice, Some(NICE));
            let _ = nice;
        }
        pool.shutdown();
        assert!(!pool.submit(Box::new(|| {})));
    }

    /// What a call pays for running on a plugin thread: submit, wake, answer.
    #[test]
    fn the_hand_off_costs_microseconds() {
        let pool = CallPool::start(2).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let n = 2000;
        let started = Instant::now();
        rt.block_on(async {
            for _ in 0..n {
                let (tx, rx) = tokio::sync::oneshot::channel();
                pool.submit(Box::new(move || {
                    let _ = tx.send(());
                }));
                rx.await.unwrap();
            }
        });
        let each = started.elapsed() / n;
        eprintln!("plugin thread hand-off: {each:?} per call");
        assert!(each < Duration::from_millis(5), "{each:?}");
    }
}
