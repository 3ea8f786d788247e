//! Native unit testing of plugins, with no gateway and no WebAssembly.
//!
//! * [`Harness`] configures a [`Plugin`] like the gateway does (`describe`, then `configure`)
//!   and calls its hooks with a [`Context`] it builds;
//! * [`MemRecords`] is an in-memory [`Records`]: build partitions of records, run the hook,
//!   then inspect what survived, what was removed, appended or changed, and which partitions
//!   were rejected;
//! * the host services ([`crate::host`], [`crate::kv`], [`crate::kms`], [`crate::publish`])
//!   run against a fake kept per thread (each `#[test]` runs on its own thread): read what the
//!   plugin logged, counted and published with the functions of this module, and reset it with
//!   [`reset`] ([`Harness::new`] does).
//!
//! ```
//! use sluice_sdk::testing::{Harness, MemRecords};
//! use sluice_sdk::{Capabilities, Context, Hooks, KafkaError, KafkaRecord, Plugin, Records};
//!
//! struct DropEmpty;
//! impl Plugin for DropEmpty {
//!     fn describe() -> Capabilities { Capabilities::new(Hooks::PRODUCE) }
//!     fn configure(_: &str) -> Result<Self, String> { Ok(DropEmpty) }
//!     fn on_produce(&mut self, _: &Context, recs: &mut dyn Records) -> Result<(), KafkaError> {
//!         for p in 0..recs.partition_count() {
//!             for r in 0..recs.record_count(p) {
//!                 if recs.value_size(p, r) <= 0 {
//!                     recs.remove(p, r);
//!                     sluice_sdk::host::counter_add("dropped", 1);
//!                 }
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let mut h = Harness::<DropEmpty>::new("{}").unwrap();
//! let mut recs = MemRecords::new().with_partition(
//!     "t",
//!     0,
//!     [KafkaRecord::from_value("a"), KafkaRecord::tombstone(), KafkaRecord::from_value("")],
//! );
//! h.produce(&mut recs).unwrap();
//! assert_eq!(recs.removed(0), vec![1, 2]);
//! assert_eq!(recs.records(0), vec![KafkaRecord::from_value("a")]);
//! assert_eq!(h.counter("dropped"), 2);
//! ```

use std::collections::BTreeMap;

use crate::{
    api_key, Body, Capabilities, Context, Header, Hooks, KafkaError, KafkaRecord, Level, Plugin,
    Records, RequestAction, ResponseAction,
};

/// Produce API version of the contexts [`Harness::produce`] builds.
pub const PRODUCE_VERSION: i16 = 9;
/// Fetch API version of the contexts [`Harness::fetch`] builds.
pub const FETCH_VERSION: i16 = 12;

// ---------------------------------------------------------------------------------------------
// Fake host inspection

/// One line a plugin logged.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    /// Its level.
    pub level: Level,
    /// Its text.
    pub message: String,
}

/// One record a plugin published with [`crate::publish::produce`].
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    /// The topic it was published to.
    pub topic: String,
    /// The record.
    pub record: KafkaRecord,
}

/// Clears this thread's fake host: logs, metrics, kv, published records, injected errors, the
/// fixed clock and the random sequence.
pub fn reset() {
    crate::fake::reset()
}

/// What the plugin logged on this thread since the last [`reset`].
pub fn logs() -> Vec<LogLine> {
    crate::fake::with(|h| {
        h.logs
            .iter()
            .map(|(level, message)| LogLine {
                level: *level,
                message: message.clone(),
            })
            .collect()
    })
}

/// The value of plugin counter `name` (0 when never added to).
pub fn counter(name: &str) -> u64 {
    crate::fake::with(|h| h.counters.get(name).copied().unwrap_or(0))
}

/// Every plugin counter.
pub fn counters() -> BTreeMap<String, u64> {
    crate::fake::with(|h| h.counters.clone())
}

/// The last value of plugin gauge `name`.
pub fn gauge(name: &str) -> Option<f64> {
    crate::fake::with(|h| h.gauges.get(name).copied())
}

