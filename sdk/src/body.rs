//! [`Body`]: a Kafka request or response body, read through the host or from memory.

use crate::bindings::sluice::interceptor::types as wit;

/// A Kafka request or response body (after the header), as seen by `on_request` /
/// `on_response`. Mirrors the WIT `message` resource: on wasm the bytes stay in the host and
/// only what you read is copied; natively `Vec<u8>` and `&[u8]` implement it.
pub trait Body {
    /// Size of the body in bytes.
    fn size(&self) -> u32;
    /// Up to `len` bytes starting at `offset` (fewer at the end of the body, none past it).
    fn read(&self, offset: u32, len: u32) -> Vec<u8>;
    /// The whole body (copies it into the plugin).
    fn bytes(&self) -> Vec<u8>;
}

/// The host's `message` resource.
pub(crate) struct HostBody<'a>(pub(crate) &'a wit::Message);

impl Body for HostBody<'_> {
    fn size(&self) -> u32 {
        self.0.size()
    }
    fn read(&self, offset: u32, len: u32) -> Vec<u8> {
        self.0.read(offset, len)
    }
    fn bytes(&self) -> Vec<u8> {
        self.0.bytes()
    }
}

fn read_slice(bytes: &[u8], offset: u32, len: u32) -> Vec<u8> {
    let start = (offset as usize).min(bytes.len());
    let end = start.saturating_add(len as usize).min(bytes.len());
    bytes[start..end].to_vec()
}

impl Body for &[u8] {
    fn size(&self) -> u32 {
        u32::try_from(self.len()).expect("body larger than 4 GiB")
    }
    fn read(&self, offset: u32, len: u32) -> Vec<u8> {
        read_slice(self, offset, len)
    }
    fn bytes(&self) -> Vec<u8> {
        self.to_vec()
    }
}

impl Body for Vec<u8> {
    fn size(&self) -> u32 {
        self.as_slice().size()
    }
    fn read(&self, offset: u32, len: u32) -> Vec<u8> {
        read_slice(self, offset, len)
    }
    fn bytes(&self) -> Vec<u8> {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::Body;

    #[test]
    fn ranged_reads_stop_at_the_end() {
        let body = b"hello world".to_vec();
        assert_eq!(body.size(), 11);
        assert_eq!(body.read(0, 5), b"hello");
        assert_eq!(body.read(6, 100), b"world");
        assert_eq!(body.read(11, 1), b"");
        assert_eq!(body.read(50, 1), b"");
        assert_eq!(body.read(3, u32::MAX), b"lo world");
        let slice: &[u8] = &body;
        assert_eq!(slice.bytes(), body);
    }
}
