//! `sluice-fuzz`: the long run of the request-path and admin-input fuzz driver
//! (`sluice_tests::fuzz`). `make test` runs a short one; this one runs as long as asked.
//!
//! ```text
//! sluice-fuzz [--seed N] [--cases N] [--from N] [--chunk N]   run cases from..from+cases
//! sluice-fuzz --seed N --replay CASE                          run one case, panics shown
//! sluice-fuzz --net FRAMES [--seed N] [--connections N]       mutated frames over TCP to a
//!                                                             gateway (in this process) in
//!                                                             front of the mock broker
//! ```
//!
//! Progress goes to stderr every chunk (cases done, frames, panics, peak memory); an abort
//! (which no driver can catch) leaves the last progress line naming the chunk to replay.
//! Exits 1 if any case panicked, listing them.

use sluice_tests::fuzz::{Report, Stages};
use std::time::Instant;

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed = arg(&args, "--seed", 0x51u64);
    if args.iter().any(|a| a == "--net") {
        net(
            seed,
            arg(&args, "--net", 100_000),
            arg(&args, "--connections", 8),
        );
        return;
    }
    let stages = Stages::new().expect("setting up the stages");
    if args.iter().any(|a| a == "--replay") {
        let case = arg(&args, "--replay", 0);
        let mut report = Report::default();
        stages.case(seed, case, ADMIN_EVERY, &mut report);
        println!("case {case} of seed {seed}: {report:?}");
        return;
    }
    let from = arg(&args, "--from", 0);
    let cases = arg(&args, "--cases", 10_000_000);
    let chunk = arg(&args, "--chunk", 250_000).max(1);
    let started = Instant::now();
    let mut total = Report::default();
    let mut at = from;
    while at < from + cases {
        let to = (at + chunk).min(from + cases);
        eprintln!("running cases {at}..{to} of seed {seed}");
        let r = stages.run(seed, at, to, ADMIN_EVERY);
        total.requests += r.requests;
        total.responses += r.responses;
        total.batches += r.batches;
        total.admin_docs += r.admin_docs;
        total.refused += r.refused;
        total.panics.extend(r.panics);
        total.peak_rss_kib = r.peak_rss_kib;
        at = to;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{} cases, {} frames ({} requests, {} responses, {} batches), {} admin documents, {} refused, {} panics, peak RSS {} MiB, {:.0} cases/s",
            at - from,
            total.frames(),
            total.requests,
            total.responses,
            total.batches,
            total.admin_docs,
            total.refused,
            total.panics.len(),
            total.peak_rss_kib / 1024,
            (at - from) as f64 / secs
        );
    }
    for (case, what) in &total.panics {
        println!("PANIC case {case} (replay: --seed {seed} --replay {case}): {what}");
    }
    println!(
        "fuzz: {} frames and {} admin documents in {:.1} s, {} panics, peak RSS {} MiB",
        total.frames(),
        total.admin_docs,
        started.elapsed().as_secs_f64(),
        total.panics.len(),
        total.peak_rss_kib / 1024
    );
    if !total.panics.is_empty() {
        std::process::exit(1);
    }
}

/// Every 50th case is an admin document.
const ADMIN_EVERY: u64 = 50;

/// The network run: a gateway and a mock broker in this process, `frames` mutated frames from
/// `connections` clients, then a check that a well-behaved client is still served.
fn net(seed: u64, frames: u64, connections: u64) {
    use sluice_tests::mock::{MockBroker, MockOptions};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mock = MockBroker::start(MockOptions::default()).await.expect("mock broker");
        let gw = sluice_tests::start_gateway(&mock.bootstrap())
            .await
            .expect("gateway");
        let started = Instant::now();
        let report = sluice_tests::fuzz::run_net(gw.kafka_addr(), seed, frames, connections)
            .await
            .expect("the fuzz clients");
        let mut client = sluice_tests::RawClient::connect(gw.kafka_addr())
            .await
            .expect("connecting after the run");
        let served = client
            .call(&kafka_protocol::messages::MetadataRequest::default(), 12)
            .await
            .is_ok();
        println!(
            "fuzz --net: {} frames over {} connections in {:.1} s, {} response bytes, a new client served: {served}, peak RSS {} MiB",
            report.frames,
            report.connections,
            started.elapsed().as_secs_f64(),
            report.response_bytes,
            sluice_tests::fuzz::peak_rss_kib() / 1024
        );
        gw.shutdown().await;
        if !served {
            std::process::exit(1);
        }
    });
}
