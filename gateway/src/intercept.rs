//! Running the interceptor chain on a request and on its response.
//!
//! The session calls [`on_request`] only when some interceptor of the client's chain subscribes
//! to the request (a generic hook for its API key, or the produce hook for Produce), and
//! [`on_response`] only when some subscribes to the response. Frames are decoded only for the
//! hooks that need them: generic hooks get the raw body; record hooks get the records of
//! Produce requests and Fetch responses decoded by the host; a partition nobody changed keeps
//! its original bytes.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::identity::Identity;
pub use crate::message::PartitionResult;
use crate::message::{
    encode_response, error_response, merge_produce, reject_fetch_partition, response_frame,
};
use crate::metrics::Metrics;
use crate::records::{self, Batch, Offsets, Record, RecordSet};
use crate::registry::{log_failure, FailurePolicy, Hook, Installed};
use sluice_wasm::bindings::sluice::interceptor::types as wit;
use sluice_wasm::host::{PartitionView, RecordView, RecordsView};
use sluice_wasm::CallFailure;

use crate::message::codes;

/// The error a fail-closed interceptor's failure gives the client, and its message (which
/// names the interceptor; sent where the protocol has a message field, Produce v8+ per
/// partition). A timeout is REQUEST_TIMED_OUT, which every client retries: the plugin was slow
/// this time; so is a call that found all of the interceptor's call slots taken for as long. A trap, a refused allocation or an instance that cannot be created is
/// UNKNOWN_SERVER_ERROR: the same request would most likely fail the same way.
pub fn failure_error(interceptor: &str, failure: &CallFailure) -> (i16, String) {
    let code = match failure {
        CallFailure::Timeout { .. } | CallFailure::Busy { .. } => codes::REQUEST_TIMED_OUT,
        CallFailure::OutOfMemory | CallFailure::Trap(_) | CallFailure::Instantiate(_) => {
            codes::UNKNOWN_SERVER_ERROR
        }
    };
    (code, format!("interceptor {interceptor} failed: {failure}"))
}

/// Topic ids learnt from Metadata responses, to show plugins topic names when a request
/// carries only ids (Fetch v13+, Produce v13+).
pub type TopicNames = RwLock<HashMap<uuid::Uuid, String>>;

/// Resolves topic ids to names, as one connection may see them (a virtual cluster sees only
/// its own topics: another tenant's id resolves to nothing, as if it did not exist).
pub trait TopicLookup {
    /// The name of topic `id`, if known and visible.
    fn topic_name(&self, id: uuid::Uuid) -> Option<String>;
}

impl TopicLookup for TopicNames {
    fn topic_name(&self, id: uuid::Uuid) -> Option<String> {
        self.read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }
}

/// The request being intercepted.
pub struct RequestMeta<'a> {
    /// API key.
    pub api_key: i16,
    /// API version.
    pub version: i16,
    /// Correlation id.
    pub correlation_id: i32,
    /// Request header size (after the length prefix).
    pub header_len: usize,
    /// The client.
    pub client: &'a Identity,
}

/// What the request path does after the chain ran.
pub enum Outcome {
    /// Forward; `frame` is the rebuilt frame when something changed.
    Forward {
        /// Rebuilt frame (length prefix included), or `None` to forward the original.
        frame: Option<Bytes>,
        /// Partitions to add to the broker's Produce response.
        produce_extra: Vec<PartitionResult>,
    },
    /// Do not forward; answer with this response frame.
    Respond(Bytes),
    /// Close the connection (no valid answer can be built).
    Close(String),
}

fn context(inst: &Installed, meta: &RequestMeta<'_>) -> wit::Context {
    wit::Context {
        interceptor: inst.name.clone(),
        vcluster: meta.client.vcluster.clone(),
        principal: meta.client.principal.clone(),
        groups: meta.client.groups.clone(),
        client_id: meta.client.client_id.clone(),
        client_address: meta.client.address.clone(),
        api_key: meta.api_key,
        api_version: meta.version,
        correlation_id: meta.correlation_id,
    }
}

