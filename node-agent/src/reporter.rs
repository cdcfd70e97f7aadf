//! Sends pod status to the control plane (`Nodes.ReportStatus`). Pod workers hand
//! over every change without waiting; the reporter sends at once, one call in flight
//! per pod, several pods in parallel, and coalesces: while a call is in flight or
//! the control plane is unreachable only the newest status of a pod is kept (events
//! accumulate). A failed call is retried with a capped backoff of that pod's own:
//! the other pods' reports go on meanwhile.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::connection::Client;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use twinset_proto::v1;

/// A status change of one pod.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid (the control plane ignores reports for another pod of the same name).
    pub uid: String,
    /// The new status.
    pub status: Option<v1::PodStatus>,
    /// The pod was being deleted and its processes are gone.
    pub terminated: bool,
    /// Events to record.
    pub events: Vec<v1::Event>,
}

impl Report {
    /// Folds a newer report into this older one.
    fn absorb(&mut self, newer: Report) {
        if newer.status.is_some() {
            self.status = newer.status;
        }
        self.terminated |= newer.terminated;
        self.events.extend(newer.events);
    }
}

/// Where pod workers send reports.
#[derive(Clone, Debug)]
pub struct ReporterHandle {
    tx: mpsc::UnboundedSender<Report>,
}

impl ReporterHandle {
    /// Queues a report (never blocks).
    pub fn send(&self, report: Report) {
        if self.tx.send(report).is_err() {
            tracing::debug!("status reporter stopped; report dropped");
        }
    }

    /// A handle whose reports land in the returned receiver (for tests).
    pub fn channel() -> (ReporterHandle, mpsc::UnboundedReceiver<Report>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ReporterHandle { tx }, rx)
    }
}

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs the reporter until `shutdown`; returns the handle and the task's future.
pub fn reporter(
    client: Client,
    node_name: String,
    shutdown: CancellationToken,
) -> (ReporterHandle, impl std::future::Future<Output = ()>) {
    let (handle, rx) = ReporterHandle::channel();
    let send = move |r: Report| -> SendFuture {
        let mut client = client.clone();
        let req = v1::ReportStatusRequest {
            node_name: node_name.clone(),
            namespace: r.namespace.clone(),
            pod_name: r.name.clone(),
            pod_uid: r.uid.clone(),
            status: r.status.clone(),
            terminated: r.terminated,
            events: r.events.clone(),
        };
        Box::pin(async move {
            let res = client.report_status(req).await.map(|_| ());
            (r, res)
        })
    };
    (handle, run(send, rx, shutdown))
}

/// One call in flight: it hands the report back with the outcome.
type SendFuture = BoxFuture<'static, (Report, Result<(), tonic::Status>)>;

/// A pod's report waiting to go.
struct Pending {
    report: Report,
    /// Not before this (after a failed call).
    not_before: Option<Instant>,
}

/// Each pod's retry state: its next backoff after a failure.
#[derive(Default)]
struct Backoffs(HashMap<String, Duration>);

impl Backoffs {
    /// The delay before the pod's next try; doubles per failure, capped.
    fn next(&mut self, uid: &str) -> Duration {
        let b = self.0.entry(uid.to_string()).or_insert(RETRY_MIN);
        let now = *b;
        *b = (*b * 2).min(RETRY_MAX);
        now
    }

    fn reset(&mut self, uid: &str) {
        self.0.remove(uid);
    }
}

