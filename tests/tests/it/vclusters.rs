//! Virtual clusters end to end: several tenants on one physical cluster (tansu) through the
//! gateway, each landing in its virtual cluster by its authenticated principal (SASL PLAIN or
//! SCRAM-SHA-256, gateway-managed). Inside a virtual cluster every topic, group id and
//! transactional id is the tenant's own logical name, stored physically under the tenant's
//! prefix; listings show only the tenant's own, unprefixed; another tenant's names and topic
//! ids behave as if they did not exist. Also: ACLs on logical names, alias topics, concentrated
//! topics, interceptors scoped to a tenant, passthrough virtual clusters, connection limits,
//! and two more client implementations (kafkajs, kafka-python) next to librdkafka.
//!
//! Every test checks the physical side with a client talking to tansu directly, so that the
//! prefixing is proven rather than assumed.
//!
//! Tenants of [`Env::tenants`]: `a` (prefix `a.`, account `alice` joined through the account's
//! `vcluster` field) and `b` (default prefix `b.`, account `bob` joined through the virtual
//! cluster's `serviceAccounts` list).
//!
//! librdkafka calls that block run inside `block_in_place`; every client is dropped before the
//! gateway shuts down.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiVersionsRequest, DescribeConfigsRequest, DescribeConfigsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
    FetchRequest, FetchResponse, GroupId, ListGroupsRequest, ListTransactionsRequest,
    MetadataRequest, MetadataResponse, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;
use sluice::config::{Config, SaslMode, SecurityProtocol};
use sluice_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Upper bound for one blocking librdkafka call.
const CALL: Duration = Duration::from_secs(15);
/// Upper bound for consuming what a test produced (a group join on tansu takes ~3 s).
const CONSUME: Duration = Duration::from_secs(45);
/// Every account's password (the tests are about names, not credentials).
const PASSWORD: &str = "vcluster-test-password";

/// Kafka error codes the tests expect by number (raw responses).
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNKNOWN_TOPIC_ID: i16 = 100;
/// A configuration value only tenant b's `orders` has.
const B_RETENTION: &str = "4242424";

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

/// Closes a librdkafka client (its close talks to the brokers, so it blocks).
fn close<T: Send>(client: T) {
    blocking(move || drop(client));
}

/// tansu, and a gateway in front of it with SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256) checked by
/// the gateway itself.
struct Env {
    broker: Tansu,
    gw: sluice::Gateway,
}

impl Env {
    /// Without ACLs.
    async fn start() -> Env {
        Self::start_with(|_| {}).await
    }

    /// With a change to the gateway configuration.
    async fn start_with(change: impl FnOnce(&mut Config)) -> Env {
        init_logging();
        let broker = within(Duration::from_secs(30), "tansu start", Tansu::start())
            .await
            .expect("starting tansu");
        let mut config = gateway_config(&broker.bootstrap());
        config.security.protocol = SecurityProtocol::SaslPlaintext;
        config.security.sasl = Some(server_sasl(
            &["PLAIN", "SCRAM-SHA-256"],
            SaslMode::GatewayManaged,
        ));
        change(&mut config);
        let gw = within(
            Duration::from_secs(30),
            "gateway start",
            start_gateway_with(config),
        )
        .await
        .expect("starting the gateway");
        Env { broker, gw }
    }

    /// Tenants `a` (prefix `a.`, `alice` by the account's field) and `b` (default prefix,
    /// `bob` by the virtual cluster's account list).
    async fn tenants(&self) {
        let admin = self.admin();
        put_vcluster(
            admin,
            "a",
            json!({"prefix": "a.", "passthrough": false, "serviceAccounts": []}),
        )
        .await;
        put_tenant_account(admin, "alice", PASSWORD, "a").await;
        put_service_account(admin, "bob", PASSWORD, &[]).await;
        put_vcluster(admin, "b", json!({"serviceAccounts": ["bob"]})).await;
    }

    /// The gateway's bootstrap address, for clients.
    fn bootstrap(&self) -> String {
        self.gw.kafka_addr().to_string()
    }

    /// tansu's own address, for direct (physical) checks.
    fn direct(&self) -> String {
        self.broker.bootstrap()
    }

    fn admin(&self) -> SocketAddr {
        self.gw.admin_addr()
    }

    /// The gateway port standing for tansu's node (the group and transaction coordinator, and
    /// every partition's leader).
    fn broker_port(&self) -> SocketAddr {
        self.gw
            .broker_addr(TANSU_NODE_ID)
            .expect("the gateway knows tansu's node")
    }

    async fn stop(self) {
        within(
            Duration::from_secs(20),
            "gateway shutdown",
            self.gw.shutdown(),
        )
        .await;
        drop(self.broker);
    }
}

/// SASL/PLAIN as `user`.
fn plain(user: &str) -> ClientSecurity {
    ClientSecurity::sasl(false, "PLAIN", user, PASSWORD)
}

/// SASL/SCRAM-SHA-256 as `user`.
fn scram(user: &str) -> ClientSecurity {
    ClientSecurity::sasl(false, "SCRAM-SHA-256", user, PASSWORD)
}

/// No security: a client talking to tansu directly.
fn direct() -> ClientSecurity {
    ClientSecurity::default()
}

fn settings(bootstrap: &str, security: &ClientSecurity) -> ClientConfig {
    let mut c = secure_client_config(bootstrap, security);
    c.set("socket.timeout.ms", "5000")
        .set("reconnect.backoff.ms", "200")
        .set("reconnect.backoff.max.ms", "1000")
        .set("message.timeout.ms", "15000");
    c
}

fn producer(bootstrap: &str, security: &ClientSecurity) -> FutureProducer<RecordingContext> {
    settings(bootstrap, security)
        .create_with_context(RecordingContext::default())
        .expect("producer")
}

fn consumer(
    bootstrap: &str,
    group: &str,
    security: &ClientSecurity,
    extra: &[(&str, &str)],
) -> StreamConsumer<RecordingContext> {
    let mut c = consumer_config(bootstrap, group);
    security.apply(&mut c);
    c.set("socket.timeout.ms", "5000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create_with_context(RecordingContext::default())
        .expect("consumer")
}

fn admin_opts() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(10)))
        .operation_timeout(Some(Duration::from_secs(10)))
}

/// Creates topics (`(name, partitions)`) with librdkafka's admin client; returns each
/// topic's result.
async fn try_create_topics(
    bootstrap: &str,
    security: &ClientSecurity,
    topics: &[(&str, i32)],
) -> Vec<Result<String, (String, RDKafkaErrorCode)>> {
    let admin: AdminClient<RecordingContext> = settings(bootstrap, security)
        .create_with_context(RecordingContext::default())
        .expect("admin client");
    let new: Vec<_> = topics
        .iter()
        .map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1)))
        .collect();
    let results = within(
        Duration::from_secs(20),
        "create_topics",
        admin.create_topics(&new, &admin_opts()),
    )
    .await
    .expect("create_topics request");
    close(admin);
    results
}

/// Creates topics; panics unless every one is created.
async fn create_topics(bootstrap: &str, security: &ClientSecurity, topics: &[(&str, i32)]) {
    for r in try_create_topics(bootstrap, security, topics).await {
        r.unwrap_or_else(|(t, e)| panic!("{security:?} creating {t}: {e:?}"));
    }
}

/// Creates a one-partition topic with one configuration entry; panics unless created.
async fn create_topic_with_config(
    bootstrap: &str,
    security: &ClientSecurity,
    topic: &str,
    (key, value): (&str, &str),
) {
    let admin: AdminClient<RecordingContext> = settings(bootstrap, security)
        .create_with_context(RecordingContext::default())
        .expect("admin client");
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set(key, value);
    let results = within(
        Duration::from_secs(20),
        "create_topics",
        admin.create_topics([&new], &admin_opts()),
    )
    .await
    .expect("create_topics request");
    close(admin);
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("{security:?} creating {t}: {e:?}"));
    }
}

/// Produces one record per key (value `v-<key>`) to partition 0 of `topic`, one at a time
/// (one record per batch keeps tansu's high watermark exact); returns the offsets.
async fn produce(
    p: &FutureProducer<RecordingContext>,
    topic: &str,
    keys: &[String],
) -> Result<Vec<i64>, KafkaError> {
    let mut offsets = Vec::new();
    for key in keys {
        let value = format!("v-{key}");
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(&value)
            .partition(0);
        let delivery = within(
            Duration::from_secs(30),
            "delivery report",
            p.send(record, Duration::from_secs(0)),
        )
        .await
        .map_err(|(e, _)| e)?;
        offsets.push(delivery.offset);
    }
    Ok(offsets)
}

/// Produces through a fresh producer; panics on failure.
async fn produce_as(bootstrap: &str, security: &ClientSecurity, topic: &str, keys: &[String]) {
    let p = producer(bootstrap, security);
    produce(&p, topic, keys)
        .await
        .unwrap_or_else(|e| panic!("{security:?} producing to {topic}: {e}"));
    close(p);
}

/// `prefix-0`, `prefix-1`, ...
fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// A record as read back.
#[derive(Debug, Clone)]
struct Rec {
    topic: String,
    offset: i64,
    key: String,
    value: String,
    headers: Vec<(String, String)>,
}

