//! Finding the top-level tagged-field section of a response that arrives piece by piece.
//!
//! A Fetch v16+ response names brokers (KIP-951 `node_endpoints`) only in the tagged-field
//! section that ends it, after every partition's records. To rewrite those addresses without
//! holding a multi-MB frame, the gateway passes the frame on as it arrives and keeps back only
//! that last section. [`TailFinder`] says where it starts: fed the frame's bytes in whatever
//! pieces the socket delivers, it consumes every byte before the section and stops there.
//!
//! It is the schema walk of the parent module turned inside out: the same table drives it, but
//! its position in the structure lives in an explicit stack instead of the call stack, so it can
//! stop at any byte and resume when more arrive. It skips record payloads and strings by their
//! length without looking at them, and skips nested tagged fields by their size. It checks
//! shape only (lengths and counts are not negative, the version exists); the bytes it passes
//! are the broker's, relayed unchanged.

use kafka_protocol::messages::ApiKey;

use super::{response_def, ArrayKind, Fault, Field, Kind, StructDef, WalkError, STRUCTS};

/// What is still to pass, innermost last.
#[derive(Debug, Clone, Copy)]
enum Task {
    /// Pass this many bytes unread.
    Skip(usize),
    /// The untagged fields of a struct from row `next` on, then its tagged-field section.
    /// The root struct's section is the tail: the walk ends there.
    Struct {
        def: &'static StructDef,
        next: usize,
        root: bool,
    },
    /// `left` more elements of an array field.
    Elements { field: &'static Field, left: usize },
    /// A tagged-field section to skip: `left` fields still to pass, `None` before its count.
    Tagged { left: Option<u32> },
}

/// Finds where a response's top-level tagged-field section starts; see the module docs.
#[derive(Debug, Clone)]
pub struct TailFinder {
    version: i16,
    stack: Vec<Task>,
    /// Bytes consumed so far (from the first byte after the length prefix).
    consumed: usize,
    found: bool,
}

impl TailFinder {
    /// A finder for the response to a request of `api_key` at `version`, to be fed the frame
    /// from the first byte after its length prefix (the response header comes first).
    ///
    /// Fails when the table does not know the response or the version is not flexible (such
    /// a response has no tagged fields).
    pub fn response(api_key: ApiKey, version: i16) -> Result<Self, WalkError> {
        let unsupported = WalkError {
            fault: Fault::UnsupportedVersion,
            offset: 0,
            field: None,
        };
        let def = response_def(api_key as i16).ok_or(WalkError {
            fault: Fault::UnknownApiKey,
            ..unsupported
        })?;
        let root = def.root();
        if version < def.min || version > def.max || version < root.flexible_min {
            return Err(unsupported);
        }
        let mut stack = vec![Task::Struct {
            def: root,
            next: 0,
            root: true,
        }];
        // The header, read first: its tagged fields (header v1), then the correlation id.
        if api_key.response_header_version(version) >= 1 {
            stack.push(Task::Tagged { left: None });
        }
        stack.push(Task::Skip(4));
        Ok(Self {
            version,
            stack,
            consumed: 0,
            found: false,
        })
    }

    /// Whether the walk has reached the top-level tagged-field section: every byte before it
    /// has been consumed, and nothing more will be.
    pub fn found(&self) -> bool {
        self.found
    }

    /// Bytes consumed so far, counted from the first byte after the length prefix: once
    /// [`found`](Self::found), where the tail section starts.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// Consumes as much of `data` (the bytes following those already consumed) as it can
    /// and returns how many. Fewer than `data.len()` means either the tail was found or the
    /// next value (a count or a length) is cut off: the rest must be offered again with more
    /// bytes after it.
    pub fn advance(&mut self, data: &[u8]) -> Result<usize, WalkError> {
        let mut pos = 0;
        while !self.found {
            let Some(task) = self.stack.pop() else {
                // Only the root struct ends the walk, and it always does so by finding.
                unreachable!("the root struct ends the walk");
            };
            match self.step(task, &data[pos..]) {
                Ok(Some(n)) => pos += n,
                Ok(None) => {
                    // Cut off: the task waits for more bytes.
                    self.stack.push(task);
                    break;
                }
                Err(fault) => {
                    return Err(WalkError {
                        fault,
                        offset: self.consumed + pos,
                        field: None,
                    })
                }
            }
        }
        self.consumed += pos;
        Ok(pos)
    }

