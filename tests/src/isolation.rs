//! A misbehaving plugin on one interceptor scope, and what clients outside that scope see.
//!
//! Shared by the isolation test (`tests/it/interceptors.rs`) and `sluice-bench --mode isolation`.
//! The gateway authenticates clients (SASL/PLAIN, gateway-managed accounts); the bad plugin
//! (`spin`: loops to its CPU deadline, or `hog`: allocates until its memory cap refuses) is
//! installed fail-open for one username, [`BAD`], whose clients produce in a loop to keep it
//! busy. Meanwhile one client of another username, [`OUTSIDER`], produces one record at a time
//! and its latencies are recorded, `/health` is probed, and the process's resident memory is
//! read (peak while the plugin is hit, and after it is uninstalled). A phase with no plugin
//! gives the reference.

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{gateway_config, http, record_batch, server_sasl, upload_plugin, RawClient};

/// The client outside the bad plugin's scope: (username, password).
pub const OUTSIDER: (&str, &str) = ("alice", "alice-isolation-1");
/// The username the bad plugin is installed for: (username, password).
pub const BAD: (&str, &str) = ("mallory", "mallory-isolation-1");
/// The topic every client produces to.
pub const TOPIC: &str = "isolation";
/// The interceptor's name.
const INTERCEPTOR: &str = "bad";

/// Which plugin misbehaves in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// No plugin: the reference.
    None,
    /// `spin`, fail-open.
    Spin,
    /// `hog`, fail-open.
    Hog,
}

impl Bad {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Bad::None => "no plugin",
            Bad::Spin => "spin on another scope",
            Bad::Hog => "hog on another scope",
        }
    }

    /// Short name, for `RESULT` lines.
    pub fn key(self) -> &'static str {
        match self {
            Bad::None => "none",
            Bad::Spin => "spin",
            Bad::Hog => "hog",
        }
    }

    /// The failure metric's `kind` each call of the plugin ends with.
    fn failure_kind(self) -> Option<&'static str> {
        match self {
            Bad::None => None,
            Bad::Spin => Some("timeout"),
            Bad::Hog => Some("out_of_memory"),
        }
    }
}

/// How a phase runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Produce latencies of the outside client to record, at least.
    pub samples: usize,
    /// Least time to record them over, so that every phase (the reference too) samples a
    /// machine's background noise over a similar window.
    pub min_time: Duration,
    /// Connections of the bad scope producing in a loop.
    pub bad_clients: usize,
    /// `timeoutMs` of `spin`.
    pub spin_timeout_ms: u64,
    /// `memoryMb` of `hog`.
    pub hog_memory_mb: u64,
    /// Failed calls of the bad plugin to see before the phase ends (proof that it was hit
    /// while the outside client was measured).
    pub min_bad_failures: u64,
    /// Longest the measurement of a phase may take; the phase then ends as [`Phase::limited`].
    pub limit: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            samples: 300,
            min_time: Duration::from_secs(3),
            bad_clients: 4,
            spin_timeout_ms: 1000,
            hog_memory_mb: 256,
            min_bad_failures: 2,
            limit: Duration::from_secs(120),
        }
    }
}

/// What a phase measured.
#[derive(Debug, Clone)]
pub struct Phase {
    /// The misbehaving plugin.
    pub bad: Bad,
    /// The outside client's produce latencies, µs, sorted.
    pub produce_us: Vec<u64>,
    /// `/health` latencies, µs, sorted.
    pub health_us: Vec<u64>,
    /// Failed calls of the bad plugin during the phase.
    pub bad_failures: u64,
    /// Resident memory (KiB) before the plugin was installed.
    pub rss_before_kib: u64,
    /// Peak resident memory (KiB) during the phase.
    pub rss_peak_kib: u64,
    /// Resident memory (KiB) once the plugin was uninstalled.
    pub rss_after_kib: u64,
    /// The phase ended at [`Options::limit`] before it had its samples and the bad plugin's
    /// failures.
    pub limited: bool,
}

impl Phase {
    /// Quantile `q` of the produce latencies, in ms.
    pub fn produce_ms(&self, q: f64) -> f64 {
        quantile(&self.produce_us, q)
    }

