//! A bounded, deterministic fuzz driver for the request path and the admin API's inputs.
//!
//! Runs on stable Rust with no fuzzing engine: each case `i` of a run with seed `s` draws
//! its own random generator from `(s, i)`, so a case that fails is replayed alone with
//! `sluice-fuzz --seed S --replay I`. A case is a frame built from the schema table (a valid
//! request or response body of a random API and version the gateway advertises, see
//! `sluice::schema::synth`), then usually mutated: bit flips, extreme values written over
//! counts and lengths, truncation, insertion, duplicated chunks, a relabelled version or API
//! key, a record batch mutated behind a recomputed CRC.
//!
//! Each request goes through what the gateway does with a client's frame: framing and the
//! header peek, the virtual cluster mapping (prefixes, an alias, a concentration rule and
//! topic limits), the ACL stage for a principal allowed on about half of the names, the
//! error answer an interceptor failure builds, the Kafka ACL APIs, the record batch decoder;
//! a response the ACL stage wants fixed gets a random response to fix. Each response goes
//! through the broker address rewriting and the mapping back to the tenant's names. Admin
//! inputs are mutated resource documents (JSON and YAML) through the same validation the
//! admin API runs.
//!
//! A panic is caught, counted and reported with its case number; an abort (an allocation
//! that fails) ends the process, and the last progress line names the range to replay.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use serde_json::Value;
use sluice::acl::{Operation, Permits, ResourceType};
use sluice::advertise::{self, AddressBook};
use sluice::authorize::{self, Decision};
use sluice::intercept::TopicNames;
use sluice::registry::ApiError;
use sluice::schema::synth::{synth_body, Rng, Shape};
use sluice::schema::{self, MessageDef};
use sluice::security::PrincipalPermits;
use sluice::security::SecurityStore;
use sluice::state::{MemoryStore, StateStore};
use sluice::tenancy::{self, MapError};
use sluice::vcluster::{AliasTopicSpec, ConcentrationRuleSpec, Tenant, VirtualClusterStore};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

/// Bodies a bit larger than the property tests': up to 3 elements per array, strings up to
/// 8 bytes and now and then one of 100-140 bytes (two-byte varint lengths to mutate).
const FUZZ_SHAPE: Shape = Shape {
    elements: 4,
    depth: 4,
    text: 9,
    long_text_percent: 5,
    unknown_tags: 1000,
};

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Request frames driven through the request stages.
    pub requests: u64,
    /// Response frames driven through the response stages.
    pub responses: u64,
    /// Record batches decoded.
    pub batches: u64,
    /// Admin documents validated.
    pub admin_docs: u64,
    /// Frames some stage refused (a Kafka error answer, a closed connection).
    pub refused: u64,
    /// Cases that panicked: (case number, message).
    pub panics: Vec<(u64, String)>,
    /// Peak resident memory of the process, KiB (from /proc), at the end.
    pub peak_rss_kib: u64,
}

impl Report {
    /// Frames of every kind driven.
    pub fn frames(&self) -> u64 {
        self.requests + self.responses + self.batches
    }
}

/// Allows every operation on names that start with `a`..=`m` (and the cluster).
struct HalfNames;

impl Permits for HalfNames {
    fn permits(&self, rt: ResourceType, name: &str, _op: Operation) -> bool {
        rt == ResourceType::Cluster || name.bytes().next().is_some_and(|b| b <= b'm')
    }
}

/// Names every broker as the gateway would (its own host, a port per node).
struct Book;

impl AddressBook for Book {
    fn gateway_endpoint(&self, node_id: i32, _host: &str, _port: i32) -> (StrBytes, i32) {
        (
            StrBytes::from_static_str("127.0.0.1"),
            7000 + node_id.rem_euclid(1000),
        )
    }
}

