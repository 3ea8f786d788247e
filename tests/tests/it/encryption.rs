//! The `encrypt` plugin end to end: records produced through the gateway by librdkafka and
//! kafka-python are stored encrypted (read back directly from the broker), readers in the
//! decrypt interceptor's scope get the exact original bytes, other readers the ciphertext;
//! idempotent and transactional producers and compressed batches keep working, and a record
//! that cannot be encrypted is refused, never stored in clear.

use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message};
use serde_json::json;
use sluice_tests::*;
use std::time::Duration;

/// The producer, the reader allowed to see plaintext, and another reader.
const WRITER: (&str, &str) = ("writer", "writer-secret-1");
const READER: (&str, &str) = ("reader", "reader-secret-1");
const OTHER: (&str, &str) = ("other", "other-secret-1");
/// The prefix of an encrypted value, key or header (plugins/README.md).
const MAGIC: &[u8] = b"\xC5SL\x01";

/// A record as read: key, value, headers.
#[derive(Debug, Clone, PartialEq)]
struct Got {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads partition 0 of `topic` from the beginning until `want` records arrived, as `config`
/// says (directly from the broker, or through the gateway as some principal).
fn read(config: ClientConfig, topic: &str, want: usize) -> Vec<Got> {
    read_partition0(config, topic, want)
        .iter()
        .map(|m| Got {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_string(), x.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

async fn read_direct(broker: &Tansu, topic: &str, want: usize) -> Vec<Got> {
    let config = client_config(&broker.bootstrap());
    tokio::task::block_in_place(|| read(config, topic, want))
}

async fn read_as(gw: &sluice::Gateway, who: (&str, &str), topic: &str, want: usize) -> Vec<Got> {
    let config = as_user(gw, who);
    tokio::task::block_in_place(|| read(config, topic, want))
}

/// librdkafka settings for the gateway, authenticated as `who` with SASL/PLAIN.
fn as_user(gw: &sluice::Gateway, (user, password): (&str, &str)) -> ClientConfig {
    secure_client_config(
        &gw.kafka_addr().to_string(),
        &ClientSecurity::sasl(false, "PLAIN", user, password),
    )
}

fn create_topic(broker: &Tansu, topic: &str) {
    let status = std::process::Command::new(tansu_path())
        .args([
            "topic",
            "create",
            "--broker",
            &format!("tcp://{}", broker.bootstrap()),
        ])
        .args(["--partitions", "1", topic])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A gateway whose clients authenticate (so the decrypt interceptor can be scoped to one
/// user), with the three accounts and the `encrypt` plugin uploaded.
async fn gateway(broker: &Tansu) -> sluice::Gateway {
    prepared(sluice_tests::isolation::config(&broker.bootstrap())).await
}

/// A gateway started with `config`, with the three accounts and the `encrypt` plugin.
async fn prepared(config: sluice::config::Config) -> sluice::Gateway {
    let gw = start_gateway_with(config).await.unwrap();
    for (user, password) in [WRITER, READER, OTHER] {
        put_service_account(gw.admin_addr(), user, password, &[]).await;
    }
    upload_plugin(gw.admin_addr(), "encrypt", "encrypt").await;
    gw
}

/// The JSON value of record `i`: compact, so that decryption gives back the same bytes.
fn order(i: usize) -> String {
    format!(
        r#"{{"id":{i},"ssn":"123-45-{i:04}","card":{{"number":"4111-0000-{i:04}","exp":"12/30"}},"amount":12.50,"items":[{{"sku":"a","ssn":"987-{i:04}"}},{{"sku":"b"}}]}}"#
    )
}

/// The records the tests produce: JSON value, key, and a sensitive header among others.
fn originals(n: usize) -> Vec<Got> {
    (0..n)
        .map(|i| Got {
            key: Some(format!("k{i:05}").into_bytes()),
            value: Some(order(i).into_bytes()),
            headers: vec![
                ("trace".into(), Some(format!("t{i}").into_bytes())),
                ("x-ssn".into(), Some(format!("123-45-{i:04}").into_bytes())),
            ],
        })
        .collect()
}

async fn produce_all(producer: &FutureProducer, topic: &str, records: &[Got]) {
    let mut futures = Vec::new();
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let mut rec = FutureRecord::to(topic).partition(0).headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(k);
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v);
        }
        futures.push(producer.send_result(rec).map_err(|(e, _)| e).unwrap());
    }
    for f in futures {
        f.await.unwrap().unwrap();
    }
}

/// What the broker holds must carry none of the protected plaintext.
fn assert_no_plaintext(stored: &[Got], originals: &[Got]) {
    for (s, o) in stored.iter().zip(originals) {
        let value = s.value.as_deref().unwrap();
        for secret in [&b"123-45-"[..], b"4111-0000-", b"987-"] {
            assert!(
                !contains(value, secret),
                "plaintext in {}",
                String::from_utf8_lossy(value)
            );
        }
        let x_ssn = s.header("x-ssn").unwrap();
        assert!(x_ssn.starts_with(MAGIC), "{x_ssn:?}");
        assert!(!contains(x_ssn, b"123-45-"));
        assert!(s.header("sluice-encrypted").is_some());
        // What was not asked for is as produced.
        assert_eq!(s.key, o.key);
        assert_eq!(s.header("trace"), o.header("trace"));
    }
}

/// Field encryption with idempotent producers and two codecs, the decrypt interceptor scoped to
/// one user, the counters; then a record that cannot be encrypted is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_and_headers_are_stored_encrypted_and_only_the_scoped_reader_sees_plaintext() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let gw = gateway(&broker).await;
    let admin = gw.admin_addr();
    install(
        admin,
        "enc",
        json!({"plugin": "encrypt", "priority": 10, "config": {
            "mode": "encrypt", "topics": ["orders-.*"], "keyId": "orders-${topic}",
            "fields": ["ssn", "card.number", "items.ssn"], "headers": ["x-ssn"]}}),
    )
    .await;
    install(
        admin,
        "dec",
        json!({"plugin": "encrypt", "priority": 10, "scope": {"username": READER.0},
               "config": {"mode": "decrypt"}}),
    )
    .await;
    let originals = originals(200);
    for codec in ["lz4", "zstd"] {
        let topic = format!("orders-{codec}");
        create_topic(&broker, &topic);
        let producer: FutureProducer = as_user(&gw, WRITER)
            .set("enable.idempotence", "true")
            .set("compression.type", codec)
            .set("linger.ms", "20")
            .create()
            .unwrap();
        produce_all(&producer, &topic, &originals).await;
        let stored = read_direct(&broker, &topic, originals.len()).await;
        assert_no_plaintext(&stored, &originals);
        // Other fields and the key order are kept.
        let doc: serde_json::Value =
            serde_json::from_slice(stored[7].value.as_deref().unwrap()).unwrap();
        assert_eq!(doc["id"], 7);
        assert_eq!(doc["card"]["exp"], "12/30");
        assert_eq!(doc["items"][1], json!({"sku": "b"}));
        assert!(doc["ssn"].as_str().unwrap().starts_with("sluice:v1:"));
        // Key order as produced (read in the raw text: this crate's serde_json sorts keys).
        let text = String::from_utf8_lossy(stored[7].value.as_deref().unwrap()).into_owned();
        let at: Vec<usize> = [
            "\"id\":",
            "\"ssn\":",
            "\"card\":",
            "\"amount\":12.50",
            "\"items\":",
        ]
        .iter()
        .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} not in {text}")))
        .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{codec}: {text}");

        let plain = read_as(&gw, READER, &topic, originals.len()).await;
        assert_eq!(
            plain, originals,
            "{codec}: the reader gets the exact original records"
        );
        let seen = read_as(&gw, OTHER, &topic, originals.len()).await;
        assert_eq!(seen, stored, "{codec}: another reader sees what is stored");
    }
    let counter = |interceptor: &str, name: &str| {
        metric(
            &gw,
            &format!(
                "sluice_plugin_counter_total{{interceptor=\"{interceptor}\",name=\"{name}\"}}"
            ),
        )
    };
    assert_eq!(
        counter("enc", "records_encrypted"),
        400,
        "{}",
        gw.metrics_text()
    );
    assert_eq!(counter("enc", "fields_encrypted"), 400 * 3);
    assert_eq!(counter("dec", "records_decrypted"), 400);
    assert_eq!(counter("dec", "decrypt_failures"), 0);

    // A value that is not JSON where fields are asked: refused with POLICY_VIOLATION, not
    // stored; the partition takes the next good record.
    let topic = "orders-strict";
    create_topic(&broker, topic);
    let producer: FutureProducer = as_user(&gw, WRITER)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let refused = producer
        .send(
            FutureRecord::to(topic)
                .partition(0)
                .key("bad")
                .payload("ssn 123-45-6789 in clear"),
            Duration::from_secs(10),
        )
        .await;
    let Err((err, _)) = refused else {
        panic!("a record that cannot be encrypted was accepted");
    };
    assert_eq!(
        err.rdkafka_error_code(),
        Some(RDKafkaErrorCode::PolicyViolation),
        "{err}"
    );
    produce_all(&producer, topic, &originals[..1]).await;
    let stored = read_direct(&broker, topic, 1).await;
    assert_no_plaintext(&stored, &originals[..1]);
    assert_eq!(counter("enc", "encrypt_failures"), 1);
    gw.shutdown().await;
}

/// Whole values and keys with a transactional producer (librdkafka), and kafka-python through
/// the same interceptors: stored encrypted, read back exactly by the scoped reader; a tampered
/// record is returned as stored without holding up the records after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_values_through_transactions_and_kafka_python() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let gw = gateway(&broker).await;
    let admin = gw.admin_addr();
    install(
        admin,
        "enc",
        json!({"plugin": "encrypt", "config": {
            "mode": "encrypt", "topics": ["secrets", "py-secrets"], "keyId": "secrets-${principal}",
            "value": true, "key": true}}),
    )
    .await;
    install(
        admin,
        "dec",
        json!({"plugin": "encrypt", "scope": {"username": READER.0},
               "config": {"mode": "decrypt", "topics": ["secrets", "py-secrets"]}}),
    )
    .await;