    /// Runs one task over `data`: `Some(n)` with the bytes it used (it may have pushed the
    /// tasks that follow), `None` when `data` ends before what it must read whole.
    fn step(&mut self, task: Task, data: &[u8]) -> Result<Option<usize>, Fault> {
        match task {
            Task::Skip(n) => {
                let take = n.min(data.len());
                if take < n {
                    if take == 0 {
                        return Ok(None);
                    }
                    self.stack.push(Task::Skip(n - take));
                }
                Ok(Some(take))
            }
            Task::Struct { def, next, root } => {
                let version = self.version;
                let fields = def.fields();
                let Some(i) = (next..fields.len())
                    .find(|&i| fields[i].tag < 0 && fields[i].present_in(version))
                else {
                    if version >= def.flexible_min {
                        if root {
                            self.found = true;
                        } else {
                            self.stack.push(Task::Tagged { left: None });
                        }
                    }
                    return Ok(Some(0));
                };
                let field = &fields[i];
                let before = self.stack.len();
                self.stack.push(Task::Struct {
                    def,
                    next: i + 1,
                    root,
                });
                let used = match field.array {
                    ArrayKind::One => self.value(field.kind, field.nullable, data)?,
                    ArrayKind::Array => match read_i32(data) {
                        None => None,
                        Some(n) if n < 0 => null_or_negative(field.nullable, n == -1, 4)?,
                        Some(n) => {
                            self.elements(field, n as usize);
                            Some(4)
                        }
                    },
                    ArrayKind::CompactArray => match read_uvarint(data) {
                        None => None,
                        Some((0, used)) => null_or_negative(field.nullable, true, used)?,
                        Some((n, used)) => {
                            self.elements(field, (n - 1) as usize);
                            Some(used)
                        }
                    },
                };
                if used.is_none() {
                    // Undo: the struct task is pushed back as it was, and the field starts
                    // again when more bytes are here.
                    self.stack.truncate(before);
                }
                Ok(used)
            }
            Task::Elements { field, left } => {
                if left == 0 {
                    return Ok(Some(0));
                }
                let before = self.stack.len();
                self.stack.push(Task::Elements {
                    field,
                    left: left - 1,
                });
                let used = self.value(field.kind, false, data)?;
                if used.is_none() {
                    self.stack.truncate(before);
                }
                Ok(used)
            }
            Task::Tagged { left: None } => Ok(read_uvarint(data).map(|(count, used)| {
                self.stack.push(Task::Tagged { left: Some(count) });
                used
            })),
            Task::Tagged { left: Some(0) } => Ok(Some(0)),
            Task::Tagged { left: Some(left) } => {
                let Some((_tag, a)) = read_uvarint(data) else {
                    return Ok(None);
                };
                let Some((size, b)) = read_uvarint(&data[a..]) else {
                    return Ok(None);
                };
                self.stack.push(Task::Tagged {
                    left: Some(left - 1),
                });
                self.stack.push(Task::Skip(size as usize));
                Ok(Some(a + b))
            }
        }
    }

    fn elements(&mut self, field: &'static Field, count: usize) {
        self.stack.push(Task::Elements { field, left: count });
    }

