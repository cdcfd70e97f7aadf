//! Bridge mode through netlink ([`BridgeNetwork`]): the node's bridge, a veth pair per
//! pod between the bridge and the pod's pinned namespace, and the host-gw routes.
//!
//! Every operation opens its own netlink connection and drives it together with its
//! requests in the calling task (no background task to own or stop). A connection for a
//! pod's namespace is opened by a thread that joined that namespace ([`netns::run_in`]),
//! with the caller's tokio runtime entered so the socket is registered with it; the
//! socket stays in the pod's namespace after the thread is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use twinset_proto::Cidr;

use super::{
    netns, routes, Attached, Mode, NetworkError, NodeBridge, NodeRange, PodAttach, PodNetwork,
    Route, RouteChanges,
};

/// The route protocol number twinset marks its host-gw routes with (116, unassigned in
/// `/etc/iproute2/rt_protos`): `ip route show proto 116` lists them, and the agent never
/// removes a route without it.
pub const RTPROT_TWINSET: u8 = 0x74;

/// The metric of the `unreachable` route for the cluster range: high, so that a route
/// to the same range that is more use (the bridge's own range when it is the whole
/// cluster range, a gateway route of a node owning it all) is never in its way and wins.
pub const UNREACHABLE_METRIC: u32 = 4096;

/// The name of a pod's end of its veth pair.
pub const POD_INTERFACE: &str = "eth0";

/// Where IP forwarding is switched (for the namespace of the thread that opens it).
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Bridge-mode pod networking on this machine, for one node (agent).
#[derive(Clone, Debug)]
pub struct BridgeNetwork {
    /// The node's bridge ([`routes::bridge_name`]).
    bridge: String,
    /// Where the pods' namespaces are pinned (`<data_dir>/netns`).
    netns_dir: PathBuf,
}

impl BridgeNetwork {
    /// The bridge network of node `node`, pinning namespaces under `<data_dir>/netns/`.
    pub fn new(data_dir: &Path, node: &str) -> BridgeNetwork {
        BridgeNetwork {
            bridge: routes::bridge_name(node),
            netns_dir: data_dir.join("netns"),
        }
    }

    /// The node's bridge name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Where the namespace of pod `uid` is pinned.
    pub fn netns_path(&self, uid: &str) -> PathBuf {
        self.netns_dir.join(uid)
    }

    /// The pin of pod `uid`, refusing a uid that is not a plain file name (it names a
    /// file under the data dir).
    fn pin_of(&self, uid: &str) -> Result<PathBuf, NetworkError> {
        if uid.is_empty() || uid == "." || uid == ".." || uid.contains('/') || uid.contains('\0') {
            return Err(failed(
                format!("pod uid {uid:?}"),
                "not usable as a namespace file name",
            ));
        }
        Ok(self.netns_path(uid))
    }

    /// Makes or checks the bridge with the gateway address (removing other IPv4
    /// addresses from it: a range that changed), up, and IP forwarding on.
    async fn prepare(&self, bridge: &NodeBridge) -> Result<(), NetworkError> {
        if bridge.name != self.bridge {
            return Err(failed(
                format!("prepare bridge {}", bridge.name),
                format!("this node's bridge is {}", self.bridge),
            ));
        }
        let gateway = gateway_of(bridge.range)?;
        let prefix = bridge.range.prefix();
        let name = self.bridge.clone();
        with_host(|h| async move {
            let link = match link_by_name(&h, &name).await? {
                Some(link) => link,
                None => {
                    let msg = LinkBridge::new(&name).address(bridge_mac(&name)).build();
                    match h.link().add(msg).execute().await {
                        Ok(()) => {}
                        // Made meanwhile by another agent start: use it.
                        Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                        Err(e) => return Err(netlink(format!("add bridge {name}"), e)),
                    }
                    link_by_name(&h, &name)
                        .await?
                        .ok_or_else(|| failed(format!("add bridge {name}"), "gone after adding"))?
                }
            };
            if kind_of(&link) != Some(InfoKind::Bridge) {
                return Err(failed(
                    format!("prepare bridge {name}"),
                    "a link of that name exists and is not a bridge",
                ));
            }
            let index = link.header.index;
            // The gateway address, and no other IPv4 address (a range that changed).
            let mut has_gateway = false;
            for a in addresses(&h, index).await? {
                if ipv4_of(&a) == Some(gateway) && a.header.prefix_len == prefix {
                    has_gateway = true;
                } else if ipv4_of(&a).is_some() {
                    let what = format!("remove old address from bridge {name}");
                    h.address()
                        .del(a)
                        .execute()
                        .await
                        .map_err(|e| netlink(what, e))?;
                }
            }
            if !has_gateway {
                h.address()
                    .add(index, IpAddr::V4(gateway), prefix)
                    .execute()
                    .await
                    .map_err(|e| netlink(format!("add {gateway}/{prefix} to bridge {name}"), e))?;
            }
            if !link.header.flags.contains(LinkFlags::Up) {
                set_up(&h, index, &name).await?;
            }
            Ok(())
        })
        .await?;
        enable_forwarding()
    }

