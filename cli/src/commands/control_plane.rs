//! `twinset control-plane`: runs the control plane library until SIGINT/SIGTERM.
use crate::args::ControlPlaneArgs;

/// Builds the control plane's config from the flags (unset flags keep the library's defaults).
pub fn config(args: ControlPlaneArgs) -> twinset_control_plane::Config {
    let mut config = twinset_control_plane::Config::new(args.data_dir, args.listen);
    if let Some(c) = args.cluster_cidr {
        config.cluster_cidr = c;
    }
    if let Some(p) = args.node_cidr_prefix {
        config.node_cidr_prefix = p;
    }
    if let Some(g) = args.node_grace {
        config.node_grace = g;
    }
    if let Some(r) = args.replace_after {
        config.replace_after = r;
    }
    if let Some(h) = args.watch_history {
        config.watch_history = h;
    }
    if let Some(n) = args.max_watches_per_connection {
        config.max_watches_per_connection = n;
    }
    if let Some(n) = args.max_watches_per_user {
        config.max_watches_per_user = n;
    }
    if let Some(n) = args.max_watches {
        config.max_watches = n;
    }
    if let Some(n) = args.max_requests_inflight {
        config.max_requests_inflight = n;
    }
    if let Some(n) = args.max_mutating_requests_inflight {
        config.max_mutating_requests_inflight = n;
    }
    if let Some(b) = args.max_request_bytes {
        config.max_request_bytes = usize::try_from(b).unwrap_or(usize::MAX);
    }
    if let Some(b) = args.watch_history_bytes {
        config.watch_history_bytes = usize::try_from(b).unwrap_or(usize::MAX);
    }
    config.dns_listen = args.dns_listen;
    if let Some(d) = args.cluster_domain {
        config.cluster_domain = d;
    }
    if let Some(ttl) = args.event_ttl {
        config.event_ttl = ttl;
    }
    if let Some(every) = args.watch_bookmark_interval {
        config.watch_bookmark_interval = every;
    }
    config.tls_san = args.tls_san;
    config.insecure_listen = args.insecure_listen;
    config.metrics_open = args.metrics_open;
    // clap lets only both or neither through.
    if let (Some(cert), Some(key)) = (args.tls_ca_cert, args.tls_ca_key) {
        config.tls_ca = Some(twinset_control_plane::pki::CaFiles { cert, key });
    }
    if let Some(ttl) = args.server_cert_ttl {
        config.server_cert_ttl = ttl;
    }
    if let Some(ttl) = args.node_cert_ttl {
        config.node_cert_ttl = ttl;
    }
    config
}

/// Runs `control-plane`.
pub async fn run(args: ControlPlaneArgs) -> anyhow::Result<()> {
    let pod_routes = args.pod_routes;
    let config = config(args);
    let shutdown = crate::signals::shutdown_token()?;
    let routes = pod_routes.then(|| {
        tokio::spawn(keep_pod_routes(
            config.data_dir.clone(),
            config.pod_ranges.subscribe(),
            config.cluster_cidr.clone(),
            shutdown.clone(),
        ))
    });
    let result = twinset_control_plane::run(config, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(task) = routes {
        let _ = task.await;
    }
    result
        // The library's message already names its cause; a context chain would repeat it.
        .map_err(|e| anyhow::anyhow!("control plane: {e}"))
}

/// `--pod-routes`: this machine routes every node's pod range via its node IP, as a
/// bridge-mode agent does, following the control plane's view of the nodes.
async fn keep_pod_routes(
    data_dir: std::path::PathBuf,
    mut ranges: tokio::sync::watch::Receiver<
        std::sync::Arc<twinset_control_plane::pod_ranges::PodRanges>,
    >,
    cluster_cidr: String,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use twinset_node_agent::network::{self, ClusterRanges};
    let (tx, rx) = tokio::sync::watch::channel(None);
    // Only its routes are used: this machine runs no pods, so no bridge is made.
    let net: std::sync::Arc<dyn network::PodNetwork> = std::sync::Arc::new(
        network::netlink::BridgeNetwork::new(&data_dir, "control-plane"),
    );
    tracing::info!(%cluster_cidr, "routing the nodes' pod ranges via their node IPs (--pod-routes)");
    let keeper = tokio::spawn(network::keep_routes(net, rx, shutdown.clone()));
    loop {
        let now = ranges.borrow_and_update().clone();
        let _ = tx.send(Some(std::sync::Arc::new(ClusterRanges::from_ranges(
            &now.ranges,
            &cluster_cidr,
        ))));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = ranges.changed() => if changed.is_err() { break },
        }
    }
    let _ = keeper.await;
}