/// Whether any interceptor of `chain` wants to see this request.
pub fn wants_request(chain: &[Arc<Installed>], api_key: i16) -> bool {
    chain.iter().any(|i| {
        (i.caps.request && i.caps.wants_key(api_key))
            || (i.caps.produce && api_key == ApiKey::Produce as i16)
    })
}

/// Whether any interceptor of `chain` wants to see the response.
pub fn wants_response(chain: &[Arc<Installed>], api_key: i16) -> bool {
    chain.iter().any(|i| {
        (i.caps.response && i.caps.wants_key(api_key))
            || (i.caps.fetch && api_key == ApiKey::Fetch as i16)
    })
}

/// Runs the request hooks in ascending priority. Each plugin call runs on a plugin thread
/// (see `sluice_wasm::pool`); the caller's task waits for it without holding its worker.
pub async fn on_request(
    chain: &[Arc<Installed>],
    meta: &RequestMeta<'_>,
    frame: &Bytes,
    metrics: &Metrics,
    topic_names: &TopicNames,
) -> Outcome {
    let key = ApiKey::try_from(meta.api_key).ok();
    let start = 4 + meta.header_len;
    let mut body = frame.slice(start..);
    let mut changed = false;
    let mut extras = Vec::new();
    for inst in chain {
        if inst.caps.request && inst.caps.wants_key(meta.api_key) {
            let ctx = context(inst, meta);
            let t = Instant::now();
            let result = inst.instances.on_request(ctx, body.clone()).await;
            inst.observe(Hook::Request, t.elapsed());
            match result {
                Ok(wit::RequestAction::Forward) => {}
                Ok(wit::RequestAction::Replace(b)) => {
                    body = Bytes::from(b);
                    changed = true;
                }
                Ok(wit::RequestAction::Respond(b)) => {
                    return match key {
                        Some(k) => Outcome::Respond(response_frame(
                            k,
                            meta.version,
                            meta.correlation_id,
                            &b,
                        )),
                        None => Outcome::Close(format!(
                            "interceptor {} answered an unknown API key {}",
                            inst.name, meta.api_key
                        )),
                    };
                }
                Ok(wit::RequestAction::Reject(e)) => {
                    return reject(meta, &body, e.code, &e.message);
                }
                Err(failure) => {
                    if let Some(out) = failed(inst, &failure, metrics, meta, &body) {
                        return out;
                    }
                }
            }
        }
        if key == Some(ApiKey::Produce) && inst.caps.produce {
            match produce_hook(inst, meta, &body, &mut extras, metrics, topic_names).await {
                Ok(Some(new_body)) => {
                    body = new_body;
                    changed = true;
                }
                Ok(None) => {}
                Err(out) => return out,
            }
        }
    }
    if key == Some(ApiKey::Produce) && !extras.is_empty() {
        // Every partition answered by the gateway: nothing left to forward.
        let empty =
            crate::schema::decode_request::<ProduceRequest>(ApiKey::Produce, meta.version, &body)
                .map(|r| r.topic_data.iter().all(|t| t.partition_data.is_empty()))
                .unwrap_or(false);
        if empty {
            let mut resp = ProduceResponse::default();
            merge_produce(&mut resp, &extras);
            return Outcome::Respond(encode_response(
                ApiKey::Produce,
                meta.version,
                meta.correlation_id,
                &resp,
            ));
        }
    }
    let frame = changed.then(|| {
        let header = &frame[4..start];
        let mut out = BytesMut::with_capacity(4 + header.len() + body.len());
        out.put_i32((header.len() + body.len()) as i32);
        out.put_slice(header);
        out.put_slice(&body);
        out.freeze()
    });
    Outcome::Forward {
        frame,
        produce_extra: extras,
    }
}