fn rec(m: &BorrowedMessage<'_>) -> Rec {
    Rec {
        topic: m.topic().to_string(),
        offset: m.offset(),
        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
        value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        headers: m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_string(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Receives `n` records (assigned or subscribed); a consumer error fails the test.
async fn take(c: &StreamConsumer<RecordingContext>, n: usize, what: &str) -> Vec<Rec> {
    let deadline = tokio::time::Instant::now() + CONSUME;
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Err(_) => panic!(
                "{what}: only {} of {n} records within {CONSUME:?}: {got:?} (client errors {:?})",
                got.len(),
                c.context().errors()
            ),
            Ok(Err(e)) => panic!("{what}: consumer error {e} after {got:?}"),
            Ok(Ok(m)) => got.push(rec(&m)),
        }
    }
    got
}

/// Reads `n` records of partition 0 of `topic` from the beginning (no group join).
async fn read(bootstrap: &str, security: &ClientSecurity, topic: &str, n: usize) -> Vec<Rec> {
    let c = consumer(bootstrap, "vc-reader", security, &[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let got = take(&c, n, &format!("{security:?} reading {topic}")).await;
    close(c);
    got
}

/// The high watermark of partition 0 of `topic`.
fn high_watermark(bootstrap: &str, security: &ClientSecurity, topic: &str) -> i64 {
    let c = consumer(bootstrap, "vc-watermarks", security, &[]);
    let (_, high) = blocking(|| c.fetch_watermarks(topic, 0, CALL))
        .unwrap_or_else(|e| panic!("{security:?} watermarks of {topic}: {e}"));
    close(c);
    high
}

/// Every topic name a client sees in a Metadata request for all topics.
fn topic_names(bootstrap: &str, security: &ClientSecurity) -> BTreeSet<String> {
    let c = consumer(bootstrap, "vc-metadata", security, &[]);
    let md = blocking(|| c.fetch_metadata(None, CALL))
        .unwrap_or_else(|e| panic!("{security:?} metadata: {e}"));
    let names = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name().to_string())
        .collect();
    close(c);
    names
}

fn key_list(recs: &[Rec]) -> Vec<String> {
    recs.iter().map(|r| r.key.clone()).collect()
}

fn code(e: &KafkaError) -> RDKafkaErrorCode {
    e.rdkafka_error_code()
        .unwrap_or_else(|| panic!("error without a code: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Raw kafka-protocol clients
// ---------------------------------------------------------------------------------------------

/// A raw connection to `addr`, authenticated with SASL/PLAIN as `user`.
async fn raw_as(addr: SocketAddr, user: &str) -> RawClient {
    let mut raw = RawClient::connect(addr).await.expect("connect");
    let code = within(CALL, "SASL/PLAIN", raw.sasl_plain(user, PASSWORD))
        .await
        .expect("SASL exchange");
    assert_eq!(code, 0, "{user} authenticates");
    raw
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Metadata v12 for these topics by name (`None`: all topics), never creating any.
async fn metadata_v12(raw: &mut RawClient, topics: Option<&[&str]>) -> MetadataResponse {
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect()
        }));
    within(CALL, "Metadata v12", raw.call(&req, 12))
        .await
        .expect("Metadata v12")
}

/// `topic` as a direct Metadata v12 answer describes it (with its topic id).
async fn direct_topic(broker: SocketAddr, topic: &str) -> MetadataResponseTopic {
    let mut raw = RawClient::connect(broker).await.expect("connect");
    let md = metadata_v12(&mut raw, Some(&[topic])).await;
    let t = md.topics.into_iter().next().expect("one topic answered");
    assert_eq!(t.error_code, 0, "{topic} exists physically");
    t
}

/// A Metadata answer's topic name.
fn name_of(t: &MetadataResponseTopic) -> Option<String> {
    t.name.as_ref().map(|n| n.to_string())
}

/// DescribeConfigs v4 of one topic.
async fn describe_topic_configs(raw: &mut RawClient, topic: &str) -> DescribeConfigsResponse {
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(None)]);
    within(CALL, "DescribeConfigs v4", raw.call(&req, 4))
        .await
        .expect("DescribeConfigs v4")
}

/// Fetch v13 of partition 0 from offset 0 of the topic whose id `topic` (from a Metadata v12
/// answer, possibly another client's) carries; the name is left empty, as v13 clients do.
async fn fetch_by_id(raw: &mut RawClient, topic: &MetadataResponseTopic) -> FetchResponse {
    let req = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(topic.topic_id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    within(CALL, "Fetch v13", raw.call(&req, 13))
        .await
        .expect("Fetch v13")
}

/// Metadata v12 by topic id only.
async fn metadata_by_id(raw: &mut RawClient, topic: &MetadataResponseTopic) -> MetadataResponse {
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_topic_id(topic.topic_id)
            .with_name(None)]));
    within(CALL, "Metadata v12 by id", raw.call(&req, 12))
        .await
        .expect("Metadata v12 by id")
}

/// DescribeGroups v5 of one group.
async fn describe_group(raw: &mut RawClient, group: &str) -> DescribeGroupsResponse {
    let req = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    within(CALL, "DescribeGroups v5", raw.call(&req, 5))
        .await
        .expect("DescribeGroups v5")
}

/// ListGroups v4: the group ids.
async fn list_groups(raw: &mut RawClient) -> BTreeSet<String> {
    let resp = within(
        CALL,
        "ListGroups v4",
        raw.call(&ListGroupsRequest::default(), 4),
    )
    .await
    .expect("ListGroups v4");
    assert_eq!(resp.error_code, 0, "ListGroups error");
    resp.groups.iter().map(|g| g.group_id.to_string()).collect()
}

/// OffsetFetch v8 of every topic of `group`: `(topic, partition) -> committed offset`.
async fn offsets_of_group(raw: &mut RawClient, group: &str) -> BTreeMap<(String, i32), i64> {
    let req = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(None)]);
    let resp = within(CALL, "OffsetFetch v8", raw.call(&req, 8))
        .await
        .expect("OffsetFetch v8");
    assert_eq!(resp.groups.len(), 1, "{resp:?}");
    let g = &resp.groups[0];
    assert_eq!(g.error_code, 0, "{resp:?}");
    assert_eq!(g.group_id.as_str(), group, "answered under the asked id");
    g.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| ((t.name.to_string(), p.partition_index), p.committed_offset))
        })
        .collect()
}

/// DescribeTopicPartitions v0 of these topics (empty: every topic).
async fn describe_topic_partitions(
    raw: &mut RawClient,
    topics: &[&str],
) -> DescribeTopicPartitionsResponse {
    let req = DescribeTopicPartitionsRequest::default()
        .with_response_partition_limit(2000)
        .with_topics(
            topics
                .iter()
                .map(|t| TopicRequest::default().with_name(topic_name(t)))
                .collect(),
        );
    within(CALL, "DescribeTopicPartitions v0", raw.call(&req, 0))
        .await
        .expect("DescribeTopicPartitions v0")
}

/// Whether the peer at `addr` advertises API `key` (ApiVersions v0, unauthenticated).
async fn advertises(addr: SocketAddr, key: i16) -> bool {
    let mut raw = RawClient::connect(addr).await.expect("connect");
    let resp = within(
        CALL,
        "ApiVersions",
        raw.call(&ApiVersionsRequest::default(), 0),
    )
    .await
    .expect("ApiVersions");
    resp.api_keys.iter().any(|k| k.api_key == key)
}

/// `names` that start with `prefix`, without it.
fn strip_all(names: &BTreeSet<String>, prefix: &str) -> BTreeSet<String> {
    names
        .iter()
        .filter_map(|n| n.strip_prefix(prefix).map(str::to_string))
        .collect()
}

/// Fails if any name carries a tenant prefix.
fn assert_unprefixed<'a>(names: impl IntoIterator<Item = &'a String>, what: &str) {
    for n in names {
        assert!(
            !n.starts_with("a.") && !n.starts_with("b."),
            "{what}: `{n}` carries a tenant prefix"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The broker's side of what these tests rely on
// ---------------------------------------------------------------------------------------------

/// What the topic-id and configuration tests need from tansu itself, directly: topic ids in
/// Metadata v12, Fetch v13 by topic id, and DescribeConfigs answers for existing and unknown
/// topics. If this fails, the guessing test's failures are the broker's, not the gateway's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_serves_topic_ids_and_configs() {
    init_logging();
    let broker = within(Duration::from_secs(30), "tansu start", Tansu::start())
        .await
        .expect("starting tansu");
    let bootstrap = broker.bootstrap();
    create_topics(&bootstrap, &direct(), &[("canary", 1)]).await;
    produce_as(&bootstrap, &direct(), "canary", &keys("c", 2)).await;
    let got = read(&bootstrap, &direct(), "canary", 2).await;
    assert_eq!(key_list(&got), keys("c", 2));
    assert_eq!(high_watermark(&bootstrap, &direct(), "canary"), 2);
    let t = direct_topic(broker.addr, "canary").await;
    assert!(!t.topic_id.is_nil(), "tansu gives topics an id");
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");
    let fetched = fetch_by_id(&mut raw, &t).await;
    let p = &fetched.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()));
    let by_id = metadata_by_id(&mut raw, &t).await;
    assert_eq!(name_of(&by_id.topics[0]).as_deref(), Some("canary"));
    let configs = describe_topic_configs(&mut raw, "canary").await;
    assert_eq!(configs.results[0].error_code, 0, "{configs:?}");
    let unknown = describe_topic_configs(&mut raw, "no-such-topic").await;
    eprintln!("tansu's DescribeConfigs for an unknown topic: {unknown:?}");
}

