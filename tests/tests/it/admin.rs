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
