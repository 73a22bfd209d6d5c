//! Serving an axum router until shutdown, on hyper's HTTP/1 directly rather
//! than `axum::serve`, for what a service facing clients needs:
//! - a header-read timeout that really fires (hyper needs a timer for it),
//!   so slowloris connections are closed;
//! - a cap on open connections: beyond it a new connection is closed at once
//!   instead of queuing;
//! - lingering close (below);
//! - graceful shutdown: stop accepting, let requests in flight finish, and
//!   after the grace period close whatever is still open (a slow client
//!   cannot hold the process hostage).
//!
//! Lingering close. A handler may answer before it has read the request
//! body: 413 over a size limit, 401 without a key, 415, 429. hyper then stops
//! reading, and closing a socket with unread bytes makes the kernel reset the
//! connection. A client that writes its whole body before reading the answer
//! (Python's `urllib` and `requests`, the OpenTelemetry exporters) then gets a
//! broken pipe or a reset instead of the 413 — and exporters retry a broken
//! connection forever while they do not retry a 413. So, as nginx's
//! `lingering_close` does, after a request whose body was not read to its end
//! the server shuts down its write side (the answer is written and flushed),
//! reads and discards what the client still sends until it closes, and then
//! closes: at most [`LINGER_MAX_BYTES`] (64 MiB, 64 times the gateway's
//! default body limit) and [`LINGER_TIME`] (5 s, a 4 MiB body at 7 Mbit/s)
//! in all, whichever comes first. A lingering connection keeps its place
//! under the connection cap. A connection that ended with an error (the
//! header-read timeout, a malformed request, a reset) is closed at once: a
//! slow client is cut off, not lingered on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::future::RouteFuture;
use clap::Args;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::IntCounter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

/// The most a lingering connection reads and discards before closing.
pub const LINGER_MAX_BYTES: u64 = 64 << 20;
/// The longest a connection lingers before closing.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// Bytes read at a time while lingering.
const LINGER_READ_BYTES: usize = 16 << 10;

#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Address the HTTP server binds, `host:port`.
    #[arg(long = "listen", env = "LISTEN_ADDR", value_name = "LISTEN_ADDR")]
    pub listen: Option<SocketAddr>,
    /// Longest wait for requests in flight after SIGTERM, in seconds.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", value_name = "SHUTDOWN_GRACE_SECONDS", default_value = "20", value_parser = crate::config::parse_seconds)]
    pub shutdown_grace: Duration,
}

impl ListenArgs {
    /// The configured address, or `default` (each service has its own port).
    pub fn addr_or(&self, default: SocketAddr) -> SocketAddr {
        self.listen.unwrap_or(default)
    }
}

/// Binds `addr`, saying which address failed when it cannot.
///
/// Every binary starts in one order: parse and check the configuration
/// (a bad value exits 64 before anything is opened), bind, then connect to
/// Redis and PostgreSQL (`run`/`start`), then serve. Binding first makes a
/// port already taken fail at once instead of after the connections, and
/// lets tests hand `run` a listener on port 0.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (LISTEN_ADDR): {e}"),
        )
    })
}

/// How long a client may dawdle and how many may be connected: the gateway
/// sets them from its flags, the other services take the defaults.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request's headers (an idle
    /// keep-alive connection too, for its next request); then the
    /// connection is closed.
    pub header_read_timeout: Duration,
    /// Open connections, lingering ones included; beyond it a new
    /// connection is closed at once.
    pub max_connections: usize,
    /// Counts the connections closed for the cap, where a service exports
    /// that figure.
    pub refused: Option<IntCounter>,
}

impl Default for ConnectionLimits {
    /// hyper's own header-read timeout (30 s), 10,000 connections, uncounted.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            refused: None,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then drains for at
/// most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let tasks = TaskTracker::new();
    // Fires when the grace period has run out: what is still open is closed.
    let abandon = CancellationToken::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    // Out of file descriptors, usually: back off a little.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if let Some(refused) = &limits.refused {
                refused.inc();
            }
            drop(stream);
            continue;
        };
        // Small responses: send them at once.
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            stream,
            peer,
            router: router.clone(),
            shutdown: shutdown.clone(),
            abandon: abandon.clone(),
        };
        tasks.spawn(async move {
            connection.run().await;
            drop(permit);
        });
    }
    drop(listener);
    tasks.close();
    tokio::select! {
        () = tasks.wait() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_seconds = grace.as_secs(), "connections still open after the grace period; closing them");
            abandon.cancel();
            tasks.wait().await;
        }
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    builder: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    /// Finish the request in flight, then close.
    shutdown: CancellationToken,
    /// Close now: the grace period is over.
    abandon: CancellationToken,
}

impl Connection {
    async fn run(self) {
        let Self {
            builder,
            stream,
            peer,
            router,
            shutdown,
            abandon,
        } = self;
        let unread = Arc::new(AtomicBool::new(false));
        let handler = Handler {
            router,
            peer,
            unread: unread.clone(),
        };
        // Served without hyper's own shutdown of the socket, so that it can
        // be lingered on; graceful shutdown is driven here for the same
        // reason (hyper's `GracefulShutdown` only watches whole connections).
        let mut conn = builder.serve_connection(TokioIo::new(stream), handler);
        let ended = tokio::select! {
            ended = async {
                tokio::select! {
                    ended = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => return ended,
                    () = shutdown.cancelled() => {}
                }
                Pin::new(&mut conn).graceful_shutdown();
                std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)).await
            } => ended,
            () = abandon.cancelled() => return,
        };
        if let Err(error) = ended {
            tracing::debug!(%error, %peer, "connection ended with an error");
            return;
        }
        if !unread.load(Ordering::Relaxed) {
            return;
        }
        let parts = conn.into_parts();
        tokio::select! {
            discarded = linger(parts.io.into_inner(), parts.read_buf.len()) => {
                tracing::debug!(%peer, discarded, "lingered on a request body left unread");
            }
            () = abandon.cancelled() => {}
        }
    }
}

/// Shuts down the write side of `stream`, whose answer is written, then
/// reads and discards what the client still sends within the bounds;
/// `already` bytes of it were read by hyper. Returns the bytes discarded.
async fn linger(mut stream: TcpStream, already: usize) -> u64 {
    let mut discarded = already as u64;
    if stream.shutdown().await.is_err() {
        return discarded;
    }
    let mut buf = vec![0; LINGER_READ_BYTES];
    let discard = async {
        while discarded < LINGER_MAX_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n as u64,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, discard).await;
    discarded
}

/// The router as hyper's service for one connection: each request gets the
/// client's address, and its body tells `unread` whether it was read to the
/// end.
struct Handler {
    router: Router,
    peer: SocketAddr,
    /// The last request's body has not been read to its end (yet).
    unread: Arc<AtomicBool>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Handler {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        self.unread
            .store(!req.body().is_end_stream(), Ordering::Relaxed);
        let mut req = req.map(|body| TrackedBody {
            inner: body,
            unread: self.unread.clone(),
        });
        req.extensions_mut().insert(ConnectInfo(self.peer));
        self.router.clone().call(req)
    }
}

/// A request body that clears its connection's `unread` flag once it has
/// been read to its end.
struct TrackedBody {
    inner: Incoming,
    unread: Arc<AtomicBool>,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.unread.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
