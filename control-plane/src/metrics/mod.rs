//! The control plane's Prometheus metrics, served at `/metrics` on the API port
//! (`twinset_proto::metrics` decides who may read them and encodes them).
//!
//! The instruments are process-wide ([`metrics`]), as a Prometheus client's are: the
//! request layer ([`requests`]), the store's writer and the controllers' work queues
//! record into them wherever they run, with no handle passed down. What is cheaper to
//! read when scraped than to keep — pods per phase, open watches — is read then
//! ([`registry`]). Every label takes values from a closed set.

pub mod requests;

use crate::api::slots::WatchSlots;
use crate::store::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::cell::RefCell;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use twinset_proto::metrics::{phase_label, LATENCY_BUCKETS, POD_PHASES};
use twinset_proto::Kind;

/// Histograms by label set, each with [`LATENCY_BUCKETS`].
pub type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The label of a controller's series: its component name (`daemonset-controller`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    /// The controller.
    pub controller: &'static str,
}

/// The label of a store write: `create`, `update` or `delete`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreOpLabel {
    /// The operation.
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

/// Every instrument of the control plane.
#[derive(Debug)]
pub struct Metrics {
    /// gRPC calls by service, method and status code.
    pub grpc_requests: Family<requests::GrpcResult, Counter>,
    /// gRPC calls' time to the response head, by service and method.
    pub grpc_latency: Latencies<requests::GrpcCall>,
    /// REST requests by verb, resource, subresource and status class.
    pub rest_requests: Family<requests::RestResult, Counter>,
    /// REST requests' time to the response head, by verb, resource and subresource.
    pub rest_latency: Latencies<requests::RestCall>,
    /// Store writes from the call to the acknowledgement (queue, group commit, flush).
    pub store_writes: Latencies<StoreOpLabel>,
    /// Keys ready in each controller's work queue.
    pub queue_depth: Family<ControllerLabel, Gauge>,
    /// How long each controller's reconciles take.
    pub reconcile: Latencies<ControllerLabel>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    grpc_requests: Family::default(),
    grpc_latency: Family::new_with_constructor(latency_histogram),
    rest_requests: Family::default(),
    rest_latency: Family::new_with_constructor(latency_histogram),
    store_writes: Family::new_with_constructor(latency_histogram),
    queue_depth: Family::default(),
    reconcile: Family::new_with_constructor(latency_histogram),
});

/// The process's instruments.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Records one store write of `op` that took `took`.
pub fn store_write(op: &'static str, took: Duration) {
    METRICS
        .store_writes
        .get_or_create(&StoreOpLabel { op })
        .observe(took.as_secs_f64());
}

/// What `/metrics` shows: every instrument, and the values read at scrape time from
/// `store` (pods per phase) and `watches` (open Watch streams).
pub fn registry(store: Arc<dyn Store>, watches: Arc<WatchSlots>) -> Registry {
    let m = metrics();
    let mut r = Registry::default();
    r.register(
        "twinset_grpc_requests",
        "gRPC calls by service, method and status code",
        m.grpc_requests.clone(),
    );
    r.register(
        "twinset_grpc_request_duration_seconds",
        "Time from a gRPC call to its response head, by service and method",
        m.grpc_latency.clone(),
    );
    r.register(
        "twinset_rest_requests",
        "REST requests by verb, resource (or discovery, version, health, metrics, unknown), subresource and status class",
        m.rest_requests.clone(),
    );
    r.register(
        "twinset_rest_request_duration_seconds",
        "Time from a REST request to its response head, by verb, resource and subresource",
        m.rest_latency.clone(),
    );
    r.register(
        "twinset_store_write_duration_seconds",
        "Time from a store write to its acknowledgement (queue, group commit, flush), by operation",
        m.store_writes.clone(),
    );
    r.register(
        "twinset_controller_queue_depth",
        "Keys ready in a controller's work queue",
        m.queue_depth.clone(),
    );
    r.register(
        "twinset_controller_reconcile_duration_seconds",
        "Time of one reconcile, by controller",
        m.reconcile.clone(),
    );
    r.register_collector(Box::new(Scraped { store, watches }));
    r
}

/// The values read when scraped.
struct Scraped {
    store: Arc<dyn Store>,
    watches: Arc<WatchSlots>,
}

impl std::fmt::Debug for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraped").finish_non_exhaustive()
    }
}

/// How many pods of `store` are in each phase (every phase, 0 included), counted in
/// place without copying a pod.
pub fn pods_per_phase(store: &dyn Store) -> [(&'static str, i64); 5] {
    let counts = RefCell::new(POD_PHASES.map(|p| (p, 0i64)));
    store.list_where(Kind::Pod, None, &|o| {
        if let Some(pod) = o.as_pod() {
            let phase = phase_label(crate::podutil::phase(pod));
            if let Some(c) = counts.borrow_mut().iter_mut().find(|(p, _)| *p == phase) {
                c.1 += 1;
            }
        }
        false
    });
    counts.into_inner()
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pods: Family<PhaseLabel, Gauge> = Family::default();
        for (phase, n) in pods_per_phase(&*self.store) {
            pods.get_or_create(&PhaseLabel { phase }).set(n);
        }
        pods.encode(encoder.encode_descriptor(
            "twinset_pods",
            "Pods in the store by phase",
            None,
            pods.metric_type(),
        )?)?;
        let watches: Gauge = Gauge::default();
        watches.set(i64::try_from(self.watches.in_use()).unwrap_or(i64::MAX));
        watches.encode(encoder.encode_descriptor(
            "twinset_watches",
            "Watch streams open (gRPC and REST)",
            None,
            watches.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use twinset_proto::v1::{Object, ObjectMeta, Pod, PodStatus};

    fn pod(name: &str, phase: &str) -> Object {
        Object::from(Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: phase.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn pods_are_counted_by_phase_and_scraped_with_the_open_watches() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
        for (name, phase) in [
            ("a", "Running"),
            ("b", "Running"),
            ("c", ""),
            ("d", "Failed"),
        ] {
            store.create(pod(name, phase)).await.unwrap();
        }
        assert_eq!(
            pods_per_phase(&*store),
            [
                ("Pending", 1),
                ("Running", 2),
                ("Succeeded", 0),
                ("Failed", 1),
                ("Unknown", 0)
            ]
        );
        let watches = WatchSlots::new(10, 10, 10);
        let _slot = watches.acquire(None, "admin").unwrap();
        let text = twinset_proto::metrics::encode(&registry(store, watches)).unwrap();
        assert!(
            text.contains("twinset_pods{phase=\"Running\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("twinset_pods{phase=\"Succeeded\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("twinset_watches 1\n"), "{text}");
    }
}
