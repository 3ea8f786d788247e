//! [`Records`]: the records of a Produce request or Fetch response.

use crate::bindings::sluice::interceptor::types as wit;
use crate::{Header, KafkaError, KafkaRecord};

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
    /// Removes record `r` from the request or response.
    fn remove(&mut self, p: u32, r: u32);
    /// Appends a record to partition `p`.
    fn append(&mut self, p: u32, rec: &KafkaRecord);
    /// Rejects partition `p`: for Produce the broker never sees it and the client gets this
    /// error for that partition; for Fetch the client gets the error instead of the records.
    fn reject(&mut self, p: u32, error: &KafkaError);
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
