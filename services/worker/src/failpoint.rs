//! Named crash points for the crash tests, compiled only with the
//! `failpoints` feature (which only this crate's own tests enable): a normal
//! build's [`hit`] is an empty inline function.
//!
//! `EVENTLINE_WORKER_FAILPOINT=<name>[=abort|hang]` makes the process abort
//! (no destructor, no flush: as close to `kill -9` as a process can do to
//! itself) or stop forever (for the test to kill it) at the named point:
//! `after_claim`, `before_insert`, `before_commit`, `after_commit`.

/// The environment variable naming the active failpoint.
pub const ENV: &str = "EVENTLINE_WORKER_FAILPOINT";

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::OnceLock;
    static ACTIVE: OnceLock<Option<(String, String)>> = OnceLock::new();
    let active = ACTIVE.get_or_init(|| {
        let spec = std::env::var(ENV).ok()?;
        let (point, action) = spec.split_once('=').unwrap_or((spec.as_str(), "abort"));
        Some((point.to_owned(), action.to_owned()))
    });
    let Some((point, action)) = active else {
        return;
    };
    if point != name {
        return;
    }
    eprintln!("failpoint {name}: {action}");
    if action == "hang" {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    std::process::abort();
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