/// The records published with [`crate::publish::produce`], in order.
pub fn published() -> Vec<Published> {
    crate::fake::with(|h| {
        h.published
            .iter()
            .map(|(topic, record)| Published {
                topic: topic.clone(),
                record: record.clone(),
            })
            .collect()
    })
}

/// The contents of the fake [`crate::kv`] store.
pub fn kv_entries() -> BTreeMap<String, Vec<u8>> {
    crate::fake::with(|h| h.kv.clone())
}

/// Fixes [`crate::host::now_millis`] (`None`: the real clock again).
pub fn set_now_millis(millis: Option<i64>) {
    crate::fake::with(|h| h.fixed_now_millis = millis)
}

/// Makes [`crate::publish::produce`] fail with this message (`None`: succeed again).
pub fn set_publish_error(error: Option<&str>) {
    crate::fake::with(|h| h.publish_error = error.map(str::to_string))
}

/// Makes [`crate::kms::encrypt`] and [`crate::kms::decrypt`] fail with this message (`None`:
/// work again).
pub fn set_kms_error(error: Option<&str>) {
    crate::fake::with(|h| h.kms_error = error.map(str::to_string))
}

/// Deletes key id `key_id` from the fake KMS (crypto-shredding): from now on
/// [`crate::kms::encrypt`] with it and [`crate::kms::decrypt`] of what it encrypted fail.
pub fn delete_kms_key(key_id: &str) {
    crate::fake::with(|h| {
        h.kms_deleted.insert(key_id.to_string());
    })
}

// ---------------------------------------------------------------------------------------------
// In-memory records

#[derive(Clone, Debug)]
struct Slot {
    record: KafkaRecord,
    removed: bool,
}

#[derive(Clone, Debug)]
struct MemPartition {
    topic: String,
    partition: i32,
    slots: Vec<Slot>,
    original_len: usize,
    modified: bool,
    rejected: Option<KafkaError>,
}

/// An in-memory [`Records`]: the records of a Produce request or Fetch response for tests.
///
/// Behaves like the host: indices are stable (a removed record keeps its index and can still
/// be read), appended records get the next indices (so `record_count` grows), any change marks
/// the partition as modified (the host would re-encode it), and out-of-range indices panic
/// (the host traps).
#[derive(Clone, Debug, Default)]
pub struct MemRecords {
    partitions: Vec<MemPartition>,
}

impl MemRecords {
    /// No partitions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a topic-partition with these records (builder style).
    pub fn with_partition(
        mut self,
        topic: &str,
        partition: i32,
        records: impl IntoIterator<Item = KafkaRecord>,
    ) -> Self {
        self.push_partition(topic, partition, records);
        self
    }

    /// Adds a topic-partition with these records; returns its index.
    pub fn push_partition(
        &mut self,
        topic: &str,
        partition: i32,
        records: impl IntoIterator<Item = KafkaRecord>,
    ) -> u32 {
        let slots: Vec<Slot> = records
            .into_iter()
            .map(|record| Slot {
                record,
                removed: false,
            })
            .collect();
        self.partitions.push(MemPartition {
            topic: topic.to_string(),
            partition,
            original_len: slots.len(),
            slots,
            modified: false,
            rejected: None,
        });
        (self.partitions.len() - 1) as u32
    }

    /// The index of `topic`/`partition`, if present.
    pub fn find(&self, topic: &str, partition: i32) -> Option<u32> {
        self.partitions
            .iter()
            .position(|p| p.topic == topic && p.partition == partition)
            .map(|i| i as u32)
    }

    /// The records of partition `p` the host would forward: not removed, in index order,
    /// appended ones last.
    pub fn records(&self, p: u32) -> Vec<KafkaRecord> {
        self.part(p)
            .slots
            .iter()
            .filter(|s| !s.removed)
            .map(|s| s.record.clone())
            .collect()
    }

