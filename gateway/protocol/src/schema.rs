//! Schema-driven structural walk of Kafka request and response bodies.
//!
//! kafka-protocol decodes an array by reserving `Vec::with_capacity(n)` with `n` read from
//! the wire, so a forged count of 2^31 makes one allocation of hundreds of gigabytes and the
//! process aborts. Before the gateway hands any body to kafka-protocol it walks the body here:
//! every array count (at any depth, tagged fields included) must fit in the bytes that remain
//! (each element takes at least one byte), every string and bytes length must fit, and the
//! body must have the shape kafka-protocol will read. A body that passes cannot make the
//! decoder reserve more than a small multiple of its own size.
//!
//! The walk is driven by a generated table (`schema/table.rs`, produced by
//! `gateway/protocol/schema/generate.py` from kafka-protocol's decoders, which kafka-protocol itself
//! generates from Apache Kafka's JSON message specs). It holds, for every request and
//! response of every API key and version kafka-protocol decodes, each field's wire type,
//! version range, nullability, tag and entity type (topic name, group id, transactional id,
//! broker id, producer id). Nothing is written per API.
//!
//! The walk also reports what it passes to a [`Visitor`]: every string with its entity type
//! and byte range, every array header and every tagged field, so a later stage can find (and
//! rewrite) every tenant-visible name without decoding.
//!
//! Entry points: [`check_request`] / [`check_response`] (a yes/no for the decode gate) and
//! [`walk_request`] / [`walk_response`] (the reason on failure, and the visitor).

use std::fmt;
use std::ops::Range;

mod decode;
pub mod rewrite;
pub mod synth;
mod table;
mod tail;

pub use decode::{
    decode_own, decode_request, decode_request_header, decode_response, decode_response_frame,
    decode_response_header,
};
pub use tail::TailFinder;

use table::{FIELDS, MESSAGES, REQUEST_INDEX, RESPONSE_INDEX, STRUCTS};

/// What a field names, from the `entityType` of Kafka's message specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    /// Not an entity reference (or an entity the specs leave untyped).
    None,
    /// A topic name.
    TopicName,
    /// A consumer, share or streams group id.
    GroupId,
    /// A transactional id.
    TransactionalId,
    /// A broker node id (an `int32`).
    BrokerId,
    /// A producer id (an `int64`).
    ProducerId,
}

/// Whether a field is a single value or an array of them, and the array's count encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayKind {
    /// A single value.
    One,
    /// An array with an `int32` count (-1 is null).
    Array,
    /// A compact array with an unsigned varint count of `n + 1` (0 is null).
    CompactArray,
}

/// The wire type of a value (of a field, or of each element of an array field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One byte, zero is false.
    Bool,
    /// A signed byte.
    Int8,
    /// A big-endian `int16`.
    Int16,
    /// A big-endian `uint16`.
    UInt16,
    /// A big-endian `int32`.
    Int32,
    /// A big-endian `int64`.
    Int64,
    /// A big-endian IEEE 754 double.
    Float64,
    /// 16 bytes.
    Uuid,
    /// UTF-8 with an `int16` length (-1 is null).
    String,
    /// UTF-8 with an unsigned varint length of `n + 1` (0 is null).
    CompactString,
    /// Bytes with an `int32` length (-1 is null).
    Bytes,
    /// Bytes with an unsigned varint length of `n + 1` (0 is null).
    CompactBytes,
    /// A nested struct, by index into the struct table.
    Struct(u16),
    /// A nullable nested struct: an `int8` marker (1 = present) then the struct.
    OptionStruct(u16),
}

/// One field of a struct over one version range with one wire type.
///
/// A field whose encoding changes between versions (a string that becomes compact in the
/// first flexible version) has one row per encoding, with disjoint version ranges.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The field name (kafka-protocol's snake_case name).
    pub name: &'static str,
    /// First version the field is on the wire with this encoding.
    pub min: i16,
    /// Last version the field is on the wire with this encoding.
    pub max: i16,
    /// The tag of a tagged field, or -1 for a field in the fixed part.
    pub tag: i32,
    /// Single value or array, and the array count encoding.
    pub array: ArrayKind,
    /// The value (or element) wire type.
    pub kind: Kind,
    /// Whether null is accepted (for an array field: the array itself).
    pub nullable: bool,
    /// What the value names.
    pub entity: Entity,
}

impl Field {
    fn present_in(&self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

/// A struct: a message body or a nested struct of one.
#[derive(Debug, Clone, Copy)]
pub struct StructDef {
    /// kafka-protocol's type name.
    pub name: &'static str,
    /// First valid version.
    pub min: i16,
    /// Last valid version.
    pub max: i16,
    /// First flexible version (a tagged-field section ends the struct), `i16::MAX` if none.
    pub flexible_min: i16,
    first: u16,
    len: u16,
}

impl StructDef {
    /// The struct's field rows, in wire order (tagged rows last).
    pub fn fields(&self) -> &'static [Field] {
        let first = usize::from(self.first);
        &FIELDS[first..first + usize::from(self.len)]
    }
}

/// A request or response body of one API key.
#[derive(Debug, Clone, Copy)]
pub struct MessageDef {
    /// The API key.
    pub api_key: i16,
    /// Whether this is the response (else the request).
    pub response: bool,
    /// kafka-protocol's type name.
    pub name: &'static str,
    /// First version kafka-protocol decodes.
    pub min: i16,
    /// Last version kafka-protocol decodes.
    pub max: i16,
    root: u16,
}

impl MessageDef {
    /// The body struct.
    pub fn root(&self) -> &'static StructDef {
        &STRUCTS[usize::from(self.root)]
    }
}

