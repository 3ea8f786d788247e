//! [`Records`]: the records of a Produce request or Fetch response.

use crate::bindings::sluice::interceptor::types as wit;
use crate::{kms, Header, KafkaError, KafkaRecord, PartitionOpened, RecordPart, SealedPart};

/// The records of one Produce request or Fetch response, grouped by topic-partition, as seen
/// by `on_produce` / `on_fetch`. Mirrors the WIT `records` resource method for method.
///
/// Partitions are indexed `0..partition_count()`, records within a partition
/// `0..record_count(p)`. Indices stay stable for the whole call: [`remove`](Records::remove)
/// marks a record, it does not shift the others. Out-of-range indices are a plugin bug (the
/// host traps; the in-memory implementation panics).
///
/// Reading is cheap when it copies little: prefer [`value_size`](Records::value_size) or
/// [`headers`](Records::headers) to [`get`](Records::get) when that is all you need. Only
/// partitions you change are re-encoded by the host.
///
/// Implemented on wasm by the host resource and natively by
/// [`testing::MemRecords`](crate::testing::MemRecords).
pub trait Records {
    /// Number of topic-partitions.
    fn partition_count(&self) -> u32;
    /// Topic name of partition `p`.
    fn topic(&self, p: u32) -> String;
    /// Partition number of partition `p`.
    fn partition(&self, p: u32) -> i32;
    /// Number of records in partition `p` (removed ones included).
    fn record_count(&self, p: u32) -> u32;
    /// Key of record `r` of partition `p` (`None`: null key).
    fn key(&self, p: u32, r: u32) -> Option<Vec<u8>>;
    /// Value of record `r` of partition `p` (`None`: null value, a tombstone).
    fn value(&self, p: u32, r: u32) -> Option<Vec<u8>>;
    /// Size of the value of record `r` (-1 for a null value), without copying it.
    fn value_size(&self, p: u32, r: u32) -> i32;
    /// Headers of record `r`, in order.
    fn headers(&self, p: u32, r: u32) -> Vec<Header>;
    /// Timestamp of record `r`, in milliseconds since the epoch.
    fn timestamp(&self, p: u32, r: u32) -> i64;
    /// The whole record `r`.
    fn get(&self, p: u32, r: u32) -> KafkaRecord;
    /// Replaces the key of record `r`.
    fn set_key(&mut self, p: u32, r: u32, key: Option<&[u8]>);
    /// Replaces the value of record `r`.
    fn set_value(&mut self, p: u32, r: u32, value: Option<&[u8]>);
    /// Replaces the headers of record `r`.
    fn set_headers(&mut self, p: u32, r: u32, headers: &[Header]);
    /// Appends one header to record `r`.
    fn add_header(&mut self, p: u32, r: u32, header: &Header);
    /// Removes every header with key `key` from record `r`; returns how many it removed.
    fn remove_headers(&mut self, p: u32, r: u32, key: &str) -> u32 {
        let headers = self.headers(p, r);
        let kept: Vec<Header> = headers.iter().filter(|h| h.key != key).cloned().collect();
        let removed = (headers.len() - kept.len()) as u32;
        if removed > 0 {
            self.set_headers(p, r, &kept);
        }
        removed
    }
    /// Encrypts `parts` of record `r` in place with the KMS key `key_id`: each becomes its
    /// prefix followed by what [`kms::encrypt`] returns for it. On wasm the host does it and
    /// the bytes never enter the plugin. Returns, part by part, whether there was something to
    /// seal (a null key or value, or no header with a non-null value under that key, is left
    /// as it is). All or nothing: on an error the record is unchanged.
    fn seal(
        &mut self,
        p: u32,
        r: u32,
        key_id: &str,
        parts: &[SealedPart],
    ) -> Result<Vec<bool>, String> {
        let mut rec = self.get(p, r);
        let done = crypt_parts(&mut rec, parts, false, |part, plain| {
            let mut out = part.prefix.clone();
            out.extend(kms::encrypt(key_id, plain, &part.aad)?);
            Ok(out)
        })?;
        if done.contains(&true) {
            write_parts(self, p, r, &rec, parts);
        }
        Ok(done)
    }
    /// Reverses [`seal`](Records::seal): every part must start with its prefix and decrypt
    /// with its AAD (a null key or value is an error; headers with a null value are skipped).
    /// All or nothing: on an error the record is left exactly as it was.
    fn open(&mut self, p: u32, r: u32, parts: &[SealedPart]) -> Result<(), String> {
        let mut rec = self.get(p, r);
        let done = crypt_parts(&mut rec, parts, true, |part, sealed| {
            let ct = sealed
                .strip_prefix(part.prefix.as_slice())
                .ok_or_else(|| "does not start with the encryption prefix".to_string())?;
            kms::decrypt(ct, &part.aad)
        })?;
        if done.contains(&true) {
            write_parts(self, p, r, &rec, parts);
        }
        Ok(())
    }
    /// Seals `part` of every record of partition `p` that has it, as [`seal`](Records::seal)
    /// does, and marks each record sealed with the header `marker`; any other header with the
    /// marker's key is first removed from every record, so a client cannot forge the mark.
    /// One host call per partition instead of a few per record, for plugins whose key and
    /// parts do not depend on the record. All or nothing. Returns how many records were sealed.
    fn seal_partition(
        &mut self,
        p: u32,
        key_id: &str,
        part: &SealedPart,
        marker: &Header,
    ) -> Result<u32, String> {
        let mut sealed = Vec::new();
        for r in 0..self.record_count(p) {
            let mut rec = self.get(p, r);
            let done = crypt_parts(
                &mut rec,
                std::slice::from_ref(part),
                false,
                |part, plain| {
                    let mut out = part.prefix.clone();
                    out.extend(kms::encrypt(key_id, plain, &part.aad)?);
                    Ok(out)
                },
            )
            .map_err(|e| format!("record {r}: {e}"))?;
            if done[0] {
                sealed.push((r, rec));
            }
        }
        for r in 0..self.record_count(p) {
            self.remove_headers(p, r, &marker.key);
        }
        let count = sealed.len() as u32;
        for (r, rec) in sealed {
            write_parts(self, p, r, &rec, std::slice::from_ref(part));
            self.remove_headers(p, r, &marker.key);
            self.add_header(p, r, marker);
        }
        Ok(count)
    }
    /// Opens `part` of every record of partition `p` that carries exactly the header `marker`
    /// (same key, same value, no other header with that key), as [`open`](Records::open)
    /// does, and removes the marker. Records that do not open are left as they were and
    /// listed in `failed`; records with another header of the marker's key are not touched
    /// and listed in `other`, for the plugin to handle one by one.
    fn open_partition(&mut self, p: u32, part: &SealedPart, marker: &Header) -> PartitionOpened {
        let mut out = PartitionOpened {
            opened: 0,
            failed: Vec::new(),
            other: Vec::new(),
        };
        for r in 0..self.record_count(p) {
            let headers = self.headers(p, r);
            let with_key: Vec<&Header> = headers.iter().filter(|h| h.key == marker.key).collect();
            match with_key.as_slice() {
                [] => continue,
                [h] if h.value == marker.value => {}
                _ => {
                    out.other.push(r);
                    continue;
                }
            }
            match self.open(p, r, std::slice::from_ref(part)) {
                Ok(()) => {
                    self.remove_headers(p, r, &marker.key);
                    out.opened += 1;
                }
                Err(e) => out.failed.push((r, e)),
            }
        }
        out
    }
    /// Removes record `r` from the request or response.
    fn remove(&mut self, p: u32, r: u32);
    /// Appends a record to partition `p`.
    fn append(&mut self, p: u32, rec: &KafkaRecord);
    /// Rejects partition `p`: for Produce the broker never sees it and the client gets this
    /// error for that partition; for Fetch the client gets the error instead of the records.
    fn reject(&mut self, p: u32, error: &KafkaError);
}

