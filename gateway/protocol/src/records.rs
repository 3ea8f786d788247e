//! Kafka RecordBatch (magic v2) decoding and encoding with exact fidelity.
//!
//! Record hooks need records decoded; everything else about a batch must survive the round trip
//! unchanged: the codec, timestamp type, transactional and control flags, producer id and
//! epoch, base sequence, partition leader epoch, and record headers in order with repeated
//! keys (kafka-protocol's record type keeps headers in a map, which would merge repeated keys,
//! hence this module). A batch nobody changed is re-emitted as its original bytes.
//!
//! Compression uses kafka-protocol's codecs (gzip, snappy with xerial framing, lz4 frame, zstd);
//! decompression reads the codecs directly, bounded (see [`DECOMPRESSED_MAX`]).

use anyhow::{bail, ensure, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor};

/// Size of the batch header before the records.
const HEADER_SIZE: usize = 61;
/// Offset of `batchLength` + its size: bytes before `partitionLeaderEpoch`.
const LOG_OVERHEAD: usize = 12;
/// Offset of the `attributes` field, where the CRC-covered region starts.
const CRC_START: usize = 21;

/// Compression codec bits of the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Codec {
    fn from_attributes(attributes: i16) -> Result<Codec> {
        Ok(match attributes & 0x7 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            other => bail!("unknown compression codec {other}"),
        })
    }
}

/// One record header. Keys may repeat; order is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key (UTF-8 by convention, kept as bytes).
    pub key: Bytes,
    /// Value; `None` is null.
    pub value: Option<Bytes>,
}

/// One record inside a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Record attributes byte (unused by Kafka today; kept).
    pub attributes: i8,
    /// Absolute timestamp (batch base timestamp + delta).
    pub timestamp: i64,
    /// Offset delta within the batch.
    pub offset_delta: i32,
    /// Key; `None` is null.
    pub key: Option<Bytes>,
    /// Value; `None` is null.
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<Header>,
}

/// A decoded RecordBatch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// First offset (0 in produce requests).
    pub base_offset: i64,
    /// Partition leader epoch.
    pub partition_leader_epoch: i32,
    /// Attributes, kept exactly.
    pub attributes: i16,
    /// Offset delta of the last record as sent (a batch may have offset gaps after compaction).
    pub last_offset_delta: i32,
    /// Base timestamp.
    pub base_timestamp: i64,
    /// Max timestamp.
    pub max_timestamp: i64,
    /// Producer id (-1 when not idempotent).
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Base sequence (-1 when not idempotent).
    pub base_sequence: i32,
    /// The records.
    pub records: Vec<Record>,
    /// The batch exactly as received.
    pub raw: Bytes,
}

impl Batch {
    /// Compression codec.
    pub fn codec(&self) -> Codec {
        Codec::from_attributes(self.attributes).unwrap_or(Codec::None)
    }
    /// Transactional flag.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    /// Control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
    /// Written by an idempotent or transactional producer.
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0 && self.base_sequence >= 0
    }
    /// Timestamps are the broker's append time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x8 != 0
    }
    /// Whether the batch as received matches its CRC (true for a batch built here, which
    /// has no received bytes).
    pub fn crc_ok(&self) -> bool {
        if self.raw.len() < HEADER_SIZE {
            return self.raw.is_empty();
        }
        let crc = u32::from_be_bytes(self.raw[17..21].try_into().expect("4 bytes"));
        crc32c::crc32c(&self.raw[CRC_START..]) == crc
    }
}

/// What a partition's `records` field holds.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSet {
    /// Every whole v2 batch, in order.
    pub batches: Vec<Batch>,
    /// Bytes after the last whole batch: a batch cut short by the broker's fetch size limit, or
    /// a legacy (v0/v1) message set the gateway does not decode. Re-emitted as is.
    pub trailing: Bytes,
}

/// Decodes every whole v2 batch of `data`, each checked against its CRC; anything it cannot
/// decode as v2 is kept in `trailing` from that point on.
pub fn decode(data: &Bytes) -> Result<RecordSet> {
    decode_inner(data, true)
}

