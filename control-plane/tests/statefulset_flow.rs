//! StatefulSets end to end in-process: the control plane on 127.0.0.1:0 and fake agents
//! speaking the generated Nodes client (they report assigned pods Running and Ready at
//! once, or hold them, and report terminations). The guide's MySQL set comes up one
//! ordinal at a time, each replica bound with its claim; a deleted replica comes back
//! under its name on its node; scaling down goes from the top, one at a time; a
//! Parallel set creates everything at once and whenDeleted: Delete takes the claims
//! along; a replica that fits nowhere stays Pending with FailedScheduling.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

use twinset_proto::v1::cluster_client::ClusterClient;
use twinset_proto::v1::*;

const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

const GUIDE_STATEFULSET: &str = include_str!("../../deploy/examples/statefulset.yaml");

fn key(kind: &str, ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

fn name_of(p: &Pod) -> &str {
    &p.metadata.as_ref().unwrap().name
}

fn node_of(p: &Pod) -> &str {
    p.spec.as_ref().map(|s| s.node_name.as_str()).unwrap_or("")
}

fn is_ready(p: &Pod) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.phase == "Running"
            && s.conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

fn is_terminating(p: &Pod) -> bool {
    p.metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty())
}

impl Cluster {
    async fn list(&self, kind: &str, ns: &str) -> Vec<Object> {
        let req = ListRequest {
            kind: kind.into(),
            namespace: ns.into(),
            ..Default::default()
        };
        self.api().list(req).await.unwrap().into_inner().items
    }

    async fn pods(&self, ns: &str) -> Vec<Pod> {
        self.list("pods", ns)
            .await
            .into_iter()
            .filter_map(|o| o.into_pod())
            .collect()
    }

    async fn claims(&self, ns: &str) -> Vec<PersistentVolumeClaim> {
        self.list("pvc", ns)
            .await
            .into_iter()
            .filter_map(|o| o.into_persistent_volume_claim())
            .collect()
    }

    async fn event_messages(&self, ns: &str, reason: &str) -> Vec<String> {
        self.list("events", ns)
            .await
            .into_iter()
            .filter_map(|o| o.into_event())
            .filter(|e| e.reason == reason)
            .map(|e| e.message)
            .collect()
    }