    /// The values of [`records`](Self::records), as UTF-8 text (lossy; `None` for null).
    pub fn values_utf8(&self, p: u32) -> Vec<Option<String>> {
        self.part(p)
            .slots
            .iter()
            .filter(|s| !s.removed)
            .map(|s| {
                s.record
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
            .collect()
    }

    /// Record `r` of partition `p` as it is now, removed or not.
    pub fn record(&self, p: u32, r: u32) -> &KafkaRecord {
        &self.slot(p, r).record
    }

    /// Whether record `r` of partition `p` was removed.
    pub fn is_removed(&self, p: u32, r: u32) -> bool {
        self.slot(p, r).removed
    }

    /// Indices of the removed records of partition `p`.
    pub fn removed(&self, p: u32) -> Vec<u32> {
        self.part(p)
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.removed)
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Records appended to partition `p` (and not removed since).
    pub fn appended(&self, p: u32) -> Vec<KafkaRecord> {
        let part = self.part(p);
        part.slots[part.original_len..]
            .iter()
            .filter(|s| !s.removed)
            .map(|s| s.record.clone())
            .collect()
    }

    /// The error partition `p` was rejected with, if any.
    pub fn rejected(&self, p: u32) -> Option<&KafkaError> {
        self.part(p).rejected.as_ref()
    }

    /// Every rejected partition: `(topic, partition, error)`.
    pub fn rejections(&self) -> Vec<(String, i32, KafkaError)> {
        self.partitions
            .iter()
            .filter_map(|p| {
                p.rejected
                    .as_ref()
                    .map(|e| (p.topic.clone(), p.partition, e.clone()))
            })
            .collect()
    }

    /// Whether any record of partition `p` was changed, removed or appended.
    pub fn is_modified(&self, p: u32) -> bool {
        self.part(p).modified
    }

    fn part(&self, p: u32) -> &MemPartition {
        let n = self.partitions.len();
        self.partitions
            .get(p as usize)
            .unwrap_or_else(|| panic!("partition index {p} out of range ({n} partitions)"))
    }

    fn part_mut(&mut self, p: u32) -> &mut MemPartition {
        let n = self.partitions.len();
        self.partitions
            .get_mut(p as usize)
            .unwrap_or_else(|| panic!("partition index {p} out of range ({n} partitions)"))
    }

    fn slot(&self, p: u32, r: u32) -> &Slot {
        let part = self.part(p);
        let n = part.slots.len();
        part.slots.get(r as usize).unwrap_or_else(|| {
            panic!("record index {r} out of range ({n} records in partition {p})")
        })
    }

    fn slot_mut(&mut self, p: u32, r: u32) -> &mut KafkaRecord {
        let part = self.part_mut(p);
        let n = part.slots.len();
        part.modified = true;
        &mut part
            .slots
            .get_mut(r as usize)
            .unwrap_or_else(|| {
                panic!("record index {r} out of range ({n} records in partition {p})")
            })
            .record
    }
}

impl Records for MemRecords {
    fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }
    fn topic(&self, p: u32) -> String {
        self.part(p).topic.clone()
    }
    fn partition(&self, p: u32) -> i32 {
        self.part(p).partition
    }
    fn record_count(&self, p: u32) -> u32 {
        self.part(p).slots.len() as u32
    }
    fn key(&self, p: u32, r: u32) -> Option<Vec<u8>> {
        self.record(p, r).key.clone()
    }
    fn value(&self, p: u32, r: u32) -> Option<Vec<u8>> {
        self.record(p, r).value.clone()
    }
    fn value_size(&self, p: u32, r: u32) -> i32 {
        self.record(p, r)
            .value
            .as_ref()
            .map_or(-1, |v| v.len() as i32)
    }
    fn headers(&self, p: u32, r: u32) -> Vec<Header> {
        self.record(p, r).headers.clone()
    }
    fn timestamp(&self, p: u32, r: u32) -> i64 {
        self.record(p, r).timestamp
    }
    fn get(&self, p: u32, r: u32) -> KafkaRecord {
        self.record(p, r).clone()
    }
    fn set_key(&mut self, p: u32, r: u32, key: Option<&[u8]>) {
        self.slot_mut(p, r).key = key.map(<[u8]>::to_vec);
    }
    fn set_value(&mut self, p: u32, r: u32, value: Option<&[u8]>) {
        self.slot_mut(p, r).value = value.map(<[u8]>::to_vec);
    }
    fn set_headers(&mut self, p: u32, r: u32, headers: &[Header]) {
        self.slot_mut(p, r).headers = headers.to_vec();
    }
    fn add_header(&mut self, p: u32, r: u32, header: &Header) {
        self.slot_mut(p, r).headers.push(header.clone());
    }
    fn remove(&mut self, p: u32, r: u32) {
        self.slot_mut(p, r);
        self.part_mut(p).slots[r as usize].removed = true;
    }
    fn append(&mut self, p: u32, rec: &KafkaRecord) {
        let part = self.part_mut(p);
        part.modified = true;
        part.slots.push(Slot {
            record: rec.clone(),
            removed: false,
        });
    }
    fn reject(&mut self, p: u32, error: &KafkaError) {
        self.part_mut(p).rejected = Some(error.clone());
    }
}

// ---------------------------------------------------------------------------------------------
// Harness

/// Runs a [`Plugin`] natively the way the gateway would: `describe`, `configure`, then hooks.
///
/// Each hook call builds its [`Context`] from a template ([`Harness::context`], changed with
/// [`Harness::set_context`]) with the API key and version of the call. Calling a hook that
/// `describe` does not list panics (the gateway would never call it: a test bug); calling the
/// generic hooks for an API key the plugin did not subscribe to returns `Forward` without
/// calling the plugin, like the gateway.
pub struct Harness<P: Plugin> {
    plugin: P,
    capabilities: Capabilities,
    context: Context,
}

impl<P: Plugin> Harness<P> {
    /// Resets this thread's fake host ([`reset`]), then calls `describe` and
    /// `configure(config)`; `Err` is the plugin's configuration error.
    pub fn new(config: &str) -> Result<Self, String> {
        reset();
        let capabilities = P::describe();
        let plugin = P::configure(config)?;
        Ok(Harness {
            plugin,
            capabilities,
            context: Context::new(api_key::PRODUCE, PRODUCE_VERSION),
        })
    }

