//! Pod networks. In `loopback` mode (the default) pods share the node's network
//! namespace and get loopback addresses. In `bridge` mode (as root) each pod has a
//! network namespace of its own, pinned by a bind mount under the agent's data dir so it
//! outlives container and agent restarts, joined to a bridge of the node by a veth pair;
//! nodes route each other's pod ranges via their node IPs (host-gw), and an `unreachable`
//! route for the whole cluster range keeps pod traffic from leaving by a default route.
//!
//! The pod worker and the agent only talk to [`PodNetwork`]; the kernel work (netlink,
//! namespaces) is in [`netlink`] and [`netns`], the route decisions in [`routes`] (pure).

pub mod dns_relay;
#[cfg(test)]
pub mod fake;
pub mod netlink;
pub mod netns;
pub mod routes;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use futures::future::BoxFuture;
use twinset_proto::Cidr;

/// How pods are networked (`twinset agent --pod-network`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Pods share the node's network namespace, each with a loopback address.
    #[default]
    Loopback,
    /// Each pod has its own network namespace on a bridge of the node (root only).
    Bridge,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "loopback" => Ok(Mode::Loopback),
            "bridge" => Ok(Mode::Bridge),
            other => Err(format!(
                "unknown pod network {other:?}: expected loopback or bridge"
            )),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Loopback => "loopback",
            Mode::Bridge => "bridge",
        })
    }
}

/// Errors setting up or tearing down pod networking; each names the object.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A netlink request failed.
    #[error("{what}: {message}")]
    Netlink {
        /// What was being done ("add veth ts1a2b3c4d5e6f", "route 10.0.1.0/24 via 192.168.50.12").
        what: String,
        /// The kernel's answer.
        message: String,
    },
    /// A namespace, mount or file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// What a pod's network is wired with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodAttach {
    /// The pod's uid (names its namespace pin and its host-side veth).
    pub uid: String,
    /// The pod's IP (from the node's range).
    pub ip: Ipv4Addr,
    /// The node's pod range: the pod's eth0 gets `ip/prefix`; the default route goes
    /// via the range's first address (the bridge's).
    pub range: Cidr,
}

/// A pod's attached network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The pinned network namespace file containers join (setns).
    pub netns: PathBuf,
    /// The host-side veth's name.
    pub host_veth: String,
}

/// The node's side of the bridge network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeBridge {
    /// The bridge's name (`ts` + a hash of the node name: one per agent, so several
    /// agents on one machine do not share one).
    pub name: String,
    /// The node's pod range; the bridge holds its first address as the pods' gateway.
    pub range: Cidr,
}

/// One host-gw route this agent keeps: `dest` via `via` (another node's range via its
/// node IP), or `dest` unreachable (`via` None: the whole cluster range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// The destination range.
    pub dest: Cidr,
    /// The gateway; None for an `unreachable` route.
    pub via: Option<Ipv4Addr>,
}

/// One node's pod range and the IP its pods' traffic is routed via (from the control
/// plane: the Node's `spec.podCIDR` and InternalIP address).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeRange {
    /// The node's name.
    pub node: String,
    /// Its pod range.
    pub range: Cidr,
    /// Its node IP.
    pub node_ip: Ipv4Addr,
}

/// What [`PodNetwork::sync_routes`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteChanges {
    /// Routes added.
    pub added: Vec<Route>,
    /// Routes removed.
    pub removed: Vec<Route>,
}

/// A pod network: wires pods into it and keeps the node's routes. Implementations:
/// [`netlink::BridgeNetwork`] (bridge mode) and [`Loopback`]; tests use a fake.
pub trait PodNetwork: Send + Sync {
    /// The mode it implements.
    fn mode(&self) -> Mode;
    /// Makes (or finds, after a container or agent restart) the pod's network: its pinned
    /// namespace with `lo` up, `eth0` with the pod IP and a default route via the bridge,
    /// and the host end of the veth on the bridge. Idempotent.
    fn attach(&self, pod: &PodAttach) -> BoxFuture<'_, Result<Option<Attached>, NetworkError>>;
    /// Removes the pod's veth and namespace (unmount, remove the pin). Nothing there is
    /// not an error.
    fn detach(&self, uid: &str) -> BoxFuture<'_, Result<(), NetworkError>>;
    /// The uids of the pods whose namespaces are pinned now (for the cleanup at start).
    fn attached(&self) -> BoxFuture<'_, Result<Vec<String>, NetworkError>>;
    /// Makes the node's bridge (with the gateway address) and turns IP forwarding on
    /// (saying so in the log when it changed it). Idempotent.
    fn prepare_node(&self, bridge: &NodeBridge) -> BoxFuture<'_, Result<(), NetworkError>>;
    /// Makes the host-gw routes of this machine exactly those [`routes::desired`] gives
    /// for `ranges` and `cluster` (nodes whose IP is an address of this machine need
    /// none): adds the missing, removes the ones twinset installed that are no longer
    /// wanted, never touches routes it did not make. Returns what it changed.
    fn sync_routes(
        &self,
        ranges: &[NodeRange],
        cluster: Option<Cidr>,
    ) -> BoxFuture<'_, Result<RouteChanges, NetworkError>>;
}