// ---------------------------------------------------------------------------------------------
// 1. Topics: same logical name, separate physical topics
// ---------------------------------------------------------------------------------------------

/// Two tenants create `orders`, produce and consume: each sees only its own records; tansu
/// holds `a.orders` and `b.orders`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_share_a_topic_name_but_not_the_topic() {
    let env = Env::start().await;
    env.tenants().await;
    let gw = env.bootstrap();
    // Both create `orders`: the second is not told it already exists.
    create_topics(&gw, &plain("alice"), &[("orders", 1)]).await;
    create_topics(&gw, &scram("bob"), &[("orders", 1)]).await;
    // b first: were the topics shared, a's first records would be b's.
    produce_as(&gw, &scram("bob"), "orders", &keys("b", 3)).await;
    produce_as(&gw, &plain("alice"), "orders", &keys("a", 4)).await;

    let got_a = read(&gw, &plain("alice"), "orders", 4).await;
    assert_eq!(
        key_list(&got_a),
        keys("a", 4),
        "alice reads her records only"
    );
    assert_eq!(
        got_a.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert!(got_a.iter().all(|r| r.topic == "orders"), "{got_a:?}");
    assert_eq!(got_a[0].value, "v-a-0");
    assert_eq!(high_watermark(&gw, &plain("alice"), "orders"), 4);
    let got_b = read(&gw, &scram("bob"), "orders", 3).await;
    assert_eq!(key_list(&got_b), keys("b", 3), "bob reads his records only");
    assert_eq!(high_watermark(&gw, &scram("bob"), "orders"), 3);

    // Each tenant's listing: its own topic, unprefixed.
    for who in [plain("alice"), scram("bob")] {
        let names = topic_names(&gw, &who);
        assert_eq!(
            names,
            BTreeSet::from(["orders".to_string()]),
            "{who:?} lists"
        );
    }

    // Physically: the prefixed topics, holding exactly what each tenant wrote.
    let physical = topic_names(&env.direct(), &direct());
    assert!(
        physical.contains("a.orders") && physical.contains("b.orders"),
        "tansu holds {physical:?}"
    );
    assert!(
        !physical.contains("orders"),
        "no unprefixed topic: {physical:?}"
    );
    let direct_a = read(&env.direct(), &direct(), "a.orders", 4).await;
    assert_eq!(key_list(&direct_a), keys("a", 4));
    assert_eq!(high_watermark(&env.direct(), &direct(), "a.orders"), 4);
    let direct_b = read(&env.direct(), &direct(), "b.orders", 3).await;
    assert_eq!(key_list(&direct_b), keys("b", 3));
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Consumer groups
// ---------------------------------------------------------------------------------------------

/// Both tenants use group `g1` at the same time: one member each, independent committed
/// offsets, listings and descriptions unprefixed and per tenant; tansu holds `a.g1`, `b.g1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_share_a_group_id_but_not_the_group() {
    let env = Env::start().await;
    env.tenants().await;
    let gw = env.bootstrap();
    create_topics(&gw, &plain("alice"), &[("orders", 1)]).await;
    create_topics(&gw, &plain("bob"), &[("orders", 1)]).await;
    produce_as(&gw, &plain("alice"), "orders", &keys("a", 5)).await;
    produce_as(&gw, &plain("bob"), "orders", &keys("b", 3)).await;

    // Both join `g1` concurrently; were the group shared, its one partition... would be
    // two different topics in one group, and the descriptions below would show two members.
    let ca = consumer(&gw, "g1", &plain("alice"), &[]);
    let cb = consumer(&gw, "g1", &plain("bob"), &[]);
    ca.subscribe(&["orders"]).expect("subscribe");
    cb.subscribe(&["orders"]).expect("subscribe");
    let (got_a, got_b) = tokio::join!(take(&ca, 5, "alice in g1"), take(&cb, 3, "bob in g1"));
    assert_eq!(key_list(&got_a), keys("a", 5));
    assert_eq!(key_list(&got_b), keys("b", 3));

    // Different commits under the same group id.
    let commit = |c: &StreamConsumer<RecordingContext>, offset: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("orders", 0, Offset::Offset(offset))
            .expect("tpl");
        blocking(|| c.commit(&tpl, CommitMode::Sync)).expect("commit");
    };
    commit(&ca, 2);
    commit(&cb, 3);
    let committed = |c: &StreamConsumer<RecordingContext>| {
        let tpl = blocking(|| c.committed(CALL)).expect("committed");
        tpl.find_partition("orders", 0)
            .expect("orders/0 committed")
            .offset()
    };
    assert_eq!(committed(&ca), Offset::Offset(2), "alice's commit");
    assert_eq!(committed(&cb), Offset::Offset(3), "bob's commit");

    // DescribeGroups at the coordinator: each tenant's `g1`, one member, unprefixed.
    for user in ["alice", "bob"] {
        let mut raw = raw_as(env.broker_port(), user).await;
        // OffsetFetch of all topics: the tenant's own `orders` only, its own offset.
        let offsets = offsets_of_group(&mut raw, "g1").await;
        let want = if user == "alice" { 2 } else { 3 };
        assert_eq!(
            offsets,
            BTreeMap::from([(("orders".to_string(), 0), want)]),
            "{user}'s OffsetFetch of g1, all topics"
        );
        let d = describe_group(&mut raw, "g1").await;
        assert_eq!(d.groups.len(), 1, "{user}: {d:?}");
        let g = &d.groups[0];
        assert_eq!(g.error_code, 0, "{user}: {g:?}");
        assert_eq!(g.group_id.as_str(), "g1", "{user} sees the logical id");
        assert_eq!(g.group_state.as_str(), "Stable", "{user}: {g:?}");
        assert_eq!(g.members.len(), 1, "{user}'s g1 has one member: {g:?}");
        // ListGroups: exactly the tenant's own groups (as far as tansu lists them),
        // unprefixed.
        let mut raw = raw_as(env.gw.kafka_addr(), user).await;
        let listed = list_groups(&mut raw).await;
        let mut direct_raw = RawClient::connect(env.broker.addr).await.expect("connect");
        let physical = list_groups(&mut direct_raw).await;
        let prefix = if user == "alice" { "a." } else { "b." };
        assert_unprefixed(&listed, &format!("{user}'s ListGroups"));
        assert_eq!(
            listed,
            strip_all(&physical, prefix),
            "{user}'s ListGroups against tansu's {physical:?}"
        );
        if physical.contains(&format!("{prefix}g1")) {
            assert!(listed.contains("g1"));
        } else {
            eprintln!("tansu fault: ListGroups omits the active group {prefix}g1 ({physical:?})");
        }
    }
    // Physically: two groups, one member each, and their own committed offsets.
    let mut direct_raw = RawClient::connect(env.broker.addr).await.expect("connect");
    for (group, topic, offset) in [("a.g1", "a.orders", 2), ("b.g1", "b.orders", 3)] {
        let d = describe_group(&mut direct_raw, group).await;
        assert_eq!(d.groups[0].members.len(), 1, "{group}: {d:?}");
        let c = consumer(&env.direct(), group, &direct(), &[]);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, 0);
        let got = blocking(|| c.committed_offsets(tpl, CALL)).expect("committed_offsets");
        assert_eq!(
            got.find_partition(topic, 0).expect("committed").offset(),
            Offset::Offset(offset),
            "{group}'s committed offset, read directly"
        );
        close(c);
    }
    let d = describe_group(&mut direct_raw, "g1").await;
    assert!(d.groups[0].members.is_empty(), "no unprefixed group: {d:?}");
    close(ca);
    close(cb);

    // A new member of alice's g1 resumes at alice's commit, not bob's.
    let ca = consumer(&gw, "g1", &plain("alice"), &[]);
    ca.subscribe(&["orders"]).expect("subscribe");
    let resumed = take(&ca, 3, "alice resuming g1").await;
    assert_eq!(key_list(&resumed), ["a-2", "a-3", "a-4"]);
    close(ca);
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Transactions
// ---------------------------------------------------------------------------------------------

fn tx_producer(
    bootstrap: &str,
    security: &ClientSecurity,
    id: &str,
) -> FutureProducer<RecordingContext> {
    let p: FutureProducer<RecordingContext> = settings(bootstrap, security)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "30000")
        .create_with_context(RecordingContext::default())
        .expect("transactional producer");
    blocking(|| p.init_transactions(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("{security:?} init_transactions({id}): {e}"));
    p
}