    /// The configured plugin.
    pub fn plugin(&mut self) -> &mut P {
        &mut self.plugin
    }

    /// What `describe` returned.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The context template (its API key and version are replaced on each call).
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Replaces the context template (principal, client id, interceptor name, ...).
    pub fn set_context(&mut self, context: Context) {
        self.context = context;
    }

    fn ctx(&self, api_key: i16, api_version: i16) -> Context {
        Context {
            api_key,
            api_version,
            ..self.context.clone()
        }
    }

    fn require(&self, hook: Hooks, name: &str) {
        assert!(
            self.capabilities.hooks.contains(hook),
            "the plugin's describe() does not list the `{name}` hook, so the gateway would never call it"
        );
    }

    /// Calls `on_produce` with `records` (API key 0, version [`PRODUCE_VERSION`]).
    pub fn produce(&mut self, records: &mut MemRecords) -> Result<(), KafkaError> {
        let ctx = self.ctx(api_key::PRODUCE, PRODUCE_VERSION);
        self.produce_with(&ctx, records)
    }

    /// Calls `on_produce` with this exact context and any [`Records`].
    pub fn produce_with(
        &mut self,
        ctx: &Context,
        records: &mut dyn Records,
    ) -> Result<(), KafkaError> {
        self.require(Hooks::PRODUCE, "produce");
        self.plugin.on_produce(ctx, records)
    }

    /// Calls `on_fetch` with `records` (API key 1, version [`FETCH_VERSION`]).
    pub fn fetch(&mut self, records: &mut MemRecords) -> Result<(), KafkaError> {
        let ctx = self.ctx(api_key::FETCH, FETCH_VERSION);
        self.fetch_with(&ctx, records)
    }

    /// Calls `on_fetch` with this exact context and any [`Records`].
    pub fn fetch_with(
        &mut self,
        ctx: &Context,
        records: &mut dyn Records,
    ) -> Result<(), KafkaError> {
        self.require(Hooks::FETCH, "fetch");
        self.plugin.on_fetch(ctx, records)
    }

