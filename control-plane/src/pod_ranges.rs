//! Every node's pod range and node IP, kept current from the store and handed to agents
//! in heartbeat responses (bridge-mode agents route each other's ranges via the node
//! IPs: host-gw) and to the control plane's own route keeper (`--pod-routes`).

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use twinset_proto::v1::{Node, PodRange};
use twinset_proto::Kind;

use crate::store::{Error as StoreError, EventType, Keep, Next, Store, WatchStream};

/// How long to wait before watching again after the store refused (a backend error).
const RETRY: Duration = Duration::from_millis(500);

/// The pod ranges of every node that has both a range and an InternalIP, by node name,
/// and a version that changes whenever they do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRanges {
    /// One per node, ordered by node name.
    pub ranges: Vec<PodRange>,
    /// Changes with the list (a hash of it); agents send it back to skip an unchanged list.
    pub version: String,
}

impl PodRanges {
    /// The ranges of `nodes` (pure: the same nodes give the same ranges and version).
    pub fn of<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> PodRanges {
        let by_name: BTreeMap<&str, PodRange> = nodes
            .into_iter()
            .filter_map(|n| Some((n.metadata.as_ref()?.name.as_str(), range_of(n)?)))
            .collect();
        let ranges: Vec<PodRange> = by_name.into_values().collect();
        let mut h = DefaultHasher::new();
        for r in &ranges {
            (&r.node_name, &r.pod_cidr, &r.node_ip).hash(&mut h);
        }
        PodRanges {
            version: format!("{:016x}", h.finish()),
            ranges,
        }
    }
}

/// A node's range and InternalIP, when it has both.
fn range_of(n: &Node) -> Option<PodRange> {
    let name = n.metadata.as_ref()?.name.clone();
    let cidr = n.spec.as_ref()?.pod_cidr.clone();
    let ip = n
        .status
        .as_ref()?
        .addresses
        .iter()
        .find(|a| a.r#type == "InternalIP")?
        .address
        .clone();
    if cidr.is_empty() || ip.is_empty() {
        return None;
    }
    Some(PodRange {
        node_name: name,
        pod_cidr: cidr,
        node_ip: ip,
    })
}

/// The cell the follower writes and heartbeats (and `--pod-routes`) read.
pub type PodRangesCell = Arc<watch::Sender<Arc<PodRanges>>>;

/// An empty cell.
pub fn cell() -> PodRangesCell {
    Arc::new(watch::Sender::new(Arc::new(PodRanges::default())))
}

fn list(store: &dyn Store) -> (BTreeMap<String, Node>, u64) {
    let rev = store.current_revision();
    let nodes = store
        .list(Kind::Node, None)
        .0
        .into_iter()
        .filter_map(|o| o.into_node())
        .filter_map(|n| Some((n.metadata.as_ref()?.name.clone(), n)))
        .collect();
    (nodes, rev)
}

/// Keeps `cell` current from the store's Nodes until `token` is cancelled or the store
/// closes; readers are woken only when the ranges really changed (a heartbeat's status
/// write does not wake them).
pub async fn follow(store: Arc<dyn Store>, cell: PodRangesCell, token: CancellationToken) {
    let keep: Keep = Arc::new(|ev| ev.object.kind_opt() == Some(Kind::Node));
    let mut stream = WatchStream::list_then_watch(store, list).filtered(keep);
    let mut nodes = BTreeMap::new();
    loop {
        let next = tokio::select! {
            _ = token.cancelled() => return,
            next = stream.next() => next,
        };
        match next {
            Ok(Next::Listed(fresh)) => nodes = fresh,
            Ok(Next::Event(ev)) => {
                let name = ev.object.name().to_string();
                match (ev.r#type, ev.object.into_node()) {
                    (EventType::Deleted, _) => {
                        nodes.remove(&name);
                    }
                    (_, Some(n)) => {
                        nodes.insert(name, n);
                    }
                    (_, None) => continue,
                }
            }
            Err(StoreError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "pod ranges: cannot watch nodes; retrying");
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
        }
        let ranges = PodRanges::of(nodes.values());
        cell.send_if_modified(|held| {
            if held.version == ranges.version {
                return false;
            }
            *held = Arc::new(ranges);
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use twinset_proto::v1::{NodeAddress, NodeSpec, NodeStatus, Object, ObjectMeta};

    fn node(name: &str, cidr: &str, ip: &str) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                pod_cidr: cidr.into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: vec![
                    NodeAddress {
                        r#type: "Hostname".into(),
                        address: name.into(),
                    },
                    NodeAddress {
                        r#type: "InternalIP".into(),
                        address: ip.into(),
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ranges_are_per_node_ordered_and_skip_nodes_without_range_or_ip() {
        let nodes = [
            node("b", "10.1.2.0/24", "192.168.0.2"),
            node("a", "10.1.1.0/24", "192.168.0.1"),
            node("no-range", "", "192.168.0.3"),
            node("no-ip", "10.1.4.0/24", ""),
        ];
        let r = PodRanges::of(&nodes);
        let names: Vec<&str> = r.ranges.iter().map(|r| r.node_name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(r.ranges[0].pod_cidr, "10.1.1.0/24");
        assert_eq!(r.ranges[0].node_ip, "192.168.0.1");
        assert_eq!(
            r,
            PodRanges::of(nodes.iter().rev()),
            "order does not matter"
        );
        let moved = [
            node("b", "10.1.2.0/24", "192.168.0.9"),
            node("a", "10.1.1.0/24", "192.168.0.1"),
        ];
        assert_ne!(
            r.version,
            PodRanges::of(&moved).version,
            "a new node IP is a new version"
        );
    }

    #[tokio::test]
    async fn the_cell_follows_nodes_joining_changing_and_leaving() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
        let cell = cell();
        let mut rx = cell.subscribe();
        let token = CancellationToken::new();
        let task = tokio::spawn(follow(store.clone(), cell.clone(), token.clone()));
        store
            .create(Object::from(node("n1", "10.1.1.0/24", "192.168.0.1")))
            .await
            .unwrap();
        let deadline = Duration::from_secs(10);
        let wait = |rx: &mut watch::Receiver<Arc<PodRanges>>, n: usize| {
            let mut rx = rx.clone();
            async move {
                tokio::time::timeout(deadline, rx.wait_for(|r| r.ranges.len() == n))
                    .await
                    .expect("ranges within the deadline")
                    .unwrap()
                    .clone()
            }
        };
        assert_eq!(wait(&mut rx, 1).await.ranges[0].node_name, "n1");
        store
            .create(Object::from(node("n2", "10.1.2.0/24", "192.168.0.2")))
            .await
            .unwrap();
        assert_eq!(wait(&mut rx, 2).await.ranges[1].node_name, "n2");
        store.delete(Kind::Node, "", "n1", None).await.unwrap();
        assert_eq!(wait(&mut rx, 1).await.ranges[0].node_name, "n2");
        token.cancel();
        task.await.unwrap();
    }
}
