//! A plugin's standard output and error: captured in memory, never blocking, and logged by the
//! host as the interceptor's own lines.
//!
//! Toolchains write to WASI stdout and stderr on their own: Rust's `println!` and panic
//! messages, Python's `print()` and uncaught-exception tracebacks. wasmtime-wasi's synchronous
//! bindings run the "blocking" stream and poll functions by entering a tokio runtime, which
//! panics on the gateway's async workers ("Cannot start a runtime from within a runtime").
//! So this module
//!
//! - gives each instance a stdout and a stderr ([`PluginOutput`]) that accept every write at
//!   once into a bounded buffer (what exceeds it is counted and dropped, never refused: a
//!   refused write makes Rust's `println!` panic);
//! - links its own `wasi:io/streams` and `wasi:io/poll` over wasmtime-wasi's, which drive the
//!   same futures without a runtime: every stream a plugin can reach is ready at once, and a
//!   future that is not ready would wait for I/O the sandbox never grants, so the call traps
//!   instead of blocking a worker;
//! - hands complete lines to the caller after each call ([`PluginOutput::take_lines`]); the
//!   caller logs them, truncated and rate limited per interceptor.

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::WasiView;
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::bindings::wasi::io::streams as async_streams;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

/// Bytes of output an instance may buffer between two drains (per stream).
pub const OUTPUT_BUFFER: usize = 64 * 1024;
/// Longest logged line; longer lines are cut (at a character boundary) and marked.
pub const LINE_MAX: usize = 1024;

#[derive(Default)]
struct Buffer {
    data: Vec<u8>,
    /// Bytes dropped because the buffer was full.
    dropped: u64,
}

/// One of an instance's output streams (stdout or stderr), shared by every handle the plugin
/// opens on it and by the host, which drains it.
#[derive(Clone, Default)]
pub struct PluginOutput {
    buf: Arc<Mutex<Buffer>>,
}

/// What a drain found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Complete lines (or, with `flush`, the incomplete last one), each at most [`LINE_MAX`]
    /// bytes of text.
    pub lines: Vec<String>,
    /// Bytes dropped because the plugin wrote faster than the buffer drains.
    pub dropped: u64,
}

impl PluginOutput {
    fn append(&self, bytes: &[u8]) {
        let mut b = self.buf.lock().expect("plugin output lock");
        let room = OUTPUT_BUFFER.saturating_sub(b.data.len());
        let take = bytes.len().min(room);
        b.data.extend_from_slice(&bytes[..take]);
        b.dropped += (bytes.len() - take) as u64;
    }

    /// Takes the complete lines written so far; with `flush`, the incomplete last line too (the
    /// instance is going away). An incomplete line that fills the buffer is taken as a line.
    pub fn take_lines(&self, flush: bool) -> Drained {
        let mut b = self.buf.lock().expect("plugin output lock");
        let end = if flush || b.data.len() >= OUTPUT_BUFFER {
            b.data.len()
        } else {
            b.data
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(0, |i| i + 1)
        };
        let taken: Vec<u8> = b.data.drain(..end).collect();
        let dropped = std::mem::take(&mut b.dropped);
        drop(b);
        let lines = taken
            .split(|&c| c == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty())
            .map(|l| {
                if l.len() <= LINE_MAX {
                    return String::from_utf8_lossy(l).into_owned();
                }
                let text = String::from_utf8_lossy(&l[..LINE_MAX]);
                let text = text.trim_end_matches('\u{FFFD}');
                format!("{text}… ({} bytes)", l.len())
            })
            .collect();
        Drained { lines, dropped }
    }
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for PluginOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always room: what does not fit is dropped and counted, so a chatty plugin is never
        // stalled or failed by its own logging.
        Ok(OUTPUT_BUFFER)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for PluginOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for PluginOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs `f` to completion if it is ready on its first poll; a future that would wait traps the
/// call (it waits for I/O the sandbox never grants, or for a clock: plugins must not sleep).
fn now<F: Future>(f: F) -> wasmtime::Result<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(wasmtime::Error::msg(
            "the plugin blocked on WASI I/O or a timer, which the sandbox does not allow",
        )),
    }
}

fn now_stream<T, F: Future<Output = StreamResult<T>>>(f: F) -> StreamResult<T> {
    now(f).unwrap_or_else(|e| Err(StreamError::Trap(e)))
}

/// The WASI I/O host functions, without a tokio runtime.
struct NoBlock<'a>(&'a mut ResourceTable);

struct HasNoBlock;

impl HasData for HasNoBlock {
    type Data<'a> = NoBlock<'a>;
}

/// Links `wasi:io/streams` and `wasi:io/poll` that never enter a runtime, over the ones
/// `wasmtime_wasi::p2::add_to_linker_sync` linked. Generic over the store's data so this
/// module needs only its WASI view (the resource table), not the plugin host's state.
pub fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    poll::add_to_linker::<T, HasNoBlock>(linker, |s| NoBlock(s.ctx().table))?;
    streams::add_to_linker::<T, HasNoBlock>(linker, |s| NoBlock(s.ctx().table))?;
    linker.allow_shadowing(false);
    Ok(())
}

impl streams::Host for NoBlock<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.0, err)
    }
}

impl streams::HostOutputStream for NoBlock<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        now(async_streams::HostOutputStream::drop(self.0, stream))?
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.0, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.0, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        now_stream(async_streams::HostOutputStream::blocking_write_and_flush(
            self.0, stream, bytes,
        ))
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.0, stream, len)
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        now_stream(
            async_streams::HostOutputStream::blocking_write_zeroes_and_flush(self.0, stream, len),
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.0, stream)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.0, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        now_stream(async_streams::HostOutputStream::blocking_flush(
            self.0,
            Resource::new_borrow(stream.rep()),
        ))
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.0, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        now_stream(async_streams::HostOutputStream::blocking_splice(
            self.0, dst, src, len,
        ))
    }
}

impl streams::HostInputStream for NoBlock<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        now(async_streams::HostInputStream::drop(self.0, stream))?
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.0, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        now_stream(async_streams::HostInputStream::blocking_read(
            self.0, stream, len,
        ))
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.0, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        now_stream(async_streams::HostInputStream::blocking_skip(
            self.0, stream, len,
        ))
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.0, stream)
    }
}

impl poll::Host for NoBlock<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        now(async_poll::Host::poll(self.0, pollables))?
    }
}

impl poll::HostPollable for NoBlock<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        now(async_poll::HostPollable::ready(self.0, pollable))?
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        now(async_poll::HostPollable::block(self.0, pollable))?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.0, pollable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_bounded_and_truncated() {
        let out = PluginOutput::default();
        out.append(b"one\r\ntwo\npart");
        let d = out.take_lines(false);
        assert_eq!(d.lines, ["one", "two"]);
        out.append(b"ial\n");
        assert_eq!(out.take_lines(false).lines, ["partial"]);
        out.append(b"no newline");
        assert!(out.take_lines(false).lines.is_empty());
        assert_eq!(out.take_lines(true).lines, ["no newline"]);
        let long = "é".repeat(LINE_MAX);
        out.append(format!("{long}\n").as_bytes());
        let line = &out.take_lines(false).lines[0];
        assert!(line.len() < LINE_MAX + 32 && line.ends_with(&format!("({} bytes)", 2 * LINE_MAX)));
        out.append(&vec![b'x'; OUTPUT_BUFFER + 10]);
        let d = out.take_lines(false);
        assert_eq!((d.lines.len(), d.dropped), (1, 10));
    }
}
