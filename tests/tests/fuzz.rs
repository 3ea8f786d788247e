//! A short, bounded run of the fuzz driver (`sluice_tests::fuzz`): mutated frames of every
//! API and version the gateway advertises through every stage of the request and response
//! path, record batches behind recomputed CRCs, and admin resource documents in JSON and
//! YAML. The long run is `make fuzz` (`sluice-fuzz`, ten million cases).

use sluice_tests::fuzz::Stages;

#[test]
fn mutated_frames_and_documents_never_panic_and_memory_stays_bounded() {
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