    /// Quantile `q` of the `/health` latencies, in ms.
    pub fn health_ms(&self, q: f64) -> f64 {
        quantile(&self.health_us, q)
    }
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// A gateway configuration fronting `bootstrap` whose clients authenticate with SASL/PLAIN
/// against gateway-managed accounts, so interceptors can be scoped by username.
pub fn config(bootstrap: &str) -> sluice::config::Config {
    let mut c = gateway_config(bootstrap);
    c.security.protocol = sluice::config::SecurityProtocol::SaslPlaintext;
    c.security.sasl = Some(server_sasl(
        &["PLAIN"],
        sluice::config::SaslMode::GatewayManaged,
    ));
    c
}

/// Creates [`TOPIC`] on the tansu broker at `bootstrap`.
pub fn create_topic(bootstrap: &str) -> Result<()> {
    let status = std::process::Command::new(crate::tansu_path())
        .args(["topic", "create", "--broker", &format!("tcp://{bootstrap}")])
        .args(["--partitions", "1", TOPIC])
        .status()
        .context("running tansu topic create")?;
    if !status.success() {
        bail!("tansu topic create {TOPIC}: {status}");
    }
    Ok(())
}

/// The two accounts and the two plugins.
pub async fn prepare(admin: SocketAddr) {
    for (user, password) in [OUTSIDER, BAD] {
        crate::put_service_account(admin, user, password, &[]).await;
    }
    upload_plugin(admin, "spin", "spin").await;
    upload_plugin(admin, "hog", "hog").await;
}

/// An authenticated connection as `(user, password)`.
async fn connect(kafka: SocketAddr, (user, password): (&str, &str)) -> Result<RawClient> {
    let mut c = RawClient::connect(kafka).await?;
    let code = c.sasl_plain(user, password).await?;
    if code != 0 {
        bail!("SASL/PLAIN as {user}: error {code}");
    }
    Ok(c)
}

/// One record, acks=all; the partition's error code.
async fn produce(c: &mut RawClient) -> Result<i16> {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(record_batch("isolation")))])]);
    let resp = c.call(&req, 9).await?;
    Ok(resp.responses[0].partition_responses[0].error_code)
}