    /// Calls `on_request` for a request body of `api_key` at `api_version`.
    pub fn request(&mut self, api_key: i16, api_version: i16, body: &[u8]) -> RequestAction {
        let ctx = self.ctx(api_key, api_version);
        self.request_with(&ctx, &body)
    }

    /// Calls `on_request` with this exact context and any [`Body`].
    pub fn request_with(&mut self, ctx: &Context, body: &dyn Body) -> RequestAction {
        self.require(Hooks::REQUEST, "request");
        if !self.capabilities.wants_api_key(ctx.api_key) {
            return RequestAction::Forward;
        }
        self.plugin.on_request(ctx, body)
    }

    /// Calls `on_response` for a response body of `api_key` at `api_version` (the version of
    /// the request it answers).
    pub fn response(&mut self, api_key: i16, api_version: i16, body: &[u8]) -> ResponseAction {
        let ctx = self.ctx(api_key, api_version);
        self.response_with(&ctx, &body)
    }

    /// Calls `on_response` with this exact context and any [`Body`].
    pub fn response_with(&mut self, ctx: &Context, body: &dyn Body) -> ResponseAction {
        self.require(Hooks::RESPONSE, "response");
        if !self.capabilities.wants_api_key(ctx.api_key) {
            return ResponseAction::Forward;
        }
        self.plugin.on_response(ctx, body)
    }

    /// Same as [`logs`].
    pub fn logs(&self) -> Vec<LogLine> {
        logs()
    }

    /// Same as [`counter`].
    pub fn counter(&self, name: &str) -> u64 {
        counter(name)
    }

    /// Same as [`gauge`].
    pub fn gauge(&self, name: &str) -> Option<f64> {
        gauge(name)
    }