/// Applies the failure policy; `None` means "skip this interceptor".
fn failed(
    inst: &Installed,
    failure: &CallFailure,
    metrics: &Metrics,
    meta: &RequestMeta<'_>,
    body: &Bytes,
) -> Option<Outcome> {
    metrics.interceptor_failure(&inst.name, failure.kind());
    log_failure(&inst.name, inst.spec.failure_policy, failure);
    match inst.spec.failure_policy {
        FailurePolicy::FailOpen => None,
        FailurePolicy::FailClosed => {
            let (code, message) = failure_error(&inst.name, failure);
            Some(reject(meta, body, code, &message))
        }
    }
}

fn reject(meta: &RequestMeta<'_>, body: &Bytes, code: i16, message: &str) -> Outcome {
    match error_response(
        meta.api_key,
        meta.version,
        meta.correlation_id,
        body,
        code,
        message,
    ) {
        Some(frame) => Outcome::Respond(frame),
        None => Outcome::Close(format!(
            "request rejected ({code}: {message}) and api key {} has no error response form",
            meta.api_key
        )),
    }
}

fn topic_label(name: &TopicName, id: &uuid::Uuid, names: &TopicNames) -> String {
    if !name.0.is_empty() {
        return name.0.to_string();
    }
    names
        .read()
        .expect("topic names lock")
        .get(id)
        .cloned()
        .unwrap_or_else(|| id.to_string())
}

/// Writes a partition's records, as a plugin left them, back into its record set; returns the
/// new `records` bytes, or `None` when every record is gone.
fn rebuild(
    set: &mut RecordSet,
    view: &[RecordView],
    offsets: Offsets,
) -> anyhow::Result<Option<Bytes>> {
    let mut per_batch: Vec<Vec<Record>> = vec![Vec::new(); set.batches.len()];
    let last_data = set.batches.iter().rposition(|b| !b.is_control());
    let mut appended = Vec::new();
    for r in view.iter().filter(|r| !r.removed) {
        let rec = Record {
            attributes: r.attributes,
            timestamp: r.timestamp,
            offset_delta: r.offset_delta,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        };
        match r.batch {
            Some(b) => per_batch[b].push(rec),
            None => appended.push(rec),
        }
    }
    if !appended.is_empty() {
        match last_data {
            Some(b) => per_batch[b].extend(appended),
            None => {
                // No batch to extend: start a plain one.
                set.batches.push(Batch {
                    base_offset: 0,
                    partition_leader_epoch: -1,
                    attributes: 0,
                    last_offset_delta: 0,
                    base_timestamp: appended[0].timestamp,
                    max_timestamp: appended[0].timestamp,
                    producer_id: -1,
                    producer_epoch: -1,
                    base_sequence: -1,
                    records: Vec::new(),
                    raw: Bytes::new(),
                });
                per_batch.push(appended);
            }
        }
    }
    let mut out = BytesMut::new();
    let mut any = false;
    for (batch, records) in set.batches.iter_mut().zip(per_batch) {
        if batch.is_control() {
            out.put_slice(&batch.raw);
            any = true;
            continue;
        }
        if records.is_empty() {
            continue;
        }
        any = true;
        if records == batch.records && !batch.raw.is_empty() {
            out.put_slice(&batch.raw);
        } else {
            // The view was decoded without the CRC check: a corrupt batch must not come out
            // with a fresh, valid CRC.
            anyhow::ensure!(
                batch.crc_ok(),
                "record batch CRC mismatch: a corrupt batch is not re-encoded"
            );
            batch.records = records;
            records::encode_batch(batch, offsets, &mut out)?;
        }
    }
    out.put_slice(&set.trailing);
    if !any && set.trailing.is_empty() {
        return Ok(None);
    }
    Ok(Some(out.freeze()))
}