/// Both tenants use transactional id `tx` at the same time: neither fences the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_share_a_transactional_id_without_fencing() {
    let env = Env::start().await;
    env.tenants().await;
    let gw = env.bootstrap();
    create_topics(&gw, &plain("alice"), &[("orders", 1)]).await;
    create_topics(&gw, &plain("bob"), &[("orders", 1)]).await;

    // Were `tx` shared, bob's InitProducerId would bump the epoch and fence alice.
    let pa = tx_producer(&gw, &plain("alice"), "tx");
    let pb = tx_producer(&gw, &plain("bob"), "tx");
    for round in 0..2 {
        pa.begin_transaction().expect("alice begins");
        pb.begin_transaction().expect("bob begins");
        produce(&pa, "orders", &keys(&format!("a{round}"), 2))
            .await
            .unwrap_or_else(|e| panic!("alice's transactional produce, round {round}: {e}"));
        produce(&pb, "orders", &keys(&format!("b{round}"), 2))
            .await
            .unwrap_or_else(|e| panic!("bob's transactional produce, round {round}: {e}"));
        blocking(|| pa.commit_transaction(Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("alice commits round {round}: {e}"));
        blocking(|| pb.commit_transaction(Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("bob commits round {round}: {e}"));
    }

    // ListTransactions, if tansu has it (0.6.0 does not): each tenant's `tx`, unprefixed.
    const LIST_TRANSACTIONS: i16 = 66;
    if advertises(env.broker.addr, LIST_TRANSACTIONS).await {
        let mut direct_raw = RawClient::connect(env.broker.addr).await.expect("connect");
        let physical = within(
            CALL,
            "ListTransactions direct",
            direct_raw.call(&ListTransactionsRequest::default(), 0),
        )
        .await
        .expect("ListTransactions direct");
        assert_eq!(physical.error_code, 0, "{physical:?}");
        let physical: BTreeSet<String> = physical
            .transaction_states
            .iter()
            .map(|t| t.transactional_id.to_string())
            .collect();
        assert!(
            physical.contains("a.tx") && physical.contains("b.tx"),
            "tansu's transactions: {physical:?}"
        );
        for (user, prefix) in [("alice", "a."), ("bob", "b.")] {
            let mut raw = raw_as(env.gw.kafka_addr(), user).await;
            let listed = within(
                CALL,
                "ListTransactions",
                raw.call(&ListTransactionsRequest::default(), 0),
            )
            .await
            .expect("ListTransactions");
            assert_eq!(listed.error_code, 0);
            let listed: BTreeSet<String> = listed
                .transaction_states
                .iter()
                .map(|t| t.transactional_id.to_string())
                .collect();
            assert_eq!(
                listed,
                strip_all(&physical, prefix),
                "{user}'s transactions"
            );
            assert!(listed.contains("tx"));
        }
    } else {
        eprintln!("tansu has no ListTransactions: transaction listings not checked");
    }
    close(pa);
    close(pb);

    // Each tenant reads its own committed records; tansu holds them under the prefixes.
    let committed = [("isolation.level", "read_committed")];
    for (user, k) in [("alice", "a"), ("bob", "b")] {
        let c = consumer(&gw, "tx-reader", &plain(user), &committed);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("orders", 0, Offset::Beginning)
            .expect("tpl");
        c.assign(&tpl).expect("assign");
        let got = take(&c, 4, &format!("{user} read_committed")).await;
        let want: Vec<String> = [keys(&format!("{k}0"), 2), keys(&format!("{k}1"), 2)].concat();
        assert_eq!(key_list(&got), want, "{user}'s transactional records");
        close(c);
    }
    let physical = topic_names(&env.direct(), &direct());
    assert!(physical.contains("a.orders") && physical.contains("b.orders"));
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Guessing another tenant's names and ids
// ---------------------------------------------------------------------------------------------

/// Tenant a asks for b's physical name, b's topic id, b's configs: all behave as if they did
/// not exist; a's listings hold no b topic and no prefix; writing to a guessed name stays in
/// a's namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_names_and_ids_do_not_exist() {
    let env = Env::start().await;
    env.tenants().await;
    let gw = env.bootstrap();
    create_topics(&gw, &plain("alice"), &[("orders", 1)]).await;
    create_topic_with_config(&gw, &plain("bob"), "orders", ("retention.ms", B_RETENTION)).await;
    create_topics(&gw, &plain("bob"), &[("payments", 1)]).await;
    produce_as(&gw, &plain("bob"), "orders", &keys("b", 3)).await;
    produce_as(&gw, &plain("alice"), "orders", &keys("a", 1)).await;

    // Topic ids learnt directly from tansu.
    let b_orders = direct_topic(env.broker.addr, "b.orders").await;
    let a_orders = direct_topic(env.broker.addr, "a.orders").await;
    assert!(!b_orders.topic_id.is_nil(), "tansu gives topics ids");

    let mut raw = raw_as(env.gw.kafka_addr(), "alice").await;
    // b's physical name, b's other topic's logical name: unknown.
    for guess in ["b.orders", "payments", "b.payments"] {
        let md = metadata_v12(&mut raw, Some(&[guess])).await;
        assert_eq!(md.topics.len(), 1, "{guess}: {md:?}");
        let t = &md.topics[0];
        assert_eq!(t.error_code, UNKNOWN_TOPIC_OR_PARTITION, "{guess}: {t:?}");
        assert!(t.partitions.is_empty(), "{guess}: {t:?}");
        assert!(t.topic_id.is_nil(), "{guess}: no topic id leaks: {t:?}");
    }
    // The all-topics listing: a's own topic, no prefix.
    let md = metadata_v12(&mut raw, None).await;
    let names: BTreeSet<String> = md
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    assert_eq!(names, BTreeSet::from(["orders".to_string()]), "alice lists");
    let own = md
        .topics
        .iter()
        .find(|t| name_of(t).as_deref() == Some("orders"))
        .expect("orders listed");
    assert_eq!(own.topic_id, a_orders.topic_id, "the physical topic's id");
    assert!(
        md.topics.iter().all(|t| t.topic_id != b_orders.topic_id),
        "b's topic id is not in a's listing"
    );

    // DescribeTopicPartitions: the same, named and listed.
    let named = describe_topic_partitions(&mut raw, &["orders", "b.orders"]).await;
    let by_name: BTreeMap<String, i16> = named
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                t.error_code,
            )
        })
        .collect();
    assert_eq!(by_name.get("orders"), Some(&0), "{named:?}");
    assert_eq!(
        by_name.get("b.orders"),
        Some(&UNKNOWN_TOPIC_OR_PARTITION),
        "{named:?}"
    );
    let mut direct_raw = RawClient::connect(env.broker.addr).await.expect("connect");
    let physical_all = describe_topic_partitions(&mut direct_raw, &[]).await;
    if physical_all.topics.len() > 1 {
        let all = describe_topic_partitions(&mut raw, &[]).await;
        let listed: BTreeSet<String> = all
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
            .collect();
        assert_eq!(
            listed,
            BTreeSet::from(["orders".to_string()]),
            "alice's DescribeTopicPartitions of every topic: {all:?}"
        );
    } else {
        eprintln!("tansu's DescribeTopicPartitions lists no topics when none is named");
    }

    // b's topic id: unknown in Metadata and in Fetch, and no records come back.
    let by_id = metadata_by_id(&mut raw, &b_orders).await;
    let t = &by_id.topics[0];
    assert_eq!(t.error_code, UNKNOWN_TOPIC_ID, "Metadata by b's id: {t:?}");
    assert!(
        t.partitions.is_empty() && name_of(t).as_deref() != Some("b.orders"),
        "{t:?}"
    );
    let own_by_id = metadata_by_id(&mut raw, &a_orders).await;
    assert_eq!(own_by_id.topics[0].error_code, 0, "{own_by_id:?}");
    assert_eq!(
        name_of(&own_by_id.topics[0]).as_deref(),
        Some("orders"),
        "own id, logical name"
    );

    let mut leader = raw_as(env.broker_port(), "alice").await;
    let fetched = fetch_by_id(&mut leader, &b_orders).await;
    let records: usize = fetched
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .sum();
    assert_eq!(records, 0, "no bytes of b's records: {fetched:?}");
    let codes: Vec<i16> = std::iter::once(fetched.error_code)
        .chain(
            fetched
                .responses
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        )
        .collect();
    assert!(
        codes.contains(&UNKNOWN_TOPIC_ID),
        "Fetch by b's topic id answers UNKNOWN_TOPIC_ID: {fetched:?}"
    );
    // Control: a's own topic id fetches a's record.
    let fetched = fetch_by_id(&mut leader, &a_orders).await;
    let p = &fetched.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "{fetched:?}");
    assert!(
        p.records.as_ref().is_some_and(|r| !r.is_empty()),
        "{fetched:?}"
    );

    // DescribeConfigs of b's physical name: the answer for a topic that does not exist.
    let guessed = describe_topic_configs(&mut raw, "b.orders").await;
    let missing = describe_topic_configs(&mut raw, "no-such-topic").await;
    let (g, m) = (&guessed.results[0], &missing.results[0]);
    // tansu answers an unknown topic with no error and no configs; Kafka with
    // UNKNOWN_TOPIC_OR_PARTITION: either is "does not exist", b's retention.ms is not.
    assert!(
        g.error_code == m.error_code || g.error_code == UNKNOWN_TOPIC_OR_PARTITION,
        "{guessed:?} vs {missing:?}"
    );
    assert!(
        g.configs.is_empty(),
        "no configuration of b's topic: {guessed:?}"
    );
    assert_eq!(
        g.resource_name.as_str(),
        "b.orders",
        "answered under the asked name"
    );
    let own = describe_topic_configs(&mut raw, "orders").await;
    assert_eq!(own.results[0].error_code, 0, "{own:?}");
    assert_eq!(own.results[0].resource_name.as_str(), "orders");
    assert!(
        !own.results[0]
            .configs
            .iter()
            .any(|c| c.value.as_ref().map(|v| v.as_str()) == Some(B_RETENTION)),
        "alice's own topic does not show b's configuration: {own:?}"
    );
    // Control: bob sees his configuration under his logical name.
    let mut bob = raw_as(env.gw.kafka_addr(), "bob").await;
    let his = describe_topic_configs(&mut bob, "orders").await;
    assert!(
        his.results[0]
            .configs
            .iter()
            .any(|c| c.name.as_str() == "retention.ms"
                && c.value.as_ref().map(|v| v.as_str()) == Some(B_RETENTION)),
        "bob's orders has his retention.ms: {his:?}"
    );

    // Reading `orders` is reading a's; writing `b.orders` writes a's own `b.orders`.
    let got = read(&gw, &plain("alice"), "orders", 1).await;
    assert_eq!(key_list(&got), ["a-0"]);
    produce_as(&gw, &plain("alice"), "b.orders", &keys("x", 2)).await;
    assert_eq!(
        high_watermark(&env.direct(), &direct(), "b.orders"),
        3,
        "b's topic untouched"
    );
    let physical = topic_names(&env.direct(), &direct());
    assert!(physical.contains("a.b.orders"), "{physical:?}");
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 5. ACLs on logical names
// ---------------------------------------------------------------------------------------------