/// [`decode`] without the CRC check, for records shown to a plugin: a batch that is passed on
/// unchanged keeps its own CRC for the broker (produce) or the client (fetch) to check, and a
/// batch the gateway re-encodes is checked first ([`Batch::crc_ok`]), so corruption is never
/// laundered into a fresh CRC.
pub fn decode_unchecked(data: &Bytes) -> Result<RecordSet> {
    decode_inner(data, false)
}

/// Records and bytes in the batches of `data` without decoding them: the record counts of
/// the v2 batch headers (control batches excluded) and the bytes of those batches.
pub fn count_hint(data: &Bytes) -> (usize, usize) {
    let (mut records, mut bytes, mut pos) = (0usize, 0usize, 0usize);
    while data.len() - pos >= HEADER_SIZE {
        let len = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().expect("4 bytes"));
        let magic = data[pos + 16];
        let total = LOG_OVERHEAD.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        if len < 0 || magic != 2 || data.len() - pos < total {
            break;
        }
        let attributes = i16::from_be_bytes(data[pos + 21..pos + 23].try_into().expect("2 bytes"));
        if attributes & 0x20 == 0 {
            let count = i32::from_be_bytes(data[pos + 57..pos + 61].try_into().expect("4 bytes"));
            records += usize::try_from(count).unwrap_or(0);
            bytes += total;
        }
        pos += total;
    }
    (records, bytes)
}

fn decode_inner(data: &Bytes, check_crc: bool) -> Result<RecordSet> {
    let mut batches = Vec::new();
    let mut pos = 0;
    while data.len() - pos >= LOG_OVERHEAD + 5 {
        let len = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().unwrap());
        let magic = data[pos + 16];
        if len < 0 || magic != 2 {
            break;
        }
        let total = LOG_OVERHEAD + len as usize;
        if data.len() - pos < total {
            break; // partial batch at the end of a fetch response
        }
        let raw = data.slice(pos..pos + total);
        batches.push(decode_batch(raw, check_crc).with_context(|| format!("batch at byte {pos}"))?);
        pos += total;
    }
    Ok(RecordSet {
        batches,
        trailing: data.slice(pos..),
    })
}

fn decode_batch(raw: Bytes, check_crc: bool) -> Result<Batch> {
    ensure!(raw.len() >= HEADER_SIZE, "batch shorter than its header");
    let mut b = raw.clone();
    let base_offset = b.get_i64();
    let _len = b.get_i32();
    let partition_leader_epoch = b.get_i32();
    let _magic = b.get_i8();
    let crc = b.get_u32();
    ensure!(
        !check_crc || crc32c::crc32c(&raw[CRC_START..]) == crc,
        "record batch CRC mismatch"
    );
    let attributes = b.get_i16();
    let last_offset_delta = b.get_i32();
    let base_timestamp = b.get_i64();
    let max_timestamp = b.get_i64();
    let producer_id = b.get_i64();
    let producer_epoch = b.get_i16();
    let base_sequence = b.get_i32();
    let count = b.get_i32();
    ensure!(count >= 0, "negative record count");
    let codec = Codec::from_attributes(attributes)?;
    let records = match codec {
        Codec::None => decode_records(&mut b, count, base_timestamp)?,
        compressed => {
            let limit = decompressed_limit(b.len());
            let mut plain = decompress(compressed, &b, limit)?;
            decode_records(&mut plain, count, base_timestamp)?
        }
    };
    Ok(Batch {
        base_offset,
        partition_leader_epoch,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        records,
        raw,
    })
}

/// Most bytes one batch may decompress to: [`DECOMPRESSED_MAX`], and no more than
/// [`DECOMPRESSION_RATIO_MAX`] times its compressed size (but at least 1 MiB, so that small
/// batches of repetitive data decode).
fn decompressed_limit(compressed: usize) -> usize {
    compressed
        .saturating_mul(DECOMPRESSION_RATIO_MAX)
        .clamp(1 << 20, DECOMPRESSED_MAX)
}