async fn produce_hook(
    inst: &Installed,
    meta: &RequestMeta<'_>,
    body: &Bytes,
    extras: &mut Vec<PartitionResult>,
    metrics: &Metrics,
    topic_names: &TopicNames,
) -> Result<Option<Bytes>, Outcome> {
    let mut req: ProduceRequest =
        crate::schema::decode_request(ApiKey::Produce, meta.version, body)
            .map_err(|e| Outcome::Close(format!("{e:#}")))?;
    let mut partitions = Vec::new();
    for t in &req.topic_data {
        let topic = topic_label(&t.name, &t.topic_id, topic_names);
        for p in &t.partition_data {
            // Decoded only if the plugin reads it. A batch that does not decode (corrupt,
            // legacy format) is forwarded as is for the broker to judge, and not shown.
            partitions.push(PartitionView::new(
                topic.clone(),
                p.index,
                p.records.clone(),
            ));
        }
    }
    let view = RecordsView {
        fetch: false,
        partitions,
    };
    let ctx = context(inst, meta);
    let t = Instant::now();
    let result = inst.instances.on_records(false, ctx, view).await;
    inst.observe(Hook::Produce, t.elapsed());
    let mut view = match result {
        Ok((_, Err(e))) => return Err(reject(meta, body, e.code, &e.message)),
        Ok((view, Ok(()))) => view,
        Err(failure) => {
            return match failed(inst, &failure, metrics, meta, body) {
                Some(out) => Err(out),
                None => Ok(None),
            }
        }
    };
    let mut changed = false;
    let mut index = 0;
    for t in &mut req.topic_data {
        let topic_id = t.topic_id;
        let name = t.name.clone();
        let mut kept = Vec::new();
        for mut p in std::mem::take(&mut t.partition_data) {
            let pv = &mut view.partitions[index];
            index += 1;
            let answer = |code: i16, message: Option<String>| PartitionResult {
                topic: name.clone(),
                topic_id,
                partition: p.index,
                code,
                message,
            };
            if let Some((code, message)) = &pv.rejected {
                extras.push(answer(*code, Some(message.clone())));
                changed = true;
                continue;
            }
            if pv.dirty {
                let Some((Some(mut set), records)) = pv.take_decoded() else {
                    kept.push(p);
                    continue;
                };
                let idempotent = set.batches.iter().any(|b| b.is_idempotent());
                if pv.count_changed && idempotent {
                    extras.push(answer(
                        codes::INVALID_RECORD,
                        Some(format!(
                            "interceptor {} added or removed records of an idempotent batch, which would break its sequence numbers",
                            inst.name
                        )),
                    ));
                    changed = true;
                    continue;
                }
                match rebuild(&mut set, &records, Offsets::Renumber) {
                    Ok(Some(bytes)) => {
                        p.records = Some(bytes);
                        changed = true;
                    }
                    Ok(None) => {
                        // Every record dropped: acknowledge the partition ourselves.
                        extras.push(answer(0, None));
                        changed = true;
                        continue;
                    }
                    Err(e) => {
                        extras.push(answer(
                            codes::INVALID_RECORD,
                            Some(format!("re-encoding failed: {e:#}")),
                        ));
                        changed = true;
                        continue;
                    }
                }
            }
            kept.push(p);
        }
        t.partition_data = kept;
    }
    req.topic_data.retain(|t| !t.partition_data.is_empty());
    if !changed {
        return Ok(None);
    }
    let mut out = BytesMut::new();
    req.encode(&mut out, meta.version)
        .map_err(|e| Outcome::Close(format!("re-encoding Produce request: {e:#}")))?;
    Ok(Some(out.freeze()))
}

/// The response being intercepted.
pub struct ResponseMeta<'a> {
    /// The request's metadata.
    pub request: RequestMeta<'a>,
    /// The request body (after any request-side change), for error answers.
    pub request_body: Bytes,
}

