//! A short, bounded run of the fuzz driver (`sluice_tests::fuzz`): mutated frames of every
//! API and version the gateway advertises through every stage of the request and response
//! path, record batches behind recomputed CRCs, and admin resource documents in JSON and
//! YAML. The long run is `make fuzz` (`sluice-fuzz`, ten million cases).

use sluice_tests::fuzz::Stages;
use sluice_tests::*;

#[test]
fn mutated_frames_and_documents_never_panic_and_memory_stays_bounded() {
    // The peak RSS checked below is the process's: alone, not with the other modules' tests.
    if !alone_in_process(
        module_path!(),
        "mutated_frames_and_documents_never_panic_and_memory_stays_bounded",
    ) {
        return;
    }
    let stages = Stages::new().expect("stages");
    let report = stages.run(0x5eed, 0, 60_000, 50);
    eprintln!("{report:?}");
    assert!(
        report.panics.is_empty(),
        "panics (replay with sluice-fuzz --seed {} --replay CASE): {:#?}",
        0x5eed,
        report.panics
    );
    // Every kind of input was driven, and enough of them got past the first refusal to
    // reach the later stages.
    assert!(
        report.requests > 30_000 && report.responses > 10_000,
        "{report:?}"
    );
    assert!(
        report.batches > 3_000 && report.admin_docs > 1_000,
        "{report:?}"
    );
    assert!(report.refused < report.frames(), "{report:?}");
    // A forged count or a decompression bomb would show here as hundreds of MiB.
    assert!(
        report.peak_rss_kib < 256 * 1024,
        "peak RSS {} KiB",
        report.peak_rss_kib
    );
}

/// The same frames over TCP through a running gateway (framing, the header peek, the version
/// check and the slot queue of the session): 5,000 frames from 8 clients, then a
/// well-behaved client is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_frames_over_tcp_leave_the_gateway_serving() {
    use sluice_tests::mock::{MockBroker, MockOptions};
    init_logging();
    let mock = MockBroker::start(MockOptions::default()).await.unwrap();
    let gw = start_gateway(&mock.bootstrap()).await.unwrap();
    let report = sluice_tests::fuzz::run_net(gw.kafka_addr(), 0x5eed, 5_000, 8)
        .await
        .unwrap();
    eprintln!("{report:?}");
    assert_eq!(report.frames, 5_000);
    assert!(report.connections > 8, "{report:?}");
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    c.call(&kafka_protocol::messages::MetadataRequest::default(), 12)
        .await
        .expect("a new client is served after the fuzz clients");
    gw.shutdown().await;
}