    /// Pins the pod's namespace and wires it unless it is wired already; on failure
    /// removes what it made.
    async fn attach_pod(&self, pod: &PodAttach) -> Result<Attached, NetworkError> {
        let pin = self.pin_of(&pod.uid)?;
        let host = routes::veth_name(&pod.uid);
        let attached = Attached {
            netns: pin.clone(),
            host_veth: host.clone(),
        };
        let gateway = gateway_of(pod.range)?;
        if !pod.range.is_pod_address(pod.ip) {
            return Err(failed(
                format!("attach pod {}", pod.uid),
                format!("{} is not a pod address of {}", pod.ip, pod.range),
            ));
        }
        // A namespace pinned before (an agent restart) may hold the pod's running
        // containers: a failed attach must keep it, so a retry wires that same one.
        let existed = netns::is_pinned(&pin);
        netns::pin_new(&pin)?;
        let wiring = Wiring {
            bridge: &self.bridge,
            host: &host,
            pin: &pin,
            ip: pod.ip,
            prefix: pod.range.prefix(),
            gateway,
        };
        // A namespace that was there may be wired already (an agent or container
        // restart); one made just now has nothing in it yet. A failed look changes
        // nothing.
        if existed && wiring.is_complete().await? {
            return Ok(attached);
        }
        match wiring.make().await {
            Ok(()) => Ok(attached),
            Err(e) => {
                // Leave nothing half-made; the error that matters is the first one.
                if existed {
                    let host = host.clone();
                    if let Err(cleanup) =
                        with_host(|h| async move { delete_link(&h, &host).await }).await
                    {
                        tracing::warn!(pod = %pod.uid, error = %cleanup, "could not undo a failed attach");
                    }
                } else {
                    self.undo_attach(&pod.uid).await;
                }
                Err(e)
            }
        }
    }

    /// Removes what a failed attach made (it reports the attach's error, so this one
    /// only goes to the log).
    async fn undo_attach(&self, uid: &str) {
        if let Err(cleanup) = self.detach_pod(uid).await {
            tracing::warn!(pod = %uid, error = %cleanup, "could not undo a failed attach");
        }
    }

    /// Deletes the pod's host veth (its peer goes with it) and releases the namespace.
    async fn detach_pod(&self, uid: &str) -> Result<(), NetworkError> {
        let pin = self.pin_of(uid)?;
        let host = routes::veth_name(uid);
        with_host(|h| async move { delete_link(&h, &host).await }).await?;
        netns::unpin(&pin)
    }

    /// The file names under the namespace directory, sorted.
    fn pinned(&self) -> Result<Vec<String>, NetworkError> {
        let entries = match std::fs::read_dir(&self.netns_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(NetworkError::Io {
                    what: "list the pod namespaces in",
                    path: self.netns_dir.clone(),
                    source: e,
                })
            }
        };
        let mut uids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| NetworkError::Io {
                what: "list the pod namespaces in",
                path: self.netns_dir.clone(),
                source: e,
            })?;
            if let Some(name) = entry.file_name().to_str() {
                uids.push(name.to_string());
            }
        }
        uids.sort();
        Ok(uids)
    }

    /// Lists this machine's addresses and twinset's routes, applies the plan. Every
    /// change is tried; when some fail the error names each (the next sync retries).
    async fn sync(
        &self,
        ranges: &[NodeRange],
        cluster: Option<Cidr>,
    ) -> Result<RouteChanges, NetworkError> {
        with_host(|h| async move {
            let local = local_addresses(&h).await?;
            let desired = routes::desired(&local, ranges, cluster);
            let installed = twinset_routes(&h).await?;
            let have: Vec<Route> = installed.keys().copied().collect();
            let changes = routes::plan(&desired, &have);
            let mut failures = Vec::new();
            for r in &changes.removed {
                for msg in installed.get(r).into_iter().flatten() {
                    match h.route().del(msg.clone()).execute().await {
                        Ok(()) => {}
                        Err(e) if errno(&e) == Some(libc::ESRCH) => {}
                        Err(e) => failures.push(format!("remove {}: {}", describe(r), message(&e))),
                    }
                }
            }
            for r in &changes.added {
                if let Err(e) = h.route().add(route_message(r)).execute().await {
                    let why = if errno(&e) == Some(libc::EEXIST) {
                        "another route to that range, not one of twinset's host-gw routes, is in the way".to_string()
                    } else {
                        message(&e)
                    };
                    failures.push(format!("add {}: {why}", describe(r)));
                }
            }
            if failures.is_empty() {
                Ok(changes)
            } else {
                Err(failed("sync routes".to_string(), failures.join("; ")))
            }
        })
        .await
    }
}

impl PodNetwork for BridgeNetwork {
    fn mode(&self) -> Mode {
        Mode::Bridge
    }

    fn attach(&self, pod: &PodAttach) -> BoxFuture<'_, Result<Option<Attached>, NetworkError>> {
        let pod = pod.clone();
        Box::pin(async move { self.attach_pod(&pod).await.map(Some) })
    }

    fn detach(&self, uid: &str) -> BoxFuture<'_, Result<(), NetworkError>> {
        let uid = uid.to_string();
        Box::pin(async move { self.detach_pod(&uid).await })
    }

    /// Every file under `<data_dir>/netns/`: the pinned namespaces, and any pin left
    /// half-made by a crash (detach removes both).
    fn attached(&self) -> BoxFuture<'_, Result<Vec<String>, NetworkError>> {
        Box::pin(async move { self.pinned() })
    }

    fn prepare_node(&self, bridge: &NodeBridge) -> BoxFuture<'_, Result<(), NetworkError>> {
        let bridge = bridge.clone();
        Box::pin(async move { self.prepare(&bridge).await })
    }

    fn sync_routes(
        &self,
        ranges: &[NodeRange],
        cluster: Option<Cidr>,
    ) -> BoxFuture<'_, Result<RouteChanges, NetworkError>> {
        let ranges = ranges.to_vec();
        Box::pin(async move { self.sync(&ranges, cluster).await })
    }
}

