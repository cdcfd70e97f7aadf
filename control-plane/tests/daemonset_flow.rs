//! The control plane in-process on 127.0.0.1:0, with fake agents speaking the generated
//! Nodes client: three nodes register, the guide's DaemonSet is applied, each node is
//! assigned its pod, a deleted node loses its pod, and the DaemonSet's deletion goes
//! through graceful termination (and `--cascade=orphan` keeps the pods).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Streaming};
use twinset_control_plane::{run, Config};
use twinset_proto::v1::cluster_client::ClusterClient;
use twinset_proto::v1::nodes_client::NodesClient;
use twinset_proto::v1::*;

const GUIDE_DAEMONSET: &str = include_str!("../../deploy/examples/daemonset.yaml");

impl Cluster {
    async fn pods(&self, ns: &str) -> Vec<Pod> {
        let req = ListRequest {
            kind: "pods".into(),
            namespace: ns.into(),
            ..Default::default()
        };
        let items = self.api().list(req).await.unwrap().into_inner().items;
        items.into_iter().filter_map(|o| o.into_pod()).collect()
    }

    async fn wait_pods(&self, ns: &str, what: &str, cond: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
        let start = Instant::now();
        loop {
            let pods = self.pods(ns).await;
            if cond(&pods) {
                return pods;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; pods: {pods:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn ds_status(&self) -> DaemonSetStatus {
        let key = ObjectKey {
            kind: "ds".into(),
            namespace: "kube-system".into(),
            name: "node-monitor".into(),
        };
        let obj = self
            .api()
            .get(GetRequest { key: Some(key) })
            .await
            .unwrap()
            .into_inner()
            .object
            .unwrap();
        obj.into_daemon_set().unwrap().status.unwrap_or_default()
    }
}

fn agent_node(name: &str) -> Node {
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".to_string(), name.to_string());
    Node {
        metadata: Some(ObjectMeta {
            name: name.into(),
            labels,
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: vec![NodeAddress {
                r#type: "InternalIP".into(),
                address: "127.0.0.1".into(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The next pod assignment (the CLAIMS list that follows each snapshot is skipped:
/// these nodes have no claims).
async fn next(stream: &mut Streaming<Assignment>) -> Assignment {
    loop {
        let a = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .expect("an assignment in time")
            .unwrap()
            .expect("stream open");
        if a.r#type == "CLAIMS" {
            assert!(a.claims.is_empty(), "{a:?}");
            continue;
        }
        return a;
    }
}

/// The next assignment that satisfies `pred` (earlier ones, e.g. status echoes, are skipped).
async fn next_where(
    stream: &mut Streaming<Assignment>,
    pred: impl Fn(&Assignment) -> bool,
) -> Assignment {
    loop {
        let a = next(stream).await;
        if pred(&a) {
            return a;
        }
    }
}

fn terminating(a: &Assignment) -> bool {
    a.pods.iter().any(|p| {
        p.metadata
            .as_ref()
            .is_some_and(|m| !m.deletion_timestamp.is_empty())
    })
}

fn pod_name(p: &Pod) -> &str {
    &p.metadata.as_ref().unwrap().name
}

fn running_ready(node: &str) -> PodStatus {
    PodStatus {
        phase: "Running".into(),
        host_ip: "127.0.0.1".into(),
        pod_ip: format!("127.128.0.{}", node.len()),
        conditions: vec![PodCondition {
            r#type: "Ready".into(),
            status: "True".into(),
            last_transition_time: twinset_proto::time::now(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guide_daemonset_on_three_nodes() {
    let cluster = start().await;

    // Register three nodes: each gets its own pod range.
    let mut cidrs = Vec::new();
    let mut streams = BTreeMap::new();
    let mut clients = BTreeMap::new();
    for name in ["node1", "node2", "node3"] {
        let mut nodes = cluster.node(name).await;
        clients.insert(name, nodes.clone());
        let node = nodes
            .register(RegisterRequest {
                node: Some(agent_node(name)),
            })
            .await
            .unwrap()
            .into_inner()
            .node
            .unwrap();
        cidrs.push(node.spec.unwrap().pod_cidr);
        nodes
            .heartbeat(HeartbeatRequest {
                node_name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let req = WatchAssignmentsRequest {
            node_name: name.into(),
            resource_version: String::new(),
        };
        let mut stream = nodes.watch_assignments(req).await.unwrap().into_inner();
        let snap = next(&mut stream).await;
        assert_eq!((snap.r#type.as_str(), snap.pods.len()), ("SNAPSHOT", 0));
        streams.insert(name, stream);
    }
    assert_eq!(
        cidrs,
        vec!["127.128.0.0/24", "127.128.1.0/24", "127.128.2.0/24"]
    );

    // Apply the guide's DaemonSet: kube-system exists already, so no namespace note.
    let obj = twinset_proto::manifest::decode(GUIDE_DAEMONSET)
        .unwrap()
        .remove(0);
    let started = Instant::now();
    let applied = cluster
        .api()
        .apply(ApplyRequest {
            object: Some(obj.clone()),
            dry_run: false,
            create_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    eprintln!("apply RPC: {:?}", started.elapsed());
    assert_eq!(applied.outcome, "created");
    assert!(applied.notes.is_empty(), "{:?}", applied.notes);

    // Each node is assigned exactly one pod, bound to it.
    let mut assigned = BTreeMap::new();
    for (name, stream) in streams.iter_mut() {
        let a = next(stream).await;
        assert_eq!(a.r#type, "ADDED");
        let pod = a.pods[0].clone();
        assert_eq!(pod.spec.as_ref().unwrap().node_name, *name);
        assert!(
            pod_name(&pod).starts_with("node-monitor-")
                && pod_name(&pod).len() == "node-monitor-".len() + 5
        );
        assigned.insert(name.to_string(), pod);
    }
    eprintln!("apply -> 3 assignments: {:?}", started.elapsed());
    let again = cluster
        .api()
        .apply(ApplyRequest {
            object: Some(obj),
            dry_run: false,
            create_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.outcome, "unchanged");

    // Agents report their pods Running and Ready; the DaemonSet status follows.
    for (name, pod) in &assigned {
        let m = pod.metadata.as_ref().unwrap();
        let req = ReportStatusRequest {
            node_name: name.clone(),
            namespace: m.namespace.clone(),
            pod_name: m.name.clone(),
            pod_uid: m.uid.clone(),
            status: Some(running_ready(name)),
            terminated: false,
            events: vec![Event {
                r#type: "Normal".into(),
                reason: "Started".into(),
                message: "Started container monitor".into(),
                ..Default::default()
            }],
        };
        cluster.node(name).await.report_status(req).await.unwrap();
    }
    let start = Instant::now();
    loop {
        let s = cluster.ds_status().await;
        let counts = (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_ready,
            s.number_available,
            s.updated_number_scheduled,
        );
        if counts == (3, 3, 3, 3, 3) {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "status never reached 3s: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let by_node = ListRequest {
        kind: "po".into(),
        namespace: "kube-system".into(),
        field_selector: "spec.nodeName=node2".into(),
        ..Default::default()
    };
    assert_eq!(
        cluster
            .api()
            .list(by_node)
            .await
            .unwrap()
            .into_inner()
            .items
            .len(),
        1
    );
    let events = ListRequest {
        kind: "events".into(),
        namespace: "kube-system".into(),
        ..Default::default()
    };
    let events = cluster.api().list(events).await.unwrap().into_inner().items;
    let reasons: Vec<String> = events
        .iter()
        .filter_map(|e| e.as_event())
        .map(|e| e.reason.clone())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "SuccessfulCreate").count(),
        3,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| *r == "Started").count(),
        3,
        "{reasons:?}"
    );

    // Deleting node2 removes its pod at once: its agent hears DELETED.
    let key = ObjectKey {
        kind: "node".into(),
        namespace: String::new(),
        name: "node2".into(),
    };
    cluster
        .api()
        .delete(DeleteRequest {
            key: Some(key),
            ..Default::default()
        })
        .await
        .unwrap();
    let gone = next_where(streams.get_mut("node2").unwrap(), |a| {
        a.r#type != "MODIFIED"
    })
    .await;
    assert_eq!(
        (gone.r#type.as_str(), pod_name(&gone.pods[0])),
        ("DELETED", pod_name(&assigned["node2"]))
    );
    // Deleting the node revoked its certificate, on the connection it already has.
    let err = clients
        .get_mut("node2")
        .unwrap()
        .heartbeat(HeartbeatRequest {
            node_name: "node2".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::Unauthenticated,
            "the certificate of \"system:node:node2\" is no longer valid: node \"node2\" was \
             deleted (join again with a token from `twinset token create`)"
        )
    );
    let pods = cluster
        .wait_pods("kube-system", "2 pods", |p| p.len() == 2)
        .await;
    assert!(pods
        .iter()
        .all(|p| p.spec.as_ref().unwrap().node_name != "node2"));
    let start = Instant::now();
    while cluster.ds_status().await.desired_number_scheduled != 2 {
        assert!(start.elapsed() < DEADLINE, "desired never dropped to 2");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Scaling a DaemonSet is refused with a clear error.
    let key = ObjectKey {
        kind: "ds".into(),
        namespace: "kube-system".into(),
        name: "node-monitor".into(),
    };
    let err = cluster
        .api()
        .scale(ScaleRequest {
            key: Some(key.clone()),
            replicas: 3,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("cannot be scaled"),
        "{}",
        err.message()
    );

    // Deleting the DaemonSet terminates its pods gracefully: agents see MODIFIED with a
    // deletionTimestamp, report terminated, and the pods are gone.
    cluster
        .api()
        .delete(DeleteRequest {
            key: Some(key.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    for name in ["node1", "node3"] {
        let stream = streams.get_mut(name).unwrap();
        let a = next_where(stream, terminating).await;
        assert_eq!(a.r#type, "MODIFIED");
        let m = a.pods[0].metadata.clone().unwrap();
        assert!(!m.deletion_timestamp.is_empty());
        assert_eq!(m.deletion_grace_period_seconds, Some(30));
        let req = ReportStatusRequest {
            node_name: name.into(),
            namespace: m.namespace.clone(),
            pod_name: m.name.clone(),
            pod_uid: m.uid.clone(),
            terminated: true,
            ..Default::default()
        };
        cluster.node(name).await.report_status(req).await.unwrap();
        assert_eq!(next(stream).await.r#type, "DELETED");
    }
    cluster
        .wait_pods("kube-system", "no pods", |p| p.is_empty())
        .await;
    let err = cluster
        .api()
        .get(GetRequest { key: Some(key) })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, "daemonsets.apps \"node-monitor\" not found")
    );

    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_cascade_keeps_pods_and_reapply_adopts_them() {
    let cluster = start().await;
    let mut nodes = cluster.node("node1").await;
    nodes
        .register(RegisterRequest {
            node: Some(agent_node("node1")),
        })
        .await
        .unwrap();
    let obj = twinset_proto::manifest::decode(GUIDE_DAEMONSET)
        .unwrap()
        .remove(0);
    cluster
        .api()
        .apply(ApplyRequest {
            object: Some(obj.clone()),
            dry_run: false,
            create_only: false,
        })
        .await
        .unwrap();
    let pods = cluster
        .wait_pods("kube-system", "one pod", |p| p.len() == 1)
        .await;
    let first = pod_name(&pods[0]).to_string();

    let key = ObjectKey {
        kind: "daemonset".into(),
        namespace: "kube-system".into(),
        name: "node-monitor".into(),
    };
    let req = DeleteRequest {
        key: Some(key),
        propagation_policy: "Orphan".into(),
        grace_period_seconds: None,
    };
    cluster.api().delete(req).await.unwrap();
    let pods = cluster.pods("kube-system").await;
    assert_eq!(pods.len(), 1);
    let m = pods[0].metadata.as_ref().unwrap();
    assert!(m.owner_references.is_empty() && m.deletion_timestamp.is_empty());

    // Re-applying adopts the orphan instead of starting a second pod on the node.
    cluster
        .api()
        .apply(ApplyRequest {
            object: Some(obj),
            dry_run: false,
            create_only: false,
        })
        .await
        .unwrap();
    let pods = cluster
        .wait_pods("kube-system", "adopted pod", |p| {
            p.len() == 1
                && p[0]
                    .metadata
                    .as_ref()
                    .is_some_and(|m| !m.owner_references.is_empty())
        })
        .await;
    assert_eq!(pod_name(&pods[0]), first);

    // Health and a missing namespace on apply.
    let mut health = tonic_health::pb::health_client::HealthClient::new(cluster.channel.clone());
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "twinset.v1.Cluster".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        resp.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // Server reflection lists the public API, so grpcurl works without the .proto files.
    {
        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let mut reflection = ServerReflectionClient::new(cluster.channel.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = reflection
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses
            .message()
            .await
            .unwrap()
            .expect("a reflection response");
        let names: Vec<String> = match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected reflection response: {other:?}"),
        };
        for wanted in ["twinset.v1.Cluster", "twinset.v1.Nodes"] {
            assert!(
                names.iter().any(|n| n == wanted),
                "{wanted} missing from {names:?}"
            );
        }
    }
    let mut other = twinset_proto::manifest::decode(GUIDE_DAEMONSET)
        .unwrap()
        .remove(0);
    other.meta_mut().namespace = "monitoring".into();
    let applied = cluster
        .api()
        .apply(ApplyRequest {
            object: Some(other),
            dry_run: false,
            create_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.notes, vec!["namespace/monitoring created"]);

    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_resume_from_revision_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    // In one process the previous instance's last tasks may still hold the sled lock for a
    // moment after `run` returned (a new process never sees that): retry until it opens.
    let boot = |data: std::path::PathBuf| async move {
        let start = Instant::now();
        let (token, task) = loop {
            let _ = std::fs::remove_file(data.join("address"));
            let config = Config::new(&data, "127.0.0.1:0".parse().unwrap());
            let token = CancellationToken::new();
            let mut task = tokio::spawn(run(config, token.clone()));
            let address = data.join("address");
            tokio::select! {
                done = &mut task => {
                    assert!(start.elapsed() < DEADLINE, "the control plane never started: {done:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ = wait_for_file(&address) => break (token, task),
            }
        };
        let addr = wait_for_file(&data.join("address")).await;
        let channel = common::admin_channel(&data, &addr).await;
        let nodes_channel = common::node_channel(&data, &addr, "node1").await;
        (token, task, channel, nodes_channel)
    };
    let (token, task, channel, nodes_channel) = boot(data.clone()).await;
    let mut nodes = NodesClient::new(nodes_channel.clone());
    nodes
        .register(RegisterRequest {
            node: Some(agent_node("node1")),
        })
        .await
        .unwrap();
    let req = WatchAssignmentsRequest {
        node_name: "node1".into(),
        resource_version: String::new(),
    };
    let mut stream = nodes.watch_assignments(req).await.unwrap().into_inner();
    let snap = next(&mut stream).await;
    let obj = twinset_proto::manifest::decode(GUIDE_DAEMONSET)
        .unwrap()
        .remove(0);
    ClusterClient::new(channel.clone())
        .apply(ApplyRequest {
            object: Some(obj),
            dry_run: false,
            create_only: false,
        })
        .await
        .unwrap();
    let added = next(&mut stream).await;
    assert_eq!(added.r#type, "ADDED");
    drop(stream);

    // Resuming from the snapshot's revision replays the ADDED without a new snapshot.
    let req = WatchAssignmentsRequest {
        node_name: "node1".into(),
        resource_version: snap.resource_version.clone(),
    };
    let mut resumed = nodes.watch_assignments(req).await.unwrap().into_inner();
    let replay = next(&mut resumed).await;
    assert_eq!(
        (replay.r#type.as_str(), replay.resource_version.as_str()),
        ("ADDED", added.resource_version.as_str())
    );
    drop(resumed);

    token.cancel();
    tokio::time::timeout(DEADLINE, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // After a restart the data is there; the history is not, so resuming gets a snapshot.
    let (token, task, _, nodes_channel) = boot(data.clone()).await;
    let mut nodes = NodesClient::new(nodes_channel.clone());
    let req = WatchAssignmentsRequest {
        node_name: "node1".into(),
        resource_version: snap.resource_version.clone(),
    };
    let mut stream = nodes.watch_assignments(req).await.unwrap().into_inner();
    let again = next(&mut stream).await;
    assert_eq!((again.r#type.as_str(), again.pods.len()), ("SNAPSHOT", 1));
    assert_eq!(pod_name(&again.pods[0]), pod_name(&added.pods[0]));
    drop(stream);
    token.cancel();
    tokio::time::timeout(DEADLINE, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_speaks_only_for_its_own_node() {
    let cluster = start().await;
    for name in ["node1", "node2"] {
        cluster
            .node(name)
            .await
            .register(RegisterRequest {
                node: Some(agent_node(name)),
            })
            .await
            .unwrap();
    }
    let mut node1 = cluster.node("node1").await;
    let denied = |e: tonic::Status, what: &str| {
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert_eq!(
            e.message(),
            format!("User \"system:node:node1\" cannot {what} for node \"node2\"")
        );
    };
    let e = node1
        .register(RegisterRequest {
            node: Some(agent_node("node2")),
        })
        .await
        .unwrap_err();
    denied(e, "register");
    let e = node1
        .heartbeat(HeartbeatRequest {
            node_name: "node2".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    denied(e, "post a heartbeat");
    let e = node1
        .watch_assignments(WatchAssignmentsRequest {
            node_name: "node2".into(),
            resource_version: String::new(),
        })
        .await
        .unwrap_err();
    denied(e, "watch assignments");
    let e = node1
        .report_status(ReportStatusRequest {
            node_name: "node2".into(),
            namespace: "default".into(),
            pod_name: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    denied(e, "report pod status");
    // Its own calls go through.
    node1
        .heartbeat(HeartbeatRequest {
            node_name: "node1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    cluster.stop().await;
}
