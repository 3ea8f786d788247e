//! What a plugin instance's store holds, and the host functions of the WIT world.
//!
//! Bodies and records stay on the host side as resources: a plugin reads through methods, so a
//! plugin that looks at one header copies one header, not the batch.

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::sluice::interceptor::{host, kms, kv, publish, types};
use crate::services::Services;
use sluice_protocol::records::{self, Header as RecHeader, RecordSet};

/// A request or response body lent to a plugin.
pub struct MessageBody(pub Bytes);

/// One record as plugins see it (decoded from a batch, or appended by a plugin).
#[derive(Debug, Clone)]
pub struct RecordView {
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<RecHeader>,
    /// Absolute timestamp.
    pub timestamp: i64,
    /// Removed by a plugin.
    pub removed: bool,
    /// Changed by a plugin.
    pub changed: bool,
    /// Index of the batch it came from (`None`: appended).
    pub batch: Option<usize>,
    /// Offset delta in its batch.
    pub offset_delta: i32,
    /// Record attributes byte.
    pub attributes: i8,
}

/// A partition's records lent to plugins.
///
/// Decoded lazily: the view starts with the partition's record bytes as received, and only
/// a plugin that reads or changes a record of this partition makes the host decompress and
/// parse them (without the CRC check: see [`records::decode_unchecked`]). A plugin that
/// looks at nothing, or only at topic names and record counts, costs no decoding at all.
#[derive(Debug, Clone)]
pub struct PartitionView {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// The partition's `records` bytes as received.
    raw: Option<Bytes>,
    /// Set on first use: the decoded record set (`None` when it does not decode: such a
    /// partition shows no records and is passed on as it is) and the records of its data
    /// batches, in order, plus those a plugin appended.
    decoded: Option<(Option<RecordSet>, Vec<RecordView>)>,
    /// Set by `reject`.
    pub rejected: Option<(i16, String)>,
    /// Whether a record was added or removed (a count change).
    pub count_changed: bool,
    /// Whether anything was changed.
    pub dirty: bool,
}

impl PartitionView {
    /// The view of a partition whose `records` field holds `raw`.
    pub fn new(topic: String, partition: i32, raw: Option<Bytes>) -> PartitionView {
        PartitionView {
            topic,
            partition,
            raw,
            decoded: None,
            rejected: None,
            count_changed: false,
            dirty: false,
        }
    }

    /// A view already holding `records` (no record set behind them: tests, benchmarks).
    pub fn with_records(topic: String, partition: i32, records: Vec<RecordView>) -> PartitionView {
        PartitionView {
            decoded: Some((None, records)),
            ..PartitionView::new(topic, partition, None)
        }
    }

    /// The records, decoded on first use.
    pub fn records(&mut self) -> &mut Vec<RecordView> {
        let raw = &self.raw;
        &mut self
            .decoded
            .get_or_insert_with(|| {
                let Some(set) = raw.as_ref().and_then(|b| records::decode_unchecked(b).ok()) else {
                    return (None, Vec::new());
                };
                let views = set
                    .batches
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| !b.is_control())
                    .flat_map(|(bi, b)| {
                        b.records.iter().map(move |r| RecordView {
                            key: r.key.clone(),
                            value: r.value.clone(),
                            headers: r.headers.clone(),
                            timestamp: r.timestamp,
                            removed: false,
                            changed: false,
                            batch: Some(bi),
                            offset_delta: r.offset_delta,
                            attributes: r.attributes,
                        })
                    })
                    .collect();
                (Some(set), views)
            })
            .1
    }

    /// The decoded record set and records, if a plugin made the host decode them (a
    /// partition changed by a plugin always was).
    pub fn take_decoded(&mut self) -> Option<(Option<RecordSet>, Vec<RecordView>)> {
        self.decoded.take()
    }

    /// Records and bytes, for the call's budget: exact once decoded, else what the batch
    /// headers say.
    fn size(&self) -> (usize, usize) {
        match &self.decoded {
            Some((_, records)) => {
                let mut bytes = 0;
                for r in records {
                    bytes += r.key.as_ref().map_or(0, Bytes::len)
                        + r.value.as_ref().map_or(0, Bytes::len);
                    for h in &r.headers {
                        bytes += h.key.len() + h.value.as_ref().map_or(0, Bytes::len);
                    }
                }
                (records.len(), bytes)
            }
            None => self.raw.as_ref().map_or((0, 0), records::count_hint),
        }
    }
}