/// One pod's wiring: the host end of its veth on the node's bridge, the pod end as
/// `eth0` in its namespace with the pod's address and a default route via the bridge.
struct Wiring<'a> {
    bridge: &'a str,
    host: &'a str,
    pin: &'a Path,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
}

impl Wiring<'_> {
    /// Whether everything is in place already (an agent or container restart): the
    /// host end up on the bridge, and in the pod `lo` and `eth0` up, the address, the
    /// default route.
    async fn is_complete(&self) -> Result<bool, NetworkError> {
        let (bridge, host) = (self.bridge, self.host);
        let host_ok = with_host(|h| async move {
            let Some(bridge) = link_by_name(&h, bridge).await? else {
                return Err(failed(
                    format!("attach {host}"),
                    format!("bridge {bridge} is missing (the node is not prepared)"),
                ));
            };
            Ok(link_by_name(&h, host)
                .await?
                .is_some_and(|l| is_up(&l) && controller_of(&l) == Some(bridge.header.index)))
        })
        .await?;
        if !host_ok {
            return Ok(false);
        }
        let (ip, prefix, gateway) = (self.ip, self.prefix, self.gateway);
        with_pod(self.pin, |h| async move {
            let (Some(lo), Some(eth0)) = (
                link_by_name(&h, "lo").await?,
                link_by_name(&h, POD_INTERFACE).await?,
            ) else {
                return Ok(false);
            };
            if !is_up(&lo) || !is_up(&eth0) {
                return Ok(false);
            }
            let index = eth0.header.index;
            let has_ip = addresses(&h, index)
                .await?
                .iter()
                .any(|a| ipv4_of(a) == Some(ip) && a.header.prefix_len == prefix);
            let has_default = all_routes(&h).await?.iter().any(|r| {
                r.header.destination_prefix_length == 0
                    && table_of(r) == u32::from(RouteHeader::RT_TABLE_MAIN)
                    && gateway_attr(r) == Some(gateway)
                    && oif_of(r) == Some(index)
            });
            Ok(has_ip && has_default)
        })
        .await
    }

    /// Makes the wiring from scratch: removes any old veth of the pod, makes the pair
    /// with the pod end created right in the pod's namespace as `eth0`, then sets up
    /// the pod side.
    async fn make(&self) -> Result<(), NetworkError> {
        let ns = std::fs::File::open(self.pin).map_err(|e| NetworkError::Io {
            what: "open the network namespace",
            path: self.pin.to_path_buf(),
            source: e,
        })?;
        let (bridge, host, ns_fd) = (self.bridge, self.host, ns.as_raw_fd());
        with_host(|h| async move {
            delete_link(&h, host).await?;
            let bridge = link_by_name(&h, bridge).await?.ok_or_else(|| {
                failed(
                    format!("attach {host}"),
                    format!("bridge {bridge} is missing (the node is not prepared)"),
                )
            })?;
            // The pod end is brought up from inside the pod: a veth end cannot be set up
            // in the message that makes the pair (its peer is not linked yet: ENOTCONN).
            let peer = LinkMessageBuilder::<LinkUnspec>::new()
                .name(POD_INTERFACE)
                .setns_by_fd(ns_fd)
                .build();
            let veth = LinkVeth::new(host, POD_INTERFACE)
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .controller(bridge.header.index)
                .up()
                .build();
            h.link()
                .add(veth)
                .execute()
                .await
                .map_err(|e| netlink(format!("add veth {host}"), e))?;
            // The kernel drops an unknown master silently on some versions; check.
            match link_by_name(&h, host).await? {
                Some(l) if controller_of(&l) == Some(bridge.header.index) && is_up(&l) => Ok(()),
                Some(l) => {
                    let msg = LinkUnspec::new_with_index(l.header.index)
                        .controller(bridge.header.index)
                        .up()
                        .build();
                    h.link()
                        .set(msg)
                        .execute()
                        .await
                        .map_err(|e| netlink(format!("put veth {host} on bridge"), e))
                }
                None => Err(failed(format!("add veth {host}"), "gone after adding")),
            }
        })
        .await?;
        // The namespace file stayed open until the veth was made in it.
        drop(ns);
        let (ip, prefix, gateway) = (self.ip, self.prefix, self.gateway);
        with_pod(self.pin, |h| async move {
            let lo = link_by_name(&h, "lo")
                .await?
                .ok_or_else(|| failed(format!("set up lo in {host}'s pod"), "no lo"))?;
            set_up(&h, lo.header.index, "lo").await?;
            let eth0 = link_by_name(&h, POD_INTERFACE).await?.ok_or_else(|| {
                failed(
                    format!("configure {POD_INTERFACE} of {host}"),
                    "not in the pod's namespace",
                )
            })?;
            let index = eth0.header.index;
            if !is_up(&eth0) {
                set_up(&h, index, POD_INTERFACE).await?;
            }
            h.address()
                .add(index, IpAddr::V4(ip), prefix)
                .replace()
                .execute()
                .await
                .map_err(|e| {
                    netlink(format!("add {ip}/{prefix} to {POD_INTERFACE} of {host}"), e)
                })?;
            let default = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gateway)
                .output_interface(index)
                .protocol(RouteProtocol::Other(RTPROT_TWINSET))
                .build();
            h.route()
                .add(default)
                .replace()
                .execute()
                .await
                .map_err(|e| netlink(format!("default route via {gateway} for {host}"), e))
        })
        .await
    }
}

