//! `server.limits.max_connections`: each API port holds at most so many connections. One
//! over the limit is closed as soon as it is accepted (its client sees the connection end
//! before any answer, and retries later); a held connection gives its place back when it
//! closes. Requests on held connections are limited by the gateway
//! (`server.limits.max_in_flight`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::actors::metrics::Metrics;

/// The places of one port's connections.
#[derive(Clone)]
pub struct ConnectionLimit {
    places: Arc<Semaphore>,
    port: &'static str,
    metrics: Metrics,
}

impl ConnectionLimit {
    /// At most `limit` connections on `port` (`rest` or `grpc`, the metrics' label).
    pub fn new(limit: usize, port: &'static str, metrics: Metrics) -> Self {
        Self {
            places: Arc::new(Semaphore::new(limit)),
            port,
            metrics,
        }
    }

    /// The stream with its place, or `None` when every place is taken (the stream is
    /// dropped, which closes it). Small request/response exchanges: Nagle's algorithm
    /// would hold replies back, so it is off.
    pub fn admit(&self, stream: TcpStream) -> Option<Limited<TcpStream>> {
        let _ = stream.set_nodelay(true);
        match self.places.clone().try_acquire_owned() {
            Ok(place) => {
                self.metrics.connection_open(self.port, 1);
                Some(Limited {
                    stream,
                    _place: place,
                    open: (self.metrics.clone(), self.port),
                })
            }
            Err(_) => {
                self.metrics.connection_refused(self.port);
                tracing::debug!(
                    port = self.port,
                    "connection closed: the port is at server.limits.max_connections"
                );
                None
            }
        }
    }
}

/// A connection holding its place until it is dropped.
pub struct Limited<S> {
    stream: S,
    _place: OwnedSemaphorePermit,
    /// Where the connection is counted open.
    open: (Metrics, &'static str),
}

impl<S> Drop for Limited<S> {
    fn drop(&mut self) {
        self.open.0.connection_open(self.open.1, -1);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(context, buffer)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(context, buffer)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}

/// tonic reads the peer's address from it (as from a plain TCP stream).
impl tonic::transport::server::Connected for Limited<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// The REST port's acceptor: admits a connection, then hands it to `inner` (TLS, or
/// nothing).
#[derive(Clone)]
pub struct LimitedAcceptor<A> {
    limit: ConnectionLimit,
    inner: A,
}

impl<A> LimitedAcceptor<A> {
    pub fn new(limit: ConnectionLimit, inner: A) -> Self {
        Self { limit, inner }
    }
}

impl<A, S> axum_server::accept::Accept<TcpStream, S> for LimitedAcceptor<A>
where
    A: axum_server::accept::Accept<Limited<TcpStream>, S>,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = Either<A::Future, std::future::Ready<io::Result<(A::Stream, A::Service)>>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        match self.limit.admit(stream) {
            Some(limited) => Either::Left(self.inner.accept(limited, service)),
            None => Either::Right(std::future::ready(Err(io::Error::other(
                "over server.limits.max_connections",
            )))),
        }
    }
}
