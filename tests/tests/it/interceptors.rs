//! WebAssembly interceptors end to end: plugins uploaded over HTTP, interceptors installed,
//! records produced through the gateway by librdkafka and read back directly from the broker.

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::Message;
use serde_json::json;
use sluice_tests::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A record as read back: key, value, headers.
type Got = (String, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Reads every record of partition 0 of `topic` directly from the broker until `want` arrived.
async fn read_direct(bootstrap: &str, topic: &str, want: usize) -> Vec<Got> {
    tokio::task::block_in_place(|| read_direct_blocking(bootstrap, topic, want))
}

fn read_direct_blocking(bootstrap: &str, topic: &str, want: usize) -> Vec<Got> {
    read_partition0(client_config(bootstrap), topic, want)
        .iter()
        .map(|m| {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            (
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
                headers,
            )
        })
        .collect()
}

fn create_topic(bootstrap: &str, topic: &str) {
    // One partition keeps a single total order, which the swap test relies on.
    let status = std::process::Command::new(tansu_path())
        .args(["topic", "create", "--broker", &format!("tcp://{bootstrap}")])
        .args(["--partitions", "1", topic])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn produce(bootstrap: &str, topic: &str, n: usize, extra: &[(&str, &str)]) {
    let mut cfg = client_config(bootstrap);
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    let producer: FutureProducer = cfg.create().unwrap();
    let mut futures = Vec::new();
    for i in 0..n {
        let key = format!("k{i:05}");
        let value = format!("{{\"id\":{i},\"ssn\":\"123-45-{i:04}\"}}");
        futures.push(
            producer
                .send_result(
                    FutureRecord::to(topic)
                        .partition(0)
                        .key(&key)
                        .payload(&value)
                        .headers(OwnedHeaders::new().insert(Header {
                            key: "orig",
                            value: Some("1"),
                        })),
                )
                .map_err(|(e, _)| e),
        );
    }
    for f in futures {
        f.unwrap().await.unwrap().unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

fn header_values(r: &Got, key: &str) -> Vec<String> {
    r.2.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_install_and_see_the_effect_in_the_broker() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let admin = gw.admin_addr();
    let info = upload_plugin(admin, "add-header", "add-header").await;
    assert_eq!(info["hooks"], json!(["on-produce"]));
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);
    install(
        admin,
        "tag",
        json!({"plugin": "add-header", "priority": 10,
               "config": {"headers": {"x-env": "prod", "x-team": "data"}}}),
    )
    .await;
    create_topic(&broker.bootstrap(), "tagged");
    produce(&gw.kafka_addr().to_string(), "tagged", 100, &[]).await;
    let got = read_direct(&broker.bootstrap(), "tagged", 100).await;
    for r in &got {
        assert_eq!(header_values(r, "orig"), vec!["1"]);
        assert_eq!(header_values(r, "x-env"), vec!["prod"]);
        assert_eq!(header_values(r, "x-team"), vec!["data"]);
        // Headers keep their order: the producer's first, then the interceptor's in config order.
        let keys: Vec<_> = r.2.iter().map(|h| h.0.as_str()).collect();
        assert_eq!(keys, vec!["orig", "x-env", "x-team"]);
    }
    let metrics = gw.metrics_text();
    assert!(
        metrics.contains("sluice_interceptor_calls_total{interceptor=\"tag\",hook=\"on-produce\"}"),
        "{metrics}"
    );
    // The admin API shows what is installed.
    let (status, body) = http(admin, "GET", "/api/v1/interceptors/tag", &[], b"").await;
    assert_eq!(status, 200);
    assert_eq!(body["spec"]["plugin"], "add-header");
    assert_eq!(body["spec"]["failurePolicy"], "fail-closed");
    let (_, body) = http(admin, "GET", "/api/v1/plugins/add-header", &[], b"").await;
    assert_eq!(body["usedBy"], json!(["tag"]));
    // A plugin in use cannot be deleted.
    let (status, body) = http(admin, "DELETE", "/api/v1/plugins/add-header", &[], b"").await;
    assert_eq!(status, 409, "{body}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_follows_priority_and_flips_when_swapped() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let admin = gw.admin_addr();
    upload_plugin(admin, "add-header", "add-header").await;
    let spec = |priority: i32, who: &str| {
        json!({"plugin": "add-header", "priority": priority,
               "config": {"headers": {"step": who}}})
    };
    install(admin, "first", spec(10, "A")).await;
    install(admin, "second", spec(20, "B")).await;
    create_topic(&broker.bootstrap(), "ordered");
    produce(&gw.kafka_addr().to_string(), "ordered", 10, &[]).await;
    install(admin, "first", spec(30, "A")).await;
    produce(&gw.kafka_addr().to_string(), "ordered", 10, &[]).await;
    let got = read_direct(&broker.bootstrap(), "ordered", 20).await;
    for r in &got[..10] {
        assert_eq!(header_values(r, "step"), vec!["A", "B"]);
    }
    for r in &got[10..] {
        assert_eq!(header_values(r, "step"), vec!["B", "A"]);
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_interceptor_under_load_loses_nothing() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let admin = gw.admin_addr();
    upload_plugin(admin, "add-header", "add-header").await;
    install(
        admin,
        "tag",
        json!({"plugin": "add-header", "config": {"headers": {"swap": "yes"}}}),
    )
    .await;
    create_topic(&broker.bootstrap(), "swap");
    let bootstrap = gw.kafka_addr().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let producer_task = {
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let producer: FutureProducer = client_config(&bootstrap)
                .set("enable.idempotence", "true")
                .set("linger.ms", "1")
                .create()
                .unwrap();
            let mut inflight = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) || i < 2_000 {
                let key = format!("{i:08}");
                inflight.push(
                    producer
                        .send_result(FutureRecord::to("swap").partition(0).key(&key).payload("v"))
                        .map_err(|(e, _)| e)
                        .unwrap(),
                );
                i += 1;
                if inflight.len() >= 500 {
                    for f in inflight.drain(..) {
                        f.await.unwrap().expect("no produce may fail during a swap");
                    }
                    sent.store(i, Ordering::Relaxed);
                }
            }
            for f in inflight.drain(..) {
                f.await.unwrap().expect("no produce may fail during a swap");
            }
            sent.store(i, Ordering::Relaxed);
            i
        })
    };
    // Swap in the middle of the stream: wait until records are flowing, replace, then delete.
    assert!(
        eventually(Duration::from_secs(30), || sent.load(Ordering::Relaxed)
            >= 2_000)
        .await
    );
    install(
        admin,
        "tag",
        json!({"plugin": "add-header", "config": {"headers": {"swap": "replaced"}}}),
    )
    .await;
    let mark = sent.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(30), || sent.load(Ordering::Relaxed)
            >= mark + 2_000)
        .await
    );
    let (status, _) = http(admin, "DELETE", "/api/v1/interceptors/tag", &[], b"").await;
    assert_eq!(status, 204);
    let mark = sent.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(30), || sent.load(Ordering::Relaxed)
            >= mark + 2_000)
        .await
    );
    stop.store(true, Ordering::Relaxed);
    let total = producer_task.await.unwrap() as usize;
    let got = read_direct(&broker.bootstrap(), "swap", total).await;
    assert_eq!(got.len(), total, "every acknowledged record arrived, once");
    let keys: Vec<u64> = got.iter().map(|r| r.0.parse().unwrap()).collect();
    assert!(
        keys.windows(2).all(|w| w[1] == w[0] + 1),
        "no loss, no duplicate, in order"
    );
    // The effect changes at single points: yes* then replaced* then none.
    let phase = |r: &Got| match header_values(r, "swap").as_slice() {
        [v] if v == "yes" => 0,
        [v] if v == "replaced" => 1,
        [] => 2,
        other => panic!("unexpected headers {other:?}"),
    };
    let phases: Vec<u8> = got.iter().map(phase).collect();
    assert!(
        phases.windows(2).all(|w| w[0] <= w[1]),
        "the effect changes once per swap"
    );
    assert!(phases.contains(&0) && phases.contains(&1) && phases.contains(&2));
    gw.shutdown().await;
}

