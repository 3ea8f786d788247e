//! `mask-fields`: masks fields of JSON record values, per rule and per reader, so that each
//! consumer sees only what it may (or so that what is stored is already masked).
//!
//! Configuration, today's one-rule form (masks on produce):
//!
//! ```json
//! {"fields": ["ssn", "card.number"], "replacement": "****", "onFetch": false}
//! ```
//!
//! and the rules form (masks on fetch, by reader):
//!
//! ```json
//! {"rules": [
//!    {"fields": ["ssn"], "kind": "hash"},
//!    {"fields": ["card.number"], "kind": "keepLast", "keepLast": 4},
//!    {"fieldRegex": "(.*\\.)?email", "kind": "null", "unmaskedFor": {"groups": ["support"]}}],
//!  "salt": "per-interceptor secret",
//!  "unmaskedFor": {"principals": ["fraud-svc"], "groups": ["fraud"], "vclusters": []}}
//! ```
//!
//! * A rule selects fields by dotted path (`fields`: `card.number` is the `number` field of the
//!   `card` object) or by a regex over the dotted path (`fieldRegex`, matching the whole path).
//!   An array on the way is entered element by element: its elements have the array's path
//!   (`items.card` masks `card` in every element of `items`). Dots inside field names cannot
//!   be expressed. For each field the first rule (in order) that selects it wins, and a masked
//!   field's inside is not looked at again.
//! * Kinds: `replace` (default; `replacement`, any JSON value, default `"****"`), `keepLast`
//!   (`keepLast: N` characters kept, the others become `maskChar`, default `*`; a non-string
//!   value is turned into its JSON text first), `hash` (hex SHA-256 of the top-level `salt`
//!   followed by the value: a string's UTF-8, else its JSON text), `null`.
//! * `unmaskedFor` (top level: every rule's default; in a rule: replaces it): readers whose
//!   principal, one of whose groups, or whose virtual cluster is listed see those fields in
//!   clear. The interceptor's install scope decides whom the interceptor applies to at all;
//!   `unmaskedFor` names exceptions among them.
//! * `onProduce` / `onFetch`: which records are masked; defaults produce only in the one-rule
//!   form (today's behaviour), fetch only with `rules`. On produce, `unmaskedFor` is matched
//!   against the producer.
//!
//! Only values that are JSON objects are considered; anything else (other JSON, text, binary,
//! null) passes untouched, as do objects without any selected field. A value with a masked field
//! is re-serialized compactly (key order and number spelling are kept, whitespace is not).
//! Counters: `masked_records` (records rewritten), `masked_fields` (fields masked), per kind
//! `masked_replace`, `masked_keep_last`, `masked_hash`, `masked_null`, and `unmasked_records`
//! (records passed in clear because every rule exempted the reader).
//!
//! The plugin always declares the produce and fetch hooks (`describe` is called before the
//! configuration is known); a hook that is off returns at once.

mod config;

use config::{Kind, Rule, Settings};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_sdk::{host, Capabilities, Context, Hooks, KafkaError, Plugin, Records};

/// The plugin: its validated settings.
pub struct MaskFields {
    settings: Settings,
}

impl Plugin for MaskFields {
    fn describe() -> Capabilities {
        Capabilities::new(Hooks::PRODUCE | Hooks::FETCH)
    }

    fn configure(config: &str) -> Result<Self, String> {
        Ok(MaskFields {
            settings: config::parse(config)?,
        })
    }

    fn on_produce(&mut self, ctx: &Context, records: &mut dyn Records) -> Result<(), KafkaError> {
        if self.settings.on_produce {
            self.mask_all(ctx, records);
        }
        Ok(())
    }

    fn on_fetch(&mut self, ctx: &Context, records: &mut dyn Records) -> Result<(), KafkaError> {
        if self.settings.on_fetch {
            self.mask_all(ctx, records);
        }
        Ok(())
    }
}

/// What one call masked, for the counters.
#[derive(Default)]
struct Stats {
    records: u64,
    fields: u64,
    /// Fields per kind, in the order of [`KIND_COUNTERS`].
    by_kind: [u64; 4],
}

const KIND_COUNTERS: [&str; 4] = [
    "masked_replace",
    "masked_keep_last",
    "masked_hash",
    "masked_null",
];