/// The records of one produce request or fetch response.
#[derive(Debug, Clone, Default)]
pub struct RecordsView {
    /// A Fetch response (records cannot be appended: they would have no offsets).
    pub fetch: bool,
    /// Partitions in request order.
    pub partitions: Vec<PartitionView>,
}

impl RecordsView {
    /// Number of records and bytes of keys, values and headers, for the call's budget
    /// (estimated from batch headers for partitions not decoded yet).
    pub fn size(&self) -> (usize, usize) {
        self.partitions
            .iter()
            .map(PartitionView::size)
            .fold((0, 0), |(r, b), (pr, pb)| (r + pr, b + pb))
    }

    fn record(&mut self, p: u32, r: u32) -> wasmtime::Result<&mut RecordView> {
        let part = self
            .partitions
            .get_mut(p as usize)
            .ok_or_else(|| wasmtime::Error::msg(format!("no partition index {p}")))?;
        part.records()
            .get_mut(r as usize)
            .ok_or_else(|| wasmtime::Error::msg(format!("no record {r} in partition index {p}")))
    }

    fn partition(&mut self, p: u32) -> wasmtime::Result<&mut PartitionView> {
        self.partitions
            .get_mut(p as usize)
            .ok_or_else(|| wasmtime::Error::msg(format!("no partition index {p}")))
    }

    /// Changes record `r` of partition `p` with `f`, and marks both changed.
    fn edit(&mut self, p: u32, r: u32, f: impl FnOnce(&mut RecordView)) -> wasmtime::Result<()> {
        let rec = self.record(p, r)?;
        f(rec);
        rec.changed = true;
        self.touch(p, false);
        Ok(())
    }

    /// Marks partition `p` changed.
    fn touch(&mut self, p: u32, count_change: bool) {
        if let Some(part) = self.partitions.get_mut(p as usize) {
            part.dirty = true;
            part.count_changed |= count_change;
        }
    }
}

