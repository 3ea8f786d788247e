//! Per-tenant partition quota on CreatePartitions (CreateTopics and auto-creation are covered
//! with librdkafka in `vclusters.rs`): growing a topic past the virtual cluster's
//! `maxPartitions` is refused with POLICY_VIOLATION, counted from what the cluster holds.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{CreatePartitionsRequest, CreateTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;
use sluice::config::{SaslMode, SecurityProtocol};
use sluice_tests::*;
use std::time::Duration;

const PASSWORD: &str = "tenant-limits-password";
const POLICY_VIOLATION: i16 = 44;

fn topic(name: &str, partitions: i32) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.into())))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
}

async fn create(raw: &mut RawClient, topics: Vec<CreatableTopic>) -> Vec<(String, i16)> {
    let resp = raw
        .call(
            &CreateTopicsRequest::default()
                .with_topics(topics)
                .with_timeout_ms(10_000),
            5,
        )
        .await
        .expect("CreateTopics answered");
    resp.topics
        .iter()
        .map(|t| (t.name.to_string(), t.error_code))
        .collect()
}

async fn session(addr: std::net::SocketAddr, user: &str) -> RawClient {
    let mut raw = RawClient::connect(addr).await.unwrap();
    assert_eq!(raw.sasl_plain(user, PASSWORD).await.unwrap(), 0);
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_growth_counts_against_the_tenant_limit() {
    init_logging();
    let broker = within(Duration::from_secs(30), "tansu start", Tansu::start())
        .await
        .expect("tansu");
    let mut config = gateway_config(&broker.bootstrap());
    config.security.protocol = SecurityProtocol::SaslPlaintext;
    config.security.sasl = Some(server_sasl(&["PLAIN"], SaslMode::GatewayManaged));
    let gw = start_gateway_with(config).await.expect("gateway");
    let admin = gw.admin_addr();
    put_vcluster(
        admin,
        "small",
        json!({"serviceAccounts": ["sam"], "limits": {"maxPartitions": 4}}),
    )
    .await;
    put_service_account(admin, "sam", PASSWORD, &[]).await;
    let broker_port = gw.broker_addr(TANSU_NODE_ID).expect("broker port");

    let mut sam = session(broker_port, "sam").await;
    assert_eq!(
        create(&mut sam, vec![topic("one", 2), topic("two", 2)]).await,
        vec![("one".to_string(), 0), ("two".to_string(), 0)]
    );
    // Growing `one` from 2 to 3 partitions would make 5.
    let grow = sam
        .call(
            &CreatePartitionsRequest::default()
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("one")))
                    .with_count(3)])
                .with_timeout_ms(10_000),
            3,
        )
        .await
        .expect("CreatePartitions answered");
    assert_eq!(grow.results[0].error_code, POLICY_VIOLATION);
    assert_eq!(grow.results[0].name.as_str(), "one");

    drop(sam);
    within(Duration::from_secs(20), "gateway shutdown", gw.shutdown()).await;
}