/// Opens a netlink connection in the calling thread's namespace (the host's) and runs
/// `work` with it, driving the connection alongside.
async fn with_host<T, F, Fut>(work: F) -> Result<T, NetworkError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, NetworkError>>,
{
    let (conn, handle, _) = rtnetlink::new_connection()
        .map_err(|e| failed("open a netlink socket".to_string(), e.to_string()))?;
    drive(conn, work(handle)).await
}

/// Opens a netlink connection in the namespace pinned at `pin` and runs `work` with it.
async fn with_pod<T, F, Fut>(pin: &Path, work: F) -> Result<T, NetworkError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, NetworkError>>,
{
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
        failed(
            format!("open a netlink socket in {}", pin.display()),
            e.to_string(),
        )
    })?;
    let (conn, handle, _) = netns::run_in(pin, move || {
        let _entered = runtime.enter();
        rtnetlink::new_connection()
    })?
    .map_err(|e| {
        failed(
            format!("open a netlink socket in {}", pin.display()),
            e.to_string(),
        )
    })?;
    drive(conn, work(handle)).await
}

/// Runs `work` while polling the connection that serves its requests; the connection
/// is dropped (its socket closed) when `work` is done.
async fn drive<T, C>(
    conn: C,
    work: impl Future<Output = Result<T, NetworkError>>,
) -> Result<T, NetworkError>
where
    C: Future<Output = ()>,
{
    tokio::select! {
        biased;
        out = work => out,
        () = conn => Err(failed("netlink".to_string(), "the connection closed".to_string())),
    }
}

/// The link named `name`, if there is one.
async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>, NetworkError> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(netlink(format!("get link {name}"), e)),
    }
}

/// Deletes the link named `name`; none is fine.
async fn delete_link(h: &Handle, name: &str) -> Result<(), NetworkError> {
    let Some(link) = link_by_name(h, name).await? else {
        return Ok(());
    };
    match h.link().del(link.header.index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(netlink(format!("delete link {name}"), e)),
    }
}

/// Sets link `index` (named `name`, for the error) up.
async fn set_up(h: &Handle, index: u32, name: &str) -> Result<(), NetworkError> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| netlink(format!("set {name} up"), e))
}

/// The addresses on link `index`.
async fn addresses(h: &Handle, index: u32) -> Result<Vec<AddressMessage>, NetworkError> {
    h.address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| netlink(format!("list the addresses of link {index}"), e))
}

/// This machine's IPv4 addresses (of every link).
async fn local_addresses(h: &Handle) -> Result<BTreeSet<Ipv4Addr>, NetworkError> {
    let all: Vec<AddressMessage> = h
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| netlink("list this machine's addresses".to_string(), e))?;
    Ok(all.iter().filter_map(ipv4_of).collect())
}

/// Every IPv4 route of every table.
async fn all_routes(h: &Handle) -> Result<Vec<RouteMessage>, NetworkError> {
    h.route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| netlink("list the routes".to_string(), e))
}

/// The routes twinset made (its protocol, main table), by what they are. A route of
/// twinset's protocol that is neither a gateway route nor `unreachable` (none is made
/// so) is listed under a gateway of 0.0.0.0, which no desired route has: it is removed.
async fn twinset_routes(h: &Handle) -> Result<BTreeMap<Route, Vec<RouteMessage>>, NetworkError> {
    let mut out: BTreeMap<Route, Vec<RouteMessage>> = BTreeMap::new();
    for r in all_routes(h).await? {
        if u8::from(r.header.protocol) != RTPROT_TWINSET
            || r.header.address_family != AddressFamily::Inet
            || table_of(&r) != u32::from(RouteHeader::RT_TABLE_MAIN)
        {
            continue;
        }
        let dest_ip = r
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            })
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let Ok(dest) = Cidr::parse(&format!("{dest_ip}/{}", r.header.destination_prefix_length))
        else {
            continue;
        };
        let via = match (r.header.kind, gateway_attr(&r)) {
            (RouteType::Unreachable, _) => None,
            (RouteType::Unicast, Some(gw)) => Some(gw),
            _ => Some(Ipv4Addr::UNSPECIFIED),
        };
        out.entry(Route { dest, via }).or_default().push(r);
    }
    Ok(out)
}

/// The netlink message that installs `r` with twinset's protocol in the main table.
fn route_message(r: &Route) -> RouteMessage {
    let b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dest.network(), r.dest.prefix())
        .protocol(RouteProtocol::Other(RTPROT_TWINSET));
    match r.via {
        Some(gw) => b.gateway(gw).build(),
        None => b
            .kind(RouteType::Unreachable)
            .priority(UNREACHABLE_METRIC)
            .build(),
    }
}

/// A route as an error names it.
fn describe(r: &Route) -> String {
    match r.via {
        Some(gw) => format!("route {} via {gw}", r.dest),
        None => format!("unreachable route {}", r.dest),
    }
}

/// The routing table of a route (the attribute holds ids above 255).
fn table_of(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

fn gateway_attr(r: &RouteMessage) -> Option<Ipv4Addr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })
}

fn oif_of(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

fn ipv4_of(a: &AddressMessage) -> Option<Ipv4Addr> {
    a.attributes
        .iter()
        .find_map(|attr| match attr {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        })
        .or_else(|| {
            a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })
        })
}