/// The linear memory one interceptor's instances hold together, against its `memoryMb`:
/// concurrent calls share one allowance instead of multiplying it.
#[derive(Debug)]
pub struct MemoryBudget {
    /// The allowance in bytes.
    pub cap: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// An allowance of `cap` bytes.
    pub fn new(cap: usize) -> MemoryBudget {
        MemoryBudget {
            cap,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes held by live instances now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the allowance, or nothing and `false` if they do not fit.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|after| *after <= self.cap)
            })
            .is_ok()
    }

    /// Gives `bytes` back.
    fn give_back(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// Tracks a store's linear memory against its cap and its interceptor's shared budget.
pub struct MemoryLimiter {
    /// Cap in bytes for all memories of the instance.
    pub cap: usize,
    /// Bytes currently allocated.
    pub used: usize,
    /// Highest `used` seen.
    pub peak: usize,
    /// A grow was refused.
    pub refused: bool,
    /// The allowance shared by every instance of the interceptor; what this instance holds
    /// goes back to it when the store is dropped.
    pub budget: Arc<MemoryBudget>,
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.budget.give_back(self.used);
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Also called with `current` 0 when an instance's memory is created, so the initial
        // memory is charged too.
        let after = self.used - current.min(self.used) + desired;
        if after > self.cap || !self.budget.take(after.saturating_sub(self.used)) {
            self.refused = true;
            return Ok(false);
        }
        self.used = after;
        self.peak = self.peak.max(after);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data of one plugin instance's store.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) services: Arc<Services>,
    /// The plugin's stdout and stderr, drained into the log after each call.
    pub(crate) stdout: crate::output::PluginOutput,
    pub(crate) stderr: crate::output::PluginOutput,
    /// The deadline of the call in progress.
    pub(crate) clock: crate::CallClock,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// How a part is named in errors.
fn part_name(part: &types::RecordPart) -> String {
    match part {
        types::RecordPart::Key => "the key".into(),
        types::RecordPart::Value => "the value".into(),
        types::RecordPart::Header(name) => format!("header `{name}`"),
    }
}

/// Replaces each of `parts` of `rec` by what `f` makes of its bytes (`records.seal`,
/// `records.open`), all or nothing: every new part is made before any is written, so an error
/// leaves the record as it was. Returns, part by part, whether it had bytes; a null key or
/// value is an error when `required`.
fn crypt_parts(
    rec: &mut RecordView,
    parts: &[types::SealedPart],
    required: bool,
    f: impl Fn(&types::SealedPart, &[u8]) -> Result<Vec<u8>, String>,
) -> Result<Vec<bool>, String> {
    let named = |part: &types::SealedPart, e: String| format!("{}: {e}", part_name(&part.part));
    // (part index, header index or usize::MAX for key / value, new bytes)
    let mut made: Vec<(usize, usize, Bytes)> = Vec::with_capacity(parts.len());
    let mut done = vec![false; parts.len()];
    for (i, part) in parts.iter().enumerate() {
        let single = match &part.part {
            types::RecordPart::Key => Some(&rec.key),
            types::RecordPart::Value => Some(&rec.value),
            types::RecordPart::Header(_) => None,
        };
        match (single, &part.part) {
            (Some(Some(bytes)), _) => {
                let new = f(part, bytes).map_err(|e| named(part, e))?;
                made.push((i, usize::MAX, Bytes::from(new)));
                done[i] = true;
            }
            (Some(None), _) if required => {
                return Err(format!("{} is null", part_name(&part.part)))
            }
            (Some(None), _) => {}
            (None, types::RecordPart::Header(name)) => {
                for (h, header) in rec.headers.iter().enumerate() {
                    if let (true, Some(bytes)) = (header.key == name, &header.value) {
                        let new = f(part, bytes).map_err(|e| named(part, e))?;
                        made.push((i, h, Bytes::from(new)));
                        done[i] = true;
                    }
                }
            }
            (None, _) => unreachable!("only headers have no single slot"),
        }
    }
    for (i, h, new) in made {
        match &parts[i].part {
            types::RecordPart::Key => rec.key = Some(new),
            types::RecordPart::Value => rec.value = Some(new),
            types::RecordPart::Header(_) => rec.headers[h].value = Some(new),
        }
    }
    Ok(done)
}

fn to_header(h: &RecHeader) -> types::Header {
    types::Header {
        key: String::from_utf8_lossy(&h.key).into_owned(),
        value: h.value.as_ref().map(|v| v.to_vec()),
    }
}

fn from_header(h: types::Header) -> RecHeader {
    RecHeader {
        key: Bytes::from(h.key),
        value: h.value.map(Bytes::from),
    }
}

impl types::Host for HostState {}

impl types::HostMessage for HostState {
    fn size(&mut self, this: Resource<MessageBody>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&this)?.0.len() as u32)
    }

    fn read(
        &mut self,
        this: Resource<MessageBody>,
        offset: u32,
        len: u32,
    ) -> wasmtime::Result<Vec<u8>> {
        let body = &self.table.get(&this)?.0;
        let start = (offset as usize).min(body.len());
        let end = start.saturating_add(len as usize).min(body.len());
        Ok(body[start..end].to_vec())
    }

    fn bytes(&mut self, this: Resource<MessageBody>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&this)?.0.to_vec())
    }

    fn drop(&mut self, this: Resource<MessageBody>) -> wasmtime::Result<()> {
        // Only the host creates messages and it deletes them after the call; a guest-side
        // drop of a borrowed handle does not reach here.
        let _ = self.table.delete(this);
        Ok(())
    }
}