/// Runs the response hooks in descending priority and merges gateway-answered produce
/// partitions. `Ok(None)`: forward the original frame.
pub async fn on_response(
    chain: &[Arc<Installed>],
    meta: &ResponseMeta<'_>,
    frame: Bytes,
    extras: &[PartitionResult],
    metrics: &Metrics,
    topic_names: &TopicNames,
) -> Result<Option<Bytes>, String> {
    let req = &meta.request;
    let Ok(key) = ApiKey::try_from(req.api_key) else {
        return Ok(None);
    };
    let header_version = key.response_header_version(req.version);
    let header_len = if header_version == 0 {
        4
    } else {
        crate::frame::skip_tagged_fields(&frame[4..], 4).ok_or("malformed response header")?
    };
    let mut body = frame.slice(4 + header_len..);
    let mut changed = false;
    for inst in chain.iter().rev() {
        if inst.caps.response && inst.caps.wants_key(req.api_key) {
            let ctx = context(inst, req);
            let t = Instant::now();
            let result = inst.instances.on_response(ctx, body.clone()).await;
            inst.observe(Hook::Response, t.elapsed());
            match result {
                Ok(wit::ResponseAction::Forward) => {}
                Ok(wit::ResponseAction::Replace(b)) => {
                    body = Bytes::from(b);
                    changed = true;
                }
                Err(failure) => {
                    if meta.request_body.is_empty() && key == ApiKey::Produce {
                        // The request was not kept (large): answer from the response, which
                        // names the same partitions.
                        metrics.interceptor_failure(&inst.name, failure.kind());
                        log_failure(&inst.name, inst.spec.failure_policy, &failure);
                        if inst.spec.failure_policy == FailurePolicy::FailOpen {
                            continue;
                        }
                        let (code, message) = failure_error(&inst.name, &failure);
                        return produce_error_from_response(&body, req, code, &message).map(Some);
                    }
                    if let Some(out) = failed(inst, &failure, metrics, req, &meta.request_body) {
                        return match out {
                            Outcome::Respond(f) => Ok(Some(f)),
                            Outcome::Close(m) => Err(m),
                            Outcome::Forward { .. } => Ok(None),
                        };
                    }
                }
            }
        }
        if key == ApiKey::Fetch && inst.caps.fetch {
            match fetch_hook(inst, req, &body, metrics, topic_names).await {
                Ok(Some(b)) => {
                    body = b;
                    changed = true;
                }
                Ok(None) => {}
                Err(FetchFailure::Reject(code, message)) => {
                    return match reject(req, &meta.request_body, code, &message) {
                        Outcome::Respond(f) => Ok(Some(f)),
                        Outcome::Close(m) => Err(m),
                        Outcome::Forward { .. } => Ok(None),
                    };
                }
                Err(FetchFailure::Broken(m)) => return Err(m),
            }
        }
    }
    if key == ApiKey::Produce && !extras.is_empty() {
        let mut resp: ProduceResponse =
            crate::schema::decode_response(ApiKey::Produce, req.version, &body)
                .map_err(|e| format!("{e:#}"))?;
        merge_produce(&mut resp, extras);
        let mut out = BytesMut::new();
        resp.encode(&mut out, req.version)
            .map_err(|e| e.to_string())?;
        body = out.freeze();
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    let header = &frame[4..4 + header_len];
    let mut out = BytesMut::with_capacity(4 + header.len() + body.len());
    out.put_i32((header.len() + body.len()) as i32);
    out.put_slice(header);
    out.put_slice(&body);
    Ok(Some(out.freeze()))
}

enum FetchFailure {
    /// The plugin rejected the whole response, or failed under the fail-closed policy.
    Reject(i16, String),
    /// The response could not be processed.
    Broken(String),
}

async fn fetch_hook(
    inst: &Installed,
    meta: &RequestMeta<'_>,
    body: &Bytes,
    metrics: &Metrics,
    topic_names: &TopicNames,
) -> Result<Option<Bytes>, FetchFailure> {
    let mut resp: FetchResponse = crate::schema::decode_response(ApiKey::Fetch, meta.version, body)
        .map_err(|e| FetchFailure::Broken(format!("{e:#}")))?;
    let nothing = |b: &Bytes| records::count_hint(b) == (0, 0);
    if resp
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .all(|p| p.records.as_ref().is_none_or(nothing))
    {
        return Ok(None); // no data batch to show
    }
    let mut partitions = Vec::new();
    for t in &resp.responses {
        let topic = topic_label(&t.topic, &t.topic_id, topic_names);
        for p in &t.partitions {
            partitions.push(PartitionView::new(
                topic.clone(),
                p.partition_index,
                p.records.clone(),
            ));
        }
    }
    let view = RecordsView {
        fetch: true,
        partitions,
    };
    let ctx = context(inst, meta);
    let t = Instant::now();
    let result = inst.instances.on_records(true, ctx, view).await;
    inst.observe(Hook::Fetch, t.elapsed());
    let mut view = match result {
        Ok((_, Err(e))) => return Err(FetchFailure::Reject(e.code, e.message)),
        Ok((view, Ok(()))) => view,
        Err(failure) => {
            metrics.interceptor_failure(&inst.name, failure.kind());
            log_failure(&inst.name, inst.spec.failure_policy, &failure);
            return match inst.spec.failure_policy {
                FailurePolicy::FailOpen => Ok(None),
                FailurePolicy::FailClosed => {
                    let (code, message) = failure_error(&inst.name, &failure);
                    Err(FetchFailure::Reject(code, message))
                }
            };
        }
    };
    let mut changed = false;
    let mut index = 0;
    for t in &mut resp.responses {
        for p in &mut t.partitions {
            let pv = &mut view.partitions[index];
            index += 1;
            if let Some((code, _)) = &pv.rejected {
                reject_fetch_partition(p, *code);
                changed = true;
                continue;
            }
            if !pv.dirty {
                continue;
            }
            let Some((Some(mut set), records)) = pv.take_decoded() else {
                continue;
            };
            match rebuild(&mut set, &records, Offsets::Keep) {
                Ok(bytes) => p.records = Some(bytes.unwrap_or_default()),
                Err(_) => reject_fetch_partition(p, codes::UNKNOWN_SERVER_ERROR),
            }
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    let mut out = BytesMut::new();
    resp.encode(&mut out, meta.version)
        .map_err(|e| FetchFailure::Broken(format!("re-encoding Fetch response: {e:#}")))?;
    Ok(Some(out.freeze()))
}

/// A Produce response failing every partition the broker's `body` names.
fn produce_error_from_response(
    body: &Bytes,
    req: &RequestMeta<'_>,
    code: i16,
    message: &str,
) -> Result<Bytes, String> {
    let mut resp: ProduceResponse =
        crate::schema::decode_response(ApiKey::Produce, req.version, body)
            .map_err(|e| format!("{e:#}"))?;
    for t in &mut resp.responses {
        for p in &mut t.partition_responses {
            p.error_code = code;
            p.base_offset = -1;
            p.error_message = Some(StrBytes::from_string(message.to_string()));
        }
    }
    Ok(encode_response(
        ApiKey::Produce,
        req.version,
        req.correlation_id,
        &resp,
    ))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::Decodable;

    /// A partition a plugin changed is re-encoded only from a batch whose CRC holds (views
    /// are decoded without the check); untouched batches pass as they are, corrupt or not.
    #[test]
    fn a_corrupt_batch_is_never_re_encoded_with_a_fresh_crc() {
        let batch = Batch {
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: 0,
            last_offset_delta: 1,
            base_timestamp: 1,
            max_timestamp: 1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: (0..2)
                .map(|i| Record {
                    attributes: 0,
                    timestamp: 1,
                    offset_delta: i,
                    key: None,
                    value: Some(Bytes::from(format!("value {i}"))),
                    headers: Vec::new(),
                })
                .collect(),
            raw: Bytes::new(),
        };
        let mut out = BytesMut::new();
        records::encode_batch(&batch, Offsets::Renumber, &mut out).unwrap();
        // One letter of a value flipped: still parses, but no longer matches the CRC.
        let at = out.windows(7).position(|w| w == b"value 0").unwrap();
        out[at] = b'V';
        let corrupt = out.freeze();
        let mut view = PartitionView::new("t".into(), 0, Some(corrupt.clone()));
        assert_eq!(view.records().len(), 2, "shown to the plugin");
        // Unchanged: passed on as received.
        let (set, records) = view.take_decoded().unwrap();
        let mut set = set.unwrap();
        assert_eq!(
            rebuild(&mut set.clone(), &records, Offsets::Renumber).unwrap(),
            Some(corrupt)
        );
        // Changed: refused.
        let mut changed = records;
        changed[0].value = Some(Bytes::from_static(b"new"));
        let e = rebuild(&mut set, &changed, Offsets::Renumber).unwrap_err();
        assert!(e.to_string().contains("CRC"), "{e}");
    }

    #[test]
    fn a_timeout_is_retriable_and_names_the_interceptor() {
        use std::time::Duration;
        let timeout = CallFailure::Timeout {
            cpu: Duration::from_millis(51),
            wall: Duration::from_millis(70),
            budget: Duration::from_millis(50),
        };
        let (code, message) = failure_error("stamp", &timeout);
        assert_eq!(code, codes::REQUEST_TIMED_OUT);
        assert!(
            message.starts_with("interceptor stamp failed: deadline exceeded (51.0 ms CPU"),
            "{message}"
        );
        // No call slot free within the wall-clock ceiling: retriable too.
        let busy = CallFailure::Busy {
            waited: Duration::from_secs(2),
            limit: 1,
        };
        let (code, message) = failure_error("stamp", &busy);
        assert_eq!(code, codes::REQUEST_TIMED_OUT);
        assert_eq!(
            message,
            "interceptor stamp failed: no call slot free after 2000.0 ms (1 calls of it already running)"
        );
        for other in [
            CallFailure::Trap("unreachable".into()),
            CallFailure::OutOfMemory,
            CallFailure::Instantiate("x".into()),
        ] {
            let (code, message) = failure_error("stamp", &other);
            assert_eq!(code, codes::UNKNOWN_SERVER_ERROR);
            assert!(message.starts_with("interceptor stamp failed: "));
        }
    }

    #[test]
    fn produce_error_built_from_the_response() {
        let resp = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("a")))
            .with_partition_responses(vec![
                PartitionProduceResponse::default()
                    .with_index(0)
                    .with_base_offset(7),
                PartitionProduceResponse::default().with_index(1),
            ])]);
        let mut body = BytesMut::new();
        resp.encode(&mut body, 9).unwrap();
        let client = Identity::default();
        let meta = RequestMeta {
            api_key: 0,
            version: 9,
            correlation_id: 3,
            header_len: 0,
            client: &client,
        };
        let frame = produce_error_from_response(&body.freeze(), &meta, 7, "boom").unwrap();
        let mut b = frame.slice(4..);
        let header =
            ResponseHeader::decode(&mut b, ApiKey::Produce.response_header_version(9)).unwrap();
        assert_eq!(header.correlation_id, 3);
        let got = ProduceResponse::decode(&mut b, 9).unwrap();
        for p in &got.responses[0].partition_responses {
            assert_eq!((p.error_code, p.base_offset), (7, -1));
            assert_eq!(p.error_message.as_deref(), Some("boom"));
        }
        assert_eq!(got.responses[0].partition_responses.len(), 2);
    }

    #[test]
    fn merge_adds_partitions_to_existing_and_new_topics() {
        let mut resp =
            ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("a")))
                .with_partition_responses(
                    vec![PartitionProduceResponse::default().with_index(0)],
                )]);
        let extra = |t: &'static str, p| PartitionResult {
            topic: TopicName(StrBytes::from_static_str(t)),
            topic_id: Default::default(),
            partition: p,
            code: 87,
            message: None,
        };
        merge_produce(&mut resp, &[extra("a", 1), extra("b", 0)]);
        assert_eq!(resp.responses.len(), 2);
        assert_eq!(resp.responses[0].partition_responses.len(), 2);
        assert_eq!(resp.responses[1].partition_responses[0].error_code, 87);
    }
}