/// Most bytes one batch may decompress to (64 MiB). Beyond it the batch is not decoded (it is
/// forwarded as it is, like a corrupt one): a producer's batch is at most its
/// `max.request.size`, 1 MiB by default, and real data rarely compresses 50 times.
pub const DECOMPRESSED_MAX: usize = 64 << 20;

/// Most a batch may expand by: a larger ratio is a decompression bomb, not records.
pub const DECOMPRESSION_RATIO_MAX: usize = 250;

/// Decompresses a batch's records, never producing (or reserving) more than `limit` bytes.
/// kafka-protocol's decompressors trust sizes the data declares (snappy's uncompressed
/// length becomes one zeroed allocation of up to 4 GiB) and read bombs to the end, so the
/// gateway reads each codec itself, bounded.
fn decompress(codec: Codec, data: &[u8], limit: usize) -> Result<Bytes> {
    use std::io::Read;
    let bounded = |reader: &mut dyn Read| -> Result<Bytes> {
        let mut out = Vec::new();
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .context("decompressing")?;
        ensure!(
            out.len() <= limit,
            "batch decompresses to more than {limit} bytes"
        );
        Ok(Bytes::from(out))
    };
    match codec {
        Codec::None => Ok(Bytes::copy_from_slice(data)),
        Codec::Gzip => bounded(&mut flate2::read::GzDecoder::new(data)),
        Codec::Zstd => bounded(&mut zstd::stream::read::Decoder::new(data)?),
        Codec::Lz4 => bounded(&mut lz4::Decoder::new(data)?),
        Codec::Snappy => snappy(data, limit),
    }
}

/// Snappy as Kafka clients write it: xerial framing (a magic header, then blocks each with a
/// 4-byte length), or a raw snappy stream. Every declared length is checked before anything
/// is reserved for it.
fn snappy(data: &[u8], limit: usize) -> Result<Bytes> {
    const MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
    let raw = |block: &[u8], room: usize| -> Result<Vec<u8>> {
        let len = snap::raw::decompress_len(block).context("snappy length")?;
        ensure!(len <= room, "batch decompresses to more than {limit} bytes");
        snap::raw::Decoder::new()
            .decompress_vec(block)
            .context("decompressing snappy")
    };
    if !data.starts_with(MAGIC) {
        return raw(data, limit).map(Bytes::from);
    }
    // Magic (8), version (4), compatible version (4), then the blocks.
    let mut rest = data.get(16..).context("truncated snappy header")?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .context("truncated snappy block length")?;
        let block = rest.get(4..4 + len).context("truncated snappy block")?;
        out.extend_from_slice(&raw(block, limit - out.len())?);
        rest = &rest[4 + len..];
    }
    Ok(Bytes::from(out))
}

fn decode_records<B: Buf>(buf: &mut B, count: i32, base_timestamp: i64) -> Result<Vec<Record>> {
    // Never trust a count for an allocation: each record takes at least 7 bytes.
    let mut records = Vec::with_capacity((count as usize).min(buf.remaining() / 7 + 1));
    for _ in 0..count {
        let len = varint(buf)?;
        ensure!(
            len >= 0 && len as usize <= buf.remaining(),
            "bad record length"
        );
        let mut r = buf.copy_to_bytes(len as usize);
        let attributes = r.try_get_i8()?;
        let timestamp_delta = varlong(&mut r)?;
        let offset_delta = varint(&mut r)?;
        let key = nullable_bytes(&mut r)?;
        let value = nullable_bytes(&mut r)?;
        let header_count = varint(&mut r)?;
        ensure!(header_count >= 0, "negative header count");
        let mut headers = Vec::with_capacity((header_count as usize).min(r.remaining() / 2 + 1));
        for _ in 0..header_count {
            let key = nullable_bytes(&mut r)?.context("null header key")?;
            let value = nullable_bytes(&mut r)?;
            headers.push(Header { key, value });
        }
        ensure!(!r.has_remaining(), "trailing bytes in record");
        records.push(Record {
            attributes,
            timestamp: base_timestamp.wrapping_add(timestamp_delta),
            offset_delta,
            key,
            value,
            headers,
        });
    }
    ensure!(!buf.has_remaining(), "trailing bytes after records");
    Ok(records)
}