impl types::HostRecords for HostState {
    fn partition_count(&mut self, this: Resource<RecordsView>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&this)?.partitions.len() as u32)
    }

    fn topic(&mut self, this: Resource<RecordsView>, p: u32) -> wasmtime::Result<String> {
        Ok(self.table.get_mut(&this)?.partition(p)?.topic.clone())
    }

    fn partition(&mut self, this: Resource<RecordsView>, p: u32) -> wasmtime::Result<i32> {
        Ok(self.table.get_mut(&this)?.partition(p)?.partition)
    }

    fn record_count(&mut self, this: Resource<RecordsView>, p: u32) -> wasmtime::Result<u32> {
        Ok(self.table.get_mut(&this)?.partition(p)?.records().len() as u32)
    }

    fn key(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        r: u32,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self
            .table
            .get_mut(&this)?
            .record(p, r)?
            .key
            .as_ref()
            .map(|k| k.to_vec()))
    }

    fn value(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        r: u32,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self
            .table
            .get_mut(&this)?
            .record(p, r)?
            .value
            .as_ref()
            .map(|v| v.to_vec()))
    }

    fn value_size(&mut self, this: Resource<RecordsView>, p: u32, r: u32) -> wasmtime::Result<i32> {
        Ok(self
            .table
            .get_mut(&this)?
            .record(p, r)?
            .value
            .as_ref()
            .map_or(-1, |v| v.len() as i32))
    }

    fn headers(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        r: u32,
    ) -> wasmtime::Result<Vec<types::Header>> {
        Ok(self
            .table
            .get_mut(&this)?
            .record(p, r)?
            .headers
            .iter()
            .map(to_header)
            .collect())
    }

    fn timestamp(&mut self, this: Resource<RecordsView>, p: u32, r: u32) -> wasmtime::Result<i64> {
        Ok(self.table.get_mut(&this)?.record(p, r)?.timestamp)
    }

    fn get(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        r: u32,
    ) -> wasmtime::Result<types::KafkaRecord> {
        let rec = self.table.get_mut(&this)?.record(p, r)?;
        Ok(types::KafkaRecord {
            key: rec.key.as_ref().map(|k| k.to_vec()),
            value: rec.value.as_ref().map(|v| v.to_vec()),
            headers: rec.headers.iter().map(to_header).collect(),
            timestamp: rec.timestamp,
        })
    }

    fn set_key(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        r: u32,
        key: Option<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        self.table
            .get_mut(&this)?
            .edit(p, r, |rec| rec.key = key.map(Bytes::from))
    }

    fn set_value(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        r: u32,
        value: Option<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        self.table
            .get_mut(&this)?
            .edit(p, r, |rec| rec.value = value.map(Bytes::from))
    }

    fn set_headers(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        r: u32,
        headers: Vec<types::Header>,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&this)?.edit(p, r, |rec| {
            rec.headers = headers.into_iter().map(from_header).collect()
        })
    }

    fn add_header(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        r: u32,
        header: types::Header,
    ) -> wasmtime::Result<()> {
        self.table
            .get_mut(&this)?
            .edit(p, r, |rec| rec.headers.push(from_header(header)))
    }

    fn remove_headers(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        r: u32,
        key: String,
    ) -> wasmtime::Result<u32> {
        let view = self.table.get_mut(&this)?;
        let rec = view.record(p, r)?;
        let before = rec.headers.len();
        rec.headers.retain(|h| h.key != key);
        let removed = (before - rec.headers.len()) as u32;
        if removed > 0 {
            rec.changed = true;
            view.touch(p, false);
        }
        Ok(removed)
    }

    fn seal(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        r: u32,
        key_id: String,
        parts: Vec<types::SealedPart>,
    ) -> wasmtime::Result<Result<Vec<bool>, String>> {
        let kms = self.services.kms.clone();
        let view = self.table.get_mut(&this)?;
        let rec = view.record(p, r)?;
        let sealed = crypt_parts(rec, &parts, false, |part, plain| {
            kms.encrypt_after(&key_id, &part.prefix, plain, &part.aad)
        });
        if sealed.as_ref().is_ok_and(|done| done.contains(&true)) {
            rec.changed = true;
            view.touch(p, false);
        }
        Ok(sealed)
    }

    fn open(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        r: u32,
        parts: Vec<types::SealedPart>,
    ) -> wasmtime::Result<Result<(), String>> {
        let kms = self.services.kms.clone();
        let view = self.table.get_mut(&this)?;
        let rec = view.record(p, r)?;
        let opened = crypt_parts(rec, &parts, true, |part, sealed| {
            let ct = sealed
                .strip_prefix(part.prefix.as_slice())
                .ok_or_else(|| "does not start with the encryption prefix".to_string())?;
            kms.decrypt(ct, &part.aad)
        });
        if opened.as_ref().is_ok_and(|done| done.contains(&true)) {
            rec.changed = true;
            view.touch(p, false);
        }
        Ok(opened.map(|_| ()))
    }

    fn seal_partition(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        key_id: String,
        part: types::SealedPart,
        marker: types::Header,
    ) -> wasmtime::Result<Result<u32, String>> {
        let kms = self.services.kms.clone();
        let marker = from_header(marker);
        let view = self.table.get_mut(&this)?;
        let records = view.partition(p)?.records();
        // Every record is sealed into a copy first: an error changes nothing.
        let mut sealed = Vec::with_capacity(records.len());
        for (r, rec) in records.iter().enumerate() {
            if rec.removed {
                continue;
            }
            let mut copy = rec.clone();
            let done = crypt_parts(
                &mut copy,
                std::slice::from_ref(&part),
                false,
                |part, plain| kms.encrypt_after(&key_id, &part.prefix, plain, &part.aad),
            );
            match done {
                Ok(done) if done[0] => sealed.push((r, copy)),
                Ok(_) => {}
                Err(e) => return Ok(Err(format!("record {r}: {e}"))),
            }
        }
        let mut changed = false;
        for rec in records.iter_mut() {
            let before = rec.headers.len();
            rec.headers.retain(|h| h.key != marker.key);
            if rec.headers.len() != before {
                rec.changed = true;
                changed = true;
            }
        }
        let count = sealed.len() as u32;
        for (r, mut copy) in sealed {
            copy.headers.retain(|h| h.key != marker.key);
            copy.headers.push(marker.clone());
            copy.changed = true;
            records[r] = copy;
            changed = true;
        }
        if changed {
            view.touch(p, false);
        }
        Ok(Ok(count))
    }

    fn open_partition(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        part: types::SealedPart,
        marker: types::Header,
    ) -> wasmtime::Result<types::PartitionOpened> {
        let kms = self.services.kms.clone();
        let marker = from_header(marker);
        let view = self.table.get_mut(&this)?;
        let records = view.partition(p)?.records();
        let mut out = types::PartitionOpened {
            opened: 0,
            failed: Vec::new(),
            other: Vec::new(),
        };
        for (r, rec) in records.iter_mut().enumerate() {
            if rec.removed {
                continue;
            }
            let mut with_key = rec.headers.iter().filter(|h| h.key == marker.key);
            match (with_key.next(), with_key.next()) {
                (None, _) => continue,
                (Some(h), None) if h.value == marker.value => {}
                _ => {
                    out.other.push(r as u32);
                    continue;
                }
            }
            let mut copy = rec.clone();
            let opened = crypt_parts(
                &mut copy,
                std::slice::from_ref(&part),
                true,
                |part, sealed| {
                    let ct = sealed
                        .strip_prefix(part.prefix.as_slice())
                        .ok_or_else(|| "does not start with the encryption prefix".to_string())?;
                    kms.decrypt(ct, &part.aad)
                },
            );
            match opened {
                Ok(_) => {
                    copy.headers.retain(|h| h.key != marker.key);
                    copy.changed = true;
                    *rec = copy;
                    out.opened += 1;
                }
                Err(e) => out.failed.push((r as u32, e)),
            }
        }
        if out.opened > 0 {
            view.touch(p, false);
        }
        Ok(out)
    }

    fn remove(&mut self, this: Resource<RecordsView>, p: u32, r: u32) -> wasmtime::Result<()> {
        let view = self.table.get_mut(&this)?;
        let rec = view.record(p, r)?;
        if !rec.removed {
            rec.removed = true;
            view.touch(p, true);
        }
        Ok(())
    }

    fn append(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        rec: types::KafkaRecord,
    ) -> wasmtime::Result<()> {
        let view = self.table.get_mut(&this)?;
        if view.fetch {
            return Err(wasmtime::Error::msg(
                "records cannot be appended to a fetch response (they would have no offsets)",
            ));
        }
        let part = view.partition(p)?;
        part.records().push(RecordView {
            key: rec.key.map(Bytes::from),
            value: rec.value.map(Bytes::from),
            headers: rec.headers.into_iter().map(from_header).collect(),
            timestamp: rec.timestamp,
            removed: false,
            changed: true,
            batch: None,
            offset_delta: 0,
            attributes: 0,
        });
        view.touch(p, true);
        Ok(())
    }

    fn reject(
        &mut self,
        this: Resource<RecordsView>,
        p: u32,
        error: types::KafkaError,
    ) -> wasmtime::Result<()> {
        let view = self.table.get_mut(&this)?;
        view.partition(p)?.rejected = Some((error.code, error.message));
        Ok(())
    }

    fn drop(&mut self, this: Resource<RecordsView>) -> wasmtime::Result<()> {
        let _ = self.table.delete(this);
        Ok(())
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        self.services.log(level, &message);
        Ok(())
    }

    fn now_millis(&mut self) -> wasmtime::Result<i64> {
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64))
    }

    fn monotonic_nanos(&mut self) -> wasmtime::Result<u64> {
        Ok(self.services.started.elapsed().as_nanos() as u64)
    }

    fn random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        let mut buf = vec![0u8; len.min(1024) as usize];
        getrandom::fill(&mut buf).map_err(|e| wasmtime::Error::msg(e.to_string()))?;
        Ok(buf)
    }

    fn counter_add(&mut self, name: String, delta: u64) -> wasmtime::Result<()> {
        self.services.counter_add(&name, delta);
        Ok(())
    }

    fn gauge_set(&mut self, name: String, value: f64) -> wasmtime::Result<()> {
        self.services.gauge_set(&name, value);
        Ok(())
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.services.kv.get(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        self.services.kv.set(key, value);
        Ok(())
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.services.kv.delete(&key);
        Ok(())
    }

    fn increment(&mut self, key: String, delta: i64) -> wasmtime::Result<i64> {
        Ok(self.services.kv.increment(key, delta))
    }
}