/// The process's `VmRSS` and `VmHWM` (peak) in KiB.
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak resident memory (`VmHWM`) to the current one; false where the kernel
/// does not allow it (then the peak is sampled instead).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Failed calls of the bad interceptor with `kind`, from `/metrics`.
async fn failures(admin: SocketAddr, kind: &str) -> u64 {
    let (_, body) = http(admin, "GET", "/metrics", &[], b"").await;
    let series = format!(
        "sluice_interceptor_failures_total{{interceptor=\"{INTERCEPTOR}\",kind=\"{kind}\"}}"
    );
    body.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Runs one phase against the gateway at `kafka` / `admin` (prepared with [`prepare`]).
pub async fn run(kafka: SocketAddr, admin: SocketAddr, bad: Bad, opts: &Options) -> Result<Phase> {
    let (rss_before_kib, _) = rss_kib();
    let peak_resets = reset_peak();
    let failures_before = match bad.failure_kind() {
        Some(kind) => failures(admin, kind).await,
        None => 0,
    };
    let spec = match bad {
        Bad::None => None,
        Bad::Spin => Some(json!({"plugin": "spin", "failurePolicy": "fail-open",
            "timeoutMs": opts.spin_timeout_ms, "scope": {"username": BAD.0}})),
        Bad::Hog => Some(json!({"plugin": "hog", "failurePolicy": "fail-open",
            "memoryMb": opts.hog_memory_mb, "timeoutMs": 5000, "scope": {"username": BAD.0}})),
    };
    if let Some(spec) = &spec {
        crate::install(admin, INTERCEPTOR, spec.clone()).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    // The bad scope's clients keep the plugin busy.
    let mut bad_clients = Vec::new();
    if bad != Bad::None {
        for _ in 0..opts.bad_clients {
            let stop = stop.clone();
            let mut c = connect(kafka, BAD).await?;
            bad_clients.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if produce(&mut c).await.is_err() {
                        break;
                    }
                }
            }));
        }
    }
    // `/health` probes, paced (not a synchronisation), and the peak memory where it cannot be
    // read from the kernel.
    let health = Arc::new(Mutex::new(Vec::new()));
    let sampled_peak = Arc::new(Mutex::new(0u64));
    let prober = tokio::spawn({
        let (stop, health, sampled_peak) = (stop.clone(), health.clone(), sampled_peak.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (status, _) = http(admin, "GET", "/health", &[], b"").await;
                let took = t.elapsed().as_micros() as u64;
                assert_eq!(status, 200, "/health");
                health.lock().unwrap().push(took);
                {
                    let mut peak = sampled_peak.lock().unwrap();
                    *peak = (*peak).max(rss_kib().0);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let mut outsider = connect(kafka, OUTSIDER).await?;
    for _ in 0..20 {
        produce(&mut outsider).await?;
    }
    let started = Instant::now();
    let mut produce_us = Vec::new();
    let mut bad_failures = 0;
    let mut checked = Instant::now();
    let limited = loop {
        let t = Instant::now();
        let code = produce(&mut outsider).await?;
        produce_us.push(t.elapsed().as_micros() as u64);
        if code != 0 {
            bail!("the outside client's produce failed with error {code}");
        }
        let out_of_time = started.elapsed() > opts.limit;
        if (produce_us.len() >= opts.samples && produce_us.len() % 50 == 0)
            || checked.elapsed() > Duration::from_secs(1)
            || out_of_time
        {
            checked = Instant::now();
            if let Some(kind) = bad.failure_kind() {
                bad_failures = failures(admin, kind).await - failures_before;
            }
            let done = produce_us.len() >= opts.samples
                && started.elapsed() >= opts.min_time
                && (bad == Bad::None || bad_failures >= opts.min_bad_failures);
            if done || out_of_time {
                break !done;
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    for c in bad_clients {
        c.abort();
    }
    prober.await.context("the /health prober")?;
    let (_, hwm) = rss_kib();
    let rss_peak_kib = if peak_resets {
        hwm
    } else {
        *sampled_peak.lock().unwrap()
    };
    if spec.is_some() {
        let (status, _) = http(
            admin,
            "DELETE",
            &format!("/api/v1/interceptors/{INTERCEPTOR}"),
            &[],
            b"",
        )
        .await;
        if status != 204 {
            bail!("uninstalling the bad interceptor: {status}");
        }
    }
    // Calls still running when the clients went away finish at their deadline; give the
    // memory that long to come back.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rss_after_kib = rss_kib().0;
    while rss_after_kib > rss_before_kib + 32 * 1024 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        rss_after_kib = rss_kib().0;
    }
    produce_us.sort_unstable();
    let mut health_us = health.lock().unwrap().clone();
    health_us.sort_unstable();
    Ok(Phase {
        bad,
        produce_us,
        health_us,
        bad_failures,
        rss_before_kib,
        rss_peak_kib,
        rss_after_kib,
        limited,
    })
}

/// `sluice-bench --mode isolation`: a tansu broker, an in-process gateway on a runtime of its
/// own (a worker per core, as `sluice run` has), the clients on another; the three phases,
/// then a table.
pub fn bench(opts: &Options) -> Result<()> {
    use tokio::runtime::Builder;
    let gw_rt = Builder::new_multi_thread()
        .enable_all()
        .thread_name("gw")
        .build()?;
    let client_rt = Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("client")
        .build()?;
    let broker = client_rt.block_on(crate::Tansu::start())?;
    create_topic(&broker.bootstrap())?;
    let gw = client_rt
        .block_on(gw_rt.spawn(crate::start_gateway_with(config(&broker.bootstrap()))))??;
    let (kafka, admin) = (gw.kafka_addr(), gw.admin_addr());
    client_rt.block_on(prepare(admin));
    println!(
        "== sluice-bench: isolation mode ({} build, {} cores, load {}) ==",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "outside client: 1 connection, one 1-record produce at a time; bad scope: {} connections \
         producing in a loop; spin timeoutMs {}, hog memoryMb {}, both fail-open",
        opts.bad_clients, opts.spin_timeout_ms, opts.hog_memory_mb
    );
    let mut phases = Vec::new();
    for bad in [Bad::None, Bad::Spin, Bad::Hog] {
        phases.push(client_rt.block_on(run(kafka, admin, bad, opts))?);
    }
    let reference = phases[0].produce_ms(0.99);
    println!(
        "{:<26} {:>8} {:>9} {:>9} {:>9} {:>12} {:>11} {:>10} {:>11} {:>10} {:>9}",
        "phase",
        "samples",
        "p50 ms",
        "p99 ms",
        "p99/ref",
        "health p50",
        "health max",
        "RSS MiB",
        "peak MiB",
        "after MiB",
        "bad fails"
    );
    for p in &phases {
        println!(
            "{:<26} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} ms {:>8.2} ms {:>10.0} {:>11.0} {:>10.0} {:>9}",
            format!("{}{}", p.bad.name(), if p.limited { " *" } else { "" }),
            p.produce_us.len(),
            p.produce_ms(0.5),
            p.produce_ms(0.99),
            p.produce_ms(0.99) / reference,
            p.health_ms(0.5),
            p.health_ms(1.0),
            p.rss_before_kib as f64 / 1024.0,
            p.rss_peak_kib as f64 / 1024.0,
            p.rss_after_kib as f64 / 1024.0,
            p.bad_failures
        );
    }
    if phases.iter().any(|p| p.limited) {
        println!(
            "* the phase reached its time limit ({:?}) before {} samples and {} failed calls \
             of the bad plugin",
            opts.limit, opts.samples, opts.min_bad_failures
        );
    }
    for p in &phases {
        let k = p.bad.key();
        println!(
            "RESULT isolation_{k}_produce_p99_ms={:.3}",
            p.produce_ms(0.99)
        );
        println!("RESULT isolation_{k}_health_max_ms={:.3}", p.health_ms(1.0));
        println!(
            "RESULT isolation_{k}_rss_peak_mib={}",
            p.rss_peak_kib / 1024
        );
        println!(
            "RESULT isolation_{k}_rss_after_mib={}",
            p.rss_after_kib / 1024
        );
    }
    client_rt.block_on(gw_rt.spawn(gw.shutdown()))?;
    drop(broker);
    gw_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
