//! The Twinset node agent: registers its node with the control plane, heartbeats,
//! keeps one `WatchAssignments` stream open, and runs the pods bound to its node as
//! supervised process groups (cgroup limits, private mount and UTS namespaces as
//! root, a pod IP each, claim volumes kept on the node, logs per container, exec,
//! tcpSocket and httpGet probes), reporting their status back. It serves `NodeAgent.Logs` on its daemon
//! endpoint, over TLS and to the control plane only ([`endpoint`]). If the control plane goes away, pods keep running and the agent
//! reconnects by itself.

#![warn(missing_docs)]

pub mod blocking;
pub mod connection;
pub mod container;
pub mod credentials;
pub mod endpoint;
pub mod env;
pub mod events;
pub mod fence;
pub mod identity;
pub mod images;
pub mod ipam;
pub mod join;
pub mod logs;
pub mod metrics;
pub mod network;
pub mod node;
pub mod pod;
pub mod prober;
pub mod probes;
pub mod procfs;
pub mod renewal;
pub mod reporter;
pub mod runtime;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod sync;
pub mod volumes;
pub mod watchdog;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tracing::Instrument;
use twinset_proto::v1::{self, node_agent_server::NodeAgentServer, nodes_client::NodesClient};

/// How long the agent waits for its pods to stop when it shuts down.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory under the data dir could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The daemon endpoint could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The server address is not a valid endpoint.
    #[error("invalid server address {0:?}")]
    Server(String),
    /// The control plane refused to register the node.
    #[error("the control plane refused to register the node: {0}")]
    Register(String),
    /// The NodeAgent gRPC server failed.
    #[error("daemon endpoint: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// Pod IP state could not be used.
    #[error(transparent)]
    Ipam(#[from] ipam::IpamError),
    /// Agent state could not be used.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// Joining the cluster failed, or the stored credentials are unusable.
    #[error(transparent)]
    Join(#[from] join::JoinError),
    /// The daemon endpoint's TLS could not be set up from the node's credentials.
    #[error("daemon endpoint TLS: {0}")]
    Tls(#[from] twinset_proto::tls::TlsError),
    /// `--listen` names an address other than `--node-ip`.
    #[error(
        "--listen {listen} is not the node IP {node_ip}: the control plane reaches the daemon endpoint at the node IP; listen on it or on 0.0.0.0"
    )]
    ListenNotNodeIp {
        /// The listen address.
        listen: IpAddr,
        /// The node IP.
        node_ip: std::net::Ipv4Addr,
    },
    /// The pod network cannot be used as configured.
    #[error("--pod-network {mode}: {message}")]
    PodNetwork {
        /// The mode asked for.
        mode: network::Mode,
        /// What is wrong.
        message: String,
    },
    /// No credentials under the data dir and no join token to get them with.
    #[error(
        "no node credentials in {0} and no --token to join with: make one with `twinset token create` and pass it as --token"
    )]
    NoCredentials(PathBuf),
}