/// With ACLs on, an ACL for alice on topic `orders` (a logical name) allows her `orders`
/// and nothing else; an ACL naming the physical `a.orders` does not grant `orders`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_name_logical_topics() {
    let env = Env::start_with(|c| {
        c.authorization.enabled = true;
        c.authorization.super_users = vec!["root".into()];
    })
    .await;
    env.tenants().await;
    let admin = env.admin();
    put_service_account(admin, "root", PASSWORD, &[]).await;
    put_tenant_account(admin, "carol", PASSWORD, "a").await;
    put_acl(
        admin,
        "alice-orders",
        json!({"principal": "alice", "resourceType": "topic", "patternType": "literal",
               "name": "orders", "operations": ["create", "write", "read", "describe"],
               "permission": "allow"}),
    )
    .await;
    put_acl(
        admin,
        "alice-group",
        json!({"principal": "alice", "resourceType": "group", "patternType": "literal",
               "name": "alice-g", "operations": ["read", "describe"], "permission": "allow"}),
    )
    .await;
    put_acl(
        admin,
        "carol-physical",
        json!({"principal": "carol", "resourceType": "topic", "patternType": "literal",
               "name": "a.orders", "operations": ["write", "read", "describe"],
               "permission": "allow"}),
    )
    .await;
    let gw = env.bootstrap();
    // The super user is in no virtual cluster: it works on physical names.
    create_topics(&gw, &plain("root"), &[("a.other", 1), ("b.orders", 1)]).await;
    // alice creates her `orders` (a.orders) herself: her create permission is on the
    // logical name.
    create_topics(&gw, &plain("alice"), &[("orders", 1)]).await;

    let p = producer(&gw, &plain("alice"));
    produce(&p, "orders", &keys("a", 2))
        .await
        .expect("alice may write her orders");
    let err = produce(&p, "other", &keys("x", 1))
        .await
        .expect_err("alice may not write her `other`");
    assert_eq!(
        code(&err),
        RDKafkaErrorCode::TopicAuthorizationFailed,
        "{err}"
    );
    close(p);
    let c = consumer(&gw, "alice-g", &plain("alice"), &[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("orders", 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    assert_eq!(
        key_list(&take(&c, 2, "alice reads orders").await),
        keys("a", 2)
    );
    close(c);
    assert_eq!(
        topic_names(&gw, &plain("alice")),
        BTreeSet::from(["orders".to_string()]),
        "alice may describe only her orders"
    );
    // The physical name in an ACL is another logical name: carol cannot write `orders`.
    produce_denied(
        &gw,
        "carol",
        "orders",
        "carol's ACL names a.orders, not orders",
    )
    .await;
    // bob has no ACL on his `orders`.
    produce_denied(&gw, "bob", "orders", "bob has no ACL").await;
    assert_eq!(high_watermark(&env.direct(), &direct(), "a.orders"), 2);
    assert_eq!(high_watermark(&env.direct(), &direct(), "b.orders"), 0);
    env.stop().await;
}

/// One Kafka ACL binding for the kafkajs client (Kafka's numeric codes: topic 2, cluster 4;
/// literal 3; operations create 5, write 4, alter 7, describe 8; allow 3).
fn binding(resource_type: u8, name: &str, principal: &str, operation: u8) -> serde_json::Value {
    json!({"resourceType": resource_type, "resourceName": name, "resourcePatternType": 3,
           "principal": principal, "host": "*", "operation": operation, "permissionType": 3})
}

/// Every binding: resource type, pattern type, operation and permission ANY.
fn any_filter() -> serde_json::Value {
    json!({"resourceType": 1, "resourcePatternType": 1, "operation": 1, "permissionType": 1})
}

/// A DescribeAcls answer as sorted `(resource, principal, operation)` triples.
fn described(answer: &serde_json::Value) -> BTreeSet<(String, String, i64)> {
    let mut out = BTreeSet::new();
    for r in answer["resources"].as_array().expect("resources") {
        for a in r["acls"].as_array().expect("acls") {
            out.insert((
                r["resourceName"].as_str().expect("name").to_string(),
                a["principal"].as_str().expect("principal").to_string(),
                a["operation"].as_i64().expect("operation"),
            ));
        }
    }
    out
}

/// `user` (SASL/PLAIN) producing one record to `topic` gets TOPIC_AUTHORIZATION_FAILED.
async fn produce_denied(gw: &str, user: &str, topic: &str, why: &str) {
    let p = producer(gw, &plain(user));
    let err = produce(&p, topic, &keys("x", 1)).await.expect_err(why);
    assert_eq!(
        code(&err),
        RDKafkaErrorCode::TopicAuthorizationFailed,
        "{why}: {err}"
    );
    close(p);
}

fn triples(list: &[(&str, &str, i64)]) -> BTreeSet<(String, String, i64)> {
    list.iter()
        .map(|(n, p, o)| (n.to_string(), p.to_string(), *o))
        .collect()
}

/// The Kafka ACL APIs inside a virtual cluster manage the tenant's own gateway ACLs: alice,
/// whom the operator made tenant a's ACL administrator (ALTER on tenant a's cluster), grants
/// herself topic creation and carol (also in a) writes on `orders` with kafkajs; the ACLs
/// are stored for tenant a only, on logical names, and apply at once. A grant to `User:*`
/// in tenant a gives tenant b's bob nothing; bob may not manage ACLs at all; tenant b's
/// administrator sees none of tenant a's ACLs. Deleting carol's binding takes her write away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_admins_manage_their_acls_with_the_kafka_acl_apis() {
    let env = Env::start_with(|c| c.authorization.enabled = true).await;
    env.tenants().await;
    let admin = env.admin();
    put_tenant_account(admin, "carol", PASSWORD, "a").await;
    put_tenant_account(admin, "dave", PASSWORD, "b").await;
    for (who, vcluster) in [("alice", "a"), ("dave", "b")] {
        put_acl(
            admin,
            &format!("{who}-acl-admin"),
            json!({"principal": who, "resourceType": "cluster", "name": "kafka-cluster",
                   "operations": ["alter", "describe"], "vcluster": vcluster}),
        )
        .await;
    }
    let gw = env.bootstrap();
    let alice = Some(("plain", "alice", PASSWORD));
    let bob = Some(("plain", "bob", PASSWORD));
    let dave = Some(("plain", "dave", PASSWORD));
    let grants = json!([
        binding(2, "*", "User:alice", 5),
        binding(2, "orders", "User:carol", 4),
        binding(2, "orders", "User:*", 8),
    ])
    .to_string();
    let created = kafkajs(&gw, alice, &["acl-create", &grants], JS)
        .await
        .unwrap_or_else(|e| panic!("alice creates ACLs: {e}"));
    assert_eq!(created["created"], true);
    // Stored as the gateway's ACLs of tenant a, on logical names.
    let (status, stored) = http(admin, "GET", "/api/v1/acls", &[], b"").await;
    assert_eq!(status, 200, "{stored}");
    let carols: Vec<&serde_json::Value> = stored["items"]
        .as_array()
        .expect("acl list")
        .iter()
        .map(|a| &a["spec"])
        .filter(|a| a["principal"] == "carol")
        .collect();
    assert_eq!(carols.len(), 1, "{stored}");
    assert_eq!(carols[0]["vcluster"], "a");
    assert_eq!(carols[0]["name"], "orders");
    assert_eq!(carols[0]["operations"], json!(["write"]));

    // The grants apply at once: alice creates `orders`, carol writes it.
    create_topics(&gw, &plain("alice"), &[("orders", 1)]).await;
    let p = producer(&gw, &plain("carol"));
    produce(&p, "orders", &keys("c", 2))
        .await
        .expect("carol may write tenant a's orders");
    close(p);
    assert_eq!(high_watermark(&env.direct(), &direct(), "a.orders"), 2);

    // `User:*` in tenant a is not everyone: bob's `orders` (b.orders) stays out of reach,
    // and bob may not manage ACLs.
    create_topics(&env.direct(), &direct(), &[("b.orders", 1)]).await;
    assert!(
        !topic_names(&gw, &plain("bob")).contains("orders"),
        "tenant a's describe grant reached tenant b"
    );
    let err = kafkajs(&gw, bob, &["acl-describe", &any_filter().to_string()], JS)
        .await
        .expect_err("bob is no ACL administrator");
    assert_eq!(err["type"], "CLUSTER_AUTHORIZATION_FAILED", "{err}");
    let err = kafkajs(&gw, bob, &["acl-create", &grants], JS)
        .await
        .expect_err("bob is no ACL administrator");
    assert_eq!(err["type"], "CLUSTER_AUTHORIZATION_FAILED", "{err}");

    // Each administrator sees its own tenant's ACLs only.
    let seen = kafkajs(&gw, alice, &["acl-describe", &any_filter().to_string()], JS)
        .await
        .unwrap_or_else(|e| panic!("alice describes ACLs: {e}"));
    let want = triples(&[
        ("*", "User:alice", 5),
        ("kafka-cluster", "User:alice", 7),
        ("kafka-cluster", "User:alice", 8),
        ("orders", "User:*", 8),
        ("orders", "User:carol", 4),
    ]);
    assert_eq!(described(&seen), want, "{seen}");
    let seen = kafkajs(&gw, dave, &["acl-describe", &any_filter().to_string()], JS)
        .await
        .unwrap_or_else(|e| panic!("dave describes ACLs: {e}"));
    let want = triples(&[
        ("kafka-cluster", "User:dave", 7),
        ("kafka-cluster", "User:dave", 8),
    ]);
    assert_eq!(described(&seen), want, "{seen}");
    // dave's delete-everything filter touches nothing of tenant a.
    let deleted = kafkajs(
        &gw,
        dave,
        &[
            "acl-delete",
            &json!([{"resourceType": 2, "resourcePatternType": 1,
            "operation": 1, "permissionType": 1}])
            .to_string(),
        ],
        JS,
    )
    .await
    .unwrap_or_else(|e| panic!("dave deletes: {e}"));
    assert_eq!(
        deleted["filterResponses"][0]["matchingAcls"],
        json!([]),
        "{deleted}"
    );

    // alice takes carol's write away: one binding matched and deleted, then refused.
    let filter = json!([{"resourceType": 2, "resourceName": "orders", "resourcePatternType": 3,
        "principal": "User:carol", "operation": 1, "permissionType": 1}]);
    let deleted = kafkajs(&gw, alice, &["acl-delete", &filter.to_string()], JS)
        .await
        .unwrap_or_else(|e| panic!("alice deletes: {e}"));
    let matching = deleted["filterResponses"][0]["matchingAcls"]
        .as_array()
        .expect("matching ACLs");
    assert_eq!(matching.len(), 1, "{deleted}");
    assert_eq!(matching[0]["resourceName"], "orders");
    assert_eq!(matching[0]["operation"], 4);
    produce_denied(&gw, "carol", "orders", "carol's write was deleted").await;
    assert_eq!(high_watermark(&env.direct(), &direct(), "a.orders"), 2);
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Alias topics
// ---------------------------------------------------------------------------------------------

/// Tenant a's `legacy` is the physical `legacy.orders`, both ways; tenant b has no `legacy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_topic_reads_and_writes_the_physical_topic() {
    let env = Env::start().await;
    env.tenants().await;
    create_topics(&env.direct(), &direct(), &[("legacy.orders", 1)]).await;
    put_alias(env.admin(), "a-legacy", "a", "legacy", "legacy.orders").await;
    let gw = env.bootstrap();

    produce_as(&gw, &plain("alice"), "legacy", &keys("via-alias", 3)).await;
    let got = read(&env.direct(), &direct(), "legacy.orders", 3).await;
    assert_eq!(
        key_list(&got),
        keys("via-alias", 3),
        "written through the alias"
    );
    produce_as(
        &env.direct(),
        &direct(),
        "legacy.orders",
        &keys("direct", 2),
    )
    .await;
    let got = read(&gw, &plain("alice"), "legacy", 5).await;
    assert_eq!(
        key_list(&got),
        [keys("via-alias", 3), keys("direct", 2)].concat(),
        "read through the alias"
    );
    assert!(got.iter().all(|r| r.topic == "legacy"), "{got:?}");
    assert_eq!(high_watermark(&gw, &plain("alice"), "legacy"), 5);
    let physical = topic_names(&env.direct(), &direct());
    assert!(
        !physical.contains("a.legacy"),
        "an alias is not prefixed: {physical:?}"
    );

    // Tenant b has no such alias: `legacy` does not exist for bob.
    let mut raw = raw_as(env.gw.kafka_addr(), "bob").await;
    let md = metadata_v12(&mut raw, Some(&["legacy"])).await;
    assert_eq!(
        md.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "{md:?}"
    );
    let md = metadata_v12(&mut raw, Some(&["legacy.orders"])).await;
    assert_eq!(
        md.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "{md:?}"
    );

    // An alias whose target lies inside the tenant's own prefix: `current` is `a.orders-v2`,
    // and `orders-v2` (whose plain mapping is that target) is not a second way in: it does
    // not exist, under the name alice asked for.
    create_topics(&env.direct(), &direct(), &[("a.orders-v2", 1)]).await;
    put_alias(env.admin(), "a-current", "a", "current", "a.orders-v2").await;
    let mut raw = raw_as(env.gw.kafka_addr(), "alice").await;
    let md = metadata_v12(&mut raw, Some(&["orders-v2", "current"])).await;
    let seen: Vec<(Option<String>, i16)> = md
        .topics
        .iter()
        .map(|t| (name_of(t), t.error_code))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Some("orders-v2".to_string()), UNKNOWN_TOPIC_OR_PARTITION),
            (Some("current".to_string()), 0)
        ],
        "{md:?}"
    );
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Concentrated topics
// ---------------------------------------------------------------------------------------------