impl kms::Host for HostState {
    fn encrypt(
        &mut self,
        key_id: String,
        plaintext: Vec<u8>,
        aad: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        Ok(self.services.kms.encrypt(&key_id, &plaintext, &aad))
    }

    fn decrypt(
        &mut self,
        ciphertext: Vec<u8>,
        aad: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        Ok(self.services.kms.decrypt(&ciphertext, &aad))
    }
}

impl publish::Host for HostState {
    fn produce(
        &mut self,
        topic: String,
        rec: types::KafkaRecord,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.services.publish(topic, rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn record() -> RecordView {
        let header = |k: &'static str, v: Option<&'static [u8]>| RecHeader {
            key: Bytes::from_static(k.as_bytes()),
            value: v.map(Bytes::from_static),
        };
        RecordView {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"value")),
            headers: vec![
                header("h", Some(b"one")),
                header("other", Some(b"x")),
                header("h", None),
                header("h", Some(b"two")),
            ],
            timestamp: 0,
            removed: false,
            changed: false,
            batch: None,
            offset_delta: 0,
            attributes: 0,
        }
    }

    fn part(part: types::RecordPart) -> types::SealedPart {
        types::SealedPart {
            part,
            prefix: b"P".to_vec(),
            aad: Vec::new(),
        }
    }