/// The reporter's loop, over `send` (the `ReportStatus` call; a fake in tests). Each
/// pod is retried on its own schedule: one pod's failing report never holds back the
/// others.
async fn run<F>(send: F, mut rx: mpsc::UnboundedReceiver<Report>, shutdown: CancellationToken)
where
    F: Fn(Report) -> SendFuture,
{
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut calls = FuturesUnordered::new();
    let mut backoffs = Backoffs::default();
    loop {
        // Dispatch whatever may go now.
        let now = Instant::now();
        let ready: Vec<String> = pending
            .iter()
            .filter(|(uid, p)| !in_flight.contains(*uid) && p.not_before.is_none_or(|t| t <= now))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in ready {
            if let Some(p) = pending.remove(&uid) {
                in_flight.insert(uid);
                calls.push(send(p.report));
            }
        }
        let next_retry = pending
            .iter()
            .filter(|(uid, _)| !in_flight.contains(*uid))
            .filter_map(|(_, p)| p.not_before)
            .min();
        let wake = async {
            match next_retry {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            msg = rx.recv() => match msg {
                Some(r) => match pending.get_mut(&r.uid) {
                    Some(p) => p.report.absorb(r),
                    None => {
                        pending.insert(r.uid.clone(), Pending { report: r, not_before: None });
                    }
                },
                None => return,
            },
            Some((r, res)) = calls.next(), if !calls.is_empty() => {
                in_flight.remove(&r.uid);
                match res {
                    Ok(()) => backoffs.reset(&r.uid),
                    Err(s) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition) => {
                        backoffs.reset(&r.uid);
                        tracing::debug!(namespace = %r.namespace, pod = %r.name, status = %s, "pod gone; report dropped");
                    }
                    Err(s) => {
                        tracing::debug!(namespace = %r.namespace, pod = %r.name, status = %s, "status report failed; will retry");
                        let uid = r.uid.clone();
                        let mut older = r;
                        if let Some(newer) = pending.remove(&uid) {
                            older.absorb(newer.report);
                        }
                        let delay = backoffs.next(&uid);
                        pending.insert(uid, Pending {
                            report: older,
                            not_before: Some(Instant::now() + delay),
                        });
                    }
                }
            }
            _ = wake => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorb_keeps_newest_status_and_all_events() {
        let ev = |r: &str| v1::Event {
            reason: r.into(),
            ..Default::default()
        };
        let st = |p: &str| {
            Some(v1::PodStatus {
                phase: p.into(),
                ..Default::default()
            })
        };
        let mut a = Report {
            uid: "u".into(),
            status: st("Pending"),
            events: vec![ev("a")],
            ..Default::default()
        };
        a.absorb(Report {
            uid: "u".into(),
            status: st("Running"),
            events: vec![ev("b")],
            ..Default::default()
        });
        a.absorb(Report {
            uid: "u".into(),
            status: None,
            terminated: true,
            ..Default::default()
        });
        assert_eq!(a.status.unwrap().phase, "Running");
        assert!(a.terminated);
        assert_eq!(
            a.events
                .iter()
                .map(|e| e.reason.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    /// A pod whose reports fail keeps backing off while another pod's reports go out
    /// at once; the failing pod's report goes once the control plane takes it.
    #[tokio::test(start_paused = true)]
    async fn one_failing_pod_does_not_hold_back_the_others() {
        use std::sync::{Arc, Mutex};
        let sent: Arc<Mutex<Vec<(String, Instant, bool)>>> = Arc::default();
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (s, f) = (Arc::clone(&sent), Arc::clone(&failing));
        let send = move |r: Report| -> SendFuture {
            let ok = r.uid != "bad" || !f.load(std::sync::atomic::Ordering::SeqCst);
            s.lock().unwrap().push((r.uid.clone(), Instant::now(), ok));
            Box::pin(async move {
                let res = if ok {
                    Ok(())
                } else {
                    Err(tonic::Status::unavailable("control plane away"))
                };
                (r, res)
            })
        };
        let (handle, rx) = ReporterHandle::channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(send, rx, shutdown.clone()));
        let report = |uid: &str, phase: &str| Report {
            uid: uid.into(),
            status: Some(v1::PodStatus {
                phase: phase.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        // When the reports of `uid` were sent.
        let tries_of = |sent: &Mutex<Vec<(String, Instant, bool)>>, uid: &str| -> Vec<Instant> {
            let sent = sent.lock().unwrap();
            sent.iter()
                .filter(|(u, _, _)| u == uid)
                .map(|(_, t, _)| *t)
                .collect()
        };
        let start = Instant::now();
        handle.send(report("bad", "Pending"));
        tokio::time::sleep(Duration::from_millis(1)).await;
        // "bad" has failed and waits for its retry; "good" goes at once, each time.
        for i in 0..5 {
            handle.send(report("good", &format!("p{i}")));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let goods = tries_of(&sent, "good");
        assert_eq!(goods.len(), 5, "every report of the healthy pod went out");
        for (i, t) in goods.iter().enumerate() {
            assert!(*t - start <= Duration::from_millis(1 + 10 * i as u64 + 1));
        }
        // "bad" backs off: 100 ms, 200 ms, 400 ms, ...
        tokio::time::sleep(Duration::from_millis(800)).await;
        let bads = tries_of(&sent, "bad");
        assert!(bads.len() >= 3, "{} tries", bads.len());
        assert!(bads[1] - bads[0] >= RETRY_MIN);
        assert!(bads[2] - bads[1] >= 2 * RETRY_MIN);
        failing.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(RETRY_MAX * 2).await;
        let last = sent.lock().unwrap().last().cloned().unwrap();
        assert_eq!((last.0.as_str(), last.2), ("bad", true));
        let tries = sent.lock().unwrap().len();
        tokio::time::sleep(RETRY_MAX * 2).await;
        assert_eq!(
            sent.lock().unwrap().len(),
            tries,
            "nothing more once delivered"
        );
        shutdown.cancel();
        task.await.unwrap();
    }
}
