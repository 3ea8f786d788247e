//! The admin listener against a real broker: health, readiness, metrics.

use sluice_tests::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics() {
    init_logging();
    let mut broker = Tansu::start().await.unwrap();
    let gw = start_gateway(&broker.bootstrap()).await.unwrap();
    let admin = gw.admin_addr();

    let (status, body) = get(admin, "/health").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = get(admin, "/ready").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&broker.bootstrap()), "{body}");

    // Traffic shows in the metrics.
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    let md = c
        .call(&kafka_protocol::messages::MetadataRequest::default(), 12)
        .await
        .unwrap();
    assert_eq!(md.brokers.len(), 1);
    drop(c);
    let (status, text) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    for series in [
        "sluice_requests_total{api=\"Metadata\"} 1",
        "sluice_connections_total",
        "sluice_connections_open",
        "sluice_gateway_latency_seconds_count{api=\"Metadata\"} 1",
        "sluice_upstream_latency_seconds_count{api=\"Metadata\"} 1",
        "sluice_request_bytes_total{api=\"Metadata\"}",
        "sluice_response_bytes_total{api=\"Metadata\"}",
        "sluice_upstream_connect_errors_total 0",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }

    let (status, body) = get(admin, "/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""));

    // Broker gone: not ready, with the reason; still alive.
    broker.kill();
    let (status, body) = get(admin, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unavailable"));
    assert_eq!(get(admin, "/health").await.0, 200);

    // A client now cannot reach a broker: its connection is closed (it will retry), and the
    // failure is counted.
    let mut c = RawClient::connect(gw.kafka_addr()).await.unwrap();
    let (_, bytes) = c.encode(&kafka_protocol::messages::MetadataRequest::default(), 12);
    c.send_raw(&bytes).await.unwrap();
    assert!(c.closed_within(Duration::from_secs(10)).await);
    let (_, text) = get(admin, "/metrics").await;
    assert!(
        !text.contains("sluice_upstream_connect_errors_total 0"),
        "{text}"
    );
    gw.shutdown().await;
}

/// The key ids of plugin encryption over the admin API: listed (never their material),
/// rotated (versions), deleted for good (crypto-shredding: gone, the id refused from then on,
/// after a restart too), with the errors and counters an operator sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_keys_are_listed_rotated_and_shredded() {
    init_logging();
    let mock = sluice_tests::mock::MockBroker::start(sluice_tests::mock::MockOptions::default())
        .await
        .unwrap();
    let config = gateway_config(&mock.bootstrap());
    let state_dir = config.state_dir.clone();
    let gw = start_gateway_with(config).await.unwrap();
    let admin = gw.admin_addr();
    let call = |method: &'static str, path: String| async move {
        http(admin, method, &path, &[], b"").await
    };

    let (status, body) = call("GET", "/api/v1/kms/keys".into()).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"provider": "local", "items": []}));
    let (status, body) = call("POST", "/api/v1/kms/keys/tenant-a/rotate".into()).await;
    assert_eq!(
        (status, &body["versions"]),
        (200, &serde_json::json!(1)),
        "{body}"
    );
    let (status, body) = call("POST", "/api/v1/kms/keys/tenant-a/rotate".into()).await;
    assert_eq!(
        (status, &body["versions"]),
        (200, &serde_json::json!(2)),
        "{body}"
    );
    call("POST", "/api/v1/kms/keys/tenant-b/rotate".into()).await;
    let (status, body) = call("GET", "/api/v1/kms/keys/tenant-a".into()).await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], "tenant-a");
    assert_eq!(body["provider"], "local");
    assert_eq!(body["dataKeys"], 0);
    let listed = call("GET", "/api/v1/kms/keys".into()).await.1;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    // No key material anywhere: the keystore file's hex keys never appear in answers.
    let keystore = std::fs::read_to_string(state_dir.join("kms-keys.json")).unwrap();
    let material: serde_json::Value = serde_json::from_str(&keystore).unwrap();
    let first = material["keys"]["tenant-a"]["versions"][0]
        .as_str()
        .unwrap();
    assert_eq!(first.len(), 64);
    assert!(!listed.to_string().contains(first));

    let (status, body) = call("GET", "/api/v1/kms/keys/nope".into()).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = call("DELETE", "/api/v1/kms/keys/nope".into()).await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = call("DELETE", "/api/v1/kms/keys/tenant-a".into()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"id": "tenant-a", "dataKeys": 0, "providerDeleted": true})
    );
    let (status, _) = call("DELETE", "/api/v1/kms/keys/tenant-a".into()).await;
    assert_eq!(status, 404, "a deleted key is gone");
    let (status, body) = call("POST", "/api/v1/kms/keys/tenant-a/rotate".into()).await;
    assert_eq!(status, 409, "a deleted id stays deleted: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("deleted"),
        "{body}"
    );
    assert_eq!(metric(&gw, "sluice_kms_keys_shredded_total"), 1);
    assert!(!std::fs::read_to_string(state_dir.join("kms-keys.json"))
        .unwrap()
        .contains("tenant-a"));
    gw.shutdown().await;

    // After a restart on the same state: still deleted, the other key still there.
    let mut config = gateway_config(&mock.bootstrap());
    config.state_dir = state_dir;
    let gw = start_gateway_with(config).await.unwrap();
    let admin = gw.admin_addr();
    let (status, _) = http(admin, "GET", "/api/v1/kms/keys/tenant-a", &[], b"").await;
    assert_eq!(status, 404);
    let (status, _) = http(admin, "POST", "/api/v1/kms/keys/tenant-a/rotate", &[], b"").await;
    assert_eq!(status, 409);
    let (status, body) = http(admin, "GET", "/api/v1/kms/keys/tenant-b", &[], b"").await;
    assert_eq!((status, &body["versions"]), (200, &serde_json::json!(1)));
    gw.shutdown().await;
}