    /// Upper-cases and prefixes, failing on bytes that contain `!`.
    fn shout(part: &types::SealedPart, bytes: &[u8]) -> Result<Vec<u8>, String> {
        if bytes.contains(&b'!') {
            return Err("refused".into());
        }
        let mut out = part.prefix.clone();
        out.extend(bytes.to_ascii_uppercase());
        Ok(out)
    }

    #[test]
    fn record_parts_are_sealed_all_or_nothing() {
        use types::RecordPart::{Header, Key, Value};
        let mut rec = record();
        let parts = [part(Value), part(Key), part(Header("h".into()))];
        let done = crypt_parts(&mut rec, &parts, false, shout).unwrap();
        assert_eq!(done, [true, true, true]);
        assert_eq!(rec.value.as_deref(), Some(&b"PVALUE"[..]));
        assert_eq!(rec.key.as_deref(), Some(&b"PK"[..]));
        let values: Vec<_> = rec.headers.iter().map(|h| h.value.as_deref()).collect();
        assert_eq!(
            values,
            [
                Some(&b"PONE"[..]),
                Some(&b"x"[..]),
                None,
                Some(&b"PTWO"[..])
            ],
            "every header of that key, null ones left null, others untouched"
        );

        // A part that fails leaves every part as it was.
        let mut rec = record();
        rec.headers[3].value = Some(Bytes::from_static(b"bad!"));
        let err = crypt_parts(&mut rec, &parts, false, shout).unwrap_err();
        assert_eq!(err, "header `h`: refused");
        let untouched = record();
        assert_eq!(rec.value, untouched.value);
        assert_eq!(rec.key, untouched.key);
        assert_eq!(rec.headers[0].value, untouched.headers[0].value);

        // Null parts: skipped when sealing, an error when opening (and nothing changes).
        let mut rec = record();
        rec.key = None;
        let parts = [part(Value), part(Key), part(Header("absent".into()))];
        assert_eq!(
            crypt_parts(&mut rec, &parts, false, shout).unwrap(),
            [true, false, false]
        );
        let mut rec = record();
        rec.key = None;
        assert_eq!(
            crypt_parts(&mut rec, &parts, true, shout).unwrap_err(),
            "the key is null"
        );
        assert_eq!(rec.value, record().value);
    }