fn kind_of(l: &LinkMessage) -> Option<InfoKind> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.clone()),
            _ => None,
        }),
        _ => None,
    })
}

fn controller_of(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

fn is_up(l: &LinkMessage) -> bool {
    l.header.flags.contains(LinkFlags::Up)
}

/// The first host of `range`: the bridge's address, the pods' gateway.
pub fn gateway_of(range: Cidr) -> Result<Ipv4Addr, NetworkError> {
    if range.prefix() > 30 {
        return Err(failed(
            format!("pod range {range}"),
            "too small for a gateway and pods (at most /30)",
        ));
    }
    Ok(Ipv4Addr::from(u32::from(range.network()) + 1))
}

/// A fixed, locally administered MAC for the bridge (from its name): a bridge without
/// one takes the lowest MAC of its ports, so it would change as pods come and go and
/// the pods' ARP entries for their gateway would go stale.
fn bridge_mac(name: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(name.as_bytes());
    vec![0x02, d[0], d[1], d[2], d[3], d[4]]
}

/// Turns IP forwarding on (in the namespace of the calling thread) if it is off, and
/// says so in the log.
fn enable_forwarding() -> Result<(), NetworkError> {
    let io = |what, source| NetworkError::Io {
        what,
        path: PathBuf::from(IP_FORWARD),
        source,
    };
    let now = std::fs::read_to_string(IP_FORWARD).map_err(|e| io("read", e))?;
    if now.trim() == "0" {
        std::fs::write(IP_FORWARD, b"1").map_err(|e| io("write", e))?;
        tracing::info!("enabled IP forwarding (net.ipv4.ip_forward=1) for pod traffic");
    }
    Ok(())
}

/// The errno of a netlink error answer.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// The kernel's answer as text ("File exists (os error 17)").
fn message(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) if m.code.is_some() => m.to_io().to_string(),
        other => other.to_string(),
    }
}

fn netlink(what: String, e: rtnetlink::Error) -> NetworkError {
    NetworkError::Netlink {
        what,
        message: message(&e),
    }
}

