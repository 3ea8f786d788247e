//! Records that plugins publish (`publish.produce`): batched and produced to the cluster on
//! the gateway's own connections, acks=1, outside any client's request path.
//!
//! The plugin host (`sluice_wasm`) only queues [`Published`] records on the channel this
//! returns; producing them needs the gateway's upstream client, so this half lives here.

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::metrics::Metrics;
use crate::records::{self, Batch, Header, Offsets, Record};
use crate::upstream::MiniClient;
use sluice_wasm::services::Published;

/// Records queued before `publish.produce` answers "queue full".
const QUEUE: usize = 10_000;
/// Longest a record waits to be batched.
const LINGER: Duration = Duration::from_millis(20);
/// Most records per produce request.
const BATCH: usize = 1000;
/// How long a topic's partition layout is trusted.
const METADATA_TTL: Duration = Duration::from_secs(30);

/// Starts the publisher; returns the queue plugins feed.
pub fn spawn(
    connector: crate::upstream::Connector,
    bootstrap: Vec<String>,
    timeout: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> mpsc::Sender<Published> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(connector, bootstrap, timeout, metrics, stop, rx));
    tx
}

/// Where and how the publisher reaches the cluster.
struct Cluster {
    connector: crate::upstream::Connector,
    bootstrap: Vec<String>,
    timeout: Duration,
}

struct Layout {
    /// Leader address per partition.
    leaders: Vec<String>,
    fetched: Instant,
}

async fn run(
    connector: crate::upstream::Connector,
    bootstrap: Vec<String>,
    timeout: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    mut rx: mpsc::Receiver<Published>,
) {
    let cluster = Cluster {
        connector,
        bootstrap,
        timeout,
    };
    let mut layouts: HashMap<String, Layout> = HashMap::new();
    let mut clients: HashMap<String, MiniClient> = HashMap::new();
    let mut next = 0usize;
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            r = rx.recv() => match r { Some(p) => p, None => return },
        };
        let mut pending = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while pending.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => pending.push(p),
                _ => break,
            }
        }
        let mut by_topic: HashMap<String, Vec<Published>> = HashMap::new();
        for p in pending {
            by_topic.entry(p.topic.clone()).or_default().push(p);
        }
        for (topic, items) in by_topic {
            let n = items.len() as u64;
            match send_topic(
                &cluster,
                &mut layouts,
                &mut clients,
                &topic,
                items,
                &mut next,
            )
            .await
            {
                Ok(()) => {
                    metrics.published.inc_by(n);
                }
                Err(e) => {
                    metrics.publish_errors.inc_by(n);
                    layouts.remove(&topic);
                    warn!(
                        topic,
                        records = n,
                        "publishing plugin records failed: {e:#}"
                    );
                }
            }
        }
    }
}

async fn layout(
    connector: &crate::upstream::Connector,
    bootstrap: &[String],
    timeout: Duration,
    topic: &str,
) -> Result<Layout> {
    let mut last = None;
    for addr in bootstrap {
        let attempt = async {
            let mut c = MiniClient::connect(connector, addr).await?;
            let versions = c.api_versions().await?;
            let theirs = versions
                .api_keys
                .iter()
                .find(|k| k.api_key == ApiKey::Metadata as i16)
                .context("no Metadata support")?;
            let version = theirs
                .max_version
                .min(ApiKey::Metadata.valid_versions().max)
                .min(12);
            let req = MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                    TopicName(StrBytes::from_string(topic.to_string())),
                ))]))
                .with_allow_auto_topic_creation(true);
            let resp = tokio::time::timeout(timeout, c.send(&req, version)).await??;
            let brokers: HashMap<i32, String> = resp
                .brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
                .collect();
            let t = resp.topics.first().context("no topic in metadata")?;
            if t.error_code != 0 || t.partitions.is_empty() {
                bail!("topic {topic} not available (error {})", t.error_code);
            }
            let mut parts: Vec<_> = t.partitions.iter().collect();
            parts.sort_by_key(|p| p.partition_index);
            let leaders = parts
                .iter()
                .map(|p| {
                    brokers
                        .get(&p.leader_id.0)
                        .cloned()
                        .context("leader unknown")
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Layout {
                leaders,
                fetched: Instant::now(),
            })
        };
        match attempt.await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no bootstrap servers")))
}

async fn send_topic(
    cluster: &Cluster,
    layouts: &mut HashMap<String, Layout>,
    clients: &mut HashMap<String, MiniClient>,
    topic: &str,
    items: Vec<Published>,
    next: &mut usize,
) -> Result<()> {
    if layouts
        .get(topic)
        .is_none_or(|l| l.fetched.elapsed() > METADATA_TTL)
    {
        layouts.insert(
            topic.to_string(),
            layout(
                &cluster.connector,
                &cluster.bootstrap,
                cluster.timeout,
                topic,
            )
            .await?,
        );
    }
    let layout = &layouts[topic];
    let n = layout.leaders.len();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut per_partition: HashMap<usize, Vec<Record>> = HashMap::new();
    for p in items {
        let partition = match &p.record.key {
            Some(k) => (fnv1a(k) % n as u64) as usize,
            None => {
                *next = next.wrapping_add(1);
                *next % n
            }
        };
        let ts = if p.record.timestamp > 0 {
            p.record.timestamp
        } else {
            now
        };
        let mut headers: Vec<Header> = p
            .record
            .headers
            .into_iter()
            .map(|h| Header {
                key: Bytes::from(h.key),
                value: h.value.map(Bytes::from),
            })
            .collect();
        headers.push(Header {
            key: Bytes::from_static(b"sluice-interceptor"),
            value: Some(Bytes::from(p.interceptor)),
        });
        per_partition.entry(partition).or_default().push(Record {
            attributes: 0,
            timestamp: ts,
            offset_delta: 0,
            key: p.record.key.map(Bytes::from),
            value: p.record.value.map(Bytes::from),
            headers,
        });
    }
    let mut by_leader: HashMap<String, Vec<(i32, Bytes)>> = HashMap::new();
    for (partition, records) in per_partition {
        let batch = Batch {
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: 0,
            last_offset_delta: 0,
            base_timestamp: records[0].timestamp,
            max_timestamp: records[0].timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records,
            raw: Bytes::new(),
        };
        let mut out = BytesMut::new();
        records::encode_batch(&batch, Offsets::Renumber, &mut out)?;
        by_leader
            .entry(layout.leaders[partition].clone())
            .or_default()
            .push((partition as i32, out.freeze()));
    }
    for (leader, parts) in by_leader {
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(cluster.timeout.as_millis() as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(
                    parts
                        .into_iter()
                        .map(|(i, b)| {
                            PartitionProduceData::default()
                                .with_index(i)
                                .with_records(Some(b))
                        })
                        .collect(),
                )]);
        if !clients.contains_key(&leader) {
            clients.insert(
                leader.clone(),
                MiniClient::connect(&cluster.connector, &leader).await?,
            );
        }
        let client = clients.get_mut(&leader).expect("just inserted");
        // Produce v9 (flexible) is supported by every broker since Kafka 2.4 and by tansu.
        let result = tokio::time::timeout(cluster.timeout, client.send(&req, 9)).await;
        let resp = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                clients.remove(&leader);
                return Err(e);
            }
            Err(_) => {
                clients.remove(&leader);
                bail!("produce to {leader} timed out");
            }
        };
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    bail!("partition {} error {}", p.index, p.error_code);
                }
            }
        }
    }
    Ok(())
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}
