//! Blocking file work that the pod workers' synchronous code does (log FIFOs, the
//! pod's `/etc` files, volume folders): moved off the async worker thread it is called
//! on with tokio's `block_in_place`, so the other pods' tasks go on meanwhile. Where
//! that is impossible (a current-thread runtime, as in paused-time unit tests, or no
//! runtime) it runs inline.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, off the async worker thread when the runtime allows.
pub fn file_work<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_without_a_runtime() {
        assert_eq!(file_work(|| 1 + 1), 2);
    }

    #[tokio::test]
    async fn runs_inline_on_a_current_thread_runtime() {
        assert_eq!(file_work(|| "inline"), "inline");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn other_tasks_run_while_it_blocks() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // The only worker blocks until the spawned task has run: only possible when
        // the blocking work left the worker thread.
        tokio::spawn(async move {
            tx.send(()).unwrap();
        });
        let got = file_work(|| rx.recv_timeout(std::time::Duration::from_secs(10)));
        assert!(got.is_ok());
    }
}