    // librdkafka, transactional.
    create_topic(&broker, "secrets");
    let producer: FutureProducer = as_user(&gw, WRITER)
        .set("transactional.id", "encrypt-tx")
        .create()
        .unwrap();
    tokio::task::block_in_place(|| producer.init_transactions(Duration::from_secs(30))).unwrap();
    producer.begin_transaction().unwrap();
    let originals: Vec<Got> = (0..50)
        .map(|i| Got {
            key: Some(format!("customer-{i}").into_bytes()),
            value: Some(format!("card number 4111-{i:04}").into_bytes()),
            headers: vec![],
        })
        .collect();
    produce_all(&producer, "secrets", &originals).await;
    tokio::task::block_in_place(|| producer.commit_transaction(Duration::from_secs(30))).unwrap();
    drop(producer);
    let stored = read_direct(&broker, "secrets", 50).await;
    for s in &stored {
        let (key, value) = (s.key.as_deref().unwrap(), s.value.as_deref().unwrap());
        assert!(key.starts_with(MAGIC) && value.starts_with(MAGIC));
        assert!(!contains(value, b"4111-") && !contains(key, b"customer-"));
        // The ciphertext names its key id (the writer's), and nothing else in clear.
        assert!(contains(value, b"secrets-writer"));
    }
    assert_eq!(read_as(&gw, READER, "secrets", 50).await, originals);
    assert_eq!(read_as(&gw, OTHER, "secrets", 50).await, stored);

