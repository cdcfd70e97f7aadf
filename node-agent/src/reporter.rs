//! Sends pod status to the control plane (`Nodes.ReportStatus`). Pod workers hand
//! over every change without waiting; the reporter sends at once, one call in flight
//! per pod, several pods in parallel, and coalesces: while a call is in flight or
//! the control plane is unreachable only the newest status of a pod is kept (events
//! accumulate). Failed calls are retried with a capped backoff.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;
use twinset_proto::v1::{self, nodes_client::NodesClient};

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
    client: NodesClient<Channel>,
    node_name: String,
    shutdown: CancellationToken,
) -> (ReporterHandle, impl std::future::Future<Output = ()>) {
    let (handle, rx) = ReporterHandle::channel();
    (handle, run(client, node_name, rx, shutdown))
}

async fn send_one(
    mut client: NodesClient<Channel>,
    node: String,
    r: Report,
) -> (Report, Result<(), tonic::Status>) {
    let req = v1::ReportStatusRequest {
        node_name: node,
        namespace: r.namespace.clone(),
        pod_name: r.name.clone(),
        pod_uid: r.uid.clone(),
        status: r.status.clone(),
        terminated: r.terminated,
        events: r.events.clone(),
    };
    let res = client.report_status(req).await.map(|_| ());
    (r, res)
}

async fn run(
    client: NodesClient<Channel>,
    node: String,
    mut rx: mpsc::UnboundedReceiver<Report>,
    shutdown: CancellationToken,
) {
    let mut pending: HashMap<String, Report> = HashMap::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut calls = FuturesUnordered::new();
    let mut retry_at: Option<Instant> = None;
    let mut backoff = RETRY_MIN;
    loop {
        // Dispatch whatever may go now.
        if retry_at.is_none_or(|t| t <= Instant::now()) {
            retry_at = None;
            let ready: Vec<String> = pending
                .keys()
                .filter(|k| !in_flight.contains(*k))
                .cloned()
                .collect();
            for uid in ready {
                if let Some(r) = pending.remove(&uid) {
                    in_flight.insert(uid);
                    calls.push(send_one(client.clone(), node.clone(), r));
                }
            }
        }
        let wake = async {
            match retry_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            msg = rx.recv() => match msg {
                Some(r) => match pending.get_mut(&r.uid) {
                    Some(p) => p.absorb(r),
                    None => { pending.insert(r.uid.clone(), r); }
                },
                None => return,
            },
            Some((r, res)) = calls.next(), if !calls.is_empty() => {
                in_flight.remove(&r.uid);
                match res {
                    Ok(()) => backoff = RETRY_MIN,
                    Err(s) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition) => {
                        tracing::debug!(namespace = %r.namespace, pod = %r.name, status = %s, "pod gone; report dropped");
                    }
                    Err(s) => {
                        tracing::debug!(namespace = %r.namespace, pod = %r.name, status = %s, "status report failed; will retry");
                        let uid = r.uid.clone();
                        let mut older = r;
                        if let Some(newer) = pending.remove(&uid) {
                            older.absorb(newer);
                        }
                        pending.insert(uid, older);
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(RETRY_MAX);
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
}