    async fn wait<T>(&self, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_pods(&self, ns: &str, what: &str, cond: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
        let start = Instant::now();
        loop {
            let pods = self.pods(ns).await;
            if cond(&pods) {
                return pods;
            }
            if start.elapsed() > DEADLINE {
                panic!("timed out waiting for {what}; pods: {pods:#?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn apply(&self, text: &str) -> ApplyResponse {
        let obj = twinset_proto::manifest::decode(text).unwrap().remove(0);
        self.api()
            .apply(ApplyRequest {
                object: Some(obj),
                dry_run: false,
                create_only: false,
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn scale(&self, ns: &str, name: &str, replicas: i32) -> Result<(), tonic::Status> {
        self.api()
            .scale(ScaleRequest {
                key: Some(key("sts", ns, name)),
                replicas,
            })
            .await
            .map(drop)
    }

    async fn sts_status(&self, ns: &str, name: &str) -> StatefulSetStatus {
        let obj = self
            .api()
            .get(GetRequest {
                key: Some(key("sts", ns, name)),
            })
            .await
            .unwrap()
            .into_inner()
            .object
            .unwrap();
        obj.into_stateful_set().unwrap().status.unwrap_or_default()
    }
}

fn agent_node(name: &str, memory: &str) -> Node {
    let capacity: BTreeMap<String, String> = [
        ("cpu".to_string(), "4".to_string()),
        ("memory".to_string(), memory.to_string()),
        ("pods".to_string(), "110".to_string()),
    ]
    .into();
    Node {
        metadata: Some(ObjectMeta {
            name: name.into(),
            labels: [("kubernetes.io/hostname".to_string(), name.to_string())].into(),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            allocatable: capacity.clone(),
            capacity,
            addresses: vec![NodeAddress {
                r#type: "InternalIP".into(),
                address: "127.0.0.1".into(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn running_ready(ip: &str) -> PodStatus {
    PodStatus {
        phase: "Running".into(),
        host_ip: "127.0.0.1".into(),
        pod_ip: ip.into(),
        conditions: vec![PodCondition {
            r#type: "Ready".into(),
            status: "True".into(),
            last_transition_time: twinset_proto::time::now(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A fake node agent: registers, follows its assignments, reports each new pod Running
/// and Ready (while `ready` is set) and each terminating pod terminated.
struct Agent {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn agent(cluster: &Cluster, name: &str, memory: &str, ready: Arc<AtomicBool>) -> Agent {
    let mut nodes = cluster.node(name).await;
    nodes
        .register(RegisterRequest {
            node: Some(agent_node(name, memory)),
        })
        .await
        .unwrap();
    let req = WatchAssignmentsRequest {
        node_name: name.into(),
        resource_version: String::new(),
    };
    let mut stream = nodes.watch_assignments(req).await.unwrap().into_inner();
    let name = name.to_string();
    let task = tokio::spawn(async move {
        let mut reported: HashSet<String> = HashSet::new();
        let mut ips = 10;
        while let Ok(Some(a)) = stream.message().await {
            if a.r#type == "DELETED" {
                continue;
            }
            for pod in a.pods {
                let m = pod.metadata.clone().unwrap_or_default();
                let mut req = ReportStatusRequest {
                    node_name: name.clone(),
                    namespace: m.namespace.clone(),
                    pod_name: m.name.clone(),
                    pod_uid: m.uid.clone(),
                    ..Default::default()
                };
                if !m.deletion_timestamp.is_empty() {
                    req.terminated = true;
                } else if ready.load(Ordering::SeqCst) && reported.insert(m.uid.clone()) {
                    ips += 1;
                    req.status = Some(running_ready(&format!("127.128.0.{ips}")));
                } else {
                    continue;
                }
                // Concurrently, as a real agent's pods report independently.
                let mut client = nodes.clone();
                tokio::spawn(async move {
                    let _ = client.report_status(req).await;
                });
            }
        }
    });
    Agent { task }
}

async fn agents(cluster: &Cluster, memory: &str, ready: &Arc<AtomicBool>) -> Vec<Agent> {
    let mut out = Vec::new();
    for n in ["node1", "node2", "node3"] {
        out.push(agent(cluster, n, memory, ready.clone()).await);
    }
    out
}

/// Every pod change in a namespace, as a watcher sees it, with its arrival time.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(Instant, String, Pod)>>>);

impl Log {
    async fn follow(channel: &Channel, ns: &str) -> (Log, tokio::task::JoinHandle<()>) {
        let req = WatchRequest {
            kind: "pods".into(),
            namespace: ns.into(),
            ..Default::default()
        };
        let mut stream = ClusterClient::new(channel.clone())
            .watch(req)
            .await
            .unwrap()
            .into_inner();
        let log = Log::default();
        let l = log.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(ev)) = stream.message().await {
                if let Some(p) = ev.object.and_then(|o| o.into_pod()) {
                    l.0.lock().unwrap().push((Instant::now(), ev.r#type, p));
                }
            }
        });
        (log, task)
    }

    fn events(&self) -> Vec<(Instant, String, Pod)> {
        self.0.lock().unwrap().clone()
    }

    /// Index and arrival of the first event satisfying `f`.
    fn first(&self, f: impl Fn(&str, &Pod) -> bool) -> Option<(usize, Instant)> {
        self.first_from(0, f)
    }

    /// Index and arrival of the first event from index `from` on satisfying `f`.
    fn first_from(&self, from: usize, f: impl Fn(&str, &Pod) -> bool) -> Option<(usize, Instant)> {
        self.events()
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, (_, t, p))| f(t, p))
            .map(|(i, (at, _, _))| (i, *at))
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Never two live pods with one name: a name's next pod appears only after the
    /// previous one was DELETED.
    fn assert_one_pod_per_name(&self) {
        let mut live: BTreeMap<String, String> = BTreeMap::new();
        for (_, t, p) in self.events() {
            let m = p.metadata.as_ref().unwrap();
            match t.as_str() {
                "DELETED" => {
                    live.remove(&m.name);
                }
                _ => {
                    if let Some(uid) = live.insert(m.name.clone(), m.uid.clone()) {
                        assert_eq!(uid, m.uid, "two live pods named {}", m.name);
                    }
                }
            }
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guide_statefulset_ordered_ready_identity_and_scaling() {
    let cluster = start().await;
    let ready = Arc::new(AtomicBool::new(true));
    let _agents = agents(&cluster, "8Gi", &ready).await;
    let (log, _watch) = Log::follow(&cluster.channel, "database").await;

    let applied = cluster.apply(GUIDE_STATEFULSET).await;
    assert_eq!(applied.outcome, "created");
    assert_eq!(
        applied.notes,
        vec!["namespace/database created", "service/mysql created"]
    );
    let pods = cluster
        .wait_pods("database", "3 ready replicas", |p| {
            p.len() == 3 && p.iter().all(is_ready)
        })
        .await;
    cluster
        .wait("status 3/3", async || {
            let s = cluster.sts_status("database", "mysql-db").await;
            (s.ready_replicas == 3 && s.replicas == 3 && s.updated_replicas == 3).then_some(s)
        })
        .await;

    // Ordinals one at a time: mysql-db-k appears only after mysql-db-(k-1) is Ready, and
    // each step (Ready seen → next replica bound) takes milliseconds.
    let mut steps = Vec::new();
    for k in 1..3 {
        let prev = format!("mysql-db-{}", k - 1);
        let this = format!("mysql-db-{k}");
        let (ready_at, ready_time) = log
            .first(|_, p| name_of(p) == prev && is_ready(p))
            .expect("the lower replica became ready");
        let (added_at, _) = log
            .first(|t, p| t == "ADDED" && name_of(p) == this)
            .expect("the replica was created");
        assert!(
            added_at > ready_at,
            "{this} created before {prev} was Ready"
        );
        let (_, bound_time) = log
            .first(|_, p| name_of(p) == this && !node_of(p).is_empty())
            .expect("the replica was bound");
        steps.push(bound_time - ready_time);
    }
    eprintln!("OrderedReady step (Ready seen -> next replica bound): {steps:?}");
    assert!(median(steps) < Duration::from_secs(1));

    // Spread over the three nodes, each with its own claim bound to its node.
    let nodes: BTreeSet<&str> = pods.iter().map(node_of).collect();
    assert_eq!(nodes.len(), 3, "one replica per node");
    let by_name: BTreeMap<&str, &Pod> = pods.iter().map(|p| (name_of(p), p)).collect();
    let claims = cluster.claims("database").await;
    assert_eq!(claims.len(), 3);
    for c in &claims {
        let m = c.metadata.as_ref().unwrap();
        let ord = m.name.rsplit('-').next().unwrap();
        let pod = by_name[format!("mysql-db-{ord}").as_str()];
        assert_eq!(m.name, format!("mysql-storage-mysql-db-{ord}"));
        assert_eq!(m.annotations[SELECTED_NODE], node_of(pod));
        assert_eq!(m.labels["app"], "mysql");
        assert!(m.owner_references.is_empty(), "Retain: no owner");
        let st = c.status.as_ref().unwrap();
        assert_eq!(
            (st.phase.as_str(), st.capacity["storage"].as_str()),
            ("Bound", "1Gi")
        );
        assert_eq!(
            c.spec.as_ref().unwrap().volume_name,
            format!("pvc-{}", m.uid)
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            (spec.hostname.as_str(), spec.subdomain.as_str()),
            (name_of(pod), "mysql")
        );
        assert_eq!(
            spec.volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            m.name
        );
    }
    let wanted = [
        "create Claim mysql-storage-mysql-db-0 Pod mysql-db-0 in StatefulSet mysql-db success",
        "create Pod mysql-db-0 in StatefulSet mysql-db successful",
        "create Pod mysql-db-2 in StatefulSet mysql-db successful",
    ];
    cluster
        .wait("the controller's and the scheduler's events", async || {
            let created = cluster.event_messages("database", "SuccessfulCreate").await;
            let scheduled = cluster.event_messages("database", "Scheduled").await;
            (wanted.iter().all(|w| created.iter().any(|m| m == w)) && scheduled.len() == 3)
                .then_some(())
        })
        .await;

    // A claim in use cannot be deleted.
    let err = cluster
        .api()
        .delete(DeleteRequest {
            key: Some(key("pvc", "database", "mysql-storage-mysql-db-0")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(
        err.message().contains("in use by pod \"mysql-db-0\""),
        "{}",
        err.message()
    );

    // A deleted replica comes back under its name, on its node (its claim is there).
    let old = by_name["mysql-db-1"].clone();
    cluster
        .api()
        .delete(DeleteRequest {
            key: Some(key("pod", "database", "mysql-db-1")),
            ..Default::default()
        })
        .await
        .unwrap();
    let old_uid = old.metadata.as_ref().unwrap().uid.clone();
    let pods = cluster
        .wait_pods("database", "mysql-db-1 back", |p| {
            p.iter().any(|p| {
                name_of(p) == "mysql-db-1"
                    && p.metadata.as_ref().unwrap().uid != old_uid
                    && is_ready(p)
            })
        })
        .await;
    let again = pods.iter().find(|p| name_of(p) == "mysql-db-1").unwrap();
    assert_eq!(node_of(again), node_of(&old), "same node as its claim");

    // Scale down to 1: mysql-db-2 goes first and is gone before mysql-db-1 is touched.
    let placed: BTreeMap<String, String> = pods
        .iter()
        .map(|p| (name_of(p).to_string(), node_of(p).to_string()))
        .collect();
    let err = cluster.scale("database", "mysql-db", -1).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mark = log.len();
    cluster.scale("database", "mysql-db", 1).await.unwrap();
    cluster
        .wait_pods("database", "one replica", |p| {
            p.len() == 1 && name_of(&p[0]) == "mysql-db-0"
        })
        .await;
    let (gone2, _) = log
        .first_from(mark, |t, p| t == "DELETED" && name_of(p) == "mysql-db-2")
        .unwrap();
    let (term1, _) = log
        .first_from(mark, |_, p| name_of(p) == "mysql-db-1" && is_terminating(p))
        .unwrap();
    let (term2, _) = log
        .first_from(mark, |_, p| name_of(p) == "mysql-db-2" && is_terminating(p))
        .unwrap();
    assert!(
        term2 < gone2 && gone2 < term1,
        "mysql-db-2 fully went before mysql-db-1 began"
    );
    assert_eq!(cluster.claims("database").await.len(), 3, "claims stay");
    cluster
        .wait("the delete event", async || {
            let deleted = cluster.event_messages("database", "SuccessfulDelete").await;
            deleted
                .iter()
                .any(|m| m == "delete Pod mysql-db-2 in StatefulSet mysql-db successful")
                .then_some(())
        })
        .await;

    // Scale back: the replicas return on their old nodes (their claims are there).
    cluster.scale("database", "mysql-db", 3).await.unwrap();
    let pods = cluster
        .wait_pods("database", "3 ready replicas again", |p| {
            p.len() == 3 && p.iter().all(is_ready)
        })
        .await;
    for p in &pods {
        assert_eq!(node_of(p), placed[name_of(p)], "{} moved", name_of(p));
    }
    log.assert_one_pod_per_name();
    cluster.stop().await;
}

const PARALLEL: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: sleepers
  namespace: default
spec:
  serviceName: sleepers
  replicas: 5
  podManagementPolicy: Parallel
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: RETENTION
    whenScaled: RETENTION
  selector:
    matchLabels:
      app: sleepers
  template:
    metadata:
      labels:
        app: sleepers
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: sleep
        image: busybox
        command: [sleep, \"3600\"]
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 10Mi
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_all_at_once_and_retention_decides_the_claims() {
    let cluster = start().await;
    // The agents hold pods un-ready: every replica must appear without waiting.
    let ready = Arc::new(AtomicBool::new(false));
    let _agents = agents(&cluster, "8Gi", &ready).await;
    let (log, _watch) = Log::follow(&cluster.channel, "default").await;

    cluster
        .apply(&PARALLEL.replace("RETENTION", "Delete"))
        .await;
    let pods = cluster
        .wait_pods("default", "5 bound replicas", |p| {
            p.len() == 5 && p.iter().all(|p| !node_of(p).is_empty())
        })
        .await;
    assert!(pods.iter().all(|p| !is_ready(p)), "none was ready");
    let claims = cluster.claims("default").await;
    assert_eq!(claims.len(), 5);
    for c in &claims {
        let owners = &c.metadata.as_ref().unwrap().owner_references;
        assert_eq!(
            (
                owners.len(),
                owners[0].kind.as_str(),
                owners[0].name.as_str()
            ),
            (1, "StatefulSet", "sleepers")
        );
    }
    let per_node: BTreeSet<&str> = pods.iter().map(node_of).collect();
    assert_eq!(per_node.len(), 3, "spread over the nodes");

    // whenScaled: Delete: the claims of the removed ordinals go once their pods are gone.
    cluster.scale("default", "sleepers", 3).await.unwrap();
    cluster
        .wait_pods("default", "3 replicas", |p| p.len() == 3)
        .await;
    let names = cluster
        .wait("claims of ordinals 3 and 4 deleted", async || {
            let names: BTreeSet<String> = cluster
                .claims("default")
                .await
                .into_iter()
                .map(|c| c.metadata.unwrap().name)
                .collect();
            (names.len() == 3).then_some(names)
        })
        .await;
    assert_eq!(
        names,
        ["data-sleepers-0", "data-sleepers-1", "data-sleepers-2"]
            .map(String::from)
            .into()
    );

    // Deleting the set (Background) terminates the pods and, whenDeleted: Delete, the claims.
    cluster
        .api()
        .delete(DeleteRequest {
            key: Some(key("sts", "default", "sleepers")),
            ..Default::default()
        })
        .await
        .unwrap();
    cluster
        .wait_pods("default", "no pods", |p| p.is_empty())
        .await;
    cluster
        .wait("claims deleted", async || {
            cluster.claims("default").await.is_empty().then_some(())
        })
        .await;

    // Retain (the default): the claims stay after the set is gone.
    cluster
        .apply(&PARALLEL.replace("RETENTION", "Retain"))
        .await;
    cluster
        .wait_pods("default", "5 replicas", |p| p.len() == 5)
        .await;
    cluster
        .api()
        .delete(DeleteRequest {
            key: Some(key("sts", "default", "sleepers")),
            ..Default::default()
        })
        .await
        .unwrap();
    cluster
        .wait_pods("default", "no pods", |p| p.is_empty())
        .await;
    let claims = cluster.claims("default").await;
    assert_eq!(
        claims.len(),
        5,
        "Retain keeps the claims (3 earlier ones reused, 2 new)"
    );
    assert!(claims
        .iter()
        .all(|c| c.metadata.as_ref().unwrap().owner_references.is_empty()));
    // Unused now: a claim can be deleted.
    cluster
        .api()
        .delete(DeleteRequest {
            key: Some(key("pvc", "default", "data-sleepers-0")),
            ..Default::default()
        })
        .await
        .unwrap();
    log.assert_one_pod_per_name();
    cluster.stop().await;
}

const BIG: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: big
  namespace: default
spec:
  serviceName: big
  replicas: 2
  selector:
    matchLabels:
      app: big
  template:
    metadata:
      labels:
        app: big
    spec:
      containers:
      - name: c
        image: busybox
        resources:
          requests:
            memory: 64Gi
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_fits_nowhere_waits_with_failed_scheduling() {
    let cluster = start().await;
    let ready = Arc::new(AtomicBool::new(true));
    let _agents = agents(&cluster, "8Gi", &ready).await;

    cluster.apply(BIG).await;
    let msg = "0/3 nodes are available: 3 Insufficient memory.";
    let pods = cluster
        .wait_pods("default", "big-0 unschedulable", |p| {
            p.iter().any(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.r#type == "PodScheduled"
                            && c.status == "False"
                            && c.reason == "Unschedulable"
                            && c.message == msg
                    })
                })
            })
        })
        .await;
    assert_eq!(pods.len(), 1, "OrderedReady holds big-1 back");
    assert_eq!(pods[0].status.as_ref().unwrap().phase, "Pending");
    assert!(node_of(&pods[0]).is_empty());
    let failed = cluster
        .wait("a FailedScheduling event", async || {
            let evs = cluster.event_messages("default", "FailedScheduling").await;
            (!evs.is_empty()).then_some(evs)
        })
        .await;
    assert_eq!(failed, vec![msg.to_string()]);

    // A node big enough arrives: the pod is placed there at once, and big-1 follows.
    let _big_node = agent(&cluster, "node4", "256Gi", ready.clone()).await;
    cluster
        .wait_pods("default", "both replicas on node4", |p| {
            p.len() == 2 && p.iter().all(|p| node_of(p) == "node4" && is_ready(p))
        })
        .await;

    // A bare pod without nodeName is scheduled too.
    cluster
        .apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\n  namespace: other\nspec:\n  containers:\n  - name: c\n    image: busybox\n")
        .await;
    cluster
        .wait_pods("other", "bare pod bound", |p| {
            p.len() == 1 && !node_of(&p[0]).is_empty()
        })
        .await;
    cluster.stop().await;
}

/// Throughput figure (run with `--ignored --nocapture`): 200 Parallel replicas on three
/// nodes whose fake agents report Ready at once, apply → all Running and Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn parallel_200_replicas_throughput() {
    let cluster = start().await;
    let ready = Arc::new(AtomicBool::new(true));
    let _agents = agents(&cluster, "64Gi", &ready).await;
    let text = PARALLEL
        .replace("RETENTION", "Retain")
        .replace("replicas: 5", "replicas: 200");
    let started = Instant::now();
    cluster.apply(&text).await;
    cluster
        .wait_pods("default", "200 replicas", |p| p.len() == 200)
        .await;
    let created = started.elapsed();
    cluster
        .wait_pods("default", "200 bound replicas", |p| {
            p.len() == 200 && p.iter().all(|p| !node_of(p).is_empty())
        })
        .await;
    let bound = started.elapsed();
    cluster
        .wait_pods("default", "200 ready replicas", |p| {
            p.len() == 200 && p.iter().all(is_ready)
        })
        .await;
    let took = started.elapsed();
    eprintln!(
        "Parallel: 200 replicas created in {created:?}, bound in {bound:?}, ready in {took:?} ({:.0} pods/s)",
        200.0 / took.as_secs_f64()
    );
    cluster.stop().await;
}
