//! Connections whose incoming bytes are capped: a target that keeps sending (an SMTP reply line
//! that never ends, an LDAP message announcing gigabytes) is cut once it has sent
//! [`MAX_ANSWER_BYTES`] on one connection, and the check fails as a `protocol-error` that says
//! so, instead of the server buffering all of it until the timeout.
//!
//! - [`CappedStream`] counts what it reads, for the protocols whose client takes a stream of
//!   ours (SMTP, with `lettre`'s connection layer).
//! - [`pipe`] puts a capped copy between a target and a socket pair, for a client that insists
//!   on a `std::net::TcpStream` of its own (`ldap3`): the client gets one end of a Unix socket
//!   pair as its stream, and a task copies bytes between the other end and the target. This
//!   doubles the system calls of each message (measured in BENCHMARKS.md).
//!
//! Must never: let more than [`MAX_ANSWER_BYTES`] from one target connection into the process.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::Failure;

/// The most a target may send on one connection, and the largest HTTP answer body read from
/// one (token endpoint, discovery, key set, Graph): 1 MiB, far above any answer Rekey asks for,
/// small enough that an answer streamed without end cannot grow the server's memory.
pub(crate) const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The error a capped read ends with, inside the client's own error.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the target sent more than {} KiB on one connection; its answer was cut off", MAX_ANSWER_BYTES >> 10)]
pub(crate) struct AnswerTooLarge;

impl From<AnswerTooLarge> for Failure {
    fn from(e: AnswerTooLarge) -> Self {
        Failure::protocol(e.to_string())
    }
}

/// A stream whose reads end with [`AnswerTooLarge`] after [`MAX_ANSWER_BYTES`].
#[derive(Debug)]
pub(crate) struct CappedStream<S> {
    inner: S,
    left: usize,
    peer: Option<SocketAddr>,
}

impl<S> CappedStream<S> {
    /// `inner`, connected to `peer`.
    pub(crate) fn new(inner: S, peer: Option<SocketAddr>) -> Self {
        Self { inner, left: MAX_ANSWER_BYTES, peer }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CappedStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Err(io::Error::other(AnswerTooLarge)));
        }
        let room = buf.remaining().min(self.left);
        // A view of at most `room` bytes of the caller's buffer (zeroed first: no unsafe here).
        let (result, n) = {
            let mut limited = ReadBuf::new(buf.initialize_unfilled_to(room));
            let result = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
            let n = limited.filled().len();
            (result, n)
        };
        if let Poll::Ready(Ok(())) = result {
            buf.advance(n);
            self.left -= n;
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CappedStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> lettre::transport::smtp::client::AsyncTokioStream for CappedStream<S>
where
    S: AsyncRead + AsyncWrite + Send + Sync + Unpin + std::fmt::Debug,
{
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.peer.ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no peer address"))
    }
}

/// Whether a [`pipe`] cut its target off.
#[derive(Clone, Default)]
pub(crate) struct Cut(Arc<AtomicBool>);

impl Cut {
    pub(crate) fn happened(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A `std::net::TcpStream` for a client that wants one, joined to `target` by a capped copy:
/// the client's end is one side of a Unix socket pair (the client only reads and writes it).
/// The copy ends when either side closes, or when the target has sent [`MAX_ANSWER_BYTES`]
/// (then both are closed and [`Cut::happened`] says so).
pub(crate) fn pipe(target: TcpStream) -> io::Result<(std::net::TcpStream, Cut)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let ours = tokio::net::UnixStream::from_std(ours)?;
    let client = std::net::TcpStream::from(std::os::fd::OwnedFd::from(theirs));
    let cut = Cut::default();
    let flag = cut.clone();
    tokio::spawn(async move {
        let (mut from_client, mut to_client) = ours.into_split();
        let (from_target, mut to_target) = target.into_split();
        let mut from_target = CappedStream::new(from_target, None);
        let up = async {
            let _ = tokio::io::copy(&mut from_client, &mut to_target).await;
            let _ = to_target.shutdown().await;
        };
        let down = async {
            if let Err(e) = tokio::io::copy(&mut from_target, &mut to_client).await {
                if e.get_ref().is_some_and(|inner| inner.is::<AnswerTooLarge>()) {
                    flag.0.store(true, Ordering::Release);
                }
            }
            let _ = to_client.shutdown().await;
        };
        // Whichever way ends first, the other is dropped with it: both sockets close.
        tokio::select! {
            () = down => {}
            () = async { up.await; std::future::pending::<()>().await } => {}
        }
    });
    Ok((client, cut))
}