/// How a part is named in errors.
fn part_name(part: &RecordPart) -> String {
    match part {
        RecordPart::Key => "the key".into(),
        RecordPart::Value => "the value".into(),
        RecordPart::Header(name) => format!("header `{name}`"),
    }
}

/// The default [`Records::seal`] / [`Records::open`], on a copy of the record: replaces each
/// part by what `f` makes of it, every part made before any is written. Mirrors the host.
fn crypt_parts(
    rec: &mut KafkaRecord,
    parts: &[SealedPart],
    required: bool,
    f: impl Fn(&SealedPart, &[u8]) -> Result<Vec<u8>, String>,
) -> Result<Vec<bool>, String> {
    let named = |part: &SealedPart, e: String| format!("{}: {e}", part_name(&part.part));
    let mut made = Vec::with_capacity(parts.len());
    let mut done = vec![false; parts.len()];
    for (i, part) in parts.iter().enumerate() {
        let single = match &part.part {
            RecordPart::Key => Some(&rec.key),
            RecordPart::Value => Some(&rec.value),
            RecordPart::Header(_) => None,
        };
        match single {
            Some(Some(bytes)) => {
                made.push((i, usize::MAX, f(part, bytes).map_err(|e| named(part, e))?));
                done[i] = true;
            }
            Some(None) if required => return Err(format!("{} is null", part_name(&part.part))),
            Some(None) => {}
            None => {
                let RecordPart::Header(name) = &part.part else {
                    unreachable!("only headers have no single slot")
                };
                for (h, header) in rec.headers.iter().enumerate() {
                    if let (true, Some(bytes)) = (&header.key == name, &header.value) {
                        made.push((i, h, f(part, bytes).map_err(|e| named(part, e))?));
                        done[i] = true;
                    }
                }
            }
        }
    }
    for (i, h, new) in made {
        match &parts[i].part {
            RecordPart::Key => rec.key = Some(new),
            RecordPart::Value => rec.value = Some(new),
            RecordPart::Header(_) => rec.headers[h].value = Some(new),
        }
    }
    Ok(done)
}