/// `events-1..3` of tenant a live in one physical topic; three groups each read only their
/// logical topic's records, at the physical offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concentrated_topics_share_one_physical_topic() {
    let env = Env::start().await;
    env.tenants().await;
    create_topics(&env.direct(), &direct(), &[("a-events-all", 1)]).await;
    put_concentration_rule(env.admin(), "a-events", "a", "events-.*", "a-events-all").await;
    let gw = env.bootstrap();

    // Interleaved, so that a consumer given another logical topic's records would see them
    // among its first ones.
    let counts = [("events-1", 2usize), ("events-2", 3), ("events-3", 4)];
    let p = producer(&gw, &plain("alice"));
    for i in 0..4 {
        for (topic, n) in counts {
            if i < n {
                produce(&p, topic, &[format!("{topic}-{i}")])
                    .await
                    .unwrap_or_else(|e| panic!("alice producing to {topic}: {e}"));
            }
        }
    }
    close(p);

    // Physically: all nine records in one topic, tagged by the gateway.
    let physical = read(&env.direct(), &direct(), "a-events-all", 9).await;
    let physical_offset: BTreeMap<String, i64> =
        physical.iter().map(|r| (r.key.clone(), r.offset)).collect();
    assert_eq!(physical_offset.len(), 9);
    for r in &physical {
        assert!(!r.headers.is_empty(), "the gateway tags each record: {r:?}");
    }
    let names = topic_names(&env.direct(), &direct());
    for (topic, _) in counts {
        assert!(
            !names.contains(&format!("a.{topic}")),
            "{topic} has no own topic"
        );
    }

    // One group per logical topic, joining at the same time.
    let consumers: Vec<_> = counts
        .iter()
        .map(|(topic, _)| {
            let c = consumer(&gw, &format!("cg-{topic}"), &plain("alice"), &[]);
            c.subscribe(&[topic]).expect("subscribe");
            c
        })
        .collect();
    let reads = futures_join(
        consumers
            .iter()
            .zip(counts)
            .map(|(c, (topic, n))| async move { (topic, take(c, n, topic).await) }),
    )
    .await;
    for (topic, got) in reads {
        let n = counts.iter().find(|(t, _)| *t == topic).unwrap().1;
        assert_eq!(
            key_list(&got),
            keys(topic, n),
            "{topic}'s group reads its records only"
        );
        for r in &got {
            assert_eq!(r.topic, topic);
            assert_eq!(
                r.offset, physical_offset[&r.key],
                "{topic}: offsets are the physical topic's"
            );
        }
    }
    // A committed offset of a logical topic is answered under its name; a listing of the
    // group's offsets does not show the physical topic.
    blocking(|| consumers[0].commit_consumer_state(CommitMode::Sync)).expect("commit");
    let mut raw = raw_as(env.gw.kafka_addr(), "alice").await;
    let named = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(StrBytes::from_static_str("cg-events-1")))
        .with_topics(Some(vec![
            kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopics::default()
                .with_name(topic_name("events-1"))
                .with_partition_indexes(vec![0]),
        ]))]);
    let resp = within(CALL, "OffsetFetch by name", raw.call(&named, 8))
        .await
        .expect("OffsetFetch v8");
    let committed = &resp.groups[0].topics[0];
    assert_eq!(committed.name.as_str(), "events-1", "{resp:?}");
    assert!(committed.partitions[0].committed_offset > 0, "{resp:?}");
    let all = offsets_of_group(&mut raw, "cg-events-1").await;
    assert!(
        all.keys().all(|(t, _)| t != "a-events-all"),
        "the physical topic shows in the group's offsets: {all:?}"
    );
    for c in consumers {
        close(c);
    }
    // The physical topic that holds them is not one of the tenant's topics.
    let listed = topic_names(&gw, &plain("alice"));
    assert!(!listed.contains("a-events-all"), "{listed:?}");
    env.stop().await;
}

