//! Who gets a connection: the open-file budget, the per-source limit, and the activity a
//! connection's idle timeout watches.
//!
//! - **File descriptors.** At start the soft `RLIMIT_NOFILE` is raised to the hard limit.
//!   Each client connection takes two descriptors (the client's socket and its broker
//!   connection), and the gateway needs some for itself (listeners, the admin API and its
//!   clients, state files, the gateway's own broker connections). The effective connection
//!   limit is therefore `min(limits.maxConnections, (nofile - reserve) / 2)`: connections
//!   beyond it are refused at accept before the process runs out of descriptors, so the
//!   admin listener (`/health`, `/metrics`) and the connections already open keep working.
//! - **Per source.** A source IP address may hold at most `limits.maxConnectionsPerSource`
//!   connections (default half of the effective limit), with per-address overrides.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Limits;

/// Descriptors always left to the gateway itself, on top of `reserve_share`.
pub const FD_RESERVE_BASE: u64 = 64;

/// Descriptors kept back from client connections under an open-file limit of `nofile`: a fixed
/// base plus 2 % (broker listeners and admin clients grow with the deployment).
pub fn fd_reserve(nofile: u64) -> u64 {
    FD_RESERVE_BASE + reserve_share(nofile)
}

fn reserve_share(nofile: u64) -> u64 {
    nofile / 50
}

/// How many client connections an open-file limit of `nofile` allows (two descriptors each).
pub fn fd_capacity(nofile: u64) -> usize {
    usize::try_from(nofile.saturating_sub(fd_reserve(nofile)) / 2).unwrap_or(usize::MAX)
}

/// The open-file limits after raising the soft one to the hard one: `(soft, hard)`; None
/// where there are no such limits or they cannot be read.
pub fn raise_fd_limit() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use rlimit::Resource;
        let (soft, hard) = Resource::NOFILE.get().ok()?;
        if soft < hard {
            if let Err(e) = rlimit::increase_nofile_limit(hard) {
                tracing::warn!(soft, hard, "cannot raise the open-file limit: {e}");
            }
        }
        let (soft, hard) = Resource::NOFILE.get().ok()?;
        // RLIM_INFINITY: no limit worth computing with.
        (soft != rlimit::INFINITY).then_some((soft, hard))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Why a connection was refused at accept (the `reason` label of
/// `sluice_connections_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `limits.maxConnections` reached.
    MaxConnections,
    /// The open-file budget (which is below `limits.maxConnections`) reached.
    FdLimit,
    /// The source address is at its `limits.maxConnectionsPerSource`.
    PerSource,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::FdLimit => "fd_limit",
            Refusal::PerSource => "per_source",
        }
    }
}

/// Connections open per source address.
pub struct SourceLimiter {
    limits: Limits,
    effective_max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A connection's place in its source's count; given back on drop.
pub struct SourceSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("source limiter lock");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl SourceLimiter {
    /// A limiter for `limits`, with `effective_max` the gateway's effective connection limit.
    pub fn new(limits: &Limits, effective_max: usize) -> SourceLimiter {
        SourceLimiter {
            limits: limits.clone(),
            effective_max,
            open: Arc::default(),
        }
    }

    /// The limit that applies to `ip`.
    pub fn limit(&self, ip: IpAddr) -> usize {
        self.limits.per_source_limit(ip, self.effective_max)
    }

    /// Takes a slot for a connection from `ip`; None when the source is at its limit.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<SourceSlot> {
        let ip = ip.to_canonical();
        let limit = self.limit(ip);
        let mut open = self.open.lock().expect("source limiter lock");
        let n = open.entry(ip).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

/// What a connection's idle timeout looks at, shared by its request and response sides:
/// requests answered or queued but not yet written to the client are in flight, and the last
/// activity is the last complete request read or the last answer written.
pub struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started`.
    last_ms: AtomicU64,
}

impl Activity {
    /// A new connection's activity: it starts now.
    pub fn new() -> Activity {
        Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    /// When the connection was accepted.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Notes activity now.
    pub fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// A request now expects an answer.
    pub fn request_queued(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` answers were written to the client.
    pub fn answered(&self, n: usize) {
        if n > 0 {
            self.in_flight.fetch_sub(n, Ordering::Relaxed);
            self.touch();
        }
    }

    /// Whether any request is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    /// When the connection was last active.
    pub fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// When an idle connection is to be closed, given `idle`: None while busy (look again
    /// after `idle`).
    pub fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        (!self.busy()).then(|| self.last() + idle)
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn fd_capacity_leaves_a_reserve() {
        // 256 descriptors: 64 + 5 kept back, 93 connections of two descriptors each.
        assert_eq!(fd_capacity(256), 93);
        assert_eq!(fd_capacity(10), 0);
        assert_eq!(fd_capacity(1_048_576), (1_048_576 - 64 - 20_971) / 2);
    }

    #[test]
    fn per_source_default_is_half_and_overrides_apply() {
        let mut limits = Config::default().limits;
        limits
            .max_connections_per_source_overrides
            .insert("10.0.0.9".into(), 1);
        limits
            .max_connections_per_source_overrides
            .insert("10.0.0.8".into(), 0);
        let l = SourceLimiter::new(&limits, 5);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..3).map(|_| l.try_acquire(a).unwrap()).collect();
        assert!(l.try_acquire(a).is_none(), "default: ceil(5 / 2) = 3");
        // IPv4-mapped IPv6 is the same source.
        assert!(l.try_acquire("::ffff:10.0.0.1".parse().unwrap()).is_none());
        drop(slots);
        assert!(l.try_acquire(a).is_some());
        let o: IpAddr = "10.0.0.9".parse().unwrap();
        let one = l.try_acquire(o).unwrap();
        assert!(l.try_acquire(o).is_none());
        drop(one);
        assert!(l.try_acquire(o).is_some());
        assert!(l.try_acquire("10.0.0.8".parse().unwrap()).is_none());
        assert!(l.open.lock().unwrap().is_empty(), "no entry left behind");
        limits.max_connections_per_source = Some(7);
        assert_eq!(SourceLimiter::new(&limits, 5).limit(a), 7);
    }

    #[test]
    fn activity_is_idle_only_with_nothing_in_flight() {
        let a = Activity::new();
        let idle = Duration::from_secs(1);
        assert_eq!(a.idle_deadline(idle), Some(a.started() + idle));
        a.request_queued();
        assert_eq!(a.idle_deadline(idle), None);
        a.answered(1);
        assert!(a.idle_deadline(idle).unwrap() >= a.started() + idle);
    }
}