/// The state the stages read: tenants and the ACL store; and the stores admin documents
/// are put into (apart, so that they do not change the tenants the frames see).
pub struct Stages {
    tenants: Vec<Arc<Tenant>>,
    security: Arc<SecurityStore>,
    root: PrincipalPermits,
    topic_names: TopicNames,
    admin_vclusters: VirtualClusterStore,
    admin_security: Arc<SecurityStore>,
    /// What the case in progress is driving, for a panic's report.
    current: Mutex<String>,
}

impl Stages {
    /// Tenants `plain` (prefix `q`), `limited` (prefix `r`, topic limits) and `mixed`
    /// (prefix `s`, an alias and a concentration rule over half of the names).
    pub fn new() -> anyhow::Result<Stages> {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
        let vclusters = VirtualClusterStore::new(store.clone());
        let api = |e: ApiError| anyhow::anyhow!("{e:?}");
        for (name, spec) in [
            ("plain", serde_json::json!({"prefix": "q"})),
            (
                "limited",
                serde_json::json!({"prefix": "r", "limits": {"maxTopics": 5, "maxPartitions": 50}}),
            ),
            ("mixed", serde_json::json!({"prefix": "s"})),
        ] {
            vclusters
                .put_virtual_cluster(name, serde_json::from_value(spec)?)
                .map_err(api)?;
        }
        vclusters
            .put_alias_topic(
                "mixed-alias",
                AliasTopicSpec {
                    vcluster: "mixed".into(),
                    logical_topic: "zz".into(),
                    physical_topic: "shared".into(),
                },
            )
            .map_err(api)?;
        vclusters
            .put_concentration_rule(
                "mixed-rule",
                ConcentrationRuleSpec {
                    vcluster: "mixed".into(),
                    logical_topic_pattern: "[a-m][a-z]*".into(),
                    physical_topic: "sconc".into(),
                },
            )
            .map_err(api)?;
        let snap = vclusters.snapshot();
        let tenants = ["plain", "limited", "mixed"]
            .iter()
            .map(|n| snap.get(n).expect("tenant just stored"))
            .collect();
        let security = Arc::new(SecurityStore::new(store));
        let root = PrincipalPermits::new(security.clone(), "root", vec![], &["root".to_string()]);
        let admin_store: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
        Ok(Stages {
            tenants,
            security,
            root,
            topic_names: TopicNames::default(),
            admin_vclusters: VirtualClusterStore::new(admin_store.clone()),
            admin_security: Arc::new(SecurityStore::new(admin_store)),
            current: Mutex::default(),
        })
    }

