//! Unit tests on the SDK's native harness (its fake KMS names the key in the ciphertext and
//! authenticates key id, AAD and body like AES-GCM).

use super::*;
use sluice_sdk::testing::{delete_kms_key, set_kms_error, Harness, MemRecords};
use sluice_sdk::KafkaRecord;

fn encrypter(config: &str) -> Harness<Encrypt> {
    Harness::<Encrypt>::new(config).unwrap()
}

fn decrypter() -> Harness<Encrypt> {
    Harness::<Encrypt>::new(r#"{"mode": "decrypt"}"#).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The fake KMS's ciphertext names its key: `FAKEKMS1 | len (u16) | key id | ...`.
fn fake_key_id(ct: &[u8]) -> String {
    let ct = ct.strip_prefix(MAGIC.as_slice()).unwrap_or(ct);
    assert!(ct.starts_with(b"FAKEKMS1"), "{ct:?}");
    let len = u16::from_be_bytes([ct[8], ct[9]]) as usize;
    String::from_utf8(ct[10..10 + len].to_vec()).unwrap()
}

/// Produces `recs` through `enc`, then fetches the result through a decrypt interceptor.
fn round_trip(enc_config: &str, recs: Vec<KafkaRecord>) -> (Vec<KafkaRecord>, Vec<KafkaRecord>) {
    let mut h = encrypter(enc_config);
    let mut produced = MemRecords::new().with_partition("orders", 0, recs);
    h.produce(&mut produced).unwrap();
    assert!(
        produced.rejections().is_empty(),
        "{:?}",
        produced.rejections()
    );
    let stored = produced.records(0);
    let mut d = decrypter();
    let mut fetched = MemRecords::new().with_partition("orders", 0, stored.clone());
    d.fetch(&mut fetched).unwrap();
    assert_eq!(d.counter("decrypt_failures"), 0);
    (stored, fetched.records(0))
}

#[test]
fn whole_values_round_trip_exactly_and_are_not_stored_in_clear() {
    let originals = vec![
        KafkaRecord::from_value("card 4111-1111")
            .with_key("k1")
            .with_header("trace", "t1")
            .with_timestamp(7),
        KafkaRecord::from_value(vec![0u8, 1, 2, 255]),
        KafkaRecord::from_value(""),
        KafkaRecord::tombstone().with_key("k4"),
    ];
    let mut h = encrypter(r#"{"mode": "encrypt", "keyId": "orders-key", "value": true}"#);
    let mut recs = MemRecords::new().with_partition("orders", 0, originals.clone());
    h.produce(&mut recs).unwrap();
    let stored = recs.records(0);
    assert_eq!(stored.len(), 4, "the record count never changes");
    assert!(recs.removed(0).is_empty() && recs.appended(0).is_empty());
    let v = stored[0].value.as_ref().unwrap();
    assert!(v.starts_with(MAGIC));
    assert!(!contains(v, b"4111"));
    assert_eq!(fake_key_id(v), "orders-key");
    assert_eq!(
        stored[0].key.as_deref(),
        Some(&b"k1"[..]),
        "the key is not asked for"
    );
    assert_eq!(stored[0].timestamp, 7);
    assert_eq!(
        stored[0].header(HEADER).and_then(Header::value_str),
        Some(r#"{"v":1,"value":true}"#)
    );
    // Producer headers first, in order, then the manifest.
    assert_eq!(stored[0].headers[0], Header::new("trace", "t1"));
    // A tombstone has nothing to encrypt and stays a tombstone, without a manifest.
    assert_eq!(stored[3], originals[3]);
    assert_eq!(h.counter("records_encrypted"), 3);

    let (_, fetched) = round_trip(
        r#"{"mode": "encrypt", "keyId": "orders-key", "value": true}"#,
        originals.clone(),
    );
    assert_eq!(fetched, originals, "exact bytes, headers and order back");
}

#[test]
fn fields_keep_other_fields_order_and_numbers_and_restore_any_json() {
    let value = r#"{"id":7,"card":{"number":"4111","exp":"12/30"},"items":[{"ssn":"123-45","n":1},{"n":2},{"ssn":{"deep":[1,2.50]}}],"big":123456789012345678901234567890,"z":null}"#;
    let config = r#"{"mode": "encrypt", "keyId": "k", "fields": ["card.number", "items.ssn", "big", "absent.field"]}"#;
    let mut h = encrypter(config);
    let mut recs = MemRecords::new().with_partition("orders", 0, [KafkaRecord::from_value(value)]);
    h.produce(&mut recs).unwrap();
    let stored = recs.records(0);
    let text = String::from_utf8(stored[0].value.clone().unwrap()).unwrap();
    for secret in ["4111", "123-45", "deep", "1234567890"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let doc: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<_> = doc.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["id", "card", "items", "big", "z"]);
    assert_eq!(doc["card"]["exp"], "12/30");
    assert!(doc["card"]["number"]
        .as_str()
        .unwrap()
        .starts_with(FIELD_PREFIX));
    assert_eq!(doc["items"][1], serde_json::json!({"n": 2}));
    assert_eq!(
        stored[0].header(HEADER).and_then(Header::value_str),
        Some(r#"{"v":1,"fields":["card.number","items.ssn","big"]}"#),
        "only the fields present are listed"
    );
    assert_eq!(h.counter("fields_encrypted"), 4);
    assert_eq!(h.counter("records_encrypted"), 1);

    let (_, fetched) = round_trip(config, vec![KafkaRecord::from_value(value)]);
    assert_eq!(fetched, vec![KafkaRecord::from_value(value)]);
}

#[test]
fn values_as_written_come_back_byte_for_byte() {
    // Whitespace, escapes and number spellings a tree rewrite would change.
    let value = "{\n  \"id\" : 7,\n  \"name\": \"Ren\\u00e9e\",\n  \"ssn\":\t\"123-45\" ,\n  \"amount\": 1.50E+2,\n  \"card\": { \"number\" : \"4111\" }\n}\n";
    let config = r#"{"mode": "encrypt", "keyId": "k", "fields": ["ssn", "card.number"]}"#;
    let mut h = encrypter(config);
    let mut recs = MemRecords::new().with_partition("t", 0, [KafkaRecord::from_value(value)]);
    h.produce(&mut recs).unwrap();
    let stored = String::from_utf8(recs.records(0)[0].value.clone().unwrap()).unwrap();
    assert!(!stored.contains("123-45") && !stored.contains("4111"));
    // Everything but the two fields is as produced.
    assert!(stored
        .starts_with("{\n  \"id\" : 7,\n  \"name\": \"Ren\\u00e9e\",\n  \"ssn\":\t\"sluice:v1:"));
    assert!(stored.ends_with("\" }\n}\n") && stored.contains("\"amount\": 1.50E+2,"));

    let (_, fetched) = round_trip(config, vec![KafkaRecord::from_value(value)]);
    assert_eq!(fetched, vec![KafkaRecord::from_value(value)]);
}

#[test]
fn keys_and_headers_are_encrypted_each_occurrence() {
    let original = KafkaRecord::from_value("v")
        .with_key("customer-42")
        .with_header("x-ssn", "123")
        .with_header("other", "o")
        .with_header("x-ssn", "456");
    let mut original = original;
    original.headers.push(Header::null("x-ssn"));
    let config = r#"{"mode": "encrypt", "keyId": "k", "key": true, "headers": ["x-ssn"]}"#;
    let (stored, fetched) = round_trip(config, vec![original.clone()]);
    let s = &stored[0];
    assert_eq!(s.value.as_deref(), Some(&b"v"[..]));
    assert!(s.key.as_ref().unwrap().starts_with(MAGIC));
    assert!(!contains(s.key.as_ref().unwrap(), b"customer-42"));
    let names: Vec<_> = s.headers.iter().map(|h| h.key.as_str()).collect();
    assert_eq!(names, ["x-ssn", "other", "x-ssn", "x-ssn", HEADER]);
    assert!(s.headers[0].value.as_ref().unwrap().starts_with(MAGIC));
    assert_eq!(s.headers[1], Header::new("other", "o"));
    assert!(s.headers[2].value.as_ref().unwrap().starts_with(MAGIC));
    assert_eq!(s.headers[3].value, None, "a null header stays null");
    assert_eq!(
        s.header(HEADER).and_then(Header::value_str),
        Some(r#"{"v":1,"key":true,"headers":["x-ssn"]}"#)
    );
    assert_eq!(fetched, vec![original]);
}

#[test]
fn key_ids_come_from_the_template() {
    let config = r#"{"mode": "encrypt", "value": true,
        "keyId": "t-${vcluster}-${principal}-${topic}-${record.key}-${value.tenant.id}"}"#;
    let mut h = encrypter(config);
    h.set_context(
        Context::new(0, 9)
            .with_vcluster("acme")
            .with_principal("alice"),
    );
    let mut recs = MemRecords::new().with_partition(
        "orders",
        0,
        [KafkaRecord::from_value(r#"{"tenant": {"id": 12.0}}"#).with_key("c9")],
    );
    h.produce(&mut recs).unwrap();
    let v = recs.records(0)[0].value.clone().unwrap();
    assert_eq!(fake_key_id(&v), "t-acme-alice-orders-c9-12.0");
}

#[test]
fn an_unresolved_template_rejects_only_its_partition_and_nothing_goes_in_clear() {
    let mut h = encrypter(r#"{"mode": "encrypt", "value": true, "keyId": "c-${record.key}"}"#);
    let mut recs = MemRecords::new()
        .with_partition(
            "orders",
            0,
            [
                KafkaRecord::from_value("secret-1").with_key("a"),
                KafkaRecord::from_value("secret-2"), // no key
            ],
        )
        .with_partition("orders", 1, [KafkaRecord::from_value("s3").with_key("b")]);
    h.produce(&mut recs).unwrap();
    let err = recs.rejected(0).unwrap();
    assert_eq!(err.code, error_code::POLICY_VIOLATION);
    assert!(err.message.contains("${record.key}"), "{}", err.message);
    assert!(
        err.message.contains("orders-0 failed: record 1:"),
        "{}",
        err.message
    );
    // Record 0 was sealed in place before record 1 failed: harmless, as a rejected partition
    // never reaches the broker (the host drops it whole and answers the client's retry).
    assert!(recs.rejected(1).is_none());
    assert!(recs.records(1)[0]
        .value
        .as_ref()
        .unwrap()
        .starts_with(MAGIC));
    assert_eq!(h.counter("encrypt_failures"), 1);
    assert_eq!(h.counter("records_encrypted"), 1);

    // No vcluster or principal on the connection: unresolved as well.
    for template in ["${vcluster}", "${principal}", "${value.tenant}"] {
        let mut h = encrypter(&format!(
            r#"{{"mode": "encrypt", "value": true, "keyId": "{template}"}}"#
        ));
        let mut recs = MemRecords::new().with_partition(
            "t",
            0,
            [KafkaRecord::from_value(r#"{"tenant": {"nested": 1}}"#)],
        );
        h.produce(&mut recs).unwrap();
        assert_eq!(recs.rejected(0).unwrap().code, 44, "{template}");
    }
}

#[test]
fn a_kms_failure_rejects_with_a_retriable_error() {
    let mut h = encrypter(r#"{"mode": "encrypt", "keyId": "k", "fields": ["ssn"]}"#);
    set_kms_error(Some("KMS unreachable"));
    let mut recs =
        MemRecords::new().with_partition("t", 0, [KafkaRecord::from_value(r#"{"ssn": "1"}"#)]);
    h.produce(&mut recs).unwrap();
    let err = recs.rejected(0).unwrap();
    assert_eq!(err.code, 56, "KAFKA_STORAGE_ERROR: clients retry");
    assert!(err.message.contains("KMS unreachable"), "{}", err.message);
    assert!(!recs.is_modified(0));
    assert_eq!(h.counter("encrypt_failures"), 1);
    assert!(h
        .logs()
        .iter()
        .any(|l| l.level == sluice_sdk::Level::Warn && l.message.contains("KMS unreachable")));
}

#[test]
fn values_that_are_not_json_objects_are_rejected_unless_passed() {
    let values = ["plain text", "[1,2]", r#"{"ssn": "1""#];
    for v in values {
        let mut h = encrypter(r#"{"mode": "encrypt", "keyId": "k", "fields": ["ssn"]}"#);
        let mut recs = MemRecords::new().with_partition("t", 0, [KafkaRecord::from_value(v)]);
        h.produce(&mut recs).unwrap();
        assert_eq!(recs.rejected(0).unwrap().code, 44, "{v}");
    }
    let mut h =
        encrypter(r#"{"mode": "encrypt", "keyId": "k", "fields": ["ssn"], "nonJson": "pass"}"#);
    let mut recs = MemRecords::new().with_partition(
        "t",
        0,
        values.iter().map(|v| KafkaRecord::from_value(*v)),
    );
    h.produce(&mut recs).unwrap();
    assert!(recs.rejected(0).is_none());
    assert!(!recs.is_modified(0));
    // A tombstone has no value to look at.
    let mut h = encrypter(r#"{"mode": "encrypt", "keyId": "k", "fields": ["ssn"]}"#);
    let mut recs = MemRecords::new().with_partition("t", 0, [KafkaRecord::tombstone()]);
    h.produce(&mut recs).unwrap();
    assert!(recs.rejected(0).is_none());
}

#[test]
fn require_fields_rejects_a_record_without_one() {
    let config =
        r#"{"mode": "encrypt", "keyId": "k", "fields": ["ssn", "card"], "requireFields": true}"#;
    let mut h = encrypter(config);
    let mut recs = MemRecords::new().with_partition(
        "t",
        0,
        [
            KafkaRecord::from_value(r#"{"ssn": 1, "card": 2}"#),
            KafkaRecord::from_value(r#"{"ssn": 1}"#),
        ],
    );
    h.produce(&mut recs).unwrap();
    let err = recs.rejected(0).unwrap();
    assert!(err.message.contains("no field `card`"), "{}", err.message);
}

#[test]
fn topics_are_exact_names_or_patterns_for_both_modes() {
    let config =
        r#"{"mode": "encrypt", "keyId": "k", "value": true, "topics": ["orders", "pay.*"]}"#;
    let mut h = encrypter(config);
    let mut recs = MemRecords::new()
        .with_partition("orders", 0, [KafkaRecord::from_value("a")])
        .with_partition("payments", 0, [KafkaRecord::from_value("b")])
        .with_partition("orders2", 0, [KafkaRecord::from_value("c")])
        .with_partition("xpay", 0, [KafkaRecord::from_value("d")]);
    h.produce(&mut recs).unwrap();
    assert!(recs.is_modified(0) && recs.is_modified(1));
    assert!(!recs.is_modified(2) && !recs.is_modified(3));
    // A decrypt interceptor limited to `orders` leaves `payments` as stored.
    let stored = [recs.records(0), recs.records(1)];
    let mut d = Harness::<Encrypt>::new(r#"{"mode": "decrypt", "topics": ["orders"]}"#).unwrap();
    let mut fetched = MemRecords::new()
        .with_partition("orders", 0, stored[0].clone())
        .with_partition("payments", 0, stored[1].clone());
    d.fetch(&mut fetched).unwrap();
    assert_eq!(fetched.values_utf8(0), vec![Some("a".to_string())]);
    assert!(!fetched.is_modified(1));
}

#[test]
fn a_clients_own_manifest_header_is_dropped() {
    let mut h = encrypter(r#"{"mode": "encrypt", "keyId": "k", "fields": ["ssn"]}"#);
    let forged = KafkaRecord::from_value(r#"{"name": "x"}"#)
        .with_header(HEADER, r#"{"v":1,"value":true}"#)
        .with_header("h", "1");
    let mut recs = MemRecords::new().with_partition("t", 0, [forged]);
    h.produce(&mut recs).unwrap();
    assert_eq!(recs.records(0)[0].headers, vec![Header::new("h", "1")]);
    assert_eq!(h.counter("records_encrypted"), 0);
}

#[test]
fn undecryptable_records_are_left_as_stored_and_counted() {
    let config = r#"{"mode": "encrypt", "keyId": "${record.key}", "value": true, "key": true}"#;
    let mut h = encrypter(config);
    let mut recs = MemRecords::new().with_partition(
        "t",
        0,
        ["a", "b", "c", "d"].map(|k| KafkaRecord::from_value(format!("secret-{k}")).with_key(k)),
    );
    h.produce(&mut recs).unwrap();
    let mut stored = recs.records(0);
    // a: tampered body; b: its key id deleted (crypto-shredding); c: value and key swapped
    // (the AAD names the place); d: intact.
    let v = stored[0].value.as_mut().unwrap();
    *v.last_mut().unwrap() ^= 0x01;
    let c = &mut stored[2];
    std::mem::swap(&mut c.key, &mut c.value);
    let untouched = stored.clone();

    let mut d = decrypter();
    delete_kms_key("b");
    let mut fetched = MemRecords::new().with_partition("t", 0, stored);
    d.fetch(&mut fetched).unwrap();
    let got = fetched.records(0);
    assert_eq!(got[..3], untouched[..3], "left exactly as stored");
    assert_eq!(got[3].value.as_deref(), Some(&b"secret-d"[..]));
    assert_eq!(got[3].key.as_deref(), Some(&b"d"[..]));
    assert_eq!(d.counter("decrypt_failures"), 3);
    assert_eq!(d.counter("records_decrypted"), 1);

    // KMS down: everything as stored, counted, no error for the consumer.
    let mut d = decrypter();
    set_kms_error(Some("KMS unreachable"));
    let mut fetched = MemRecords::new().with_partition("t", 0, untouched.clone());
    assert!(d.fetch(&mut fetched).is_ok());
    assert!(!fetched.is_modified(0));
    assert_eq!(d.counter("decrypt_failures"), 4);
}

#[test]
fn a_field_ciphertext_moved_to_another_field_does_not_decrypt() {
    let config = r#"{"mode": "encrypt", "keyId": "k", "fields": ["a", "b"]}"#;
    let mut h = encrypter(config);
    let mut recs = MemRecords::new().with_partition(
        "t",
        0,
        [KafkaRecord::from_value(r#"{"a": "A", "b": "B"}"#)],
    );
    h.produce(&mut recs).unwrap();
    let mut stored = recs.records(0);
    let mut doc: Value = serde_json::from_slice(stored[0].value.as_ref().unwrap()).unwrap();
    doc["b"] = doc["a"].clone();
    stored[0].value = Some(serde_json::to_vec(&doc).unwrap());
    let mut d = decrypter();
    let mut fetched = MemRecords::new().with_partition("t", 0, stored.clone());
    d.fetch(&mut fetched).unwrap();
    assert_eq!(fetched.records(0), stored, "no partial plaintext either");
    assert_eq!(d.counter("decrypt_failures"), 1);
}

#[test]
fn records_never_encrypted_pass_decrypt_untouched() {
    let mut d = decrypter();
    let mut fetched = MemRecords::new().with_partition(
        "t",
        0,
        [
            KafkaRecord::from_value("plain").with_header("h", "v"),
            KafkaRecord::tombstone(),
        ],
    );
    d.fetch(&mut fetched).unwrap();
    assert!(!fetched.is_modified(0));
    assert_eq!(d.counter("decrypt_failures"), 0);
    // And each mode's other hook does nothing.
    let mut e = encrypter(r#"{"mode": "encrypt", "keyId": "k", "value": true}"#);
    let mut recs = MemRecords::new().with_partition("t", 0, [KafkaRecord::from_value("x")]);
    e.fetch(&mut recs).unwrap();
    assert!(!recs.is_modified(0));
    let mut d = decrypter();
    d.produce(&mut recs).unwrap();
    assert!(!recs.is_modified(0));
}

#[test]
fn every_config_problem_is_reported_at_once() {
    let err = |c: &str| Harness::<Encrypt>::new(c).err().unwrap();
    let e = err(
        r#"{"mode": "encrypt", "keyId": "x-${tenant}-${value.a..b}", "fields": ["a..b", 3],
            "topics": ["ok", "bad(["], "valu": true, "key": "yes", "nonJson": "drop"}"#,
    );
    for needle in [
        "unknown field `valu`",
        "`${tenant}` is unknown",
        "`${value.a..b}`: path `a..b` has an empty segment",
        "`fields`: path `a..b` has an empty segment",
        "`fields`: 3 is not a string",
        "`bad([` is neither a topic name nor a valid regular expression",
        "`key` must be true or false",
        "`nonJson` must be \"reject\" or \"pass\"",
    ] {
        assert!(e.contains(needle), "`{needle}` not in: {e}");
    }
    assert!(e.starts_with("encrypt: 8 problems in the config: "), "{e}");

    assert!(err("{}").contains("`mode` is missing"));
    assert!(err(r#"{"mode": "both"}"#).contains("`mode` must be"));
    let e = err(r#"{"mode": "encrypt"}"#);
    assert!(
        e.contains("`keyId` is missing") && e.contains("nothing to encrypt"),
        "{e}"
    );
    assert!(
        err(r#"{"mode": "encrypt", "keyId": "k", "value": true, "fields": ["a"]}"#)
            .contains("exclude each other")
    );
    let e =
        err(r#"{"mode": "encrypt", "keyId": "k", "fields": ["card", "a", "card.number", "a"]}"#);
    assert!(
        e.contains("`card.number` and `card` overlap") && e.contains("`a` and `a` overlap"),
        "{e}"
    );
    assert!(e.starts_with("encrypt: 2 problems"), "{e}");
    assert!(Harness::<Encrypt>::new(
        r#"{"mode": "encrypt", "keyId": "k", "fields": ["card.number", "card.name", "cardx"]}"#
    )
    .is_ok());
    assert!(
        err(r#"{"mode": "encrypt", "keyId": "k", "value": true, "requireFields": true}"#)
            .contains("`requireFields` applies to `fields`")
    );
    assert!(
        err(r#"{"mode": "encrypt", "keyId": "k-${topic", "value": true}"#)
            .contains("without a closing")
    );
    assert!(err(r#"{"mode": "encrypt", "keyId": "", "value": true}"#).contains("`keyId` is empty"));
    assert!(
        err(r#"{"mode": "encrypt", "keyId": "k", "headers": ["sluice-encrypted"]}"#)
            .contains("plugin's own header")
    );
    assert!(
        err(r#"{"mode": "encrypt", "keyId": "k", "value": true, "topics": []}"#)
            .contains("`topics` is empty")
    );
    let e = err(r#"{"mode": "decrypt", "keyId": "k", "fields": ["a"]}"#);
    assert!(
        e.contains("`keyId` is for mode \"encrypt\"") && e.contains("`fields` is for mode"),
        "{e}"
    );
    assert!(err("[1]").contains("must be a JSON object"));
    assert!(err("{").contains("not JSON"));
}

#[test]
fn whole_partitions_seal_and_open_in_one_call_and_mixed_records_still_decrypt() {
    // A literal key id and the whole value only: the partition path.
    let mut h = encrypter(r#"{"mode": "encrypt", "keyId": "orders", "value": true}"#);
    let forged = KafkaRecord::from_value("plain-3").with_header(HEADER, r#"{"v":1,"key":true}"#);
    let mut recs = MemRecords::new().with_partition(
        "t",
        0,
        [
            KafkaRecord::from_value("plain-0"),
            KafkaRecord::tombstone().with_key("k1"),
            KafkaRecord::from_value("plain-2"),
            forged,
        ],
    );
    h.produce(&mut recs).unwrap();
    assert_eq!(h.counter("records_encrypted"), 3);
    let mut stored = recs.records(0);
    for r in [0, 2, 3] {
        let rec = &stored[r];
        assert!(rec.value.as_ref().unwrap().starts_with(MAGIC));
        let manifests: Vec<_> = rec.headers.iter().filter(|h| h.key == HEADER).collect();
        assert_eq!(manifests.len(), 1, "one manifest, the forged one gone");
        assert_eq!(
            manifests[0].value.as_deref(),
            Some(&br#"{"v":1,"value":true}"#[..])
        );
    }
    assert!(stored[1].value.is_none() && stored[1].headers.is_empty());

    // Same partition on fetch: record 2 tampered, plus a record whose key was sealed by a
    // per-record configuration (another manifest).
    *stored[2].value.as_mut().unwrap().last_mut().unwrap() ^= 1;
    let tampered = stored[2].clone();
    let mut k = encrypter(r#"{"mode": "encrypt", "keyId": "${record.key}", "key": true}"#);
    let mut other = MemRecords::new().with_partition(
        "t",
        0,
        [KafkaRecord::from_value("v").with_key("customer-9")],
    );
    k.produce(&mut other).unwrap();
    stored.push(other.records(0).remove(0));

    let mut d = decrypter();
    let mut fetched = MemRecords::new().with_partition("t", 0, stored);
    d.fetch(&mut fetched).unwrap();
    let got = fetched.records(0);
    assert_eq!(got[0].value.as_deref(), Some(&b"plain-0"[..]));
    assert!(got[0].headers.is_empty());
    assert_eq!(got[2], tampered, "left exactly as stored");
    assert_eq!(got[3].value.as_deref(), Some(&b"plain-3"[..]));
    assert_eq!(got[4].key.as_deref(), Some(&b"customer-9"[..]));
    assert!(got[4].headers.is_empty());
    assert_eq!(d.counter("records_decrypted"), 3);
    assert_eq!(d.counter("decrypt_failures"), 1);
}