/// The loopback mode: nothing to wire; pods share the node's namespace.
#[derive(Clone, Copy, Debug, Default)]
pub struct Loopback;

impl PodNetwork for Loopback {
    fn mode(&self) -> Mode {
        Mode::Loopback
    }
    fn attach(&self, _pod: &PodAttach) -> BoxFuture<'_, Result<Option<Attached>, NetworkError>> {
        Box::pin(async { Ok(None) })
    }
    fn detach(&self, _uid: &str) -> BoxFuture<'_, Result<(), NetworkError>> {
        Box::pin(async { Ok(()) })
    }
    fn attached(&self) -> BoxFuture<'_, Result<Vec<String>, NetworkError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn prepare_node(&self, _bridge: &NodeBridge) -> BoxFuture<'_, Result<(), NetworkError>> {
        Box::pin(async { Ok(()) })
    }
    fn sync_routes(
        &self,
        _ranges: &[NodeRange],
        _cluster: Option<Cidr>,
    ) -> BoxFuture<'_, Result<RouteChanges, NetworkError>> {
        Box::pin(async { Ok(RouteChanges::default()) })
    }
}

/// The cluster's pod ranges as the control plane last sent them (heartbeat responses).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterRanges {
    /// Every node's range and node IP.
    pub ranges: Vec<NodeRange>,
    /// The whole cluster range (routed `unreachable`).
    pub cluster: Option<Cidr>,
}

impl ClusterRanges {
    /// The ranges of a heartbeat response (None when it says they are unchanged). An
    /// entry that does not parse is left out and logged: one bad node must not stop the
    /// routes to the others.
    pub fn from_response(r: &twinset_proto::v1::HeartbeatResponse) -> Option<ClusterRanges> {
        if r.pod_ranges_unchanged {
            return None;
        }
        Some(ClusterRanges::from_ranges(&r.pod_ranges, &r.cluster_cidr))
    }

    /// The ranges as the control plane keeps them (`cluster` empty: no cluster range).
    pub fn from_ranges(ranges: &[twinset_proto::v1::PodRange], cluster: &str) -> ClusterRanges {
        let ranges = ranges
            .iter()
            .filter_map(|p| {
                let parsed = Cidr::parse(&p.pod_cidr)
                    .ok()
                    .zip(p.node_ip.parse::<Ipv4Addr>().ok());
                if parsed.is_none() {
                    tracing::warn!(node = %p.node_name, pod_cidr = %p.pod_cidr, node_ip = %p.node_ip, "ignoring a pod range that does not parse");
                }
                let (range, node_ip) = parsed?;
                Some(NodeRange {
                    node: p.node_name.clone(),
                    range,
                    node_ip,
                })
            })
            .collect();
        ClusterRanges {
            ranges,
            cluster: Cidr::parse(cluster).ok(),
        }
    }
}

/// How long a failed route sync waits before it is tried again.
const ROUTES_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps this machine's host-gw routes in line with the latest cluster ranges in `rx`
/// until `shutdown`; a failed sync is retried (and logged) until it succeeds or newer
/// ranges arrive.
pub async fn keep_routes(
    net: std::sync::Arc<dyn PodNetwork>,
    mut rx: tokio::sync::watch::Receiver<Option<std::sync::Arc<ClusterRanges>>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut failing = false;
    loop {
        let current = rx.borrow_and_update().clone();
        let mut retry = false;
        if let Some(c) = current {
            match net.sync_routes(&c.ranges, c.cluster).await {
                Ok(changes) => {
                    for r in &changes.added {
                        tracing::info!(route = %describe(r), "pod route added");
                    }
                    for r in &changes.removed {
                        tracing::info!(route = %describe(r), "pod route removed");
                    }
                    if failing {
                        tracing::info!("pod routes are in sync again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot set the pod routes; retrying");
                    }
                    failing = true;
                    retry = true;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(ROUTES_RETRY), if retry => {}
        }
    }
}

/// A route as `ip route` prints it.
pub fn describe(r: &Route) -> String {
    match r.via {
        Some(via) => format!("{} via {via}", r.dest),
        None => format!("unreachable {}", r.dest),
    }
}
