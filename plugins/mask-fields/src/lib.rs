//! `mask-fields`: replaces fields of JSON record values, on produce (and on fetch when asked).
//!
//! Configuration:
//!
//! ```json
//! {"fields": ["ssn", "card.number"], "replacement": "****", "onFetch": false}
//! ```
//!
//! * `fields` (required, non-empty): dotted paths from the top-level object; `card.number` is
//!   the `number` field of the `card` object. An array on the way is entered element by
//!   element (`items.card` masks `card` in every element of `items`). Dots inside field names
//!   cannot be expressed.
//! * `replacement` (default `"****"`): any JSON value that replaces each field present.
//! * `onFetch` (default false): also mask the records of Fetch responses (consumers then see
//!   masked values, even of records produced before the interceptor existed).
//!
//! Only values that are JSON objects are considered; anything else (other JSON, text, binary,
//! null) passes untouched, as do objects without any of the fields. A value with a masked field
//! is re-serialized compactly (key order and number spelling are kept, whitespace is not).
//! Counters: `masked_records` (records rewritten), `masked_fields` (fields replaced).
//!
//! The plugin always declares the produce and fetch hooks (`describe` is called before the
//! configuration is known); with `onFetch` false its fetch hook returns at once.

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::{host, Capabilities, Context, Hooks, KafkaError, Plugin, Records};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    fields: Vec<String>,
    #[serde(default = "default_replacement")]
    replacement: Value,
    #[serde(default)]
    on_fetch: bool,
}

fn default_replacement() -> Value {
    Value::String("****".into())
}

/// The plugin: parsed paths, the replacement, and the quick pre-check needles.
pub struct MaskFields {
    paths: Vec<Vec<String>>,
    replacement: Value,
    on_fetch: bool,
    /// `"<first segment>"` of each path: a value containing none of them (and no escape that
    /// could spell one differently) has nothing to mask and is not parsed.
    needles: Vec<Vec<u8>>,
}

impl Plugin for MaskFields {
    fn describe() -> Capabilities {
        Capabilities::new(Hooks::PRODUCE | Hooks::FETCH)
    }

    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| {
            format!(
                r#"mask-fields: invalid config ({e}); expected {{"fields": ["ssn", "card.number"], "replacement": "****", "onFetch": false}}"#
            )
        })?;
        if config.fields.is_empty() {
            return Err("mask-fields: `fields` is empty: list at least one field path".into());
        }
        let mut paths = Vec::new();
        for field in &config.fields {
            let path: Vec<String> = field.split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!(
                    "mask-fields: field path `{field}` has an empty segment (use `a.b`, not `a..b`, `.a` or `a.`)"
                ));
            }
            paths.push(path);
        }
        let mut needles: Vec<Vec<u8>> = paths
            .iter()
            .map(|p| serde_json::to_vec(&Value::String(p[0].clone())).expect("a string encodes"))
            .collect();
        needles.sort();
        needles.dedup();
        Ok(MaskFields {
            paths,
            replacement: config.replacement,
            on_fetch: config.on_fetch,
            needles,
        })
    }

    fn on_produce(&mut self, _ctx: &Context, records: &mut dyn Records) -> Result<(), KafkaError> {
        self.mask_all(records);
        Ok(())
    }

    fn on_fetch(&mut self, _ctx: &Context, records: &mut dyn Records) -> Result<(), KafkaError> {
        if self.on_fetch {
            self.mask_all(records);
        }
        Ok(())
    }
}

impl MaskFields {
    fn mask_all(&self, records: &mut dyn Records) {
        let (mut masked_records, mut masked_fields) = (0u64, 0u64);
        for p in 0..records.partition_count() {
            for r in 0..records.record_count(p) {
                let Some(value) = records.value(p, r) else {
                    continue;
                };
                if let Some((rewritten, n)) = self.mask_value(&value) {
                    records.set_value(p, r, Some(&rewritten));
                    masked_records += 1;
                    masked_fields += n;
                }
            }
        }
        if masked_records > 0 {
            host::counter_add("masked_records", masked_records);
            host::counter_add("masked_fields", masked_fields);
        }
    }

    /// The rewritten value and the number of fields replaced, or `None` to leave it alone.
    fn mask_value(&self, value: &[u8]) -> Option<(Vec<u8>, u64)> {
        let first = value.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        if !value.contains(&b'\\') && !self.needles.iter().any(|n| contains(value, n)) {
            return None;
        }
        let mut doc: Value = serde_json::from_slice(value).ok()?;
        let replaced: u64 = self
            .paths
            .iter()
            .map(|path| mask(&mut doc, path, &self.replacement))
            .sum();
        if replaced == 0 {
            return None;
        }
        Some((serde_json::to_vec(&doc).ok()?, replaced))
    }
}