    /// Runs cases `from..to` of seed `seed`; `admin_every` makes every n-th case an admin
    /// document (0: none).
    pub fn run(&self, seed: u64, from: u64, to: u64, admin_every: u64) -> Report {
        let mut report = Report::default();
        let quiet = std::panic::take_hook();
        // Panics are counted and reported here, not printed by the default hook.
        std::panic::set_hook(Box::new(|_| {}));
        for case in from..to {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut local = Report::default();
                self.case(seed, case, admin_every, &mut local);
                local
            }));
            match outcome {
                Ok(local) => {
                    report.requests += local.requests;
                    report.responses += local.responses;
                    report.batches += local.batches;
                    report.admin_docs += local.admin_docs;
                    report.refused += local.refused;
                }
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".into());
                    let during = self.current.lock().map(|c| c.clone()).unwrap_or_default();
                    report.panics.push((case, format!("{during}: {what}")));
                }
            }
        }
        std::panic::set_hook(quiet);
        report.peak_rss_kib = peak_rss_kib();
        report
    }

    /// One case: its own generator from (seed, case).
    pub fn case(&self, seed: u64, case: u64, admin_every: u64, report: &mut Report) {
        let mut rng = Rng(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.next_u64();
        if admin_every > 0 && case % admin_every == admin_every - 1 {
            self.admin_doc(&mut rng);
            report.admin_docs += 1;
            return;
        }
        match rng.below(10) {
            0 => {
                batch(&mut rng);
                report.batches += 1;
            }
            1..=3 => {
                self.response(&mut rng, report);
                report.responses += 1;
            }
            _ => {
                self.request(&mut rng, report);
                report.requests += 1;
            }
        }
    }

    fn request(&self, rng: &mut Rng, report: &mut Report) {
        let (def, key, version) = pick(rng, false);
        let mut body = synth_body(rng, &FUZZ_SHAPE, def, version);
        let (mut key_on_wire, mut version_on_wire) = (key as i16, version);
        if rng.chance(85) {
            mutate(rng, &mut body);
        }
        if rng.chance(8) {
            version_on_wire = relabel(rng, version);
        }
        if rng.chance(2) {
            key_on_wire = rng.below(90) as i16;
        }
        let (frame, header_len) = request_frame(key_on_wire, version_on_wire, &body);
        // Framing: the length prefix and the header peek, as the session reads them.
        let Ok(peek) = sluice::frame::peek_request(&frame[4..]) else {
            report.refused += 1;
            return;
        };
        let (api, version) = (peek.api_key, peek.api_version);
        self.now(format!(
            "request {api} v{version} ({key:?} v{version_on_wire} built from v{})",
            def.max.min(version)
        ));
        // The session refuses a version outside what the gateway advertises before any stage.
        if let Ok(k) = ApiKey::try_from(api) {
            let range = advertise::gateway_versions(k);
            if version < range.min || version > range.max {
                report.refused += 1;
                return;
            }
        }
        let header_len = peek.body_offset.unwrap_or(header_len);
        let tenant = &self.tenants[rng.below(self.tenants.len() as u64) as usize];
        let mapped = match tenancy::map_request(tenant, api, version, header_len, &frame) {
            Ok(m) => m.frame.unwrap_or_else(|| frame.clone()),
            Err(MapError::Refused { .. } | MapError::Broken(_)) => {
                report.refused += 1;
                frame.clone()
            }
        };
        let body = peek.body_of(&frame);
        let _ = sluice::message::error_response(api, version, 7, &body, 7, "fuzz");
        if let Ok(k) = ApiKey::try_from(api) {
            if sluice::acl_api::is_acl_api(Some(k)) {
                let caller = sluice::acl_api::Caller {
                    store: &self.security,
                    permits: Some(&self.root),
                    vcluster: Some(tenant.name.as_str()),
                    principal: "root",
                };
                if sluice::acl_api::answer(&caller, k, version, 7, &body).is_err() {
                    report.refused += 1;
                }
            }
        }
        let decision = authorize::check_request(
            api,
            version,
            7,
            header_len,
            &mapped,
            &HalfNames,
            &self.topic_names,
        );
        match decision {
            Decision::Forward { fix: Some(fix), .. } => {
                if let Some(resp_def) = schema::response_def(api) {
                    let resp = synth_body(rng, &FUZZ_SHAPE, resp_def, version);
                    let Ok(k) = ApiKey::try_from(api) else { return };
                    let frame = sluice::message::response_frame(k, version, 7, &resp);
                    if authorize::fix_response(
                        &fix,
                        api,
                        version,
                        frame,
                        &HalfNames,
                        &self.topic_names,
                    )
                    .is_err()
                    {
                        report.refused += 1;
                    }
                }
            }
            Decision::Forward { .. } => {}
            _ => report.refused += 1,
        }
    }

    fn now(&self, what: String) {
        if let Ok(mut current) = self.current.lock() {
            *current = what;
        }
    }

    fn response(&self, rng: &mut Rng, report: &mut Report) {
        let (def, key, version) = pick(rng, true);
        let mut body = synth_body(rng, &FUZZ_SHAPE, def, version);
        if rng.chance(85) {
            mutate(rng, &mut body);
        }
        // A broker that answers in another version than the one asked for.
        let asked = if rng.chance(8) {
            relabel(rng, version)
        } else {
            version
        };
        self.now(format!("response {key:?} v{version} read as v{asked}"));
        let frame = sluice::message::response_frame(key, version, 7, &body);
        let action = advertise::action_for(Some(key), asked);
        if advertise::rewrite_response(action, key, asked, frame.clone(), &Book).is_err() {
            report.refused += 1;
        }
        let tenant = &self.tenants[rng.below(self.tenants.len() as u64) as usize];
        if tenancy::unmap_response(tenant, None, key as i16, asked, frame).is_err() {
            report.refused += 1;
        }
    }

    /// A resource document of a random kind, as JSON or YAML (the admin API's and `sluice
    /// apply`'s inputs), mutated, parsed into its resource type and put into its store, which
    /// validates it as the admin API does. Names come from a small set (stored documents are
    /// replaced, not accumulated), now and then a hostile one.
    fn admin_doc(&self, rng: &mut Rng) {
        const DOCS: &[&str] = &[
            r#"{"prefix": "tenant-a.", "limits": {"maxTopics": 10, "maxPartitions": 100}}"#,
            r#"{"vcluster": "a", "logicalTopic": "orders", "physicalTopic": "shared-orders"}"#,
            r#"{"vcluster": "a", "logicalTopicPattern": "events-.*", "physicalTopic": "a.events"}"#,
            r#"{"password": "secret-1", "groups": ["apps"], "vcluster": "a"}"#,
            r#"{"members": ["alice", "bob"]}"#,
            r#"{"principal": "User:alice", "resourceType": "topic", "name": "orders", "patternType": "prefixed", "operations": ["read", "write"], "permission": "allow"}"#,
            r#"{"plugin": "noop", "priority": 100, "scope": {"vcluster": "a"}, "config": {"x": [1, 2]}, "failurePolicy": "fail-open", "timeoutMs": 50, "memoryMb": 16}"#,
        ];
        const NAMES: &[&str] = &["a", "b", "tenant-a", "x.y", "../etc", "é", "", "a b"];
        let kind = rng.below(DOCS.len() as u64) as usize;
        let mut bytes = DOCS[kind].as_bytes().to_vec();
        let yaml = rng.chance(40);
        if yaml {
            if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                bytes = serde_norway::to_string(&v).unwrap_or_default().into_bytes();
            }
        }
        if rng.chance(90) {
            mutate(rng, &mut bytes);
        }
        let Ok(doc) = (if yaml {
            serde_norway::from_slice::<Value>(&bytes).map_err(|e| e.to_string())
        } else {
            serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string())
        }) else {
            return;
        };
        let name = NAMES[rng.below(NAMES.len() as u64) as usize];
        fn spec<T: serde::de::DeserializeOwned>(doc: Value) -> Option<T> {
            serde_json::from_value(doc).ok()
        }
        let _ = match kind {
            0 => spec(doc).map(|s| self.admin_vclusters.put_virtual_cluster(name, s).is_ok()),
            1 => spec(doc).map(|s| self.admin_vclusters.put_alias_topic(name, s).is_ok()),
            2 => spec(doc).map(|s| self.admin_vclusters.put_concentration_rule(name, s).is_ok()),
            3 => spec(doc).map(|s| self.admin_security.put_service_account(name, s).is_ok()),
            4 => spec(doc).map(|s| self.admin_security.put_group(name, s).is_ok()),
            5 => spec(doc).map(|s| self.admin_security.put_acl(name, s).is_ok()),
            _ => spec::<sluice::registry::InterceptorSpec>(doc).map(|s| s.validate().is_ok()),
        };
    }
}