    fn limiter(budget: &Arc<MemoryBudget>) -> MemoryLimiter {
        MemoryLimiter {
            cap: budget.cap,
            used: 0,
            peak: 0,
            refused: false,
            budget: budget.clone(),
        }
    }

    #[test]
    fn instances_share_their_interceptors_memory_budget() {
        let budget = Arc::new(MemoryBudget::new(32 * MIB));
        let mut a = limiter(&budget);
        let mut b = limiter(&budget);
        // Initial memories (current 0), then growth.
        assert!(a.memory_growing(0, 4 * MIB, None).unwrap());
        assert!(b.memory_growing(0, 4 * MIB, None).unwrap());
        assert!(a.memory_growing(4 * MIB, 20 * MIB, None).unwrap());
        assert_eq!(budget.used(), 24 * MIB);
        // Each alone is under its cap, together they would not be: refused.
        assert!(!b.memory_growing(4 * MIB, 16 * MIB, None).unwrap());
        assert!(b.refused);
        assert_eq!(budget.used(), 24 * MIB);
        // What fits still fits.
        assert!(b.memory_growing(4 * MIB, 12 * MIB, None).unwrap());
        assert_eq!(budget.used(), 32 * MIB);
        // A dropped instance gives its memory back.
        drop(a);
        assert_eq!(budget.used(), 12 * MIB);
        assert!(b.memory_growing(12 * MIB, 30 * MIB, None).unwrap());
        // One instance alone is held to the cap as before.
        assert!(!b.memory_growing(30 * MIB, 33 * MIB, None).unwrap());
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
