//! Random bodies that are valid for the schema table: the generator behind the walker's,
//! the rewriter's and the stages' property tests, and the seeds of the fuzz driver.
//!
//! A body is written field by field from the table at one version: arrays of a few
//! elements, strings of random letters, nulls where a field is nullable, known tagged fields
//! half of the time and an unknown one now and then. Deterministic for a given [`Rng`] seed.

use super::{ArrayKind, Field, Kind, MessageDef, STRUCTS};
use crate::frame::put_uvarint;

/// SplitMix64: a small deterministic generator for synthesised bodies.
pub struct Rng(pub u64);
impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True `percent` times in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// How [`synth_struct`] shapes a random body.
pub struct Shape {
    /// Arrays get fewer elements than this.
    pub elements: u64,
    /// Below this depth arrays may have elements; deeper they are empty.
    pub depth: u32,
    /// Strings and byte fields are shorter than this...
    pub text: u64,
    /// ...except, this often (percent), one of 100-140 bytes (two-byte size varints).
    pub long_text_percent: u64,
    /// Unknown tagged fields get tags from here (a range of 50).
    pub unknown_tags: u32,
}

/// Arrays of 0-2 elements, strings of 0-5 bytes (the walker's tests).
pub const SMALL: Shape = Shape {
    elements: 3,
    depth: 5,
    text: 6,
    long_text_percent: 0,
    unknown_tags: 1000,
};

/// A random body of `def` at `version` (see [`synth_struct`]).
pub fn synth_body(rng: &mut Rng, shape: &Shape, def: &MessageDef, version: i16) -> Vec<u8> {
    let mut body = Vec::new();
    synth_struct(rng, shape, def.root, version, 0, &mut body);
    body
}

/// Writes a random body that is valid for the table at `version`, shaped by `shape`:
/// nulls where nullable, known tagged fields half of the time and an unknown tagged field
/// now and then.
pub fn synth_struct(
    rng: &mut Rng,
    shape: &Shape,
    index: u16,
    version: i16,
    depth: u32,
    out: &mut Vec<u8>,
) {
    let def = &STRUCTS[usize::from(index)];
    let fields = def.fields();
    for field in fields.iter().filter(|f| f.tag < 0 && f.present_in(version)) {
        synth_field(rng, shape, field, version, depth, out);
    }
    if version < def.flexible_min {
        return;
    }
    let mut tagged: Vec<(u32, Vec<u8>)> = Vec::new();
    for field in fields
        .iter()
        .filter(|f| f.tag >= 0 && f.present_in(version))
    {
        if rng.chance(50) {
            let mut value = Vec::new();
            synth_field(rng, shape, field, version, depth, &mut value);
            tagged.push((field.tag as u32, value));
        }
    }
    if rng.chance(20) {
        let len = rng.below(4) as usize;
        tagged.push((shape.unknown_tags + rng.below(50) as u32, vec![0xab; len]));
    }
    put_uvarint(out, tagged.len() as u32);
    for (tag, value) in tagged {
        put_uvarint(out, tag);
        put_uvarint(out, value.len() as u32);
        out.extend_from_slice(&value);
    }
}

fn synth_field(
    rng: &mut Rng,
    shape: &Shape,
    field: &Field,
    version: i16,
    depth: u32,
    out: &mut Vec<u8>,
) {
    let null = field.nullable && rng.chance(15);
    match field.array {
        ArrayKind::One => synth_value(rng, shape, field, null, version, depth, out),
        ArrayKind::Array if null => out.extend_from_slice(&(-1i32).to_be_bytes()),
        ArrayKind::CompactArray if null => out.push(0),
        _ => {
            let n = if depth > shape.depth {
                0
            } else {
                rng.below(shape.elements) as u32
            };
            if field.array == ArrayKind::Array {
                out.extend_from_slice(&(n as i32).to_be_bytes());
            } else {
                put_uvarint(out, n + 1);
            }
            for _ in 0..n {
                synth_value(rng, shape, field, false, version, depth + 1, out);
            }
        }
    }
}

fn synth_value(
    rng: &mut Rng,
    shape: &Shape,
    field: &Field,
    null: bool,
    version: i16,
    depth: u32,
    out: &mut Vec<u8>,
) {
    let len = if shape.long_text_percent > 0 && rng.chance(shape.long_text_percent) {
        100 + rng.below(40)
    } else {
        rng.below(shape.text)
    };
    let text: Vec<u8> = (0..len).map(|_| b'a' + rng.below(26) as u8).collect();
    match field.kind {
        Kind::Bool => out.push(rng.below(2) as u8),
        Kind::Int8 => out.push(rng.next_u64() as u8),
        Kind::Int16 | Kind::UInt16 => out.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes()),
        Kind::Int32 => out.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes()),
        Kind::Int64 => out.extend_from_slice(&rng.next_u64().to_be_bytes()),
        Kind::Float64 => out.extend_from_slice(&(rng.below(1000) as f64).to_be_bytes()),
        Kind::Uuid => {
            out.extend_from_slice(&rng.next_u64().to_be_bytes());
            out.extend_from_slice(&rng.next_u64().to_be_bytes());
        }
        Kind::String | Kind::Bytes if null => {
            let marker: &[u8] = if field.kind == Kind::String {
                &[0xff, 0xff]
            } else {
                &[0xff, 0xff, 0xff, 0xff]
            };
            out.extend_from_slice(marker);
        }
        Kind::CompactString | Kind::CompactBytes if null => out.push(0),
        Kind::String => {
            out.extend_from_slice(&(text.len() as i16).to_be_bytes());
            out.extend_from_slice(&text);
        }
        Kind::Bytes => {
            out.extend_from_slice(&(text.len() as i32).to_be_bytes());
            out.extend_from_slice(&text);
        }
        Kind::CompactString | Kind::CompactBytes => {
            put_uvarint(out, text.len() as u32 + 1);
            out.extend_from_slice(&text);
        }
        Kind::Struct(index) => synth_struct(rng, shape, index, version, depth + 1, out),
        Kind::OptionStruct(index) => {
            if rng.chance(30) {
                out.push(0xff);
            } else {
                out.push(1);
                synth_struct(rng, shape, index, version, depth + 1, out);
            }
        }
    }
}
