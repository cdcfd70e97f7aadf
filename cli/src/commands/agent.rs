//! `twinset agent`: runs the node agent library until SIGINT/SIGTERM.
use super::Ctx;
use crate::args::{AgentArgs, RestartBackoffArgs};
use anyhow::{bail, Context as _};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use twinset_node_agent::container::Backoff;
use twinset_proto::v1::Taint;

/// Where the image table is when `--image-table` is not given.
pub const SYSTEM_IMAGE_TABLE: &str = "/etc/twinset/images.yaml";

/// The default image table: `$TWINSET_IMAGE_TABLE`, else `deploy/images.yaml` in an
/// ancestor of the executable (a repo checkout: target/debug/twinset), else
/// /etc/twinset/images.yaml when it exists, else None: the table built into the binary.
pub fn default_image_table() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TWINSET_IMAGE_TABLE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(p) = image_table_near(&exe) {
            return Some(p);
        }
    }
    Some(PathBuf::from(SYSTEM_IMAGE_TABLE)).filter(|p| p.is_file())
}

/// How `up` and the agent name the table in use.
pub fn describe_image_table(table: Option<&Path>) -> String {
    match table {
        Some(p) => p.display().to_string(),
        None => format!(
            "built into this binary (deploy/images.yaml of twinset {}; scripts under <node data dir>/builtin-images)",
            env!("CARGO_PKG_VERSION")
        ),
    }
}

fn image_table_near(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .map(|d| d.join("deploy").join("images.yaml"))
        .find(|p| p.is_file())
}

/// Parses `k=v,k2=v2`.
pub fn parse_labels(s: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            bail!("invalid label {part:?}: expected key=value");
        };
        if k.is_empty() {
            bail!("invalid label {part:?}: empty key");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Parses `k=v:Effect,k2:Effect`.
pub fn parse_taints(s: &str) -> anyhow::Result<Vec<Taint>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match super::taint::parse_change(part)? {
            super::taint::TaintChange::Add(t) => out.push(t),
            super::taint::TaintChange::Remove { .. } => {
                bail!("invalid taint {part:?}: expected key=value:Effect")
            }
        }
    }
    Ok(out)
}

/// The restart back-off the flags ask for, each flag left out at the kubelet's value;
/// nonsense (a zero base or reset, a maximum below the base) is refused.
pub fn restart_backoff(args: &RestartBackoffArgs) -> anyhow::Result<Backoff> {
    let kubelet = Backoff::KUBELET;
    Ok(Backoff::new(
        args.restart_backoff_base.unwrap_or(kubelet.base()),
        args.restart_backoff_max.unwrap_or(kubelet.max()),
        args.restart_backoff_reset.unwrap_or(kubelet.reset()),
    )?)
}

/// The back-off flags given, as `agent` takes them (what `up` passes to its agents).
pub fn restart_backoff_flags(args: &RestartBackoffArgs) -> Vec<String> {
    [
        ("--restart-backoff-base", args.restart_backoff_base),
        ("--restart-backoff-max", args.restart_backoff_max),
        ("--restart-backoff-reset", args.restart_backoff_reset),
    ]
    .into_iter()
    .filter_map(|(flag, d)| Some([flag.to_string(), humantime::format_duration(d?).to_string()]))
    .flatten()
    .collect()
}