/// How offset deltas are assigned when encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offsets {
    /// Renumber 0..n (produce requests: the broker requires consecutive deltas).
    Renumber,
    /// Keep each record's delta and the batch's last offset delta (fetch responses: consumers
    /// must see the offsets the log holds).
    Keep,
}

/// Encodes `batch` (its header fields, its current records) into `out`.
pub fn encode_batch(batch: &Batch, offsets: Offsets, out: &mut BytesMut) -> Result<()> {
    let codec = Codec::from_attributes(batch.attributes)?;
    let first_ts = batch
        .records
        .first()
        .map_or(batch.base_timestamp, |r| r.timestamp);
    let base_timestamp = if batch.is_log_append_time() {
        batch.base_timestamp
    } else {
        first_ts
    };
    let max_timestamp = if batch.is_log_append_time() {
        batch.max_timestamp
    } else {
        batch
            .records
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(batch.max_timestamp)
    };
    let last_offset_delta = match offsets {
        Offsets::Renumber => batch.records.len().saturating_sub(1) as i32,
        Offsets::Keep => batch.last_offset_delta,
    };
    let start = out.len();
    out.put_i64(batch.base_offset);
    out.put_i32(0); // length, patched below
    out.put_i32(batch.partition_leader_epoch);
    out.put_i8(2);
    out.put_u32(0); // crc, patched below
    out.put_i16(batch.attributes);
    out.put_i32(last_offset_delta);
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(batch.producer_id);
    out.put_i16(batch.producer_epoch);
    out.put_i32(batch.base_sequence);
    out.put_i32(i32::try_from(batch.records.len()).context("too many records")?);
    let write = |buf: &mut BytesMut| -> Result<()> {
        for (i, r) in batch.records.iter().enumerate() {
            let delta = match offsets {
                Offsets::Renumber => i as i32,
                Offsets::Keep => r.offset_delta,
            };
            encode_record(r, base_timestamp, delta, buf);
        }
        Ok(())
    };
    match codec {
        Codec::None => write(out)?,
        Codec::Gzip => codec::Gzip::compress(out, write)?,
        Codec::Snappy => codec::Snappy::compress(out, write)?,
        Codec::Lz4 => codec::Lz4::compress(out, write)?,
        Codec::Zstd => codec::Zstd::compress(out, write)?,
    }
    let len = out.len() - start - LOG_OVERHEAD;
    out[start + 8..start + 12].copy_from_slice(&(len as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[start + CRC_START..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

fn encode_record(r: &Record, base_timestamp: i64, offset_delta: i32, out: &mut BytesMut) {
    let mut body = BytesMut::with_capacity(
        16 + r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()),
    );
    body.put_i8(r.attributes);
    put_varlong(&mut body, r.timestamp.wrapping_sub(base_timestamp));
    put_varint(&mut body, offset_delta);
    put_nullable(&mut body, r.key.as_deref());
    put_nullable(&mut body, r.value.as_deref());
    put_varint(&mut body, r.headers.len() as i32);
    for h in &r.headers {
        put_nullable(&mut body, Some(&h.key));
        put_nullable(&mut body, h.value.as_deref());
    }
    put_varint(out, body.len() as i32);
    out.put_slice(&body);
}

fn nullable_bytes<B: Buf>(buf: &mut B) -> Result<Option<Bytes>> {
    let len = varint(buf)?;
    if len < 0 {
        return Ok(None);
    }
    ensure!(len as usize <= buf.remaining(), "field longer than record");
    Ok(Some(buf.copy_to_bytes(len as usize)))
}

fn put_nullable(out: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.put_slice(b);
        }
    }
}

fn varlong<B: Buf>(buf: &mut B) -> Result<i64> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        ensure!(buf.has_remaining(), "truncated varint");
        let byte = buf.get_u8();
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    bail!("varint too long")
}

