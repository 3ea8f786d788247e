//! `reject-large`: rejects every produce partition that holds a record whose **value** is
//! larger than a limit (keys and headers are not counted: the value is what grows, and its
//! size is known without copying it into the plugin).
//!
//! Configuration:
//!
//! ```json
//! {"maxBytes": 1048576, "errorCode": 87}
//! ```
//!
//! * `maxBytes` (required): the largest value accepted, in bytes; a null value counts as 0.
//! * `errorCode` (default 87, INVALID_RECORD): the error the client gets for a rejected
//!   partition; 44 (POLICY_VIOLATION) and 10 (MESSAGE_TOO_LARGE) are also allowed.
//!
//! Only the offending partitions are rejected; the others of the same request go to the broker.
//! The error message names the topic, partition, record index and size. Each rejected partition
//! adds 1 to the plugin counter `rejected_partitions`.

use serde::Deserialize;
use sluice_sdk::{error_code, host, Capabilities, Context, Hooks, KafkaError, Plugin, Records};

/// Error codes the configuration may choose.
const ALLOWED_CODES: [i16; 3] = [
    error_code::INVALID_RECORD,
    error_code::POLICY_VIOLATION,
    error_code::MESSAGE_TOO_LARGE,
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    max_bytes: u32,
    #[serde(default = "default_error_code")]
    error_code: i16,
}

fn default_error_code() -> i16 {
    error_code::INVALID_RECORD
}

/// The plugin: the limit and the error code.
pub struct RejectLarge {
    max_bytes: u32,
    error_code: i16,
}

impl Plugin for RejectLarge {
    fn describe() -> Capabilities {
        Capabilities::new(Hooks::PRODUCE)
    }

    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| {
            format!(
                r#"reject-large: invalid config ({e}); expected {{"maxBytes": N, "errorCode": 87|44|10}} with N from 0 to {}"#,
                u32::MAX
            )
        })?;
        if !ALLOWED_CODES.contains(&config.error_code) {
            return Err(format!(
                "reject-large: errorCode {} is not allowed; use 87 (INVALID_RECORD), 44 (POLICY_VIOLATION) or 10 (MESSAGE_TOO_LARGE)",
                config.error_code
            ));
        }
        Ok(RejectLarge {
            max_bytes: config.max_bytes,
            error_code: config.error_code,
        })
    }

    fn on_produce(&mut self, _ctx: &Context, records: &mut dyn Records) -> Result<(), KafkaError> {
        for p in 0..records.partition_count() {
            for r in 0..records.record_count(p) {
                let size = records.value_size(p, r);
                if i64::from(size) > i64::from(self.max_bytes) {
                    let message = format!(
                        "record {r} of {}-{} has a {size}-byte value, larger than the {}-byte limit",
                        records.topic(p),
                        records.partition(p),
                        self.max_bytes
                    );
                    records.reject(p, &KafkaError::new(self.error_code, message));
                    host::counter_add("rejected_partitions", 1);
                    break;
                }
            }
        }
        Ok(())
    }
}

sluice_sdk::export_plugin!(RejectLarge);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{Harness, MemRecords};
    use sluice_sdk::KafkaRecord;

    fn value(n: usize) -> KafkaRecord {
        KafkaRecord::from_value(vec![b'x'; n])
    }

    #[test]
    fn rejects_only_partitions_with_a_large_value() {
        let mut h = Harness::<RejectLarge>::new(r#"{"maxBytes": 10}"#).unwrap();
        let mut recs = MemRecords::new()
            .with_partition("small", 0, [value(10), value(0), KafkaRecord::tombstone()])
            .with_partition("big", 7, [value(1), value(11), value(500)])
            .with_partition("empty", 0, []);
        h.produce(&mut recs).unwrap();
        assert_eq!(recs.rejected(0), None);
        assert_eq!(recs.rejected(2), None);
        let err = recs.rejected(1).unwrap();
        assert_eq!(err.code, 87);
        assert_eq!(
            err.message,
            "record 1 of big-7 has a 11-byte value, larger than the 10-byte limit"
        );
        assert!(
            !recs.is_modified(0) && !recs.is_modified(1),
            "records untouched"
        );
        assert_eq!(h.counter("rejected_partitions"), 1);
    }

    #[test]
    fn error_code_is_configurable() {
        let mut h = Harness::<RejectLarge>::new(r#"{"maxBytes": 0, "errorCode": 44}"#).unwrap();
        let mut recs = MemRecords::new().with_partition("t", 0, [value(1)]);
        h.produce(&mut recs).unwrap();
        assert_eq!(recs.rejected(0).unwrap().code, 44);
        let mut h = Harness::<RejectLarge>::new(r#"{"maxBytes": 0, "errorCode": 10}"#).unwrap();
        let mut recs = MemRecords::new().with_partition("t", 0, [KafkaRecord::tombstone()]);
        h.produce(&mut recs).unwrap();
        assert_eq!(recs.rejected(0), None, "a null value is 0 bytes");
    }

    #[test]
    fn refuses_bad_config_with_a_clear_message() {
        let err = |c: &str| Harness::<RejectLarge>::new(c).err().unwrap();
        assert!(
            err("{}").contains("missing field `maxBytes`"),
            "{}",
            err("{}")
        );
        assert!(err(r#"{"maxBytes": -1}"#).contains("invalid config"));
        assert!(err(r#"{"maxBytes": "1k"}"#).contains("invalid config"));
        assert!(err(r#"{"maxBytes": 1, "max": 2}"#).contains("unknown field `max`"));
        assert!(err(r#"{"maxBytes": 1, "errorCode": 3}"#).contains("errorCode 3 is not allowed"));
        assert!(err("").starts_with("reject-large: "));
    }
}
