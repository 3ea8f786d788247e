//! Sluice's Kafka wire layer: everything that reads or writes Kafka bytes and knows nothing of
//! connections, security, tenants or plugins.
//!
//! - [`frame`]: length-prefixed framing and the cheap request header peek run on every frame.
//! - [`schema`]: the generated table of every request and response of every API key and
//!   version, the structural walk that checks a body before kafka-protocol decodes it, the one
//!   door through which peer bytes are decoded (`schema::decode_*`), the name rewriter
//!   ([`schema::rewrite`]) and random valid bodies for property tests ([`schema::synth`]).
//! - [`message`]: response frames, encoded responses and error answers for every API, with
//!   kafka-protocol's own error-code table.
//! - [`records`]: record batches (v2), bounded decompression of the four codecs, and
//!   re-encoding that keeps producer ids, sequences and control batches.
//!
//! The gateway crate builds its stages on these; nothing here depends on it.


pub mod frame;
pub mod message;
pub mod records;
pub mod schema;