/// Replaces the field at `path` under `value`; returns how many were replaced.
fn mask(value: &mut Value, path: &[String], replacement: &Value) -> u64 {
    match value {
        Value::Object(map) => {
            let Some((name, rest)) = path.split_first() else {
                return 0;
            };
            match map.get_mut(name.as_str()) {
                None => 0,
                Some(field) if rest.is_empty() => {
                    *field = replacement.clone();
                    1
                }
                Some(field) => mask(field, rest, replacement),
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .map(|item| mask(item, path, replacement))
            .sum(),
        _ => 0,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

sluice_sdk::export_plugin!(MaskFields);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{Harness, MemRecords};
    use sluice_sdk::KafkaRecord;

    const CONFIG: &str = r#"{"fields": ["ssn", "card.number", "items.secret"]}"#;

    fn run(config: &str, values: &[&str]) -> (MemRecords, Harness<MaskFields>) {
        let mut h = Harness::<MaskFields>::new(config).unwrap();
        let mut recs = MemRecords::new().with_partition(
            "t",
            0,
            values.iter().map(|v| KafkaRecord::from_value(*v)),
        );
        h.produce(&mut recs).unwrap();
        (recs, h)
    }

    #[test]
    fn masks_top_level_nested_and_array_fields() {
        let (recs, h) = run(
            CONFIG,
            &[
                r#"{"name": "Ann", "ssn": "123-45-6789", "card": {"number": "4111", "exp": "12/30"}, "amount": 12.50}"#,
                r#"{"items": [{"secret": 1, "id": 1}, {"id": 2}, {"secret": {"deep": true}}]}"#,
            ],
        );
        assert_eq!(
            recs.values_utf8(0),
            vec![
                Some(r#"{"name":"Ann","ssn":"****","card":{"number":"****","exp":"12/30"},"amount":12.50}"#.into()),
                Some(r#"{"items":[{"secret":"****","id":1},{"id":2},{"secret":"****"}]}"#.into()),
            ]
        );
        assert_eq!(h.counter("masked_records"), 2);
        assert_eq!(h.counter("masked_fields"), 4);
    }

    #[test]
    fn leaves_other_values_untouched() {
        let values = [
            "plain text",
            r#"["ssn"]"#,
            r#"{"ssn": "1""#,
            r#"{"name": "no sensitive field"}"#,
            r#"{"card": "not an object"}"#,
            "",
        ];
        let (recs, h) = run(CONFIG, &values);
        assert!(!recs.is_modified(0), "{:?}", recs.values_utf8(0));
        assert_eq!(h.counter("masked_records"), 0);

        let mut h = Harness::<MaskFields>::new(CONFIG).unwrap();
        let mut recs = MemRecords::new().with_partition(
            "t",
            0,
            [
                KafkaRecord::tombstone(),
                KafkaRecord::from_value(vec![0xff, 0x7b]),
            ],
        );
        h.produce(&mut recs).unwrap();
        assert!(!recs.is_modified(0));
    }

    #[test]
    fn escaped_field_names_are_still_masked() {
        let (recs, _) = run(CONFIG, &[r#"{"\u0073sn": "123"}"#]);
        assert_eq!(recs.values_utf8(0), vec![Some(r#"{"ssn":"****"}"#.into())]);
    }

    #[test]
    fn replacement_can_be_any_json_value() {
        let (recs, _) = run(
            r#"{"fields": ["a.b"], "replacement": null}"#,
            &[r#"{"a": {"b": [1, 2]}, "big": 123456789012345678901234567890}"#],
        );
        assert_eq!(
            recs.values_utf8(0),
            vec![Some(
                r#"{"a":{"b":null},"big":123456789012345678901234567890}"#.into()
            )]
        );
    }

    #[test]
    fn fetch_is_masked_only_when_asked() {
        let record = || KafkaRecord::from_value(r#"{"ssn": "1"}"#);
        let mut h = Harness::<MaskFields>::new(r#"{"fields": ["ssn"]}"#).unwrap();
        let mut recs = MemRecords::new().with_partition("t", 0, [record()]);
        h.fetch(&mut recs).unwrap();
        assert!(!recs.is_modified(0));

        let mut h = Harness::<MaskFields>::new(r#"{"fields": ["ssn"], "onFetch": true}"#).unwrap();
        let mut recs = MemRecords::new().with_partition("t", 0, [record()]);
        h.fetch(&mut recs).unwrap();
        assert_eq!(recs.values_utf8(0), vec![Some(r#"{"ssn":"****"}"#.into())]);
    }

    #[test]
    fn refuses_bad_config_with_a_clear_message() {
        let err = |c: &str| Harness::<MaskFields>::new(c).err().unwrap();
        assert!(
            err("{}").contains("missing field `fields`"),
            "{}",
            err("{}")
        );
        assert!(err(r#"{"fields": []}"#).contains("`fields` is empty"));
        assert!(err(r#"{"fields": ["a..b"]}"#).contains("empty segment"));
        assert!(err(r#"{"fields": ["a"], "onfetch": true}"#).contains("unknown field `onfetch`"));
        assert!(err(r#"{"fields": "ssn"}"#).contains("invalid config"));
    }
}
