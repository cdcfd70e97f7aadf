//! The Twinset control plane: the object store, the `Cluster` and `Nodes` gRPC
//! services, the controllers (DaemonSet, StatefulSet, garbage collection, node
//! lifecycle) and the scheduler.
//!
//! [`run`] is the whole process: open the store under `<data_dir>/store`, make sure the
//! system namespaces exist, serve the API (plus gRPC health and reflection) and run the
//! controllers until the cancellation token fires.

#![warn(missing_docs)]

pub mod api;
pub mod certs;
pub mod controllers;
pub mod deletion;
pub mod dns;
pub mod events;
pub mod ipam;
pub mod join;
pub mod metrics;
pub mod pki;
pub mod pod_ranges;
pub mod podutil;
pub mod rest;
pub mod scheduler;
pub mod store;
pub mod tls;

use api::authz::{Audience, Authorized};
use api::cluster::{ClusterService, SYSTEM_NAMESPACES};
use api::nodes::NodesService;
use api::Ctx;
use controllers::node_lifecycle::Heartbeats;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use twinset_proto::v1::bootstrap_server::BootstrapServer;
use twinset_proto::v1::cluster_server::ClusterServer;
use twinset_proto::v1::nodes_server::NodesServer;

/// The user every request on the `--insecure-listen` listener acts as.
pub const INSECURE_USER: &str = "system:insecure-listen";

/// Default lifetime of the server certificate (made at every start, renewed at about 70 %).
pub const DEFAULT_SERVER_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default lifetime of the admin certificate.
pub const DEFAULT_ADMIN_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default lifetime of a node certificate.
pub const DEFAULT_NODE_CERT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How the control plane runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the store lives (`<data_dir>/store`) and the actual address is written (`<data_dir>/address`).
    pub data_dir: PathBuf,
    /// The API address; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The range node pod ranges are cut from.
    pub cluster_cidr: String,
    /// The prefix length of each node's pod range.
    pub node_cidr_prefix: u8,
    /// How long a node may stay silent before it is marked Unknown and tainted unreachable.
    pub node_grace: Duration,
    /// How long a node may stay silent before the fenced replicas of its `Replace`
    /// StatefulSets are recreated elsewhere (`--replace-after`).
    pub replace_after: Duration,
    /// How many recent changes watches can resume across.
    pub watch_history: usize,
    /// How many bytes (encoded objects) that watch history may hold.
    pub watch_history_bytes: usize,
    /// The largest object a client may apply or update, in encoded bytes (default 1.5 MiB).
    pub max_request_bytes: usize,
    /// Watch streams one connection may hold at once.
    pub max_watches_per_connection: usize,
    /// Watch streams one user (its certificate's name) may hold at once over all its
    /// connections; stands in for kube-apiserver's API priority and fairness per user.
    pub max_watches_per_user: usize,
    /// Watch streams the control plane serves at once.
    pub max_watches: usize,
    /// Cluster-service reads (Get, List) in flight at once (`--max-requests-inflight`).
    pub max_requests_inflight: usize,
    /// Cluster-service writes (Apply, Update, Delete, Scale) in flight at once
    /// (`--max-mutating-requests-inflight`); agents' calls are never counted.
    pub max_mutating_requests_inflight: usize,
    /// How often a healthy node's heartbeat time is written into its stored status.
    pub node_status_interval: Duration,
    /// Where the cluster DNS server answers (UDP and TCP); `None` serves no DNS.
    pub dns_listen: Option<SocketAddr>,
    /// The cluster domain the DNS server answers for.
    pub cluster_domain: String,
    /// How long an Event is kept after it was last seen (kube-apiserver's `--event-ttl`).
    pub event_ttl: Duration,
    /// A loopback address to also serve the API on in plain text, every request acting
    /// as an administrator (`--insecure-listen`, for debugging; None by default).
    pub insecure_listen: Option<SocketAddr>,
    /// Extra names and addresses the server certificate covers (`--tls-san`).
    pub tls_san: Vec<String>,
    /// The operator's CA (`--tls-ca-cert/--tls-ca-key`); `None` makes one on first start.
    pub tls_ca: Option<pki::CaFiles>,
    /// Lifetime of the server certificate made at each start.
    pub server_cert_ttl: Duration,
    /// Lifetime of the admin certificate in `admin.kubeconfig`.
    pub admin_cert_ttl: Duration,
    /// Lifetime of the node certificates signed at join.
    pub node_cert_ttl: Duration,
    /// Every node's pod range and node IP, kept current while it runs; a caller that
    /// routes pod traffic (`twinset control-plane --pod-routes`) subscribes to it.
    pub pod_ranges: pod_ranges::PodRangesCell,
    /// How often a REST watch that allows bookmarks gets one.
    pub watch_bookmark_interval: Duration,
    /// `--metrics-open`: any TLS client may read `/metrics`, with or without a client
    /// certificate (false: administrators only).
    pub metrics_open: bool,
}