fn varint<B: Buf>(buf: &mut B) -> Result<i32> {
    let v = varlong(buf)?;
    i32::try_from(v).context("varint out of range")
}

fn put_varlong(out: &mut BytesMut, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.put_u8(raw as u8);
}

fn put_varint(out: &mut BytesMut, v: i32) {
    put_varlong(out, i64::from(v));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(attributes: i16, producer_id: i64, base_sequence: i32) -> Batch {
        let records = (0..5)
            .map(|i| Record {
                attributes: 0,
                timestamp: 1_700_000_000_000 + i,
                offset_delta: i as i32,
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: (i != 3).then(|| Bytes::from(vec![b'x'; 100 * i as usize])),
                headers: vec![
                    Header {
                        key: Bytes::from_static(b"dup"),
                        value: Some(Bytes::from_static(b"1")),
                    },
                    Header {
                        key: Bytes::from_static(b"dup"),
                        value: None,
                    },
                ],
            })
            .collect();
        Batch {
            base_offset: 0,
            partition_leader_epoch: 7,
            attributes,
            last_offset_delta: 4,
            base_timestamp: 1_700_000_000_000,
            max_timestamp: 1_700_000_000_004,
            producer_id,
            producer_epoch: 3,
            base_sequence,
            records,
            raw: Bytes::new(),
        }
    }

    #[test]
    fn round_trips_every_codec_and_flag() {
        for codec in 0..=4i16 {
            for flags in [0i16, 0x10, 0x8] {
                let batch = sample(codec | flags, 42, 10);
                let mut out = BytesMut::new();
                encode_batch(&batch, Offsets::Renumber, &mut out).unwrap();
                let data = out.freeze();
                let set = decode(&data).unwrap();
                assert!(set.trailing.is_empty());
                assert_eq!(set.batches.len(), 1);
                let got = &set.batches[0];
                assert_eq!(got.raw, data);
                assert_eq!(got.attributes, codec | flags, "codec {codec}");
                assert_eq!(got.producer_id, 42);
                assert_eq!(got.producer_epoch, 3);
                assert_eq!(got.base_sequence, 10);
                assert_eq!(got.partition_leader_epoch, 7);
                assert_eq!(got.records, batch.records);
                // Re-encoding what was decoded gives the same bytes.
                let mut again = BytesMut::new();
                encode_batch(got, Offsets::Keep, &mut again).unwrap();
                assert_eq!(again.freeze(), data);
            }
        }
    }

    #[test]
    fn keeps_offset_gaps_when_asked() {
        let mut batch = sample(0, -1, -1);
        batch.records.remove(1);
        let mut out = BytesMut::new();
        encode_batch(&batch, Offsets::Keep, &mut out).unwrap();
        let got = &decode(&out.freeze()).unwrap().batches[0];
        let deltas: Vec<_> = got.records.iter().map(|r| r.offset_delta).collect();
        assert_eq!(deltas, vec![0, 2, 3, 4]);
        assert_eq!(got.last_offset_delta, 4);
        let mut out = BytesMut::new();
        encode_batch(&batch, Offsets::Renumber, &mut out).unwrap();
        let got = &decode(&out.freeze()).unwrap().batches[0];
        let deltas: Vec<_> = got.records.iter().map(|r| r.offset_delta).collect();
        assert_eq!(deltas, vec![0, 1, 2, 3]);
        assert_eq!(got.last_offset_delta, 3);
    }

    #[test]
    fn several_batches_and_a_partial_tail() {
        let mut out = BytesMut::new();
        encode_batch(&sample(0, -1, -1), Offsets::Renumber, &mut out).unwrap();
        encode_batch(&sample(4, -1, -1), Offsets::Renumber, &mut out).unwrap();
        let whole = out.len();
        encode_batch(&sample(1, -1, -1), Offsets::Renumber, &mut out).unwrap();
        let data = out.freeze().slice(..whole + 30);
        let set = decode(&data).unwrap();
        assert_eq!(set.batches.len(), 2);
        assert_eq!(set.trailing.len(), 30);
    }

    #[test]
    fn corrupt_batches_are_errors() {
        let mut out = BytesMut::new();
        encode_batch(&sample(0, -1, -1), Offsets::Renumber, &mut out).unwrap();
        let mut bad = out.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(decode(&bad.freeze()).is_err());
        // A lying record count does not allocate.
        let mut lie = out;
        lie[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&lie[CRC_START..]);
        lie[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(decode(&lie.freeze()).is_err());
    }

    /// Views decode without the CRC check, which is kept for re-encoding: `crc_ok` tells a
    /// corrupt batch apart; `count_hint` reads the data batches' counts from their headers.
    #[test]
    fn unchecked_decoding_and_counts_from_headers() {
        let mut out = BytesMut::new();
        encode_batch(&sample(0, -1, -1), Offsets::Renumber, &mut out).unwrap();
        encode_batch(&sample(3, -1, -1), Offsets::Renumber, &mut out).unwrap();
        let data_len = out.len();
        // A control batch (transaction marker) counts for nothing.
        encode_batch(&sample(0x20 | 0x10, 9, 0), Offsets::Renumber, &mut out).unwrap();
        let good = out.clone().freeze();
        assert_eq!(count_hint(&good), (10, data_len));
        assert_eq!(count_hint(&good.slice(..good.len() - 1)), (10, data_len));
        assert_eq!(count_hint(&Bytes::new()), (0, 0));
        assert!(decode(&good).unwrap().batches.iter().all(Batch::crc_ok));
        let mut bad = out;
        bad[HEADER_SIZE + 2] ^= 0x01; // in the first batch's first record
        let bad = bad.freeze();
        assert!(decode(&bad).is_err());
        let set = decode_unchecked(&bad).unwrap();
        assert!(!set.batches[0].crc_ok() && set.batches[1].crc_ok());
        assert_eq!(count_hint(&bad), (10, data_len));
    }

    /// Decompression bombs and forged lengths: each codec stops at the limit instead of
    /// producing (or reserving) what the data claims, and ordinary data still decodes.
    #[test]
    fn decompression_is_bounded_for_every_codec() {
        use std::io::Write;
        let limit = 1 << 20;
        let bomb = vec![0u8; 8 << 20]; // 8 MiB of zeros: a few KiB compressed
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&bomb).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::stream::encode_all(&bomb[..], 3).unwrap();
        let mut lz = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        lz.write_all(&bomb).unwrap();
        let (lz, done) = lz.finish();
        done.unwrap();
        let sn = snap::raw::Encoder::new().compress_vec(&bomb).unwrap();
        for (codec, data) in [
            (Codec::Gzip, &gz),
            (Codec::Zstd, &zs),
            (Codec::Lz4, &lz),
            (Codec::Snappy, &sn),
        ] {
            assert!(data.len() < 1 << 20, "{codec:?}: {} bytes", data.len());
            let err = decompress(codec, data, limit).unwrap_err();
            assert!(
                format!("{err:#}").contains("more than"),
                "{codec:?}: {err:#}"
            );
            // Under a limit it fits, it decodes in full.
            let plain = decompress(codec, data, 16 << 20).unwrap();
            assert_eq!(plain.len(), bomb.len(), "{codec:?}");
        }
        // A raw snappy stream whose header claims 4 GiB: refused before any allocation.
        let forged = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(decompress(Codec::Snappy, &forged, limit).is_err());
        // The same inside xerial framing.
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        xerial.extend_from_slice(&(forged.len() as u32).to_be_bytes());
        xerial.extend_from_slice(&forged);
        assert!(decompress(Codec::Snappy, &xerial, limit).is_err());
        assert_eq!(decompressed_limit(100), 1 << 20);
        assert_eq!(decompressed_limit(1 << 20), DECOMPRESSED_MAX);
    }
}
