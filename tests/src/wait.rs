//! Polling with deadlines: the only way these tests wait.

use std::time::{Duration, Instant};

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(50);

/// The default deadline for a condition: 30 s, or `$TWINSET_E2E_TIMEOUT` seconds.
/// Generous on purpose: a healthy cluster converges in well under a second, but the
/// CI machine has 2 cores shared by parallel tests.
pub fn timeout() -> Duration {
    std::env::var("TWINSET_E2E_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(30))
}

/// Polls `probe` until it returns `Ok(value)` and returns that value. `Err(state)`
/// means "not yet" and describes what was seen; after `deadline` the test panics with
/// `what` and the last state, so a failure says what it was waiting for.
#[track_caller]
pub fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return v,
            Err(state) => {
                if start.elapsed() >= deadline {
                    panic!(
                        "timed out after {:.1?} waiting for {what}; last seen: {state}",
                        start.elapsed()
                    );
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// As [`wait_for`], but returns `Err(last state)` at the deadline instead of panicking
/// (for callers that add their own context to the failure).
pub fn try_wait_for<T>(
    deadline: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return Ok(v),
            Err(state) if start.elapsed() >= deadline => return Err(state),
            Err(_) => {}
        }
        std::thread::sleep(POLL);
    }
}

/// Checks that `probe` stays `Ok` for the whole `window` (polling), for negative
/// assertions such as "the pod is not removed". Panics at the first `Err`.
#[track_caller]
pub fn holds_for(what: &str, window: Duration, mut probe: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        if let Err(state) = probe() {
            panic!(
                "{what} stopped holding after {:.1?}: {state}",
                start.elapsed()
            );
        }
        if start.elapsed() >= window {
            return;
        }
        std::thread::sleep(POLL);
    }
}
