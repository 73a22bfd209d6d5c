//! Graceful shutdown from one [`CancellationToken`]: SIGTERM or SIGINT cancels
//! it; every loop `select!`s on it; readiness turns 503 as soon as it fires;
//! spawned tasks are tracked and awaited within a grace period.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A token cancelled on the first SIGTERM or SIGINT.
///
/// Must be called inside a Tokio runtime. If the signal handlers cannot be
/// installed (which only happens when the OS refuses), the error is returned
/// rather than running a process that cannot be stopped politely.
pub fn on_signal() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            () = cancel.cancelled() => return,
        };
        tracing::info!(signal = name, "shutdown requested");
        cancel.cancel();
    });
    Ok(token)
}

/// Closes the tracker and waits for its tasks, at most `grace`. Returns false
/// (and says so in the log) when the grace period ran out first.
pub async fn drain(tracker: &TaskTracker, grace: Duration) -> bool {
    tracker.close();
    match tokio::time::timeout(grace, tracker.wait()).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(
                grace_seconds = grace.as_secs_f64(),
                tasks = tracker.len(),
                "grace period ran out before all tasks finished"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_reports_a_task_that_outlives_the_grace_period() {
        let tracker = TaskTracker::new();
        tracker.spawn(tokio::time::sleep(Duration::from_secs(60)));
        assert!(!drain(&tracker, Duration::from_secs(5)).await);

        let tracker = TaskTracker::new();
        tracker.spawn(tokio::time::sleep(Duration::from_secs(1)));
        assert!(drain(&tracker, Duration::from_secs(5)).await);
    }
}
