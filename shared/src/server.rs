//! Serving an axum router until shutdown: stop accepting when the token
//! fires, let requests in flight finish, but never wait longer than the grace
//! period (a slow client cannot hold the process hostage).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use clap::Args;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (LISTEN_ADDR): {e}"),
        )
    })
}

/// Serves `router` on `listener` until `shutdown` fires, then drains for at
/// most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let stopping = shutdown.clone();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopping.cancelled().await })
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_seconds = grace.as_secs(), "connections still open after the grace period; closing them");
            Ok(())
        }
    }
}