/// Awaits every future concurrently (in order of the results).
async fn futures_join<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.expect("completed")).collect()
}

// ---------------------------------------------------------------------------------------------
// 8. Interceptors scoped to a tenant
// ---------------------------------------------------------------------------------------------

/// `add-header` scoped to virtual cluster a: a's records carry the header, b's do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interceptor_scoped_to_one_tenant() {
    let env = Env::start().await;
    env.tenants().await;
    let admin = env.admin();
    upload_plugin(admin, "add-header", "add-header").await;
    install(
        admin,
        "tenant-a-tag",
        json!({"plugin": "add-header", "scope": {"vcluster": "a"},
               "config": {"headers": {"x-tenant": "a"}}}),
    )
    .await;
    let gw = env.bootstrap();
    create_topics(&gw, &plain("alice"), &[("orders", 1)]).await;
    create_topics(&gw, &plain("bob"), &[("orders", 1)]).await;
    produce_as(&gw, &plain("alice"), "orders", &keys("a", 3)).await;
    produce_as(&gw, &plain("bob"), "orders", &keys("b", 3)).await;

    let header = |r: &Rec| -> Vec<String> {
        r.headers
            .iter()
            .filter(|(k, _)| k == "x-tenant")
            .map(|(_, v)| v.clone())
            .collect()
    };
    for r in read(&env.direct(), &direct(), "a.orders", 3).await {
        assert_eq!(header(&r), ["a"], "a's record is tagged: {r:?}");
    }
    for r in read(&env.direct(), &direct(), "b.orders", 3).await {
        assert!(header(&r).is_empty(), "b's record is not tagged: {r:?}");
    }
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 9. Passthrough
// ---------------------------------------------------------------------------------------------

/// A passthrough virtual cluster, and a principal in none, see the physical cluster as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_sees_physical_names() {
    let env = Env::start().await;
    env.tenants().await;
    let admin = env.admin();
    put_service_account(admin, "pat", PASSWORD, &[]).await;
    put_vcluster(
        admin,
        "p",
        json!({"passthrough": true, "serviceAccounts": ["pat"]}),
    )
    .await;
    put_service_account(admin, "root", PASSWORD, &[]).await;
    let gw = env.bootstrap();
    create_topics(&gw, &plain("alice"), &[("orders", 1)]).await;
    produce_as(&gw, &plain("alice"), "orders", &keys("a", 2)).await;

    for user in ["pat", "root"] {
        let names = topic_names(&gw, &plain(user));
        assert!(names.contains("a.orders"), "{user} sees {names:?}");
        assert!(!names.contains("orders"), "{user} sees {names:?}");
        let got = read(&gw, &plain(user), "a.orders", 2).await;
        assert_eq!(key_list(&got), keys("a", 2), "{user} reads a.orders");
    }
    // pat's writes and topics are physical, unprefixed.
    create_topics(&gw, &plain("pat"), &[("shared-topic", 1)]).await;
    produce_as(&gw, &plain("pat"), "a.orders", &keys("pat", 1)).await;
    let physical = topic_names(&env.direct(), &direct());
    assert!(physical.contains("shared-topic"), "{physical:?}");
    assert!(!physical.contains("p.shared-topic"), "{physical:?}");
    let got = read(&gw, &plain("alice"), "orders", 3).await;
    assert_eq!(key_list(&got), [keys("a", 2), keys("pat", 1)].concat());
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 10. Limits
// ---------------------------------------------------------------------------------------------

/// Connects, authenticates as `user` and asks for metadata; `Err` says where it was refused.
async fn try_session(addr: SocketAddr, user: &str) -> Result<RawClient, String> {
    let mut raw = RawClient::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match within(CALL, "SASL/PLAIN", raw.sasl_plain(user, PASSWORD)).await {
        Ok(0) => {}
        Ok(code) => return Err(format!("SaslAuthenticate error code {code}")),
        Err(e) => return Err(format!("connection failed during SASL: {e}")),
    }
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(None);
    match within(CALL, "Metadata", raw.call(&req, 12)).await {
        Ok(_) => Ok(raw),
        Err(e) => Err(format!("connection failed at the first request: {e}")),
    }
}