    // Written to the broker behind the gateway's back: a tampered copy of record 0 and an
    // intact copy of record 1. The reader gets the first as stored (never garbage, counted)
    // and goes on to decrypt the second.
    let mut tampered = stored[0].clone();
    *tampered.value.as_mut().unwrap().last_mut().unwrap() ^= 0x01;
    let direct: FutureProducer = client_config(&broker.bootstrap()).create().unwrap();
    produce_all(&direct, "secrets", &[tampered.clone(), stored[1].clone()]).await;
    let failures = || {
        metric(
            &gw,
            "sluice_plugin_counter_total{interceptor=\"dec\",name=\"decrypt_failures\"}",
        )
    };
    assert_eq!(failures(), 0);
    let got = read_as(&gw, READER, "secrets", 52).await;
    assert_eq!(got[..50], originals[..]);
    assert_eq!(got[50], tampered);
    assert_eq!(got[51], originals[1]);
    assert!(failures() >= 1, "{}", gw.metrics_text());

    // kafka-python: produce (lz4) and consume through the gateway as the reader.
    let bootstrap = gw.kafka_addr().to_string();
    let limit = Duration::from_secs(90);
    let sasl = |(user, password): (&'static str, &'static str)| Some(("plain", user, password));
    create_topic(&broker, "py-secrets");
    let produced = kafka_python(
        &bootstrap,
        sasl(WRITER),
        &[("KAFKA_COMPRESSION", "lz4".to_string())],
        &["produce", "py-secrets", "40", "pysecret"],
        limit,
    )
    .await
    .unwrap();
    assert_eq!(produced["offsets"].as_array().unwrap().len(), 40);
    let stored = read_direct(&broker, "py-secrets", 40).await;
    for s in &stored {
        let value = s.value.as_deref().unwrap();
        assert!(value.starts_with(MAGIC) && !contains(value, b"pysecret"));
    }
    let consumed = kafka_python(
        &bootstrap,
        sasl(READER),
        &[],
        &["consume", "py-secrets", "py-reader", "40"],
        limit,
    )
    .await
    .unwrap();
    let records = consumed["records"].as_array().unwrap();
    assert_eq!(records.len(), 40);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["key"], format!("pysecret-{i}"));
        assert_eq!(r["value"], format!("pysecret:{i}"));
    }
    gw.shutdown().await;
}

