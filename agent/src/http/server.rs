//! The debug server: HTTP/1.1 (hyper) on the agent's own thread, with limits
//! that keep a slow or hostile client from holding it. A connection must
//! send its request's headers within [`HEADER_READ_TIMEOUT`] (idle
//! keep-alive connections too) and in at most [`MAX_HEADER_BYTES`]; a
//! client that stops reading an answer for [`WRITE_STALL_TIMEOUT`] is
//! dropped; at most [`MAX_CONNECTIONS`] are open at once, and further ones
//! get a 503 and are closed. None of this can pin the thread: every
//! connection is a task of the agent's runtime.
//!
//! Also here: which addresses the endpoint may listen on ([`exposure`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::Error;

/// Connections open at once; more are answered 503 and closed.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's headers, measured from
/// the connection's start or the end of its previous answer.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers), in bytes; larger
/// ones get a 431.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most header fields in a request; more get a 431.
pub(crate) const MAX_HEADERS: usize = 64;
/// How long a client may leave an answer unread before it is dropped.
pub(crate) const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a connection over the limit gets before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
content-length: 60\r\nretry-after: 1\r\nconnection: close\r\n\r\n\
too many connections to the taskscope endpoint: retry later\n";

/// Serves `router` on `listener` until the future is dropped.
pub(crate) async fn serve(listener: TcpListener, router: Router) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it
                // was accepted: wait a little rather than spin.
                if !matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            crate::health::count_connection_refused();
            // Best effort: a fresh socket's send buffer takes these bytes.
            let _ = stream.try_write(BUSY);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(
            TokioIo::new(Stalls::new(stream, WRITE_STALL_TIMEOUT)),
            TowerToHyperService::new(router.clone()),
        );
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                if e.is_timeout() {
                    crate::health::count_slow_client();
                }
            }
            drop(permit);
        });
    }
}

/// A stream whose writes fail with `TimedOut` once they have made no
/// progress for `limit`: a client that stops reading cannot hold its
/// connection, nor the answer buffered for it, for ever.
#[derive(Debug)]
pub(crate) struct Stalls<S> {
    io: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Stalls<S> {
    pub(crate) fn new(io: S, limit: Duration) -> Self {
        Stalls { io, limit, stalled: None }
    }

    /// Notes the outcome of a write: progress resets the clock, a stall
    /// starts it, and a stall past the limit becomes an error.
    fn check<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            crate::health::count_slow_client();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of the answer for too long",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stalls<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stalls<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.check(cx, polled)
    }
}

/// Who can reach the endpoint, as allowed by [`exposure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exposure {
    /// A loopback address: only this host.
    Loopback,
    /// Another address, with a bearer token required.
    Token,
    /// Another address without a token: `allow_remote` was set.
    Open,
}

/// Whether the endpoint may listen on `addr`. A loopback address always; any
/// other (`0.0.0.0` included) only with a token, or with `allow_remote`
/// (`TASKSCOPE_ALLOW_REMOTE=1`) as an explicit opt-in.
pub(crate) fn exposure(addr: SocketAddr, token: bool, allow_remote: bool) -> Result<Exposure, Error> {
    if addr.ip().to_canonical().is_loopback() {
        Ok(Exposure::Loopback)
    } else if token {
        Ok(Exposure::Token)
    } else if allow_remote {
        Ok(Exposure::Open)
    } else {
        Err(Error::Exposed { addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn only_loopback_is_served_without_a_token_or_an_opt_in() {
        for loopback in ["127.0.0.1:6060", "127.0.0.2:0", "[::1]:0", "[::ffff:127.0.0.1]:0"] {
            assert_eq!(
                exposure(loopback.parse().unwrap(), false, false).unwrap(),
                Exposure::Loopback,
                "{loopback}"
            );
        }
        for remote in ["0.0.0.0:0", "[::]:6060", "10.1.2.3:6060", "192.168.0.1:0", "[2001:db8::1]:0"] {
            let addr = remote.parse().unwrap();
            let e = exposure(addr, false, false).unwrap_err().to_string();
            assert!(e.contains("TASKSCOPE_TOKEN") && e.contains("TASKSCOPE_ALLOW_REMOTE=1"), "{e}");
            assert!(e.contains(&addr.to_string()), "{e}");
            assert_eq!(exposure(addr, true, false).unwrap(), Exposure::Token);
            assert_eq!(exposure(addr, false, true).unwrap(), Exposure::Open);
        }
    }

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{text}");
        assert!(body.ends_with('\n') && body.lines().count() == 1);
    }

    /// A write that makes no progress fails after the limit; one that does
    /// is never cut off.
    #[tokio::test(start_paused = true)]
    async fn writes_that_stall_time_out() {
        let (client, server) = tokio::io::duplex(64);
        let mut stalls = Stalls::new(server, Duration::from_secs(30));
        // Fills the pipe: nobody reads the other end.
        let before = crate::health::http_counters().slow_clients;
        let e = stalls.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(crate::health::http_counters().slow_clients > before);

        let (mut client2, server) = tokio::io::duplex(64);
        let mut stalls = Stalls::new(server, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 16];
            while got < 4096 {
                tokio::time::sleep(Duration::from_secs(10)).await;
                got += tokio::io::AsyncReadExt::read(&mut client2, &mut buf).await.unwrap();
            }
            got
        });
        // A slow reader, but one that reads: 4 KiB at 16 bytes every 10 s.
        stalls.write_all(&[0u8; 4096]).await.unwrap();
        assert!(reader.await.unwrap() >= 4096 - 64);
        drop(client);
    }
}