/// Every request and response body the table knows, ordered by API key.
pub fn messages() -> &'static [MessageDef] {
    &MESSAGES
}

/// The request body definition of an API key, if kafka-protocol knows the key.
pub fn request_def(api_key: i16) -> Option<&'static MessageDef> {
    lookup(&REQUEST_INDEX, api_key)
}

/// The response body definition of an API key, if kafka-protocol knows the key.
pub fn response_def(api_key: i16) -> Option<&'static MessageDef> {
    lookup(&RESPONSE_INDEX, api_key)
}

fn lookup(index: &[u16], api_key: i16) -> Option<&'static MessageDef> {
    let slot = *index.get(usize::try_from(api_key).ok()?)?;
    MESSAGES.get(usize::from(slot))
}

/// A string the walk passed, as reported to [`Visitor::string`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringRef {
    /// What the string names.
    pub entity: Entity,
    /// The field it is (an element of, for an array of strings).
    pub field: &'static str,
    /// The struct the field belongs to.
    pub struct_name: &'static str,
    /// Where its length prefix starts (an `int16`, or a varint when `compact`).
    pub prefix: usize,
    /// The string's bytes (valid UTF-8), after the prefix.
    pub range: Range<usize>,
    /// Whether the length prefix is a compact (varint `n + 1`) one.
    pub compact: bool,
}

/// Receives what the walk passes, in wire order. Every method does nothing by default.
pub trait Visitor {
    /// A non-null string field value or string array element.
    fn string(&mut self, _s: &StringRef) {}

    /// A non-null array: `header` is the count's bytes, `count` the number of elements.
    fn array(&mut self, _field: &'static Field, _header: Range<usize>, _count: usize) {}

    /// A tagged field: `header` covers its tag and size varints, `value` its payload.
    /// `known` tells whether the table describes it (its content was walked) or it was
    /// skipped by its size. Strings inside a known tagged field are reported before this.
    fn tagged_field(
        &mut self,
        _tag: u32,
        _header: Range<usize>,
        _value: Range<usize>,
        _known: bool,
    ) {
    }
}

/// The visitor that ignores everything.
impl Visitor for () {}

/// Why a body failed the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No request (or response) body is known for this API key.
    UnknownApiKey,
    /// The version is outside what kafka-protocol decodes for this body.
    UnsupportedVersion,
    /// The body ends in the middle of a value.
    Truncated,
    /// An array count exceeds the bytes that remain.
    ArrayTooLong,
    /// A string or bytes length exceeds the bytes that remain.
    LengthTooLong,
    /// A negative length or count other than the null marker.
    NegativeLength,
    /// Null where the field is not nullable.
    UnexpectedNull,
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// A tag the schema knows, in a version where it is not valid.
    TagNotValid,
    /// A known tagged field whose content does not fill exactly its declared size.
    TagSizeMismatch,
}

/// A failed walk: what went wrong and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkError {
    /// What went wrong.
    pub fault: Fault,
    /// Byte offset in the body where the offending value starts.
    pub offset: usize,
    /// The field being read, if any.
    pub field: Option<&'static str>,
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.fault {
            Fault::UnknownApiKey => "unknown api key",
            Fault::UnsupportedVersion => "unsupported version",
            Fault::Truncated => "truncated",
            Fault::ArrayTooLong => "array count exceeds the remaining bytes",
            Fault::LengthTooLong => "length exceeds the remaining bytes",
            Fault::NegativeLength => "negative length",
            Fault::UnexpectedNull => "null in a non-nullable field",
            Fault::InvalidUtf8 => "string is not UTF-8",
            Fault::TagNotValid => "tagged field not valid in this version",
            Fault::TagSizeMismatch => "tagged field size does not match its content",
        };
        write!(f, "{what} at byte {}", self.offset)?;
        if let Some(field) = self.field {
            write!(f, " (field {field})")?;
        }
        Ok(())
    }
}

impl std::error::Error for WalkError {}

/// Whether a request body is safe to hand to kafka-protocol: see [`walk_request`].
/// Unknown API keys and versions kafka-protocol does not decode are `false`.
pub fn check_request(api_key: i16, version: i16, body: &[u8]) -> bool {
    walk_request(api_key, version, body, &mut ()).is_ok()
}

/// Whether a response body is safe to hand to kafka-protocol: see [`walk_response`].
pub fn check_response(api_key: i16, version: i16, body: &[u8]) -> bool {
    walk_response(api_key, version, body, &mut ()).is_ok()
}

/// Walks a request body (the bytes after the request header), reporting to `visitor`.
///
/// Returns the number of bytes the body's fields occupy; bytes after them are left alone
/// (kafka-protocol does not read them either). Fails on any count or length beyond the
/// remaining bytes, truncation, nulls where the schema has none, invalid UTF-8, and tagged
/// fields kafka-protocol would refuse.
pub fn walk_request<V: Visitor + ?Sized>(
    api_key: i16,
    version: i16,
    body: &[u8],
    visitor: &mut V,
) -> Result<usize, WalkError> {
    walk(request_def(api_key), version, body, visitor)
}

