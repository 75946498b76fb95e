//! `server.limits.max_connections`: each API port holds at most so many connections. One
//! over the limit is closed as soon as it is accepted (its client sees the connection end
//! before any answer, and retries later); a held connection gives its place back when it
//! closes. A connection must send its first bytes within `header_read_timeout_ms` (a TLS
//! hello, an HTTP/2 preface, a request line) or it is closed: a client that connects and
//! says nothing holds no place for long. Requests on held connections are limited by the
//! gateway (`server.limits.max_in_flight`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
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

/// The connections of a gRPC port (API or peer): each accepted connection is admitted and
/// given `within` to send its first bytes, on a task of its own, so that one silent client
/// does not hold up the others.
pub fn incoming(
    listener: TcpListener,
    limit: ConnectionLimit,
    within: Duration,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Limited<TcpStream>>> {
    let (admitted, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                // The server stopped.
                () = admitted.closed() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    let Some(limited) = limit.admit(stream) else {
                        continue;
                    };
                    let admitted = admitted.clone();
                    tokio::spawn(async move {
                        if limited.speaks_within(within).await {
                            let _ = admitted.send(Ok(limited)).await;
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors, most likely: accepting again at once
                    // would spin.
                    tracing::warn!(%error, port = limit.port, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// A connection holding its place until it is dropped.
pub struct Limited<S> {
    stream: S,
    _place: OwnedSemaphorePermit,
    /// Where the connection is counted open.
    open: (Metrics, &'static str),
}

impl Limited<TcpStream> {
    /// Whether the client sends its first bytes within `within` (read without taking
    /// them).
    async fn speaks_within(&self, within: Duration) -> bool {
        let mut first = [0u8; 1];
        matches!(
            tokio::time::timeout(within, self.stream.peek(&mut first)).await,
            Ok(Ok(read)) if read > 0
        )
    }
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

/// The REST port's acceptor: admits a connection, waits up to `within` for its first
/// bytes, then hands it to `inner` (TLS, or nothing).
#[derive(Clone)]
pub struct LimitedAcceptor<A> {
    limit: ConnectionLimit,
    within: Duration,
    inner: A,
}

impl<A> LimitedAcceptor<A> {
    pub fn new(limit: ConnectionLimit, within: Duration, inner: A) -> Self {
        Self {
            limit,
            within,
            inner,
        }
    }
}

type Accepted<A, S> = io::Result<(
    <A as axum_server::accept::Accept<Limited<TcpStream>, S>>::Stream,
    <A as axum_server::accept::Accept<Limited<TcpStream>, S>>::Service,
)>;

impl<A, S> axum_server::accept::Accept<TcpStream, S> for LimitedAcceptor<A>
where
    A: axum_server::accept::Accept<Limited<TcpStream>, S> + Clone + Send + 'static,
    A::Future: Send,
    S: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = Accepted<A, S>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let admitted = self.limit.admit(stream);
        let (inner, within) = (self.inner.clone(), self.within);
        Box::pin(async move {
            let Some(limited) = admitted else {
                return Err(io::Error::other("over server.limits.max_connections"));
            };
            if !limited.speaks_within(within).await {
                return Err(io::Error::other(
                    "nothing sent within server.limits.header_read_timeout_ms",
                ));
            }
            inner.accept(limited, service).await
        })
    }
}