/// Writes back the parts of `rec` that `parts` name.
fn write_parts<R: Records + ?Sized>(
    records: &mut R,
    p: u32,
    r: u32,
    rec: &KafkaRecord,
    parts: &[SealedPart],
) {
    let mut headers = false;
    for part in parts {
        match part.part {
            RecordPart::Key => records.set_key(p, r, rec.key.as_deref()),
            RecordPart::Value => records.set_value(p, r, rec.value.as_deref()),
            RecordPart::Header(_) => headers = true,
        }
    }
    if headers {
        records.set_headers(p, r, &rec.headers);
    }
}

/// The host's `records` resource.
pub(crate) struct HostRecords<'a>(pub(crate) &'a wit::Records);

impl Records for HostRecords<'_> {
    fn partition_count(&self) -> u32 {
        self.0.partition_count()
    }
    fn topic(&self, p: u32) -> String {
        self.0.topic(p)
    }
    fn partition(&self, p: u32) -> i32 {
        self.0.partition(p)
    }
    fn record_count(&self, p: u32) -> u32 {
        self.0.record_count(p)
    }
    fn key(&self, p: u32, r: u32) -> Option<Vec<u8>> {
        self.0.key(p, r)
    }
    fn value(&self, p: u32, r: u32) -> Option<Vec<u8>> {
        self.0.value(p, r)
    }
    fn value_size(&self, p: u32, r: u32) -> i32 {
        self.0.value_size(p, r)
    }
    fn headers(&self, p: u32, r: u32) -> Vec<Header> {
        self.0.headers(p, r)
    }
    fn timestamp(&self, p: u32, r: u32) -> i64 {
        self.0.timestamp(p, r)
    }
    fn get(&self, p: u32, r: u32) -> KafkaRecord {
        self.0.get(p, r)
    }
    fn set_key(&mut self, p: u32, r: u32, key: Option<&[u8]>) {
        self.0.set_key(p, r, key)
    }
    fn set_value(&mut self, p: u32, r: u32, value: Option<&[u8]>) {
        self.0.set_value(p, r, value)
    }
    fn set_headers(&mut self, p: u32, r: u32, headers: &[Header]) {
        self.0.set_headers(p, r, headers)
    }
    fn add_header(&mut self, p: u32, r: u32, header: &Header) {
        self.0.add_header(p, r, header)
    }
    fn remove_headers(&mut self, p: u32, r: u32, key: &str) -> u32 {
        self.0.remove_headers(p, r, key)
    }
    fn seal(
        &mut self,
        p: u32,
        r: u32,
        key_id: &str,
        parts: &[SealedPart],
    ) -> Result<Vec<bool>, String> {
        self.0.seal(p, r, key_id, parts)
    }
    fn open(&mut self, p: u32, r: u32, parts: &[SealedPart]) -> Result<(), String> {
        self.0.open(p, r, parts)
    }
    fn seal_partition(
        &mut self,
        p: u32,
        key_id: &str,
        part: &SealedPart,
        marker: &Header,
    ) -> Result<u32, String> {
        self.0.seal_partition(p, key_id, part, marker)
    }
    fn open_partition(&mut self, p: u32, part: &SealedPart, marker: &Header) -> PartitionOpened {
        self.0.open_partition(p, part, marker)
    }
    fn remove(&mut self, p: u32, r: u32) {
        self.0.remove(p, r)
    }
    fn append(&mut self, p: u32, rec: &KafkaRecord) {
        self.0.append(p, rec)
    }
    fn reject(&mut self, p: u32, error: &KafkaError) {
        self.0.reject(p, error)
    }
}