/// Walks a response body (the bytes after the response header); see [`walk_request`].
pub fn walk_response<V: Visitor + ?Sized>(
    api_key: i16,
    version: i16,
    body: &[u8],
    visitor: &mut V,
) -> Result<usize, WalkError> {
    walk(response_def(api_key), version, body, visitor)
}

fn walk<V: Visitor + ?Sized>(
    def: Option<&'static MessageDef>,
    version: i16,
    body: &[u8],
    visitor: &mut V,
) -> Result<usize, WalkError> {
    let def = def.ok_or(WalkError {
        fault: Fault::UnknownApiKey,
        offset: 0,
        field: None,
    })?;
    if version < def.min || version > def.max {
        return Err(WalkError {
            fault: Fault::UnsupportedVersion,
            offset: 0,
            field: None,
        });
    }
    let mut walker = Walker {
        b: body,
        pos: 0,
        version,
        visitor,
        field: None,
    };
    walker.walk_struct(def.root)?;
    Ok(walker.pos)
}

struct Walker<'a, V: ?Sized> {
    b: &'a [u8],
    pos: usize,
    version: i16,
    visitor: &'a mut V,
    /// The field being read, for error reports.
    field: Option<&'static str>,
}

impl<V: Visitor + ?Sized> Walker<'_, V> {
    fn err(&self, fault: Fault, offset: usize) -> WalkError {
        WalkError {
            fault,
            offset,
            field: self.field,
        }
    }

    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], WalkError> {
        if n > self.remaining() {
            return Err(self.err(Fault::Truncated, self.pos));
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.b[start..self.pos])
    }

    fn skip(&mut self, n: usize) -> Result<(), WalkError> {
        self.take(n).map(|_| ())
    }

    fn i8(&mut self) -> Result<i8, WalkError> {
        Ok(self.take(1)?[0] as i8)
    }

    fn i16(&mut self) -> Result<i16, WalkError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, WalkError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned varint read exactly as kafka-protocol reads it: at most five bytes, the
    /// fifth ending the number whatever its continuation bit, high bits dropped.
    fn uvarint(&mut self) -> Result<u32, WalkError> {
        let mut value = 0u32;
        for i in 0..5 {
            let b = u32::from(self.take(1)?[0]);
            value |= (b & 0x7f).wrapping_shl(i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    fn walk_struct(&mut self, index: u16) -> Result<(), WalkError> {
        let def = &STRUCTS[usize::from(index)];
        let version = self.version;
        if version < def.min || version > def.max {
            return Err(self.err(Fault::UnsupportedVersion, self.pos));
        }
        let fields = def.fields();
        for field in fields.iter().filter(|f| f.tag < 0 && f.present_in(version)) {
            self.walk_field(def, field)?;
        }
        if version >= def.flexible_min {
            self.walk_tagged_section(def, fields)?;
        }
        Ok(())
    }

    fn walk_tagged_section(
        &mut self,
        def: &'static StructDef,
        fields: &'static [Field],
    ) -> Result<(), WalkError> {
        self.field = None;
        // The count is not trusted: each iteration consumes at least two bytes or fails.
        let count = self.uvarint()?;
        for _ in 0..count {
            let header_start = self.pos;
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            let header = header_start..self.pos;
            let value_start = self.pos;
            // kafka-protocol refuses a known tag outside its versions rather than skipping it.
            let mut known = fields
                .iter()
                .filter(|f| f.tag >= 0 && f.tag as u32 == tag)
                .peekable();
            if known.peek().is_none() {
                if size > self.remaining() {
                    return Err(self.err(Fault::LengthTooLong, value_start));
                }
                self.pos += size;
                self.visitor
                    .tagged_field(tag, header, value_start..self.pos, false);
                continue;
            }
            let Some(field) = known.find(|f| f.present_in(self.version)) else {
                return Err(self.err(Fault::TagNotValid, header_start));
            };
            if size > self.remaining() {
                return Err(self.err(Fault::LengthTooLong, value_start));
            }
            // kafka-protocol reads a known tagged field from the stream, not from a
            // `size`-bounded window, so walk it the same way and insist both agree.
            self.walk_field(def, field)?;
            if self.pos - value_start != size {
                return Err(self.err(Fault::TagSizeMismatch, header_start));
            }
            self.visitor
                .tagged_field(tag, header, value_start..self.pos, true);
            self.field = None;
        }
        Ok(())
    }

    fn walk_field(
        &mut self,
        def: &'static StructDef,
        field: &'static Field,
    ) -> Result<(), WalkError> {
        self.field = Some(field.name);
        let start = self.pos;
        let count = match field.array {
            ArrayKind::One => return self.walk_value(def, field, field.nullable),
            ArrayKind::Array => {
                let n = self.i32()?;
                if n < 0 {
                    return self.null_or_negative(field.nullable, n == -1, start);
                }
                n as usize
            }
            ArrayKind::CompactArray => {
                let n = self.uvarint()?;
                if n == 0 {
                    return self.null_or_negative(field.nullable, true, start);
                }
                (n - 1) as usize
            }
        };
        // The one check that matters most: kafka-protocol reserves `count` elements up front.
        if count > self.remaining() {
            return Err(self.err(Fault::ArrayTooLong, start));
        }
        self.visitor.array(field, start..self.pos, count);
        for _ in 0..count {
            self.walk_value(def, field, false)?;
        }
        Ok(())
    }

    fn null_or_negative(&self, nullable: bool, is_null: bool, at: usize) -> Result<(), WalkError> {
        match (is_null, nullable) {
            (true, true) => Ok(()),
            (true, false) => Err(self.err(Fault::UnexpectedNull, at)),
            (false, _) => Err(self.err(Fault::NegativeLength, at)),
        }
    }

    fn walk_value(
        &mut self,
        def: &'static StructDef,
        field: &'static Field,
        nullable: bool,
    ) -> Result<(), WalkError> {
        let start = self.pos;
        match field.kind {
            Kind::Bool | Kind::Int8 => self.skip(1),
            Kind::Int16 | Kind::UInt16 => self.skip(2),
            Kind::Int32 => self.skip(4),
            Kind::Int64 | Kind::Float64 => self.skip(8),
            Kind::Uuid => self.skip(16),
            Kind::String => {
                let n = self.i16()?;
                if n < 0 {
                    return self.null_or_negative(nullable, n == -1, start);
                }
                self.string(def, field, start, n as usize, false)
            }
            Kind::CompactString => {
                let n = self.uvarint()?;
                if n == 0 {
                    return self.null_or_negative(nullable, true, start);
                }
                self.string(def, field, start, (n - 1) as usize, true)
            }
            Kind::Bytes => {
                let n = self.i32()?;
                if n < 0 {
                    return self.null_or_negative(nullable, n == -1, start);
                }
                self.bytes(n as usize, start)
            }
            Kind::CompactBytes => {
                let n = self.uvarint()?;
                if n == 0 {
                    return self.null_or_negative(nullable, true, start);
                }
                self.bytes((n - 1) as usize, start)
            }
            Kind::Struct(index) => self.walk_struct(index),
            Kind::OptionStruct(index) => {
                // kafka-protocol: 1 is present, any other marker is null.
                if self.i8()? == 1 {
                    self.walk_struct(index)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn bytes(&mut self, len: usize, start: usize) -> Result<(), WalkError> {
        if len > self.remaining() {
            return Err(self.err(Fault::LengthTooLong, start));
        }
        self.pos += len;
        Ok(())
    }

    fn string(
        &mut self,
        def: &'static StructDef,
        field: &'static Field,
        prefix: usize,
        len: usize,
        compact: bool,
    ) -> Result<(), WalkError> {
        if len > self.remaining() {
            return Err(self.err(Fault::LengthTooLong, prefix));
        }
        let range = self.pos..self.pos + len;
        if std::str::from_utf8(&self.b[range.clone()]).is_err() {
            return Err(self.err(Fault::InvalidUtf8, prefix));
        }
        self.pos = range.end;
        self.visitor.string(&StringRef {
            entity: field.entity,
            field: field.name,
            struct_name: def.name,
            prefix,
            range,
            compact,
        });
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
pub(crate) mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
    use uuid::Uuid;

    /// Generic access to a kafka-protocol message type, dispatched from the table by
    /// `table::with_message_type`.
    pub(super) trait TypeVisitor {
        type Output;
        fn visit<T>(self) -> Self::Output
        where
            T: Encodable + Decodable + Message + Default + PartialEq + std::fmt::Debug;
    }

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    fn topic(v: &str) -> TopicName {
        TopicName(s(v))
    }

    fn encode(body: &impl Encodable, version: i16) -> Vec<u8> {
        let mut buf = BytesMut::new();
        body.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    /// Records every array header and every string the walk reports.
    #[derive(Default)]
    struct Recorder {
        arrays: Vec<(Range<usize>, ArrayKind)>,
        strings: Vec<StringRef>,
        tagged: Vec<(u32, bool)>,
    }

    impl Visitor for Recorder {
        fn string(&mut self, s: &StringRef) {
            self.strings.push(s.clone());
        }
        fn array(&mut self, field: &'static Field, header: Range<usize>, _count: usize) {
            self.arrays.push((header, field.array));
        }
        fn tagged_field(&mut self, tag: u32, _h: Range<usize>, _v: Range<usize>, known: bool) {
            self.tagged.push((tag, known));
        }
    }

    struct VersionsOf;
    impl TypeVisitor for VersionsOf {
        type Output = (i16, i16);
        fn visit<T>(self) -> (i16, i16)
        where
            T: Encodable + Decodable + Message + Default + PartialEq + std::fmt::Debug,
        {
            (T::VERSIONS.min, T::VERSIONS.max)
        }
    }

    #[test]
    fn table_covers_every_api_key_and_version_kafka_protocol_decodes() {
        let mut keys = 0;
        let mut narrower = Vec::new();
        for key in ApiKey::iter() {
            keys += 1;
            let range = key.valid_versions();
            let req = request_def(key as i16).unwrap_or_else(|| panic!("{key:?} request"));
            let resp = response_def(key as i16).unwrap_or_else(|| panic!("{key:?} response"));
            for def in [req, resp] {
                // The table follows the decoders' own version checks.
                let versions = table::with_message_type(def.api_key, def.response, VersionsOf);
                assert_eq!(versions, Some((def.min, def.max)), "{}", def.name);
            }
            assert_eq!(req.min, range.min, "{key:?}");
            if req.max != range.max {
                narrower.push((key, range.max, req.max));
            }
        }
        // kafka-protocol 0.18 lists unstable versions in `ApiKey::valid_versions` that its
        // message types refuse to decode; the walk refuses them too. A kafka-protocol
        // upgrade that changes this list should be looked at.
        assert_eq!(
            narrower,
            vec![
                (ApiKey::OffsetCommit, 10, 9),
                (ApiKey::OffsetFetch, 10, 9),
                (ApiKey::InitProducerId, 6, 5),
            ]
        );
        assert_eq!(messages().len(), keys * 2);
        assert!(request_def(-1).is_none());
        assert!(request_def(i16::MAX).is_none());
    }

    /// Encodes `T::default()` at a version and decodes it back; `None` when kafka-protocol
    /// refuses to encode the default at that version (a field without a default there).
    struct DefaultBody(i16);
    impl TypeVisitor for DefaultBody {
        type Output = Option<Vec<u8>>;
        fn visit<T>(self) -> Option<Vec<u8>>
        where
            T: Encodable + Decodable + Message + Default + PartialEq + std::fmt::Debug,
        {
            let mut buf = BytesMut::new();
            T::default().encode(&mut buf, self.0).ok()?;
            Some(buf.to_vec())
        }
    }

    #[test]
    fn default_bodies_of_every_message_and_version_walk_exactly() {
        let (mut walked, mut skipped) = (0, 0);
        for def in messages() {
            for version in def.min..=def.max {
                let Some(body) =
                    table::with_message_type(def.api_key, def.response, DefaultBody(version))
                        .unwrap()
                else {
                    skipped += 1;
                    continue;
                };
                let walked_len = walk(Some(def), version, &body, &mut ())
                    .unwrap_or_else(|e| panic!("{} v{version}: {e}", def.name));
                assert_eq!(walked_len, body.len(), "{} v{version}", def.name);
                if !def.response {
                    assert!(check_request(def.api_key, version, &body));
                }
                walked += 1;
            }
        }
        assert_eq!(skipped, 0, "walked {walked}");
    }

    pub(crate) use super::synth::{synth_struct, Rng, Shape, SMALL};

    /// Decodes a body with kafka-protocol; on success re-encodes it and decodes that again.
    /// Returns (bytes the decode consumed, the re-encoding if kafka-protocol could encode it).
    struct DecodeBody<'a>(&'a [u8], i16);
    impl TypeVisitor for DecodeBody<'_> {
        type Output = Result<(usize, Option<Vec<u8>>), String>;
        fn visit<T>(self) -> Self::Output
        where
            T: Encodable + Decodable + Message + Default + PartialEq + std::fmt::Debug,
        {
            let mut buf = Bytes::copy_from_slice(self.0);
            let decoded = T::decode(&mut buf, self.1).map_err(|e| format!("{e:#}"))?;
            let consumed = self.0.len() - buf.len();
            let mut out = BytesMut::new();
            if decoded.encode(&mut out, self.1).is_err() {
                return Ok((consumed, None));
            }
            let again =
                T::decode(&mut out.clone().freeze(), self.1).map_err(|e| format!("{e:#}"))?;
            assert_eq!(again, decoded);
            Ok((consumed, Some(out.to_vec())))
        }
    }

    /// The table against the decoder itself: bodies synthesised from the table, with nested
    /// arrays, nulls and tagged fields, must decode with kafka-protocol consuming exactly
    /// the bytes the walk consumed, for every message and version.
    #[test]
    fn synthesised_bodies_decode_with_kafka_protocol_for_every_message_and_version() {
        let mut rng = Rng(0x5eed);
        let (mut checked, mut reencoded, mut known_tags) = (0, 0, 0);
        for def in messages() {
            for version in def.min..=def.max {
                for _ in 0..12 {
                    let mut body = Vec::new();
                    synth_struct(&mut rng, &SMALL, def.root, version, 0, &mut body);
                    let walked = walk(Some(def), version, &body, &mut ())
                        .unwrap_or_else(|e| panic!("{} v{version}: {e}", def.name));
                    assert_eq!(walked, body.len(), "{} v{version}", def.name);
                    let (consumed, again) = table::with_message_type(
                        def.api_key,
                        def.response,
                        DecodeBody(&body, version),
                    )
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{} v{version} {body:02x?}: {e}", def.name));
                    assert_eq!(consumed, body.len(), "{} v{version}", def.name);
                    if let Some(again) = again {
                        let mut rec = Recorder::default();
                        let walked = walk(Some(def), version, &again, &mut rec).unwrap();
                        assert_eq!(walked, again.len(), "{} v{version} re-encoded", def.name);
                        // Every tag kafka-protocol writes itself is one the table knows
                        // (the synthesised unknown tags are 1000 and up).
                        for (tag, known) in rec.tagged {
                            assert!(known || tag >= 1000, "{} v{version} tag {tag}", def.name);
                            known_tags += usize::from(known);
                        }
                        reencoded += 1;
                    }
                    checked += 1;
                }
            }
        }
        assert!(reencoded > checked / 2, "{reencoded} of {checked}");
        assert!(
            known_tags > 100,
            "{known_tags} known tagged fields re-encoded"
        );
    }

    /// Forges every array count the walk finds (one at a time) to the largest count and
    /// checks the walk refuses it, and refuses every truncation of the body.
    fn assert_hardened(key: ApiKey, version: i16, body: &[u8]) {
        let what = format!("{key:?} v{version}");
        let mut rec = Recorder::default();
        let len = walk_request(key as i16, version, body, &mut rec)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(len, body.len(), "{what} consumed");
        assert!(check_request(key as i16, version, body));
        // kafka-protocol agrees with the original.
        let decoded = table::with_message_type(key as i16, false, DecodeBody(body, version));
        assert_eq!(decoded.unwrap().unwrap().0, body.len(), "{what} decode");

        assert!(!rec.arrays.is_empty(), "{what}: no arrays");
        assert!(
            rec.tagged.iter().all(|(_, known)| *known),
            "{what}: {:?}",
            rec.tagged
        );
        for (header, kind) in &rec.arrays {
            let mut forged = body.to_vec();
            let huge: &[u8] = match kind {
                ArrayKind::Array => &[0x7f, 0xff, 0xff, 0xff],
                _ => &[0xff, 0xff, 0xff, 0xff, 0x0f],
            };
            forged.splice(header.clone(), huge.iter().copied());
            let err = walk_request(key as i16, version, &forged, &mut ()).unwrap_err();
            assert_eq!(
                err.fault,
                Fault::ArrayTooLong,
                "{what} at {header:?}: {err}"
            );
            assert_eq!(err.offset, header.start, "{what}");
            assert!(!check_request(key as i16, version, &forged));
            // A negative classic count other than null is refused as well.
            if *kind == ArrayKind::Array {
                forged = body.to_vec();
                forged[header.clone()].copy_from_slice(&i32::MIN.to_be_bytes());
                assert!(!check_request(key as i16, version, &forged), "{what}");
            }
        }
        // String lengths forged past the end.
        for st in &rec.strings {
            let mut forged = body.to_vec();
            if st.compact {
                forged.splice(st.prefix..st.range.start, [0xff, 0xff, 0xff, 0x7f]);
            } else {
                forged[st.prefix..st.prefix + 2].copy_from_slice(&i16::MAX.to_be_bytes());
            }
            let err = walk_request(key as i16, version, &forged, &mut ()).unwrap_err();
            assert_eq!(
                err.fault,
                Fault::LengthTooLong,
                "{what} string {}",
                st.field
            );
        }
        for cut in 0..body.len() {
            assert!(
                !check_request(key as i16, version, &body[..cut]),
                "{what} cut at {cut}"
            );
        }
    }

    fn produce(version: i16) -> Vec<u8> {
        let partitions = (0..2)
            .map(|i| {
                produce_request::PartitionProduceData::default()
                    .with_index(i)
                    .with_records(Some(Bytes::from_static(b"not really a batch")))
            })
            .collect::<Vec<_>>();
        let topics = ["orders", "payments"]
            .iter()
            .map(|t| {
                let data = produce_request::TopicProduceData::default()
                    .with_partition_data(partitions.clone());
                if version >= 13 {
                    data.with_topic_id(Uuid::from_u128(7))
                } else {
                    data.with_name(topic(t))
                }
            })
            .collect();
        let req = ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(s("tx-1"))))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(topics);
        encode(&req, version)
    }

    fn fetch(version: i16) -> Vec<u8> {
        let partitions = (0..3)
            .map(|i| {
                fetch_request::FetchPartition::default()
                    .with_partition(i)
                    .with_fetch_offset(100)
                    .with_partition_max_bytes(1 << 20)
                    .with_replica_directory_id(if version >= 17 {
                        Uuid::from_u128(9)
                    } else {
                        Uuid::nil()
                    })
            })
            .collect::<Vec<_>>();
        let by_id = version >= 13;
        let fetch_topic = |name: &str, id: u128| {
            let t = fetch_request::FetchTopic::default().with_partitions(partitions.clone());
            if by_id {
                t.with_topic_id(Uuid::from_u128(id))
            } else {
                t.with_topic(topic(name))
            }
        };
        let forgotten = fetch_request::ForgottenTopic::default().with_partitions(vec![0, 1, 2]);
        let forgotten = if by_id {
            forgotten.with_topic_id(Uuid::from_u128(3))
        } else {
            forgotten.with_topic(topic("old"))
        };
        let mut req = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_topics(vec![fetch_topic("orders", 1), fetch_topic("payments", 2)]);
        if version >= 7 {
            req = req.with_forgotten_topics_data(vec![forgotten]);
        }
        if version >= 11 {
            req = req.with_rack_id(s("rack-a"));
        }
        if version >= 12 {
            req = req.with_cluster_id(Some(s("cluster-1")));
        }
        if version >= 15 {
            req = req.with_replica_state(
                fetch_request::ReplicaState::default()
                    .with_replica_id(BrokerId(1))
                    .with_replica_epoch(5),
            );
        }
        encode(&req, version)
    }

    fn metadata(version: i16) -> Vec<u8> {
        let topics = ["orders", "payments"]
            .iter()
            .enumerate()
            .map(|(i, t)| {
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(topic(t)))
                    .with_topic_id(if version >= 10 {
                        Uuid::from_u128(i as u128 + 1)
                    } else {
                        Uuid::nil()
                    })
            })
            .collect();
        encode(
            &MetadataRequest::default().with_topics(Some(topics)),
            version,
        )
    }

    fn offset_commit(version: i16) -> Vec<u8> {
        let partitions = (0..2)
            .map(|i| {
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(i)
                    .with_committed_offset(42)
                    .with_committed_metadata(Some(s("meta")))
            })
            .collect::<Vec<_>>();
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("group-1")))
            .with_generation_id_or_member_epoch(3)
            .with_member_id(s("member-1"))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic("orders"))
                    .with_partitions(partitions),
            ]);
        encode(&req, version)
    }

    fn offset_fetch(version: i16) -> Vec<u8> {
        let req = if version >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g1")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(topic("orders"))
                            .with_partition_indexes(vec![0, 1]),
                    ])),
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g2")))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g1")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(topic("orders"))
                        .with_partition_indexes(vec![0, 1, 2]),
                ]))
        };
        encode(&req, version)
    }

    #[test]
    fn filled_requests_walk_exactly_and_forged_counts_are_refused() {
        for v in [3, 9, 13] {
            assert_hardened(ApiKey::Produce, v, &produce(v));
        }
        for v in [4, 12, 17] {
            assert_hardened(ApiKey::Fetch, v, &fetch(v));
        }
        for v in [1, 9, 12] {
            assert_hardened(ApiKey::Metadata, v, &metadata(v));
        }
        for v in [2, 8, 9] {
            assert_hardened(ApiKey::OffsetCommit, v, &offset_commit(v));
        }
        for v in [1, 8] {
            assert_hardened(ApiKey::OffsetFetch, v, &offset_fetch(v));
        }

        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(s("g1")))
            .with_session_timeout_ms(10_000)
            .with_member_id(s(""))
            .with_group_instance_id(Some(s("instance-1")))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(&[0, 1, 2])),
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("cooperative-sticky"))
                    .with_metadata(Bytes::from_static(&[3])),
            ]);
        assert_hardened(ApiKey::JoinGroup, 5, &encode(&join, 5));

        let create = CreateTopicsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(topic("new-topic"))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(vec![
                    create_topics_request::CreatableReplicaAssignment::default()
                        .with_partition_index(0)
                        .with_broker_ids(vec![BrokerId(1), BrokerId(2)]),
                ])
                .with_configs(vec![
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(s("cleanup.policy"))
                        .with_value(Some(s("compact"))),
                ])]);
        assert_hardened(ApiKey::CreateTopics, 5, &encode(&create, 5));

        let find = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![s("g1"), s("g2")]);
        assert_hardened(ApiKey::FindCoordinator, 4, &encode(&find, 4));

        let add = AddPartitionsToTxnRequest::default().with_transactions(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(s("tx-1")))
                .with_producer_id(ProducerId(77))
                .with_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(topic("orders"))
                        .with_partitions(vec![0, 1]),
                ]),
        ]);
        assert_hardened(ApiKey::AddPartitionsToTxn, 4, &encode(&add, 4));

        let heartbeat = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g1")))
            .with_member_id(s("m1"))
            .with_rack_id(Some(s("rack-a")))
            .with_subscribed_topic_names(Some(vec![topic("orders"), topic("payments")]))
            .with_topic_partitions(Some(vec![
                consumer_group_heartbeat_request::TopicPartitions::default()
                    .with_topic_id(Uuid::from_u128(5))
                    .with_partitions(vec![0, 1, 2]),
            ]));
        assert_hardened(ApiKey::ConsumerGroupHeartbeat, 0, &encode(&heartbeat, 0));

        let dtp = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![
                describe_topic_partitions_request::TopicRequest::default()
                    .with_name(topic("orders")),
            ])
            .with_response_partition_limit(100)
            .with_cursor(Some(
                describe_topic_partitions_request::Cursor::default()
                    .with_topic_name(topic("orders"))
                    .with_partition_index(3),
            ));
        assert_hardened(ApiKey::DescribeTopicPartitions, 0, &encode(&dtp, 0));
    }

    fn strings_of(key: ApiKey, version: i16, body: &[u8]) -> Vec<(Entity, &'static str, String)> {
        let mut rec = Recorder::default();
        walk_request(key as i16, version, body, &mut rec).unwrap();
        rec.strings
            .iter()
            .map(|st| {
                let text = std::str::from_utf8(&body[st.range.clone()])
                    .unwrap()
                    .to_string();
                (st.entity, st.field, text)
            })
            .collect()
    }

    #[test]
    fn visitor_reports_names_with_their_entity_types() {
        for v in [1, 9, 12] {
            let strings = strings_of(ApiKey::Metadata, v, &metadata(v));
            assert_eq!(
                strings,
                vec![
                    (Entity::TopicName, "name", "orders".to_string()),
                    (Entity::TopicName, "name", "payments".to_string()),
                ],
                "Metadata v{v}"
            );
        }
        for v in [3, 9] {
            let body = produce(v);
            let strings = strings_of(ApiKey::Produce, v, &body);
            assert_eq!(
                strings,
                vec![
                    (
                        Entity::TransactionalId,
                        "transactional_id",
                        "tx-1".to_string()
                    ),
                    (Entity::TopicName, "name", "orders".to_string()),
                    (Entity::TopicName, "name", "payments".to_string()),
                ],
                "Produce v{v}"
            );
            // The prefix points at the length, so a rewriter can replace prefix + bytes.
            let mut rec = Recorder::default();
            walk_request(ApiKey::Produce as i16, v, &body, &mut rec).unwrap();
            for st in &rec.strings {
                let len = st.range.len();
                if st.compact {
                    assert_eq!(usize::from(body[st.prefix]), len + 1);
                } else {
                    let raw = i16::from_be_bytes([body[st.prefix], body[st.prefix + 1]]);
                    assert_eq!(raw as usize, len);
                }
            }
        }
        // Strings in arrays of strings and inside tagged fields are reported too.
        let strings = strings_of(ApiKey::Fetch, 12, &fetch(12));
        assert!(strings.contains(&(Entity::None, "cluster_id", "cluster-1".to_string())));
        assert!(strings.contains(&(Entity::TopicName, "topic", "old".to_string())));
        let hb = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g1")))
            .with_subscribed_topic_names(Some(vec![topic("a"), topic("b")]));
        let strings = strings_of(ApiKey::ConsumerGroupHeartbeat, 0, &encode(&hb, 0));
        assert_eq!(strings[0], (Entity::GroupId, "group_id", "g1".to_string()));
        assert!(strings.contains(&(Entity::TopicName, "subscribed_topic_names", "b".into())));
    }

    #[test]
    fn tagged_fields_are_walked_or_skipped_like_the_decoder() {
        let body = fetch(15);
        let mut rec = Recorder::default();
        walk_request(ApiKey::Fetch as i16, 15, &body, &mut rec).unwrap();
        // cluster_id (tag 0) and replica_state (tag 1) at the top level.
        assert!(rec.tagged.contains(&(0, true)) && rec.tagged.contains(&(1, true)));

        // An unknown tag is skipped by its size.
        let base = MetadataRequest::default().with_topics(None);
        let mut body = encode(&base, 12);
        assert_eq!(body.pop(), Some(0)); // empty tagged section
        body.extend_from_slice(&[1, 99, 3, 0xaa, 0xbb, 0xcc]);
        let mut rec = Recorder::default();
        assert_eq!(walk_request(3, 12, &body, &mut rec), Ok(body.len()));
        assert_eq!(rec.tagged, vec![(99, false)]);
        // ... but not past the end.
        let mut short = body.clone();
        short[body.len() - 4] = 9;
        let err = walk_request(3, 12, &short, &mut ()).unwrap_err();
        assert_eq!(err.fault, Fault::LengthTooLong);

        // A known tag outside its versions is refused, as kafka-protocol refuses it.
        let mut body = encode(&FetchRequest::default(), 12);
        assert_eq!(body.pop(), Some(0));
        body.extend_from_slice(&[1, 1, 13]);
        body.extend_from_slice(&[0; 12]);
        let err = walk_request(1, 12, &body, &mut ()).unwrap_err();
        assert_eq!(err.fault, Fault::TagNotValid);

        // A known tag whose content does not fill its declared size.
        let mut body = encode(&FetchRequest::default(), 12);
        body.pop();
        body.extend_from_slice(&[1, 0, 5, 3, b'a', b'b']); // cluster_id "ab", size says 5
        body.extend_from_slice(&[0, 0]);
        let err = walk_request(1, 12, &body, &mut ()).unwrap_err();
        assert_eq!(err.fault, Fault::TagSizeMismatch);

        // A huge array count inside a known tagged field is refused.
        let base = FetchRequest::default().with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic_id(Uuid::from_u128(1))
            .with_partitions(vec![fetch_request::FetchPartition::default()])]);
        let body = encode(&base, 12);
        assert!(check_request(1, 12, &body));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        // Unknown keys and versions cannot be vouched for.
        assert!(!check_request(-1, 0, &[]));
        assert!(!check_request(9999, 0, &[]));
        let body = metadata(9);
        assert!(!check_request(ApiKey::Metadata as i16, 14, &body));
        assert!(!check_request(ApiKey::Produce as i16, 2, &produce(3)));
        // Null for a non-nullable array (Produce topic_data).
        let mut body = ProduceRequest::default().with_acks(1);
        body.transactional_id = None;
        let mut bytes = encode(&body, 9);
        let last = bytes.len() - 2; // topic_data count, then the tagged section
        assert_eq!(bytes[last], 1);
        bytes[last] = 0;
        let err = walk_request(0, 9, &bytes, &mut ()).unwrap_err();
        assert_eq!(err.fault, Fault::UnexpectedNull);
        assert_eq!(err.field, Some("topic_data"));
        // Invalid UTF-8 in a topic name.
        let mut bytes = metadata(1);
        let at = bytes.iter().position(|&b| b == b'o').unwrap();
        bytes[at] = 0xff;
        let err = walk_request(3, 1, &bytes, &mut ()).unwrap_err();
        assert_eq!(err.fault, Fault::InvalidUtf8);
        // The error names the field and offset.
        assert!(err.to_string().contains("field name"), "{err}");
        // Trailing bytes are left alone (the decoder does not read them either).
        let mut bytes = metadata(9);
        let len = bytes.len();
        bytes.push(0);
        assert_eq!(walk_request(3, 9, &bytes, &mut ()), Ok(len));
    }
}