/// Installs `encrypt` sealing whole values under `key_id` (a template) on topic `topic`, and
/// the decrypt side for [`READER`].
async fn install_value_encryption(gw: &sluice::Gateway, topic: &str, key_id: &str) {
    let admin = gw.admin_addr();
    install(
        admin,
        "enc",
        json!({"plugin": "encrypt", "config": {
            "mode": "encrypt", "topics": [topic], "keyId": key_id, "value": true}}),
    )
    .await;
    install(
        admin,
        "dec",
        json!({"plugin": "encrypt", "scope": {"username": READER.0},
               "config": {"mode": "decrypt", "topics": [topic]}}),
    )
    .await;
}

/// Produces one record to partition 0 of `topic` through `gw` as [`WRITER`], with a fresh
/// producer that gives up after 4 s (a record the gateway keeps refusing fails in time).
async fn send_one(
    gw: &sluice::Gateway,
    topic: &str,
    key: &str,
    payload: &str,
) -> Result<
    rdkafka::producer::future_producer::Delivery,
    (rdkafka::error::KafkaError, rdkafka::message::OwnedMessage),
> {
    let producer: FutureProducer = as_user(gw, WRITER)
        .set("message.timeout.ms", "4000")
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(topic)
                .partition(0)
                .key(key)
                .payload(payload),
            Duration::from_secs(10),
        )
        .await
}

/// Records keyed `keys[i % keys.len()]` with values `"secret value i"`.
fn keyed(n: usize, keys: &[&str]) -> Vec<Got> {
    (0..n)
        .map(|i| Got {
            key: Some(keys[i % keys.len()].as_bytes().to_vec()),
            value: Some(format!("secret value {i}").into_bytes()),
            headers: Vec::new(),
        })
        .collect()
}

/// Splits what a reader got into records shown in clear (equal to the original) and records
/// returned as stored (ciphertext), checking each is one or the other.
fn clear_and_sealed(got: &[Got], originals: &[Got]) -> (Vec<usize>, Vec<usize>) {
    let (mut clear, mut sealed) = (Vec::new(), Vec::new());
    for (i, (g, o)) in got.iter().zip(originals).enumerate() {
        if g.value == o.value {
            clear.push(i);
        } else {
            let v = g.value.as_deref().unwrap();
            assert!(
                v.starts_with(MAGIC),
                "record {i} neither clear nor as stored: {v:?}"
            );
            assert!(!contains(v, b"secret value"));
            sealed.push(i);
        }
    }
    (clear, sealed)
}