    /// Starts one value of `kind`: `Some(n)` with the bytes read now (the rest pushed as
    /// tasks), `None` when its length or marker is cut off (nothing pushed then).
    fn value(&mut self, kind: Kind, nullable: bool, data: &[u8]) -> Result<Option<usize>, Fault> {
        let fixed = |n: usize, stack: &mut Vec<Task>| {
            stack.push(Task::Skip(n));
            Ok(Some(0))
        };
        match kind {
            Kind::Bool | Kind::Int8 => fixed(1, &mut self.stack),
            Kind::Int16 | Kind::UInt16 => fixed(2, &mut self.stack),
            Kind::Int32 => fixed(4, &mut self.stack),
            Kind::Int64 | Kind::Float64 => fixed(8, &mut self.stack),
            Kind::Uuid => fixed(16, &mut self.stack),
            Kind::String => match data.get(..2) {
                None => Ok(None),
                Some(b) => {
                    let n = i16::from_be_bytes([b[0], b[1]]);
                    if n < 0 {
                        return null_or_negative(nullable, n == -1, 2);
                    }
                    self.stack.push(Task::Skip(n as usize));
                    Ok(Some(2))
                }
            },
            Kind::Bytes => match read_i32(data) {
                None => Ok(None),
                Some(n) if n < 0 => null_or_negative(nullable, n == -1, 4),
                Some(n) => {
                    self.stack.push(Task::Skip(n as usize));
                    Ok(Some(4))
                }
            },
            Kind::CompactString | Kind::CompactBytes => match read_uvarint(data) {
                None => Ok(None),
                Some((0, used)) => null_or_negative(nullable, true, used),
                Some((n, used)) => {
                    self.stack.push(Task::Skip((n - 1) as usize));
                    Ok(Some(used))
                }
            },
            Kind::Struct(index) => {
                self.stack.push(Task::Struct {
                    def: &STRUCTS[usize::from(index)],
                    next: 0,
                    root: false,
                });
                Ok(Some(0))
            }
            Kind::OptionStruct(index) => match data.first() {
                None => Ok(None),
                // kafka-protocol: 1 is present, any other marker is null.
                Some(1) => {
                    self.stack.push(Task::Struct {
                        def: &STRUCTS[usize::from(index)],
                        next: 0,
                        root: false,
                    });
                    Ok(Some(1))
                }
                Some(_) => Ok(Some(1)),
            },
        }
    }
}

fn null_or_negative(nullable: bool, is_null: bool, used: usize) -> Result<Option<usize>, Fault> {
    match (is_null, nullable) {
        (true, true) => Ok(Some(used)),
        (true, false) => Err(Fault::UnexpectedNull),
        (false, _) => Err(Fault::NegativeLength),
    }
}

fn read_i32(data: &[u8]) -> Option<i32> {
    data.get(..4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// An unsigned varint as kafka-protocol reads it (at most five bytes, the fifth ending it):
/// `None` when `data` ends first.
fn read_uvarint(data: &[u8]) -> Option<(u32, usize)> {
    let mut value = 0u32;
    for (i, &b) in data.iter().take(5).enumerate() {
        value |= (u32::from(b) & 0x7f).wrapping_shl(i as u32 * 7);
        if b < 0x80 || i == 4 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::tests::TypeVisitor;
    use super::super::{messages, table};
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
        PartitionData, SnapshotId,
    };
    use kafka_protocol::messages::{BrokerId, FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

    /// The frame (after its length prefix) of `msg` as a response at `version`.
    fn frame<T: Encodable>(key: ApiKey, version: i16, msg: &T) -> Vec<u8> {
        let mut buf = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(42)
            .encode(&mut buf, key.response_header_version(version))
            .unwrap();
        msg.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    /// Feeds `data` in pieces of `piece` bytes as a socket would deliver them (keeping what
    /// was not consumed) and returns where the finder stopped.
    fn find(key: ApiKey, version: i16, data: &[u8], piece: usize) -> usize {
        let mut f = TailFinder::response(key, version).unwrap();
        let (mut start, mut end) = (0, 0);
        while !f.found() {
            assert!(
                end < data.len(),
                "v{version}: ran off the end, piece {piece}"
            );
            end = (end + piece).min(data.len());
            start += f.advance(&data[start..end]).unwrap();
        }
        assert_eq!(start, f.consumed());
        start
    }

    fn every_piece(key: ApiKey, version: i16, data: &[u8], tail_start: usize) {
        for piece in [1, 2, 3, 5, 7, 64, 4096, data.len()] {
            assert_eq!(
                find(key, version, data, piece),
                tail_start,
                "{key:?} v{version}, pieces of {piece}"
            );
        }
    }

    /// Every response of every API key at every flexible version: a default message ends
    /// with an empty tagged-field section, its last byte.
    #[test]
    fn finds_the_tail_of_every_flexible_response() {
        struct Check(i16);
        impl TypeVisitor for Check {
            type Output = usize;
            fn visit<T>(self) -> usize
            where
                T: Encodable + Decodable + Message + Default + PartialEq + std::fmt::Debug,
            {
                let key = ApiKey::try_from(self.0).unwrap();
                let mut checked = 0;
                for v in T::VERSIONS.min..=T::VERSIONS.max {
                    if TailFinder::response(key, v).is_err() {
                        continue;
                    }
                    let data = frame(key, v, &T::default());
                    every_piece(key, v, &data, data.len() - 1);
                    checked += 1;
                }
                checked
            }
        }
        let mut checked = 0;
        for def in messages().iter().filter(|d| d.response) {
            checked += table::with_message_type(def.api_key, true, Check(def.api_key)).unwrap();
        }
        assert!(checked >= 160, "only {checked} versions checked");
    }

    fn partition(index: i32, records: Option<usize>, version: i16) -> PartitionData {
        let mut p = PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(1 << 40)
            .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                .with_producer_id(kafka_protocol::messages::ProducerId(7))
                .with_first_offset(3)]))
            .with_records(records.map(|n| Bytes::from(vec![0xab; n])));
        if version >= 12 {
            p = p
                .with_diverging_epoch(EpochEndOffset::default().with_epoch(4).with_end_offset(9))
                .with_current_leader(LeaderIdAndEpoch::default().with_leader_id(BrokerId(2)))
                .with_snapshot_id(SnapshotId::default().with_epoch(1));
        }
        p.unknown_tagged_fields
            .insert(99, Bytes::from_static(b"future"));
        p
    }

    /// Fetch at every flexible version, with records, aborted transactions, nested tagged
    /// fields (known and unknown) and KIP-951 endpoints: the tail starts where the same
    /// response without root tagged fields has its last byte.
    #[test]
    fn finds_the_tail_of_a_fetch_with_records_and_endpoints() {
        let key = ApiKey::Fetch;
        for v in 12..=FetchResponse::VERSIONS.max {
            let topics = (0..3)
                .map(|t| {
                    FetchableTopicResponse::default()
                        .with_topic(kafka_protocol::messages::TopicName(StrBytes::from_string(
                            format!("topic-{t}"),
                        )))
                        .with_topic_id(uuid::Uuid::from_u128(t as u128 + 1))
                        .with_partitions(vec![
                            partition(0, Some(3000 + t), v),
                            partition(1, None, v),
                            partition(2, Some(0), v),
                        ])
                })
                .collect();
            let bare = FetchResponse::default()
                .with_session_id(5)
                .with_responses(topics);
            let tail_start = frame(key, v, &bare).len() - 1;
            let mut full = bare.clone();
            if v >= 16 {
                full.node_endpoints = vec![NodeEndpoint::default()
                    .with_node_id(BrokerId(2))
                    .with_host(StrBytes::from_static_str("broker-2.internal"))
                    .with_port(9092)
                    .with_rack(Some(StrBytes::from_static_str("r1")))];
            }
            full.unknown_tagged_fields
                .insert(77, Bytes::from_static(b"root tag"));
            let data = frame(key, v, &full);
            assert!(data.len() > tail_start + 8);
            every_piece(key, v, &data, tail_start);
        }
    }

    #[test]
    fn refuses_what_has_no_tail_and_bad_lengths() {
        assert!(TailFinder::response(ApiKey::Fetch, 11).is_err());
        assert!(TailFinder::response(ApiKey::Fetch, 99).is_err());
        // A Fetch response cut off just before a partition's records: all of it consumed,
        // the tail not found, and nothing more consumed until more bytes come.
        let mut data = BytesMut::new();
        data.put_i32(42); // correlation id
        data.put_u8(0); // header tags
        data.put_i32(0); // throttle
        data.put_i16(0); // error
        data.put_i32(0); // session
        data.put_u8(2); // one topic
        data.put_bytes(0, 16); // topic id
        data.put_u8(2); // one partition
        data.put_bytes(0, 4 + 2 + 8 + 8 + 8); // index .. log start offset
        data.put_u8(0); // aborted transactions: null
        data.put_i32(-1); // preferred read replica
        let mut f = TailFinder::response(ApiKey::Fetch, 16).unwrap();
        let n = f.advance(&data).unwrap();
        assert_eq!(n, data.len(), "everything offered is consumed");
        assert!(!f.found());
        assert_eq!(f.advance(&[]).unwrap(), 0);
        // A null where the schema has none is refused.
        let mut g = TailFinder::response(ApiKey::Produce, 9).unwrap();
        let mut bad = BytesMut::new();
        bad.put_i32(1);
        bad.put_u8(0);
        bad.put_u8(2); // one topic
        bad.put_u8(0); // a null name: not nullable
        assert_eq!(
            g.advance(&bad).unwrap_err().fault,
            Fault::UnexpectedNull,
            "a null topic name"
        );
    }
}