/// The rules that apply to one reader (those that do not exempt it), and the quick pre-check
/// needles when they all select by path.
struct Active<'a> {
    rules: Vec<&'a Rule>,
    /// Quoted first path segments: a value containing none (and no escape, which could spell
    /// one differently) has nothing to mask and is not parsed. `None` when a regex rule is
    /// active.
    needles: Option<Vec<Vec<u8>>>,
}

impl MaskFields {
    fn mask_all(&self, ctx: &Context, records: &mut dyn Records) {
        let rules: Vec<&Rule> = self
            .settings
            .rules
            .iter()
            .filter(|r| !r.unmasked_for.as_ref().is_some_and(|u| u.matches(ctx)))
            .collect();
        if rules.is_empty() {
            let n: u64 = (0..records.partition_count())
                .map(|p| u64::from(records.record_count(p)))
                .sum();
            if n > 0 {
                host::counter_add("unmasked_records", n);
            }
            return;
        }
        let needles = rules
            .iter()
            .map(|r| r.selector.needles())
            .collect::<Option<Vec<_>>>()
            .map(|n| n.concat());
        let active = Active { rules, needles };
        let mut stats = Stats::default();
        for p in 0..records.partition_count() {
            for r in 0..records.record_count(p) {
                let Some(value) = records.value(p, r) else {
                    continue;
                };
                if let Some(rewritten) = self.mask_value(&active, &value, &mut stats) {
                    records.set_value(p, r, Some(&rewritten));
                    stats.records += 1;
                }
            }
        }
        if stats.records > 0 {
            host::counter_add("masked_records", stats.records);
            host::counter_add("masked_fields", stats.fields);
            for (name, n) in KIND_COUNTERS.iter().zip(stats.by_kind) {
                if n > 0 {
                    host::counter_add(name, n);
                }
            }
        }
    }

    /// The rewritten value, or `None` to leave it alone.
    fn mask_value(&self, active: &Active, value: &[u8], stats: &mut Stats) -> Option<Vec<u8>> {
        let first = value.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        if let Some(needles) = &active.needles {
            if !value.contains(&b'\\') && !needles.iter().any(|n| contains(value, n)) {
                return None;
            }
        }
        let mut doc: Value = serde_json::from_slice(value).ok()?;
        let before = stats.fields;
        self.walk(&mut doc, &mut String::new(), &active.rules, stats);
        if stats.fields == before {
            return None;
        }
        serde_json::to_vec(&doc).ok()
    }

    /// Masks the fields under `value` (at dotted `path`) that `rules` select.
    fn walk(&self, value: &mut Value, path: &mut String, rules: &[&Rule], stats: &mut Stats) {
        match value {
            Value::Object(map) => {
                for (name, field) in map.iter_mut() {
                    let len = path.len();
                    if len > 0 {
                        path.push('.');
                    }
                    path.push_str(name);
                    if let Some(rule) = rules.iter().find(|r| r.selector.matches(path)) {
                        *field = self.masked(&rule.kind, field);
                        stats.fields += 1;
                        stats.by_kind[kind_index(&rule.kind)] += 1;
                    } else if rules.iter().any(|r| r.selector.may_match_below(path)) {
                        self.walk(field, path, rules, stats);
                    }
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, path, rules, stats);
                }
            }
            _ => {}
        }
    }

    /// What `field` becomes under `kind`.
    fn masked(&self, kind: &Kind, field: &Value) -> Value {
        match kind {
            Kind::Replace(replacement) => replacement.clone(),
            Kind::Null => Value::Null,
            Kind::KeepLast { n, mask } => {
                let text = as_text(field);
                let chars = text.chars().count();
                let hidden = chars.saturating_sub(*n);
                let mut out = String::with_capacity(text.len());
                out.extend(std::iter::repeat_n(*mask, hidden));
                out.extend(text.chars().skip(hidden));
                Value::String(out)
            }
            Kind::Hash => {
                let mut h = Sha256::new();
                h.update(&self.settings.salt);
                h.update(as_text(field).as_bytes());
                Value::String(hex(&h.finalize()))
            }
        }
    }
}

fn kind_index(kind: &Kind) -> usize {
    KIND_COUNTERS
        .iter()
        .position(|c| *c == kind.counter())
        .expect("every kind has a counter")
}