/// A random message (request or response) and a version the gateway advertises for it.
fn pick(rng: &mut Rng, response: bool) -> (&'static MessageDef, ApiKey, i16) {
    let defs: Vec<&'static MessageDef> = schema::messages()
        .iter()
        .filter(|d| d.response == response && ApiKey::try_from(d.api_key).is_ok())
        .collect();
    loop {
        let def = defs[rng.below(defs.len() as u64) as usize];
        let key = ApiKey::try_from(def.api_key).expect("filtered to known keys");
        let range = advertise::gateway_versions(key);
        if range.min > range.max {
            continue;
        }
        let span = (range.max - range.min) as u64 + 1;
        return (def, key, range.min + rng.below(span) as i16);
    }
}

/// Another version: a neighbour (the Produce v10 → v13 kind) or any at all.
fn relabel(rng: &mut Rng, version: i16) -> i16 {
    if rng.chance(70) {
        version + 1 + rng.below(4) as i16
    } else {
        rng.below(20) as i16
    }
}

fn request_frame(api_key: i16, version: i16, body: &[u8]) -> (Bytes, usize) {
    let header = RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let header_version = ApiKey::try_from(api_key)
        .map(|k| k.request_header_version(version))
        .unwrap_or(1);
    let mut head = BytesMut::new();
    header
        .encode(&mut head, header_version)
        .expect("a header encodes");
    let mut frame = BytesMut::with_capacity(4 + head.len() + body.len());
    frame.put_i32((head.len() + body.len()) as i32);
    frame.put_slice(&head);
    frame.put_slice(body);
    (frame.freeze(), head.len())
}