/// The agent's configuration (the `twinset agent` flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// The control plane's address (`http://HOST:PORT` or `HOST:PORT`).
    pub server: String,
    /// This node's name.
    pub node_name: String,
    /// Where the agent keeps pod logs, pod IPs and its state.
    pub data_dir: PathBuf,
    /// Extra node labels.
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    pub taints: Vec<v1::Taint>,
    /// The pod range, overriding the control plane's choice.
    pub pod_cidr: Option<String>,
    /// The daemon endpoint (NodeAgent.Logs); port 0 picks one.
    pub listen: SocketAddr,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// How a dead container's restarts are spaced (`--restart-backoff-base`, `-max`,
    /// `-reset`; the kubelet's 10 s doubling to 5 min, reset after 10 min of running).
    pub restart_backoff: container::Backoff,
    /// The image table file; None: the table built into the binary
    /// ([`images::BUILTIN_TABLE`]), its scripts written under `<data_dir>/builtin-images`.
    pub image_table: Option<PathBuf>,
    /// How container logs rotate (`--container-log-max-size`, `--container-log-max-files`).
    pub log_rotation: logs::Rotation,
    /// Stop the pods when the agent stops, or (false, the default, as the kubelet does)
    /// leave them running for a restarted agent to adopt. `twinset up` sets it.
    pub stop_pods_on_shutdown: bool,
    /// The cluster DNS server's address (flag `--cluster-dns IP`): isolated pods get an
    /// `/etc/resolv.conf` naming it. None: pods use the node's resolver.
    pub cluster_dns: Option<IpAddr>,
    /// How long the assignments may stay out of sync (a reconnect, a stream that keeps
    /// breaking) before heartbeats report it and the node shows NotReady
    /// (`--sync-grace`, default 10 s).
    pub sync_grace: Duration,
    /// The largest message the agent accepts from the control plane
    /// (`--assignment-receive-limit`, default [`RECEIVE_LIMIT`]); lower only for tests and
    /// constrained environments: a pod larger than it can never be received.
    pub receive_limit: usize,
    /// The join token for the first start (none once the node has its certificate).
    pub token: Option<twinset_proto::token::Token>,
    /// How pods are networked (`--pod-network`, default loopback).
    pub pod_network: network::Mode,
    /// The node's IP (`--node-ip`): its InternalIP address, the address other nodes
    /// route its pod range via. None: the daemon endpoint's address, or when that is
    /// unspecified the address this machine reaches the control plane from.
    pub node_ip: Option<std::net::Ipv4Addr>,
    /// `--metrics-open`: any TLS client may read `/metrics`, with or without a client
    /// certificate (false: administrators and the control plane only, and a client
    /// without a certificate is refused at the handshake).
    pub metrics_open: bool,
    /// `--fence-after`: with no acknowledged heartbeat for this long (counted from the
    /// last acknowledged one's send time) the replicas of `Replace` StatefulSets are
    /// stopped (default 3 s).
    pub fence_after: Duration,
    /// `--fence-grace`: how long a fenced pod gets between SIGTERM and SIGKILL (default
    /// 2 s; fence-after plus this must stay below the control plane's replace-after).
    pub fence_grace: Duration,
    /// The program run as `PROGRAM fence-watchdog --data-dir DIR` to keep the fence when
    /// the agent itself is dead (the `twinset` binary). None: no watchdog, and the node
    /// does not say it fences, so the control plane never replaces its pods.
    pub watchdog: Option<PathBuf>,
}

/// The default `--fence-after`.
pub const DEFAULT_FENCE_AFTER: Duration = Duration::from_secs(3);
/// The default `--fence-grace`.
pub const DEFAULT_FENCE_GRACE: Duration = Duration::from_secs(2);

impl Config {
    /// Defaults: no extra labels or taints, listen 127.0.0.1:0, heartbeat 1 s, the
    /// kubelet's restart back-off (10 s doubling to 5 min, reset after 10 min), the built-in image table, logs rotated at 10 MiB keeping 5
    /// files, pods left running on shutdown (a restarted agent adopts them), no cluster
    /// DNS, a sync grace of 10 s, the full receive limit.
    pub fn new(
        server: impl Into<String>,
        node_name: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Config {
            server: server.into(),
            node_name: node_name.into(),
            data_dir: data_dir.into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            pod_cidr: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            heartbeat: Duration::from_secs(1),
            restart_backoff: container::Backoff::KUBELET,
            image_table: None,
            log_rotation: logs::Rotation::default(),
            stop_pods_on_shutdown: false,
            cluster_dns: None,
            sync_grace: DEFAULT_SYNC_GRACE,
            receive_limit: RECEIVE_LIMIT,
            token: None,
            pod_network: network::Mode::Loopback,
            node_ip: None,
            metrics_open: false,
            fence_after: DEFAULT_FENCE_AFTER,
            fence_grace: DEFAULT_FENCE_GRACE,
            watchdog: None,
        }
    }
}