    /// Same as [`published`].
    pub fn published(&self) -> Vec<Published> {
        published()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{host, kms, kv, publish};

    fn sample() -> MemRecords {
        MemRecords::new()
            .with_partition(
                "orders",
                3,
                [
                    KafkaRecord::from_value("a")
                        .with_key("k1")
                        .with_timestamp(10),
                    KafkaRecord::from_value("bb").with_header("h", "v"),
                    KafkaRecord::tombstone().with_key("k3"),
                ],
            )
            .with_partition("audit", 0, [])
    }

    #[test]
    fn mem_records_reads_like_the_resource() {
        let recs = sample();
        assert_eq!(recs.partition_count(), 2);
        assert_eq!(recs.topic(0), "orders");
        assert_eq!(recs.partition(0), 3);
        assert_eq!(recs.record_count(0), 3);
        assert_eq!(recs.record_count(1), 0);
        assert_eq!(recs.key(0, 0), Some(b"k1".to_vec()));
        assert_eq!(recs.value(0, 1), Some(b"bb".to_vec()));
        assert_eq!(recs.value_size(0, 1), 2);
        assert_eq!(recs.value_size(0, 2), -1);
        assert_eq!(recs.timestamp(0, 0), 10);
        assert_eq!(recs.headers(0, 1), vec![Header::new("h", "v")]);
        assert_eq!(recs.get(0, 2), KafkaRecord::tombstone().with_key("k3"));
        assert_eq!(recs.find("audit", 0), Some(1));
        assert_eq!(recs.find("audit", 1), None);
        assert!(!recs.is_modified(0));
    }

    #[test]
    fn changes_keep_indices_stable() {
        let mut recs = sample();
        recs.remove(0, 0);
        recs.set_value(0, 1, Some(b"new"));
        recs.set_key(0, 1, None);
        recs.add_header(0, 1, &Header::null("n"));
        recs.append(0, &KafkaRecord::from_value("tail"));
        assert_eq!(recs.record_count(0), 4);
        assert!(recs.is_removed(0, 0));
        assert_eq!(
            recs.value(0, 0),
            Some(b"a".to_vec()),
            "a removed record is still readable"
        );
        assert_eq!(recs.removed(0), vec![0]);
        assert_eq!(recs.appended(0), vec![KafkaRecord::from_value("tail")]);
        assert_eq!(
            recs.values_utf8(0),
            vec![Some("new".into()), None, Some("tail".into())]
        );
        assert_eq!(recs.record(0, 1).headers.len(), 2);
        recs.set_headers(0, 1, &[]);
        assert!(recs.records(0)[0].headers.is_empty());
        assert!(recs.is_modified(0));
        assert!(!recs.is_modified(1));

        recs.reject(1, &KafkaError::policy_violation("nope"));
        assert_eq!(recs.rejected(1).map(|e| e.code), Some(44));
        assert_eq!(recs.rejected(0), None);
        assert_eq!(
            recs.rejections(),
            vec![("audit".into(), 0, KafkaError::policy_violation("nope"))]
        );
    }

    #[test]
    #[should_panic(expected = "record index 5 out of range")]
    fn out_of_range_record_panics() {
        sample().value(0, 5);
    }

    #[test]
    #[should_panic(expected = "partition index 2 out of range")]
    fn out_of_range_partition_panics() {
        sample().topic(2);
    }

    #[test]
    fn fake_host_services() {
        reset();
        host::info("hello");
        crate::log!(Level::Warn, "n={}", 3);
        assert_eq!(
            logs(),
            vec![
                LogLine {
                    level: Level::Info,
                    message: "hello".into()
                },
                LogLine {
                    level: Level::Warn,
                    message: "n=3".into()
                }
            ]
        );

        host::counter_add("c", 2);
        host::counter_add("c", 3);
        assert_eq!(counter("c"), 5);
        assert_eq!(counter("missing"), 0);
        host::gauge_set("g", 1.5);
        assert_eq!(gauge("g"), Some(1.5));
        assert_eq!(counters().len(), 1);

        set_now_millis(Some(1234));
        assert_eq!(host::now_millis(), 1234);
        set_now_millis(None);
        assert!(host::now_millis() > 1_600_000_000_000);
        let t0 = host::monotonic_nanos();
        assert!(host::monotonic_nanos() >= t0);

        let r = host::random_bytes(3000);
        assert_eq!(r.len(), 3000);
        assert!(r.iter().any(|b| *b != 0));
        assert_ne!(host::random_bytes(16), host::random_bytes(16));
        reset();
        let first = host::random_bytes(8);
        reset();
        assert_eq!(host::random_bytes(8), first, "deterministic after reset");

        assert_eq!(kv::get("k"), None);
        kv::set("k", b"v");
        assert_eq!(kv::get("k"), Some(b"v".to_vec()));
        assert_eq!(kv::increment("n", 5), 5);
        assert_eq!(kv::increment("n", -2), 3);
        assert_eq!(kv_entries().len(), 2);
        kv::delete("k");
        assert_eq!(kv::get("k"), None);

        let rec = KafkaRecord::from_value("x").with_key("y");
        publish::produce("dlq", &rec).unwrap();
        set_publish_error(Some("queue full"));
        assert_eq!(publish::produce("dlq", &rec), Err("queue full".into()));
        set_publish_error(None);
        assert_eq!(
            published(),
            vec![Published {
                topic: "dlq".into(),
                record: rec
            }]
        );
    }

    #[test]
    fn fake_kms_round_trips_and_checks_aad() {
        reset();
        let ct = kms::encrypt("key-1", b"secret", b"topic").unwrap();
        assert!(!ct.windows(6).any(|w| w == b"secret"));
        assert_eq!(kms::decrypt(&ct, b"topic").unwrap(), b"secret");
        assert!(kms::decrypt(&ct, b"other").is_err());
        assert!(kms::decrypt(b"garbage", b"").is_err());
        assert!(kms::decrypt(b"FAKEKMS1\x00", b"").is_err());
        assert!(kms::encrypt("", b"x", b"").is_err());
        set_kms_error(Some("kms down"));
        assert_eq!(kms::encrypt("key-1", b"x", b""), Err("kms down".into()));
        assert_eq!(kms::decrypt(&ct, b"topic"), Err("kms down".into()));
        set_kms_error(None);
        // A changed body fails authentication, like AES-GCM's tag.
        let mut tampered = ct.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(kms::decrypt(&tampered, b"topic").is_err());
        delete_kms_key("key-1");
        assert!(kms::decrypt(&ct, b"topic").unwrap_err().contains("deleted"));
        assert!(kms::encrypt("key-1", b"x", b"").is_err());
        assert!(kms::encrypt("key-2", b"x", b"").is_ok());
    }

    struct Stamp {
        value: String,
    }

    impl Plugin for Stamp {
        fn describe() -> Capabilities {
            Capabilities::new(Hooks::PRODUCE | Hooks::REQUEST).with_api_keys([api_key::METADATA])
        }
        fn configure(config: &str) -> Result<Self, String> {
            if config.is_empty() {
                return Err("empty config".into());
            }
            Ok(Stamp {
                value: config.into(),
            })
        }
        fn on_produce(
            &mut self,
            ctx: &Context,
            records: &mut dyn Records,
        ) -> Result<(), KafkaError> {
            if ctx.principal.as_deref() == Some("mallory") {
                return Err(KafkaError::policy_violation("no"));
            }
            for p in 0..records.partition_count() {
                if records.topic(p) == "forbidden" {
                    records.reject(p, &KafkaError::invalid_record("forbidden topic"));
                    continue;
                }
                for r in 0..records.record_count(p) {
                    records.add_header(p, r, &Header::new("stamp", self.value.as_str()));
                }
            }
            host::counter_add("produce-calls", 1);
            Ok(())
        }
        fn on_request(&mut self, ctx: &Context, body: &dyn Body) -> RequestAction {
            host::info(&format!("{} bytes", body.size()));
            RequestAction::Replace(format!("{}:{}", ctx.api_key, self.value).into_bytes())
        }
    }

    #[test]
    fn harness_runs_hooks_like_the_gateway() {
        assert_eq!(
            Harness::<Stamp>::new("").err(),
            Some("empty config".to_string())
        );
        let mut h = Harness::<Stamp>::new("s1").unwrap();
        assert_eq!(h.capabilities().api_keys, vec![api_key::METADATA]);
        let mut recs = MemRecords::new()
            .with_partition("ok", 0, [KafkaRecord::from_value("v")])
            .with_partition("forbidden", 1, [KafkaRecord::from_value("w")]);
        h.produce(&mut recs).unwrap();
        assert_eq!(
            recs.records(0)[0].header("stamp").unwrap().value_str(),
            Some("s1")
        );
        assert_eq!(recs.rejected(1).unwrap().code, 87);
        assert!(!recs.is_modified(1));
        assert_eq!(h.counter("produce-calls"), 1);

        // Unsubscribed API key: not called.
        assert_eq!(h.request(api_key::PRODUCE, 9, b"x"), RequestAction::Forward);
        assert!(h.logs().is_empty());
        assert_eq!(
            h.request(api_key::METADATA, 12, b"xyz"),
            RequestAction::Replace(b"3:s1".to_vec())
        );
        assert_eq!(h.logs()[0].message, "3 bytes");

        h.set_context(Context::new(0, 0).with_principal("mallory"));
        assert_eq!(h.context().principal.as_deref(), Some("mallory"));
        assert_eq!(h.produce(&mut recs).unwrap_err().code, 44);
        h.plugin().value = "s2".into();
        let ctx = Context::new(api_key::PRODUCE, 3);
        let mut recs = MemRecords::new().with_partition("ok", 0, [KafkaRecord::from_value("v")]);
        h.produce_with(&ctx, &mut recs).unwrap();
        assert_eq!(
            recs.records(0)[0].header("stamp").unwrap().value_str(),
            Some("s2")
        );
    }

    #[test]
    #[should_panic(expected = "does not list the `fetch` hook")]
    fn harness_refuses_undeclared_hooks() {
        let mut h = Harness::<Stamp>::new("s").unwrap();
        let _ = h.fetch(&mut MemRecords::new());
    }
}
