//! Masking by reader end to end: the `mask-fields` plugin installed with rules and an
//! `unmaskedFor` list on a gateway with SASL/PLAIN accounts, records produced through it by
//! librdkafka, then read three ways: directly from the broker (what is stored), through the
//! gateway by readers the rules exempt (librdkafka, by principal and by group), and by one they
//! do not (kafka-python, another client implementation and request versions).

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::Message;
use serde_json::{json, Value};
use sluice::config::{SaslMode, SecurityProtocol};
use sluice_tests::*;
use std::time::Duration;

const PASSWORD: &str = "mask-test-password";
const TOPIC: &str = "masked-people";
const RECORDS: usize = 20;
const SALT: &str = "s3cret";

/// The record produced as number `i`, as JSON text (key order as written).
fn person(i: usize) -> String {
    format!(
        r#"{{"id":{i},"ssn":"123-45-{i:04}","card":{{"number":"41111111111{i:05}","exp":"12/30"}},"contact":{{"email":"u{i}@example.com","phone":"555"}}}}"#
    )
}

/// The interceptor: fetch-only (the `rules` form's default), three kinds, a regex, and
/// exemptions by principal and by group.
fn mask_config() -> Value {
    json!({
        "rules": [
            {"fields": ["ssn"], "kind": "hash"},
            {"fields": ["card.number"], "kind": "keepLast", "keepLast": 4},
            {"fieldRegex": "(.*\\.)?email", "kind": "null"},
        ],
        "salt": SALT,
        "unmaskedFor": {"principals": ["auditor"], "groups": ["fraud"]},
    })
}

/// Reads `want` records of partition 0 of `topic` from the beginning with librdkafka (no
/// consumer group: assigned), as `security` over `bootstrap`; returns their values.
fn read_values(bootstrap: &str, security: &ClientSecurity, topic: &str, want: usize) -> Vec<Value> {
    let mut config = client_config(bootstrap);
    security.apply(&mut config);
    read_partition0(config, topic, want)
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap_or_default()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_in_unmasked_for_see_clear_text_others_masked_values() {
    capture_logs();
    let broker = within(Duration::from_secs(30), "tansu start", Tansu::start())
        .await
        .expect("starting tansu");
    let mut config = gateway_config(&broker.bootstrap());
    config.security.protocol = SecurityProtocol::SaslPlaintext;
    config.security.sasl = Some(server_sasl(&["PLAIN"], SaslMode::GatewayManaged));
    let gw = within(
        Duration::from_secs(30),
        "gateway start",
        start_gateway_with(config),
    )
    .await
    .expect("starting the gateway");
    let admin = gw.admin_addr();
    for user in ["producer", "auditor", "carol", "analyst"] {
        put_service_account(admin, user, PASSWORD, &[]).await;
    }
    put_group(admin, "fraud", &["carol"]).await;
    upload_plugin(admin, "mask-fields", "mask-fields").await;
    install(
        admin,
        "mask",
        json!({"plugin": "mask-fields", "config": mask_config()}),
    )
    .await;

    let status = std::process::Command::new(tansu_path())
        .args(["topic", "create", "--broker"])
        .arg(format!("tcp://{}", broker.bootstrap()))
        .args(["--partitions", "1", TOPIC])
        .status()
        .unwrap();
    assert!(status.success());

    let bootstrap = gw.kafka_addr().to_string();
    let as_user = |user: &str| ClientSecurity::sasl(false, "PLAIN", user, PASSWORD);
    let producer: FutureProducer = secure_client_config(&bootstrap, &as_user("producer"))
        .create()
        .unwrap();
    for i in 0..RECORDS {
        let value = person(i);
        producer
            .send(
                FutureRecord::to(TOPIC)
                    .partition(0)
                    .key(&format!("k{i}"))
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("producing record {i}: {e}"));
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    drop(producer);
    let clear: Vec<Value> = (0..RECORDS)
        .map(|i| serde_json::from_str(&person(i)).unwrap())
        .collect();

    // What the broker stores: clear text, since masking is on fetch only.
    let broker_addr = broker.bootstrap();
    let stored = tokio::task::block_in_place(|| {
        read_values(&broker_addr, &ClientSecurity::default(), TOPIC, RECORDS)
    });
    assert_eq!(stored, clear, "stored records are not masked");

    // Exempt readers through the gateway: by principal, and by group.
    for user in ["auditor", "carol"] {
        let got =
            tokio::task::block_in_place(|| read_values(&bootstrap, &as_user(user), TOPIC, RECORDS));
        assert_eq!(got, clear, "{user} is in unmaskedFor");
    }
    let unmasked = metric(
        &gw,
        r#"sluice_plugin_counter_total{interceptor="mask",name="unmasked_records"}"#,
    );
    assert!(
        unmasked >= 2 * RECORDS as u64,
        "unmasked_records {unmasked}: {}",
        gw.metrics_text()
    );

    // Another reader, with kafka-python: masked values.
    let read = kafka_python(
        &bootstrap,
        Some(("plain", "analyst", PASSWORD)),
        &[],
        &["consume", TOPIC, "analysts", &RECORDS.to_string()],
        Duration::from_secs(90),
    )
    .await
    .unwrap_or_else(|e| panic!("analyst consumes: {e}"));
    let records = read["records"].as_array().unwrap();
    assert_eq!(records.len(), RECORDS);
    let mut hashes = std::collections::BTreeSet::new();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["offset"], json!(i));
        let got: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
        let ssn_hash = got["ssn"].as_str().unwrap().to_string();
        assert_eq!(ssn_hash.len(), 64, "{got}");
        assert!(ssn_hash.bytes().all(|b| b.is_ascii_hexdigit()), "{got}");
        hashes.insert(ssn_hash);
        assert_eq!(
            got,
            json!({
                "id": i,
                "ssn": got["ssn"],
                "card": {"number": format!("************{:04}", i % 10_000), "exp": "12/30"},
                "contact": {"email": null, "phone": "555"},
            }),
            "record {i}"
        );
    }
    assert_eq!(hashes.len(), RECORDS, "different values hash differently");
    // The exact bytes of record 0: key order kept, compact, SHA-256(salt ‖ value) as
    // `printf s3cret123-45-0000 | sha256sum` prints it.
    assert_eq!(
        records[0]["value"].as_str().unwrap(),
        r#"{"id":0,"ssn":"9fba6cfecd4fd01fb251fae0946e8ed0b9f857bffb9278530d48215dc0fb789f","card":{"number":"************0000","exp":"12/30"},"contact":{"email":null,"phone":"555"}}"#
    );
    let counter = |name: &str| {
        metric(
            &gw,
            &format!(r#"sluice_plugin_counter_total{{interceptor="mask",name="{name}"}}"#),
        )
    };
    assert!(counter("masked_records") >= RECORDS as u64);
    assert_eq!(counter("masked_fields"), 3 * counter("masked_records"));
    assert_eq!(counter("masked_hash"), counter("masked_records"));
    assert_eq!(counter("masked_keep_last"), counter("masked_records"));
    assert_eq!(counter("masked_null"), counter("masked_records"));
    gw.shutdown().await;
}
