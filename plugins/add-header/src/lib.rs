//! `add-header`: appends configured headers to every produced record.
//!
//! Configuration:
//!
//! ```json
//! {"headers": {"x-origin": "gateway", "x-env": "prod", "x-null": null}}
//! ```
//!
//! Headers are appended in the order the configuration lists them, after the record's own
//! headers (existing headers with the same key are kept: Kafka headers may repeat). A `null`
//! value adds a header with a null value. The configuration is refused when `headers` is
//! missing, empty or not an object, when a value is neither a string nor null, when a key is
//! empty, or when another field is present.

use serde_json::Value;
use sluice_sdk::{Capabilities, Context, Header, Hooks, KafkaError, Plugin, Records};

/// The plugin: the headers to append, in order.
pub struct AddHeader {
    headers: Vec<Header>,
}

fn parse_config(config: &str) -> Result<Vec<Header>, String> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("config is not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err(r#"config must be a JSON object like {"headers": {"name": "value"}}"#.into());
    };
    if let Some(unknown) = fields.keys().find(|k| *k != "headers") {
        return Err(format!(
            "unknown config field `{unknown}` (the only field is `headers`)"
        ));
    }
    let headers = match fields.get("headers") {
        None => {
            return Err(r#"missing `headers`: expected {"headers": {"name": "value", ...}}"#.into())
        }
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(format!(
                "`headers` must be an object of header names to string values, got {}",
                kind(other)
            ))
        }
    };
    if headers.is_empty() {
        return Err("`headers` is empty: list at least one header to add".into());
    }
    headers
        .iter()
        .map(|(name, value)| {
            if name.is_empty() {
                return Err("a header name is empty".to_string());
            }
            match value {
                Value::String(s) => Ok(Header::new(name.as_str(), s.as_str())),
                Value::Null => Ok(Header::null(name.as_str())),
                other => Err(format!(
                    "header `{name}` must have a string (or null) value, got {}",
                    kind(other)
                )),
            }
        })
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Plugin for AddHeader {
    fn describe() -> Capabilities {
        Capabilities::new(Hooks::PRODUCE)
    }

    fn configure(config: &str) -> Result<Self, String> {
        parse_config(config)
            .map(|headers| AddHeader { headers })
            .map_err(|e| format!("add-header: {e}"))
    }

    fn on_produce(&mut self, _ctx: &Context, records: &mut dyn Records) -> Result<(), KafkaError> {
        for p in 0..records.partition_count() {
            for r in 0..records.record_count(p) {
                for header in &self.headers {
                    records.add_header(p, r, header);
                }
            }
        }
        Ok(())
    }
}

sluice_sdk::export_plugin!(AddHeader);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{Harness, MemRecords};
    use sluice_sdk::KafkaRecord;

    #[test]
    fn appends_headers_in_config_order_to_every_record() {
        let mut h = Harness::<AddHeader>::new(
            r#"{"headers": {"z-last-alphabetically": "1", "a-first": "2", "x-null": null}}"#,
        )
        .unwrap();
        let mut recs = MemRecords::new()
            .with_partition(
                "orders",
                0,
                [
                    KafkaRecord::from_value("v1").with_header("z-last-alphabetically", "own"),
                    KafkaRecord::tombstone().with_key("k"),
                ],
            )
            .with_partition("audit", 4, [KafkaRecord::from_value("v3")]);
        h.produce(&mut recs).unwrap();

        let added = vec![
            Header::new("z-last-alphabetically", "1"),
            Header::new("a-first", "2"),
            Header::null("x-null"),
        ];
        let first = recs.records(0)[0].clone();
        assert_eq!(
            first.headers[0],
            Header::new("z-last-alphabetically", "own")
        );
        assert_eq!(first.headers[1..], added[..]);
        assert_eq!(recs.records(0)[1].headers, added);
        assert_eq!(recs.records(1)[0].headers, added);
        assert_eq!(recs.records(0)[1].value, None, "values untouched");
        assert!(recs.rejections().is_empty());
    }

    #[test]
    fn empty_partitions_are_fine() {
        let mut h = Harness::<AddHeader>::new(r#"{"headers": {"a": "b"}}"#).unwrap();
        let mut recs = MemRecords::new().with_partition("t", 0, []);
        h.produce(&mut recs).unwrap();
        assert!(!recs.is_modified(0));
    }

    #[test]
    fn refuses_bad_config_with_a_clear_message() {
        let err = |c: &str| Harness::<AddHeader>::new(c).err().unwrap();
        assert!(err("").contains("missing `headers`"), "{}", err(""));
        assert!(err("{").contains("not valid JSON"));
        assert!(err("[]").contains("must be a JSON object"));
        assert!(err(r#"{"headers": []}"#).contains("got an array"));
        assert!(err(r#"{"headers": {}}"#).contains("is empty"));
        assert!(err(r#"{"headers": {"a": 1}}"#).contains("header `a` must have a string"));
        assert!(err(r#"{"headers": {"": "x"}}"#).contains("name is empty"));
        assert!(
            err(r#"{"headers": {"a": "b"}, "extra": 1}"#).contains("unknown config field `extra`")
        );
        assert!(err("{}").starts_with("add-header: "));
    }
}