/// Values that break counts and lengths: negative, huge, null markers, varint edges.
const EXTREMES: &[&[u8]] = &[
    &[0xff, 0xff, 0xff, 0xff],
    &[0x7f, 0xff, 0xff, 0xff],
    &[0x80, 0x00, 0x00, 0x00],
    &[0xff, 0xfe],
    &[0x7f, 0xff],
    &[0x00, 0x00],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0x80, 0x80, 0x80, 0x80, 0x80],
    &[0xfe, 0xff, 0xff, 0xff, 0x07],
    &[0x00],
    &[0x01],
];

/// One to three mutations of `body`.
fn mutate(rng: &mut Rng, body: &mut Vec<u8>) {
    for _ in 0..=rng.below(3) {
        let len = body.len() as u64;
        match rng.below(7) {
            0 if len > 0 => {
                for _ in 0..=rng.below(4) {
                    let at = rng.below(len) as usize;
                    body[at] ^= 1 << rng.below(8);
                }
            }
            1 if len > 0 => {
                let value = EXTREMES[rng.below(EXTREMES.len() as u64) as usize];
                let at = rng.below(len) as usize;
                for (i, b) in value.iter().enumerate() {
                    if let Some(slot) = body.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            2 if len > 0 => body.truncate(rng.below(len) as usize),
            3 => {
                let at = rng.below(len + 1) as usize;
                let n = 1 + rng.below(8) as usize;
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                body.splice(at..at, bytes);
            }
            4 if len > 1 => {
                let from = rng.below(len) as usize;
                let to = (from + 1 + rng.below(16) as usize).min(body.len());
                let chunk = body[from..to].to_vec();
                let at = rng.below(len) as usize;
                body.splice(at..at, chunk);
            }
            5 if len > 0 => {
                let at = rng.below(len) as usize;
                body[at] = rng.next_u64() as u8;
            }
            _ => body.extend((0..rng.below(6)).map(|_| rng.next_u64() as u8)),
        }
    }
}

/// A valid record batch (random codec, 1-5 records with keys, values and headers), often
/// mutated behind a recomputed CRC so the mutation reaches the decoder.
fn batch(rng: &mut Rng) {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = (0..1 + rng.below(5))
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: rng
                .chance(80)
                .then(|| Bytes::from(format!("k{}", rng.below(100)))),
            value: Some(Bytes::from(vec![b'v'; rng.below(200) as usize])),
            headers: Default::default(),
        })
        .collect();
    let compression = match rng.below(5) {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        _ => Compression::Zstd,
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    if RecordBatchEncoder::encode(&mut buf, records.iter(), &options).is_err() {
        return;
    }
    let mut raw = buf.to_vec();
    if rng.chance(85) {
        let mut tail = raw.split_off(21.min(raw.len()));
        mutate(rng, &mut tail);
        raw.extend_from_slice(&tail);
        if raw.len() >= 21 && rng.chance(90) {
            // Length and CRC made to match, so the decoder reads the mutated content.
            let len = (raw.len() - 12) as i32;
            raw[8..12].copy_from_slice(&len.to_be_bytes());
            let crc = crc32c::crc32c(&raw[21..]);
            raw[17..21].copy_from_slice(&crc.to_be_bytes());
        }
    }
    let _ = sluice::records::decode(&Bytes::from(raw));
}

/// Peak resident set size of this process (`VmHWM`), KiB; 0 where /proc is not there.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Response bytes read by the network run's clients (also those of connections dropped
/// before they closed).
static RECEIVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What a run over the network did.
#[derive(Debug, Default, Clone)]
pub struct NetReport {
    /// Frames written to the gateway.
    pub frames: u64,
    /// Connections opened (the gateway closes a connection on a frame it refuses).
    pub connections: u64,
    /// Response bytes read back.
    pub response_bytes: u64,
}

/// Sends `frames` frames over TCP to a gateway's Kafka listener at `addr`, from
/// `connections` concurrent clients: mostly mutated requests of random APIs and versions,
/// a few with a forged length prefix, pipelined, with whatever comes back read and dropped.
/// A connection the gateway closes is replaced. This is the session's own path (framing,
/// header peek, version check, every stage, the slot queue) that [`Stages`] leaves out.
pub async fn run_net(
    addr: std::net::SocketAddr,
    seed: u64,
    frames: u64,
    connections: u64,
) -> std::io::Result<NetReport> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let per = frames.div_ceil(connections.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections.max(1) {
        tasks.spawn(async move {
            let mut report = NetReport::default();
            let mut rng = Rng(seed ^ (c + 1).wrapping_mul(0xa076_1d64_78bd_642f));
            let mut sent = 0;
            while sent < per {
                let stream = tokio::net::TcpStream::connect(addr).await?;
                report.connections += 1;
                let (mut r, mut w) = stream.into_split();
                let drain = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut total = 0u64;
                    while let Ok(n) = r.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        total += n as u64;
                        RECEIVED.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    total
                });
                // A connection's life: up to 50 frames, or until the gateway closes it.
                for _ in 0..1 + rng.below(50) {
                    if sent >= per {
                        break;
                    }
                    let frame = net_frame(&mut rng);
                    sent += 1;
                    report.frames += 1;
                    if w.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                // Answers to what was valid come back until the gateway closes the
                // connection at the first frame it refuses; a connection it keeps open is
                // given a moment for its answers, then dropped.
                let mut drain = drain;
                let answered =
                    tokio::time::timeout(std::time::Duration::from_millis(300), &mut drain).await;
                report.response_bytes += match answered {
                    Ok(total) => total.unwrap_or(0),
                    Err(_) => {
                        drain.abort();
                        0
                    }
                };
                drop(w);
            }
            Ok::<_, std::io::Error>(report)
        });
    }
    let mut total = NetReport::default();
    while let Some(done) = tasks.join_next().await {
        let r = done.map_err(std::io::Error::other)??;
        total.frames += r.frames;
        total.connections += r.connections;
        total.response_bytes += r.response_bytes;
    }
    total.response_bytes = total
        .response_bytes
        .max(RECEIVED.load(std::sync::atomic::Ordering::Relaxed));
    Ok(total)
}

/// One frame for the network run: a request (mutated 85 % of the time), its length prefix
/// forged now and then.
fn net_frame(rng: &mut Rng) -> Vec<u8> {
    let (def, key, version) = pick(rng, false);
    let mut body = synth_body(rng, &FUZZ_SHAPE, def, version);
    if rng.chance(85) {
        mutate(rng, &mut body);
    }
    let version = if rng.chance(5) {
        relabel(rng, version)
    } else {
        version
    };
    let (frame, _) = request_frame(key as i16, version, &body);
    let mut frame = frame.to_vec();
    if rng.chance(2) {
        let forged = EXTREMES[rng.below(EXTREMES.len() as u64) as usize];
        for (i, b) in forged.iter().take(4).enumerate() {
            frame[i] = *b;
        }
    }
    frame
}