impl Config {
    /// The defaults: cluster CIDR 127.128.0.0/9 in /24s, 5 s node grace, 10 000 changes
    /// (at most 64 MiB) of watch history, events kept for an hour, 400 reads and 200
    /// writes of clients in flight.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Config {
        Config {
            data_dir: data_dir.into(),
            listen,
            cluster_cidr: "127.128.0.0/9".into(),
            node_cidr_prefix: 24,
            node_grace: Duration::from_secs(5),
            replace_after: Duration::from_secs(6),
            watch_history: 10_000,
            watch_history_bytes: store::hub::DEFAULT_HISTORY_BYTES,
            max_request_bytes: api::DEFAULT_MAX_REQUEST_BYTES,
            max_watches_per_connection: api::slots::DEFAULT_PER_CONNECTION,
            max_watches_per_user: api::slots::DEFAULT_PER_USER,
            max_watches: api::slots::DEFAULT_TOTAL,
            max_requests_inflight: api::inflight::DEFAULT_MAX_REQUESTS_INFLIGHT,
            max_mutating_requests_inflight: api::inflight::DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT,
            node_status_interval: Duration::from_secs(30),
            dns_listen: None,
            cluster_domain: "cluster.local".into(),
            event_ttl: events::DEFAULT_TTL,
            insecure_listen: None,
            tls_san: Vec::new(),
            tls_ca: None,
            server_cert_ttl: DEFAULT_SERVER_CERT_TTL,
            admin_cert_ttl: DEFAULT_ADMIN_CERT_TTL,
            node_cert_ttl: DEFAULT_NODE_CERT_TTL,
            pod_ranges: pod_ranges::cell(),
            watch_bookmark_interval: Duration::from_secs(60),
            metrics_open: false,
        }
    }
}