/// `maxConnections: 2` on tenant a refuses a's third connection; b is unaffected; a closed
/// connection frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_per_tenant() {
    let env = Env::start().await;
    env.tenants().await;
    put_vcluster(
        env.admin(),
        "a",
        json!({"prefix": "a.", "limits": {"maxConnections": 2}}),
    )
    .await;
    let addr = env.gw.kafka_addr();
    let first = try_session(addr, "alice")
        .await
        .expect("alice's first connection");
    let second = try_session(addr, "alice")
        .await
        .expect("alice's second connection");
    let third = try_session(addr, "alice").await;
    let refusal = match third {
        Ok(_) => panic!("alice's third connection was served"),
        Err(how) => how,
    };
    eprintln!("the third connection was refused: {refusal}");
    // Another tenant is not counted against a's limit.
    let mut bobs = Vec::new();
    for i in 0..3 {
        bobs.push(
            try_session(addr, "bob")
                .await
                .unwrap_or_else(|e| panic!("bob's connection {i}: {e}")),
        );
    }
    // Closing one of a's connections frees a place (the gateway notices the close
    // asynchronously: retry with fresh connections for a while).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        match try_session(addr, "alice").await {
            Ok(raw) => break raw,
            Err(e) if Instant::now() > deadline => {
                panic!("a closed connection never freed its place: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    drop((second, again, bobs));
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 11. A second client: kafkajs
// ---------------------------------------------------------------------------------------------

const JS: Duration = Duration::from_secs(60);

/// kafkajs (pure JavaScript) in tenant a: creates, produces and consumes its `orders`, lists
/// only it, and cannot see tenant b's topic; bob (kafkajs with SCRAM-SHA-256) likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkajs_client_is_isolated_too() {
    let env = Env::start().await;
    env.tenants().await;
    let gw = env.bootstrap();
    let alice = Some(("plain", "alice", PASSWORD));
    let bob = Some(("scram-sha-256", "bob", PASSWORD));

    let ok = |r: Result<serde_json::Value, serde_json::Value>, what: &str| {
        r.unwrap_or_else(|e| panic!("kafkajs {what}: {e}"))
    };
    // bob first, so that a shared topic would show his records first in alice's.
    let created = ok(
        kafkajs(&gw, bob, &["create", "orders", "1"], JS).await,
        "bob create",
    );
    assert_eq!(created["created"], true);
    let produced = ok(
        kafkajs(&gw, bob, &["produce", "orders", "3", "b"], JS).await,
        "bob produce",
    );
    assert_eq!(produced["offsets"], json!([0, 1, 2]));

    let created = ok(
        kafkajs(&gw, alice, &["create", "orders", "1"], JS).await,
        "alice create",
    );
    assert_eq!(created["created"], true, "alice's `orders` is not bob's");
    let produced = ok(
        kafkajs(&gw, alice, &["produce", "orders", "4", "a"], JS).await,
        "alice produce",
    );
    assert_eq!(produced["offsets"], json!([0, 1, 2, 3]));
    let consumed = ok(
        kafkajs(&gw, alice, &["consume", "orders", "js-g", "4"], JS).await,
        "alice consume",
    );
    let got: Vec<(String, i64, String)> = consumed["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap_or_default().to_string(),
                r["offset"].as_i64().unwrap_or(-1),
                r["topic"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, i64, String)> = (0..4)
        .map(|i| (format!("a-{i}"), i, "orders".to_string()))
        .collect();
    assert_eq!(got, want, "alice consumes her records only");

    let listed = ok(kafkajs(&gw, alice, &["topics"], JS).await, "alice topics");
    assert_eq!(listed["topics"], json!(["orders"]), "alice lists");
    for guess in ["b.orders", "payments"] {
        let err = kafkajs(&gw, alice, &["metadata", guess], JS)
            .await
            .expect_err("another tenant's topic does not exist");
        assert_eq!(err["type"], "UNKNOWN_TOPIC_OR_PARTITION", "{guess}: {err}");
    }
    let listed = ok(kafkajs(&gw, bob, &["topics"], JS).await, "bob topics");
    assert_eq!(listed["topics"], json!(["orders"]), "bob lists");
    // Without authorization there are no tenant ACLs to manage (a broker without an
    // authorizer answers the same).
    let err = kafkajs(&gw, alice, &["acl-describe", &any_filter().to_string()], JS)
        .await
        .expect_err("no ACLs without authorization");
    assert_eq!(err["type"], "SECURITY_DISABLED", "{err}");

    // Physically: each tenant's records under its prefix.
    assert_eq!(high_watermark(&env.direct(), &direct(), "a.orders"), 4);
    assert_eq!(high_watermark(&env.direct(), &direct(), "b.orders"), 3);
    let got = read(&env.direct(), &direct(), "a.orders", 4).await;
    assert_eq!(key_list(&got), keys("a", 4));
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 12. A third client: kafka-python
// ---------------------------------------------------------------------------------------------

/// kafka-python (pure Python, its own SASL code, FindCoordinator v4+ with batched keys) with
/// two SCRAM-SHA-256 accounts, each in its own virtual cluster: each tenant's consumer group
/// joins, reads exactly what its tenant produced (compressed with another codec each),
/// commits, and resumes from its commit; each lists only its own topic and group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_groups_join_and_resume_inside_each_tenant() {
    let env = Env::start().await;
    env.tenants().await;
    let gw = env.bootstrap();
    let alice = Some(("scram-sha-256", "alice", PASSWORD));
    let bob = Some(("scram-sha-256", "bob", PASSWORD));
    let codec = |c: &str| vec![("KAFKA_COMPRESSION", c.to_string())];
    let py = |sasl, env: Vec<(&'static str, String)>, args: Vec<String>| {
        let gw = gw.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kafka_python(&gw, sasl, &env, &args, JS)
                .await
                .unwrap_or_else(|e| panic!("kafka-python {args:?}: {e}"))
        }
    };
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let records = |answer: &serde_json::Value| -> Vec<(String, i64, String)> {
        answer["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                (
                    r["key"].as_str().unwrap_or_default().to_string(),
                    r["offset"].as_i64().unwrap_or(-1),
                    r["topic"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let want = |prefix: &str, from: i64, to: i64| -> Vec<(String, i64, String)> {
        (from..to)
            .map(|i| (format!("{prefix}-{i}"), i, "orders".to_string()))
            .collect()
    };

    py(bob, vec![], a(&["create", "orders", "1"])).await;
    let produced = py(bob, codec("gzip"), a(&["produce", "orders", "3", "b"])).await;
    assert_eq!(produced["offsets"], json!([0, 1, 2]));
    py(alice, vec![], a(&["create", "orders", "1"])).await;
    let produced = py(alice, codec("lz4"), a(&["produce", "orders", "4", "a"])).await;
    assert_eq!(produced["offsets"], json!([0, 1, 2, 3]));

    // alice's group reads two, commits, and the next member of the group resumes there.
    let first = py(alice, vec![], a(&["consume", "orders", "py-g", "2"])).await;
    assert_eq!(records(&first), want("a", 0, 2), "alice's first read");
    let rest = py(alice, vec![], a(&["consume", "orders", "py-g", "2"])).await;
    assert_eq!(
        records(&rest),
        want("a", 2, 4),
        "alice resumes from her commit"
    );
    // bob's group of the same name is another group: it starts from the beginning.
    let bobs = py(bob, vec![], a(&["consume", "orders", "py-g", "3"])).await;
    assert_eq!(records(&bobs), want("b", 0, 3), "bob reads his own records");

    for (who, sasl) in [("alice", alice), ("bob", bob)] {
        let listed = py(sasl, vec![], a(&["topics"])).await;
        assert_eq!(listed["topics"], json!(["orders"]), "{who} lists");
        let groups = py(sasl, vec![], a(&["groups"])).await;
        assert_eq!(groups["groups"], json!(["py-g"]), "{who}'s groups");
    }
    // Physically: each tenant's records under its prefix (read, not the high watermark:
    // tansu's ends at the last batch's base offset + 1, and kafka-python batches them).
    let got = read(&env.direct(), &direct(), "a.orders", 4).await;
    assert_eq!(key_list(&got), keys("a", 4));
    let got = read(&env.direct(), &direct(), "b.orders", 3).await;
    assert_eq!(key_list(&got), keys("b", 3));
    env.stop().await;
}

/// `maxTopics` and `maxPartitions`: CreateTopics past either is refused with
/// POLICY_VIOLATION, counting only the tenant's own topics; another tenant is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_and_partition_limits_per_tenant() {
    let env = Env::start().await;
    env.tenants().await;
    let admin = env.admin();
    put_vcluster(
        admin,
        "a",
        json!({"prefix": "a.", "limits": {"maxTopics": 2}}),
    )
    .await;
    let gw = env.bootstrap();
    create_topics(&gw, &plain("alice"), &[("t1", 1), ("t2", 1)]).await;
    let refused = try_create_topics(&gw, &plain("alice"), &[("t3", 1)]).await;
    assert!(
        matches!(&refused[..], [Err((t, RDKafkaErrorCode::PolicyViolation))] if t == "t3"),
        "alice's third topic: {refused:?}"
    );
    // bob's topics are his own count.
    create_topics(&gw, &plain("bob"), &[("t1", 1), ("t2", 1), ("t3", 1)]).await;
    let physical = topic_names(&env.direct(), &direct());
    assert!(!physical.contains("a.t3"), "{physical:?}");
    assert!(physical.contains("b.t3"), "{physical:?}");

    // Partitions: two of three used; two more are too many, one fits.
    put_vcluster(
        admin,
        "a",
        json!({"prefix": "a.", "limits": {"maxPartitions": 3}}),
    )
    .await;
    let refused = try_create_topics(&gw, &plain("alice"), &[("t3", 2)]).await;
    assert!(
        matches!(&refused[..], [Err((t, RDKafkaErrorCode::PolicyViolation))] if t == "t3"),
        "two more partitions: {refused:?}"
    );
    create_topics(&gw, &plain("alice"), &[("t3", 1)]).await;
    env.stop().await;
}

/// A tenant at its `maxTopics` cannot grow past it by auto-creation either: a Metadata
/// request allowing auto-creation of a new topic creates nothing physically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_limit_covers_auto_creation() {
    let env = Env::start().await;
    env.tenants().await;
    put_vcluster(
        env.admin(),
        "a",
        json!({"prefix": "a.", "limits": {"maxTopics": 1}}),
    )
    .await;
    let gw = env.bootstrap();
    create_topics(&gw, &plain("alice"), &[("orders", 1)]).await;
    let mut raw = raw_as(env.gw.kafka_addr(), "alice").await;
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("auto-created")))
        ]));
    let md = within(CALL, "Metadata v12", raw.call(&req, 12))
        .await
        .expect("Metadata v12");
    let physical = topic_names(&env.direct(), &direct());
    assert!(
        !physical.contains("a.auto-created"),
        "auto-creation took tenant a past maxTopics 1: tansu holds {physical:?}; alice was \
         answered {:?}",
        md.topics
    );
    assert_ne!(md.topics[0].error_code, 0, "{md:?}");
    env.stop().await;
}

/// Interceptors scoped to a group (the principal's groups: its service account's and every
/// `Group` listing it) or to a username run for those principals only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interceptors_scoped_to_a_group_and_a_username() {
    let env = Env::start().await;
    let admin = env.admin();
    put_service_account(admin, "alice", PASSWORD, &["apps"]).await;
    put_service_account(admin, "bob", PASSWORD, &[]).await;
    put_service_account(admin, "carol", PASSWORD, &[]).await;
    put_group(admin, "ops", &["carol"]).await;
    upload_plugin(admin, "add-header", "add-header").await;
    install(
        admin,
        "apps-tag",
        json!({"plugin": "add-header", "scope": {"group": "apps"},
               "config": {"headers": {"x-scope": "apps"}}}),
    )
    .await;
    install(
        admin,
        "ops-tag",
        json!({"plugin": "add-header", "scope": {"group": "ops"},
               "config": {"headers": {"x-scope": "ops"}}}),
    )
    .await;
    install(
        admin,
        "bob-tag",
        json!({"plugin": "add-header", "scope": {"username": "bob"},
               "config": {"headers": {"x-scope": "bob"}}}),
    )
    .await;
    let gw = env.bootstrap();
    create_topics(&gw, &plain("alice"), &[("scoped", 1)]).await;
    produce_as(&gw, &plain("alice"), "scoped", &keys("alice", 1)).await;
    produce_as(&gw, &plain("bob"), "scoped", &keys("bob", 1)).await;
    produce_as(&gw, &plain("carol"), "scoped", &keys("carol", 1)).await;
    let got: Vec<(String, Vec<String>)> = read(&env.direct(), &direct(), "scoped", 3)
        .await
        .into_iter()
        .map(|r| {
            let tags = r
                .headers
                .iter()
                .filter(|(k, _)| k == "x-scope")
                .map(|(_, v)| v.clone())
                .collect();
            (r.key, tags)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("alice-0".to_string(), vec!["apps".to_string()]),
            ("bob-0".to_string(), vec!["bob".to_string()]),
            ("carol-0".to_string(), vec!["ops".to_string()]),
        ]
    );
    env.stop().await;
}
