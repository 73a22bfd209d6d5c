//! A TCP proxy the chaos runner puts between the workers and PostgreSQL, to
//! cut the network or slow it down on cue (this kernel has no `tc netem`).
//!
//! - [`Fault::None`]: bytes pass as they come;
//! - [`Fault::Cut`]: every open connection is dropped at once (both sides see
//!   a reset or EOF mid-conversation, as a broken link or a restarted NAT
//!   would show it) and new ones are closed as soon as they are accepted;
//! - [`Fault::Latency`]: each chunk is held for the given time before it is
//!   passed on, in both directions, without limiting throughput (a chunk's
//!   delay runs from when it arrived, not from when the one before it left).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Cut,
    Latency(Duration),
}

/// The running proxy; dropping it stops accepting (open connections end
/// with their peers).
pub struct Proxy {
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    stats: Arc<Stats>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    cut: AtomicU64,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (fault, _) = watch::channel(Fault::None);
        let stats = Arc::new(Stats::default());
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            fault.clone(),
            stats.clone(),
        ));
        Ok(Proxy {
            addr,
            fault,
            stats,
            accept,
        })
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Connections accepted, and connections dropped by a cut.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.stats.connections.load(Ordering::Relaxed),
            self.stats.cut.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: watch::Sender<Fault>,
    stats: Arc<Stats>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let rx = fault.subscribe();
        if *rx.borrow() == Fault::Cut {
            stats.cut.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        let stats = stats.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return; // upstream down: the client sees the connection close
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            if relay(client, server, rx).await {
                stats.cut.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// Relays until either side closes or a cut; true when cut.
async fn relay(client: TcpStream, server: TcpStream, mut fault: watch::Receiver<Fault>) -> bool {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pipe(cr, sw, fault.clone());
    let down = pipe(sr, cw, fault.clone());
    tokio::pin!(up, down);
    let cut = async {
        loop {
            if fault.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if *fault.borrow() == Fault::Cut {
                return;
            }
        }
    };
    tokio::select! {
        () = cut => true,
        // One direction ended: the other side has closed or failed; let
        // the other direction flush what it holds, briefly.
        _ = &mut up => { let _ = tokio::time::timeout(Duration::from_secs(1), &mut down).await; false }
        _ = &mut down => { let _ = tokio::time::timeout(Duration::from_secs(1), &mut up).await; false }
    }
}

/// One direction: a reader that stamps each chunk with its arrival and a
/// writer that sends it once the current latency has passed.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    fault: watch::Receiver<Fault>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((arrived, chunk)) = rx.recv().await {
            let delay = match *fault.borrow() {
                Fault::Latency(d) => d,
                Fault::None | Fault::Cut => Duration::ZERO,
            };
            tokio::time::sleep_until(arrived + delay).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn passes_delays_and_cuts() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut s).await.unwrap(), b"ping");

        proxy.set(Fault::Latency(Duration::from_millis(100)));
        let started = std::time::Instant::now();
        assert_eq!(round_trip(&mut s).await.unwrap(), b"ping");
        // Held once on the way in and once on the way out.
        assert!(started.elapsed() >= Duration::from_millis(200));

        proxy.set(Fault::Cut);
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
        // New connections are closed at once.
        let mut again = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut again).await.is_err());

        proxy.set(Fault::None);
        let mut healed = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut healed).await.unwrap(), b"ping");
        assert_eq!(proxy.counts().1, 2);
    }
}