/// Runs `agent`.
pub async fn run(ctx: &Ctx, args: AgentArgs) -> anyhow::Result<()> {
    let Some(server) = ctx.server_flag().filter(|s| !s.trim().is_empty()) else {
        bail!("the agent needs --server ADDR (or TWINSET_SERVER)");
    };
    let server = crate::client::https(server.trim());
    let mut config =
        twinset_node_agent::Config::new(server, args.node_name.clone(), args.data_dir.clone());
    if let Some(l) = &args.labels {
        config.labels = parse_labels(l).context("--labels")?;
    }
    if let Some(t) = &args.taints {
        config.taints = parse_taints(t).context("--taints")?;
    }
    if let Some(c) = args.pod_cidr {
        config.pod_cidr = Some(c);
    }
    config.node_ip = args.node_ip;
    match (args.listen, args.node_ip) {
        (Some(l), _) => config.listen = l,
        // The control plane reaches the daemon endpoint at the node IP.
        (None, Some(ip)) => config.listen = std::net::SocketAddr::from((ip, 0)),
        (None, None) => {}
    }
    if let Some(mode) = args.pod_network {
        config.pod_network = mode;
    }
    if let Some(h) = args.heartbeat {
        config.heartbeat = h;
    }
    config.restart_backoff = restart_backoff(&args.restart_backoff)?;
    config.image_table = args.image_table.or_else(default_image_table);
    tracing::info!(
        table = %describe_image_table(config.image_table.as_deref()),
        "image table"
    );
    config.log_rotation = twinset_node_agent::logs::Rotation::new(
        args.container_log_max_size,
        args.container_log_max_files,
    )?;
    if let Some(stop) = args.stop_pods_on_exit {
        config.stop_pods_on_shutdown = stop;
    }
    config.cluster_dns = args.cluster_dns;
    config.metrics_open = args.metrics_open;
    if let Some(g) = args.sync_grace {
        config.sync_grace = g;
    }
    if let Some(t) = &args.token {
        // Never echo the token: its parse errors do not either.
        config.token = Some(twinset_proto::token::Token::parse(t.trim()).context("--token")?);
    }
    if let Some(d) = args.fence_after {
        config.fence_after = d;
    }
    if let Some(d) = args.fence_grace {
        config.fence_grace = d;
    }
    config.watchdog =
        Some(std::env::current_exe().context("finding this binary for the fence watchdog")?);
    if let Some(limit) = args.assignment_receive_limit {
        config.receive_limit = usize::try_from(limit).unwrap_or(usize::MAX);
    }
    let shutdown = crate::signals::shutdown_token()?;
    twinset_node_agent::run(config, shutdown)
        .await
        // The library's message already names its cause; a context chain would repeat it.
        .map_err(|e| anyhow::anyhow!("node agent: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_taints() -> anyhow::Result<()> {
        let l = parse_labels("disk=ssd, zone=a")?;
        assert_eq!(l.get("disk").map(String::as_str), Some("ssd"));
        assert_eq!(l.len(), 2);
        assert!(parse_labels("bad").is_err());
        let t = parse_taints("dedicated=db:NoSchedule,gpu:NoExecute")?;
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].key, "gpu");
        assert!(parse_taints("x=y").is_err());
        Ok(())
    }

    #[test]
    fn restart_backoff_flags_default_to_the_kubelet_and_refuse_nonsense() -> anyhow::Result<()> {
        use std::time::Duration;
        let none = RestartBackoffArgs::default();
        assert_eq!(restart_backoff(&none)?, Backoff::KUBELET);
        assert!(restart_backoff_flags(&none).is_empty());
        let short = RestartBackoffArgs {
            restart_backoff_base: Some(Duration::from_millis(400)),
            restart_backoff_max: Some(Duration::from_millis(1600)),
            restart_backoff_reset: None,
        };
        let b = restart_backoff(&short)?;
        assert_eq!(
            (b.base(), b.max()),
            (Duration::from_millis(400), Duration::from_millis(1600))
        );
        assert_eq!(b.reset(), Backoff::KUBELET.reset());
        assert_eq!(
            restart_backoff_flags(&short),
            [
                "--restart-backoff-base",
                "400ms",
                "--restart-backoff-max",
                "1s 600ms"
            ]
        );
        let base_only = RestartBackoffArgs {
            restart_backoff_base: Some(Duration::from_secs(600)),
            ..Default::default()
        };
        assert_eq!(
            restart_backoff(&base_only).unwrap_err().to_string(),
            "--restart-backoff-max 300s is shorter than --restart-backoff-base 600s"
        );
        let zero = RestartBackoffArgs {
            restart_backoff_base: Some(Duration::ZERO),
            ..Default::default()
        };
        assert!(restart_backoff(&zero).is_err());
        Ok(())
    }

    #[test]
    fn image_table_found_from_checkout() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("deploy"))?;
        std::fs::write(dir.path().join("deploy/images.yaml"), "{}")?;
        let exe = dir.path().join("target/debug/twinset");
        assert_eq!(
            image_table_near(&exe),
            Some(dir.path().join("deploy/images.yaml"))
        );
        Ok(())
    }
}