fn failed(what: String, message: impl Into<String>) -> NetworkError {
    NetworkError::Netlink {
        what,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    use super::*;
    use crate::network::netns::isolation::isolated_async;

    /// How long one TCP connect in a test may take (it is on a local bridge).
    const CONNECT: Duration = Duration::from_secs(5);

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn node_bridge(net: &BridgeNetwork) -> NodeBridge {
        NodeBridge {
            name: net.bridge().to_string(),
            range: cidr("10.244.1.0/24"),
        }
    }

    fn pod(uid: &str, addr: &str) -> PodAttach {
        PodAttach {
            uid: uid.to_string(),
            ip: ip(addr),
            range: cidr("10.244.1.0/24"),
        }
    }

    async fn host_link(name: &str) -> Option<LinkMessage> {
        let name = name.to_string();
        with_host(|h| async move { link_by_name(&h, &name).await })
            .await
            .unwrap()
    }

    /// The IPv4 addresses (with prefix) of link `name` in the host namespace.
    async fn host_addresses(name: &str) -> Vec<String> {
        let name = name.to_string();
        with_host(|h| async move {
            let link = link_by_name(&h, &name).await?.expect("the link");
            Ok(addresses(&h, link.header.index)
                .await?
                .iter()
                .filter_map(|a| ipv4_of(a).map(|ip| format!("{ip}/{}", a.header.prefix_len)))
                .collect())
        })
        .await
        .unwrap()
    }

    /// What the pod's namespace looks like: (lo up, eth0 up, eth0's addresses, default
    /// gateways, eth0's index).
    async fn pod_view(pin: &Path) -> (bool, bool, Vec<String>, Vec<Ipv4Addr>, u32) {
        with_pod(pin, |h| async move {
            let lo = link_by_name(&h, "lo").await?.expect("lo");
            let eth0 = link_by_name(&h, POD_INTERFACE).await?.expect("eth0");
            let addrs = addresses(&h, eth0.header.index)
                .await?
                .iter()
                .filter_map(|a| ipv4_of(a).map(|ip| format!("{ip}/{}", a.header.prefix_len)))
                .collect();
            let defaults = all_routes(&h)
                .await?
                .iter()
                .filter(|r| {
                    r.header.destination_prefix_length == 0
                        && table_of(r) == u32::from(RouteHeader::RT_TABLE_MAIN)
                })
                .filter_map(gateway_attr)
                .collect();
            Ok((is_up(&lo), is_up(&eth0), addrs, defaults, eth0.header.index))
        })
        .await
        .unwrap()
    }

    /// The twinset routes of the host namespace, as `ip route` would name them.
    async fn installed() -> Vec<Route> {
        with_host(|h| async move { Ok(twinset_routes(&h).await?.into_keys().collect()) })
            .await
            .unwrap()
    }

    fn mounts_under(dir: &Path) -> Vec<String> {
        std::fs::read_to_string("/proc/thread-self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(dir))
            .map(str::to_string)
            .collect()
    }

    /// Accepts one connection (within [`CONNECT`], so a failed test leaves no thread
    /// behind), echoes 4 bytes and returns the peer's address.
    fn serve_once(listener: TcpListener) -> std::thread::JoinHandle<SocketAddr> {
        std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            let deadline = std::time::Instant::now() + CONNECT;
            let (mut s, peer) = loop {
                match listener.accept() {
                    Ok(accepted) => break accepted,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(std::time::Instant::now() < deadline, "no connection came");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(CONNECT)).unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
            peer
        })
    }

    /// Connects to `to`, sends 4 bytes and expects them back.
    fn ping(to: SocketAddr) -> std::io::Result<()> {
        let mut s = TcpStream::connect_timeout(&to, CONNECT)?;
        s.set_read_timeout(Some(CONNECT))?;
        s.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf)?;
        assert_eq!(&buf, b"ping");
        Ok(())
    }

    #[test]
    fn root_prepare_node_twice_makes_one_bridge_with_the_gateway_and_forwarding() {
        isolated_async(|dir| async move {
            // The test's namespace starts with forwarding off (the host's is not touched).
            std::fs::write(IP_FORWARD, b"0").unwrap();
            let net = BridgeNetwork::new(&dir, "machine-1");
            assert_eq!(net.bridge(), routes::bridge_name("machine-1"));
            let bridge = node_bridge(&net);
            net.prepare_node(&bridge).await.unwrap();
            let first = host_link(net.bridge()).await.expect("the bridge");
            assert!(is_up(&first));
            assert_eq!(kind_of(&first), Some(InfoKind::Bridge));
            assert_eq!(host_addresses(net.bridge()).await, ["10.244.1.1/24"]);
            assert_eq!(std::fs::read_to_string(IP_FORWARD).unwrap().trim(), "1");

            net.prepare_node(&bridge).await.unwrap();
            let second = host_link(net.bridge()).await.expect("the bridge");
            assert_eq!(second.header.index, first.header.index);
            assert_eq!(host_addresses(net.bridge()).await, ["10.244.1.1/24"]);

            // A changed range moves the gateway address.
            let moved = NodeBridge {
                range: cidr("10.244.7.0/24"),
                ..bridge.clone()
            };
            net.prepare_node(&moved).await.unwrap();
            assert_eq!(host_addresses(net.bridge()).await, ["10.244.7.1/24"]);

            // A uid that is no plain file name is refused.
            let e = net.detach("../x").await.unwrap_err().to_string();
            assert!(e.contains("\"../x\""), "{e}");
            // Another node's bridge name is refused, naming both.
            let e = net
                .prepare_node(&NodeBridge {
                    name: "tsffffffffff".to_string(),
                    ..bridge
                })
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("tsffffffffff") && e.contains(net.bridge()),
                "{e}"
            );
        });
    }

    #[test]
    fn root_attach_wires_the_pod_and_detach_removes_everything() {
        isolated_async(|dir| async move {
            let net = BridgeNetwork::new(&dir, "machine-1");
            // Without the node's bridge, attach fails saying so and leaves nothing.
            let e = net.attach(&pod("pod-a", "10.244.1.2")).await.unwrap_err();
            assert!(e.to_string().contains(net.bridge()), "{e}");
            assert!(net.attached().await.unwrap().is_empty());
            assert!(mounts_under(&dir).is_empty());

            net.prepare_node(&node_bridge(&net)).await.unwrap();
            let a = net
                .attach(&pod("pod-a", "10.244.1.2"))
                .await
                .unwrap()
                .expect("bridge mode attaches");
            assert_eq!(a.netns, dir.join("netns").join("pod-a"));
            assert_eq!(a.host_veth, routes::veth_name("pod-a"));
            assert!(netns::is_pinned(&a.netns));

            // The pod side: lo and eth0 up, the pod IP, the default route via the bridge.
            let (lo_up, eth0_up, addrs, defaults, eth0) = pod_view(&a.netns).await;
            assert!(lo_up && eth0_up);
            assert_eq!(addrs, ["10.244.1.2/24"]);
            assert_eq!(defaults, [ip("10.244.1.1")]);
            // The host side: up, on the bridge.
            let bridge = host_link(net.bridge()).await.unwrap();
            let host = host_link(&a.host_veth).await.expect("the host veth");
            assert!(is_up(&host));
            assert_eq!(controller_of(&host), Some(bridge.header.index));
            // The bridge keeps its own MAC with a port on it (the pods' ARP entries for
            // the gateway stay right as pods come and go).
            let mac = |l: &LinkMessage| {
                l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Address(m) => Some(m.clone()),
                    _ => None,
                })
            };
            assert_eq!(mac(&bridge), Some(bridge_mac(net.bridge())));

            // Attach again changes nothing (an agent restart).
            let again = net.attach(&pod("pod-a", "10.244.1.2")).await.unwrap();
            assert_eq!(again.as_ref(), Some(&a));
            let host_again = host_link(&a.host_veth).await.unwrap();
            assert_eq!(host_again.header.index, host.header.index);
            assert_eq!(pod_view(&a.netns).await.4, eth0);

            // The pod reaches a listener on the gateway address...
            let listener = TcpListener::bind("10.244.1.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let served = serve_once(listener);
            netns::run_in(&a.netns, move || {
                ping(SocketAddr::from((ip("10.244.1.1"), port)))
            })
            .unwrap()
            .unwrap();
            assert_eq!(served.join().unwrap().ip(), ip("10.244.1.2"));
            // ...and the node reaches a listener in the pod.
            let listener = netns::run_in(&a.netns, || TcpListener::bind("0.0.0.0:8080"))
                .unwrap()
                .unwrap();
            let served = serve_once(listener);
            ping(SocketAddr::from((ip("10.244.1.2"), 8080))).unwrap();
            assert_eq!(served.join().unwrap().ip(), ip("10.244.1.1"));

            // Detach leaves no veth, no mount, no pin; twice is fine.
            net.detach("pod-a").await.unwrap();
            assert!(host_link(&a.host_veth).await.is_none());
            assert!(!a.netns.exists());
            assert!(mounts_under(&dir).is_empty());
            assert!(net.attached().await.unwrap().is_empty());
            net.detach("pod-a").await.unwrap();
        });
    }

    #[test]
    fn root_two_pods_bind_the_same_port_each_in_its_own_namespace() {
        isolated_async(|dir| async move {
            let net = BridgeNetwork::new(&dir, "machine-1");
            net.prepare_node(&node_bridge(&net)).await.unwrap();
            let a = net
                .attach(&pod("pod-a", "10.244.1.2"))
                .await
                .unwrap()
                .unwrap();
            let b = net
                .attach(&pod("pod-b", "10.244.1.3"))
                .await
                .unwrap()
                .unwrap();
            assert_ne!(a.host_veth, b.host_veth);
            assert_eq!(net.attached().await.unwrap(), ["pod-a", "pod-b"]);

            let la = netns::run_in(&a.netns, || TcpListener::bind("0.0.0.0:8080"))
                .unwrap()
                .unwrap();
            let lb = netns::run_in(&b.netns, || TcpListener::bind("0.0.0.0:8080"))
                .unwrap()
                .unwrap();
            // Each reaches its own on 127.0.0.1:8080.
            let served = serve_once(la.try_clone().unwrap());
            netns::run_in(&a.netns, || ping("127.0.0.1:8080".parse().unwrap()))
                .unwrap()
                .unwrap();
            assert_eq!(served.join().unwrap().ip(), ip("127.0.0.1"));
            let served = serve_once(lb.try_clone().unwrap());
            netns::run_in(&b.netns, || ping("127.0.0.1:8080".parse().unwrap()))
                .unwrap()
                .unwrap();
            assert_eq!(served.join().unwrap().ip(), ip("127.0.0.1"));
            // Pod to pod across the bridge.
            let served = serve_once(lb);
            netns::run_in(&a.netns, || ping("10.244.1.3:8080".parse().unwrap()))
                .unwrap()
                .unwrap();
            assert_eq!(served.join().unwrap().ip(), ip("10.244.1.2"));
            // Neither can bind the other's IP.
            let e = netns::run_in(&a.netns, || TcpListener::bind("10.244.1.3:0"))
                .unwrap()
                .unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL));
            drop(la);

            net.detach("pod-a").await.unwrap();
            net.detach("pod-b").await.unwrap();
            assert!(mounts_under(&dir).is_empty());
        });
    }

    #[test]
    fn root_attach_repairs_a_pod_side_that_lost_its_address() {
        isolated_async(|dir| async move {
            let net = BridgeNetwork::new(&dir, "machine-1");
            net.prepare_node(&node_bridge(&net)).await.unwrap();
            let a = net
                .attach(&pod("pod-a", "10.244.1.2"))
                .await
                .unwrap()
                .unwrap();
            with_pod(&a.netns, |h| async move {
                let eth0 = link_by_name(&h, POD_INTERFACE).await?.unwrap();
                for addr in addresses(&h, eth0.header.index).await? {
                    h.address().del(addr).execute().await.unwrap();
                }
                Ok(())
            })
            .await
            .unwrap();
            assert!(pod_view(&a.netns).await.2.is_empty());
            net.attach(&pod("pod-a", "10.244.1.2")).await.unwrap();
            let (lo_up, eth0_up, addrs, defaults, _) = pod_view(&a.netns).await;
            assert!(lo_up && eth0_up);
            assert_eq!(addrs, ["10.244.1.2/24"]);
            assert_eq!(defaults, [ip("10.244.1.1")]);
            // The bridge gone (an attach fails): the namespace that was there stays, and
            // the next attach wires that same one.
            let ns_inode = |pin: PathBuf| {
                netns::run_in(&pin, || {
                    use std::os::unix::fs::MetadataExt;
                    std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
                })
                .unwrap()
            };
            let before = ns_inode(a.netns.clone());
            let bridge = net.bridge().to_string();
            with_host(|h| async move { delete_link(&h, &bridge).await })
                .await
                .unwrap();
            let e = net
                .attach(&pod("pod-a", "10.244.1.2"))
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("not prepared"), "{e}");
            assert!(netns::is_pinned(&a.netns));
            net.prepare_node(&node_bridge(&net)).await.unwrap();
            net.attach(&pod("pod-a", "10.244.1.2")).await.unwrap();
            assert_eq!(ns_inode(a.netns.clone()), before);
            assert_eq!(pod_view(&a.netns).await.2, ["10.244.1.2/24"]);
            // A pod address outside the range is refused, naming it.
            let bad = PodAttach {
                ip: ip("10.9.9.9"),
                ..pod("pod-c", "10.244.1.4")
            };
            let e = net.attach(&bad).await.unwrap_err().to_string();
            assert!(e.contains("10.9.9.9") && e.contains("pod-c"), "{e}");
            net.detach("pod-a").await.unwrap();
        });
    }

    #[test]
    fn root_sync_routes_installs_and_removes_only_twinset_routes() {
        isolated_async(|dir| async move {
            // A LAN of this "machine": 192.168.50.11/24 on a veth pair (both ends here).
            with_host(|h| async move {
                h.link()
                    .add(LinkVeth::new("lan0", "lan1").up().build())
                    .execute()
                    .await
                    .unwrap();
                let peer = link_by_name(&h, "lan1").await?.unwrap();
                set_up(&h, peer.header.index, "lan1").await?;
                let lan = link_by_name(&h, "lan0").await?.unwrap();
                h.address()
                    .add(lan.header.index, IpAddr::V4(ip("192.168.50.11")), 24)
                    .execute()
                    .await
                    .unwrap();
                // A hand-made route (another protocol) that must stay.
                let hand = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(ip("10.99.0.0"), 24)
                    .gateway(ip("192.168.50.1"))
                    .build();
                h.route().add(hand).execute().await.unwrap();
                Ok(())
            })
            .await
            .unwrap();
            let net = BridgeNetwork::new(&dir, "m1");
            let node = |name: &str, range: &str, node_ip: &str| NodeRange {
                node: name.to_string(),
                range: cidr(range),
                node_ip: ip(node_ip),
            };
            let via = |dest: &str, gw: &str| Route {
                dest: cidr(dest),
                via: Some(ip(gw)),
            };
            let cluster = Route {
                dest: cidr("10.244.0.0/16"),
                via: None,
            };
            let ranges = vec![
                node("m1", "10.244.1.0/24", "192.168.50.11"),
                node("m2", "10.244.2.0/24", "192.168.50.12"),
                node("m3", "10.244.3.0/24", "192.168.50.13"),
            ];
            let changes = net
                .sync_routes(&ranges, Some(cidr("10.244.0.0/16")))
                .await
                .unwrap();
            let all = vec![
                cluster,
                via("10.244.2.0/24", "192.168.50.12"),
                via("10.244.3.0/24", "192.168.50.13"),
            ];
            assert_eq!(changes.added, all);
            assert!(changes.removed.is_empty());
            assert_eq!(installed().await, all);
            // The kernel has them as `unreachable` and unicast via the gateways.
            let kinds: Vec<(RouteType, Option<Ipv4Addr>)> = with_host(|h| async move {
                Ok(twinset_routes(&h)
                    .await?
                    .into_values()
                    .flatten()
                    .map(|r| (r.header.kind, gateway_attr(&r)))
                    .collect())
            })
            .await
            .unwrap();
            assert_eq!(
                kinds,
                [
                    (RouteType::Unreachable, None),
                    (RouteType::Unicast, Some(ip("192.168.50.12"))),
                    (RouteType::Unicast, Some(ip("192.168.50.13"))),
                ]
            );

            // Again: nothing to change.
            let changes = net
                .sync_routes(&ranges, Some(cidr("10.244.0.0/16")))
                .await
                .unwrap();
            assert_eq!(changes, RouteChanges::default());

            // m3 deleted, m2 moved to another IP.
            let ranges = vec![
                node("m1", "10.244.1.0/24", "192.168.50.11"),
                node("m2", "10.244.2.0/24", "192.168.50.22"),
            ];
            let changes = net
                .sync_routes(&ranges, Some(cidr("10.244.0.0/16")))
                .await
                .unwrap();
            assert_eq!(changes.added, [via("10.244.2.0/24", "192.168.50.22")]);
            assert_eq!(
                changes.removed,
                [
                    via("10.244.2.0/24", "192.168.50.12"),
                    via("10.244.3.0/24", "192.168.50.13"),
                ]
            );
            assert_eq!(
                installed().await,
                [cluster, via("10.244.2.0/24", "192.168.50.22")]
            );

            // Nothing wanted: all of twinset's go, the hand-made route stays.
            let changes = net.sync_routes(&[], None).await.unwrap();
            assert_eq!(changes.removed.len(), 2);
            assert!(installed().await.is_empty());
            let hand_made = with_host(|h| async move {
                Ok(all_routes(&h).await?.iter().any(|r| {
                    r.header.destination_prefix_length == 24
                        && gateway_attr(r) == Some(ip("192.168.50.1"))
                }))
            })
            .await
            .unwrap();
            assert!(hand_made);

            // A cluster range that is also this node's range (a one-node cluster) and
            // another node's: the unreachable route stays out of both routes' way.
            net.prepare_node(&NodeBridge {
                name: net.bridge().to_string(),
                range: cidr("10.244.1.0/24"),
            })
            .await
            .unwrap();
            let changes = net
                .sync_routes(
                    &[node("m2", "10.250.0.0/16", "192.168.50.12")],
                    Some(cidr("10.244.1.0/24")),
                )
                .await
                .unwrap();
            assert_eq!(changes.added.len(), 2);
            let changes = net
                .sync_routes(
                    &[node("m2", "10.250.0.0/16", "192.168.50.12")],
                    Some(cidr("10.250.0.0/16")),
                )
                .await
                .unwrap();
            assert_eq!(
                changes.added,
                [Route {
                    dest: cidr("10.250.0.0/16"),
                    via: None
                }]
            );
            assert_eq!(
                changes.removed,
                [Route {
                    dest: cidr("10.244.1.0/24"),
                    via: None
                }]
            );
            // Another node claiming this node's range: the bridge's route is in the way.
            let e = net
                .sync_routes(&[node("m2", "10.244.1.0/24", "192.168.50.12")], None)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("10.244.1.0/24 via 192.168.50.12"), "{e}");
            net.sync_routes(&[], None).await.unwrap();
            assert!(installed().await.is_empty());

            // A route in the way that twinset did not make: the error says so.
            let e = net
                .sync_routes(&[node("mx", "10.99.0.0/24", "192.168.50.99")], None)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("10.99.0.0/24") && e.contains("is in the way"),
                "{e}"
            );
        });
    }
}