/// A string's own text, any other value's compact JSON text.
fn as_text(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => s.as_str().into(),
        other => serde_json::to_string(other)
            .expect("a JSON value encodes")
            .into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
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

    /// Masks `value` on fetch under `config`, as read by `ctx`; returns the value read.
    fn fetch_as(config: &str, ctx: Context, value: &str) -> (Option<String>, Harness<MaskFields>) {
        let mut h = Harness::<MaskFields>::new(config).unwrap();
        let mut recs = MemRecords::new().with_partition("t", 0, [KafkaRecord::from_value(value)]);
        h.fetch_with(&ctx, &mut recs).unwrap();
        (recs.values_utf8(0).remove(0), h)
    }

    fn reader() -> Context {
        Context::new(1, 17)
    }

    fn sha256_hex(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
    }

    #[test]
    fn rules_give_each_field_its_own_kind() {
        let config = r##"{"rules": [
            {"fields": ["ssn"], "kind": "hash"},
            {"fields": ["card.number"], "kind": "keepLast", "keepLast": 4},
            {"fields": ["phone"], "keepLast": 2, "maskChar": "~"},
            {"fields": ["email"], "kind": "null"},
            {"fields": ["name"], "replacement": {"redacted": true}}],
            "salt": "pepper"}"##;
        let (got, h) = fetch_as(
            config,
            reader(),
            r#"{"name": "Ann", "ssn": "123-45-6789", "card": {"number": "4111111111111111"},
                "phone": 5551234, "email": "ann@example.com", "amount": 1.50}"#,
        );
        let want = format!(
            r##"{{"name":{{"redacted":true}},"ssn":"{}","card":{{"number":"************1111"}},"phone":"~~~~~34","email":null,"amount":1.50}}"##,
            sha256_hex(b"pepper123-45-6789")
        );
        assert_eq!(got.unwrap(), want);
        assert_eq!(h.counter("masked_records"), 1);
        assert_eq!(h.counter("masked_fields"), 5);
        assert_eq!(h.counter("masked_replace"), 1);
        assert_eq!(h.counter("masked_keep_last"), 2);
        assert_eq!(h.counter("masked_hash"), 1);
        assert_eq!(h.counter("masked_null"), 1);
    }

    #[test]
    fn keep_last_counts_characters_and_turns_other_values_into_text() {
        let config = r#"{"rules": [{"fields": ["a", "b", "c", "d", "e"], "keepLast": 3}]}"#;
        let (got, _) = fetch_as(
            config,
            reader(),
            r#"{"a": "héllo wörld", "b": "ab", "c": 123456, "d": {"x": 1}, "e": true}"#,
        );
        // Unicode characters count once; a value shorter than N is kept whole; a number, an
        // object and a boolean are masked as their JSON text.
        assert_eq!(
            got.unwrap(),
            r#"{"a":"********rld","b":"ab","c":"***456","d":"****:1}","e":"*rue"}"#
        );
        let (got, _) = fetch_as(
            r#"{"rules": [{"fields": ["a"], "keepLast": 0}]}"#,
            reader(),
            r#"{"a": "secret"}"#,
        );
        assert_eq!(got.unwrap(), r#"{"a":"******"}"#);
    }

    #[test]
    fn hash_is_salted_per_interceptor_and_stable() {
        let value = r#"{"id": 42, "ssn": "123"}"#;
        let rules = r#""rules": [{"fields": ["ssn", "id"], "kind": "hash"}]"#;
        let (a, _) = fetch_as(&format!(r#"{{{rules}, "salt": "one"}}"#), reader(), value);
        let (a2, _) = fetch_as(&format!(r#"{{{rules}, "salt": "one"}}"#), reader(), value);
        let (b, _) = fetch_as(&format!(r#"{{{rules}, "salt": "two"}}"#), reader(), value);
        let a: Value = serde_json::from_str(&a.unwrap()).unwrap();
        let b: Value = serde_json::from_str(&b.unwrap()).unwrap();
        // SHA-256("one" ‖ "123"), as `printf one123 | sha256sum` prints it.
        assert_eq!(
            a["ssn"],
            "ef3d4267e2c06e4880fc9aecdd3c22c6b52a45a19fab0d7510be72d8278ec607"
        );
        assert_eq!(
            a["id"],
            sha256_hex(b"one42").as_str(),
            "a number hashes as its text"
        );
        assert_eq!(a, serde_json::from_str::<Value>(&a2.unwrap()).unwrap());
        assert_ne!(a["ssn"], b["ssn"], "another salt gives another hash");
        assert_eq!(a["ssn"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn field_regex_matches_whole_dotted_paths_and_enters_arrays() {
        let config = r#"{"rules": [{"fieldRegex": "(.*\\.)?(email|e-mail)", "kind": "null"},
                                    {"fieldRegex": "card\\..*", "replacement": "x"}]}"#;
        let (got, h) = fetch_as(
            config,
            reader(),
            r#"{"email": "a@b", "emails": ["x"], "contact": {"email": "c@d", "my_email": 1},
                "users": [{"e-mail": "e@f"}, {"id": 2}], "card": {"number": 1, "cvc": {"v": 2}},
                "card2": {"number": 3}}"#,
        );
        assert_eq!(
            got.unwrap(),
            r#"{"email":null,"emails":["x"],"contact":{"email":null,"my_email":1},"users":[{"e-mail":null},{"id":2}],"card":{"number":"x","cvc":"x"},"card2":{"number":3}}"#
        );
        assert_eq!(h.counter("masked_fields"), 5);
    }

    #[test]
    fn first_matching_rule_wins_and_masked_fields_are_not_entered() {
        let config = r#"{"rules": [{"fields": ["card"], "kind": "null"},
                                    {"fields": ["card.number"], "replacement": "n"},
                                    {"fieldRegex": ".*", "replacement": "all"}]}"#;
        let (got, h) = fetch_as(
            config,
            reader(),
            r#"{"card": {"number": 1}, "x": {"y": 2}}"#,
        );
        assert_eq!(got.unwrap(), r#"{"card":null,"x":"all"}"#);
        assert_eq!(h.counter("masked_fields"), 2);
    }

    const SCOPED: &str = r#"{"rules": [
        {"fields": ["ssn"], "kind": "null"},
        {"fields": ["email"], "kind": "null", "unmaskedFor": {"groups": ["support"]}}],
        "unmaskedFor": {"principals": ["alice"], "groups": ["fraud"], "vclusters": ["audit"]}}"#;
    const PERSON: &str = r#"{"ssn": "1", "email": "a@b"}"#;

    #[test]
    fn readers_in_unmasked_for_see_clear_text() {
        for ctx in [
            reader().with_principal("alice"),
            reader()
                .with_principal("bob")
                .with_groups(["sales", "fraud"]),
            reader().with_vcluster("audit"),
        ] {
            let who = format!("{:?}/{:?}/{:?}", ctx.principal, ctx.groups, ctx.vcluster);
            let mut h = Harness::<MaskFields>::new(SCOPED).unwrap();
            let mut recs = MemRecords::new().with_partition(
                "t",
                0,
                [KafkaRecord::from_value(PERSON), KafkaRecord::tombstone()],
            );
            h.fetch_with(&ctx, &mut recs).unwrap();
            // `email`'s rule names its own readers, which replace the top-level ones.
            assert_eq!(
                recs.values_utf8(0)[0].as_deref(),
                Some(r#"{"ssn":"1","email":null}"#),
                "{who}"
            );
        }
        // In both lists' scope: every rule exempts the reader, nothing is parsed or changed.
        let ctx = reader().with_principal("alice").with_groups(["support"]);
        let mut h = Harness::<MaskFields>::new(SCOPED).unwrap();
        let mut recs = MemRecords::new().with_partition(
            "t",
            0,
            [KafkaRecord::from_value(PERSON), KafkaRecord::tombstone()],
        );
        h.fetch_with(&ctx, &mut recs).unwrap();
        assert!(!recs.is_modified(0));
        assert_eq!(h.counter("unmasked_records"), 2);
        assert_eq!(h.counter("masked_records"), 0);
    }

    #[test]
    fn other_readers_see_masked_values() {
        for ctx in [
            reader(),
            reader().with_principal("mallory"),
            reader()
                .with_principal("alicex")
                .with_groups(["fraudsters"]),
            reader().with_vcluster("auditors"),
            reader().with_principal("support"),
        ] {
            let (got, h) = fetch_as(SCOPED, ctx.clone(), PERSON);
            assert_eq!(
                got.as_deref(),
                Some(r#"{"ssn":null,"email":null}"#),
                "{ctx:?}"
            );
            assert_eq!(h.counter("unmasked_records"), 0);
        }
        // Support sees email (its own rule's exemption) but not ssn.
        let (got, _) = fetch_as(SCOPED, reader().with_groups(["support"]), PERSON);
        assert_eq!(got.as_deref(), Some(r#"{"ssn":null,"email":"a@b"}"#));
    }

    #[test]
    fn one_rule_form_takes_unmasked_for_too() {
        let config =
            r#"{"fields": ["ssn"], "unmaskedFor": {"principals": ["alice"]}, "onFetch": true}"#;
        let (got, _) = fetch_as(config, reader().with_principal("alice"), PERSON);
        assert_eq!(got.as_deref(), Some(PERSON));
        let (got, _) = fetch_as(config, reader().with_principal("bob"), PERSON);
        assert_eq!(got.as_deref(), Some(r#"{"ssn":"****","email":"a@b"}"#));
    }

    #[test]
    fn hooks_follow_on_produce_and_on_fetch() {
        // (config, masked on produce, masked on fetch)
        let cases = [
            (r#"{"fields": ["ssn"]}"#, true, false),
            (r#"{"fields": ["ssn"], "onFetch": true}"#, true, true),
            (
                r#"{"fields": ["ssn"], "onProduce": false, "onFetch": true}"#,
                false,
                true,
            ),
            (r#"{"rules": [{"fields": ["ssn"]}]}"#, false, true),
            (
                r#"{"rules": [{"fields": ["ssn"]}], "onProduce": true}"#,
                true,
                true,
            ),
            (
                r#"{"rules": [{"fields": ["ssn"]}], "onProduce": true, "onFetch": false}"#,
                true,
                false,
            ),
        ];
        for (config, produce, fetch) in cases {
            let mut h = Harness::<MaskFields>::new(config).unwrap();
            let mut recs =
                MemRecords::new().with_partition("t", 0, [KafkaRecord::from_value(PERSON)]);
            h.produce(&mut recs).unwrap();
            assert_eq!(recs.is_modified(0), produce, "produce: {config}");
            let mut recs =
                MemRecords::new().with_partition("t", 0, [KafkaRecord::from_value(PERSON)]);
            h.fetch(&mut recs).unwrap();
            assert_eq!(recs.is_modified(0), fetch, "fetch: {config}");
        }
    }

    #[test]
    fn validation_reports_every_problem_with_its_rule() {
        let err = Harness::<MaskFields>::new(
            r#"{"rules": [
                {"fields": ["ok"]},
                {"fields": ["a..b", ""], "colour": 1},
                {"fieldRegex": "(unclosed"},
                {"fields": ["x"], "kind": "keepLast"},
                {"fields": ["x"], "kind": "hash"},
                {"fields": ["x"], "keepLast": "4"},
                {"fields": ["x"], "kind": "blur", "unmaskedFor": {"users": ["a"]}},
                {"fields": ["x"], "fieldRegex": "x"},
                {},
                "ssn",
                {"fields": ["x"], "kind": "null", "replacement": 1, "maskChar": "ab"}],
              "replacement": "x", "onfetch": true, "unmaskedFor": {"groups": "g"}}"#,
        )
        .err()
        .unwrap();
        let expected = [
            "top level: `replacement` belongs in a rule",
            "top level: unknown field `onfetch` (did you mean `onFetch`?)",
            "top level: `unmaskedFor.groups` must be a list of names",
            "rules[1]: unknown field `colour`",
            "rules[1]: field path `a..b` has an empty segment",
            "rules[1]: field path `` has an empty segment",
            "rules[2]: `fieldRegex` `(unclosed` is not a valid regex",
            "rules[3]: kind `keepLast` needs `keepLast`",
            "rules[4]: kind `hash` needs a `salt`",
            "rules[5]: `keepLast` must be a whole number >= 0, not \"4\"",
            "rules[6]: unknown kind `blur`",
            "rules[6]: `unmaskedFor`: unknown field `users`",
            "rules[7]: give `fields` or `fieldRegex`, not both",
            "rules[8]: missing field `fields` (or `fieldRegex`)",
            "rules[9]: must be an object, not a string",
            "rules[10]: `replacement` only applies to kind `replace`, not `null`",
            "rules[10]: `maskChar` only applies to kind `keepLast`, not `null`",
        ];
        for e in expected {
            assert!(err.contains(e), "missing {e:?} in: {err}");
        }
        assert!(
            err.starts_with("mask-fields: invalid config, 17 problems: "),
            "{err}"
        );
        assert!(!err.contains("rules[0]"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn validation_of_the_top_level() {
        let err = |c: &str| Harness::<MaskFields>::new(c).err().unwrap();
        assert!(err(r#"{"rules": []}"#).contains("`rules` is empty"));
        assert!(err(r#"{"rules": {}}"#).contains("`rules` must be a list"));
        assert!(err(r#"{"fields": ["a"], "onProduce": false}"#).contains("would mask nothing"));
        assert!(err(r#"{"fields": ["a"], "onFetch": "yes"}"#)
            .contains("`onFetch` must be true or false"));
        assert!(err(r#"{"fields": ["a"], "kind": "hash", "salt": ""}"#).contains("`salt` is empty"));
        assert!(err(r#"{"fieldRegex": ""}"#).contains("`fieldRegex` is empty"));
        assert!(err("[1]").contains("not a JSON object"));
        assert!(err("{").contains("not JSON"));
        assert!(err("").contains("missing field `fields`"));
        let e = err(r#"{"fields": ["a"], "unmaskedFor": {"principals": [""]}}"#);
        assert!(
            e.contains("`unmaskedFor.principals` holds non-empty names"),
            "{e}"
        );
        // One problem: no count.
        assert_eq!(
            err(r#"{"fields": ["a"], "kind": "keepLast", "keepLast": -1}"#),
            "mask-fields: invalid config: top level: `keepLast` must be a whole number >= 0, not -1"
        );
    }

    #[test]
    fn a_valid_rules_config_with_every_option_is_accepted() {
        let h = Harness::<MaskFields>::new(
            r#"{"rules": [
                {"fields": ["a"], "kind": "replace", "replacement": [1]},
                {"fieldRegex": "(?i)B", "kind": "keepLast", "keepLast": 2, "maskChar": "x",
                 "unmaskedFor": {"principals": ["p"], "groups": [], "vclusters": ["v"]}},
                {"fields": ["c"], "kind": "hash"},
                {"fields": ["d"], "kind": "null"}],
              "salt": "s", "unmaskedFor": {"groups": ["g"]}, "onProduce": true, "onFetch": true}"#,
        );
        assert!(h.is_ok(), "{:?}", h.err());
    }

    /// The worked example of plugins/README.md, its YAML config as JSON: what it says readers see.
    #[test]
    fn readme_worked_example() {
        let config = r#"{"rules": [{"fields": ["ssn", "customer.ssn"], "kind": "hash"}, {"fields": ["card.number"], "kind": "keepLast", "keepLast": 4}, {"fieldRegex": "(.*\\.)?email", "kind": "null", "unmaskedFor": {"groups": ["fraud", "support"]}}], "salt": "change-me: a long random secret", "unmaskedFor": {"principals": ["auditor"], "groups": ["fraud"]}}"#;
        let stored = r#"{"id":7,"ssn":"123-45-0007","card":{"number":"4111111111111111"},"contact":{"email":"u7@example.com"}}"#;
        let (got, _) = fetch_as(config, reader().with_principal("bob"), stored);
        assert_eq!(
            got.as_deref(),
            Some(
                r#"{"id":7,"ssn":"534ed7719e4f21fb33835748f4b40c6083d4120646408f0f4f029e66cd5b9a69","card":{"number":"************1111"},"contact":{"email":null}}"#
            )
        );
        let (got, _) = fetch_as(config, reader().with_groups(["fraud"]), stored);
        assert_eq!(got.as_deref(), Some(stored));
        let (got, _) = fetch_as(config, reader().with_groups(["support"]), stored);
        assert_eq!(
            got.as_deref(),
            Some(
                r#"{"id":7,"ssn":"534ed7719e4f21fb33835748f4b40c6083d4120646408f0f4f029e66cd5b9a69","card":{"number":"************1111"},"contact":{"email":"u7@example.com"}}"#
            )
        );
        // Stored clear: the rules form does not mask on produce.
        let mut h = Harness::<MaskFields>::new(config).unwrap();
        let mut recs = MemRecords::new().with_partition("t", 0, [KafkaRecord::from_value(stored)]);
        h.produce(&mut recs).unwrap();
        assert!(!recs.is_modified(0));
    }
}