fn mkdir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The largest message the agent accepts from the control plane (assignments, replies).
pub const RECEIVE_LIMIT: usize = 64 * 1024 * 1024;

/// How long the assignments may stay out of sync before the node shows NotReady: longer
/// than the stream's longest reconnect backoff (3 s), so a control-plane restart or a
/// dropped connection that heals does not flap the node.
pub const DEFAULT_SYNC_GRACE: Duration = Duration::from_secs(10);

/// Runs the agent until `shutdown` is cancelled, then stops its pods (unless
/// configured to leave them) and every task it started.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let span = tracing::info_span!("agent", node = %config.node_name);
    run_agent(config, shutdown).instrument(span).await
}

async fn run_agent(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    mkdir(&config.data_dir)?;
    mkdir(&config.data_dir.join("pods"))?;

    let images = match &config.image_table {
        Some(path) => images::ImageTable::load_or_empty(path),
        None => {
            let dir = images::builtin_dir(&config.data_dir);
            let table = images::ImageTable::builtin(&dir).map_err(|e| Error::Io {
                path: dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            tracing::info!(dir = %dir.display(), "using the image table built into this binary");
            table
        }
    };
    let cgroups: Arc<dyn runtime::cgroup::Cgroups> =
        Arc::from(runtime::cgroup::detect(Path::new("/sys/fs/cgroup")));
    if cgroups.available() {
        tracing::info!(cgroups = %cgroups.describe(), "resource limits enforced");
    } else {
        tracing::warn!(cgroups = %cgroups.describe(), "resource limits will NOT be enforced");
    }
    let syscall: Arc<dyn runtime::sandbox::Syscall> = Arc::new(runtime::sandbox::LinuxSyscall);
    let isolation = runtime::sandbox::detect(syscall);
    if config.pod_network == network::Mode::Bridge {
        if let Some(why) = isolation.reason() {
            return Err(Error::PodNetwork {
                mode: config.pod_network,
                message: format!("each pod's network namespace needs root and namespaces ({why})"),
            });
        }
    }
    match isolation.reason() {
        None => tracing::info!("pods are isolated: private mount and UTS namespaces"),
        Some(why) => tracing::warn!(
            reason = why,
            "pods will NOT be isolated: volumes are given as TWINSET_MOUNT_* paths, hostname and /etc/hosts are the node's"
        ),
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let host_ip = node_ip(&config, local.ip())?.to_string();
    tracing::info!(addr = %local, "daemon endpoint listening");

    // TLS with the node's own certificate, made by joining on the first start.
    let creds = credentials::obtain(&config).await?;
    let connection = connection::NodeConnection::new(credentials::connect(&config.server, &creds)?);
    // Snapshots come in parts of about 1 MiB, but one pod may be as large as the largest
    // object the control plane accepts (a few MiB): leave room for it.
    let client =
        NodesClient::new(connection.clone()).max_decoding_message_size(config.receive_limit);

    // Tasks: `tracker` holds everything; `workers` the pod workers, drained first so
    // pods stop before the reapers are told to give up.
    let tracker = TaskTracker::new();
    let workers = TaskTracker::new();
    let reapers_stop = CancellationToken::new();
    let registry = logs::Registry::new(config.log_rotation);

    // The daemon endpoint: TLS only, with the node's serving certificate (a cell, so a
    // renewed one can be swapped in), and only the control plane may call it.
    let serving = endpoint::serving_cert(&creds)?;
    let incoming = twinset_proto::tls::server::incoming(
        listener,
        endpoint::tls_config(&creds, serving.clone(), config.metrics_open)?,
        shutdown.clone(),
    );
    let log_service = logs::LogService::new(registry.clone(), tracker.clone(), shutdown.clone());
    // Beside NodeAgent, `/metrics` (for Prometheus, which may speak HTTP/1.1).
    let mut grpc = tonic::service::Routes::builder();
    grpc.add_service(NodeAgentServer::new(log_service));
    let routes = grpc
        .routes()
        .into_axum_router()
        .merge(twinset_proto::metrics::router(
            Arc::new(metrics::registry()),
            endpoint::metrics_access(config.metrics_open),
        ));
    let serve_shutdown = shutdown.clone();
    let server = tracker.spawn(async move {
        Server::builder()
            .accept_http1(true)
            .add_routes(tonic::service::Routes::from(routes))
            .serve_with_incoming_shutdown(incoming, serve_shutdown.cancelled_owned())
            .await
    });

    // The node certificate is renewed before it expires, with no restart.
    let renewal = renewal::Renewal {
        node: config.node_name.clone(),
        server: config.server.clone(),
        dir: join::pki_dir(&config.data_dir),
        creds,
        connection,
        serving,
    };
    tracker.spawn(renewal.run(shutdown.clone()));

    let (reporter, reporter_task) =
        reporter::reporter(client.clone(), config.node_name.clone(), shutdown.clone());
    tracker.spawn(reporter_task);

    let result = serve_node(
        &config,
        client,
        &host_ip,
        local.port(),
        images,
        cgroups,
        isolation,
        registry,
        reporter,
        &tracker,
        &workers,
        &reapers_stop,
        &shutdown,
    )
    .await;

    // Shutdown: stop the pod workers (they stop their pods), then everything else.
    shutdown.cancel();
    workers.close();
    if tokio::time::timeout(DRAIN_DEADLINE, workers.wait())
        .await
        .is_err()
    {
        tracing::warn!("pods did not stop within {DRAIN_DEADLINE:?}");
    }
    reapers_stop.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("agent tasks did not stop within {DRAIN_DEADLINE:?}");
    }
    match server.await {
        Ok(Err(e)) => return Err(Error::Serve(e)),
        Err(e) => tracing::warn!(error = %e, "daemon endpoint task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("agent stopped");
    result
}

#[allow(clippy::too_many_arguments)]
async fn serve_node(
    config: &Config,
    mut client: connection::Client,
    host_ip: &str,
    port: u16,
    images: images::ImageTable,
    cgroups: Arc<dyn runtime::cgroup::Cgroups>,
    isolation: runtime::Isolation,
    registry: logs::Registry,
    reporter: reporter::ReporterHandle,
    tracker: &TaskTracker,
    workers: &TaskTracker,
    reapers_stop: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let state = state::Journal::open(&config.data_dir)?;
    let mut ipam = ipam::Ipam::open(state.clone())?;
    let fence = Arc::new(fence::Fence::open(
        &config.data_dir,
        config.fence_after,
        config.fence_grace,
        config.watchdog.is_some(),
    ));
    if let Some(program) = &config.watchdog {
        fence.ensure_watchdog(program, &config.data_dir);
    }

    let node = node::build(&node::NodeInput {
        name: &config.node_name,
        labels: &config.labels,
        taints: &config.taints,
        pod_cidr: config.pod_cidr.as_deref(),
        address: host_ip,
        port,
        fence_within: fence.within(),
    });
    let registered = sync::register(&mut client, node, shutdown)
        .await
        .map_err(|s| Error::Register(s.message().to_string()))?;
    let Some(registered) = registered else {
        return Ok(());
    };
    let cidr = registered
        .spec
        .as_ref()
        .map(|s| s.pod_cidr.clone())
        .unwrap_or_default();
    if cidr.is_empty() {
        tracing::warn!("the node has no pod CIDR; pods will use the node's address");
    } else {
        ipam.set_cidr(&cidr)?;
    }
    tracing::info!(pod_cidr = %cidr, "registered");
    // The pods an earlier agent recorded: adopted (or stopped) by the supervisor; any
    // network left by a pod not among them is removed now.
    let recorded = state.load_all();
    let network = start_network(config, ipam.cidr(), &recorded).await?;
    let cluster_dns = pod_dns(config, ipam.cidr(), tracker, shutdown).await?;
    let (ranges_tx, ranges_rx) = tokio::sync::watch::channel(None);
    if network.mode() == network::Mode::Bridge {
        tracker.spawn(network::keep_routes(
            Arc::clone(&network),
            ranges_rx,
            shutdown.clone(),
        ));
    }

    let claims = volumes::Claims::open(&volumes::claims_root(&config.data_dir));
    let sync_health = sync::SyncHealth::new();
    tracker.spawn(sync::heartbeats(
        client.clone(),
        config.node_name.clone(),
        config.heartbeat,
        sync_health.clone(),
        config.sync_grace,
        ranges_tx,
        sync::Lease {
            fence: Arc::clone(&fence),
            watchdog: config.watchdog.clone(),
            data_dir: config.data_dir.clone(),
            claims: Arc::clone(&claims),
        },
        shutdown.clone(),
    ));

    let runtime: Arc<dyn runtime::Runtime> = Arc::new(runtime::process::ProcessRuntime::new(
        cgroups,
        isolation,
        tracker.clone(),
        reapers_stop.clone(),
    ));
    let shared = Arc::new(pod::Shared {
        node_name: config.node_name.clone(),
        host_ip: host_ip.to_string(),
        node_hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        data_dir: config.data_dir.clone(),
        runtime,
        images,
        ipam: Mutex::new(ipam),
        state: state.clone(),
        fence: Arc::clone(&fence),
        reporter,
        logs: registry,
        backoff: config.restart_backoff,
        shutdown: shutdown.clone(),
        stop_pods_on_shutdown: config.stop_pods_on_shutdown,
        claims: Arc::clone(&claims),
        cluster_dns,
        network,
    });
    let mut supervisor = supervisor::Supervisor::new(shared, workers.clone(), recorded);
    sync::watch_assignments(
        client,
        config.node_name.clone(),
        &mut supervisor,
        sync_health,
        shutdown.clone(),
    )
    .await;
    Ok(())
}

/// The node's IP: `--node-ip`, else the daemon endpoint's address, else (listening on
/// every address) the address this machine reaches the control plane from.
fn node_ip(config: &Config, listen: IpAddr) -> Result<IpAddr, Error> {
    if let Some(ip) = config.node_ip {
        if !listen.is_unspecified() && listen != IpAddr::V4(ip) {
            return Err(Error::ListenNotNodeIp {
                listen,
                node_ip: ip,
            });
        }
        return Ok(IpAddr::V4(ip));
    }
    if !listen.is_unspecified() {
        return Ok(listen);
    }
    Ok(source_address_towards(&config.server).unwrap_or(IpAddr::from([127, 0, 0, 1])))
}

/// The local address the kernel picks to reach the control plane at `server` (a UDP
/// socket's connect: a route lookup, no packet is sent).
fn source_address_towards(server: &str) -> Option<IpAddr> {
    let hostport = server
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let target = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .ok()?
        .next()?;
    let bind: SocketAddr = match target {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    let sock = std::net::UdpSocket::bind(bind).ok()?;
    sock.connect(target).ok()?;
    Some(sock.local_addr().ok()?.ip())
}

/// The DNS server pods' resolv.conf names: `--cluster-dns`, except in bridge mode when that
/// is a loopback address of the machine (a local cluster), which pods in their own
/// namespaces cannot reach: then the node's bridge address, where a relay to it runs.
async fn pod_dns(
    config: &Config,
    range: Option<twinset_proto::Cidr>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<Option<IpAddr>, Error> {
    let (Some(dns), Some(range)) = (config.cluster_dns, range) else {
        return Ok(config.cluster_dns);
    };
    if config.pod_network != network::Mode::Bridge || !dns.is_loopback() {
        return Ok(Some(dns));
    }
    let mode = config.pod_network;
    let gateway = network::netlink::gateway_of(range).map_err(|e| Error::PodNetwork {
        mode,
        message: e.to_string(),
    })?;
    let at = SocketAddr::from((gateway, 53));
    let upstream = SocketAddr::new(dns, 53);
    let sockets = network::dns_relay::bind(at)
        .await
        .map_err(|source| Error::Bind { addr: at, source })?;
    tracing::info!(%at, %upstream, "relaying pods' DNS queries to the loopback cluster DNS");
    tracker.spawn(network::dns_relay::run(
        sockets,
        upstream,
        tracker.clone(),
        shutdown.clone(),
    ));
    Ok(Some(IpAddr::V4(gateway)))
}

/// The pod network of `config`: in bridge mode the node's bridge is made (gateway =
/// the range's first address, IP forwarding on) and what pods that no longer exist left
/// behind (namespaces, veths) is removed.
async fn start_network(
    config: &Config,
    range: Option<twinset_proto::Cidr>,
    recorded: &[state::PodRecord],
) -> Result<Arc<dyn network::PodNetwork>, Error> {
    let mode = config.pod_network;
    if mode == network::Mode::Loopback {
        return Ok(Arc::new(network::Loopback));
    }
    let err = |message: String| Error::PodNetwork { mode, message };
    let Some(range) = range else {
        return Err(err("the node has no pod range (spec.podCIDR)".into()));
    };
    if range.network().is_loopback() {
        return Err(err(format!(
            "the node's pod range {range} is a loopback range; start the control plane with a routable --cluster-cidr (e.g. 10.244.0.0/16)"
        )));
    }
    let net: Arc<dyn network::PodNetwork> = Arc::new(network::netlink::BridgeNetwork::new(
        &config.data_dir,
        &config.node_name,
    ));
    let bridge = network::NodeBridge {
        name: network::routes::bridge_name(&config.node_name),
        range,
    };
    net.prepare_node(&bridge)
        .await
        .map_err(|e| err(e.to_string()))?;
    tracing::info!(bridge = %bridge.name, %range, "pods get their own network namespace on the node's bridge");
    for uid in net.attached().await.map_err(|e| err(e.to_string()))? {
        if recorded.iter().any(|r| r.uid == uid) {
            continue;
        }
        tracing::info!(uid = %uid, "removing the network of a pod that no longer exists");
        if let Err(e) = net.detach(&uid).await {
            tracing::warn!(uid = %uid, error = %e, "cannot remove a stale pod network");
        }
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(node_ip: Option<&str>) -> Config {
        let mut c = Config::new("https://127.0.0.1:6443", "n1", "/nonexistent");
        c.node_ip = node_ip.map(|ip| ip.parse().unwrap());
        c
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_node_ip_is_the_flag_else_the_listen_address_else_the_route_to_the_server() {
        assert_eq!(
            node_ip(&config(Some("192.168.50.11")), ip("0.0.0.0")).unwrap(),
            ip("192.168.50.11")
        );
        assert_eq!(
            node_ip(&config(Some("192.168.50.11")), ip("192.168.50.11")).unwrap(),
            ip("192.168.50.11")
        );
        assert_eq!(
            node_ip(&config(None), ip("127.0.0.7")).unwrap(),
            ip("127.0.0.7")
        );
        // Listening everywhere: the address the kernel would use towards the server.
        assert_eq!(
            node_ip(&config(None), ip("0.0.0.0")).unwrap(),
            ip("127.0.0.1")
        );
        let e = node_ip(&config(Some("192.168.50.11")), ip("127.0.0.1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--listen 127.0.0.1 is not the node IP 192.168.50.11: the control plane reaches the daemon endpoint at the node IP; listen on it or on 0.0.0.0"
        );
    }
}
