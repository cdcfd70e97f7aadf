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
    config.tls_san = args.tls_san;
    config.insecure_listen = args.insecure_listen;
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
    let config = config(args);
    let shutdown = crate::signals::shutdown_token()?;
    twinset_control_plane::run(config, shutdown)
        .await
        // The library's message already names its cause; a context chain would repeat it.
        .map_err(|e| anyhow::anyhow!("control plane: {e}"))
}
