//! A connection's byte stream as the kit hands it to a protocol: plain TCP or TLS
//! ([`Stream`]), split into halves that keep the plain socket reachable
//! ([`WriteHalf::socket`], for `sendfile`), each read noted for the idle timeout
//! ([`Activity`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use weir_security::tls::TlsStream;

/// When a connection last read a byte from its client, for the idle timeout: shared
/// between the stream (or its reading half) and the kit's watch over it.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last read that returned bytes.
    last_read_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last_read_ms: AtomicU64::new(0),
        })
    }

    fn note(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the client last sent a byte (or since the connection, if never).
    pub(crate) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_read_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// An accepted connection's bytes: plain TCP, or TLS set up by weir-security's
/// `tls::accept` (the handshake done, plaintext refused).
#[derive(Debug)]
pub struct Stream {
    inner: Inner,
    activity: Arc<Activity>,
}

#[derive(Debug)]
enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub(crate) fn plain(stream: TcpStream, activity: Arc<Activity>) -> Stream {
        Stream {
            inner: Inner::Plain(stream),
            activity,
        }
    }

    pub(crate) fn tls(stream: TlsStream<TcpStream>, activity: Arc<Activity>) -> Stream {
        Stream {
            inner: Inner::Tls(Box::new(stream)),
            activity,
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// A reading and a writing half, each usable on its own task. A plain connection is
    /// split into tokio's owned halves, so [`WriteHalf::socket`] reaches the socket.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self.inner {
            Inner::Plain(stream) => {
                let (read, write) = stream.into_split();
                (
                    ReadHalf {
                        inner: ReadInner::Plain(read),
                        activity: self.activity,
                    },
                    WriteHalf(WriteInner::Plain(write)),
                )
            }
            Inner::Tls(stream) => {
                let (read, write) = tokio::io::split(*stream);
                (
                    ReadHalf {
                        inner: ReadInner::Tls(read),
                        activity: self.activity,
                    },
                    WriteHalf(WriteInner::Tls(write)),
                )
            }
        }
    }
}

/// Polls `read` and notes the activity if it returned bytes.
fn note_read<R: AsyncRead + Unpin>(
    reader: &mut R,
    activity: &Activity,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    let before = buf.filled().len();
    let polled = Pin::new(reader).poll_read(cx, buf);
    if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
        activity.note();
    }
    polled
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Plain(s) => note_read(s, &this.activity, cx, buf),
            Inner::Tls(s) => note_read(s.as_mut(), &this.activity, cx, buf),
        }
    }
}

/// The writer under a stream or its writing half, plain or TLS, so `AsyncWrite` is
/// forwarded once ([`forward_async_write`]) rather than matched in every method.
type Writer = dyn AsyncWrite + Unpin + Send;

impl Inner {
    fn writer(&mut self) -> &mut Writer {
        match self {
            Inner::Plain(s) => s,
            Inner::Tls(s) => s.as_mut(),
        }
    }

    fn writer_ref(&self) -> &Writer {
        match self {
            Inner::Plain(s) => s,
            Inner::Tls(s) => s.as_ref(),
        }
    }
}

/// `AsyncWrite` for a type whose `$field` has `writer()` / `writer_ref()`.
macro_rules! forward_async_write {
    ($type:ty, $field:tt) => {
        impl AsyncWrite for $type {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(self.get_mut().$field.writer()).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(self.get_mut().$field.writer()).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$field.writer_ref().is_write_vectored()
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(self.get_mut().$field.writer()).poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(self.get_mut().$field.writer()).poll_shutdown(cx)
            }
        }
    };
}

forward_async_write!(Stream, inner);

/// The reading half of a [`Stream`].
#[derive(Debug)]
pub struct ReadHalf {
    inner: ReadInner,
    activity: Arc<Activity>,
}

#[derive(Debug)]
enum ReadInner {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.inner {
            ReadInner::Plain(s) => note_read(s, &this.activity, cx, buf),
            ReadInner::Tls(s) => note_read(s, &this.activity, cx, buf),
        }
    }
}

/// The writing half of a [`Stream`].
#[derive(Debug)]
pub struct WriteHalf(WriteInner);

#[derive(Debug)]
enum WriteInner {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl WriteHalf {
    /// The plain TCP socket under this half, for writes that bypass it (`sendfile`);
    /// `None` on TLS, where every byte is encrypted on its way through.
    pub fn socket(&self) -> Option<&TcpStream> {
        match &self.0 {
            WriteInner::Plain(half) => Some(half.as_ref()),
            WriteInner::Tls(_) => None,
        }
    }
}

impl WriteInner {
    fn writer(&mut self) -> &mut Writer {
        match self {
            WriteInner::Plain(s) => s,
            WriteInner::Tls(s) => s,
        }
    }

    fn writer_ref(&self) -> &Writer {
        match self {
            WriteInner::Plain(s) => s,
            WriteInner::Tls(s) => s,
        }
    }
}

forward_async_write!(WriteHalf, 0);