/// A raw Produce of one small record to `topic`, through `gw`; returns the partition error code
/// and how long the answer took.
async fn raw_produce(addr: std::net::SocketAddr, topic: &str) -> (i16, Duration) {
    let (code, _, took) = raw_produce_message(addr, topic).await;
    (code, took)
}

/// [`raw_produce`], with the partition's error message too.
async fn raw_produce_message(
    addr: std::net::SocketAddr,
    topic: &str,
) -> (i16, Option<String>, Duration) {
    let mut batch = bytes::BytesMut::new();
    let b = sluice::records::Batch {
        base_offset: 0,
        partition_leader_epoch: -1,
        attributes: 0,
        last_offset_delta: 0,
        base_timestamp: 1,
        max_timestamp: 1,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records: vec![sluice::records::Record {
            attributes: 0,
            timestamp: 1,
            offset_delta: 0,
            key: None,
            value: Some(Bytes::from_static(b"hello")),
            headers: vec![],
        }],
        raw: Bytes::new(),
    };
    sluice::records::encode_batch(&b, sluice::records::Offsets::Renumber, &mut batch).unwrap();
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.freeze()))])]);
    let mut c = RawClient::connect(addr).await.unwrap();
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(10), c.call(&req, 9))
        .await
        .expect("an answer in bounded time")
        .unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (
        p.error_code,
        p.error_message.as_ref().map(|m| m.to_string()),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_faults_apply_the_failure_policy_and_spare_everyone_else() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    create_topic(&broker.bootstrap(), "sandbox");
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let admin = gw.admin_addr();
    // A timeout is retriable (REQUEST_TIMED_OUT); the other failures are not.
    for (plugin, kind, want) in [
        ("spin", "timeout", 7),
        ("hog", "out_of_memory", -1),
        ("trap", "trap", -1),
    ] {
        upload_plugin(admin, plugin, plugin).await;
        // fail-closed: the client gets an error for its request, quickly.
        install(
            admin,
            "bad",
            json!({"plugin": plugin, "failurePolicy": "fail-closed", "timeoutMs": 50, "memoryMb": 16}),
        )
        .await;
        // Another client keeps being served while the plugin misbehaves.
        let bystander = tokio::spawn({
            let addr = gw.kafka_addr();
            async move {
                let mut c = RawClient::connect(addr).await.unwrap();
                for _ in 0..20 {
                    let (_, bytes) = c.encode(&MetadataRequest::default(), 12);
                    c.send_raw(&bytes).await.unwrap();
                    tokio::time::timeout(Duration::from_secs(5), c.read_frame())
                        .await
                        .expect("bystander served")
                        .unwrap();
                }
            }
        });
        let (code, message, took) = raw_produce_message(gw.kafka_addr(), "sandbox").await;
        assert_eq!(code, want, "{plugin}: fail-closed error code");
        let message = message.unwrap_or_default();
        assert!(
            message.starts_with("interceptor bad failed: "),
            "{plugin}: the message names the interceptor: {message}"
        );
        assert!(
            took < Duration::from_secs(3),
            "{plugin}: answered in {took:?}"
        );
        // The next request gets a fresh instance, and fails the same way.
        let (code, _) = raw_produce(gw.kafka_addr(), "sandbox").await;
        assert_eq!(code, want);
        bystander.await.unwrap();
        let metrics = gw.metrics_text();
        assert!(
            metrics.contains(&format!(
                "sluice_interceptor_failures_total{{interceptor=\"bad\",kind=\"{kind}\"}}"
            )),
            "{plugin}: {metrics}"
        );
        // fail-open: the interceptor is skipped and the record goes through.
        install(
            admin,
            "bad",
            json!({"plugin": plugin, "failurePolicy": "fail-open", "timeoutMs": 50, "memoryMb": 16}),
        )
        .await;
        let (code, took) = raw_produce(gw.kafka_addr(), "sandbox").await;
        assert_eq!(code, 0, "{plugin}: fail-open lets the request through");
        assert!(took < Duration::from_secs(3));
        let (status, _) = http(admin, "DELETE", "/api/v1/interceptors/bad", &[], b"").await;
        assert_eq!(status, 204);
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_reject_and_transform() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let admin = gw.admin_addr();
    upload_plugin(admin, "reject-large", "reject-large").await;
    upload_plugin(admin, "mask-fields", "mask-fields").await;
    install(
        admin,
        "limit",
        json!({"plugin": "reject-large", "config": {"maxBytes": 100}}),
    )
    .await;
    install(
        admin,
        "mask",
        json!({"plugin": "mask-fields", "config": {"fields": ["ssn"], "replacement": "***"}}),
    )
    .await;
    create_topic(&broker.bootstrap(), "policy");
    let bootstrap = gw.kafka_addr().to_string();
    let producer: FutureProducer = client_config(&bootstrap)
        .set("retries", "0")
        .create()
        .unwrap();
    let small = producer
        .send(
            FutureRecord::to("policy")
                .partition(0)
                .key("a")
                .payload("{\"ssn\":\"1\",\"x\":2}"),
            Duration::from_secs(10),
        )
        .await;
    assert!(small.is_ok(), "{small:?}");
    let big = "y".repeat(500);
    let err = producer
        .send(
            FutureRecord::to("policy")
                .partition(0)
                .key("b")
                .payload(&big),
            Duration::from_secs(10),
        )
        .await
        .expect_err("a record over the limit is rejected");
    assert!(
        format!("{:?}", err.0).contains("InvalidRecord")
            || format!("{:?}", err.0).contains("INVALID_RECORD"),
        "{:?}",
        err.0
    );
    drop(producer);
    let got = read_direct(&broker.bootstrap(), "policy", 1).await;
    let value: serde_json::Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(value, json!({"ssn": "***", "x": 2}));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_refuses_bad_input_with_reasons() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let mut config = gateway_config(&broker.bootstrap());
    config.admin_token = Some(sluice::config::Secret::new("0123456789abcdef-token"));
    let gw = start_gateway_with(config).await.unwrap();
    let admin = gw.admin_addr();
    let auth = [("Authorization", "Bearer 0123456789abcdef-token")];
    let wasm = [("Content-Type", "application/wasm")];
    // Writes and reads need the token; a wrong one is a 401 like a missing one.
    let (status, _) = http(
        admin,
        "PUT",
        "/api/v1/plugins/noop",
        &wasm,
        &plugin_bytes("noop"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = http(
        admin,
        "PUT",
        "/api/v1/plugins/noop",
        &[("Authorization", "Bearer nope"), wasm[0]],
        &plugin_bytes("noop"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(http(admin, "GET", "/api/v1/plugins", &[], b"").await.0, 401);
    assert_eq!(
        http(admin, "GET", "/api/v1/plugins", &auth, b"").await.0,
        200
    );
    let with = |h: &[(&'static str, &'static str)]| [auth.as_slice(), h].concat();
    // Junk is not a component.
    let (status, body) = http(
        admin,
        "PUT",
        "/api/v1/plugins/junk",
        &with(&wasm),
        b"not wasm at all",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("not a valid WebAssembly component"));
    assert!(!body["details"].as_array().unwrap().is_empty());
    // An empty component: valid, but of the wrong world.
    let empty_component = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    let (status, body) = http(
        admin,
        "PUT",
        "/api/v1/plugins/empty",
        &with(&wasm),
        &empty_component,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("does not implement"),
        "{body}"
    );
    // Bad names, bad content types.
    let (status, _) = http(
        admin,
        "PUT",
        "/api/v1/plugins/Bad%20Name",
        &with(&wasm),
        &plugin_bytes("noop"),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = http(
        admin,
        "PUT",
        "/api/v1/plugins/x",
        &with(&[("Content-Type", "text/plain")]),
        b"x",
    )
    .await;
    assert_eq!(status, 415);
    // Interceptors: unknown plugin, bad JSON, bad values, refused config.
    let json_ct = [("Content-Type", "application/json")];
    let (status, body) = http(
        admin,
        "PUT",
        "/api/v1/interceptors/i",
        &with(&json_ct),
        br#"{"plugin":"ghost"}"#,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "unknown plugin")
    );
    let (status, _) = http(
        admin,
        "PUT",
        "/api/v1/interceptors/i",
        &with(&json_ct),
        b"{not json",
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = http(
        admin,
        "PUT",
        "/api/v1/interceptors/i",
        &with(&json_ct),
        br#"{"plugin":"x","bogus":1}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["details"][0].as_str().unwrap().contains("bogus"));
    let (status, _) = http(
        admin,
        "PUT",
        "/api/v1/plugins/add-header",
        &with(&wasm),
        &plugin_bytes("add-header"),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = http(
        admin,
        "PUT",
        "/api/v1/interceptors/i",
        &with(&json_ct),
        br#"{"plugin":"add-header","priority":99999999,"timeoutMs":0}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["details"].as_array().unwrap().len(), 2, "{body}");
    let (status, body) = http(
        admin,
        "PUT",
        "/api/v1/interceptors/i",
        &with(&json_ct),
        br#"{"plugin":"add-header","config":{"headers":"not a map"}}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "the plugin refused this interceptor");
    // Unknown resources.
    assert_eq!(
        http(admin, "GET", "/api/v1/interceptors/none", &auth, b"")
            .await
            .0,
        404
    );
    assert_eq!(
        http(admin, "DELETE", "/api/v1/plugins/none", &auth, b"")
            .await
            .0,
        404
    );
    // The OpenAPI document (no data in it) is open and names every path.
    let (status, doc) = http(admin, "GET", "/api/v1/openapi.json", &[], b"").await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/api/v1/interceptors/{name}"]["put"].is_object());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interceptors_survive_a_restart() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let config = gateway_config(&broker.bootstrap());
    let gw = start_gateway_with(config.clone()).await.unwrap();
    upload_plugin(gw.admin_addr(), "add-header", "add-header").await;
    install(
        gw.admin_addr(),
        "tag",
        json!({"plugin": "add-header", "config": {"headers": {"restarted": "yes"}}}),
    )
    .await;
    gw.shutdown().await;
    // Same state directory: the plugin (from the compilation cache) and the interceptor return.
    assert!(
        std::fs::read_dir(config.state_dir.join("cache"))
            .unwrap()
            .count()
            > 0
    );
    let gw = start_gateway_with(config).await.unwrap();
    let (status, body) = http(gw.admin_addr(), "GET", "/api/v1/interceptors", &[], b"").await;
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["name"], "tag");
    create_topic(&broker.bootstrap(), "restart");
    produce(&gw.kafka_addr().to_string(), "restart", 5, &[]).await;
    let got = read_direct(&broker.bootstrap(), "restart", 5).await;
    assert!(got.iter().all(|r| header_values(r, "restarted") == ["yes"]));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_works_like_a_rust_one() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let info = upload_plugin(gw.admin_addr(), "js-stamp", "js-stamp").await;
    assert!(info["hooks"]
        .as_array()
        .unwrap()
        .contains(&json!("on-produce")));
    install(
        gw.admin_addr(),
        "stamp",
        json!({"plugin": "js-stamp", "config": {"value": "from-js"}, "timeoutMs": 1000}),
    )
    .await;
    create_topic(&broker.bootstrap(), "js");
    produce(&gw.kafka_addr().to_string(), "js", 20, &[]).await;
    let got = read_direct(&broker.bootstrap(), "js", 20).await;
    assert!(got
        .iter()
        .all(|r| header_values(r, "x-stamp") == ["from-js"]));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_and_transactional_producers_keep_working_through_a_transformer() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    upload_plugin(gw.admin_addr(), "add-header", "add-header").await;
    install(
        gw.admin_addr(),
        "tag",
        json!({"plugin": "add-header", "config": {"headers": {"t": "1"}}}),
    )
    .await;
    let bootstrap = gw.kafka_addr().to_string();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("fidelity-{codec}");
        create_topic(&broker.bootstrap(), &topic);
        produce(
            &bootstrap,
            &topic,
            300,
            &[("enable.idempotence", "true"), ("compression.type", codec)],
        )
        .await;
        let got = read_direct(&broker.bootstrap(), &topic, 300).await;
        let keys: Vec<_> = got.iter().map(|r| r.0.clone()).collect();
        let mut sorted = keys.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 300, "{codec}: no duplicates");
        assert!(
            got.iter().all(|r| header_values(r, "t") == ["1"]),
            "{codec}"
        );
    }
    // Transactions: commit through the transforming interceptor.
    create_topic(&broker.bootstrap(), "txn");
    let producer: FutureProducer = client_config(&bootstrap)
        .set("transactional.id", "fidelity-tx")
        .create()
        .unwrap();
    tokio::task::block_in_place(|| producer.init_transactions(Duration::from_secs(30))).unwrap();
    producer.begin_transaction().unwrap();
    for i in 0..50 {
        producer
            .send(
                FutureRecord::to("txn")
                    .partition(0)
                    .key(&format!("t{i}"))
                    .payload("v"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    tokio::task::block_in_place(|| producer.commit_transaction(Duration::from_secs(30))).unwrap();
    drop(producer);
    let got = read_direct(&broker.bootstrap(), "txn", 50).await;
    assert!(got.iter().all(|r| header_values(r, "t") == ["1"]));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_produce_cannot_exhaust_memory_through_a_record_hook() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    upload_plugin(gw.admin_addr(), "noop-records", "noop-records").await;
    install(
        gw.admin_addr(),
        "records",
        json!({"plugin": "noop-records"}),
    )
    .await;
    // Produce v9: null transactional id, acks, timeout, then a topic count of 2^32 - 2.
    let mut frame = Vec::new();
    let mut body = vec![0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00]; // key 0, v9, cid 7, client id ""
    body.push(0x00); // header tagged fields
    body.push(0x00); // transactional id: null
    body.extend_from_slice(&(-1i16).to_be_bytes());
    body.extend_from_slice(&1000i32.to_be_bytes());
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    c.send_raw(&frame).await.unwrap();
    assert!(c.closed_within(Duration::from_secs(5)).await);
    // The gateway is still there for everyone else.
    let mut ok = RawClient::connect(gw.kafka_addr()).await.unwrap();
    let md = ok.call(&MetadataRequest::default(), 12).await.unwrap();
    assert_eq!(md.brokers.len(), 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_plugin_is_stopped_by_its_cpu_budget() {
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    create_topic(&broker.bootstrap(), "spun");
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let admin = gw.admin_addr();
    upload_plugin(admin, "spin", "spin").await;
    install(
        admin,
        "spinner",
        json!({"plugin": "spin", "failurePolicy": "fail-closed", "timeoutMs": 100}),
    )
    .await;
    let (code, message, took) = raw_produce_message(gw.kafka_addr(), "spun").await;
    assert_eq!(code, 7, "REQUEST_TIMED_OUT");
    let message = message.unwrap();
    // Real CPU work is charged: the call is stopped once its CPU time reaches the budget
    // (100 ms plus the allowance for one small record), not at the wall-clock ceiling.
    assert!(
        message.starts_with("interceptor spinner failed: deadline exceeded ("),
        "{message}"
    );
    let cpu_ms: f64 = message
        .split("deadline exceeded (")
        .nth(1)
        .and_then(|m| m.split(" ms CPU").next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no CPU time in {message}"));
    assert!((100.0..200.0).contains(&cpu_ms), "{message}");
    assert!(took < Duration::from_secs(2), "answered in {took:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_stdout_and_stderr_reach_the_log_and_a_panic_follows_the_policy() {
    let logs = capture_logs();
    let broker = Tansu::start().await.unwrap();
    create_topic(&broker.bootstrap(), "chatty");
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let admin = gw.admin_addr();
    upload_plugin(admin, "chatty", "chatty").await;
    install(admin, "talker", json!({"plugin": "chatty"})).await;
    for _ in 0..3 {
        let (code, _) = raw_produce(gw.kafka_addr(), "chatty").await;
        assert_eq!(code, 0, "printing does not fail the call");
    }
    let lines = |needle: &str| -> Vec<String> {
        logs.contents()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    };
    let out = lines("chatty stdout: talker saw 1 records");
    assert!(out.len() >= 3, "{out:?}");
    assert!(
        out.iter().all(|l| l.contains(" INFO ")
            && l.contains("interceptor=talker")
            && l.contains("stream=\"stdout\"")),
        "{out:?}"
    );
    let err = lines("chatty stderr: a line for stderr");
    assert!(
        err.len() >= 3
            && err
                .iter()
                .all(|l| l.contains(" WARN ") && l.contains("stream=\"stderr\"")),
        "{err:?}"
    );
    // A line written in parts is logged once complete.
    assert!(!lines("plugin: chatty partial chatty stdout: talker saw 1 records").is_empty());
    assert!(
        !lines("chatty configured with").is_empty(),
        "configure's output too"
    );

    // A Rust panic: its message reaches the log (the SDK's panic hook logs it through the
    // host; without the SDK it goes to stderr, which is logged too); the call fails by the
    // interceptor's policy, and nothing panics in the gateway.
    install(
        admin,
        "talker",
        json!({"plugin": "chatty", "config": {"panic": true}}),
    )
    .await;
    let (code, message, _) = raw_produce_message(gw.kafka_addr(), "chatty").await;
    assert_eq!(code, -1);
    assert!(message
        .unwrap()
        .starts_with("interceptor talker failed: trap"));
    let panicked = lines("chatty panicked on purpose");
    assert!(
        panicked.iter().any(|l| l.contains("interceptor=talker")),
        "{panicked:?}"
    );
    install(
        admin,
        "talker",
        json!({"plugin": "chatty", "failurePolicy": "fail-open", "config": {"panic": true}}),
    )
    .await;
    let (code, _) = raw_produce(gw.kafka_addr(), "chatty").await;
    assert_eq!(code, 0, "fail-open: the record goes through");
    let all = logs.contents();
    for bad in [
        "Cannot start a runtime",
        "a host function panicked",
        "stack backtrace",
    ] {
        assert!(!all.contains(bad), "the log shows `{bad}`");
    }
    gw.shutdown().await;
}

/// The issue's scenario: a simple interceptor on a large, fast produce must not fail records,
/// even on a busy machine (the deadline charges the plugin's CPU time, not the wall time it
/// spent descheduled). `SLUICE_BULK_RECORDS` overrides the count (default 100,000 × 1 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_produce_through_add_header_fails_no_record() {
    capture_logs();
    let total: usize = std::env::var("SLUICE_BULK_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let broker = Tansu::start().await.unwrap();
    create_topic(&broker.bootstrap(), "bulk");
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let admin = gw.admin_addr();
    upload_plugin(admin, "add-header", "add-header").await;
    // The defaults: 50 ms timeout, fail-closed.
    install(
        admin,
        "tag",
        json!({"plugin": "add-header", "config": {"headers": {"x-origin": "gateway"}}}),
    )
    .await;
    let bootstrap = gw.kafka_addr().to_string();
    let started = Instant::now();
    let (failed, first_error) = tokio::task::spawn_blocking(move || {
        let producer: rdkafka::producer::ThreadedProducer<Deliveries> = client_config(&bootstrap)
            .set("batch.size", "1000000")
            .set("linger.ms", "5")
            .set("acks", "1")
            .set("queue.buffering.max.messages", "200000")
            .set("queue.buffering.max.kbytes", "1048576")
            .create_with_context(Deliveries::default())
            .unwrap();
        let value = vec![b'v'; 1024];
        for i in 0..total {
            let key = format!("k{i}");
            let mut rec = rdkafka::producer::BaseRecord::to("bulk")
                .partition(0)
                .key(&key)
                .payload(&value);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        assert!(
                            matches!(
                                e.rdkafka_error_code(),
                                Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            ),
                            "{e}"
                        );
                        rec = r;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(120)).unwrap();
        assert_eq!(producer.in_flight_count(), 0);
        let ctx = producer.context();
        assert_eq!(
            ctx.ok.load(Ordering::Relaxed) + ctx.failed.load(Ordering::Relaxed),
            total as u64
        );
        let first = ctx.first_error.lock().unwrap().clone();
        (ctx.failed.load(Ordering::Relaxed), first)
    })
    .await
    .unwrap();
    assert_eq!(failed, 0, "failed records; the first: {first_error:?}");
    let elapsed = started.elapsed();
    let metrics = gw.metrics_text();
    let failures = metrics
        .lines()
        .filter(|l| l.starts_with("sluice_interceptor_failures_total"))
        .collect::<Vec<_>>();
    assert!(failures.is_empty(), "interceptor failures: {failures:?}");
    assert!(
        metrics.contains("sluice_interceptor_calls_total{interceptor=\"tag\",hook=\"on-produce\"}"),
        "the interceptor ran: {metrics}"
    );
    // The records reached the broker. Not an exact count: tansu's in-memory log itself keeps a
    // few hundred fewer than it acknowledged under this load, also when produced to directly.
    let bootstrap = broker.bootstrap();
    let (low, high) = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap).create().unwrap();
        consumer
            .fetch_watermarks("bulk", 0, Duration::from_secs(10))
            .unwrap()
    })
    .await
    .unwrap();
    assert!((high - low) as usize >= total * 99 / 100, "{low}..{high}");
    eprintln!("{total} records x 1 KiB through add-header in {elapsed:?}, none failed");
    gw.shutdown().await;
}

/// Counts a producer's deliveries.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// A Python plugin (componentize-py): `print()` and an uncaught exception's traceback reach the
/// log as the interceptor's lines; the exception fails the call by its policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_prints_and_raises_into_the_log() {
    let logs = capture_logs();
    let broker = Tansu::start().await.unwrap();
    create_topic(&broker.bootstrap(), "python");
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let admin = gw.admin_addr();
    upload_plugin(admin, "python-print", "python-print").await;
    install(admin, "py", json!({"plugin": "python-print"})).await;
    let (code, _) = raw_produce(gw.kafka_addr(), "python").await;
    assert_eq!(code, 0, "print() does not fail the call");
    let got = read_direct(&broker.bootstrap(), "python", 1).await;
    assert_eq!(header_values(&got[0], "x-python"), vec!["1"]);
    let has = |needle: &str, level: &str| {
        logs.contents()
            .lines()
            .any(|l| l.contains(needle) && l.contains("interceptor=py") && l.contains(level))
    };
    assert!(has("python-print configured: raise=False", " INFO "));
    assert!(has("python-print: py tagged 1 records", " INFO "));
    assert!(has("python-print: a warning on stderr", " WARN "));

    install(
        admin,
        "py",
        json!({"plugin": "python-print", "config": {"raise": true}}),
    )
    .await;
    let (code, message, _) = raw_produce_message(gw.kafka_addr(), "python").await;
    assert_eq!(code, -1, "fail-closed: {message:?}");
    assert!(message.unwrap().starts_with("interceptor py failed: trap"));
    assert!(
        has(
            "ValueError: python-print raised on purpose",
            "stream=\"stderr\""
        ),
        "the traceback is logged: {}",
        logs.contents()
    );
    // fail-open: the record goes through, the traceback is still logged.
    install(
        admin,
        "py",
        json!({"plugin": "python-print", "failurePolicy": "fail-open", "config": {"raise": true}}),
    )
    .await;
    let (code, _) = raw_produce(gw.kafka_addr(), "python").await;
    assert_eq!(code, 0);
    let all = logs.contents();
    assert!(!all.contains("Cannot start a runtime"));
    assert!(!all.contains("a host function panicked"));
    gw.shutdown().await;
}

/// A spinning plugin, then a memory-hogging one, installed for one username (fail-open) and
/// hit by four of its connections: a client of another username keeps its produce latency,
/// `/health` keeps answering, and memory stays bounded and comes back.
///
/// Bounds, wide for a shared 2-core machine: the outside client's p99 within twice the
/// no-plugin p99 plus 25 ms of scheduling noise (on the synchronous plugin calls this was
/// 2.1 s and more); `/health` p90 under 100 ms and every probe under 1 s (it timed out after
/// 8 s); the process's peak resident memory while `hog` (memoryMb 256) is hit at most its
/// memoryMb plus 128 MiB above where it started, and within 64 MiB of it again once `hog`
/// is uninstalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_plugin_on_one_scope_spares_clients_outside_it() {
    // The resident memory checked below is the process's: alone, not with the other modules'.
    if !alone_in_process(
        module_path!(),
        "a_bad_plugin_on_one_scope_spares_clients_outside_it",
    ) {
        return;
    }
    use sluice_tests::isolation::{self, Bad, Options};
    capture_logs();
    let broker = Tansu::start().await.unwrap();
    isolation::create_topic(&broker.bootstrap()).unwrap();
    let gw = start_gateway_with(isolation::config(&broker.bootstrap()))
        .await
        .unwrap();
    let (kafka, admin) = (gw.kafka_addr(), gw.admin_addr());
    isolation::prepare(admin).await;
    let opts = Options::default();
    let reference = isolation::run(kafka, admin, Bad::None, &opts)
        .await
        .unwrap();
    let bound = 2.0 * reference.produce_ms(0.99) + 25.0;
    for bad in [Bad::Spin, Bad::Hog] {
        let p = isolation::run(kafka, admin, bad, &opts).await.unwrap();
        eprintln!(
            "{}: outside p50 {:.2} ms, p99 {:.2} ms (no plugin: {:.2} / {:.2}); /health p50 \
             {:.2} ms, p90 {:.2}, max {:.2}; RSS {} -> peak {} -> {} MiB; {} failed bad calls",
            bad.name(),
            p.produce_ms(0.5),
            p.produce_ms(0.99),
            reference.produce_ms(0.5),
            reference.produce_ms(0.99),
            p.health_ms(0.5),
            p.health_ms(0.9),
            p.health_ms(1.0),
            p.rss_before_kib / 1024,
            p.rss_peak_kib / 1024,
            p.rss_after_kib / 1024,
            p.bad_failures
        );
        assert!(!p.limited, "{}: the bad plugin was not hit", bad.name());
        assert!(p.bad_failures >= opts.min_bad_failures);
        assert!(
            p.produce_ms(0.99) <= bound,
            "{}: outside p99 {:.2} ms > {bound:.2} ms",
            bad.name(),
            p.produce_ms(0.99)
        );
        assert!(p.health_ms(0.9) < 100.0, "{}: /health p90", bad.name());
        assert!(p.health_ms(1.0) < 1000.0, "{}: /health max", bad.name());
        if bad == Bad::Hog {
            let grown_mib = p.rss_peak_kib.saturating_sub(p.rss_before_kib) / 1024;
            assert!(
                grown_mib <= opts.hog_memory_mb + 128,
                "peak RSS grew by {grown_mib} MiB"
            );
            let left_mib = p.rss_after_kib.saturating_sub(p.rss_before_kib) / 1024;
            assert!(
                left_mib <= 64,
                "{left_mib} MiB still resident after uninstalling"
            );
        }
    }
    gw.shutdown().await;
}
