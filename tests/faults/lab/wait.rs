//! How long the fault tests wait before they call something hung, and polling until a
//! condition holds.

use std::time::{Duration, Instant};

/// How long any build may take before the test calls it hung. Far above what a build
/// needs on a slow, shared machine, far below "forever".
pub const BUILD_LIMIT: Duration = Duration::from_secs(240);
/// How long to wait for something the test set in motion (a job reaching the box, the
/// box cleaning up).
pub const WAIT_LIMIT: Duration = Duration::from_secs(90);

/// Polls `done` until it holds, panicking with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