/// What stops the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The store failed to open or to write.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// The cluster CIDR settings are wrong.
    #[error(transparent)]
    Ipam(#[from] ipam::Error),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not be built.
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    /// The DNS server could not start.
    #[error(transparent)]
    Dns(#[from] dns::Error),
    /// The cluster CA or a certificate could not be made or stored.
    #[error("cluster CA: {0}")]
    Pki(#[from] pki::Error),
    /// `--insecure-listen` asked for plain text on an address other than loopback.
    #[error(
        "--insecure-listen {0}: plain text is served only on a loopback address (127.0.0.1 or ::1)"
    )]
    InsecureNotLoopback(SocketAddr),
    /// The TLS configuration was refused.
    #[error(transparent)]
    Tls(#[from] twinset_proto::tls::TlsError),
}

/// How large a Cluster request (or a REST request body) may be to reach the service's own
/// size check; larger ones are refused while read, with the same 413 message.
pub(crate) fn decode_limit(max_request_bytes: usize) -> usize {
    max_request_bytes.saturating_mul(2).max(4 * 1024 * 1024)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the system namespaces (default, kube-system) when missing.
pub async fn ensure_system_namespaces(store: &dyn Store) -> Result<(), Error> {
    for ns in SYSTEM_NAMESPACES {
        if api::apply::ensure_namespace(store, ns, false)
            .await
            .is_err()
        {
            return Err(Error::Store(store::Error::Backend(format!(
                "cannot create namespace {ns}"
            ))));
        }
    }
    Ok(())
}

/// What [`tls_setup`] makes: the listener's configuration, the CA, the control plane's
/// own certificates and how it calls the agents.
struct Tls {
    config: Arc<rustls::ServerConfig>,
    ca: Arc<pki::ClusterCa>,
    own: Arc<certs::OwnCerts>,
    agents: tls::AgentDialer,
}

/// The cluster CA (made on first start under `<data>/pki/`, or the operator's, checked
/// and copied there), a fresh server certificate
/// for `addr` and the `--tls-san` names, and `<data>/admin.kubeconfig` (mode 0600) with a
/// fresh admin certificate and the server's `https://` URL. The agents are called with
/// the same server certificate cell as the listener's, so a renewal serves both.
fn tls_setup(config: &Config, addr: SocketAddr) -> Result<Tls, Error> {
    let ca = Arc::new(pki::ClusterCa::open(
        &config.data_dir.join("pki"),
        config.tls_ca.as_ref(),
    )?);
    let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !addr.ip().is_unspecified() {
        sans.push(addr.ip().to_string());
    }
    for s in &config.tls_san {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    let admin = ca.issue_admin(config.admin_cert_ttl)?;
    let own = certs::OwnCerts::new(ca.clone(), sans, config.server_cert_ttl, &admin)?;
    let host = if addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    let kubeconfig = twinset_proto::kubeconfig::Kubeconfig {
        server: format!("https://{}", SocketAddr::new(host, addr.port())),
        credentials: twinset_proto::tls::ClientCredentials {
            ca_pem: ca.cert_pem().to_string(),
            identity: Some((admin.cert_pem, admin.key_pem)),
        },
    };
    pki::write_private_atomic(
        &config.data_dir.join("admin.kubeconfig"),
        &kubeconfig.to_yaml("twinset"),
    )?;
    let agents = tls::AgentDialer::new(ca.cert_pem(), own.cell())?;
    Ok(Tls {
        config: tls::server_config(ca.cert_pem(), own.cell())?,
        ca,
        own,
        agents,
    })
}

/// Writes `<data_dir>/address` (atomically: a reader never sees half an address).
fn write_address(data_dir: &Path, addr: SocketAddr) -> Result<(), Error> {
    let path = data_dir.join("address");
    twinset_proto::files::write_atomic(&path, &addr.to_string(), 0o644).map_err(io_err(&path))
}

/// Runs the control plane until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    std::fs::create_dir_all(&config.data_dir).map_err(io_err(&config.data_dir))?;
    let ipam = ipam::Ipam::new(&config.cluster_cidr, config.node_cidr_prefix)?;
    let options = store::durable::Options {
        history: config.watch_history,
        history_bytes: config.watch_history_bytes,
        ..Default::default()
    };
    let store: Arc<dyn Store> = Arc::new(store::sled::SledStore::open_with(
        &config.data_dir.join("store"),
        options,
    )?);
    let result = serve(&config, store.clone(), ipam, shutdown).await;
    store.close().await;
    result
}

async fn serve(
    config: &Config,
    store: Arc<dyn Store>,
    ipam: ipam::Ipam,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    ensure_system_namespaces(&*store).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let insecure = match config.insecure_listen {
        None => None,
        Some(at) if !at.ip().is_loopback() => return Err(Error::InsecureNotLoopback(at)),
        Some(at) => {
            let l = TcpListener::bind(at)
                .await
                .map_err(|source| Error::Bind { addr: at, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| Error::Bind { addr: at, source })?;
            tracing::warn!(
                addr = %bound,
                user = INSECURE_USER,
                "serving the API in PLAIN TEXT on a loopback address (--insecure-listen): \
                 every local process can act as an administrator there; for debugging only"
            );
            let path = config.data_dir.join("insecure-address");
            std::fs::write(&path, bound.to_string()).map_err(io_err(&path))?;
            Some(l)
        }
    };
    // Bind DNS before announcing the address, so a taken DNS port stops start-up.
    let dns = match config.dns_listen {
        Some(at) => Some(dns::DnsServer::bind(store.clone(), at, &config.cluster_domain).await?),
        None => None,
    };
    if let Some(dns) = &dns {
        let at = dns.local_addr();
        tracing::info!(%at, domain = %config.cluster_domain, "cluster DNS listening");
        let path = config.data_dir.join("dns-address");
        std::fs::write(&path, at.to_string()).map_err(io_err(&path))?;
    }
    let Tls {
        config: tls_config,
        ca,
        own: own_certs,
        agents,
    } = tls_setup(config, addr)?;
    write_address(&config.data_dir, addr)?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), ca_sha256 = %ca.hash(), "control plane listening (TLS)");

    let heartbeats = Arc::new(Heartbeats::default());
    let ctx = Ctx {
        store: store.clone(),
        shutdown: shutdown.clone(),
        heartbeats: heartbeats.clone(),
        ipam,
        register_lock: Arc::default(),
        status_write_interval: config.node_status_interval,
        max_request_bytes: config.max_request_bytes,
        watch_slots: api::slots::WatchSlots::new(
            config.max_watches_per_connection,
            config.max_watches_per_user,
            config.max_watches,
        ),
        pod_ranges: config.pod_ranges.clone(),
        cluster_cidr: config.cluster_cidr.clone(),
        replace_after: config.replace_after,
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ClusterServer<ClusterService>>().await;
    health.set_serving::<NodesServer<NodesService>>().await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    // Reflection in both versions: `grpc.reflection.v1` and the older
    // `grpc.reflection.v1alpha`, which several tools and language libraries still only speak.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(twinset_proto::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| Error::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| Error::Reflection(e.to_string()))?;

    let controllers = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(controllers::daemonset::run(
        store.clone(),
        controllers.clone(),
    ));
    tasks.spawn(controllers::statefulset::run(
        store.clone(),
        controllers.clone(),
    ));
    tasks.spawn(scheduler::run(store.clone(), controllers.clone()));
    tasks.spawn(controllers::gc::run(store.clone(), controllers.clone()));
    tasks.spawn(pod_ranges::follow(
        store.clone(),
        config.pod_ranges.clone(),
        controllers.clone(),
    ));
    tasks.spawn(own_certs.clone().rotate(controllers.clone()));
    tasks.spawn(join::tokens::sweep_periodically(
        store.clone(),
        controllers.clone(),
    ));
    tasks.spawn(events::expire(
        store.clone(),
        config.event_ttl,
        controllers.clone(),
    ));
    if let Some(dns) = dns {
        let token = controllers.clone();
        tasks.spawn(async move {
            if let Err(e) = dns.run(token).await {
                tracing::error!(error = %e, "cluster DNS stopped");
            }
        });
    }
    tasks.spawn(controllers::node_lifecycle::run(
        store.clone(),
        heartbeats,
        controllers::node_loss::Timing {
            grace: config.node_grace,
            replace_after: config.replace_after,
        },
        controllers.clone(),
    ));

    // Every connection is TLS; each request carries its caller's identity. The only
    // exception is an operator's explicit plain-text loopback listener for debugging.
    let incoming = tls::incoming(listener, tls_config, shutdown.clone());
    let incoming = match insecure {
        None => futures::future::Either::Left(incoming),
        Some(listener) => {
            let identity = tls::Identity::Admin(INSECURE_USER.into());
            futures::future::Either::Right(tokio_stream::StreamExt::merge(
                incoming,
                tls::insecure_incoming(listener, identity, shutdown.clone()),
            ))
        }
    };
    let registry = metrics::registry(store.clone(), ctx.watch_slots.clone());
    let metrics_access = twinset_proto::metrics::Access {
        open: config.metrics_open,
        readers: twinset_proto::metrics::Readers::Admins,
    };
    let bootstrap =
        api::bootstrap::BootstrapService::new(store.clone(), ca.clone(), config.node_cert_ttl);
    // One service instance answers both APIs: gRPC callers through tonic, REST callers
    // (kubectl) through `rest`, which translates onto it.
    let cluster = Arc::new(
        ClusterService::new(ctx.clone())
            .with_ca_hash(ca.hash())
            .with_certificates(own_certs)
            .with_agent_dialer(agents),
    );
    let mut grpc = tonic::service::Routes::builder();
    grpc
        // Health is open to anyone (load balancers); reflection to administrators.
        .add_service(Authorized::new(Audience::Anyone, health_service))
        .add_service(Authorized::new(Audience::Admins, reflection_v1))
        .add_service(Authorized::new(Audience::Admins, reflection_v1alpha))
        .add_service(Authorized::new(
            Audience::Admins,
            // Clients' calls only (not the agents' Nodes service) count against the
            // in-flight bounds: see `api::inflight` for why that keeps agents heard.
            api::inflight::InFlight::new(
                config.max_requests_inflight,
                config.max_mutating_requests_inflight,
            )
            .wrap(
                // Requests up to the limit and a little over it decode, so that the service
                // refuses them with the API server's message rather than the transport's.
                ClusterServer::from_arc(Arc::clone(&cluster))
                    .max_decoding_message_size(decode_limit(config.max_request_bytes)),
            ),
        ))
        .add_service(Authorized::new(
            Audience::Nodes,
            NodesServer::new(NodesService::new(ctx).with_signer(ca.clone(), config.node_cert_ttl)),
        ))
        // Joining is open to callers without a certificate: the token is the credential.
        .add_service(Authorized::new(
            Audience::Anyone,
            BootstrapServer::new(bootstrap),
        ));
    let routes = grpc
        .routes()
        .into_axum_router()
        .merge(rest::router(cluster, config.watch_bookmark_interval))
        .merge(twinset_proto::metrics::router(
            Arc::new(registry),
            metrics_access,
        ))
        .fallback(rest::fallback);
    let served = tonic::transport::Server::builder()
        // kubectl speaks HTTP/2, but other clients of the REST API only HTTP/1.1.
        .accept_http1(true)
        // Outermost, so it counts what callers receive, refusals included.
        .layer(metrics::requests::RequestsLayer)
        .layer(api::refusals::RefusalsLayer {
            max_request_bytes: config.max_request_bytes,
        })
        .add_routes(tonic::service::Routes::from(routes))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    controllers.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("control plane stopped");
    served.map_err(Error::from)
}