/// Crypto-shredding end to end: one key id per customer; deleting one customer's key makes
/// that customer's records unreadable for every reader at once, while the other customer's
/// still decrypt, and a restarted gateway (same state directory) agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_key_shreds_its_records_for_everyone_and_across_restarts() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let config = sluice_tests::isolation::config(&broker.bootstrap());
    let state_dir = config.state_dir.clone();
    let gw = prepared(config).await;
    install_value_encryption(&gw, "customers", "customer-${record.key}").await;
    create_topic(&broker, "customers");
    let originals = keyed(20, &["c1", "c2"]);
    let producer: FutureProducer = as_user(&gw, WRITER).create().unwrap();
    produce_all(&producer, "customers", &originals).await;
    drop(producer);

    let stored = read_direct(&broker, "customers", 20).await;
    let (clear, _) = clear_and_sealed(&stored, &originals);
    assert!(clear.is_empty(), "the broker holds plaintext of {clear:?}");
    let got = read_as(&gw, READER, "customers", 20).await;
    assert_eq!(
        got, originals,
        "the allowed reader sees plaintext before the shred"
    );
    let keys = http(gw.admin_addr(), "GET", "/api/v1/kms/keys", &[], b"")
        .await
        .1;
    let ids: Vec<&str> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["customer-c1", "customer-c2"]);

    let (status, report) = http(
        gw.admin_addr(),
        "DELETE",
        "/api/v1/kms/keys/customer-c1",
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert!(report["dataKeys"].as_u64().unwrap() >= 1, "{report}");
    let c1: Vec<usize> = (0..20).step_by(2).collect();
    let c2: Vec<usize> = (1..20).step_by(2).collect();
    let got = read_as(&gw, READER, "customers", 20).await;
    assert_eq!(
        clear_and_sealed(&got, &originals),
        (c2.clone(), c1.clone()),
        "at once: c1 unreadable, c2 still decrypts"
    );
    let other = read_as(&gw, OTHER, "customers", 20).await;
    assert_eq!(clear_and_sealed(&other, &originals).0, Vec::<usize>::new());
    // A new record for the shredded customer is refused, never stored in clear.
    let sent = send_one(&gw, "customers", "c1", "after").await;
    assert!(sent.is_err(), "a record under a deleted key was accepted");
    gw.shutdown().await;

    let mut config = sluice_tests::isolation::config(&broker.bootstrap());
    config.state_dir = state_dir;
    let gw = start_gateway_with(config).await.unwrap();
    let got = read_as(&gw, READER, "customers", 20).await;
    assert_eq!(
        clear_and_sealed(&got, &originals),
        (c2, c1),
        "after a restart: the same"
    );
    gw.shutdown().await;
}

/// The whole flow on AWS KMS (moto, checking signatures): data keys come from
/// GenerateDataKey and are unwrapped by Decrypt; with the KMS gone, a record needing a new
/// data key is refused (never stored in clear) and a gateway that has no data key cached
/// returns records as stored, counted, without blocking the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kms_end_to_end_and_failing_closed_when_it_is_gone() {
    capture_logs();
    let (moto, user, keys) =
        tokio::task::block_in_place(|| sluice_tests::moto::Moto::start_authenticated(2)).unwrap();
    let broker = Tansu::start().await.unwrap();
    let mut config = sluice_tests::isolation::config(&broker.bootstrap());
    config.kms.provider = sluice_wasm::kms::ProviderKind::AwsKms;
    config.kms.aws = Some(moto.kms_config(&user.access_key_id, &user.secret_access_key, 1000));
    let gw = prepared(config.clone()).await;
    // The record key names the AWS key: two customers, two KMS keys.
    install_value_encryption(&gw, "aws", "${record.key}").await;
    create_topic(&broker, "aws");
    let (k1, k2) = (keys[0].key_id.as_str(), keys[1].arn.as_str());
    let originals = keyed(10, &[k1, k2]);
    let producer: FutureProducer = as_user(&gw, WRITER).create().unwrap();
    produce_all(&producer, "aws", &originals).await;
    let stored = read_direct(&broker, "aws", 10).await;
    assert!(clear_and_sealed(&stored, &originals).0.is_empty());
    let got = read_as(&gw, READER, "aws", 10).await;
    assert_eq!(got, originals);
    assert_eq!(metric(&gw, "sluice_kms_data_keys_generated_total"), 2);
    assert_eq!(metric(&gw, "sluice_kms_provider_errors_total"), 0);

    drop(moto);
    // A key whose data key is cached still seals; one that needs the KMS is refused.
    let cached = send_one(&gw, "aws", k1, "cached").await;
    assert!(cached.is_ok(), "{cached:?}");
    let refused = send_one(&gw, "aws", "alias/new", "never clear").await;
    assert!(refused.is_err(), "accepted without a KMS");
    assert!(metric(&gw, "sluice_kms_provider_errors_total") >= 1);
    drop(producer);
    gw.shutdown().await;

    // No data key cached and no KMS: records come back as stored, and the consumer is served.
    let gw = start_gateway_with(config).await.unwrap();
    let got = read_as(&gw, READER, "aws", 11).await;
    let (clear, sealed) = clear_and_sealed(&got[..10], &originals);
    assert!(clear.is_empty() && sealed.len() == 10);
    assert!(!contains(got[10].value.as_deref().unwrap(), b"never clear"));
    gw.shutdown().await;
}

