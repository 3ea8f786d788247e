//! `noop-records`: a produce hook that returns `Ok` without reading anything. Measures what the
//! gateway pays to decode a Produce request's records for a plugin and call it.
//!
//! Configuration: none (any configuration is accepted and ignored).

use sluice_sdk::{Capabilities, Hooks, Plugin};

/// The plugin: no state.
pub struct NoopRecords;

impl Plugin for NoopRecords {
    fn describe() -> Capabilities {
        Capabilities::new(Hooks::PRODUCE)
    }

    fn configure(_config: &str) -> Result<Self, String> {
        Ok(NoopRecords)
    }

    // on_produce: the SDK's default returns Ok(()) and touches nothing.
}

sluice_sdk::export_plugin!(NoopRecords);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{Harness, MemRecords};
    use sluice_sdk::KafkaRecord;

    #[test]
    fn accepts_and_leaves_records_alone() {
        let mut h = Harness::<NoopRecords>::new("{}").unwrap();
        assert_eq!(h.capabilities().hooks, Hooks::PRODUCE);
        let mut recs =
            MemRecords::new().with_partition("t", 0, [KafkaRecord::from_value("v").with_key("k")]);
        h.produce(&mut recs).unwrap();
        assert!(!recs.is_modified(0));
        assert!(recs.rejections().is_empty());
        assert!(h.logs().is_empty());
    }
}