/// Whole-value encryption (the partition-wide path: one key id per topic) under every codec
/// librdkafka writes, then kafkajs producing and consuming: the broker holds no plaintext,
/// the scoped reader gets the exact bytes back, the batches stay readable by every client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_and_kafkajs_through_whole_value_encryption() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let gw = gateway(&broker).await;
    install_value_encryption(&gw, "codec-.*", "codecs-${topic}").await;

    let plain = |i: usize| format!(r#"{{"n":{i},"card":"4111-{i:04}"}}"#);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&broker, &topic);
        let producer: FutureProducer = as_user(&gw, WRITER)
            .set("compression.type", codec)
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .create()
            .unwrap();
        let originals: Vec<Got> = (0..30)
            .map(|i| Got {
                key: Some(format!("k{i}").into_bytes()),
                value: Some(plain(i).into_bytes()),
                headers: vec![],
            })
            .collect();
        produce_all(&producer, &topic, &originals).await;
        drop(producer);
        let stored = read_direct(&broker, &topic, 30).await;
        for (s, o) in stored.iter().zip(&originals) {
            let value = s.value.as_deref().unwrap();
            assert!(value.starts_with(MAGIC), "{codec}: {value:?}");
            assert!(!contains(value, b"4111-"), "{codec}: plaintext stored");
            assert!(contains(value, format!("codecs-{topic}").as_bytes()));
            assert_eq!(s.key, o.key, "{codec}: the key is not asked for");
            assert_eq!(
                s.header("sluice-encrypted"),
                Some(&br#"{"v":1,"value":true}"#[..])
            );
        }
        let got = read_as(&gw, READER, &topic, 30).await;
        assert_eq!(got, originals, "{codec}: the reader gets the exact bytes");
        assert_eq!(read_as(&gw, OTHER, &topic, 30).await, stored);
    }

    // kafkajs (its own Produce and Fetch versions, its own record batch code).
    let bootstrap = gw.kafka_addr().to_string();
    let limit = Duration::from_secs(90);
    let sasl = |(user, password): (&'static str, &'static str)| Some(("plain", user, password));
    create_topic(&broker, "codec-js");
    let produced = kafkajs(
        &bootstrap,
        sasl(WRITER),
        &["produce", "codec-js", "20", "jssecret"],
        limit,
    )
    .await
    .unwrap();
    assert_eq!(produced["offsets"].as_array().unwrap().len(), 20);
    let stored = read_direct(&broker, "codec-js", 20).await;
    for s in &stored {
        let value = s.value.as_deref().unwrap();
        assert!(value.starts_with(MAGIC) && !contains(value, b"jssecret"));
    }
    let consumed = kafkajs(
        &bootstrap,
        sasl(READER),
        &["consume", "codec-js", "js-reader", "20"],
        limit,
    )
    .await
    .unwrap();
    let records = consumed["records"].as_array().unwrap();
    assert_eq!(records.len(), 20);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["key"], format!("jssecret-{i}"));
        assert_eq!(r["value"], format!("jssecret:{i}"));
    }
    let other = kafkajs(
        &bootstrap,
        sasl(OTHER),
        &["consume", "codec-js", "js-other", "20"],
        limit,
    )
    .await
    .unwrap();
    for r in other["records"].as_array().unwrap() {
        assert!(!r["value"].as_str().unwrap().contains("jssecret"), "{r}");
    }
    gw.shutdown().await;
}
